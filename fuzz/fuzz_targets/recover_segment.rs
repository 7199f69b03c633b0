//! libFuzzer entry point for [`oar_fuzz::recover_segment`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oar_fuzz::recover_segment(data));
