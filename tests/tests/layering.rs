//! Architecture invariants as a test: the pure crates take no I/O dependencies, and only
//! the engine may know the wire format. Fails when a Cargo.toml adds a forbidden crate.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::PathBuf;

fn manifest(krate: &str) -> toml::Table {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    text.parse().unwrap()
}

fn dependencies(krate: &str) -> Vec<String> {
    let m = manifest(krate);
    let mut out = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(t) = m.get(section).and_then(|v| v.as_table()) {
            out.extend(t.keys().cloned());
        }
    }
    out
}

/// Crates that do I/O (database, network, async runtime) or speak the wire format.
const IO_CRATES: &[&str] = &[
    "sqlx",
    "tokio",
    "tonic",
    "tonic-build",
    "tonic-prost",
    "tonic-health",
    "tonic-reflection",
    "prost",
    "prost-build",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "async-std",
    "postgres",
    "rusqlite",
    "libsqlite3-sys",
    "indicatif",
    "tidig-engine",
];

#[test]
fn pure_crates_take_no_io_dependencies() {
    for krate in ["connectors", "models", "governance"] {
        for dep in dependencies(krate) {
            assert!(
                !IO_CRATES.contains(&dep.as_str()),
                "`{krate}` must stay pure but depends on `{dep}` (see ARCHITECTURE.md)"
            );
        }
    }
}

#[test]
fn pure_crates_do_not_reach_for_io_in_source() {
    for krate in ["connectors", "models", "governance"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(krate)
            .join("src");
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for needle in [
                    "std::net::",
                    "std::process::",
                    "File::create",
                    "File::open",
                    "std::fs::",
                ] {
                    assert!(
                        !text.contains(needle),
                        "{}: a pure crate uses `{needle}`; take a reader or a value instead",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn only_the_engine_may_know_the_wire_format() {
    for krate in ["connectors", "models", "governance", "tests"] {
        for dep in dependencies(krate) {
            assert!(
                !dep.starts_with("tonic") && !dep.starts_with("prost"),
                "`{krate}` depends on `{dep}`; only the engine's server module speaks gRPC"
            );
        }
    }
}
