//! The tidig shell: the application core (`App`), the store (the only SQL), the use cases
//! (`pipeline`), the synthetic municipality and the `tidig` command line. Pure logic lives
//! in `tidig-connectors`, `tidig-models` and `tidig-governance`; this crate does the I/O
//! around it.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod dates;
pub mod domain;
pub mod error;
pub mod pipeline;
pub mod principal;
pub mod progress;
pub mod read_cache;
pub mod server;
pub mod settings;
pub mod store;
pub mod synth;
#[cfg(feature = "testkit")]
pub mod testkit;
mod testkit_hooks;

pub use app::App;
pub use error::{EngineError, Precondition};
