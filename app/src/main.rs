//! nvmf_tgt: serve NVMe over Fabrics (NVMe/TCP) from RAM, null or file bdevs.
//!
//! With no arguments it serves a 1 GiB RAM namespace as `nqn.2016-06.io.nvmf-rs:cnode1` on
//! 127.0.0.1:4420 (plus the discovery subsystem) until Ctrl-C. `--json FILE` loads an SPDK
//! JSON config instead, and the JSON-RPC socket (`-r`, default `/var/tmp/spdk.sock`) changes
//! the configuration at run time.
//!
//! Threads: one reactor per selected core (`-m`/`--cpus`), pinned, each polling its own
//! `PollGroup`; this (control) thread accepts connections and places them on reactors through
//! lock-free queues, serves RPC and watches for SIGINT/SIGTERM; a work thread runs the target's
//! deferred work (DH-HMAC-CHAP exponentiations, `work.rs`).

#![forbid(unsafe_code)]

use nvmf_tgt::{cli, config, logging, reactor, rpc, state, work};

use clap::{Parser, ValueEnum};
use cli::Args;
use nvmf::{SubsystemConfig, Target};
use reactor::{ReactorOpts, Reactors};
use serde_json::json;
use state::AppState;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long the control thread sleeps when a loop found nothing to do (it is not the I/O path).
const CONTROL_IDLE_SLEEP: Duration = Duration::from_micros(500);
/// How long reactors keep polling at shutdown for their connections to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let mut args = Args::parse();
    if let Some(cli::Command::Rpc { args }) = args.command.take() {
        std::process::exit(rpc::client_main(args));
    }
    let log = logging::init();
    let code = match run(args, log) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            1
        }
    };
    std::process::exit(code);
}

/// The embedded quick-start configuration: one bdev as one namespace of one subsystem, made
/// through the RPC methods (as if a script had called them) so that `nvmf_get_transports`,
/// `bdev_get_bdevs` and `save_config` see it like any other configuration.
fn create_default(args: &Args, state: &mut AppState) -> Result<(), String> {
    let mut call = |method: &str, params: serde_json::Value| {
        rpc::dispatch(state, method, Some(params)).map_err(|e| format!("embedded default: {method}: {}", e.message))
    };
    // SPDK needs nvmf_create_transport first; the quick start has it implied.
    call("nvmf_create_transport", json!({"trtype": "TCP"}))?;
    let bs = args.block_size;
    let blocks = args.size_mb * 1024 * 1024 / bs.max(1) as u64;
    let bdev = match args.bdev.as_str() {
        "malloc" => {
            call("bdev_malloc_create", json!({"name": "Malloc0", "num_blocks": blocks, "block_size": bs}))?;
            "Malloc0"
        }
        "null" => {
            call("bdev_null_create", json!({"name": "Null0", "num_blocks": blocks, "block_size": bs}))?;
            "Null0"
        }
        path => {
            call("bdev_aio_create", json!({"name": "AIO0", "filename": path, "block_size": bs}))?;
            "AIO0"
        }
    };
    // The library's identity strings, as before this went through RPC.
    let lib = SubsystemConfig::new(&args.nqn);
    call(
        "nvmf_create_subsystem",
        json!({"nqn": args.nqn, "serial_number": lib.serial, "model_number": lib.model,
               "allow_any_host": args.allow_hosts.is_empty()}),
    )?;
    for h in &args.allow_hosts {
        call("nvmf_subsystem_add_host", json!({"nqn": args.nqn, "host": h}))?;
    }
    call("nvmf_subsystem_add_ns", json!({"nqn": args.nqn, "namespace": {"bdev_name": bdev}}))?;
    let adrfam = if args.address.contains(':') { "IPv6" } else { "IPv4" };
    call(
        "nvmf_subsystem_add_listener",
        json!({"nqn": args.nqn, "listen_address": {"trtype": "TCP", "adrfam": adrfam, "traddr": args.address,
               "trsvcid": args.port.to_string()}}),
    )?;
    if let Some(b) = state.bdevs.get(bdev) {
        log::info!("bdev {}: {} blocks of {} bytes", b.name(), b.num_blocks(), b.block_size());
    }
    // The real port when 0 was asked for.
    let addr = state.target.subsystem(&args.nqn).and_then(|s| s.listeners().into_iter().next());
    let addr = addr.map(|a| a.to_string()).unwrap_or_else(|| format!("{}:{}", args.address, args.port));
    log::info!("serving {} on {addr}", args.nqn);
    Ok(())
}

/// Identity of the registered transports, to notice when RPC changes them.
fn transport_ids(target: &Target) -> Vec<usize> {
    target.transports().iter().map(|t| Arc::as_ptr(t) as *const () as usize).collect()
}

fn run(args: Args, log: Arc<logging::LogControl>) -> Result<(), String> {
    let cores = args.cores()?;
    for ignored in [
        ("-i/--shm-id", &args.shm_id),
        ("-e/--tpoint-group-mask", &args.tpoint_group_mask),
        ("-s/--mem-size", &args.mem_size),
    ] {
        if ignored.1.is_some() {
            log::warn!("{} is accepted for SPDK compatibility and ignored", ignored.0);
        }
    }
    let mut state = AppState::new(Target::new());
    state.log = log;
    // SIGINT, SIGTERM and spdk_kill_instance set the same flag.
    let stop = state.stop.clone();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }

    // DH-HMAC-CHAP's modular exponentiations run here, not on the reactors.
    let work = Arc::new(work::WorkThread::start().map_err(|e| format!("start the work thread: {e}"))?);
    state.target.set_work_runner(Some(work.clone()));

    let mut rpc = if args.wait_for_rpc {
        // SPDK's --wait-for-rpc: serve start-up methods only until framework_start_init.
        state.init_done = false;
        let mut rpc = rpc::RpcServer::bind(&args.rpc_socket)
            .map_err(|e| format!("RPC socket {}: {e}", args.rpc_socket.display()))?;
        log::info!("JSON-RPC on {}: waiting for framework_start_init", args.rpc_socket.display());
        while !state.init_done && !stop.load(Ordering::Relaxed) {
            if rpc.poll(&mut state) == 0 {
                std::thread::sleep(CONTROL_IDLE_SLEEP);
            }
        }
        Some(rpc)
    } else {
        None
    };
    if let Some(path) = &args.json {
        config::load_json(path, &mut state).map_err(|e| format!("{}: {e}", path.display()))?;
        log::info!("loaded config {}", path.display());
    } else if !args.no_default && !args.wait_for_rpc {
        create_default(&args, &mut state)?;
    }

    let mut rpc = match rpc.take() {
        Some(r) => r,
        None => rpc::RpcServer::bind(&args.rpc_socket)
            .map_err(|e| format!("RPC socket {}: {e}", args.rpc_socket.display()))?,
    };
    log::info!("JSON-RPC on {}", args.rpc_socket.display());

    let opts = ReactorOpts {
        placement: args.placement,
        idle_backoff: Duration::from_micros(args.idle_backoff_us),
        drain_timeout: DRAIN_TIMEOUT,
    };
    let mut reactors = {
        let target = &state.target;
        Reactors::start(&cores, opts, || target.create_poll_group()).map_err(|e| format!("start reactors: {e}"))?
    };
    let mut transports = transport_ids(&state.target);
    log::info!(
        "{} reactor(s) on core(s) {:?}, {} placement, {}",
        reactors.len(),
        cores,
        args.placement.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
        if args.idle_backoff_us == 0 {
            "busy polling".to_string()
        } else {
            format!("idle backoff {} us", args.idle_backoff_us)
        }
    );

    while !stop.load(Ordering::Relaxed) {
        let accepted = state.target.accept(|q| reactors.place(q));
        reactors.info_into(&mut state.reactors);
        let handled = rpc.poll(&mut state);
        let now = transport_ids(&state.target);
        if now != transports {
            // A transport was added or replaced: reactors need poll groups with it.
            let target = &state.target;
            reactors.add_poll_groups(|| target.create_poll_group());
            transports = now;
        }
        if accepted + handled == 0 {
            std::thread::sleep(CONTROL_IDLE_SLEEP);
        }
    }

    log::info!("shutting down");
    for addr in state.target.listen_addrs() {
        if let Err(e) = state.target.stop_listening(&addr) {
            log::warn!("stop listening on {addr}: {e}");
        }
    }
    let stuck = reactors.shutdown();
    // After the reactors: their draining connections may have waited for a job.
    state.target.set_work_runner(None);
    work.shutdown();
    log::info!("work thread joined");
    // Close the RPC listener before removing its socket file.
    #[allow(clippy::drop_non_drop)]
    drop(rpc);
    match std::fs::remove_file(&args.rpc_socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("remove {}: {e}", args.rpc_socket.display()),
    }
    // The reactors are joined: their poll groups, bdev channels and hardware queue pairs are
    // gone. Shut the NVMe controllers down (CC.SHN) before dropping the bdevs.
    state.shutdown_controllers();
    // Bdev writes were synchronous (File bdev: pwrite before the completion), so everything
    // acknowledged is already in the file; dropping the bdevs closes them.
    drop(state);
    if stuck > 0 {
        log::warn!("{stuck} reactor(s) did not drain cleanly");
    }
    log::info!("stopped");
    Ok(())
}
