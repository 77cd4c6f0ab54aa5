//! Command line: SPDK-compatible application flags (`-m`, `--json`, `-r`) plus the options of
//! the embedded quick-start configuration.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Default JSON-RPC socket, as SPDK's.
pub const DEFAULT_RPC_SOCKET: &str = "/var/tmp/spdk.sock";

#[derive(Parser, Debug)]
#[command(
    name = "nvmf_tgt",
    version,
    about = "NVMe over Fabrics target",
    long_about = "NVMe over Fabrics (NVMe/TCP) target.\n\n\
        With no --json and no --no-default it serves the embedded default: a 1 GiB RAM \
        namespace (Malloc0) as nqn.2016-06.io.nvmf-rs:cnode1 on 127.0.0.1:4420, any host \
        allowed. --json FILE loads an SPDK JSON config instead; the JSON-RPC socket (-r) \
        configures it at run time.\n\n\
        `nvmf_tgt rpc METHOD [--param value ...]` calls a method on a running target \
        (`nvmf_tgt rpc --help`).",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    // ---- Application (SPDK-compatible) ----
    /// Cores to run reactors on, as a hex mask (`0x3`) or an SPDK list (`[0,1]`, `[0-3]`).
    #[arg(short = 'm', long = "cpumask", conflicts_with = "cpus", help_heading = "Application")]
    pub cpumask: Option<String>,
    /// Cores to run reactors on, as a list (`0,1`, `0-3,8`). Default: core 0 only.
    #[arg(long, help_heading = "Application")]
    pub cpus: Option<String>,
    /// SPDK JSON config file to load at start (replaces the embedded default).
    #[arg(long = "json", value_name = "FILE", help_heading = "Application")]
    pub json: Option<PathBuf>,
    /// JSON-RPC Unix socket path.
    #[arg(short = 'r', long = "rpc-socket", value_name = "PATH", default_value = DEFAULT_RPC_SOCKET, help_heading = "Application")]
    pub rpc_socket: PathBuf,
    /// How new connections are spread over reactors.
    #[arg(long, value_enum, default_value_t = Placement::RoundRobin, help_heading = "Application")]
    pub placement: Placement,
    /// Sleep this many microseconds when a reactor poll found no work (after a short spin);
    /// 0 = busy-poll (the default, lowest latency, one full core per reactor).
    #[arg(
        long = "idle-backoff-us",
        alias = "idle-sleep-us",
        value_name = "N",
        default_value_t = 0,
        help_heading = "Application"
    )]
    pub idle_backoff_us: u64,
    /// Do not create the embedded default subsystem (configure over RPC instead).
    #[arg(long = "no-default", help_heading = "Application")]
    pub no_default: bool,
    /// Wait for `framework_start_init` over RPC before starting reactors (SPDK's
    /// --wait-for-rpc): only start-up methods (`*_set_options`, `log_*`, `rpc_get_methods`, ...)
    /// are served until then. Implies --no-default.
    #[arg(long = "wait-for-rpc", help_heading = "Application")]
    pub wait_for_rpc: bool,
    /// Accepted for SPDK script compatibility and ignored: shared memory id.
    #[arg(short = 'i', long = "shm-id", hide = true)]
    pub shm_id: Option<String>,
    /// Accepted for SPDK script compatibility and ignored: tracepoint group mask.
    #[arg(short = 'e', long = "tpoint-group-mask", hide = true)]
    pub tpoint_group_mask: Option<String>,
    /// Accepted for SPDK script compatibility and ignored: memory size in MiB.
    #[arg(short = 's', long = "mem-size", hide = true)]
    pub mem_size: Option<String>,

    // ---- Embedded default configuration (when no --json) ----
    /// Address to listen on.
    #[arg(short = 'a', long, default_value = "127.0.0.1", help_heading = "Embedded default")]
    pub address: String,
    /// TCP port to listen on (0: an ephemeral port, logged at start).
    #[arg(short = 'p', long, default_value_t = 4420, help_heading = "Embedded default")]
    pub port: u16,
    /// Subsystem NQN.
    #[arg(long, default_value = "nqn.2016-06.io.nvmf-rs:cnode1", help_heading = "Embedded default")]
    pub nqn: String,
    /// Backing: "malloc" (RAM), "null", or a file / block device path.
    #[arg(long, default_value = "malloc", help_heading = "Embedded default")]
    pub bdev: String,
    /// Size of a malloc or null bdev in MiB.
    #[arg(long, default_value_t = 1024, help_heading = "Embedded default")]
    pub size_mb: u64,
    /// Logical block size in bytes.
    #[arg(long, default_value_t = 512, help_heading = "Embedded default")]
    pub block_size: u32,
    /// Allow only these host NQNs (repeatable); without it any host may connect.
    #[arg(long = "allow-host", help_heading = "Embedded default")]
    pub allow_hosts: Vec<String>,
}

/// Subcommands (without one, `nvmf_tgt` runs the target).
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Command {
    /// JSON-RPC client: call METHOD on a running nvmf_tgt and print the result (like SPDK's
    /// scripts/rpc.py). `nvmf_tgt rpc --help` lists its options.
    #[command(disable_help_flag = true)]
    Rpc {
        /// [-s SOCKET] [-t SECS] METHOD [--PARAM VALUE ...], passed to the RPC client as is.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// Reactor choice for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    /// Each reactor in turn.
    RoundRobin,
    /// The reactor with the fewest connections.
    LeastLoaded,
}

impl Args {
    /// The selected cores, sorted and deduplicated (core 0 when none was given).
    pub fn cores(&self) -> Result<Vec<usize>, String> {
        let mut cores = match (&self.cpumask, &self.cpus) {
            (Some(m), _) => parse_cpumask(m)?,
            (None, Some(l)) => parse_core_list(l)?,
            (None, None) => vec![0],
        };
        cores.sort_unstable();
        cores.dedup();
        if cores.is_empty() {
            return Err("no cores selected".into());
        }
        Ok(cores)
    }
}

/// Highest core number accepted (CPU_SETSIZE).
const MAX_CORE: usize = 1023;

/// SPDK's `-m`: a hex mask with or without `0x`, or a bracketed core list.
pub fn parse_cpumask(s: &str) -> Result<Vec<usize>, String> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return parse_core_list(inner);
    }
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("invalid cpumask {s:?}: expected hex like 0x3 or a list like [0,1]"));
    }
    let mut cores = Vec::new();
    for (i, c) in hex.chars().rev().enumerate() {
        let nibble = c.to_digit(16).unwrap_or(0) as usize;
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                let core = i * 4 + bit;
                if core > MAX_CORE {
                    return Err(format!("cpumask {s:?} names core {core}, above {MAX_CORE}"));
                }
                cores.push(core);
            }
        }
    }
    if cores.is_empty() {
        return Err(format!("cpumask {s:?} selects no core"));
    }
    Ok(cores)
}

/// `0,1,4-7`.
pub fn parse_core_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| -> Result<usize, String> {
            let n: usize = x.trim().parse().map_err(|_| format!("invalid core {x:?} in {s:?}"))?;
            if n > MAX_CORE {
                return Err(format!("core {n} is above {MAX_CORE}"));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("invalid core range {part:?}"));
                }
                cores.extend(a..=b);
            }
            None => cores.push(num(part)?),
        }
    }
    if cores.is_empty() {
        return Err(format!("core list {s:?} selects no core"));
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpumask_forms() {
        assert_eq!(parse_cpumask("0x3").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpumask("3").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpumask("0x10").unwrap(), vec![4]);
        assert_eq!(parse_cpumask("[0,2-3]").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpumask("0x0").is_err());
        assert!(parse_cpumask("0xg").is_err());
        assert!(parse_cpumask("").is_err());
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_core_list("0-2, 5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_core_list("3-1").is_err());
        assert!(parse_core_list("x").is_err());
        assert!(parse_core_list("2000").is_err());
    }

    #[test]
    fn defaults_and_conflicts() {
        let a = Args::try_parse_from(["nvmf_tgt"]).unwrap();
        assert_eq!(a.cores().unwrap(), vec![0]);
        assert_eq!(a.placement, Placement::RoundRobin);
        assert_eq!(a.idle_backoff_us, 0);
        assert_eq!(a.rpc_socket, PathBuf::from(DEFAULT_RPC_SOCKET));
        let a = Args::try_parse_from(["nvmf_tgt", "-m", "0x3", "--placement", "least-loaded", "-r", "/tmp/x.sock"])
            .unwrap();
        assert_eq!(a.cores().unwrap(), vec![0, 1]);
        assert_eq!(a.placement, Placement::LeastLoaded);
        assert!(Args::try_parse_from(["nvmf_tgt", "-m", "0x3", "--cpus", "0"]).is_err());
        let a = Args::try_parse_from(["nvmf_tgt", "--cpus", "1,0,1"]).unwrap();
        assert_eq!(a.cores().unwrap(), vec![0, 1]);
        assert_eq!(a.command, None);
    }

    #[test]
    fn rpc_subcommand_passes_its_arguments_through() {
        let a = Args::try_parse_from([
            "nvmf_tgt",
            "rpc",
            "-s",
            "/tmp/x.sock",
            "bdev_malloc_create",
            "--num-blocks",
            "8",
            "-h",
        ])
        .unwrap();
        let want = ["-s", "/tmp/x.sock", "bdev_malloc_create", "--num-blocks", "8", "-h"];
        assert_eq!(a.command, Some(Command::Rpc { args: want.iter().map(|s| s.to_string()).collect() }));
        let a = Args::try_parse_from(["nvmf_tgt", "rpc", "--help"]).unwrap();
        assert_eq!(a.command, Some(Command::Rpc { args: vec!["--help".into()] }));
        let a = Args::try_parse_from(["nvmf_tgt", "rpc"]).unwrap();
        assert_eq!(a.command, Some(Command::Rpc { args: vec![] }));
    }
}
