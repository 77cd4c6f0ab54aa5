//! JSON-RPC 2.0 server on a Unix socket, serving SPDK's method names and parameters so that
//! SPDK's `scripts/rpc.py` works. Polled (non-blocking) from the control thread.
//!
//! Every method validates its parameters completely before changing anything, so a request
//! that fails leaves the state as it was.

mod app;
mod bdev;
pub mod client;
mod compat;
pub mod error;
mod framework;
mod globals;
mod keyring;
mod nvmf;
mod nvmf_query;
mod nvmf_referral;

pub use client::client_main;
pub use error::RpcError;

use crate::state::AppState;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Default RPC socket path (SPDK's).
pub const DEFAULT_SOCKET: &str = "/var/tmp/spdk.sock";

/// Largest request accepted; a client sending more without completing a JSON value is dropped.
const MAX_REQUEST: usize = 32 << 20;

type Handler = fn(&mut AppState, Option<Value>) -> Result<Value, RpcError>;

/// Every method served, in `rpc_get_methods` order.
const METHODS: &[(&str, Handler)] = &[
    ("bdev_malloc_create", bdev::malloc_create),
    ("bdev_malloc_delete", bdev::malloc_delete),
    ("bdev_null_create", bdev::null_create),
    ("bdev_null_delete", bdev::null_delete),
    ("bdev_aio_create", bdev::aio_create),
    ("bdev_aio_delete", bdev::aio_delete),
    ("bdev_nvme_attach_controller", bdev::nvme_attach_controller),
    ("bdev_nvme_detach_controller", bdev::nvme_detach_controller),
    ("bdev_get_bdevs", bdev::get_bdevs),
    ("bdev_get_iostat", bdev::get_iostat),
    ("nvmf_create_transport", nvmf::create_transport),
    ("nvmf_get_transports", nvmf::get_transports),
    ("nvmf_create_subsystem", nvmf::create_subsystem),
    ("nvmf_delete_subsystem", nvmf::delete_subsystem),
    ("nvmf_subsystem_add_ns", nvmf::add_ns),
    ("nvmf_subsystem_remove_ns", nvmf::remove_ns),
    ("nvmf_ns_add_host", nvmf::ns_add_host),
    ("nvmf_ns_remove_host", nvmf::ns_remove_host),
    ("nvmf_discovery_add_referral", nvmf_referral::add_referral),
    ("nvmf_discovery_remove_referral", nvmf_referral::remove_referral),
    ("nvmf_discovery_get_referrals", nvmf_referral::get_referrals),
    ("nvmf_subsystem_add_listener", nvmf::add_listener),
    ("nvmf_subsystem_listener_set_ana_state", nvmf::listener_set_ana_state),
    ("nvmf_subsystem_remove_listener", nvmf::remove_listener),
    ("nvmf_subsystem_add_host", nvmf::add_host),
    ("nvmf_subsystem_remove_host", nvmf::remove_host),
    ("nvmf_subsystem_allow_any_host", nvmf::allow_any_host),
    ("nvmf_get_subsystems", nvmf::get_subsystems),
    ("nvmf_get_stats", nvmf::get_stats),
    ("framework_get_reactors", framework::get_reactors),
    ("save_config", framework::save_config),
    ("framework_get_subsystems", framework::get_subsystems),
    ("keyring_file_add_key", keyring::file_add_key),
    ("keyring_file_remove_key", keyring::file_remove_key),
    ("keyring_get_keys", keyring::get_keys),
    ("nvmf_subsystem_set_keys", nvmf::set_keys),
    ("nvmf_subsystem_get_controllers", nvmf_query::get_controllers),
    ("nvmf_subsystem_get_qpairs", nvmf_query::get_qpairs),
    ("nvmf_subsystem_get_listeners", nvmf_query::get_listeners),
    ("nvmf_get_config", nvmf_query::get_config),
    ("framework_start_init", app::start_init),
    ("framework_wait_init", app::wait_init),
    ("spdk_kill_instance", app::kill_instance),
    ("log_set_level", app::set_level),
    ("log_get_level", app::get_level),
    ("log_set_print_level", app::set_level),
    ("log_get_print_level", app::get_level),
    ("log_set_flag", app::set_flag),
    ("log_clear_flag", app::clear_flag),
    ("log_get_flags", app::get_flags),
    ("framework_get_config", framework::get_config),
    ("spdk_get_version", framework::get_version),
    ("rpc_get_methods", framework::get_methods),
];

/// Names of every method served.
pub fn method_names() -> impl Iterator<Item = &'static str> {
    METHODS.iter().map(|(n, _)| *n).chain(globals::GLOBALS.iter().map(|(n, _)| *n))
}

/// Whether `method` is served.
pub fn is_method(method: &str) -> bool {
    method_names().any(|n| n == method)
}

/// Names of the methods that may be called now (`rpc_get_methods` with `current`).
pub fn current_method_names(state: &AppState) -> impl Iterator<Item = &'static str> + '_ {
    method_names().filter(move |m| app::allowed_now(state, m).is_ok())
}

/// Run one method against the state. `params` is the request's `params` member, if any.
pub fn dispatch(state: &mut AppState, method: &str, mut params: Option<Value>) -> Result<Value, RpcError> {
    let handler = METHODS.iter().find(|(n, _)| *n == method).map(|(_, h)| *h);
    if handler.is_none() && !globals::is_global(method) {
        return Err(RpcError::new(error::METHOD_NOT_FOUND, format!("Method not found: {method}")));
    }
    if let Some(p) = &params {
        if !p.is_object() {
            return Err(RpcError::invalid_params("params must be a JSON object"));
        }
    }
    let r =
        app::allowed_now(state, method).and_then(|()| compat::strip_default_only(method, &mut params)).and_then(|()| {
            match handler {
                Some(h) => h(state, params),
                None => globals::call(state, method, params),
            }
        });
    match &r {
        Ok(_) => log::debug!("rpc {method}: ok"),
        Err(e) => log::info!("rpc {method}: {e}"),
    }
    r
}

/// Answer one parsed JSON-RPC request: `None` for a notification (no `id`).
pub fn handle_request(state: &mut AppState, req: Value) -> Option<Value> {
    let Value::Object(mut obj) = req else {
        let e = RpcError::new(
            error::INVALID_REQUEST,
            "Invalid request: expected a JSON object (batches are not supported)",
        );
        return Some(json!({"jsonrpc": "2.0", "id": null, "error": e.to_json()}));
    };
    let id = obj.remove("id");
    let reply = |id: Option<Value>, r: Result<Value, RpcError>| {
        let id = id.unwrap_or(Value::Null);
        Some(match r {
            Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
        })
    };
    if let Some(v) = &id {
        if !(v.is_number() || v.is_string() || v.is_null()) {
            return reply(None, Err(RpcError::new(error::INVALID_REQUEST, "Invalid request: bad id")));
        }
    }
    let invalid = |m: &str| Err(RpcError::new(error::INVALID_REQUEST, format!("Invalid request: {m}")));
    let r = match (obj.get("jsonrpc"), obj.get("method")) {
        (Some(Value::String(v)), _) if v != "2.0" => invalid("jsonrpc must be \"2.0\""),
        (Some(v), _) if !v.is_string() => invalid("jsonrpc must be \"2.0\""),
        (None, _) => invalid("missing \"jsonrpc\": \"2.0\""),
        (_, None) => invalid("missing method"),
        (_, Some(Value::String(m))) => {
            let m = m.clone();
            if let Some(extra) = obj.keys().find(|k| !["jsonrpc", "method", "params"].contains(&k.as_str())) {
                invalid(&format!("unknown member {extra:?}"))
            } else {
                let params = obj.remove("params");
                let r = dispatch(state, &m, params);
                // A notification (no id) gets no response.
                id.as_ref()?;
                r
            }
        }
        (_, Some(_)) => invalid("method must be a string"),
    };
    reply(id, r)
}

/// The params of methods that take nothing but SPDK's `tgt_name` (one target: ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TgtParams {
    #[allow(dead_code)]
    tgt_name: Option<String>,
}

/// Deserialize a method's params (an absent `params` counts as `{}`), mapping serde's messages
/// (unknown field, missing field, invalid type) to -32602.
pub(crate) fn parse_params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
    let v = params.unwrap_or_else(|| json!({}));
    serde_json::from_value(v).map_err(|e| RpcError::invalid_params(format!("Invalid parameters: {e}")))
}

/// A string that may also be written as a JSON number (`"trsvcid": 4420`).
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        S(String),
        N(serde_json::Number),
    }
    Ok(match S::deserialize(d).map_err(|_| serde::de::Error::custom("expected a string or a number"))? {
        S::S(s) => s,
        S::N(n) => n.to_string(),
    })
}

pub(crate) fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string_or_number(d).map(Some)
}

/// Uppercase hex, as SPDK prints NGUIDs and EUI-64s.
pub(crate) fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Parse `n` bytes of hex (dashes ignored, as SPDK's NGUID parser does).
pub(crate) fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], RpcError> {
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    let bad = || RpcError::invalid_params(format!("Invalid {what} {s:?}: expected {} hex digits", 2 * N));
    if digits.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks(2).enumerate() {
        let txt = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(txt, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Lowercase dashed UUID.
pub(crate) fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Parse a dashed (8-4-4-4-12) UUID.
pub(crate) fn parse_uuid(s: &str) -> Result<[u8; 16], RpcError> {
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] {
        return Err(RpcError::invalid_params(format!(
            "Invalid UUID {s:?}: expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
        )));
    }
    parse_hex::<16>(s, "UUID")
}

/// One RPC client connection.
struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Stop reading (EOF or a fatal parse error); dropped once `outbuf` is flushed.
    closing: bool,
    /// Parsed requests not answered yet (behind a framework_wait_init before init).
    held: std::collections::VecDeque<Value>,
}

/// The RPC listener and its client connections.
pub struct RpcServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
}

impl RpcServer {
    /// Bind `path` (removing a stale socket file).
    pub fn bind(path: &Path) -> std::io::Result<RpcServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another process is serving RPC on this socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        log::info!("JSON-RPC server listening on {}", path.display());
        Ok(RpcServer { listener, path: path.to_path_buf(), clients: Vec::new() })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept clients and answer complete requests without blocking. Returns requests handled.
    pub fn poll(&mut self, state: &mut AppState) -> usize {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            stream,
                            inbuf: Vec::new(),
                            outbuf: Vec::new(),
                            closing: false,
                            held: Default::default(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("rpc accept: {e}");
                    break;
                }
            }
        }
        let mut handled = 0;
        self.clients.retain_mut(|c| {
            handled += c.poll(state);
            c.flush() && !(c.closing && c.outbuf.is_empty())
        });
        handled
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Client {
    /// Read what is available and answer every complete request in it.
    fn poll(&mut self, state: &mut AppState) -> usize {
        let mut buf = [0u8; 16384];
        while !self.closing {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closing = true,
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.closing = true;
                    self.inbuf.clear();
                }
            }
        }
        let mut handled = 0;
        let mut consumed = 0;
        let mut requests = Vec::new();
        let mut parse_error = None;
        let mut iter = serde_json::Deserializer::from_slice(&self.inbuf).into_iter::<Value>();
        loop {
            match iter.next() {
                None => {
                    consumed = self.inbuf.len();
                    break;
                }
                Some(Ok(req)) => {
                    consumed = iter.byte_offset();
                    requests.push(req);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    parse_error = Some(e.to_string());
                    consumed = self.inbuf.len();
                    break;
                }
            }
        }
        // framework_wait_init before framework_start_init is answered only once the framework
        // is initialized; requests after it on this connection wait behind it (answers stay in
        // order).
        self.held.extend(requests);
        while let Some(req) = self.held.front() {
            if !state.init_done && req.get("method").and_then(Value::as_str) == Some("framework_wait_init") {
                break;
            }
            let req = self.held.pop_front().expect("front exists");
            handled += 1;
            if let Some(resp) = handle_request(state, req) {
                self.queue(&resp);
            }
        }
        if let Some(e) = parse_error {
            // Like SPDK: answer with a parse error and close the connection.
            let err = RpcError::new(error::PARSE_ERROR, format!("Parse error: {e}"));
            self.queue(&json!({"jsonrpc": "2.0", "id": null, "error": err.to_json()}));
            self.closing = true;
            handled += 1;
        }
        self.inbuf.drain(..consumed);
        if self.inbuf.len() > MAX_REQUEST {
            let err = RpcError::new(error::PARSE_ERROR, "Parse error: request too large");
            self.queue(&json!({"jsonrpc": "2.0", "id": null, "error": err.to_json()}));
            self.inbuf.clear();
            self.closing = true;
        }
        if self.closing && !self.inbuf.iter().all(u8::is_ascii_whitespace) {
            // EOF in the middle of a request: nothing to answer it on reliably, but try.
            let err = RpcError::new(error::PARSE_ERROR, "Parse error: incomplete request at end of input");
            self.queue(&json!({"jsonrpc": "2.0", "id": null, "error": err.to_json()}));
            self.inbuf.clear();
        }
        handled
    }

    fn queue(&mut self, v: &Value) {
        self.outbuf.extend_from_slice(v.to_string().as_bytes());
        self.outbuf.push(b'\n');
    }

    /// Write what can be written; false when the connection is dead.
    fn flush(&mut self) -> bool {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
