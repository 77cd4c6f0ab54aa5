//! nvmf-perf: NVMe/TCP benchmark client (issue 6). See `nvmf-perf --help` and
//! docs/performance.md.

#![forbid(unsafe_code)]

#[path = "../perf/mod.rs"]
mod perf;

use clap::Parser;

fn main() {
    let args = perf::args::Args::parse();
    std::process::exit(perf::main(args));
}
