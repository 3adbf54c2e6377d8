//! Shared helpers for tidig's cross-crate tests: real data paths, fixed test keys, fresh
//! SQLite and PostgreSQL stores, and store dumps for comparisons.

#![expect(
    clippy::unwrap_used,
    reason = "test support: a failure here is a test failure"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::NaiveDate;
use tidig_connectors::edge::{EdgeConfig, PersonSystem};
use tidig_connectors::national_id::{Country, IdRules};
use tidig_connectors::pseudonym::{Pseudonymizer, SecretKey, Vault};
use tidig_connectors::social::CodeTable;
use tidig_engine::clock::Clock;
use tidig_engine::pipeline::ingest::{ingest_with, IngestOptions, IngestReport};
use tidig_engine::principal::Principal;
use tidig_engine::progress::Quiet;
use tidig_engine::settings::Settings;
use tidig_engine::store::{Store, TABLES};
use tidig_engine::synth::{generate, SynthConfig, SynthReport};
use tidig_engine::testkit::pgtemp::TempPostgres;
use tidig_engine::App;

pub mod fhir;

/// A file or directory under `shared/data`.
pub fn shared(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    assert!(
        p.exists(),
        "test data {} is missing (shared/ must sit beside the repo)",
        p.display()
    );
    p
}

pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

/// An edge configuration with fixed test keys.
pub fn edge(country: Country, extra_opaque: &[&str]) -> EdgeConfig {
    let mut systems = PersonSystem::nordic();
    for s in extra_opaque {
        systems.push(PersonSystem {
            system: s.to_string(),
            country: None,
        });
    }
    EdgeConfig {
        pseudonymizer: Pseudonymizer::new(&SecretKey::from_bytes([0x5a; 32])),
        vault: Vault::new(&SecretKey::from_bytes([0xa5; 32])),
        id_rules: IdRules::new(today()),
        country,
        person_systems: systems,
        limits: Default::default(),
    }
}

static PG: OnceLock<Option<TempPostgres>> = OnceLock::new();

/// The shared throwaway PostgreSQL cluster of this test binary, if the server binaries
/// exist here. Under CI (`CI` set) a missing server fails the test instead of skipping.
pub fn pg() -> Option<&'static TempPostgres> {
    PG.get_or_init(|| match TempPostgres::start(true) {
        Ok(Some(pg)) => Some(pg),
        Ok(None) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but no PostgreSQL server binaries were found: the PostgreSQL tests are required here"
            );
            eprintln!(
                "PostgreSQL server binaries not found: skipping the PostgreSQL half of this test"
            );
            None
        }
        Err(e) => panic!("PostgreSQL binaries exist but the cluster did not start: {e:#}"),
    })
    .as_ref()
}

/// A fresh, migrated store per backend available here: SQLite always, PostgreSQL when
/// its binaries exist.
pub async fn stores(dir: &Path, name: &str) -> Vec<(&'static str, Store)> {
    let mut out = Vec::new();
    let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    out.push(("sqlite", Store::open(&url).await.unwrap()));
    if let Some(pg) = pg() {
        let db = format!("{}_{}", name, std::process::id());
        let url = pg.create_database(&db).await.unwrap();
        out.push(("postgres", Store::open(&url).await.unwrap()));
    }
    out
}

/// Generates a small synthetic municipality.
pub fn synth(dir: &Path, persons: usize, f: impl FnOnce(&mut SynthConfig)) -> SynthReport {
    let mut cfg = SynthConfig::new(dir.to_path_buf());
    cfg.persons = persons;
    cfg.seed = 7;
    f(&mut cfg);
    generate(&cfg, &|_| {}).unwrap()
}

pub async fn load(store: &Store, edge: &EdgeConfig, paths: &[PathBuf]) -> IngestReport {
    load_with(store, edge, paths, &IngestOptions::default()).await
}

pub async fn load_with(
    store: &Store,
    edge: &EdgeConfig,
    paths: &[PathBuf],
    opts: &IngestOptions,
) -> IngestReport {
    ingest_with(
        &app(store),
        &operator("loader"),
        edge,
        &CodeTable::default_table(),
        paths,
        opts,
        &Quiet,
    )
    .await
    .unwrap()
}

/// The tests' settings: defaults with [`full_deployment`].
pub fn settings() -> Settings {
    Settings {
        deployment: full_deployment().clone(),
        ..Settings::default()
    }
}

/// An app over `store` with the tests' settings, the built-in pack and a clock fixed on
/// [`today`].
pub fn app(store: &Store) -> App {
    app_with(store, settings(), default_pack().clone())
}

/// An app over `store` with other settings or another pack.
pub fn app_with(store: &Store, settings: Settings, pack: tidig_governance::RulePack) -> App {
    App::with_store(store.clone(), settings, pack, Clock::fixed_on(today()))
}

/// An operator principal named `id` (asserted on the command line).
pub fn operator(id: &str) -> Principal {
    Principal::new(
        id,
        tidig_engine::principal::Role::Operator,
        tidig_engine::principal::AuthMethod::Flag,
    )
    .unwrap()
}

/// Columns that differ between equivalent runs: run ids and timestamps.
pub const VOLATILE: &[&str] = &["run_id", "id", "started_at", "finished_at"];

/// Every table's rows, without volatile columns and without the run log (whose row
/// count legitimately grows with `unchanged` entries).
pub async fn dump(store: &Store) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        if *t == "ingest_runs" {
            continue;
        }
        out.insert(*t, store.dump_table(t, VOLATILE).await.unwrap());
    }
    out
}

/// The raw national IDs written by the generator (persons.csv), in file spelling.
pub fn raw_ids(synth_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(synth_dir.join("population/persons.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|s| s.len() >= 10)
        .map(str::to_string)
        .collect()
}

static PACK: std::sync::LazyLock<tidig_governance::RulePack> = std::sync::LazyLock::new(|| {
    tidig_governance::RulePack::default_pack().unwrap_or_else(|e| panic!("default pack: {e}"))
});

static DEPLOYMENT: std::sync::LazyLock<tidig_governance::eval::Deployment> =
    std::sync::LazyLock::new(|| tidig_governance::eval::Deployment {
        legal_basis: "Social Welfare Act 1301/2014 s 5".into(),
        dpia_ref: "DPIA-T".into(),
        fria_ref: "FRIA-T".into(),
        art9_basis: "GDPR Art 9(2)(h)".into(),
        stopped: false,
    });

/// The built-in rule pack.
pub fn default_pack() -> &'static tidig_governance::RulePack {
    &PACK
}

/// A deployment that names every reference the rules ask for.
pub fn full_deployment() -> &'static tidig_governance::eval::Deployment {
    &DEPLOYMENT
}

/// Training options with `gate`, without the challenger unless given, and no card files.
pub fn train_options(
    capacity_share: f64,
    gate: tidig_models::gate::Gate,
    challenger: Option<tidig_models::forest::ForestParams>,
) -> tidig_engine::pipeline::train::TrainOptions {
    let mut o = tidig_engine::pipeline::train::TrainOptions::new(capacity_share, gate).unwrap();
    o.challenger = challenger;
    o
}
