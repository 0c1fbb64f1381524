//! Encrypted push bodies: `{"content": "<base64>"}` with AES (the key's length picks
//! AES-128/192/256) in the mode of `SOBOT_PUSH_CIPHER`.
//!
//! The API document names neither cipher nor mode. The default is `aes-ecb` with PKCS#7
//! padding because that is what a Java `Cipher.getInstance("AES")` produces (Java's
//! default transformation is AES/ECB/PKCS5Padding), which is the most likely setting on
//! the sending side; it leaks equal blocks, so choose `aes-gcm` (authenticated) or
//! `aes-cbc` when you control both ends. Layouts of the decoded content:
//! - `aes-ecb`: ciphertext, PKCS#7 padded;
//! - `aes-cbc`: 16-byte IV, then the PKCS#7 padded ciphertext;
//! - `aes-gcm`: 12-byte nonce, then the ciphertext with its 16-byte tag appended (the
//!   layout of Java's `AES/GCM/NoPadding` output behind the nonce).

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use aes_gcm::aead::Aead;
use aes_gcm::aead::consts::U12;
use base64::Engine as _;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CipherMode {
    #[default]
    Ecb,
    Cbc,
    Gcm,
}

impl CipherMode {
    pub const ALL: [CipherMode; 3] = [CipherMode::Ecb, CipherMode::Cbc, CipherMode::Gcm];

    pub fn as_str(self) -> &'static str {
        match self {
            CipherMode::Ecb => "aes-ecb",
            CipherMode::Cbc => "aes-cbc",
            CipherMode::Gcm => "aes-gcm",
        }
    }
}

impl FromStr for CipherMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aes-ecb" => Ok(CipherMode::Ecb),
            "aes-cbc" => Ok(CipherMode::Cbc),
            "aes-gcm" => Ok(CipherMode::Gcm),
            other => Err(format!(
                "must be aes-ecb, aes-cbc or aes-gcm, got {other:?}"
            )),
        }
    }
}

/// An AES key of 16, 24 or 32 bytes. `Debug` never shows it.
#[derive(Clone)]
pub struct AesKey(Vec<u8>);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AesKey(AES-{}, redacted)", self.0.len() * 8)
    }
}

impl AesKey {
    /// The setting's text: `base64:<key>` for a binary key, otherwise the text's UTF-8
    /// bytes (how a key typed into a console is used by Java's `key.getBytes()`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = match text.strip_prefix("base64:") {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| "base64: prefix but the rest is not base64".to_string())?,
            None => text.as_bytes().to_vec(),
        };
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        match bytes.len() {
            16 | 24 | 32 => Ok(Self(bytes)),
            n => Err(format!(
                "an AES key must be 16, 24 or 32 bytes (AES-128/192/256), this one has {n}"
            )),
        }
    }
}

/// Why a body could not be decrypted (no key material in the text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("content is not base64")]
    Base64,
    #[error("content is too short for {0}")]
    Short(&'static str),
    #[error("content does not decrypt with the configured key and {0}")]
    Decrypt(&'static str),
}

macro_rules! by_key_len {
    ($key:expr, |$ty:ident| $body:expr) => {
        match $key.len() {
            16 => {
                type $ty = aes::Aes128;
                $body
            }
            24 => {
                type $ty = aes::Aes192;
                $body
            }
            _ => {
                type $ty = aes::Aes256;
                $body
            }
        }
    };
}

/// Decrypts the base64 `content` of an encrypted push.
pub fn decrypt(mode: CipherMode, key: &AesKey, content: &str) -> Result<Vec<u8>, CipherError> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(content.trim())
        .map_err(|_| CipherError::Base64)?;
    let k = key.0.as_slice();
    let name = mode.as_str();
    let fail = |_| CipherError::Decrypt(name);
    match mode {
        CipherMode::Ecb => by_key_len!(k, |A| ecb::Decryptor::<A>::new_from_slice(k)
            .map_err(|_| CipherError::Decrypt(name))?
            .decrypt_padded_vec_mut::<Pkcs7>(&data)
            .map_err(fail)),
        CipherMode::Cbc => {
            if data.len() < 16 {
                return Err(CipherError::Short(name));
            }
            let (iv, ct) = data.split_at(16);
            by_key_len!(k, |A| cbc::Decryptor::<A>::new_from_slices(k, iv)
                .map_err(|_| CipherError::Decrypt(name))?
                .decrypt_padded_vec_mut::<Pkcs7>(ct)
                .map_err(fail))
        }
        CipherMode::Gcm => {
            if data.len() < 12 + 16 {
                return Err(CipherError::Short(name));
            }
            let (nonce, ct) = data.split_at(12);
            let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
            by_key_len!(k, |A| aes_gcm::AesGcm::<A, U12>::new_from_slice(k)
                .map_err(|_| CipherError::Decrypt(name))?
                .decrypt(nonce, ct)
                .map_err(|_| CipherError::Decrypt(name)))
        }
    }
}

/// Encrypts like the sender (the simulator and tests); returns the base64 `content`.
/// `iv` gives the CBC IV (16 bytes used) or the GCM nonce (12 bytes used).
pub fn encrypt(mode: CipherMode, key: &AesKey, plain: &[u8], iv: &[u8; 16]) -> String {
    let k = key.0.as_slice();
    let out: Vec<u8> = match mode {
        CipherMode::Ecb => by_key_len!(k, |A| match ecb::Encryptor::<A>::new_from_slice(k) {
            Ok(c) => c.encrypt_padded_vec_mut::<Pkcs7>(plain),
            Err(_) => Vec::new(),
        }),
        CipherMode::Cbc => {
            let ct = by_key_len!(k, |A| match cbc::Encryptor::<A>::new_from_slices(k, iv) {
                Ok(c) => c.encrypt_padded_vec_mut::<Pkcs7>(plain),
                Err(_) => Vec::new(),
            });
            let mut v = iv.to_vec();
            v.extend_from_slice(&ct);
            v
        }
        CipherMode::Gcm => {
            let nonce = aes_gcm::Nonce::<U12>::from_slice(&iv[..12]);
            let ct = by_key_len!(k, |A| match aes_gcm::AesGcm::<A, U12>::new_from_slice(k) {
                Ok(c) => c.encrypt(nonce, plain).unwrap_or_default(),
                Err(_) => Vec::new(),
            });
            let mut v = iv[..12].to_vec();
            v.extend_from_slice(&ct);
            v
        }
    };
    base64::engine::general_purpose::STANDARD.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_and_key_length_round_trips() {
        for len in [16, 24, 32] {
            let key = AesKey::from_bytes((0..len as u8).collect()).unwrap();
            for mode in CipherMode::ALL {
                let c = encrypt(mode, &key, br#"{"a":1}"#, &[7; 16]);
                assert_eq!(
                    decrypt(mode, &key, &c).unwrap(),
                    br#"{"a":1}"#,
                    "{mode:?} {len}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_key_or_garbage_fails() {
        let key = AesKey::parse("0123456789abcdef").unwrap();
        let other = AesKey::parse("fedcba9876543210").unwrap();
        let c = encrypt(CipherMode::Gcm, &key, b"{}", &[1; 16]);
        assert!(decrypt(CipherMode::Gcm, &other, &c).is_err());
        assert_eq!(
            decrypt(CipherMode::Ecb, &key, "%%%"),
            Err(CipherError::Base64)
        );
        assert!(decrypt(CipherMode::Cbc, &key, "AAAA").is_err());
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(AesKey::parse("short").is_err());
        let k = AesKey::parse("base64:AAAAAAAAAAAAAAAAAAAAAA==").unwrap();
        assert_eq!(format!("{k:?}"), "AesKey(AES-128, redacted)");
        assert!("aes-xts".parse::<CipherMode>().is_err());
    }
}
