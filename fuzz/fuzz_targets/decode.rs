//! The JSON decoder on any bytes: no panic, no hang, and no record vanishes
//! (`sparkify_core::source::contract::check`). Seeded from `fixtures/` and `fixtures/bad/`;
//! the corpus in `fuzz/corpus/decode` is replayed by a normal test on stable
//! (`crates/core/tests/core.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = sparkify_core::source::contract::check(data) {
        panic!("{broken}");
    }
});
