//! The audit trail's pure parts: the entry and its canonical encoding ([`entry`]), the
//! RFC 6962 Merkle tree and its proofs ([`merkle`]), and signed checkpoints in the C2SP
//! `signed-note` / `tlog-checkpoint` formats ([`note`]). The engine stores entries and
//! signs checkpoints; anything here can be recomputed by another implementation from the
//! documentation alone.

pub mod entry;
pub mod merkle;
pub mod note;

pub use entry::{Actor, EncodedRecord, Entry, EntryLink, EntryView, Outcome, Record, Versions};
pub use merkle::{CompactRange, Hash, ProofError};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
