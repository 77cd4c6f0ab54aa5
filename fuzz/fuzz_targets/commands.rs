//! Admin, fabrics and NVM commands on connected queues (`nvmf_tests::fuzz::commands`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nvmf_tests::fuzz::commands(data);
});
