//! The audit log's proofs and notes against published vectors in `shared/data`: the
//! RFC 6962 proof vectors of transparency-dev/merkle (every happy path verifies, every
//! malformed proof is refused) and Go's signed-note example (signing reproduces the note
//! byte for byte; any changed byte fails).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use tidig_governance::audit::merkle::{verify_consistency, verify_inclusion};
use tidig_governance::audit::{NoteSigner, NoteVerifier};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

/// Every `*.json` under `dir`, parsed, with its path.
fn cases(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("test data {} is missing: {e}", d.display()))
        {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                out.push((p, v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or("")).unwrap()
}

fn proof(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default()
}

/// Runs `check` on every case in `dir`; each must fail exactly when it says `wantErr`.
/// Returns how many verified and how many were refused.
fn tally<E: std::fmt::Debug>(dir: &str, check: impl Fn(&Value) -> Result<(), E>) -> (u32, u32) {
    let (mut ok, mut refused) = (0, 0);
    for (path, c) in &cases(&data(dir)) {
        let got = check(c);
        let want_err = c["wantErr"].as_bool().unwrap();
        assert_eq!(
            got.is_err(),
            want_err,
            "{}: {:?} ({})",
            path.display(),
            got,
            c["desc"]
        );
        if want_err {
            refused += 1;
        } else {
            ok += 1;
        }
    }
    (ok, refused)
}

#[test]
fn rfc6962_inclusion_vectors() {
    let (ok, refused) = tally("merkle/inclusion", |c| {
        verify_inclusion(
            c["leafIdx"].as_u64().unwrap(),
            c["treeSize"].as_u64().unwrap(),
            &b64(&c["leafHash"]),
            &proof(&c["proof"]),
            &b64(&c["root"]),
        )
    });
    assert!(ok >= 5 && refused >= 60, "{ok} happy, {refused} refused");
}

#[test]
fn rfc6962_consistency_vectors() {
    let (ok, refused) = tally("merkle/consistency", |c| {
        verify_consistency(
            c["size1"].as_u64().unwrap(),
            c["size2"].as_u64().unwrap(),
            &b64(&c["root1"]),
            &b64(&c["root2"]),
            &proof(&c["proof"]),
        )
    });
    assert!(ok >= 5 && refused >= 80, "{ok} happy, {refused} refused");
}

fn note_file(name: &str) -> String {
    std::fs::read_to_string(data("signed_note").join(name)).unwrap()
}

#[test]
fn signed_note_vector_signs_byte_for_byte_and_opens() {
    let note = note_file("note.txt");
    let signer = NoteSigner::parse(&note_file("signer_key.txt")).unwrap();
    let verifier = NoteVerifier::parse(&note_file("verifier_key.txt")).unwrap();
    assert_eq!(signer.verifier(), verifier);
    assert_eq!(verifier.to_text(), note_file("verifier_key.txt").trim());
    assert_eq!(signer.to_text(), note_file("signer_key.txt").trim());
    let text = verifier.open(&note).unwrap();
    assert_eq!(
        text,
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    );
    assert_eq!(signer.sign(text).unwrap(), note);
}

#[test]
fn any_changed_byte_of_the_note_fails() {
    let note = note_file("note.txt");
    let verifier = NoteVerifier::parse(&note_file("verifier_key.txt")).unwrap();
    let bytes = note.as_bytes();
    let mut checked = 0;
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[i] ^= flip;
            // A change that breaks UTF-8 is refused before any signature check.
            let Ok(changed) = String::from_utf8(b) else {
                continue;
            };
            assert!(
                verifier.open(&changed).is_err(),
                "byte {i} ^ {flip:#x} still verifies"
            );
            checked += 1;
        }
    }
    assert!(checked > bytes.len(), "{checked} variants checked");
    // A note signed by another key under the same name is not accepted either.
    let other = NoteSigner::from_seed("PeterNeumann", [3u8; 32]).unwrap();
    let text = verifier.open(&note).unwrap();
    assert!(verifier.open(&other.sign(text).unwrap()).is_err());
}
