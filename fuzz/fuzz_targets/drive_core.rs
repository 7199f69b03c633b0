//! libFuzzer entry point for [`oar_fuzz::drive_core`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oar_fuzz::drive_core(data));
