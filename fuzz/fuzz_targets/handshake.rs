//! libFuzzer entry point for [`oar_fuzz::handshake`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oar_fuzz::handshake(data));
