//! The `json_rpc` fuzz target's inputs, replayed in a normal `cargo test` through the entry
//! point the `cargo fuzz` target calls (`nvmf_tgt::fuzzing::json_rpc`): every seed in
//! `fuzz/seeds/json_rpc/` and every input that once crashed it, kept in
//! `fuzz/regressions/json_rpc/` (docs/reliability.md).

#![forbid(unsafe_code)]

use std::path::Path;

fn inputs(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind).join("json_rpc");
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read input")))
        .collect();
    v.sort();
    v
}

#[test]
fn json_rpc_seeds_and_regressions() {
    let seeds = inputs("seeds");
    assert!(!seeds.is_empty(), "no seeds in fuzz/seeds/json_rpc");
    for (p, data) in &seeds {
        let out = nvmf_tgt::fuzzing::json_rpc(data);
        eprintln!("seed {p}: {out:?}");
        // Each seed still gets through: a config applies, a request stream gets replies.
        assert!(out.config_applied || out.results + out.errors > 0, "seed {p} no longer gets through: {out:?}");
    }
    for (p, data) in inputs("regressions") {
        let out = nvmf_tgt::fuzzing::json_rpc(&data);
        eprintln!("regression {p}: {out:?}");
    }
}
