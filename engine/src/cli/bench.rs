//! `tidig bench …`: the figures the README's Performance section reports.
//!
//! Each measured ingest runs as a child `tidig ingest --json` process so that its peak
//! memory (VmHWM) is its own and not the generator's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::{run_synth, synth_config, BenchCommand, SynthArgs};
use crate::app::App;
use crate::clock::Clock;
use crate::pipeline;
use crate::principal::Principal;
use crate::progress::Quiet;
use crate::settings::{Keys, Settings};
use chrono::NaiveDate;
use tidig_models::gate::Gate;

/// Runs one benchmark.
pub async fn run(b: BenchCommand, json: bool, settings: &Settings) -> Result<()> {
    match b {
        BenchCommand::Ingest(a) => ingest(a, json, settings).await,
        BenchCommand::Features(a) => features(a, json, settings).await,
        BenchCommand::Train(a) => train(a, json, settings).await,
        BenchCommand::Score(a) => score(a, json, settings).await,
        BenchCommand::Audit(a) => audit(a, json, settings).await,
        BenchCommand::Serve(a) => serve(a, json, settings).await,
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchServeArgs {
    /// Persons in the synthetic municipality the suggestions come from.
    #[arg(long, default_value_t = 20_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "target/bench-data")]
    pub data: PathBuf,
    /// Seconds each load runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Concurrent clients (each waits for its answer before its next call, so how
    /// many calls are in flight: enough to keep both cores busy while batches commit).
    #[arg(long, default_value_t = 48)]
    pub clients: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Of every 20 calls, this many decide (the rest get and list).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub decide_per_20: u32,
    /// Of every 20 calls, this many get one suggestion (the rest list).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub get_per_20: u32,
    #[arg(long)]
    pub postgres: Option<String>,
    #[arg(long)]
    pub no_postgres: bool,
}

/// Every unit takes every suggestion from 0.02 up: enough open suggestions to decide.
const SERVE_BENCH_SETTINGS: &str = r#"[deployment]
legal_basis = "benchmark on synthetic data"
dpia_ref = "BENCH"
fria_ref = "BENCH"
art9_basis = "benchmark on synthetic data"

# Every person with a score from 0.01 is a suggestion of the one unit the bench's
# token belongs to: both loads decide on open suggestions throughout (a load at 5,000
# calls/s decides 1,250 in 5 s).
[scoring]
elevated = 0.01

[[scoring.units]]
id = "family-services-central"
name = "Central"
municipalities = ["091"]
weekly_capacity = 1000000

[[scoring.units]]
id = "family-services-outer"
name = "Outer"
municipalities = ["092"]
weekly_capacity = 1000000
"#;

/// The bench's identity provider: an Ed25519 key from a fixed seed, its JWKS, and a
/// caseworker token of the central unit valid for an hour.
fn bench_jwt(dir: &Path) -> Result<(crate::settings::JwtSettings, String)> {
    use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    // PKCS#8 v1 DER of an Ed25519 private key (RFC 8410): fixed prefix + 32-byte seed.
    let mut der = hex::decode("302e020100300506032b657004220420")?;
    der.extend([0x42; 32]);
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
    jwk.common.key_id = Some("bench".into());
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string())?;
    let settings = crate::settings::JwtSettings {
        jwks,
        issuer: "https://login.bench.invalid".into(),
        audience: "tidig".into(),
        role_claim: "role".into(),
        unit_claim: "unit".into(),
        purpose_claim: "purpose".into(),
        health_authority_claim: "health_authority".into(),
    };
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "bench-caseworker", "iss": settings.issuer, "aud": "tidig",
                "exp": now + 3600, "nbf": now - 10, "role": "caseworker",
                "unit": "family-services-central", "purpose": "case-handling"}),
        &key,
    )?;
    Ok((settings, token))
}

/// One load against a server on `url`'s store: authenticated and audited, or (the
/// baseline) neither.
async fn serve_load(
    url: &str,
    settings: &Settings,
    a: &BenchServeArgs,
    token: &str,
    audited: bool,
) -> Result<Value> {
    use crate::server::{self, load};
    let mut app = App::open(url, settings.clone(), Clock::System).await?;
    let auth = if audited {
        server::Authenticator::from_settings(settings)?
    } else {
        app = app.unaudited_for_benchmark();
        let mut p = Principal::new(
            "bench-caseworker",
            crate::principal::Role::Caseworker,
            crate::principal::AuthMethod::Demo,
        )?;
        p.unit = Some("family-services-central".into());
        p.purpose = "case-handling".into();
        server::Authenticator::anyone_as_for_benchmark(p)
    };
    let app = std::sync::Arc::new(app);
    let before = crate::pipeline::audit::entries(&app).await?;
    let (listener, addr) = server::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server::serve(app.clone(), auth, listener, async {
        let _ = stopped.await;
    }));
    let spec = load::LoadSpec {
        url: format!("http://{addr}"),
        clients: a.clients,
        connections: a.connections,
        seconds: a.seconds,
        token: token.to_string(),
        decide_per_20: a.decide_per_20,
        get_per_20: a.get_per_20,
        key_prefix: format!(
            "bench-{}-{}",
            if audited { "audited" } else { "baseline" },
            chrono::Utc::now().timestamp_millis()
        ),
    };
    let report = load::run(&spec).await;
    let _ = stop.send(());
    running.await??;
    let report = report?;
    let app = std::sync::Arc::try_unwrap(app)
        .map_err(|_| anyhow::anyhow!("the server still holds the app"))?;
    app.close().await?;
    // The trail afterwards: verified, with one entry per call (the load's own listing of
    // the suggestions to work on included).
    let app = App::open(url, settings.clone(), Clock::System).await?;
    let verifier = app.audit().verifier();
    let verify = crate::pipeline::audit::verify(&app, verifier.as_ref(), None).await?;
    let after = crate::pipeline::audit::entries(&app).await?;
    app.close().await?;
    let added = after - before;
    Ok(json!({
        "audited": audited,
        "audit_entries_added": added, "audit_verified": verify.ok,
        // Audited: exactly one entry per call; the baseline records none.
        "one_entry_per_call": audited.then_some(added == report.calls + report.setup_calls),
        "load": report,
    }))
}

/// Quickstart's pipeline into each backend (not timed), then the same mixed load through
/// the real server with JWTs and the audit trail, and without either for comparison.
pub async fn serve(a: BenchServeArgs, json_out: bool, settings: &Settings) -> Result<()> {
    if a.decide_per_20 + a.get_per_20 > 20 {
        bail!("--decide-per-20 and --get-per-20 add up to more than 20 calls");
    }
    let work = tempfile::tempdir()?;
    let config = work.path().join("tidig.toml");
    std::fs::write(&config, SERVE_BENCH_SETTINGS)?;
    let mut bench_settings = Settings::load(Some(&config))?;
    bench_settings.keys = settings.keys.clone();
    bench_settings.audit = settings.audit.clone();
    let (jwt, token) = bench_jwt(work.path())?;
    bench_settings.service.jwt = Some(jwt);
    let synth = a.data.join(format!("serve-{}-seed{}", a.persons, a.seed));
    let (targets, _cluster, skipped) =
        backends(work.path(), a.postgres.as_deref(), a.no_postgres).await?;
    let mut results = Vec::new();
    for (backend, url) in &targets {
        let exe = std::env::current_exe()?;
        let q = Command::new(exe)
            .env("TIDIG_CONFIG", &config)
            .args([
                "--json",
                "--db",
                url,
                "quickstart",
                "--no-serve",
                "--persons",
            ])
            .arg(a.persons.to_string())
            .arg("--seed")
            .arg(a.seed.to_string())
            .arg("--out")
            .arg(&synth)
            .output()
            .context("running quickstart for the bench")?;
        if !q.status.success() {
            bail!(
                "{backend}: quickstart failed: {}",
                String::from_utf8_lossy(&q.stderr)
            );
        }
        let with = serve_load(url, &bench_settings, &a, &token, true).await?;
        let without = serve_load(url, &bench_settings, &a, &token, false).await?;
        results.push(json!({"backend": backend, "with_auth_and_audit": with, "without": without}));
    }
    if let Some(why) = skipped {
        results.push(json!({"backend": "postgres", "skipped": why}));
    }
    let mix = format!(
        "list {} : get {} : decide {} of 20",
        20 - a.decide_per_20 - a.get_per_20,
        a.get_per_20,
        a.decide_per_20
    );
    let out = json!({"clients": a.clients, "connections": a.connections, "seconds": a.seconds,
                     "mix": mix, "results": results});
    if json_out {
        emit_json!("{out}");
        return Ok(());
    }
    println!(
        "serve benchmark: {} clients over {} connections, {} s per load, {mix}",
        a.clients, a.connections, a.seconds
    );
    for r in measured(&out) {
        for (what, key) in [
            ("JWT + audit", "with_auth_and_audit"),
            ("neither", "without"),
        ] {
            let x = &r[key];
            let l = &x["load"];
            println!(
                "  {:<9} {:<12} {:>7.0} calls/s  p50 {:>5.2} ms  p99 {:>6.2} ms  errors {}  audit +{} ({})",
                r["backend"].as_str().unwrap_or(""),
                what,
                l["calls_per_second"].as_f64().unwrap_or(0.0),
                l["p50_ms"].as_f64().unwrap_or(0.0),
                l["p99_ms"].as_f64().unwrap_or(0.0),
                l["errors"],
                x["audit_entries_added"],
                if x["audit_verified"] == true { "verified" } else { "NOT VERIFIED" }
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct BenchAuditArgs {
    /// Seconds each append measurement runs.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Entries in the SQLite log whose verification is timed.
    #[arg(long, default_value_t = 1_000_000)]
    pub verify_entries: u64,
    /// PostgreSQL URL to measure on (a throwaway cluster otherwise, when available).
    #[arg(long)]
    pub postgres: Option<String>,
    /// Skip PostgreSQL.
    #[arg(long)]
    pub no_postgres: bool,
}

/// A typical entry: a caseworker's read of one suggestion.
fn bench_record(app: &App, by: &Principal, i: u64) -> tidig_governance::audit::Record {
    let mut r = app.record(by, "suggestion.get").with(json!({
        "suggestion": format!("{i:032x}"), "returned": 1,
    }));
    r.subject = Some(format!("p{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    r
}

/// Durable appends per second with `callers` concurrent callers, each waiting for its
/// entry to commit (the group-commit writer `Audit::append`, as every action uses).
async fn appends_per_second(app: &App, callers: usize, seconds: f64) -> Result<(u64, f64)> {
    let by = Principal::demo("bench")?;
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..callers {
        let audit = app.audit().clone();
        let record = bench_record(app, &by, c as u64);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while std::time::Instant::now() < deadline {
                audit.append(record.clone()).await?;
                n += 1;
            }
            Ok::<u64, crate::error::EngineError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, total as f64 / started.elapsed().as_secs_f64()))
}

/// An app over `url` signing checkpoints with `signer`.
async fn bench_app(
    url: &str,
    settings: &Settings,
    signer: &tidig_governance::audit::NoteSigner,
) -> Result<App> {
    let mut settings = settings.clone();
    settings.rules.pack = None;
    Ok(App::open(url, settings, Clock::System)
        .await?
        .with_signer(signer.clone()))
}

pub async fn audit(a: BenchAuditArgs, json_out: bool, settings: &Settings) -> Result<()> {
    let work = tempfile::tempdir()?;
    let signer = tidig_governance::audit::NoteSigner::from_seed(&settings.audit.origin, [7; 32])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (targets, _cluster, skipped) =
        backends(work.path(), a.postgres.as_deref(), a.no_postgres).await?;
    let mut results = Vec::new();
    for (backend, url) in &targets {
        let app = bench_app(url, settings, &signer).await?;
        let mut rates = Vec::new();
        for callers in [1usize, 8, 64] {
            let (n, rate) = appends_per_second(&app, callers, a.seconds).await?;
            rates.push(json!({"callers": callers, "appends": n, "appends_per_second": rate}));
        }
        let verifier = app.audit().verifier();
        let verify = crate::pipeline::audit::verify(&app, verifier.as_ref(), None).await?;
        app.close().await?;
        results.push(json!({"backend": backend, "appends": rates, "verified": verify.ok, "entries": verify.entries}));
    }
    if let Some(why) = skipped {
        results.push(json!({"backend": "postgres", "skipped": why}));
    }
    // Verification of a large log (SQLite, the embedded default): filled in batches,
    // then verified as `tidig audit verify` does.
    let url = format!("sqlite://{}", work.path().join("verify.db").display());
    let app = bench_app(&url, settings, &signer).await?;
    let by = Principal::demo("bench")?;
    let fill = std::time::Instant::now();
    let mut i = 0;
    while i < a.verify_entries {
        let n = (a.verify_entries - i).min(20_000);
        let batch: Vec<_> = (i..i + n).map(|k| bench_record(&app, &by, k)).collect();
        app.audit().append_many(&batch).await?;
        i += n;
    }
    let fill_seconds = fill.elapsed().as_secs_f64();
    app.audit().checkpoint().await?;
    let verifier = app.audit().verifier();
    // Three runs, the median reported (this machine's timings vary run to run).
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(crate::pipeline::audit::verify(&app, verifier.as_ref(), None).await?);
    }
    let rates: Vec<f64> = runs.iter().map(|r| r.entries_per_second).collect();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let report = runs.swap_remove(1);
    app.close().await?;
    let out = json!({
        "ok": report.ok,
        "seconds_per_measurement": a.seconds,
        "results": results,
        "verify": {"entries": report.entries, "seconds": report.seconds,
                   "entries_per_second": report.entries_per_second, "ok": report.ok,
                   "runs_entries_per_second": rates, "fill_seconds": fill_seconds},
    });
    if json_out {
        emit_json!("{out}");
        return Ok(());
    }
    println!("audit benchmark: durable appends (each caller waits for its commit)");
    for r in measured(&out) {
        for x in r["appends"].as_array().into_iter().flatten() {
            println!(
                "  {:<9} {:>3} callers  {:>9.0} appends/s",
                r["backend"].as_str().unwrap_or(""),
                x["callers"],
                x["appends_per_second"].as_f64().unwrap_or(0.0)
            );
        }
    }
    println!(
        "  verify    {} entries in {:.2} s: {:.0} entries/s, median of 3 ({})",
        report.entries,
        report.seconds,
        report.entries_per_second,
        if report.ok { "OK" } else { "FAILED" }
    );
    Ok(())
}

/// A throwaway PostgreSQL cluster, when the test kit is compiled in.
#[cfg(feature = "testkit")]
type Cluster = crate::testkit::pgtemp::TempPostgres;
#[cfg(not(feature = "testkit"))]
type Cluster = ();

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    #[arg(long, default_value_t = 100_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the generated municipality is cached between runs.
    #[arg(long, default_value = "target/bench-data")]
    pub data: PathBuf,
    /// PostgreSQL URL to measure; by default a throwaway local cluster is started when
    /// the server binaries exist.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Skip PostgreSQL.
    #[arg(long)]
    pub no_postgres: bool,
    /// Write FHIR gzip-compressed.
    #[arg(long)]
    pub gzip: bool,
}

/// Peak resident memory of this process in MiB (Linux), or 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The cached synthetic municipality for a benchmark, generated on first use (and again
/// when the generator has changed).
fn municipality(
    data: &Path,
    persons: usize,
    seed: u64,
    gzip: bool,
    json_out: bool,
) -> Result<PathBuf> {
    let dir = data.join(format!(
        "synth-{persons}-seed{seed}{}",
        if gzip { "-gz" } else { "" }
    ));
    if crate::synth::current_manifest(&dir).is_none() {
        if dir.exists() {
            // Written by another generator version: the same seed no longer means the
            // same world.
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale bench data {}", dir.display()))?;
        }
        let args = SynthArgs {
            out: dir.clone(),
            persons,
            seed,
            country: "fi".into(),
            reference_date: "2026-01-01".into(),
            corrupt_rate: 0.0,
            gzip,
            social_jsonl: false,
            history_years: 6,
            municipality: "091".into(),
            population_data: None,
        };
        run_synth(&synth_config(&args)?, json_out)?;
    }
    Ok(dir)
}

/// The backends to measure: SQLite in `work`, and PostgreSQL when asked for or available.
async fn backends(
    work: &Path,
    postgres: Option<&str>,
    no_postgres: bool,
) -> Result<(Vec<(&'static str, String)>, Option<Cluster>, Option<String>)> {
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", work.join("bench.db").display()),
    )];
    if no_postgres {
        return Ok((out, None, Some("--no-postgres".into())));
    }
    if let Some(u) = postgres {
        out.push(("postgres", u.to_string()));
        return Ok((out, None, None));
    }
    #[cfg(feature = "testkit")]
    match Cluster::start(false)? {
        Some(pg) => {
            out.push(("postgres", pg.create_database("tidig_bench").await?));
            Ok((out, Some(pg), None))
        }
        None => Ok((
            out,
            None,
            Some("no PostgreSQL server binaries found and no --postgres URL".into()),
        )),
    }
    #[cfg(not(feature = "testkit"))]
    Ok((
        out,
        None,
        Some(
            "no --postgres URL (a throwaway cluster needs a build with `--features testkit`)"
                .into(),
        ),
    ))
}

pub async fn ingest(a: BenchIngestArgs, json_out: bool, settings: &Settings) -> Result<()> {
    let dir = municipality(&a.data, a.persons, a.seed, a.gzip, json_out)?;
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
    let fhir = manifest["report"]["fhir_resources"].as_u64().unwrap_or(0);
    Keys::ensure(&settings.keys.dir, &settings.audit.origin)?;
    let work = tempfile::tempdir()?;
    let mut results = Vec::new();
    let (targets, _cluster, skipped) =
        backends(work.path(), a.postgres.as_deref(), a.no_postgres).await?;
    for (backend, url) in &targets {
        results.push(run_child(backend, url, &dir, fhir)?);
    }
    if let Some(why) = skipped {
        results.push(json!({"backend": "postgres", "skipped": why}));
    }
    let out = json!({
        "ok": true,
        "persons": a.persons,
        "fhir_resources": fhir,
        "input": dir.display().to_string(),
        "results": results,
    });
    if json_out {
        emit_json!("{out}");
    } else {
        println!(
            "ingest benchmark: {} persons, {} FHIR resources ({})",
            a.persons,
            fhir,
            dir.display()
        );
        for r in measured(&out) {
            println!(
                "  {:<9} {:>7.2} s  {:>9.0} FHIR resources/s  {:>9.0} lines/s (all sources)  peak RSS {:>6.1} MiB",
                r["backend"].as_str().unwrap_or(""),
                r["seconds"].as_f64().unwrap_or(0.0),
                r["fhir_resources_per_second"].as_f64().unwrap_or(0.0),
                r["lines_per_second"].as_f64().unwrap_or(0.0),
                r["peak_rss_mb"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(())
}

/// The measured results of a benchmark report, after printing the skipped ones.
fn measured(out: &Value) -> Vec<&Value> {
    let mut rows = Vec::new();
    for r in out["results"].as_array().into_iter().flatten() {
        match r.get("skipped") {
            Some(why) => println!(
                "  {:<9} skipped: {why}",
                r["backend"].as_str().unwrap_or("")
            ),
            None => rows.push(r),
        }
    }
    rows
}

/// Runs `tidig --json --db URL ARGS…` as a child and returns its report.
fn child(backend: &str, url: &str, args: &[&std::ffi::OsStr]) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args(["--json", "--db", url])
        .args(args)
        .output()
        .context("running the benchmark child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "child printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if !output.status.success() {
        bail!("{backend}: {}", v["error"]);
    }
    Ok(v)
}

fn run_child(backend: &str, url: &str, dir: &Path, fhir: u64) -> Result<Value> {
    let v = child(backend, url, &["ingest".as_ref(), dir.as_os_str()])?;
    // Only the FHIR files count for the FHIR rate: time spent in those files.
    let fhir_secs: f64 = v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| {
            f["format"]
                .as_str()
                .is_some_and(|s| s.starts_with("fhir-n"))
        })
        .map(|f| f["seconds"].as_f64().unwrap_or(0.0))
        .sum();
    Ok(json!({
        "backend": backend,
        "seconds": v["seconds"],
        "lines": v["read"],
        "lines_per_second": v["records_per_second"],
        "fhir_resources": fhir,
        "fhir_seconds": fhir_secs,
        "fhir_resources_per_second": if fhir_secs > 0.0 { fhir as f64 / fhir_secs } else { 0.0 },
        "peak_rss_mb": v["peak_rss_mb"],
    }))
}

#[derive(Debug, Args)]
pub struct BenchFeaturesArgs {
    #[arg(long, default_value_t = 100_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "target/bench-data")]
    pub data: PathBuf,
    /// The as-of date of the build.
    #[arg(long, default_value = "2025-01-01")]
    pub as_of: String,
    #[arg(long)]
    pub postgres: Option<String>,
    #[arg(long)]
    pub no_postgres: bool,
}

/// Ingests the cached municipality into each backend (not timed), then times one
/// `features build` of the default set per backend, as a child process.
pub async fn features(a: BenchFeaturesArgs, json_out: bool, settings: &Settings) -> Result<()> {
    let dir = municipality(&a.data, a.persons, a.seed, false, json_out)?;
    Keys::ensure(&settings.keys.dir, &settings.audit.origin)?;
    let work = tempfile::tempdir()?;
    let (targets, _cluster, skipped) =
        backends(work.path(), a.postgres.as_deref(), a.no_postgres).await?;
    let mut results = Vec::new();
    for (backend, url) in &targets {
        child(backend, url, &["ingest".as_ref(), dir.as_os_str()])?;
        let v = child(
            backend,
            url,
            &[
                "features".as_ref(),
                "build".as_ref(),
                "--as-of".as_ref(),
                a.as_of.as_ref(),
            ],
        )?;
        results.push(json!({
            "backend": backend,
            "seconds": v["seconds"],
            "persons": v["persons"],
            "features": v["features"],
            "events_scanned": v["events_scanned"],
            "peak_rss_mb": v["peak_rss_mb"],
        }));
    }
    if let Some(why) = skipped {
        results.push(json!({"backend": "postgres", "skipped": why}));
    }
    let out = json!({"ok": true, "persons": a.persons, "as_of": a.as_of, "results": results});
    if json_out {
        emit_json!("{out}");
        return Ok(());
    }
    println!(
        "feature build benchmark: {}-person municipality, as of {}",
        a.persons, a.as_of
    );
    for r in measured(&out) {
        println!(
            "  {:<9} {:>7.2} s  {} persons x {} features  {} events scanned  peak RSS {:>6.1} MiB",
            r["backend"].as_str().unwrap_or(""),
            r["seconds"].as_f64().unwrap_or(0.0),
            r["persons"],
            r["features"],
            r["events_scanned"],
            r["peak_rss_mb"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[arg(long, default_value_t = 100_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "target/bench-data")]
    pub data: PathBuf,
    /// Keep the store here (a new SQLite file) instead of a temporary directory: the
    /// scikit-learn peer (`scripts/sklearn_peer.py`) trains on the same vectors.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// The cached municipality ingested into a fresh SQLite store, with the default set's
/// feature snapshots built for training (two), the holdout and the reference date 2026-01-01.
struct Prepared {
    dir: PathBuf,
    /// Holds the store's directory until the benchmark ends.
    _work: tempfile::TempDir,
    app: App,
    set: tidig_models::features::FeatureSet,
    reference: NaiveDate,
}

async fn prepare(a: &BenchTrainArgs, json_out: bool, settings: &Settings) -> Result<Prepared> {
    let dir = municipality(&a.data, a.persons, a.seed, false, json_out)?;
    Keys::ensure(&settings.keys.dir, &settings.audit.origin)?;
    let work = tempfile::tempdir()?;
    let path = match &a.store {
        Some(p) if p.exists() => anyhow::bail!("--store {}: exists; name a new file", p.display()),
        Some(p) => p.clone(),
        None => work.path().join("bench.db"),
    };
    let url = format!("sqlite://{}", path.display());
    child("sqlite", &url, &["ingest".as_ref(), dir.as_os_str()])?;
    let mut settings = settings.clone();
    settings.deployment = bench_deployment();
    settings.rules.pack = None;
    let app = App::open(&url, settings, Clock::System).await?;
    let set = pipeline::load_feature_set(None)?;
    let reference = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
    let horizon = chrono::Duration::days(set.label.horizon_days as i64);
    let holdout = reference - horizon;
    for d in [
        holdout - horizon - horizon,
        holdout - horizon,
        holdout,
        reference,
    ] {
        pipeline::features::build(&app, &Principal::demo("bench")?, &set, d, &Quiet).await?;
    }
    Ok(Prepared {
        dir,
        _work: work,
        app,
        set,
        reference,
    })
}

/// Trains on the cached municipality (ingest and feature builds first, not timed), then
/// evaluates the model against the generator's truth on the reference date next to the
/// oracle (the true probabilities), and times scoring with the top 5 factors in memory.
pub async fn train(a: BenchTrainArgs, json_out: bool, settings: &Settings) -> Result<()> {
    use std::time::Instant;
    use tidig_connectors::national_id::{parse, Country, IdRules};
    use tidig_connectors::pseudonym::Identity;
    use tidig_models::metrics::auc;

    let Prepared {
        dir,
        _work,
        app,
        set,
        reference,
    } = prepare(&a, json_out, settings).await?;
    let started = Instant::now();
    let options = pipeline::train::TrainOptions::new(0.05, Gate::default())?;
    let report =
        pipeline::train::train(&app, &Principal::demo("bench")?, &set, reference, &options).await?;
    let challenger = report.artifact.challenger.clone();
    // The default model's training time: the challenger is timed on its own.
    let train_seconds = started.elapsed().as_secs_f64() - report.challenger_seconds.unwrap_or(0.0);
    let training_rows: usize = report
        .artifact
        .cohort
        .iter()
        .filter(|(k, _)| k.starts_with("train"))
        .map(|(_, v)| *v)
        .sum();

    // The reference-date snapshot against the truth.
    let edge = app.edge()?;
    let rules = IdRules::new(app.clock().today());
    let mut truth = std::collections::HashMap::new();
    let text = std::fs::read_to_string(dir.join("truth/outcomes.csv"))?;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 5 {
            continue;
        }
        let Ok(nid) = parse(Country::Fi, f[0], &rules) else {
            continue;
        };
        let id = edge.pseudonymizer.person(Identity::National(&nid)).id;
        truth.insert(id, (f[3].parse::<f64>().unwrap_or(0.0), f[4] == "1"));
    }
    let vectors = pipeline::features::load_vectors(&app, &set.hash(), reference).await?;
    let (mut model_p, mut true_p, mut outcome) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = Vec::new();
    for (pid, v) in &vectors {
        if let Some((p, y)) = truth.get(pid) {
            model_p.push(report.artifact.model.probability(&v.values));
            true_p.push(*p);
            outcome.push(*y);
        }
        rows.push(v.values.clone());
    }
    let model_auc = auc(&model_p, &outcome);
    let oracle_auc = auc(&true_p, &outcome);
    // The ceiling these features allow a linear model: the oracle's own log-odds
    // regressed on the model's inputs (least squares on the same children, so optimistic),
    // ranked against the outcomes.
    let ceiling_auc = {
        let scaler = &report.artifact.model.scaler;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (pid, v) in &vectors {
            if let Some((p, _)) = truth.get(pid) {
                let mut r = scaler.transform(&v.values);
                r.push(1.0);
                x.push(r);
                y.push(tidig_models::logit(*p));
            }
        }
        let fitted = least_squares(&x, &y);
        let pred: Vec<f64> = x
            .iter()
            .map(|r| r.iter().zip(&fitted).map(|(a, b)| a * b).sum())
            .collect();
        auc(&pred, &outcome)
    };

    // Scoring throughput, one core, in memory: the routine production explains with.
    let target = 1_000_000usize;
    let model = &report.artifact.model;
    let started = Instant::now();
    let mut scored = 0usize;
    let mut checksum = 0.0;
    let mut top = Vec::with_capacity(5);
    while scored < target && !rows.is_empty() {
        for r in &rows {
            let p = model.score_top(r, 5, &mut top);
            checksum += p + top.first().map_or(0.0, |t| t.1);
            scored += 1;
        }
    }
    let score_seconds = started.elapsed().as_secs_f64();
    let out = json!({
        "ok": true,
        "persons": a.persons,
        "model_id": report.model_id,
        "training_rows": training_rows,
        "features": report.artifact.features.len(),
        "train_seconds": train_seconds,
        "alpha": report.artifact.model.alpha,
        "holdout_auc_2025": report.artifact.evaluation.auc,
        "reference_children": outcome.len(),
        "reference_positives": outcome.iter().filter(|y| **y).count(),
        "model_auc": model_auc,
        "oracle_auc": oracle_auc,
        "auc_ratio": match (model_auc, oracle_auc) { (Some(m), Some(o)) => Some(m / o), _ => None },
        "linear_ceiling_auc": ceiling_auc,
        "challenger": challenger,
        "challenger_seconds": report.challenger_seconds,
        "scored": scored,
        "score_seconds": score_seconds,
        "persons_per_second": scored as f64 / score_seconds.max(1e-9),
        "checksum": checksum,
    });
    app.close().await?;
    if json_out {
        emit_json!("{out}");
        return Ok(());
    }
    println!(
        "training benchmark: {}-person municipality, {} training rows x {} features",
        a.persons, training_rows, out["features"]
    );
    println!("  training (3-fold CV over 4 L2 strengths + final fit): {train_seconds:.1} s");
    println!(
        "  reference-date holdout vs truth ({} children, {} interventions): model AUC {:.3}, oracle AUC {:.3}, ratio {:.3}",
        out["reference_children"], out["reference_positives"], model_auc.unwrap_or(0.0), oracle_auc.unwrap_or(0.0),
        out["auc_ratio"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  ceiling for these features: the oracle's log-odds fitted linearly on the model's inputs ranks at AUC {:.3}",
        ceiling_auc.unwrap_or(0.0)
    );
    if let Some(c) = &challenger {
        println!(
            "  challenger ({} trees, depth {}): trained in {:.1} s; 2025 holdout AUC {:.3} vs logistic {:.3}; precision at capacity {:.3} vs {:.3}",
            c.params.trees,
            c.params.max_depth,
            report.challenger_seconds.unwrap_or(0.0),
            c.auc.unwrap_or(0.0),
            report.artifact.evaluation.auc.unwrap_or(0.0),
            c.precision_at_capacity,
            report.artifact.evaluation.precision_at_capacity
        );
    }
    println!(
        "  scoring with top-5 explanations: {} persons in {:.3} s = {:.0} persons/s (one core)",
        scored,
        score_seconds,
        out["persons_per_second"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

/// Scoring end to end from the store: the cached municipality is ingested, its feature
/// snapshots built and a model trained, approved and activated (none of it timed); then
/// one `score` run is timed (features read, scored, explained, rules evaluated,
/// suggestions written), and the rule layer is timed on its own without the memo.
pub async fn score(a: BenchTrainArgs, json_out: bool, settings: &Settings) -> Result<()> {
    use std::time::Instant;
    use tidig_governance::eval::{PersonFacts, Request};

    let Prepared {
        dir: _,
        _work,
        app,
        set,
        reference,
    } = prepare(&a, json_out, settings).await?;
    let gate = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    let mut options = pipeline::train::TrainOptions::new(0.05, gate)?;
    options.challenger = None;
    let trainer = Principal::demo("bench")?;
    let reviewer = Principal::demo("bench-reviewer")?;
    let model = pipeline::train::train(&app, &trainer, &set, reference, &options).await?;
    pipeline::registry::approve(&app, &reviewer, &model.model_id).await?;
    pipeline::registry::activate(&app, &reviewer, &model.model_id, &set).await?;
    // Every allowed suggestion is written: capacity is not what is measured here.
    let mut scoring_settings = app.settings().clone();
    for u in &mut scoring_settings.scoring.units {
        u.weekly_capacity = usize::MAX / 2;
    }
    let scoring = scoring_settings.scoring.clone();
    let deployment = scoring_settings.deployment.clone();
    let pack = app.pack().clone();
    let app = app.with_settings(scoring_settings);
    let started = Instant::now();
    let (report, _) = pipeline::score::score(&app, &reviewer, &set, reference).await?;
    let seconds = started.elapsed().as_secs_f64();

    // The rule layer alone, without the memo: one eligibility request per cohort member
    // through Cedar.
    let facts = pipeline::registry::model_facts(&model.model_id, &model.artifact);
    let requests: Vec<Request> = (0..report.cohort)
        .map(|i| Request::Score {
            model: facts.clone(),
            person: PersonFacts {
                age: (i % 18) as i64,
                objection: i % 97 == 0,
            },
            deployment: deployment.clone(),
            intervention: scoring.intervention.clone(),
        })
        .collect();
    let started = Instant::now();
    let allowed = requests.iter().filter(|r| pack.evaluate(r).allowed).count();
    let raw_seconds = started.elapsed().as_secs_f64();
    app.close().await?;
    let out = json!({
        "ok": true,
        "persons": a.persons,
        "cohort": report.cohort,
        "scored": report.scored,
        "suggestions_written": report.new,
        "seconds": seconds,
        "phases": report.seconds,
        "rule_requests": report.rule_requests,
        "rule_evaluations": report.rule_evaluations,
        "rules_persons_per_second": report.scored as f64 / report.seconds.rules.max(1e-9),
        "cedar_requests_per_second_unmemoized": requests.len() as f64 / raw_seconds.max(1e-9),
        "cedar_allowed": allowed,
    });
    if json_out {
        emit_json!("{out}");
        return Ok(());
    }
    println!(
        "scoring benchmark: {}-person municipality, {} children in the cohort, SQLite",
        a.persons, report.cohort
    );
    println!(
        "  end to end: {seconds:.2} s (load {:.2} s, score and explain {:.3} s, rules {:.3} s, write {:.2} s); {} suggestions written",
        report.seconds.load, report.seconds.score, report.seconds.rules, report.seconds.write, report.new
    );
    println!(
        "  rule evaluation in the pipeline: {} requests ({} through Cedar, the rest memoized) for {} scored persons = {:.0} persons/s",
        report.rule_requests,
        report.rule_evaluations,
        report.scored,
        out["rules_persons_per_second"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  Cedar without the memo: {} eligibility requests in {raw_seconds:.2} s = {:.0} requests/s (one core)",
        requests.len(),
        out["cedar_requests_per_second_unmemoized"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

/// Ordinary least squares by the normal equations with a tiny ridge (diagnostics only).
fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let k = x.first().map_or(0, Vec::len);
    let mut a = vec![vec![0.0; k + 1]; k];
    for (r, t) in x.iter().zip(y) {
        for i in 0..k {
            for j in 0..k {
                a[i][j] += r[i] * r[j];
            }
            a[i][k] += r[i] * t;
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-6;
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..k {
        let p = (c..k)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        let d = a[c][c];
        if d.abs() < 1e-12 {
            continue;
        }
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / d;
                if f != 0.0 {
                    for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                        *x -= f * p;
                    }
                }
            }
        }
    }
    (0..k)
        .map(|i| {
            if a[i][i].abs() < 1e-12 {
                0.0
            } else {
                a[i][k] / a[i][i]
            }
        })
        .collect()
}

/// The benchmarks' deployment: synthetic data, every reference named.
fn bench_deployment() -> tidig_governance::eval::Deployment {
    tidig_governance::eval::Deployment {
        legal_basis: "benchmark on synthetic data".into(),
        dpia_ref: "BENCH".into(),
        fria_ref: "BENCH".into(),
        art9_basis: "benchmark on synthetic data".into(),
        stopped: false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn least_squares_recovers_a_linear_law() {
        let x: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![i as f64, ((i * 7) % 11) as f64, 1.0])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] - 0.5 * r[1] + 3.0).collect();
        let w = super::least_squares(&x, &y);
        for (got, want) in w.iter().zip([2.0, -0.5, 3.0]) {
            assert!((got - want).abs() < 1e-4, "{w:?}");
        }
    }
}
