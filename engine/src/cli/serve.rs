//! `tidig serve` (the gRPC service) and `tidig client` (a small client for people
//! without a gRPC tool: the quickstart's printed calls use it).

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use crate::domain::DecisionOutcome;
use crate::server::client::Call;
use crate::server::{self, Authenticator};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: `[service] listen`, 127.0.0.1:50051); port 0 picks
    /// a free one, printed at start.
    #[arg(long)]
    pub listen: Option<String>,
    /// Accept the static demo tokens (synthetic data only; says so loudly).
    #[arg(long)]
    pub demo: bool,
}

/// Serves until SIGTERM or SIGINT, then lets calls in flight finish and closes the audit
/// trail (its last entries durable, a final checkpoint signed).
pub async fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    serve_with(ctx, ctx.settings.clone(), a, true).await
}

/// [`serve`] under `settings`; `announce` prints the address (and, with `--json`, the
/// command's one JSON object).
pub(crate) async fn serve_with(
    ctx: &Ctx,
    mut settings: crate::settings::Settings,
    a: ServeArgs,
    announce_start: bool,
) -> Result<()> {
    if let Some(l) = a.listen {
        settings.service.listen = l;
    }
    settings.service.demo |= a.demo;
    let auth = Authenticator::from_settings(&settings)?;
    let (listener, addr) = server::bind(&settings.service.listen).await?;
    let ctx = Ctx {
        settings: settings.clone(),
        db: ctx.db.clone(),
        json: ctx.json,
        actor: ctx.actor.clone(),
    };
    let app = Arc::new(ctx.app().await?);
    if announce_start {
        announce(&ctx, &settings, &auth, addr);
    } else if auth.demo() {
        eprintln!("WARNING: DEMO MODE on {addr}: static demo tokens are accepted. For synthetic data only.");
    }
    let served = server::serve(app.clone(), auth, listener, shutdown_signal()).await;
    // Every call has finished: this is the last holder of the app.
    let closed = match Arc::try_unwrap(app) {
        Ok(app) => app.close().await,
        Err(app) => app.audit().close().await,
    };
    served?;
    closed.context("closing the audit trail")?;
    eprintln!("tidig serve: stopped; calls in flight finished, audit trail closed");
    Ok(())
}

fn announce(
    ctx: &Ctx,
    settings: &crate::settings::Settings,
    auth: &Authenticator,
    addr: std::net::SocketAddr,
) {
    let demo_tokens: Vec<String> = if auth.demo() {
        server::auth::demo_principals(settings)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    } else {
        Vec::new()
    };
    if auth.demo() {
        eprintln!(
            "WARNING: DEMO MODE. Static demo tokens are accepted: anyone who can reach \
             {addr} can act as any demo principal. For synthetic data only."
        );
    }
    if ctx.json {
        emit_json!(
            "{}",
            json!({"listening": addr.to_string(), "tls": auth.tls().is_some(), "client_certificates": auth.client_certificates(), "demo": auth.demo(), "demo_tokens": demo_tokens, "db": ctx.db})
        );
    } else {
        let transport = match (auth.tls().is_some(), auth.client_certificates()) {
            (false, _) => "plaintext".to_string(),
            (true, 0) => "TLS".to_string(),
            (true, n) => format!("TLS, {n} mapped client certificate subjects"),
        };
        println!(
            "tidig serve: tidig.v1.CaseworkerService on {addr} ({transport}; {})",
            ctx.db
        );
        if auth.demo() {
            println!("demo tokens: {}", demo_tokens.join(", "));
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server.
    #[arg(long, env = "TIDIG_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token (a JWT, or a demo token when the server runs in demo mode); not
    /// needed with a client certificate the server maps to a principal.
    #[arg(long, env = "TIDIG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA that signed the server's certificate (PEM), for an https:// server.
    #[arg(long, env = "TIDIG_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Your client certificate (PEM), for servers that take client certificates.
    #[arg(long, env = "TIDIG_CERT", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "TIDIG_KEY", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub call: ClientCall,
}

#[derive(Debug, Subcommand)]
pub enum ClientCall {
    /// Open suggestions of your unit, most urgent first.
    List {
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// One suggestion in full, as you may see it.
    Get { id: String },
    /// Record your decision on a suggestion.
    Decide {
        id: String,
        /// accepted, declined, already-known or not-relevant.
        #[arg(long)]
        outcome: String,
        /// One of the configured reason codes.
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "")]
        note: String,
        /// Repeat a request with the same key to get the first answer (default: a new
        /// key per call).
        #[arg(long)]
        key: Option<String>,
    },
    /// The national ID behind a suggestion of your unit (audited with your purpose).
    Reidentify {
        id: String,
        #[arg(long)]
        purpose: String,
    },
    /// New suggestions of your unit as they arrive (Ctrl-C stops).
    Watch {
        /// Stop after this many suggestions (default: never).
        #[arg(long)]
        count: Option<usize>,
    },
    /// A suggestion as a FHIR R4 RiskAssessment (JSON).
    Export { id: String },
    /// Stop scoring everywhere (data-protection officer; EU AI Act Art 14).
    StopScoring {
        /// Why (recorded, and shown to caseworkers).
        #[arg(long)]
        reason: String,
    },
    /// Resume scoring (data-protection officer).
    ResumeScoring {
        /// Why it may run again.
        #[arg(long)]
        reason: String,
    },
    /// Register a person's objection (data-protection officer; GDPR Art 21).
    RegisterObjection {
        /// The national ID (or pseudonym); `-` reads it from standard input.
        person: String,
        #[arg(long)]
        reference: String,
    },
    /// Withdraw a person's objection (data-protection officer).
    WithdrawObjection {
        /// The national ID (or pseudonym); `-` reads it from standard input.
        person: String,
        #[arg(long)]
        reference: String,
    },
    /// The objection register (data-protection officer).
    ListObjections,
    /// Verify the audit trail (data-protection officer, auditor).
    VerifyAudit,
    /// Audit entries, oldest first (data-protection officer, auditor).
    QueryAudit {
        /// Only entries about this person: national ID or pseudonym; `-` reads it from
        /// standard input.
        #[arg(long)]
        person: Option<String>,
        /// Only this action (e.g. casework.reidentify).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// An inclusion proof of one audit entry in the latest signed checkpoint.
    Prove { seq: u64 },
    /// The whole audit trail as JSON Lines (check it with `tidig audit verify-export`).
    ExportAudit {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The model registry (data-protection officer, auditor).
    ListModels,
    /// A model's card and artifact (id or unique prefix).
    ModelCard { id: String },
    /// Approve a trained model (data-protection officer; never the model's trainer).
    ApproveModel { id: String },
    /// Activate an approved model (its inputs must pass the data-stage rules).
    ActivateModel { id: String },
    /// Retire a model.
    RetireModel { id: String },
    /// Roll back the last activation: the model the active one replaced is active again.
    RollbackModel,
    /// The oversight statistics (data-protection officer, auditor).
    Statistics,
    /// Register a secondary-use permit from its TOML file (data-protection officer).
    RegisterPermit { file: std::path::PathBuf },
    /// Amend a permit from its TOML file.
    AmendPermit { file: std::path::PathBuf },
    /// Revoke a permit.
    RevokePermit {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// The permit register (data-protection officer, auditor).
    ListPermits,
    /// One permit's versions.
    GetPermit { id: String },
    /// A person's subject-access report (data-protection officer; GDPR Art 15), written
    /// as one JSON document to `--out`.
    SubjectAccess {
        /// The person's national ID (or pseudonym); `-` reads it from standard input.
        person: String,
        /// The data-protection office's reference for the request.
        #[arg(long, default_value = "")]
        reference: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Start a research run under a permit and watch it to its end (researcher).
    ResearchRun {
        #[arg(long)]
        permit: String,
        #[arg(long)]
        as_of: String,
        /// `evaluate` (aggregates only) or `train` (registers a model as trained).
        #[arg(long, default_value = "evaluate")]
        kind: String,
        /// Features to use (comma-separated); every feature the permit allows by default.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// A research run's record and released aggregates.
    ResearchResults { id: String },
}

/// Runs one call and prints its answer (the JSON object with `--json`).
pub async fn client(json_out: bool, a: ClientArgs) -> Result<()> {
    let call = match a.call {
        ClientCall::List {
            page_size,
            page_token,
        } => Call::List {
            page_size,
            page_token,
        },
        ClientCall::Get { id } => Call::Get { id },
        ClientCall::Decide {
            id,
            outcome,
            reason,
            note,
            key,
        } => Call::Decide {
            id,
            outcome: DecisionOutcome::parse(&outcome.replace('-', "_")).with_context(|| {
                format!(
                    "--outcome `{outcome}` is not one of accepted, declined, already-known, not-relevant"
                )
            })?,
            reason,
            note,
            key: key.unwrap_or_else(|| {
                format!(
                    "cli-{}-{}",
                    std::process::id(),
                    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
                )
            }),
        },
        ClientCall::Reidentify { id, purpose } => Call::Reidentify { id, purpose },
        ClientCall::Watch { count } => Call::Watch { count },
        ClientCall::Export { id } => Call::Export { id },
        ClientCall::StopScoring { reason } => Call::StopScoring { reason },
        ClientCall::ResumeScoring { reason } => Call::ResumeScoring { reason },
        ClientCall::RegisterObjection { person, reference } => Call::RegisterObjection {
            person: super::person_arg(person)?,
            reference,
        },
        ClientCall::WithdrawObjection { person, reference } => Call::WithdrawObjection {
            person: super::person_arg(person)?,
            reference,
        },
        ClientCall::ListObjections => Call::ListObjections,
        ClientCall::VerifyAudit => Call::VerifyAudit,
        ClientCall::QueryAudit {
            person,
            action,
            page_size,
            page_token,
        } => Call::QueryAudit {
            person: person.map(super::person_arg).transpose()?,
            action,
            page_size,
            page_token,
        },
        ClientCall::Prove { seq } => Call::ProveInclusion { seq },
        ClientCall::ExportAudit { out } => Call::ExportAudit { out },
        ClientCall::ListModels => Call::ListModels,
        ClientCall::ModelCard { id } => Call::ModelCard { id },
        ClientCall::ApproveModel { id } => Call::ApproveModel { id },
        ClientCall::ActivateModel { id } => Call::ActivateModel { id },
        ClientCall::RetireModel { id } => Call::RetireModel { id },
        ClientCall::RollbackModel => Call::RollbackModel,
        ClientCall::Statistics => Call::Statistics,
        ClientCall::RegisterPermit { file } => Call::RegisterPermit {
            toml: std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?,
        },
        ClientCall::AmendPermit { file } => Call::AmendPermit {
            toml: std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?,
        },
        ClientCall::RevokePermit { id, reason } => Call::RevokePermit { id, reason },
        ClientCall::ListPermits => Call::ListPermits,
        ClientCall::GetPermit { id } => Call::GetPermit { id },
        ClientCall::ResearchRun {
            permit,
            as_of,
            kind,
            features,
        } => Call::ResearchRun {
            permit,
            kind,
            as_of,
            features,
        },
        ClientCall::ResearchResults { id } => Call::ResearchResults { id },
        ClientCall::SubjectAccess {
            person,
            reference,
            out,
        } => Call::SubjectAccess {
            person: super::person_arg(person)?,
            reference,
            out,
        },
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    if a.token.is_none() && a.cert.is_none() {
        anyhow::bail!("no credentials: pass --token (or TIDIG_TOKEN) or --cert and --key");
    }
    let caller = server::client::Caller {
        server: a.server.clone(),
        token: a.token.clone(),
        ca_pem: a.ca.as_deref().map(read).transpose()?,
        identity_pem: match (&a.cert, &a.key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        },
    };
    let human = !json_out;
    let answer = server::client::call(&caller, call, |event| {
        if human && event.get("stage").is_some() {
            println!(
                "{:>3}% {}",
                event["percent"].as_u64().unwrap_or_default(),
                event["stage"].as_str().unwrap_or_default()
            );
        } else if human {
            println!(
                "new: {} {} {} {:.3}",
                event["id"].as_str().unwrap_or_default(),
                event["pseudonym"].as_str().unwrap_or_default(),
                event["band"].as_str().unwrap_or_default(),
                event["score"].as_f64().unwrap_or_default()
            );
        }
    })
    .await
    .with_context(|| format!("calling {}", a.server))?;
    if json_out || answer.get("resourceType").is_some() {
        emit_json!("{answer}");
    } else {
        super::print::print_client_answer(&answer);
    }
    Ok(())
}
