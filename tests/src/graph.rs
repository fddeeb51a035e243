//! What the two Meta fakes (Facebook and Instagram) read from a Graph API request alike.

use std::collections::HashMap;

use poem::{Request, http::header};
use sha2::{Digest, Sha256};

/// The query string's parameters.
pub(crate) fn query(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// Query parameters merged with the body's (form-encoded or JSON), the body winning.
pub(crate) fn params(req: &Request, body: &str) -> HashMap<String, String> {
    let mut params = query(req);
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                params.insert(key, value);
            }
        }
    } else {
        params.extend(url::form_urlencoded::parse(body.as_bytes()).into_owned());
    }
    params
}

/// The access token of a Graph call: `Authorization: Bearer` (or `OAuth`), else `access_token`.
pub(crate) fn access_token(req: &Request, params: &HashMap<String, String>) -> Option<String> {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    header
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
        .map(|t| t.trim().to_owned())
        .or_else(|| params.get("access_token").cloned())
}

/// HMAC-SHA256 in lower-case hex, as `appsecret_proof` uses.
pub(crate) fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_pad).chain_update(message).finalize();
    let outer = Sha256::new().chain_update(&outer_pad).chain_update(inner).finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}
