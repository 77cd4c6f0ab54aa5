//! Running the built `nvmf_tgt` binary for integration tests: an ephemeral port (`--port 0`,
//! read back from the log), a temporary RPC socket, SIGTERM and a bounded wait for the exit.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const DEFAULT_NQN: &str = "nqn.2016-06.io.nvmf-rs:cnode1";

/// Tests share a 2-core machine and each target may busy-poll: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A unique path under the temp dir.
pub fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "nvmf-tgt-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running `nvmf_tgt` process (killed on drop if still running).
pub struct Tgt {
    child: Child,
    pub port: u16,
    pub rpc_socket: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Tgt {
    /// Start with `--port 0 -r <temp socket>` plus `extra`, and wait until it serves the
    /// embedded default.
    pub fn start(extra: &[&str]) -> Tgt {
        Self::start_until(extra, true)
    }

    /// Start with `--no-default` (port 0 unused) and wait until its reactors run.
    pub fn start_empty(extra: &[&str]) -> Tgt {
        let mut args = vec!["--no-default"];
        args.extend_from_slice(extra);
        Self::start_until(&args, false)
    }

    fn start_until(extra: &[&str], serving: bool) -> Tgt {
        let rpc_socket = temp_path("rpc.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_nvmf_tgt"))
            .args(["--port", "0", "-r"])
            .arg(&rpc_socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nvmf_tgt");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[nvmf_tgt] {line}");
                    if !serving && line.contains("reactor(s) on core(s)") {
                        let _ = tx.send(0);
                    }
                    if line.contains("] serving ") {
                        if let Some(p) = line.split("trsvcid:").nth(1).and_then(|r| r.split_whitespace().next()) {
                            if let Ok(p) = p.parse::<u16>() {
                                let _ = tx.send(p);
                            }
                        }
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nvmf_tgt did not report its port; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        Tgt { child, port, rpc_socket, log }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nvmf_tgt rpc -s <socket> ARGS...`: (exit code, stdout, stderr).
    pub fn rpc(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_nvmf_tgt"))
            .arg("rpc")
            .arg("-s")
            .arg(&self.rpc_socket)
            .args(args)
            .output()
            .expect("run nvmf_tgt rpc");
        let r = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        eprintln!("rpc {args:?} -> {}: {}{}", r.0, r.1, r.2);
        r
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many log lines contain `s`.
    pub fn count_log(&self, s: &str) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|l| l.contains(s)).count()
    }

    /// Wait (bounded) until at least `n` log lines contain `s` (the log is read by another
    /// thread, so a line the target printed may not be here yet). Returns the count.
    pub fn wait_count(&self, s: &str, n: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let c = self.count_log(s);
            if c >= n || Instant::now() >= end {
                return c;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait (bounded) until some log line contains `s`.
    pub fn wait_log(&self, s: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.count_log(s) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then expect a clean exit (code 0) within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) {
        self.signal("TERM");
        let started = Instant::now();
        let st = self.wait_exit(timeout);
        let st = st.unwrap_or_else(|| panic!("nvmf_tgt still running {timeout:?} after SIGTERM"));
        assert_eq!(st.code(), Some(0), "nvmf_tgt exit status {st:?} after SIGTERM; log:\n{}", self.log().join("\n"));
        eprintln!("nvmf_tgt exited 0 {:?} after SIGTERM", started.elapsed());
        // The reader thread may still be forwarding the last lines.
        let _ = self.wait_log("] stopped", Duration::from_secs(2));
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.rpc_socket);
    }
}

/// A temporary file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(tag: &str, len: u64) -> TempFile {
        let p = temp_path(tag);
        let f = std::fs::File::create(&p).expect("create temp file");
        f.set_len(len).expect("set_len");
        TempFile(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub use nvmf_test_support::pattern;
