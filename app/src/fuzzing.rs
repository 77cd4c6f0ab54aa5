//! Entry point of the `json_rpc` fuzz target (`fuzz/`), also replayed by
//! `app/tests/fuzz_regressions.rs` in a normal `cargo test`.
//!
//! Input: one mode byte, then
//! - mode even: bytes written as they are to the JSON-RPC server (`rpc::RpcServer`, a real Unix
//!   socket polled from this thread) by one client, which then half-closes and reads every
//!   reply;
//! - mode odd: an SPDK JSON config document, applied with `config::apply` (what `--json FILE`
//!   does after reading the file), then `save_config`.
//!
//! Each input starts from a fresh `AppState`. Checks beyond "never panics": every reply is a
//! JSON-RPC 2.0 response object (`jsonrpc`, `id`, exactly one of `result` / `error` with an
//! integer `code` and a string `message`), there is at most one more reply than requests (a
//! parse error), the server closes the connection after the client's EOF, and `save_config`
//! succeeds on whatever state the input built.
//!
//! Kept inside the sandbox: `bdev_aio_create` always opens a 1 MiB scratch file,
//! `bdev_nvme_attach_controller` always uses the emulated controller (never VFIO), and
//! listeners bind 127.0.0.1.

use crate::state::AppState;
use crate::{config, rpc};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Polls after which a server that is still busy, or never closes the client, is reported.
const MAX_POLLS: usize = 100_000;

struct Sandbox {
    server: rpc::RpcServer,
    aio_file: PathBuf,
}

thread_local! {
    static SANDBOX: RefCell<Option<Sandbox>> = const { RefCell::new(None) };
}

fn with_sandbox<R>(f: impl FnOnce(&mut Sandbox) -> R) -> R {
    SANDBOX.with(|s| {
        let mut s = s.borrow_mut();
        let sb = s.get_or_insert_with(|| {
            let _ = env_logger::builder().is_test(true).try_init();
            let tag =
                format!("nvmf-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "");
            let dir = std::env::temp_dir();
            remove_stale(&dir);
            let aio_file = dir.join(format!("{tag}.img"));
            std::fs::File::create(&aio_file).and_then(|f| f.set_len(1 << 20)).expect("scratch file");
            let server = rpc::RpcServer::bind(&dir.join(format!("{tag}.sock"))).expect("bind the RPC socket");
            Sandbox { server, aio_file }
        });
        f(sb)
    })
}

/// Remove the scratch files and sockets of earlier runs whose process is gone (libFuzzer exits
/// without running thread-local destructors).
fn remove_stale(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("nvmf-fuzz-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Keep one request inside the sandbox (see the module documentation).
fn sanitize(req: &mut Value, aio_file: &str) {
    let Some(method) = req.get("method").and_then(Value::as_str).map(str::to_owned) else { return };
    let Some(params) = req.get_mut("params").and_then(Value::as_object_mut) else { return };
    match method.as_str() {
        "bdev_aio_create" => {
            params.insert("filename".into(), json!(aio_file));
        }
        "bdev_nvme_attach_controller" => {
            params.insert("traddr".into(), json!("emulated"));
        }
        _ => {}
    }
    if let Some(addr) = params.get_mut("listen_address").and_then(Value::as_object_mut) {
        if addr.contains_key("traddr") {
            addr.insert("traddr".into(), json!("127.0.0.1"));
        }
    }
}

/// What one input got (for checking that the seeds still get through).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Replies with a `result`.
    pub results: usize,
    /// Replies with an `error`.
    pub errors: usize,
    /// The config document applied without error.
    pub config_applied: bool,
}

/// Fuzz target `json_rpc` (see the module documentation).
pub fn json_rpc(data: &[u8]) -> Outcome {
    let Some((&mode, rest)) = data.split_first() else { return Outcome::default() };
    if mode & 1 == 0 {
        rpc_stream(rest)
    } else {
        config_doc(rest)
    }
}

/// The bytes a client sends: `data` itself, unless a request must be changed to stay in the
/// sandbox; then the requests as parsed, changed, followed by whatever did not parse.
fn sandboxed_stream(data: &[u8], aio_file: &str) -> (Vec<u8>, usize) {
    let mut it = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let mut values = Vec::new();
    let mut end = 0;
    while let Some(Ok(v)) = it.next() {
        end = it.byte_offset();
        values.push(v);
    }
    let n = values.len();
    let mut changed = false;
    for v in values.iter_mut() {
        let before = v.clone();
        sanitize(v, aio_file);
        changed |= *v != before;
    }
    if !changed {
        return (data.to_vec(), n);
    }
    let mut out = Vec::new();
    for v in &values {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(&data[end..]);
    (out, n)
}

/// Check one reply of the server; true for a `result`.
fn check_reply(v: &Value) -> bool {
    let o = v.as_object().unwrap_or_else(|| panic!("reply is not an object: {v}"));
    assert_eq!(o.get("jsonrpc"), Some(&json!("2.0")), "reply without jsonrpc 2.0: {v}");
    assert!(o.contains_key("id"), "reply without id: {v}");
    match (o.get("result"), o.get("error")) {
        (Some(_), None) => true,
        (None, Some(e)) => {
            assert!(e.get("code").is_some_and(Value::is_i64), "error without an integer code: {v}");
            assert!(e.get("message").is_some_and(Value::is_string), "error without a message: {v}");
            false
        }
        _ => panic!("reply needs exactly one of result and error: {v}"),
    }
}

fn rpc_stream(data: &[u8]) -> Outcome {
    with_sandbox(|sb| {
        let aio = sb.aio_file.to_string_lossy().into_owned();
        let (bytes, requests) = sandboxed_stream(data, &aio);
        let mut state = AppState::new(nvmf::Target::new());
        let mut c = UnixStream::connect(sb.server.path()).expect("connect to the RPC socket");
        c.set_nonblocking(true).expect("nonblocking");
        let mut replies = Vec::new();
        let mut buf = [0u8; 65536];
        let mut sent = 0;
        let mut eof = false;
        let mut polls = 0;
        while !eof {
            polls += 1;
            assert!(polls < MAX_POLLS, "the RPC server never closed the connection after EOF");
            if sent < bytes.len() {
                match c.write(&bytes[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => sent = bytes.len(), // the server closed: stop sending
                }
                if sent == bytes.len() {
                    let _ = c.shutdown(std::net::Shutdown::Write);
                }
            } else if sent == 0 {
                let _ = c.shutdown(std::net::Shutdown::Write);
            }
            sb.server.poll(&mut state);
            loop {
                match c.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => replies.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
        }
        let mut out = Outcome::default();
        for v in serde_json::Deserializer::from_slice(&replies).into_iter::<Value>() {
            let v = v.unwrap_or_else(|e| panic!("the server sent something that is not JSON: {e}"));
            if check_reply(&v) {
                out.results += 1;
            } else {
                out.errors += 1;
            }
        }
        let n = out.results + out.errors;
        assert!(n <= requests + 1, "{n} replies to {requests} requests");
        save_config(&mut state);
        out
    })
}

fn config_doc(data: &[u8]) -> Outcome {
    with_sandbox(|sb| {
        let Ok(mut doc) = serde_json::from_slice::<Value>(data) else { return Outcome::default() };
        let aio = sb.aio_file.to_string_lossy().into_owned();
        if let Some(subs) = doc.get_mut("subsystems").and_then(Value::as_array_mut) {
            for sub in subs {
                if let Some(cfg) = sub.get_mut("config").and_then(Value::as_array_mut) {
                    cfg.iter_mut().for_each(|e| sanitize(e, &aio));
                }
            }
        }
        let mut state = AppState::new(nvmf::Target::new());
        let applied = config::apply(&doc, &mut state);
        save_config(&mut state);
        Outcome { config_applied: applied.is_ok(), ..Default::default() }
    })
}

/// `save_config` works on any state RPC or a config file can build.
fn save_config(state: &mut AppState) {
    let saved = rpc::dispatch(state, "save_config", None).unwrap_or_else(|e| panic!("save_config failed: {e}"));
    assert!(saved.get("subsystems").is_some_and(Value::is_array), "save_config without subsystems: {saved}");
}
