//! Pure connectors: parse registry extracts into pseudonymized canonical records.
//!
//! Nothing in this crate touches a database or the network. Parsers take a reader, an
//! [`edge::Edge`] (keys and per-file state) and a [`record::Sink`], and push records and
//! rejections into the sink line by line, so memory stays bounded whatever the input.

pub mod detect;
pub mod edge;
pub mod fhir;
pub mod national_id;
pub mod population;
pub mod pseudonym;
pub mod record;
pub mod redact;
pub mod social;
pub mod time;

pub use detect::{detect, Format};

/// A file could not be read at all (as opposed to a bad line, which is a
/// [`record::Rejection`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("read error: {0}")]
    Io(#[source] std::io::Error),
    #[error("{0}")]
    Format(String),
}

impl ReadError {
    pub(crate) fn io(e: std::io::Error) -> ReadError {
        // A gzip stream that ends early or is corrupt surfaces as an I/O error.
        ReadError::Io(e)
    }
}
