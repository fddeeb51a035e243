//! The only place key material is touched: Fernet encryption of stored platform tokens, signed
//! OAuth state, and HS256 bearer tokens.
//!
//! Nothing here logs, and no type here prints a key or a plaintext in `Debug`.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Secret, Settings};

/// Encrypts platform tokens at rest with Fernet. `SOCIAL_TOKEN_ENCRYPTION_KEY` is a comma-separated
/// list of keys: the first encrypts, all decrypt, so keys rotate without downtime.
pub struct TokenCipher {
    keys: fernet::MultiFernet,
    /// The first key alone, to tell ciphertexts it made from older ones.
    primary: fernet::Fernet,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher([redacted])")
    }
}

/// A stored ciphertext that no key decrypts (wrong key set, or a corrupted row).
#[derive(Debug, thiserror::Error)]
#[error("a stored secret could not be decrypted with any configured key")]
pub struct DecryptError;

impl TokenCipher {
    /// Builds the cipher; the error says which key of the list is malformed (not what it is).
    pub fn new(keys: &Secret) -> Result<Self, String> {
        let parse = |i: usize, key: &str| {
            fernet::Fernet::new(key)
                .ok_or_else(|| format!("key {} of the list is not a url-safe base64 32-byte Fernet key", i + 1))
        };
        let list: Vec<&str> = keys.expose().split(',').map(str::trim).collect();
        let fernets = list.iter().enumerate().map(|(i, k)| parse(i, k)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys: fernet::MultiFernet::new(fernets), primary: parse(0, list[0])? })
    }

    /// Encrypts a secret with the first key.
    pub fn encrypt(&self, plaintext: &str) -> String {
        self.keys.encrypt(plaintext.as_bytes())
    }

    /// Whether a ciphertext was made with the first (current) key.
    pub fn is_current(&self, ciphertext: &str) -> bool {
        self.primary.decrypt(ciphertext).is_ok()
    }

    /// Re-encrypts a ciphertext with the first key; `None` when it already uses it.
    pub fn reencrypt(&self, ciphertext: &str) -> Result<Option<String>, DecryptError> {
        if self.is_current(ciphertext) {
            return Ok(None);
        }
        Ok(Some(self.encrypt(&self.decrypt(ciphertext)?)))
    }

    /// Decrypts a secret with whichever configured key made it.
    pub fn decrypt(&self, ciphertext: &str) -> Result<String, DecryptError> {
        let bytes = self.keys.decrypt(ciphertext).map_err(|_| DecryptError)?;
        String::from_utf8(bytes).map_err(|_| DecryptError)
    }
}

/// Signs and checks OAuth `state` values: 256 random bits plus an HMAC-SHA256 tag, so a forged or
/// truncated state is refused before the database is asked.
pub struct StateSigner {
    key: Vec<u8>,
}

impl fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateSigner([redacted])")
    }
}

/// A new state: the value sent to the platform and the hash stored server-side.
#[derive(Debug)]
pub struct IssuedState {
    /// Sent in the authorize URL; comes back on the callback.
    pub value: String,
    /// Stored in the database; the state itself is never stored.
    pub hash: String,
}

impl StateSigner {
    /// A signer with `OAUTH_STATE_SECRET`.
    pub fn new(secret: &Secret) -> Self {
        Self { key: secret.expose().as_bytes().to_vec() }
    }

    fn tag(&self, nonce: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(nonce.as_bytes());
        mac
    }

    /// Issues a fresh state.
    pub fn issue(&self) -> IssuedState {
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let tag = URL_SAFE_NO_PAD.encode(self.tag(&nonce).finalize().into_bytes());
        IssuedState { hash: sha256_hex(&nonce), value: format!("{nonce}.{tag}") }
    }

    /// Checks the signature of a returned state and gives the hash to look it up by.
    pub fn verify(&self, state: &str) -> Option<String> {
        let (nonce, tag) = state.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.tag(nonce).verify_slice(&tag).ok()?;
        Some(sha256_hex(nonce))
    }
}

/// Hex SHA-256 of a string (state lookups, idempotency request hashes).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Claims of a Herald bearer token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Issuer, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a bearer token was refused; deliberately vague towards the client.
#[derive(Debug, thiserror::Error)]
#[error("invalid bearer token: {0}")]
pub struct JwtError(String);

/// HS256 bearer tokens signed with `AUTH_JWT_SECRET`.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys and validation rules from settings: HS256 only, `exp` and `sub` required, `iss` and
    /// `aud` checked when configured.
    pub fn new(settings: &Settings) -> Self {
        let secret = settings.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        match &settings.jwt_issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
        }
    }

    /// Signs a token for `user_id` valid for `ttl`.
    pub fn sign(&self, user_id: &str, ttl: chrono::Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + ttl.num_seconds(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Verifies a token and returns the user id.
    pub fn verify(&self, token: &str) -> Result<String, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| JwtError(e.to_string()))?;
        let sub = data.claims.sub.trim();
        if sub.is_empty() || sub.len() > 255 {
            return Err(JwtError("sub must be a non-empty id of at most 255 bytes".into()));
        }
        Ok(sub.to_owned())
    }
}

/// A new webhook signing secret: `whsec_` + standard base64 of 32 random bytes (the Standard
/// Webhooks form, which verifier libraries accept as is).
pub fn new_webhook_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// The Standard Webhooks signature of a message: `v1,` + base64 of HMAC-SHA256, keyed with the
/// base64-decoded part of `secret` after `whsec_`, over `{id}.{timestamp}.{body}`. `None` when
/// the secret is not in that form.
pub fn webhook_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", engine.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_old_keys_still_decrypt() {
        let old = fernet::Fernet::generate_key();
        let new = fernet::Fernet::generate_key();
        let before = TokenCipher::new(&Secret::new(old.clone())).expect("cipher");
        let stored = before.encrypt("token-123");
        assert!(!stored.contains("token-123"));
        let after = TokenCipher::new(&Secret::new(format!("{new},{old}"))).expect("cipher");
        assert_eq!(after.decrypt(&stored).expect("old key"), "token-123");
        let only_new = TokenCipher::new(&Secret::new(new)).expect("cipher");
        assert!(only_new.decrypt(&stored).is_err());
        assert!(TokenCipher::new(&Secret::new("short")).is_err());
    }

    #[test]
    fn state_signature_is_checked() {
        let signer = StateSigner::new(&Secret::new("s".repeat(40)));
        let issued = signer.issue();
        assert_eq!(signer.verify(&issued.value), Some(issued.hash.clone()));
        let forged = format!("{}x", issued.value);
        assert_eq!(signer.verify(&forged), None);
        let other = StateSigner::new(&Secret::new("t".repeat(40)));
        assert_eq!(other.verify(&issued.value), None);
        assert_eq!(signer.verify("no-dot"), None);
    }
}
