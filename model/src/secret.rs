//! Secrets at rest: private keys (and later provider credentials) are sealed with a key derived
//! from the platform's master key and the control plane they belong to, so a sealed value is
//! useless elsewhere and an edge can be given the key of its own control planes only.
//!
//! Sealed text is `tgsealed:v1:` and the base64 of a random 96-bit nonce followed by the
//! ChaCha20-Poly1305 ciphertext; the control plane id is the associated data.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

const PREFIX: &str = "tgsealed:v1:";
const SALT: &[u8] = b"tollgate secrets v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "the master key must be 64 hex digits (32 bytes); generate one with `openssl rand -hex 32`"
    )]
    BadMasterKey,
    #[error("not a sealed value")]
    NotSealed,
    #[error("the sealed value does not open with this master key and control plane")]
    WrongKey,
    #[error("no randomness available from the operating system")]
    Random,
}

/// The platform's master key (`TOLLGATE_MASTER_KEY`).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Reads 64 hex digits.
    pub fn parse(text: &str) -> Result<MasterKey, SecretError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(MasterKey(key))
    }

    /// A fresh random key.
    pub fn generate() -> Result<MasterKey, SecretError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretError::Random)?;
        Ok(MasterKey(key))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn key_for(&self, scope: Uuid) -> LessSafeKey {
        let info = [scope.as_bytes().as_slice()];
        let prk = Salt::new(HKDF_SHA256, SALT).extract(&self.0);
        let okm = prk.expand(&info, &CHACHA20_POLY1305);
        // `expand` and `UnboundKey::from` only fail for output lengths HKDF cannot produce;
        // 32 bytes always can.
        let unbound = match okm {
            Ok(okm) => UnboundKey::from(okm),
            Err(_) => unreachable!("HKDF-SHA256 yields 32 bytes"),
        };
        LessSafeKey::new(unbound)
    }

    /// Seals `plaintext` for control plane `scope`.
    pub fn seal(&self, scope: Uuid, plaintext: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let mut buffer = plaintext.as_bytes().to_vec();
        self.key_for(scope)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(scope.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SecretError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(format!("{PREFIX}{}", BASE64.encode(out)))
    }

    /// Opens what [`MasterKey::seal`] sealed for the same `scope`.
    pub fn open(&self, scope: Uuid, sealed: &str) -> Result<String, SecretError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(SecretError::NotSealed)?;
        let mut bytes = BASE64.decode(encoded).map_err(|_| SecretError::NotSealed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::NotSealed);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = bytes.try_into().map_err(|_| SecretError::NotSealed)?;
        let plain = self
            .key_for(scope)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(scope.as_bytes()),
                &mut ciphertext,
            )
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::WrongKey)
    }
}

/// Whether `value` is sealed text (rather than a plaintext secret).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_per_control_plane() {
        let key = MasterKey::generate().unwrap();
        let cp = Uuid::now_v7();
        let sealed = key.seal(cp, "-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("PRIVATE"));
        assert_ne!(sealed, key.seal(cp, "-----BEGIN PRIVATE KEY-----").unwrap());
        assert_eq!(
            key.open(cp, &sealed).unwrap(),
            "-----BEGIN PRIVATE KEY-----"
        );
        assert_eq!(
            key.open(Uuid::now_v7(), &sealed),
            Err(SecretError::WrongKey)
        );
        let other = MasterKey::generate().unwrap();
        assert_eq!(other.open(cp, &sealed), Err(SecretError::WrongKey));
        assert_eq!(key.open(cp, "plain"), Err(SecretError::NotSealed));
        let mut torn = sealed.clone();
        torn.pop();
        torn.push('A');
        assert!(key.open(cp, &torn).is_err());
    }

    #[test]
    fn master_keys_parse_from_hex() {
        let key = MasterKey::generate().unwrap();
        let again = MasterKey::parse(&key.to_hex()).unwrap();
        assert_eq!(again.0, key.0);
        assert_eq!(
            MasterKey::parse("abc").unwrap_err(),
            SecretError::BadMasterKey
        );
        assert!(format!("{key:?}").contains('…'));
    }
}
