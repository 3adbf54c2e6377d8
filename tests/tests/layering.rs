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

/// Every normal and build dependency of a crate, by the package it names: renamed
/// dependencies (`x = { package = "sqlx" }`) and target-specific ones
/// (`[target.'cfg(unix)'.dependencies]`) included.
fn dependencies(krate: &str) -> Vec<String> {
    let m = manifest(krate);
    let mut tables: Vec<&toml::Table> = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(t) = m.get(section).and_then(|v| v.as_table()) {
            tables.push(t);
        }
        for target in m
            .get("target")
            .and_then(|v| v.as_table())
            .into_iter()
            .flatten()
        {
            if let Some(t) = target.1.get(section).and_then(|v| v.as_table()) {
                tables.push(t);
            }
        }
    }
    let mut out = Vec::new();
    for t in tables {
        for (name, spec) in t {
            let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(name);
            out.push(package.to_string());
        }
    }
    out
}

/// The Rust files under `rel` (relative to the workspace root), with their text.
fn sources(rel: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}

/// Whether `text` reaches for `module` of std (`std::fs::…`, `use std::fs;`,
/// `use std::{fs, net}`, `use std::{io, fs::File}`).
fn uses_std(text: &str, module: &str) -> bool {
    if text.contains(&format!("std::{module}::")) || text.contains(&format!("std::{module};")) {
        return true;
    }
    text.match_indices("std::{").any(|(at, _)| {
        let rest = &text[at + 6..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        group
            .split(',')
            .any(|item| item.trim() == module || item.trim().starts_with(&format!("{module}::")))
    })
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
        for (path, text) in sources(&format!("{krate}/src")) {
            for module in ["fs", "net", "process", "env"] {
                assert!(
                    !uses_std(&text, module),
                    "{}: a pure crate uses `std::{module}`; take a reader or a value instead",
                    path.display()
                );
            }
            for needle in ["File::create", "File::open"] {
                assert!(
                    !text.contains(needle),
                    "{}: a pure crate uses `{needle}`",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_std_check_sees_every_spelling() {
    for caught in [
        "use std::fs;",
        "use std::{fs, net};",
        "use std::{io, fs::File};",
        "std::env::var(\"X\")",
        "use std::{\n    collections::HashMap,\n    env,\n};",
    ] {
        let module = ["fs", "env"]
            .into_iter()
            .find(|m| uses_std(caught, m))
            .unwrap_or("none");
        assert_ne!(module, "none", "{caught}");
    }
    assert!(!uses_std("use std::io::Read;", "fs"));
    assert!(!uses_std("use std::{fmt, io};", "fs"));
}

/// Only `engine/src/store/` runs SQL: no query call and no SQL statement text anywhere
/// else in the engine.
#[test]
fn only_the_store_runs_sql() {
    let statement = |line: &str| {
        [
            "\"SELECT ",
            "\"INSERT ",
            "\"UPDATE ",
            "\"DELETE ",
            "\"CREATE ",
        ]
        .iter()
        .any(|k| line.contains(k))
    };
    for (path, text) in sources("engine/src") {
        let p = path.to_string_lossy().replace('\\', "/");
        if p.contains("/engine/src/store/") || p.contains("/engine/src/testkit/") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("sqlx::query") && !statement(line),
                "{}:{}: SQL outside the store",
                path.display(),
                n + 1
            );
        }
    }
    for (path, text) in sources("engine/src/store") {
        assert!(
            !text.contains("#[macro_export]"),
            "{}: the store's query macros stay private to it",
            path.display()
        );
    }
}

/// `cli/` parses and prints; the use cases in `pipeline/` take `&App` first.
#[test]
fn the_command_line_only_calls_operations_on_the_app() {
    for (path, text) in sources("engine/src/cli") {
        for needle in ["Store::open", "sqlx::", ".store()"] {
            assert!(
                !text.contains(needle),
                "{}: the command line reaches past the app (`{needle}`)",
                path.display()
            );
        }
    }
    for (path, text) in sources("engine/src/pipeline") {
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if !t.starts_with("pub async fn ") {
                continue;
            }
            let params = &t[t.find('(').unwrap() + 1..];
            assert!(
                params.starts_with("app: &App") || params.is_empty(),
                "{}:{}: a use case must take `app: &App` first: {t}",
                path.display(),
                n + 1
            );
        }
    }
}

/// Test support is never in a build a user runs: the feature is off by default and the
/// test suites turn it on.
#[test]
fn the_test_kit_is_off_by_default() {
    let m = manifest("engine");
    let default = m
        .get("features")
        .and_then(|f| f.get("default"))
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        !default.iter().any(|f| f.as_str() == Some("testkit")),
        "testkit is a default feature of the engine"
    );
    let root: toml::Table =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let members = root["workspace"]["default-members"].as_array().unwrap();
    assert!(
        !members.iter().any(|m| m.as_str() == Some("tests")),
        "a plain `cargo build` would link the test kit through `tests`"
    );
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
    // Inside the engine, only `server/` may name proto or tonic types.
    for (path, text) in sources("engine/src") {
        let p = path.to_string_lossy().replace('\\', "/");
        if p.contains("/engine/src/server/") {
            continue;
        }
        for needle in ["tonic::", "prost::", "use tonic", "use prost"] {
            assert!(
                !text.contains(needle),
                "{}: only the server module knows the wire format",
                path.display()
            );
        }
    }
}
