//! Install secrets at rest: the API keys and tokens a tenant gives an install are sealed with
//! ChaCha20-Poly1305 before they reach the database, and opened only when the install runs.
//!
//! An AEAD rather than a bare cipher because a row someone edited must fail to open, not decrypt
//! into different secrets: the Poly1305 tag covers the ciphertext. The install id is the
//! associated data, so a sealed blob copied onto another install's row (by a bug, or by someone
//! with database access) fails to open instead of handing one tenant's secrets to another.
//!
//! The master key comes from `NEXUS_MASTER_KEY` (base64 of 32 bytes) when set, otherwise from a
//! key file that is created with mode 0600 on first start. Losing the key loses every sealed
//! secret; [`MasterKey::fingerprint`] is what to log to tell which key a server uses.
//!
//! Secret values are never logged and never returned in errors: [`SecretsError::Corrupt`] says
//! what was wrong with the blob, not what was in it, and [`MasterKey`]'s `Debug` hides the bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use sha2::{Digest, Sha256};

/// Prefix of the sealed text, so a future format (another cipher, key rotation) can coexist.
const FORMAT_PREFIX: &str = "v1:";
/// ChaCha20-Poly1305 takes a 96-bit nonce; random nonces are safe far past our seal counts.
const NONCE_LEN: usize = 12;

/// 32-byte master key. `Debug` prints `MasterKey(..)`, never the bytes.
pub struct MasterKey([u8; 32]);

/// Where [`MasterKey::load_or_create`] found the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `NEXUS_MASTER_KEY` variable.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// A key file written just now with a fresh key.
    Created(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("invalid master key: {0}")]
    InvalidKey(String),
    #[error("master key file {}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    /// Wrong key, wrong install or a damaged blob. Never carries a secret value.
    #[error("sealed secrets cannot be opened: {0}")]
    Corrupt(String),
    #[error("no randomness available: {0}")]
    NoRandomness(String),
}

impl SecretsError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidKey(_) => "invalid_master_key",
            Self::Io { .. } => "master_key_io",
            Self::Corrupt(_) => "secrets_corrupt",
            Self::NoRandomness(_) => "no_randomness",
        }
    }
}

impl MasterKey {
    /// Parses standard padded base64 of exactly 32 bytes. The error never echoes the text.
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        Self::parse(text).map_err(SecretsError::InvalidKey)
    }

    /// Returns the problem alone, so callers can say where the text came from.
    fn parse(text: &str) -> Result<Self, String> {
        let mut bytes =
            STANDARD.decode(text.trim()).map_err(|_| "not valid base64 (standard alphabet, padded)".to_string())?;
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("expected 32 bytes, got {}", bytes.len()));
        wipe(&mut bytes);
        key.map(Self)
    }

    pub fn generate() -> Result<Self, SecretsError> {
        let mut bytes = [0u8; 32];
        random_fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Loads the key from `env_value` (the `NEXUS_MASTER_KEY` variable) if set, else from the file
    /// at `path`, creating it and its directory with a fresh key if it does not exist. A set but
    /// invalid variable is an error rather than a fall back to the file, so a typo cannot silently
    /// switch keys.
    pub fn load_or_create(env_value: Option<&str>, path: &Path) -> Result<(Self, KeySource), SecretsError> {
        if let Some(value) = env_value {
            let key = Self::parse(value)
                .map_err(|problem| SecretsError::InvalidKey(format!("NEXUS_MASTER_KEY: {problem}")))?;
            return Ok((key, KeySource::Env));
        }
        match Self::read_file(path)? {
            Some(key) => Ok((key, KeySource::File(path.to_path_buf()))),
            None => Self::create_file(path),
        }
    }

    /// First 8 hex characters of the key's SHA-256: enough to tell keys apart in logs.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..4])
    }

    fn read_file(path: &Path) -> Result<Option<Self>, SecretsError> {
        let mut text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(path, &error)),
        };
        let key =
            Self::parse(&text).map_err(|problem| SecretsError::InvalidKey(format!("{}: {problem}", path.display())));
        wipe_string(&mut text);
        key.map(Some)
    }

    fn create_file(path: &Path) -> Result<(Self, KeySource), SecretsError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|error| io_error(dir, &error))?;
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(path) {
            Ok(file) => file,
            // Another process created it between our read and our create: use its key.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                let key = Self::read_file(path)?.ok_or_else(|| io_error(path, &error))?;
                return Ok((key, KeySource::File(path.to_path_buf())));
            }
            Err(error) => return Err(io_error(path, &error)),
        };
        let key = Self::generate()?;
        let mut line = key.to_base64() + "\n";
        let written = file.write_all(line.as_bytes()).and_then(|()| file.sync_all());
        wipe_string(&mut line);
        if let Err(error) = written {
            // A half-written file would fail every later start; better to retry from scratch.
            let _ = fs::remove_file(path);
            return Err(io_error(path, &error));
        }
        Ok((key, KeySource::Created(path.to_path_buf())))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Seals one install's secrets as `"v1:" + base64(nonce || ciphertext)`, with `context` (the
/// install id) as associated data.
pub fn seal(key: &MasterKey, context: &str, secrets: &BTreeMap<String, String>) -> Result<String, SecretsError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_fill(&mut nonce)?;
    // A map of strings always serializes; the message names no value either way.
    let mut plaintext =
        serde_json::to_vec(secrets).map_err(|_| SecretsError::Corrupt("secrets could not be encoded".into()))?;
    let cipher = ChaCha20Poly1305::new(&key.0.into());
    let sealed = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &plaintext, aad: context.as_bytes() });
    wipe(&mut plaintext);
    // Encryption only fails past ChaCha20's 256 GiB message limit.
    let ciphertext = sealed.map_err(|_| SecretsError::Corrupt("secrets too large to seal".into()))?;
    Ok(format!("{FORMAT_PREFIX}{}", STANDARD.encode([nonce.as_slice(), &ciphertext].concat())))
}

/// Opens what [`seal`] produced with the same key and context.
pub fn open(key: &MasterKey, context: &str, sealed: &str) -> Result<BTreeMap<String, String>, SecretsError> {
    let encoded = sealed
        .strip_prefix(FORMAT_PREFIX)
        .ok_or_else(|| SecretsError::Corrupt(format!("missing the {FORMAT_PREFIX} format prefix")))?;
    let blob = STANDARD.decode(encoded).map_err(|_| SecretsError::Corrupt("not valid base64".into()))?;
    let (nonce, ciphertext) =
        blob.split_at_checked(NONCE_LEN).ok_or_else(|| SecretsError::Corrupt("too short to hold a nonce".into()))?;
    let cipher = ChaCha20Poly1305::new(&key.0.into());
    let mut plaintext = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
        .map_err(|_| SecretsError::Corrupt("wrong master key, wrong install, or tampered data".into()))?;
    // serde_json's message can quote the offending value, so it is dropped, not forwarded.
    let secrets = serde_json::from_slice(&plaintext)
        .map_err(|_| SecretsError::Corrupt("plaintext is not a JSON object of strings".into()));
    wipe(&mut plaintext);
    secrets
}

fn random_fill(buf: &mut [u8]) -> Result<(), SecretsError> {
    getrandom::fill(buf).map_err(|error| SecretsError::NoRandomness(error.to_string()))
}

fn io_error(path: &Path, error: &std::io::Error) -> SecretsError {
    SecretsError::Io { path: path.to_path_buf(), message: error.to_string() }
}

/// Best-effort zeroing without an extra crate: `black_box` keeps the stores from being elided.
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

fn wipe_string(text: &mut String) {
    let mut bytes = std::mem::take(text).into_bytes();
    wipe(&mut bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BTreeMap<String, String> {
        BTreeMap::from([("api_key".to_string(), "sk-live-hunter2".to_string())])
    }

    fn assert_corrupt(result: Result<BTreeMap<String, String>, SecretsError>) {
        let error = result.unwrap_err();
        assert!(matches!(error, SecretsError::Corrupt(_)), "{error:?}");
        assert_eq!(error.code(), "secrets_corrupt");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn round_trip_uses_a_fresh_nonce_each_time() {
        let key = MasterKey::generate().unwrap();
        let (first, second) =
            (seal(&key, "install-1", &sample()).unwrap(), seal(&key, "install-1", &sample()).unwrap());
        assert!(first.starts_with("v1:") && !first.contains("hunter2"), "{first}");
        assert_ne!(first, second);
        assert_eq!(open(&key, "install-1", &first).unwrap(), sample());
        assert_eq!(open(&key, "install-1", &second).unwrap(), sample());
    }

    #[test]
    fn wrong_context_or_key_fails_as_corrupt() {
        let key = MasterKey::generate().unwrap();
        let sealed = seal(&key, "install-1", &sample()).unwrap();
        assert_corrupt(open(&key, "install-2", &sealed));
        assert_corrupt(open(&MasterKey::generate().unwrap(), "install-1", &sealed));
    }

    #[test]
    fn tampered_or_malformed_blobs_fail_as_corrupt() {
        let key = MasterKey::generate().unwrap();
        let sealed = seal(&key, "install-1", &sample()).unwrap();
        let mut blob = STANDARD.decode(&sealed[3..]).unwrap();
        blob[NONCE_LEN + 2] ^= 0x01;
        assert_corrupt(open(&key, "install-1", &format!("v1:{}", STANDARD.encode(&blob))));
        assert_corrupt(open(&key, "install-1", &sealed.replacen("v1:", "v2:", 1)));
        assert_corrupt(open(&key, "install-1", &sealed[3..]));
        assert_corrupt(open(&key, "install-1", "v1:AAAA"));
    }

    #[test]
    fn from_base64_rejects_wrong_length_and_bad_text() {
        let short = MasterKey::from_base64(&STANDARD.encode([7u8; 16])).unwrap_err();
        assert_eq!(short.code(), "invalid_master_key");
        assert_eq!(short.to_string(), "invalid master key: expected 32 bytes, got 16");
        let garbage = MasterKey::from_base64("not base64!").unwrap_err();
        assert_eq!(garbage.to_string(), "invalid master key: not valid base64 (standard alphabet, padded)");
        let key = MasterKey::generate().unwrap();
        assert_eq!(MasterKey::from_base64(&key.to_base64()).unwrap().to_base64(), key.to_base64());
    }

    #[test]
    fn load_or_create_creates_reads_back_and_yields_to_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        let (created, source) = MasterKey::load_or_create(None, &path).unwrap();
        assert_eq!(source, KeySource::Created(path.clone()));
        let (read, source) = MasterKey::load_or_create(None, &path).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!((read.to_base64(), read.fingerprint()), (created.to_base64(), created.fingerprint()));
        assert_eq!(read.fingerprint().len(), 8);
        #[cfg(unix)]
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions()) & 0o777, 0o600);

        let env_key = MasterKey::generate().unwrap();
        let (loaded, source) = MasterKey::load_or_create(Some(&env_key.to_base64()), &path).unwrap();
        assert_eq!((loaded.to_base64(), source), (env_key.to_base64(), KeySource::Env));
        let error = MasterKey::load_or_create(Some("short"), &path).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid master key: NEXUS_MASTER_KEY: not valid base64 (standard alphabet, padded)"
        );
    }

    #[test]
    fn debug_hides_the_key_and_fingerprint_is_a_hash_prefix() {
        let key = MasterKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        // sha256 of 32 zero bytes starts 66687aad.
        assert_eq!(MasterKey([0; 32]).fingerprint(), "66687aad");
    }
}
