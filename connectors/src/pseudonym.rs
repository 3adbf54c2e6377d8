//! Keyed pseudonyms and the sealed re-identification record, computed at the edge.
//!
//! A pseudonym is HMAC-SHA-256 over a domain tag and the canonical identifier, keyed by
//! a secret that never enters the store. Its first 63 bits are also the person's integer
//! key in the store, so no process needs to coordinate id allocation with another.
//! The raw identifier leaves this module only sealed (XChaCha20-Poly1305 under a second,
//! separate key) for the re-identification vault.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::national_id::NationalId;

type HmacSha256 = Hmac<Sha256>;

/// A 256-bit secret key. `Debug` never prints the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.fingerprint())
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Option<SecretKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(SecretKey(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A public fingerprint of the key (SHA-256 of a domain tag and the key, 16 hex
    /// characters). Stored in the database so that a store cannot silently be fed with
    /// pseudonyms made under a different key.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"tidig-key-fingerprint-v1");
        h.update(self.0);
        hex::encode(&h.finalize()[..8])
    }
}

/// The identity of a person inside tidig: an integer key and its pseudonym text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersonKey {
    /// The first 63 bits of the pseudonym: the store's primary key for the person.
    pub id: i64,
    /// The first 128 bits of the HMAC, shown as `p` + 32 hex characters.
    pub tag: [u8; 16],
}

impl PersonKey {
    /// The pseudonym as shown to people and stored in the persons table.
    pub fn pseudonym(&self) -> String {
        format!("p{}", hex::encode(self.tag))
    }
}

/// What is hashed: a validated national ID or an opaque identifier of another system.
#[derive(Clone, Copy, Debug)]
pub enum Identity<'a> {
    National(&'a NationalId),
    /// An identifier of a system tidig does not validate, such as the US SSN in the
    /// Synthea sample. Hashed together with its system so that systems never collide.
    Opaque {
        system: &'a str,
        value: &'a str,
    },
}

impl Identity<'_> {
    fn write_to(&self, mac: &mut HmacSha256) {
        match self {
            Identity::National(id) => {
                mac.update(b"national|");
                mac.update(id.country().code().as_bytes());
                mac.update(b"|");
                mac.update(id.canonical().as_bytes());
            }
            Identity::Opaque { system, value } => {
                mac.update(b"opaque|");
                mac.update(system.as_bytes());
                mac.update(b"|");
                mac.update(value.trim().as_bytes());
            }
        }
    }

    fn plaintext(&self) -> Vec<u8> {
        match self {
            Identity::National(id) => {
                format!("{}|{}", id.country().code(), id.canonical()).into_bytes()
            }
            Identity::Opaque { system, value } => format!("{system}|{}", value.trim()).into_bytes(),
        }
    }
}

/// Computes pseudonyms and other keyed hashes.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: HmacSha256,
    fingerprint: String,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pseudonymizer({})", self.fingerprint)
    }
}

impl Pseudonymizer {
    pub fn new(key: &SecretKey) -> Pseudonymizer {
        // HMAC accepts keys of any length; a 32-byte key never fails.
        let mac =
            <HmacSha256 as Mac>::new_from_slice(&key.0).unwrap_or_else(|_| unreachable_hmac());
        Pseudonymizer {
            mac,
            fingerprint: key.fingerprint(),
        }
    }

    pub fn key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The person key for an identity.
    pub fn person(&self, identity: Identity<'_>) -> PersonKey {
        let mut mac = self.mac.clone();
        mac.update(b"tidig-person-v1|");
        identity.write_to(&mut mac);
        let out = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&out[..16]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        PersonKey {
            id: (u64::from_be_bytes(first) >> 1) as i64,
            tag,
        }
    }

    /// A keyed 63-bit hash of `parts` under `domain`: used for record keys and other
    /// identifiers (FHIR logical ids, household ids) that must not be stored in clear.
    pub fn key63(&self, domain: &str, parts: &[&[u8]]) -> i64 {
        let mut mac = self.mac.clone();
        mac.update(b"tidig-key-v1|");
        mac.update(domain.as_bytes());
        for p in parts {
            mac.update(b"|");
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        (u64::from_be_bytes(first) >> 1) as i64
    }
}

/// An unkeyed 63-bit hash, for identifiers that are not personal (code system + code).
pub fn public_key63(domain: &str, parts: &[&[u8]]) -> i64 {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for p in parts {
        h.update(b"|");
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    (u64::from_be_bytes(first) >> 1) as i64
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // `Hmac::new_from_slice` only fails for fixed-key-size MACs, which HMAC is not.
    panic!("hmac rejected a 32-byte key")
}

/// A raw identifier sealed for the re-identification vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

/// Seals and opens raw identifiers under the vault key.
///
/// The nonce is derived from the vault key and the identifier (a synthetic IV), so the
/// same identifier always seals to the same bytes: a re-run writes identical rows, and
/// equality reveals nothing the pseudonym does not already reveal.
#[derive(Clone)]
pub struct Vault {
    cipher: XChaCha20Poly1305,
    nonce_mac: HmacSha256,
    fingerprint: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.fingerprint)
    }
}

/// Opening a sealed identifier failed.
#[derive(Debug, thiserror::Error)]
#[error("sealed identifier does not open under this vault key")]
pub struct OpenError;

impl Vault {
    pub fn new(key: &SecretKey) -> Vault {
        let nonce_mac =
            <HmacSha256 as Mac>::new_from_slice(&key.0).unwrap_or_else(|_| unreachable_hmac());
        Vault {
            cipher: XChaCha20Poly1305::new((&key.0).into()),
            nonce_mac,
            fingerprint: key.fingerprint(),
        }
    }

    pub fn key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seals the raw identifier, bound to the person's pseudonym as associated data.
    pub fn seal(&self, identity: Identity<'_>, person: &PersonKey) -> Sealed {
        let plain = identity.plaintext();
        let mut mac = self.nonce_mac.clone();
        mac.update(b"tidig-vault-nonce-v1|");
        mac.update(&plain);
        let out = mac.finalize().into_bytes();
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&out[..24]);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &person.tag,
                },
            )
            .unwrap_or_default();
        Sealed { nonce, ciphertext }
    }

    /// Opens a sealed identifier: `country|canonical` or `system|value`.
    pub fn open(&self, sealed: &Sealed, person: &PersonKey) -> Result<String, OpenError> {
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &person.tag,
                },
            )
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::national_id::{parse, Country, IdRules};

    fn id(raw: &str) -> NationalId {
        let rules = IdRules::new(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        parse(Country::Se, raw, &rules).unwrap()
    }

    #[test]
    fn spellings_of_one_number_share_a_pseudonym_and_keys_differ() {
        let p = Pseudonymizer::new(&SecretKey::from_bytes([7; 32]));
        let a = p.person(Identity::National(&id("121212-1212")));
        let b = p.person(Identity::National(&id("201212121212")));
        assert_eq!(a, b);
        assert!(a.id >= 0);
        let q = Pseudonymizer::new(&SecretKey::from_bytes([8; 32]));
        assert_ne!(a, q.person(Identity::National(&id("121212-1212"))));
        assert!(!a.pseudonym().contains("1212121212"));
    }

    #[test]
    fn vault_round_trip_is_deterministic_and_bound_to_the_person() {
        let p = Pseudonymizer::new(&SecretKey::from_bytes([1; 32]));
        let v = Vault::new(&SecretKey::from_bytes([2; 32]));
        let nid = id("121212-1212");
        let person = p.person(Identity::National(&nid));
        let s1 = v.seal(Identity::National(&nid), &person);
        let s2 = v.seal(Identity::National(&nid), &person);
        assert_eq!(s1, s2);
        assert!(!String::from_utf8_lossy(&s1.ciphertext).contains("1212"));
        assert_eq!(v.open(&s1, &person).unwrap(), "se|201212121212");
        let other = p.person(Identity::Opaque {
            system: "x",
            value: "y",
        });
        assert!(v.open(&s1, &other).is_err());
        let wrong_key = Vault::new(&SecretKey::from_bytes([3; 32]));
        assert!(wrong_key.open(&s1, &person).is_err());
    }
}
