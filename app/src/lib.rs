//! The `nvmf_tgt` application's modules, as a library: the binary (`src/main.rs`) is built on
//! it, and so are the fuzz targets (`fuzz/`, target `json_rpc`: the JSON-RPC server and the JSON
//! config loader, through [`fuzzing`]).

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod reactor;
pub mod rpc;
pub mod state;
pub mod work;
