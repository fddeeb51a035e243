//! Answers of every platform: token answers (the shared shape and oauth2's), OAuth error bodies,
//! and media or publish status answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{domain::Platform, platforms::fuzzing};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let before = chrono::Utc::now();
    match which % 8 {
        0 => {
            if let Ok(tokens) = fuzzing::token_answer(body) {
                // Lifetimes become instants after the answer arrived.
                assert!(tokens.expires_at.is_none_or(|at| at > before));
                assert!(tokens.refresh_expires_at.is_none_or(|at| at > before));
                assert!(tokens.refresh_token.is_none_or(|t| !t.is_empty()));
                assert!(tokens.scopes.iter().all(|s| !s.is_empty() && !s.contains([' ', ','])));
            }
        }
        1 => {
            if let Some(tokens) = fuzzing::oauth_token_answer(body) {
                assert!(tokens.expires_at.is_none_or(|at| at >= before));
            }
        }
        2 => {
            let _ = fuzzing::oauth_error_answer(body);
        }
        n => {
            let platform = Platform::ALL[usize::from(n - 3)];
            if let Ok(Some(status)) = fuzzing::status_answer(platform, body) {
                // Still at it: the words are the platform's status, never a success marker.
                assert!(!matches!(status.as_str(), "succeeded" | "AVAILABLE" | "ready" | "PUBLISH_COMPLETE"));
            }
        }
    }
});
