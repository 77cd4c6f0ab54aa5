//! The process logger, controllable at run time like SPDK's log: `log_set_level` (the most
//! verbose level printed) and `log_set_flag` (SPDK's per-component debug flags: DEBUG records of
//! that component are printed whatever the level). It wraps `env_logger`, so `RUST_LOG` keeps
//! setting the start-up filter.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// SPDK log flags we have, and the Rust module paths each one covers.
pub const FLAGS: &[(&str, &[&str])] = &[
    ("nvmf", &["nvmf::cmd", "nvmf::ctrlr", "nvmf::queue", "nvmf::subsystem", "nvmf::target", "nvmf::poll_group"]),
    ("nvmf_tcp", &["nvmf::transport::tcp"]),
    ("rdma", &["nvmf::transport::rdma"]),
    ("nvmf_auth", &["nvmf::auth", "nvmf::cmd::auth"]),
    ("bdev", &["nvmf::bdev"]),
    ("nvme", &["nvme_driver"]),
    ("rpc", &["nvmf_tgt::rpc", "nvmf_tgt::config"]),
    ("reactor", &["nvmf_tgt::reactor"]),
];

/// SPDK's log level names, most severe first, and the `log` filter each one means.
pub const LEVELS: &[(&str, LevelFilter)] = &[
    ("DISABLED", LevelFilter::Off),
    ("ERROR", LevelFilter::Error),
    ("WARNING", LevelFilter::Warn),
    ("NOTICE", LevelFilter::Info),
    ("INFO", LevelFilter::Info),
    ("DEBUG", LevelFilter::Debug),
];

/// Run-time log settings shared between the logger and the RPC methods.
#[derive(Debug)]
pub struct LogControl {
    /// Index into `LEVELS`.
    level: AtomicUsize,
    /// Bit i: `FLAGS[i]` is set.
    flags: AtomicU32,
}

impl LogControl {
    pub fn new(level: LevelFilter) -> Self {
        let idx = LEVELS.iter().rposition(|(_, l)| *l == level).unwrap_or(3);
        LogControl { level: AtomicUsize::new(idx), flags: AtomicU32::new(0) }
    }

    pub fn level_name(&self) -> &'static str {
        LEVELS[self.level.load(Ordering::Relaxed).min(LEVELS.len() - 1)].0
    }

    /// Set the level by SPDK name (any case); false for an unknown name.
    pub fn set_level(&self, name: &str) -> bool {
        let Some(i) = LEVELS.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) else { return false };
        self.level.store(i, Ordering::Relaxed);
        self.update_max();
        true
    }

    /// Set or clear a flag by name ("all" for every flag); false for an unknown flag.
    pub fn set_flag(&self, name: &str, on: bool) -> bool {
        let mask = if name == "all" {
            (1u32 << FLAGS.len()) - 1
        } else {
            match FLAGS.iter().position(|(f, _)| *f == name) {
                Some(i) => 1 << i,
                None => return false,
            }
        };
        if on {
            self.flags.fetch_or(mask, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!mask, Ordering::Relaxed);
        }
        self.update_max();
        true
    }

    /// Every flag and whether it is set (SPDK's `log_get_flags` shape).
    pub fn flags(&self) -> Vec<(&'static str, bool)> {
        let f = self.flags.load(Ordering::Relaxed);
        FLAGS.iter().enumerate().map(|(i, (n, _))| (*n, f & (1 << i) != 0)).collect()
    }

    fn level(&self) -> LevelFilter {
        LEVELS[self.level.load(Ordering::Relaxed).min(LEVELS.len() - 1)].1
    }

    /// Whether a DEBUG record of `target` passes because of a flag.
    fn flagged(&self, target: &str) -> bool {
        let f = self.flags.load(Ordering::Relaxed);
        f != 0
            && FLAGS.iter().enumerate().any(|(i, (_, mods))| {
                f & (1 << i) != 0
                    && mods.iter().any(|m| target == *m || target.strip_prefix(m).is_some_and(|r| r.starts_with("::")))
            })
    }

    /// The `log` crate's global filter: records above it are never even formatted.
    fn update_max(&self) {
        let flagged = if self.flags.load(Ordering::Relaxed) != 0 { LevelFilter::Debug } else { LevelFilter::Off };
        log::set_max_level(self.level().max(flagged));
    }
}

struct Logger {
    /// `RUST_LOG`'s filter: decides, unless a flag lets a DEBUG record through.
    filter: env_logger::Logger,
    /// Formats and writes whatever passed (accepts every level itself).
    out: env_logger::Logger,
    control: Arc<LogControl>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        (m.level() <= self.control.level() && self.filter.enabled(m))
            || (m.level() <= Level::Debug && self.control.flagged(m.target()))
    }
    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            self.out.log(r);
        }
    }
    fn flush(&self) {
        self.out.flush();
    }
}

/// Install the process logger (`RUST_LOG`, default "info") and return its run-time control.
pub fn init() -> Arc<LogControl> {
    let filter = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let out = env_logger::Builder::new().filter_level(LevelFilter::Trace).build();
    let control = Arc::new(LogControl::new(filter.filter()));
    let max = filter.filter();
    if log::set_boxed_logger(Box::new(Logger { filter, out, control: control.clone() })).is_ok() {
        log::set_max_level(max);
    }
    control
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_flags() {
        let c = LogControl::new(LevelFilter::Info);
        assert_eq!(c.level_name(), "INFO");
        assert!(c.set_level("error"));
        assert_eq!(c.level_name(), "ERROR");
        assert!(!c.set_level("LOUD"));
        assert!(!c.flagged("nvmf::transport::tcp::conn"));
        assert!(c.set_flag("nvmf_tcp", true));
        assert!(c.flagged("nvmf::transport::tcp::conn"));
        assert!(c.flagged("nvmf::transport::tcp"));
        assert!(!c.flagged("nvmf::transport::tcpx"));
        assert!(!c.flagged("nvmf::bdev::file"));
        assert!(!c.set_flag("nope", true));
        assert!(c.set_flag("all", true));
        assert!(c.flags().iter().all(|(_, on)| *on));
        assert!(c.set_flag("all", false));
        assert!(c.flags().iter().all(|(_, on)| !*on));
    }
}
