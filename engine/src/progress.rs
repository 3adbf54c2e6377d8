//! Progress of long operations, as a small trait: the command line draws it with
//! indicatif on a terminal; tests and the server pass [`Quiet`].

/// Receives progress from a long operation. Every method has a do-nothing default.
pub trait Progress: Sync {
    /// Sets the total (bytes, persons, events) and restarts the count.
    fn start(&self, _message: &str, _total: Option<u64>) {}
    /// The count so far.
    fn position(&self, _done: u64) {}
    /// What is being worked on now.
    fn message(&self, _message: &str) {}
    /// The operation ended; clear whatever was drawn.
    fn finish(&self) {}
}

/// No progress reporting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {}
