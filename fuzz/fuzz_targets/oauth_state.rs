//! OAuth `state` values and bearer tokens: verification of arbitrary strings never panics, a
//! fresh value verifies, and a changed one does not.
#![no_main]

use std::{collections::HashMap, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use shared::{
    config::{Secret, Settings},
    crypto::{JwtKeys, StateSigner},
};

static SIGNER: LazyLock<StateSigner> = LazyLock::new(|| StateSigner::new(&Secret::new("s".repeat(40))));

static JWT: LazyLock<JwtKeys> = LazyLock::new(|| {
    let vars: HashMap<String, String> = [
        ("SOCIAL_TOKEN_ENCRYPTION_KEY", "sxjdkZ-v3r9aVsPYodUYNOaqMmimR3VXZ4HvXDLpZ48="),
        ("AUTH_JWT_SECRET", "fuzz-jwt-secret-of-at-least-32-characters"),
        ("OAUTH_STATE_SECRET", "fuzz-state-secret-of-at-least-32-characters"),
        ("AUTH_JWT_ISSUER", "herald"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    JwtKeys::new(&Settings::from_map(&vars).expect("fuzz settings are valid"))
});

/// `text` with the character at `at` (modulo its length) replaced by `by`, when that changes it.
fn mutated(text: &str, at: usize, by: char) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let at = at % chars.len().max(1);
    if chars.get(at) == Some(&by) {
        return None;
    }
    let mut out: String = chars[..at].iter().collect();
    out.push(by);
    out.extend(chars.iter().skip(at + 1));
    Some(out)
}

fuzz_target!(|input: (String, u16, char, bool)| {
    let (text, at, by, jwt) = input;
    let at = usize::from(at);
    if jwt {
        if let Ok(sub) = JWT.verify(&text) {
            assert!(!sub.is_empty() && sub.len() <= 255);
        }
        let token = JWT.sign("user-1", chrono::Duration::hours(1));
        assert_eq!(JWT.verify(&token).ok().as_deref(), Some("user-1"));
        if let Some(changed) = mutated(&token, at, by) {
            assert!(JWT.verify(&changed).is_err(), "a changed token verified: {changed}");
        }
        assert!(JWT.verify(&format!("{token}{text}")).is_err() || text.is_empty());
        return;
    }
    if let Some(hash) = SIGNER.verify(&text) {
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let issued = SIGNER.issue();
    assert_eq!(SIGNER.verify(&issued.value).as_deref(), Some(issued.hash.as_str()));
    if let Some(changed) = mutated(&issued.value, at, by) {
        assert_eq!(SIGNER.verify(&changed), None, "a changed state verified: {changed}");
    }
    let cut = at % issued.value.len();
    assert_eq!(SIGNER.verify(&issued.value[..cut]), None);
    if !text.is_empty() {
        assert_eq!(SIGNER.verify(&format!("{}{text}", issued.value)), None);
    }
});
