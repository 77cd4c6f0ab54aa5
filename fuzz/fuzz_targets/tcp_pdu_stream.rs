//! Raw NVMe/TCP byte streams on up to four connections (`nvmf_tests::fuzz::tcp_pdu_stream`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nvmf_tests::fuzz::tcp_pdu_stream(data);
});
