//! A small JSON-RPC client: `nvmf_tgt rpc [-s SOCKET] [-t SECONDS] METHOD [--param value ...]
//! [--json '{...}']`. Prints the result as JSON, so no Python is needed.

use super::{RpcError, DEFAULT_SOCKET};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const USAGE: &str = "usage: nvmf_tgt rpc [-s SOCKET] [-t TIMEOUT_SECS] METHOD [--PARAM VALUE ...] [--json '{...}']
  --PARAM VALUE   a parameter; numbers become numbers, true/false booleans, {..}/[..] JSON;
                  dotted names nest: --listen_address.traddr 127.0.0.1; '-' in names becomes '_'
  --PARAM=VALUE   the same
  --str PARAM VALUE  a parameter that stays a string even if it looks like a number
  --json '{...}'  raw params object (merged with the --PARAM ones)
  -s SOCKET       RPC socket (default /var/tmp/spdk.sock)
  -t SECS         how long to wait for the answer (default 60)";

/// Why a call failed: the server's JSON-RPC error, or a transport problem.
#[derive(Debug)]
pub enum CallError {
    Rpc(RpcError),
    Io(std::io::Error),
    Protocol(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Rpc(e) => write!(f, "{e}"),
            CallError::Io(e) => write!(f, "{e}"),
            CallError::Protocol(m) => write!(f, "{m}"),
        }
    }
}

/// Send one request over a connected stream and wait for its response.
pub fn call_on(stream: &mut UnixStream, id: u64, method: &str, params: Option<Value>) -> Result<Value, CallError> {
    let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
    if let Some(p) = params {
        req["params"] = p;
    }
    stream.write_all(req.to_string().as_bytes()).map_err(CallError::Io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk).map_err(CallError::Io)?;
        if n == 0 {
            return Err(CallError::Protocol("connection closed before a response arrived".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        match it.next() {
            Some(Ok(resp)) => return response_value(resp),
            Some(Err(e)) if e.is_eof() => continue,
            Some(Err(e)) => return Err(CallError::Protocol(format!("bad response: {e}"))),
            None => continue,
        }
    }
}

fn response_value(mut resp: Value) -> Result<Value, CallError> {
    if let Some(e) = resp.get("error") {
        let code = e.get("code").and_then(Value::as_i64).unwrap_or(0) as i32;
        let message = e.get("message").and_then(Value::as_str).unwrap_or("").to_string();
        return Err(CallError::Rpc(RpcError::new(code, message)));
    }
    match resp.get_mut("result") {
        Some(r) => Ok(r.take()),
        None => Err(CallError::Protocol(format!("response without result or error: {resp}"))),
    }
}

/// Connect to `socket`, send one request, return its result.
pub fn call(socket: &Path, method: &str, params: Option<Value>, timeout: Duration) -> Result<Value, CallError> {
    let mut s = UnixStream::connect(socket).map_err(CallError::Io)?;
    s.set_read_timeout(Some(timeout)).map_err(CallError::Io)?;
    s.set_write_timeout(Some(timeout)).map_err(CallError::Io)?;
    call_on(&mut s, 1, method, params)
}

/// A command-line value: number, bool, null, JSON object/array, or string.
fn parse_value(s: &str) -> Value {
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = s.parse::<i64>() {
        return json!(n);
    }
    if let Ok(n) = s.parse::<u64>() {
        return json!(n);
    }
    if s.starts_with('{') || s.starts_with('[') {
        if let Ok(v) = serde_json::from_str(s) {
            return v;
        }
    }
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() && s.contains('.') {
            return json!(f);
        }
    }
    Value::String(s.to_string())
}

fn set_path(obj: &mut Map<String, Value>, key: &str, v: Value) -> Result<(), String> {
    let mut parts = key.split('.').map(|p| p.replace('-', "_")).collect::<Vec<_>>();
    let last = parts.pop().unwrap_or_default();
    let mut cur = obj;
    for p in parts {
        let e = cur.entry(p.clone()).or_insert_with(|| json!({}));
        cur = e.as_object_mut().ok_or_else(|| format!("--{key}: {p} is not an object"))?;
    }
    cur.insert(last, v);
    Ok(())
}

/// Parsed command line: socket, timeout, method, params.
pub(crate) fn parse_args(args: &[String]) -> Result<(String, Duration, String, Option<Value>), String> {
    let mut socket = DEFAULT_SOCKET.to_string();
    let mut timeout = Duration::from_secs(60);
    let mut method = None;
    let mut params = Map::new();
    let mut any = false;
    let mut i = 0;
    let next = |i: &mut usize, what: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or_else(|| format!("{what} needs a value"))
    };
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-s" | "--server" if method.is_none() => socket = next(&mut i, a)?,
            "-t" | "--timeout" if method.is_none() => {
                let v = next(&mut i, a)?;
                let secs: f64 = v.parse().map_err(|_| format!("bad timeout {v:?}"))?;
                timeout = Duration::from_secs_f64(secs.max(0.001));
            }
            "--json" => {
                let v = next(&mut i, a)?;
                let Value::Object(m) = serde_json::from_str(&v).map_err(|e| format!("--json: {e}"))? else {
                    return Err("--json needs a JSON object".into());
                };
                params.extend(m);
                any = true;
            }
            "--str" => {
                let k = next(&mut i, a)?;
                let v = next(&mut i, a)?;
                set_path(&mut params, &k, Value::String(v))?;
                any = true;
            }
            s if s.starts_with("--") && s.len() > 2 => {
                let body = &s[2..];
                let (k, v) = match body.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (body.to_string(), next(&mut i, a)?),
                };
                set_path(&mut params, &k, parse_value(&v))?;
                any = true;
            }
            s if method.is_none() && !s.starts_with('-') => method = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s:?}")),
        }
        i += 1;
    }
    let method = method.ok_or("no METHOD given")?;
    Ok((socket, timeout, method, any.then_some(Value::Object(params))))
}

/// `nvmf_tgt rpc ...`: `args` are the arguments after `rpc`. Returns the exit status.
pub fn client_main(args: Vec<String>) -> i32 {
    let (socket, timeout, method, params) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("nvmf_tgt rpc: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() { 0 } else { 2 };
        }
    };
    match call(Path::new(&socket), &method, params.clone(), timeout) {
        Ok(v) => {
            // A closed stdout (`| head`) is not an error of the call.
            let text = serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string());
            let _ = writeln!(std::io::stdout(), "{text}");
            0
        }
        Err(CallError::Rpc(e)) => {
            let body = json!({"code": e.code, "message": e.message});
            eprintln!(
                "request:\n{}",
                serde_json::to_string_pretty(&json!({"method": method, "params": params})).unwrap_or_default()
            );
            eprintln!(
                "Got JSON-RPC error response\nresponse:\n{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            1
        }
        Err(e) => {
            eprintln!("nvmf_tgt rpc: {socket}: {e}");
            1
        }
    }
}
