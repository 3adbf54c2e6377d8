//! C2SP `signed-note` with Ed25519 keys, and the C2SP `tlog-checkpoint` body the audit
//! log signs. Keys are written as Go's `golang.org/x/mod/sumdb/note` writes them, so any
//! signed-note implementation can check a tidig checkpoint:
//!
//! - verifier key: `name+hexkeyhash+base64(0x01 ‖ 32-byte public key)`
//! - signer key: `PRIVATE+KEY+name+hexkeyhash+base64(0x01 ‖ 32-byte seed)`
//! - key hash: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)
//! - a note: its text (ending in a newline), a blank line, then one line per signature:
//!   `— name base64(4-byte key hash ‖ 64-byte Ed25519 signature of the text)`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key or a note was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("malformed key: {0}")]
    Key(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no signature by `{0}` on the note")]
    Unsigned(String),
    #[error(
        "the signature by `{0}` does not verify: the note was changed or not signed by that key"
    )]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
}

fn key_hash(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// Splits `name+hash+base64` into its parts, checking the name and the hash's form.
fn split_key(text: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let mut parts = text.trim_end_matches(['\n', '\r']).splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key("expected name+keyhash+key"));
    };
    if !valid_name(name) {
        return Err(NoteError::Key("the name is empty or has spaces or `+`"));
    }
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::Key("the key hash is not 8 hexadecimal digits"));
    }
    let hash = u32::from_str_radix(hash, 16).map_err(|_| NoteError::Key("bad key hash"))?;
    let key = B64
        .decode(key)
        .map_err(|_| NoteError::Key("the key is not base64"))?;
    if key.len() != 33 || key[0] != ALG_ED25519 {
        return Err(NoteError::Key("not an Ed25519 key (0x01 ‖ 32 bytes)"));
    }
    Ok((name, hash, key[1..].to_vec()))
}

/// A private key that signs notes.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    hash: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.hash)
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key("the name is empty or has spaces or `+`"));
        }
        let key = SigningKey::from_bytes(&seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.into(),
            hash,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)`, checking the hash.
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a signer key starts with PRIVATE+KEY+"))?;
        let (name, hash, seed) = split_key(rest)?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::Key("the seed is not 32 bytes"))?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if signer.hash != hash {
            return Err(NoteError::Key("the key hash does not match the key"));
        }
        Ok(signer)
    }

    /// The signer key in its text form (secret: for the key file only).
    pub fn to_text(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.hash,
            B64.encode(k)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            hash: self.hash,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must end in a newline and have no blank line): the text, a
    /// blank line and this key's signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.hash.to_be_bytes().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// A public key that checks notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    hash: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `name+hash+base64(0x01 ‖ public key)`, checking the hash.
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let (name, hash, key) = split_key(text.trim())?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::Key("the public key is not 32 bytes"))?;
        if key_hash(name, &key) != hash {
            return Err(NoteError::Key("the key hash does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::Key("not a valid Ed25519 public key"))?;
        Ok(NoteVerifier {
            name: name.into(),
            hash,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+hash+base64(0x01 ‖ key)`.
    pub fn to_text(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.hash, B64.encode(k))
    }

    /// Opens a signed note: returns its text when it carries a valid signature by this
    /// key. A signature line by this key that does not verify is an error even when
    /// another line would.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        check_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the signature block is empty or does not end in a newline",
            ));
        }
        let mut verified = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::Malformed("a signature line starts with `— `"))?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line is `— name signature`",
            ))?;
            if !valid_name(name) {
                return Err(NoteError::Malformed("a signature names no valid key"));
            }
            let blob = B64
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            let hash = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || hash != self.hash {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::Unsigned(self.name.clone()))
        }
    }
}

/// A note's text: UTF-8 (guaranteed by `&str`), ends in one newline, no other control
/// characters, no blank line.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text does not end in a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed("the text has a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("the text has control characters"));
    }
    Ok(())
}

/// A C2SP `tlog-checkpoint` body: the log's origin, its size and its root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// `origin\nsize\nbase64(root)\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Checkpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::Checkpoint("the size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or(NoteError::Checkpoint(
                "the root is not a base64 SHA-256 hash",
            ))?;
        Ok(Checkpoint {
            origin: origin.into(),
            size,
            root,
        })
    }

    /// Opens a signed checkpoint note with `verifier` and parses it; the origin must be
    /// the verifier's name.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, NoteError> {
        let cp = Checkpoint::parse(verifier.open(note)?)?;
        if cp.origin != verifier.name() {
            return Err(NoteError::Checkpoint(
                "the origin is not the name of the log's key",
            ));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_round_trips_and_signs_checkpoints_its_verifier_opens() {
        let s = NoteSigner::from_seed("example.org/log", [7u8; 32]).unwrap();
        let back = NoteSigner::parse(&s.to_text()).unwrap();
        assert_eq!(back.verifier(), s.verifier());
        let v = NoteVerifier::parse(&s.verifier().to_text()).unwrap();
        let cp = Checkpoint {
            origin: "example.org/log".into(),
            size: 12,
            root: [9u8; 32],
        };
        let note = s.sign(&cp.to_text()).unwrap();
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
        let other = NoteSigner::from_seed("example.org/log", [8u8; 32]).unwrap();
        assert!(Checkpoint::open(&note, &other.verifier()).is_err());
    }

    #[test]
    fn checkpoint_bodies_are_strict() {
        for bad in ["", "o\n", "o\n01\nAAAA\n", "o\n-1\n", "o\n1\nnot-base64\n"] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
