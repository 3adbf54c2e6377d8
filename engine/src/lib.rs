//! The tidig shell: storage (sqlx), the ingest pipeline, the synthetic municipality and
//! the `tidig` command line. Pure logic lives in `tidig-connectors`, `tidig-models` and
//! `tidig-governance`; this crate does the I/O around it.

pub mod bench;
pub mod cli;
pub mod features;
pub mod ingest;
pub mod pgtemp;
pub mod rules;
pub mod score;
pub mod settings;
pub mod store;
pub mod synth;
pub mod train;
