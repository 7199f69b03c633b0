//! libFuzzer entry point for [`oar_fuzz::resp_parse`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oar_fuzz::resp_parse(data));
