//! Error answers of every platform: classification of any status, headers and body.
//!
//! Input: one byte choosing the platform (low bits) and a write (bit 7), two bytes of status
//! (big-endian), then `name: value` header lines, an empty line, and the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{domain::Platform, platforms::fuzzing};

fuzz_target!(|data: &[u8]| {
    let [which, high, low, rest @ ..] = data else { return };
    let platform = Platform::ALL[usize::from(which & 0x7f) % Platform::ALL.len()];
    let write = which & 0x80 != 0;
    let status = u16::from_be_bytes([*high, *low]);
    let rest = String::from_utf8_lossy(rest);
    let (head, body) = rest.split_once("\n\n").unwrap_or(("", &rest));
    let headers: Vec<(&str, &[u8])> =
        head.lines().filter_map(|line| line.split_once(": ")).map(|(n, v)| (n, v.as_bytes())).collect();
    let error = fuzzing::classify(platform, status, &headers, body, write);
    // The classification is total: every failure has a stored kind and a message.
    let _ = (error.kind(), error.message());
    if let Some(message) = fuzzing::error_message(body) {
        assert!(!message.is_empty());
    }
});
