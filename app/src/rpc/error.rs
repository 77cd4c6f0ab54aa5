//! JSON-RPC error objects with SPDK's codes: the JSON-RPC 2.0 reserved codes, and negative
//! errno values where SPDK's handlers answer with `spdk_strerror(-rc)`.

use serde_json::{json, Value};
use std::fmt;

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;
/// -ENOENT
pub const ENOENT: i32 = -2;
/// -ENOMEM
pub const ENOMEM: i32 = -12;
/// -EBUSY
pub const EBUSY: i32 = -16;
/// -EEXIST
pub const EEXIST: i32 = -17;
/// -ENODEV
pub const ENODEV: i32 = -19;
/// -EINVAL
pub const EINVAL: i32 = -22;
/// -EOPNOTSUPP
pub const EOPNOTSUPP: i32 = -95;

/// A JSON-RPC error: `{"code": .., "message": ..}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }
    pub fn no_subsystem(nqn: &str) -> Self {
        Self::invalid_params(format!("Unable to find subsystem with NQN {nqn}"))
    }
    pub fn no_bdev(name: &str) -> Self {
        Self::new(ENODEV, format!("bdev {name} not found: No such device"))
    }
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// Library errors from control-path calls. Validation happens before these calls, so they are
/// mostly races or conditions only the library checks.
impl From<nvmf::Error> for RpcError {
    fn from(e: nvmf::Error) -> Self {
        use nvmf::Error as E;
        let code = match &e {
            E::SubsystemExists(_) | E::HostExists(_) | E::AlreadyListening(_) => EEXIST,
            E::SubsystemNotFound(_)
            | E::NamespaceNotFound(_)
            | E::HostNotFound(_)
            | E::NotListening(_)
            | E::ReferralNotFound(_) => INVALID_PARAMS,
            E::InvalidNqn(_) | E::InvalidParam(_) | E::NsidInUse(_) | E::TooManyNamespaces(_) | E::NoTransport(_) => {
                INVALID_PARAMS
            }
            E::Listen { .. } => INTERNAL_ERROR,
            // A PTPL file that cannot be read or belongs to another namespace (SPDK: -EINVAL).
            E::Ptpl(_) => INVALID_PARAMS,
            E::Bdev(b) => return b.into(),
        };
        RpcError::new(code, e.to_string())
    }
}

impl From<&nvmf::bdev::BdevError> for RpcError {
    fn from(e: &nvmf::bdev::BdevError) -> Self {
        use nvmf::bdev::BdevError as B;
        let code = match e {
            B::InvalidParam(_) => EINVAL,
            B::Io { source, .. } => source.raw_os_error().map(|n| -n).unwrap_or(INTERNAL_ERROR),
            B::NoMemory(_) => ENOMEM,
        };
        RpcError::new(code, e.to_string())
    }
}

impl From<nvmf::bdev::BdevError> for RpcError {
    fn from(e: nvmf::bdev::BdevError) -> Self {
        (&e).into()
    }
}
