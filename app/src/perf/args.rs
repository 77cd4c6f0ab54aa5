//! Command line of nvmf-perf (flags as in SPDK's spdk_nvme_perf where they exist).

use clap::{Parser, ValueEnum};
use nvmf::host::HostTransport;
use std::net::SocketAddr;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "nvmf-perf",
    version,
    about = "NVMe/TCP and NVMe/RDMA benchmark client (IOPS, bandwidth, latency percentiles)",
    long_about = "NVMe/TCP and NVMe/RDMA benchmark client in the spirit of spdk_nvme_perf.\n\n\
        One thread per I/O queue pair (-c), each with its own TCP connection (or RDMA queue pair \
        with trtype:rdma), keeping -q commands in flight through the host's pipelined API.\n\n\
        --ceiling runs the same workload a second time against a trivial NVMe/TCP responder \
        (no NVMe processing, no bdev) and prints target IOPS / ceiling IOPS. \
        `nvmf-perf --ceiling-server ADDR` runs only that responder."
)]
pub struct Args {
    /// Transport ID: 'trtype:tcp traddr:127.0.0.1 trsvcid:4420 subnqn:NQN' (trtype tcp or rdma;
    /// rdma needs a build with `--features nvmf-tgt/rdma`).
    #[arg(
        short = 'r',
        long = "transport",
        default_value = "trtype:tcp traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.nvmf-rs:cnode1"
    )]
    pub trid: String,
    /// Commands in flight per queue pair.
    #[arg(short = 'q', long = "queue-depth", default_value_t = 32)]
    pub qd: usize,
    /// I/O size in bytes (a multiple of the block size).
    #[arg(short = 'o', long = "io-size", default_value_t = 4096)]
    pub io_size: usize,
    /// Workload.
    #[arg(short = 'w', long = "workload", value_enum, default_value_t = Workload::Randread)]
    pub workload: Workload,
    /// Read percentage for rw/randrw.
    #[arg(short = 'M', long = "rwmixread", default_value_t = 50)]
    pub read_pct: u32,
    /// Measured run time in seconds.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Queue pairs (one thread and one TCP connection each).
    #[arg(short = 'c', long = "qpairs", default_value_t = 1)]
    pub qpairs: usize,
    /// Pin the queue-pair threads to these cores, round-robin (e.g. `1` or `1,2-3`).
    #[arg(long)]
    pub cores: Option<String>,
    /// Namespaces to spread I/O over (the first N active ones).
    #[arg(short = 'n', long = "namespaces", default_value_t = 1)]
    pub namespaces: usize,
    /// Ask for header digests.
    #[arg(long)]
    pub hdgst: bool,
    /// Ask for data digests.
    #[arg(long)]
    pub ddgst: bool,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Write a pattern, check it on read (disjoint LBA ranges per queue pair; prefills them).
    #[arg(long)]
    pub verify: bool,
    /// Limit the LBA range used, in MiB per namespace (default: all of it).
    #[arg(long = "range-mb")]
    pub range_mb: Option<u64>,
    /// Print the result as JSON (progress lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also measure the ceiling (trivial responder) and print target/ceiling.
    #[arg(long)]
    pub ceiling: bool,
    /// Use a responder started elsewhere (`nvmf-perf --ceiling-server ADDR`) for --ceiling
    /// instead of one on a thread of this process.
    #[arg(long = "ceiling-addr", value_name = "ADDR")]
    pub ceiling_addr: Option<SocketAddr>,
    /// Core for the in-process responder thread (use the target's core).
    #[arg(long = "ceiling-core", value_name = "CORE")]
    pub ceiling_core: Option<usize>,
    /// Only run the trivial responder on ADDR (until killed).
    #[arg(long = "ceiling-server", value_name = "ADDR")]
    pub ceiling_server: Option<SocketAddr>,
    /// Run target (and ceiling) phases this many times, alternating; the efficiency is the
    /// median of the per-repetition ratios (tables show the last repetition).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Read,
    Write,
    Randread,
    Randwrite,
    Rw,
    Randrw,
}

impl Workload {
    pub fn random(self) -> bool {
        matches!(self, Workload::Randread | Workload::Randwrite | Workload::Randrw)
    }
    /// Percentage of reads.
    pub fn read_pct(self, mix: u32) -> u32 {
        match self {
            Workload::Read | Workload::Randread => 100,
            Workload::Write | Workload::Randwrite => 0,
            Workload::Rw | Workload::Randrw => mix.min(100),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::Randread => "randread",
            Workload::Randwrite => "randwrite",
            Workload::Rw => "rw",
            Workload::Randrw => "randrw",
        }
    }
}

/// A parsed transport ID.
#[derive(Debug, Clone)]
pub struct Trid {
    /// `trtype:tcp` or `trtype:rdma` (NVMe/RDMA needs nvmf-tgt's `rdma` feature).
    pub trtype: HostTransport,
    pub addr: SocketAddr,
    pub subnqn: String,
}

pub fn parse_trid(s: &str) -> Result<Trid, String> {
    let (mut traddr, mut trsvcid, mut subnqn, mut trtype) = (None, "4420".to_string(), None, HostTransport::Tcp);
    for kv in s.split_whitespace() {
        let (k, v) = kv.split_once(':').ok_or_else(|| format!("bad transport ID field {kv:?}"))?;
        match k.to_ascii_lowercase().as_str() {
            "trtype" => trtype = v.parse()?,
            "adrfam" if v.eq_ignore_ascii_case("ipv4") || v.eq_ignore_ascii_case("ipv6") => {}
            "traddr" => traddr = Some(v.to_string()),
            "trsvcid" => trsvcid = v.to_string(),
            "subnqn" => subnqn = Some(v.to_string()),
            _ => return Err(format!("unknown transport ID key {k:?}")),
        }
    }
    let traddr = traddr.ok_or("transport ID needs traddr")?;
    let host = if traddr.contains(':') { format!("[{traddr}]") } else { traddr };
    let addr = format!("{host}:{trsvcid}").parse().map_err(|e| format!("address {host}:{trsvcid}: {e}"))?;
    Ok(Trid { trtype, addr, subnqn: subnqn.unwrap_or_else(|| "nqn.2016-06.io.nvmf-rs:cnode1".into()) })
}

/// `1,3-5` -> [1, 3, 4, 5].
pub fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad core list {s:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                v.extend(a..=b);
            }
            None => v.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    if v.is_empty() {
        return Err(format!("empty core list {s:?}"));
    }
    Ok(v)
}

/// Pin the calling thread to `core` (best effort, through nix's safe sched_setaffinity).
pub fn pin(core: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(core).is_ok() && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trid() {
        let t = parse_trid("trtype:tcp traddr:127.0.0.1 trsvcid:4421 subnqn:nqn.x:y").unwrap();
        assert_eq!(t.addr.port(), 4421);
        assert_eq!(t.subnqn, "nqn.x:y");
        assert_eq!(t.trtype, HostTransport::Tcp);
        let r = parse_trid("trtype:RDMA adrfam:ipv4 traddr:10.0.2.15 trsvcid:4420 subnqn:nqn.x:r").unwrap();
        assert_eq!((r.trtype, r.addr.port(), r.subnqn.as_str()), (HostTransport::Rdma, 4420, "nqn.x:r"));
        assert!(parse_trid("trtype:fc traddr:1.2.3.4").is_err());
        assert_eq!(parse_cores("1,3-4").unwrap(), vec![1, 3, 4]);
    }
}
