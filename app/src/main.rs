//! nvmf_tgt: serve NVMe over Fabrics (NVMe/TCP) from RAM, null or file bdevs.
//!
//! With no arguments it serves a 1 GiB RAM namespace as `nqn.2016-06.io.nvmf-rs:cnode1` on
//! 127.0.0.1:4420 (plus the discovery subsystem) until Ctrl-C.

mod config;
mod reactor;
mod rpc;
mod state;

use clap::Parser;
use nvmf::bdev::{Bdev, FileBdev, MallocBdev, NullBdev};
use nvmf::{NamespaceConfig, SubsystemConfig, Target, TcpTransport, TcpTransportOpts, TransportAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "nvmf_tgt", version, about = "NVMe over Fabrics target")]
struct Args {
    /// Address to listen on.
    #[arg(short = 'a', long, default_value = "127.0.0.1")]
    address: String,
    /// TCP port to listen on.
    #[arg(short = 'p', long, default_value_t = 4420)]
    port: u16,
    /// Subsystem NQN.
    #[arg(long, default_value = "nqn.2016-06.io.nvmf-rs:cnode1")]
    nqn: String,
    /// Backing: "malloc" (RAM), "null", or a file / block device path.
    #[arg(long, default_value = "malloc")]
    bdev: String,
    /// Size of a malloc or null bdev in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Logical block size in bytes.
    #[arg(long, default_value_t = 512)]
    block_size: u32,
    /// Allow only these host NQNs (repeatable); without it any host may connect.
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Sleep this many microseconds when a poll found no work (0 = always busy-poll).
    #[arg(long, default_value_t = 50)]
    idle_sleep_us: u64,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

fn make_bdev(args: &Args) -> Result<Arc<dyn Bdev>, nvmf::Error> {
    let blocks = args.size_mb * 1024 * 1024 / args.block_size as u64;
    Ok(match args.bdev.as_str() {
        "malloc" => Arc::new(MallocBdev::new("Malloc0", blocks, args.block_size)?),
        "null" => Arc::new(NullBdev::new("Null0", blocks, args.block_size)?),
        path => Arc::new(FileBdev::open("AIO0", path, args.block_size)?),
    })
}

fn run(args: Args) -> Result<(), nvmf::Error> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| nvmf::Error::InvalidParam(format!("signal handler: {e}")))?;
    }
    let mut target = Target::new();
    target.add_transport(Arc::new(TcpTransport::new(TcpTransportOpts::default())));
    let addr = TransportAddr::tcp(&args.address, args.port);
    target.listen(&addr)?;
    let addr = target.listen_addrs().pop().unwrap_or(addr);
    let mut cfg = SubsystemConfig::new(&args.nqn);
    cfg.allow_any_host = args.allow_hosts.is_empty();
    let sub = target.add_subsystem(cfg)?;
    for h in &args.allow_hosts {
        sub.add_host(h)?;
    }
    sub.add_listener(addr.clone())?;
    let bdev = make_bdev(&args)?;
    log::info!("bdev {}: {} blocks of {} bytes", bdev.name(), bdev.num_blocks(), bdev.block_size());
    sub.add_namespace(NamespaceConfig::new(bdev))?;
    log::info!("serving {} on {addr}; Ctrl-C to stop", args.nqn);

    let mut group = target.create_poll_group();
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        target.accept(|q| {
            log::info!("accepted {} on {}", q.peer(), q.listener());
            group.add(q)
        });
        if group.poll() == 0 {
            idle += 1;
            if args.idle_sleep_us > 0 && idle > 1000 {
                std::thread::sleep(Duration::from_micros(args.idle_sleep_us));
            }
        } else {
            idle = 0;
        }
    }
    log::info!("shutting down: disconnecting {} connections", group.num_connections());
    group.close_all();
    for _ in 0..100_000 {
        if group.num_connections() == 0 {
            break;
        }
        group.poll();
    }
    log::info!("stopped");
    Ok(())
}
