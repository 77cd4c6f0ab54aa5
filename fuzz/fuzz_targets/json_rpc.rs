//! JSON-RPC requests to the RPC server and SPDK JSON config documents
//! (`nvmf_tgt::fuzzing::json_rpc`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nvmf_tgt::fuzzing::json_rpc(data);
});
