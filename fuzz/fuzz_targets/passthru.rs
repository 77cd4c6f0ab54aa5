//! Direct-mode passthrough against the emulated controller's DMA guard
//! (`nvmf_tests::fuzz_passthru::passthru`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nvmf_tests::fuzz_passthru::passthru(data);
});
