//! The `tidig` command line: parse flags → call an operation on `&App` → print. Flags
//! are validated into settings and typed values before any work starts; every command
//! prints a human summary, or exactly one JSON object with `--json`.

/// Prints the command's one JSON object and notes that it was printed, so that a later
/// failure adds its error to stderr only: `--json` prints exactly one object.
macro_rules! emit_json {
    ($($t:tt)*) => {{
        $crate::cli::JSON_PRINTED.store(true, std::sync::atomic::Ordering::SeqCst);
        println!($($t)*);
    }};
}

/// Whether this process has printed its JSON object.
pub(crate) static JSON_PRINTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

mod bench;
mod print;
mod progress;
mod quickstart;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tidig_connectors::Format;
use tidig_models::forest::ForestParams;

use crate::app::App;
use crate::clock::Clock;
use crate::dates;
use crate::pipeline::{self, ingest::IngestOptions, load_feature_set};
use crate::principal::Principal;
use crate::settings::{Keys, Settings};
use crate::synth::SynthConfig;
use print::*;
use progress::Bar;

#[derive(Debug, Parser)]
#[command(
    name = "tidig",
    version,
    about = "Rules-driven decision support for preventive municipal services"
)]
pub struct Cli {
    /// Store URL: sqlite://PATH (default) or postgres://…
    #[arg(
        long,
        global = true,
        env = "TIDIG_DB",
        default_value = "sqlite://tidig.db"
    )]
    pub db: String,
    /// Print one JSON object with the command's figures on stdout, nothing else.
    #[arg(long, global = true)]
    pub json: bool,
    /// Settings file (default: ./tidig.toml when present).
    #[arg(long, global = true, env = "TIDIG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Who acts (recorded with every change; four-eyes compares it): this name, else
    /// $TIDIG_ACTOR, else the OS user. `--by` is the same flag.
    #[arg(long = "as", visible_alias = "by", global = true, value_name = "NAME")]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Synthetic municipality → keys → ingest, on ./tidig.db.
    Quickstart(QuickstartArgs),
    /// Write a synthetic municipality's registry extracts.
    Synth(SynthArgs),
    /// Load registry extracts (files or directories; format detected per file).
    Ingest(IngestArgs),
    /// Point-in-time feature vectors.
    #[command(subcommand)]
    Features(FeaturesCommand),
    /// Train, evaluate and register a model on time-split snapshots.
    Train(TrainArgs),
    /// The model registry.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// The ethics rule pack: check it, run its golden cases.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Score persons as of a date into suggestions (active model, rule pack, features).
    Score(ScoreArgs),
    /// Manage the pseudonym, vault and audit-signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The tamper-evident audit trail: verify, checkpoint, prove, query, export.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The objection register (GDPR Art 21): add, withdraw, list.
    #[command(subcommand)]
    Objections(ObjectionsCommand),
    /// The oversight statistics (aggregates only; small cells suppressed).
    Stats,
    /// The newest scoring run's drift: each input's and the score's population stability
    /// index against the model's training distribution.
    Drift,
    /// The secondary-use permit register (Act 552/2019): add, amend, revoke, list, show.
    #[command(subcommand)]
    Permits(PermitsCommand),
    /// Research under a permit, as the researcher `--as` names: run an evaluation,
    /// read its aggregate results.
    #[command(subcommand)]
    Research(ResearchCommand),
    /// Row counts of the store and its last ingest runs.
    Status,
    /// Serve the caseworker and oversight gRPC services (health and reflection included).
    Serve(serve::ServeArgs),
    /// Call the service: list, get, decide, reidentify, watch, export (caseworkers); the
    /// stop switch, objections, audit trail, model lifecycle and statistics (oversight).
    Client(serve::ClientArgs),
    /// Benchmarks (release build).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Build (or rebuild) the vectors of a feature set as of a date.
    Build(FeaturesBuildArgs),
}

#[derive(Debug, Args)]
pub struct FeaturesBuildArgs {
    /// The as-of date: only events at or before its start (00:00 UTC) count.
    #[arg(long)]
    pub as_of: String,
    /// A feature-set file (TOML); the built-in child-and-family set by default.
    #[arg(long)]
    pub set: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labels up to this date are used: holdout one horizon before, training before that.
    #[arg(long)]
    pub as_of: String,
    /// Model family.
    #[arg(long, default_value = "logistic")]
    pub model: String,
    /// Share of the cohort the units can act on (flags at capacity).
    #[arg(long, default_value_t = 0.05)]
    pub capacity: f64,
    /// A feature-set file; the built-in child-and-family set by default.
    #[arg(long)]
    pub set: Option<PathBuf>,
    /// Where the model card (Markdown and JSON) is written.
    #[arg(long, default_value = "model-cards")]
    pub cards: PathBuf,
    /// Skip the random-forest challenger (the card then has no comparison).
    #[arg(long)]
    pub no_challenger: bool,
    /// Train as a researcher (`--as`) under this secondary-use permit: only its cohort
    /// and period are read, the results are aggregates, and the model enters the
    /// registry as trained with the permit named, for oversight to approve.
    #[arg(long)]
    pub permit: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every registered model with its state.
    List,
    /// One model's artifact (id or unique prefix).
    Show { id: String },
    /// Approve a trained model for production: refused when it failed its release gate
    /// or when the approver trained it.
    Approve { id: String },
    /// Activate an approved model for scoring (its inputs must pass the data-stage
    /// rules); the model active before it is retired.
    Activate {
        id: String,
        /// The model's feature-set file; the built-in child-and-family set by default.
        #[arg(long)]
        set: Option<PathBuf>,
    },
    /// Retire a model: it is never used for scoring again.
    Retire { id: String },
    /// Roll back the last activation in one step: the model the active one replaced is
    /// active again (its inputs checked against today's rules) and the active one is
    /// retired. Again, to walk one activation further back.
    Rollback {
        /// The feature-set file; the built-in child-and-family set by default.
        #[arg(long)]
        set: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResearchCommand {
    /// Evaluate under a permit: only its features, cohort and period are read, objectors
    /// never; aggregates only, small cells suppressed.
    Run {
        #[arg(long)]
        permit: String,
        #[arg(long)]
        as_of: String,
        /// `evaluate` (aggregates only) or `train` (the deployment's model trained on
        /// the permitted data, registered as trained for oversight to approve).
        #[arg(long, default_value = "evaluate")]
        kind: String,
        /// Features to use (comma-separated); every feature the permit allows by default.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// A narrower cohort: birth years `FIRST-LAST` inside the permit's.
        #[arg(long)]
        born: Option<String>,
        /// A narrower cohort: municipality codes (comma-separated) inside the permit's.
        #[arg(long, value_delimiter = ',')]
        municipalities: Vec<String>,
    },
    /// A run's record and, when released, its aggregate results.
    Results { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PermitsCommand {
    /// Register a permit from its TOML file (see docs/permits.md).
    Add { file: PathBuf },
    /// Amend a registered permit: the file names its id; its terms become a new version.
    Amend { file: PathBuf },
    /// Revoke a permit: nothing more runs under it.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Every permit as it stands.
    List,
    /// One permit's versions, oldest first.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ObjectionsCommand {
    /// Register a person's objection: from now on they are not scored or trained on, and
    /// their open suggestions are withdrawn.
    Add {
        /// The person's national ID (or pseudonym); `-` reads it from standard input, so
        /// that it stays out of the shell's history and the process list.
        person: String,
        /// The data-protection office's reference for the request.
        #[arg(long)]
        reference: String,
    },
    /// Withdraw a person's objection.
    Withdraw {
        /// The person's national ID (or pseudonym); `-` reads it from standard input.
        person: String,
        #[arg(long)]
        reference: String,
    },
    /// The register, newest first (pseudonyms only).
    List,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a pack (syntax, schema, annotations, stages) and print its rules and
    /// version; PATH is a pack directory, the configured or built-in pack by default.
    Check { path: Option<PathBuf> },
    /// Run a pack's golden cases (PATH/golden.json, or --golden FILE); fails on any
    /// case whose decision or reasons differ.
    Test {
        path: Option<PathBuf>,
        #[arg(long)]
        golden: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Score with the features as of this date.
    #[arg(long)]
    pub as_of: String,
    /// The active model's feature-set file; the built-in set by default.
    #[arg(long)]
    pub set: Option<PathBuf>,
    /// Suggestions printed (all are stored).
    #[arg(long, default_value_t = 5)]
    pub show: usize,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the keys (mode 0600) in the key directory: pseudonym, vault and the audit
    /// log's checkpoint signer; never overwrites.
    Generate,
    /// Print the audit log's public verifier key in signed-note form
    /// (`name+keyhash+base64`), for anyone who checks its checkpoints.
    Verifier,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every entry hash, link and the Merkle root, check every checkpoint's
    /// signature; report the first entry altered, removed, inserted or reordered.
    Verify {
        /// A signed checkpoint saved elsewhere earlier: the log must extend it.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
        /// The log's verifier key (text or a file holding it); the configured key's by
        /// default.
        #[arg(long, value_name = "KEY")]
        verifier: Option<String>,
    },
    /// Sign a checkpoint of the log now (if it grew) and print the latest one, for
    /// archiving outside the database.
    Checkpoint,
    /// Print an inclusion proof of entry SEQ in the latest checkpoint.
    Prove { seq: u64 },
    /// Entries by time, principal, action, outcome or person, oldest first, paged. A
    /// national ID given with --person is pseudonymized at once, never stored or shown.
    Query(AuditQueryArgs),
    /// Write the log as JSON Lines: a header with the signed checkpoint and verifier
    /// key, then each entry exactly as hashed.
    Export {
        /// The file to write (stdout when absent).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an export file without any store: hashes, chain and the signed root.
    VerifyExport {
        file: PathBuf,
        /// The verifier key to trust (text or a file), never the one inside the export.
        #[arg(long, value_name = "KEY")]
        verifier: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// From this date (YYYY-MM-DD) or RFC 3339 time, inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// Until this date or time, exclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// Who acted (the principal id as recorded).
    #[arg(long)]
    pub principal: Option<String>,
    /// The action (`model.approve`, `ingest.file`, `score.run`, …).
    #[arg(long)]
    pub action: Option<String>,
    /// allowed, denied or failed.
    #[arg(long)]
    pub outcome: Option<String>,
    /// A person: a pseudonym (p + 32 hex) or a national ID.
    #[arg(long)]
    pub person: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// The token a previous page printed.
    #[arg(long)]
    pub page_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// End-to-end ingest of a synthetic municipality into SQLite and PostgreSQL.
    Ingest(bench::BenchIngestArgs),
    /// One feature build of the default set on an ingested municipality.
    Features(bench::BenchFeaturesArgs),
    /// Training time, model AUC against the oracle, and scoring throughput.
    Train(bench::BenchTrainArgs),
    /// One scoring run end to end from the store, and the rule layer's throughput.
    Score(bench::BenchTrainArgs),
    /// Durable audit appends per second (1, 8, 64 callers) and verification rate.
    Audit(bench::BenchAuditArgs),
    /// The caseworker service under load: list / get / decide calls per second and
    /// latency percentiles, with and without authentication and audit.
    Serve(bench::BenchServeArgs),
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    #[arg(long, default_value_t = 20_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the synthetic extracts go.
    #[arg(long, default_value = "tidig-synth")]
    pub out: PathBuf,
    /// End after the audit check instead of serving the caseworker service with demo
    /// principals (for scripts and tests).
    #[arg(long)]
    pub no_serve: bool,
    /// Where the demo service listens (default: `[service] listen`).
    #[arg(long)]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 20_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// National ID scheme: fi, se, dk or no.
    #[arg(long, default_value = "fi")]
    pub country: String,
    #[arg(long, default_value = "2026-01-01")]
    pub reference_date: String,
    /// Fraction of data lines given a fault (recorded in truth/corruptions.csv).
    #[arg(long, default_value_t = 0.0)]
    pub corrupt_rate: f64,
    /// Write FHIR NDJSON gzip-compressed.
    #[arg(long)]
    pub gzip: bool,
    /// Write social-services events as JSON Lines instead of CSV.
    #[arg(long)]
    pub social_jsonl: bool,
    /// Years of history before the reference date.
    #[arg(long, default_value_t = 6)]
    pub history_years: u32,
    /// Municipality code (091 Helsinki, 049 Espoo, 092 Vantaa, 837 Tampere, 853 Turku, …).
    #[arg(long, default_value = "091")]
    pub municipality: String,
    /// Directory with the Statistics Finland population files.
    #[arg(long, env = "TIDIG_POPULATION_DATA")]
    pub population_data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Force a format: fhir-ndjson, fhir-bundle, population-csv, cpr, social-csv, social-jsonl.
    #[arg(long)]
    pub format: Option<String>,
    /// Parse files again even when the same content was loaded before.
    #[arg(long)]
    pub force: bool,
    /// Country of the national IDs in population and social extracts (overrides settings).
    #[arg(long)]
    pub country: Option<String>,
    /// Also accept this FHIR identifier system as an opaque person key (repeatable).
    #[arg(long = "person-system")]
    pub person_systems: Vec<String>,
    /// Social-services code table (TOML).
    #[arg(long)]
    pub code_table: Option<PathBuf>,
    /// Records per batch handed from the parser to the writer.
    #[arg(long, default_value_t = 32_768, hide = true)]
    pub batch_rows: usize,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    init_tracing();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json && !JSON_PRINTED.load(std::sync::atomic::Ordering::SeqCst) {
                println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tidig … | head` closes stdout early; `println!` then panics. Exit quietly instead,
/// as a Unix tool killed by SIGPIPE would (status 141), and keep every other panic loud.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDIG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// What every command gets: validated settings and the global flags.
pub(crate) struct Ctx {
    db: String,
    json: bool,
    settings: Settings,
    actor: Option<String>,
}

impl Ctx {
    /// Opens the one `App` of this process.
    /// Opens the one `App` of this process and records what it sees for the first time
    /// (a new rule-pack version, changed deployment settings).
    pub(crate) async fn app(&self) -> Result<App> {
        let app = App::open(&self.db, self.settings.clone(), Clock::System)
            .await
            .with_context(|| format!("opening {}", self.db))?;
        if let Err(e) = app.record_first_seen(&self.principal()?).await {
            let _ = app.close().await;
            return Err(e.into());
        }
        Ok(app)
    }

    pub(crate) fn principal(&self) -> Result<Principal> {
        Ok(Principal::operator(self.actor.as_deref())?)
    }
}

/// Runs `op` on a freshly opened app and closes the app whatever happened.
macro_rules! with_app {
    ($ctx:expr, |$app:ident| $op:expr) => {{
        let $app = $ctx.app().await?;
        let result: Result<_> = async { Ok($op) }.await;
        let closed = $app.close().await;
        let value = result?;
        closed.context("closing the audit trail")?;
        value
    }};
}

// After `with_app!`, which it uses.
mod audit;

async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        settings: Settings::load(cli.config.as_deref())?,
        db: cli.db,
        json: cli.json,
        actor: cli.actor,
    };
    match cli.command {
        Command::Quickstart(a) => quickstart::run(&ctx, a).await,
        Command::Synth(a) => synth(&ctx, a),
        Command::Ingest(a) => ingest(ctx, a).await,
        Command::Features(FeaturesCommand::Build(a)) => features(&ctx, a).await,
        Command::Train(a) => train(&ctx, a).await,
        Command::Models(m) => models(&ctx, m).await,
        Command::Rules(r) => rules(&ctx, r),
        Command::Score(a) => score(&ctx, a).await,
        Command::Keys(KeysCommand::Generate) => keys(&ctx),
        Command::Keys(KeysCommand::Verifier) => verifier_key(&ctx),
        Command::Audit(a) => audit::run(&ctx, a).await,
        Command::Objections(o) => objections(&ctx, o).await,
        Command::Permits(p) => permits(&ctx, p).await,
        Command::Research(r) => {
            let by = Principal::researcher(ctx.actor.as_deref())?;
            let run = match r {
                ResearchCommand::Run {
                    permit,
                    as_of,
                    kind,
                    features,
                    born,
                    municipalities,
                } => {
                    use pipeline::research::{Kind, RunRequest};
                    let kind = match kind.as_str() {
                        "evaluate" => Kind::Evaluate,
                        "train" => Kind::Train,
                        other => anyhow::bail!("--kind `{other}`: evaluate or train"),
                    };
                    let request = RunRequest {
                        features,
                        birth_years: born.as_deref().map(birth_years).transpose()?,
                        municipalities,
                        ..RunRequest::new(&permit, kind, dates::parse("--as-of", &as_of)?)
                    };
                    let options =
                        pipeline::train::TrainOptions::new(0.05, ctx.settings.gate.clone())?;
                    research_run(&ctx, &by, &request, options).await?
                }
                ResearchCommand::Results { id } => {
                    with_app!(ctx, |app| pipeline::research::results(&app, &by, &id)
                        .await?)
                }
            };
            print::print_research(&run, ctx.json);
            Ok(())
        }
        Command::Drift => {
            let by = ctx.principal()?;
            let latest = with_app!(ctx, |app| pipeline::stats::latest_drift(&app, &by).await?);
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "latest": latest}));
                return Ok(());
            }
            match latest {
                None => println!("(no scoring run yet)"),
                Some(l) => {
                    match &l.drift {
                        None => println!(
                        "scoring run {} as of {}: model {} was trained before tidig measured drift",
                        l.run, l.as_of, &l.model_id[..12.min(l.model_id.len())]
                    ),
                        Some(d) => {
                            println!(
                                "scoring run {} as of {} (model {}): score PSI {:.3}",
                                l.run,
                                l.as_of,
                                &l.model_id[..12.min(l.model_id.len())],
                                d.score_psi
                            );
                            let mut by_psi: Vec<(&String, &f64)> = d.features.iter().collect();
                            by_psi.sort_by(|a, b| b.1.total_cmp(a.1));
                            for (f, p) in by_psi {
                                let mark = if *p > tidig_models::drift::WARN {
                                    "  SHIFTED"
                                } else {
                                    ""
                                };
                                println!("  {p:>7.3}  {f}{mark}");
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Stats => {
            let by = ctx.principal()?;
            let st = with_app!(ctx, |app| pipeline::stats::statistics(&app, &by).await?);
            let value = serde_json::to_value(&st)?;
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "statistics": value}));
            } else {
                print::print_statistics(&value);
            }
            Ok(())
        }
        Command::Status => status(&ctx).await,
        Command::Serve(a) => serve::serve(&ctx, a).await,
        Command::Client(a) => serve::client(ctx.json, a).await,
        Command::Bench(b) => bench::run(b, ctx.json, &ctx.settings).await,
    }
}

fn synth_config(a: &SynthArgs) -> Result<SynthConfig> {
    let mut cfg = SynthConfig::parse(
        a.out.clone(),
        a.persons,
        a.seed,
        &a.country,
        &a.reference_date,
        a.corrupt_rate,
    )?;
    cfg.gzip = a.gzip;
    cfg.history_years = a.history_years.max(1);
    cfg.municipality = a.municipality.clone();
    cfg.population_data = a.population_data.clone();
    cfg.social_jsonl = a.social_jsonl;
    Ok(cfg)
}

fn run_synth(cfg: &SynthConfig, json: bool) -> Result<crate::synth::SynthReport> {
    let bar = Bar::count(json);
    bar.start_count("synthesizing", cfg.persons as u64);
    let report = crate::synth::generate(cfg, &|n| bar.set(n))?;
    bar.clear();
    Ok(report)
}

fn synth(ctx: &Ctx, a: SynthArgs) -> Result<()> {
    let report = run_synth(&synth_config(&a)?, ctx.json)?;
    print_synth(&report, ctx.json);
    Ok(())
}

async fn ingest(mut ctx: Ctx, a: IngestArgs) -> Result<()> {
    if let Some(c) = &a.country {
        ctx.settings.country = c.clone();
    }
    for s in &a.person_systems {
        ctx.settings
            .health
            .person_systems
            .push(crate::settings::PersonSystemSetting {
                system: s.clone(),
                country: None,
            });
    }
    if let Some(t) = &a.code_table {
        ctx.settings.social.code_table = Some(t.clone());
    }
    let format = match &a.format {
        None => None,
        Some(f) => Some(Format::from_name(f).with_context(|| {
            format!("--format `{f}` is not one of fhir-ndjson, fhir-bundle, population-csv, cpr, social-csv, social-jsonl")
        })?),
    };
    let opts = IngestOptions {
        format,
        force: a.force,
        batch_rows: a.batch_rows.max(1),
    };
    let bar = Bar::bytes(ctx.json);
    let by = ctx.principal()?;
    let report = with_app!(ctx, |app| pipeline::ingest::ingest(
        &app, &by, &a.paths, &opts, &bar
    )
    .await?);
    print_ingest(&report, ctx.json);
    failed_files(&report)
}

/// The run's failure, naming the first failed file and why, when any file failed.
fn failed_files(report: &pipeline::ingest::IngestReport) -> Result<()> {
    if report.failed_files == 0 {
        return Ok(());
    }
    let first = report
        .files
        .iter()
        .find(|f| f.status == crate::domain::FileStatus::Failed)
        .map(|f| format!("{}: {}", f.file, f.error.as_deref().unwrap_or("failed")))
        .unwrap_or_default();
    match report.failed_files {
        1 => anyhow::bail!("{first} (nothing of that file was kept; the others loaded)"),
        n => {
            anyhow::bail!("{n} files failed to load, nothing of them was kept; the first: {first}")
        }
    }
}

async fn features(ctx: &Ctx, a: FeaturesBuildArgs) -> Result<()> {
    let as_of = dates::parse("--as-of", &a.as_of)?;
    let set = load_feature_set(a.set.as_deref())?;
    let bar = Bar::count(ctx.json);
    let by = ctx.principal()?;
    let report = with_app!(ctx, |app| pipeline::features::build(
        &app, &by, &set, as_of, &bar
    )
    .await?);
    print_features(&report, ctx.json);
    Ok(())
}

/// `FIRST-LAST` birth years.
fn birth_years(text: &str) -> Result<[i32; 2]> {
    let parse = |t: &str| t.trim().parse::<i32>().ok();
    match text.split_once('-').map(|(a, b)| (parse(a), parse(b))) {
        Some((Some(a), Some(b))) => Ok([a, b]),
        _ => anyhow::bail!("--born `{text}`: expected FIRST-LAST birth years, e.g. 2010-2015"),
    }
}

/// Starts and runs a research run here, its stages on a progress bar.
async fn research_run(
    ctx: &Ctx,
    by: &Principal,
    request: &pipeline::research::RunRequest,
    options: pipeline::train::TrainOptions,
) -> Result<pipeline::research::ResearchRun> {
    use crate::progress::Progress as _;
    let set = load_feature_set(None)?;
    let bar = Bar::count(ctx.json);
    bar.start_count("research run", 100);
    let on_step = |s: &pipeline::research::Step| {
        bar.message(&s.stage);
        bar.set(u64::from(s.percent));
    };
    let run = with_app!(ctx, |app| {
        let prepared = pipeline::research::start(&app, by, request, &set).await?;
        prepared.run(&app, &set, &options, &on_step).await?
    });
    bar.clear();
    Ok(run)
}

async fn train(ctx: &Ctx, a: TrainArgs) -> Result<()> {
    if a.model != "logistic" {
        anyhow::bail!("--model `{}`: only `logistic` is available", a.model);
    }
    let as_of = dates::parse("--as-of", &a.as_of)?;
    let set = load_feature_set(a.set.as_deref())?;
    let mut options = pipeline::train::TrainOptions::new(a.capacity, ctx.settings.gate.clone())?;
    options.challenger = (!a.no_challenger).then(ForestParams::default);
    options.cards = Some(a.cards.clone());
    if let Some(permit) = a.permit {
        // Research under a permit: the researcher `--as` names trains, aggregates only.
        if a.set.is_some() {
            anyhow::bail!("--permit trains the deployment's feature set; drop --set");
        }
        let by = Principal::researcher(ctx.actor.as_deref())?;
        let request =
            pipeline::research::RunRequest::new(&permit, pipeline::research::Kind::Train, as_of);
        let run = research_run(ctx, &by, &request, options).await?;
        print::print_research(&run, ctx.json);
        return Ok(());
    }
    let by = ctx.principal()?;
    let report = with_app!(ctx, |app| pipeline::train::train(
        &app, &by, &set, as_of, &options
    )
    .await?);
    print_train(&report, ctx.json);
    Ok(())
}

/// A person argument, or one line of standard input for `-`.
pub(crate) fn person_arg(person: String) -> Result<String> {
    if person != "-" {
        return Ok(person);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the person's national ID from standard input")?;
    Ok(line.trim().to_string())
}

async fn permits(ctx: &Ctx, p: PermitsCommand) -> Result<()> {
    use pipeline::permits;
    let by = ctx.principal()?;
    let read = |file: &std::path::Path| {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    };
    let views = match p {
        PermitsCommand::Add { file } => {
            let text = read(&file)?;
            vec![with_app!(ctx, |app| permits::register(&app, &by, &text)
                .await
                .with_context(|| format!("permit {}", file.display()))?)]
        }
        PermitsCommand::Amend { file } => {
            let text = read(&file)?;
            vec![with_app!(ctx, |app| permits::amend(&app, &by, &text)
                .await
                .with_context(|| format!("permit {}", file.display()))?)]
        }
        PermitsCommand::Revoke { id, reason } => {
            vec![with_app!(ctx, |app| permits::revoke(
                &app, &by, &id, &reason
            )
            .await?)]
        }
        PermitsCommand::List => with_app!(ctx, |app| permits::list(&app, &by).await?),
        PermitsCommand::Show { id } => with_app!(ctx, |app| permits::show(&app, &by, &id).await?),
    };
    if ctx.json {
        emit_json!("{}", json!({"ok": true, "permits": views}));
        return Ok(());
    }
    if views.is_empty() {
        println!("(no permits registered)");
    }
    for v in views {
        let p = &v.permit;
        println!(
            "{} v{} {}{} — {} for {} ({}), valid {} to {}; researchers {}; registries {}; features {}; cohort born {}–{}{}; data {} to {}; cells under {} suppressed; recorded {} by {}",
            p.id,
            v.version,
            v.state,
            v.revoked_reason.as_deref().map_or(String::new(), |r| format!(" ({r})")),
            p.issuer,
            p.holder,
            p.purpose.as_str(),
            p.valid.from,
            p.valid.to,
            p.researchers.join(", "),
            p.registries.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            p.features.join(", "),
            p.cohort.birth_years[0],
            p.cohort.birth_years[1],
            if p.cohort.municipalities.is_empty() {
                String::new()
            } else {
                format!(" in {}", p.cohort.municipalities.join(", "))
            },
            p.data_period.from,
            p.data_period.to,
            p.min_cell,
            v.recorded_at,
            v.recorded_by
        );
    }
    Ok(())
}

async fn objections(ctx: &Ctx, o: ObjectionsCommand) -> Result<()> {
    use pipeline::oversight;
    let by = ctx.principal()?;
    let change = match o {
        ObjectionsCommand::Add { person, reference } => {
            let person = person_arg(person)?;
            with_app!(ctx, |app| oversight::register_objection(
                &app, &by, &person, &reference
            )
            .await?)
        }
        ObjectionsCommand::Withdraw { person, reference } => {
            let person = person_arg(person)?;
            with_app!(ctx, |app| oversight::withdraw_objection(
                &app, &by, &person, &reference
            )
            .await?)
        }
        ObjectionsCommand::List => {
            let rows = with_app!(ctx, |app| oversight::list_objections(&app, &by).await?);
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "objections": rows}));
                return Ok(());
            }
            if rows.is_empty() {
                println!("(no objections registered)");
            }
            for r in rows {
                let state = match &r.withdrawn_at {
                    Some(at) => format!(
                        "withdrawn {at} by {} ({})",
                        r.withdrawn_by.as_deref().unwrap_or_default(),
                        r.withdrawn_reference.as_deref().unwrap_or_default()
                    ),
                    None => "applies".into(),
                };
                println!(
                    "{}  registered {} by {} ({})  {state}",
                    r.pseudonym, r.registered_at, r.registered_by, r.reference
                );
            }
            return Ok(());
        }
    };
    if ctx.json {
        emit_json!("{}", json!({"ok": true, "objection": change}));
    } else if change.changed {
        println!(
            "{}: done (audit entry {}); {} open suggestion(s) withdrawn",
            change.pseudonym,
            change.audit_seq,
            change.withdrawn_suggestions.len()
        );
    } else {
        println!(
            "{}: it was so already (recorded as audit entry {})",
            change.pseudonym, change.audit_seq
        );
    }
    Ok(())
}

async fn models(ctx: &Ctx, m: ModelsCommand) -> Result<()> {
    use pipeline::registry;
    let short = |id: &str| id[..16.min(id.len())].to_string();
    let print_row = |row: &crate::store::ModelRow, what: String| {
        if ctx.json {
            emit_json!("{}", json!({"ok": true, "model": row}));
        } else {
            println!("{} {what}", row.id);
        }
    };
    match m {
        ModelsCommand::List => {
            let rows = with_app!(ctx, |app| registry::list(&app).await?);
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "models": rows}));
                return Ok(());
            }
            for r in rows {
                println!(
                    "{}  {:<9} {:<8} gate {}  {} by {} ({})",
                    short(&r.id),
                    r.kind,
                    r.state,
                    if r.gate_passed { "passed" } else { "FAILED" },
                    r.created_at,
                    r.created_by,
                    r.created_auth
                );
            }
        }
        ModelsCommand::Show { id } => {
            let model = with_app!(ctx, |app| registry::show(&app, &id).await?);
            if ctx.json {
                emit_json!(
                    "{}",
                    json!({"ok": true, "model": model.row, "artifact": model.artifact})
                );
            } else {
                let set = load_feature_set(None)?;
                println!(
                    "{} ({}, {})\n",
                    model.row.id, model.row.state, model.row.created_at
                );
                println!(
                    "{}",
                    pipeline::card::card(&model.row.id, &model.artifact, &set)
                );
            }
        }
        ModelsCommand::Approve { id } => {
            let by = ctx.principal()?;
            let row = with_app!(ctx, |app| registry::approve(&app, &by, &id).await?);
            print_row(&row, format!("approved by {by}"));
        }
        ModelsCommand::Activate { id, set } => {
            let set = load_feature_set(set.as_deref())?;
            let by = ctx.principal()?;
            let (row, version) = with_app!(ctx, |app| (
                registry::activate(&app, &by, &id, &set).await?,
                app.pack().version().to_string()
            ));
            if ctx.json {
                emit_json!(
                    "{}",
                    json!({"ok": true, "model": row, "rules_version": version})
                );
            } else {
                println!(
                    "{} active (activated by {by}; its inputs pass the data-stage rules of pack {})",
                    row.id,
                    &version[..12]
                );
            }
        }
        ModelsCommand::Retire { id } => {
            let by = ctx.principal()?;
            let row = with_app!(ctx, |app| registry::retire(&app, &by, &id).await?);
            print_row(&row, format!("retired by {by}"));
        }
        ModelsCommand::Rollback { set } => {
            let set = load_feature_set(set.as_deref())?;
            let by = ctx.principal()?;
            let done = with_app!(ctx, |app| registry::rollback(&app, &by, &set).await?);
            if ctx.json {
                emit_json!(
                    "{}",
                    json!({"ok": true, "model": done.activated, "retired": done.retired})
                );
            } else {
                println!(
                    "{} active again, {} retired (rolled back by {by})",
                    done.activated.id, done.retired
                );
            }
        }
    }
    Ok(())
}

fn rules(ctx: &Ctx, r: RulesCommand) -> Result<()> {
    match r {
        RulesCommand::Check { path } => {
            let path = path.or_else(|| ctx.settings.rules.pack.clone());
            let pack = pipeline::rules::load_pack(path.as_deref())?;
            if ctx.json {
                emit_json!(
                    "{}",
                    json!({"ok": true, "version": pack.version(), "rules": pack.rules()})
                );
                return Ok(());
            }
            println!(
                "rule pack {} is valid: {} rules, version {}",
                path.as_ref()
                    .map_or("(built-in default)".into(), |p| p.display().to_string()),
                pack.rules().len(),
                pack.version()
            );
            for (stage, rules) in pack.by_stage() {
                println!("  stage {}:", stage.name());
                for r in rules {
                    println!(
                        "    {:<7} {:<34} {}  [{}]  ({}:{})",
                        r.effect, r.id, r.title, r.legal, r.file, r.line
                    );
                }
            }
            Ok(())
        }
        RulesCommand::Test { path, golden } => {
            let path = path.or_else(|| ctx.settings.rules.pack.clone());
            let pack = pipeline::rules::load_pack(path.as_deref())?;
            let (name, text) = match golden {
                Some(g) => (
                    g.display().to_string(),
                    std::fs::read_to_string(&g)
                        .with_context(|| format!("{}: cannot read golden cases", g.display()))?,
                ),
                None => pipeline::rules::golden_text(path.as_deref())?,
            };
            let report = tidig_governance::golden::run(&pack, &name, &text)?;
            print_golden(&report, ctx.json);
            if report.failed > 0 {
                anyhow::bail!("{} golden case(s) failed", report.failed);
            }
            Ok(())
        }
    }
}

async fn score(ctx: &Ctx, a: ScoreArgs) -> Result<()> {
    let as_of = dates::parse("--as-of", &a.as_of)?;
    let set = load_feature_set(a.set.as_deref())?;
    let by = ctx.principal()?;
    let (report, top) = with_app!(ctx, |app| {
        let (report, _) = pipeline::score::score(&app, &by, &set, as_of).await?;
        let mut top = pipeline::score::open_suggestions(&app, as_of).await?;
        top.truncate(a.show);
        (report, top)
    });
    print_score(&report, &top, ctx.json);
    Ok(())
}

fn keys(ctx: &Ctx) -> Result<()> {
    let dir = &ctx.settings.keys.dir;
    let created = Keys::ensure(dir, &ctx.settings.audit.origin)?;
    let keys = Keys::load(dir)?;
    if ctx.json {
        emit_json!(
            "{}",
            json!({"ok": true, "created": created, "pseudonym_fingerprint": keys.pseudonym.fingerprint(), "vault_fingerprint": keys.vault.fingerprint(),
                   "audit_verifier": crate::settings::audit_signer(dir)?.map(|s| s.verifier().to_text())})
        );
        return Ok(());
    }
    for p in &created {
        println!("created {}", p.display());
    }
    let verifier = crate::settings::audit_signer(dir)?.map(|s| s.verifier().to_text());
    println!(
        "keys in {} (pseudonym {}, vault {})",
        dir.display(),
        keys.pseudonym.fingerprint(),
        keys.vault.fingerprint()
    );
    if let Some(v) = verifier {
        println!("audit verifier key: {v}");
    }
    Ok(())
}

fn verifier_key(ctx: &Ctx) -> Result<()> {
    let signer = crate::settings::audit_signer(&ctx.settings.keys.dir)?.with_context(|| {
        format!(
            "no audit signing key in {} (run `tidig keys generate` or set TIDIG_AUDIT_KEY)",
            ctx.settings.keys.dir.display()
        )
    })?;
    let v = signer.verifier();
    if ctx.json {
        emit_json!(
            "{}",
            json!({"ok": true, "origin": v.name(), "verifier": v.to_text()})
        );
    } else {
        println!("{}", v.to_text());
    }
    Ok(())
}

async fn status(ctx: &Ctx) -> Result<()> {
    let (counts, backend) = with_app!(ctx, |app| pipeline::status(&app).await?);
    if ctx.json {
        emit_json!("{}", json!({"ok": true, "db": ctx.db, "counts": counts}));
    } else {
        println!("{} ({})", ctx.db, backend.name());
        println!("{}", serde_json::to_string_pretty(&counts)?);
    }
    Ok(())
}
