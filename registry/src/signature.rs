//! Publisher signing keys (ed25519) and artifact signatures.
//!
//! A publisher signs [`signing_message`] for each version it uploads; the registry verifies it
//! against the publisher's registered [`PublicKey`]. Text forms:
//! public key `ed25519:<base64 of 32 bytes>`, secret key `nexus-ed25519-secret:<base64 of the
//! 32-byte seed>`, signature `ed25519:<base64 of 64 bytes>` (standard base64, padded).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use nexus_host::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::id::PluginId;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "nexus-ed25519-secret:";
const SIGNATURE_PREFIX: &str = "ed25519:";

/// Hex characters of a key fingerprint: 64 bits, enough to tell a publisher's keys apart.
const FINGERPRINT_HEX_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// A public or secret key text is malformed. Never contains the key text itself.
    #[error("{0}")]
    InvalidKey(String),
    /// A signature text is malformed.
    #[error("{0}")]
    InvalidSignature(String),
    #[error("the signature does not verify with key {fingerprint}")]
    Mismatch { fingerprint: String },
    #[error("no randomness available to generate a key: {0}")]
    Entropy(String),
}

impl SignatureError {
    pub fn code(&self) -> crate::ErrorCode {
        use crate::ErrorCode as C;
        match self {
            Self::InvalidKey(_) => C::InvalidKey,
            Self::InvalidSignature(_) => C::InvalidSignature,
            Self::Mismatch { .. } => C::SignatureMismatch,
            Self::Entropy(_) => C::EntropyUnavailable,
        }
    }
}

/// The exact bytes signed for one artifact. Binding id and version, not just the digest, stops
/// a valid signature from being replayed onto another plugin or version with the same bytes.
pub fn signing_message(id: &PluginId, version: &semver::Version, digest: &Digest) -> Vec<u8> {
    format!("nexus-artifact-v1\n{id}\n{version}\n{digest}\n").into_bytes()
}

/// Decodes `<prefix><base64>` into exactly `N` bytes; `what` names the thing in errors.
fn decode_fixed<const N: usize>(text: &str, prefix: &str, what: &str) -> Result<[u8; N], String> {
    let encoded = text.trim().strip_prefix(prefix).ok_or_else(|| format!("{what} must start with {prefix:?}"))?;
    let bytes = STANDARD.decode(encoded).map_err(|_| format!("{what} is not valid base64"))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| format!("{what} must be {N} bytes, got {len}"))
}

/// A publisher's public key.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// A short, stable name for the key, shown where the whole key would be noise.
    pub fn fingerprint(&self) -> String {
        let mut hex = hex::encode(Sha256::digest(self.as_bytes()));
        hex.truncate(FINGERPRINT_HEX_LEN);
        hex
    }

    /// Strict verification: refuses weak keys and non-canonical signatures, so one artifact
    /// cannot carry two different valid signatures from the same key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        self.0
            .verify_strict(message, &signature.0)
            .map_err(|_| SignatureError::Mismatch { fingerprint: self.fingerprint() })
    }
}

impl FromStr for PublicKey {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = decode_fixed::<32>(s, PUBLIC_PREFIX, "public key").map_err(SignatureError::InvalidKey)?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SignatureError::InvalidKey("public key is not a valid ed25519 point".into()))?;
        // A small-order point (the all-zero key among them) verifies signatures anyone can
        // forge: never accept one as a publisher's key.
        if key.is_weak() {
            return Err(SignatureError::InvalidKey("public key is a weak (small-order) ed25519 point".into()));
        }
        Ok(Self(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", STANDARD.encode(self.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl TryFrom<String> for PublicKey {
    type Error = SignatureError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> Self {
        key.to_string()
    }
}

/// A publisher's secret key. The seed is zeroed on drop (ed25519-dalek's `zeroize`), and
/// `Debug` shows only the public half so the key cannot leak through logs.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn generate() -> Result<Self, SignatureError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SignatureError::Entropy(e.to_string()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }
}

/// Parses the secret key file's content; surrounding whitespace (a trailing newline) is
/// ignored.
impl FromStr for SecretKey {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let seed = decode_fixed::<32>(s, SECRET_PREFIX, "secret key").map_err(SignatureError::InvalidKey)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }
}

/// The secret key file's content. Only for writing that file.
impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECRET_PREFIX}{}", STANDARD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("public", &self.public_key()).finish_non_exhaustive()
    }
}

/// An ed25519 signature over [`signing_message`].
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Signature(ed25519_dalek::Signature);

impl FromStr for Signature {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = decode_fixed::<64>(s, SIGNATURE_PREFIX, "signature").map_err(SignatureError::InvalidSignature)?;
        Ok(Self(ed25519_dalek::Signature::from_bytes(&bytes)))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SIGNATURE_PREFIX}{}", STANDARD.encode(self.0.to_bytes()))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl TryFrom<String> for Signature {
    type Error = SignatureError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Signature> for String {
    fn from(signature: Signature) -> Self {
        signature.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 test 1: a fixed key so text forms can be asserted exactly.
    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn fixed_key() -> SecretKey {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(SEED_HEX, &mut seed).unwrap();
        format!("{SECRET_PREFIX}{}", STANDARD.encode(seed)).parse().unwrap()
    }

    fn message(version: &str) -> Vec<u8> {
        let id: PluginId = "acme/chat-notifier".parse().unwrap();
        signing_message(&id, &version.parse().unwrap(), &Digest::of(b"component bytes"))
    }

    #[test]
    fn signing_message_has_the_documented_layout() {
        let expected = format!("nexus-artifact-v1\nacme/chat-notifier\n1.2.0\n{}\n", Digest::of(b"component bytes"));
        assert_eq!(String::from_utf8(message("1.2.0")).unwrap(), expected);
    }

    #[test]
    fn fixed_key_has_the_rfc_8032_public_key_and_stable_text_forms() {
        let secret = fixed_key();
        let public = secret.public_key();
        assert_eq!(hex::encode(public.as_bytes()), PUBLIC_HEX);
        assert_eq!(public.to_string(), "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        assert_eq!(public.fingerprint(), hex::encode(Sha256::digest(public.as_bytes()))[..16]);
        assert_eq!(secret.to_string(), "nexus-ed25519-secret:nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=");
        assert_eq!(format!("{secret:?}"), format!("SecretKey {{ public: PublicKey({public}), .. }}"));
    }

    #[test]
    fn round_trip_sign_parse_verify() {
        let secret = SecretKey::generate().unwrap();
        let reparsed: SecretKey = format!("{secret}\n").parse().unwrap();
        assert_eq!(reparsed.public_key(), secret.public_key());
        let public: PublicKey = secret.public_key().to_string().parse().unwrap();
        let signature: Signature = secret.sign(&message("1.2.0")).to_string().parse().unwrap();
        assert_eq!(public.verify(&message("1.2.0"), &signature), Ok(()));

        let json = serde_json::to_string(&(public, signature)).unwrap();
        let (public2, signature2): (PublicKey, Signature) = serde_json::from_str(&json).unwrap();
        assert_eq!((public2, signature2), (public, signature));
        assert!(!format!("{secret:?}").contains(&secret.to_string()[SECRET_PREFIX.len()..]));
    }

    #[test]
    fn tampered_message_does_not_verify() {
        let secret = fixed_key();
        let signature = secret.sign(&message("1.2.0"));
        let err = secret.public_key().verify(&message("1.2.1"), &signature).unwrap_err();
        assert_eq!(err.code(), "signature_mismatch");
        let fingerprint = secret.public_key().fingerprint();
        assert_eq!(err.to_string(), format!("the signature does not verify with key {fingerprint}"));
    }

    #[test]
    fn wrong_key_does_not_verify() {
        let signature = fixed_key().sign(&message("1.2.0"));
        let other = SecretKey::generate().unwrap().public_key();
        let err = other.verify(&message("1.2.0"), &signature).unwrap_err();
        assert_eq!(err, SignatureError::Mismatch { fingerprint: other.fingerprint() });
    }

    #[test]
    fn malformed_keys_give_exact_errors() {
        let cases = [
            ("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", r#"public key must start with "ed25519:""#),
            ("ed25519:not base64!", "public key is not valid base64"),
            ("ed25519:AAAA", "public key must be 32 bytes, got 3"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<PublicKey>().unwrap_err();
            assert_eq!((err.code().as_str(), err.to_string().as_str()), ("invalid_key", expected), "{text}");
        }
        // A y coordinate with no point on the curve (found by trying small values).
        let off_curve = (0u8..=255)
            .map(|b| {
                let mut bytes = [0u8; 32];
                bytes[0] = b;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .unwrap();
        let err = format!("ed25519:{}", STANDARD.encode(off_curve)).parse::<PublicKey>().unwrap_err();
        assert_eq!(err, SignatureError::InvalidKey("public key is not a valid ed25519 point".into()));

        let err = "ed25519:nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=".parse::<SecretKey>().unwrap_err();
        assert_eq!(err, SignatureError::InvalidKey(r#"secret key must start with "nexus-ed25519-secret:""#.into()));
        let err = "nexus-ed25519-secret:AAAA".parse::<SecretKey>().unwrap_err();
        assert_eq!(err, SignatureError::InvalidKey("secret key must be 32 bytes, got 3".into()));
    }

    #[test]
    fn malformed_signatures_give_exact_errors() {
        let cases = [
            ("sig:AAAA", r#"signature must start with "ed25519:""#),
            ("ed25519:%%%%", "signature is not valid base64"),
            ("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "signature must be 64 bytes, got 32"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Signature>().unwrap_err();
            assert_eq!(err, SignatureError::InvalidSignature(expected.into()), "{text}");
            assert_eq!(err.code(), "invalid_signature");
        }
    }
}

#[cfg(test)]
mod weak_key_tests {
    use super::*;

    #[test]
    fn weak_public_keys_are_refused() {
        // All zeros, and the identity point (1, 0...): both small-order.
        for bytes in [[0u8; 32], {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        }] {
            let text = format!("{PUBLIC_PREFIX}{}", STANDARD.encode(bytes));
            let error = text.parse::<PublicKey>().err().map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|e| e.contains("weak (small-order)")), "{error:?}");
        }
    }
}
