//! libFuzzer entry point for [`oar_fuzz::decode_raft_message`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oar_fuzz::decode_raft_message(data));
