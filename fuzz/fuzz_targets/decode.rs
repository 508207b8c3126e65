//! The frame decoder, fed anything: it must never panic, and a frame it decodes must decode the
//! same from its own encoding (see `dchan::__fuzz::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dchan::__fuzz::decode(data);
});
