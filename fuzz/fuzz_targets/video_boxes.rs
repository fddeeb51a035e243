//! A video's top-level boxes, walked for its movie header from any offset (the bytes of a ranged
//! read of a user's media URL).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::media::mp4::{Walk, walk};

fuzz_target!(|data: &[u8]| {
    let Some((head, bytes)) = data.split_at_checked(8) else { return };
    let offset = u64::from_be_bytes(head.try_into().expect("eight bytes"));
    match walk(bytes, offset) {
        // The walk only moves forward, so the ranged reads that follow it always end.
        Walk::Next(next) => assert!(next >= offset),
        Walk::Duration(_) | Walk::Unknown => {}
    }
});
