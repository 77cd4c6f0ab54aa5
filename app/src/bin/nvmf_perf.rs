//! nvmf-perf: placeholder, being written (issue 6).
fn main() {}
