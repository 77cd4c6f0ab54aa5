//! The `nvmf` crate's error type for control-path operations (configuration, listening).
//! Network input never produces these: bad PDUs and commands are answered on the wire.

use crate::bdev::BdevError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("no {0} transport has been added to the target")]
    NoTransport(&'static str),
    #[error("already listening on {0}")]
    AlreadyListening(String),
    #[error("not listening on {0}")]
    NotListening(String),
    #[error("invalid NQN {0:?}")]
    InvalidNqn(String),
    #[error("subsystem {0} already exists")]
    SubsystemExists(String),
    #[error("subsystem {0} not found")]
    SubsystemNotFound(String),
    #[error("namespace ID {0} is invalid or already in use")]
    NsidInUse(u32),
    #[error("namespace {0} not found")]
    NamespaceNotFound(u32),
    #[error("the subsystem is full: at most {0} namespaces")]
    TooManyNamespaces(u32),
    #[error("host {0} already allowed")]
    HostExists(String),
    #[error("host {0} not found")]
    HostNotFound(String),
    #[error("referral to {0} not found")]
    ReferralNotFound(String),
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    #[error(transparent)]
    Bdev(#[from] BdevError),
    #[error(transparent)]
    Ptpl(#[from] crate::reservation::ptpl::PtplError),
}

pub type Result<T> = std::result::Result<T, Error>;
