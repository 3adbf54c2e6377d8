//! The caseworker service end to end: a real server on 127.0.0.1:0 over a store the whole
//! pipeline scored, driven through the generated client on both backends. The caseworker
//! flow, the access matrix, redaction per viewer, the FHIR export, and one audit entry per
//! call.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::Value;
use tidig_connectors::national_id::Country;
use tidig_engine::pipeline::registry::{activate, approve};
use tidig_engine::pipeline::score::score;
use tidig_engine::pipeline::train::train;
use tidig_engine::server::proto::caseworker_service_client::CaseworkerServiceClient;
use tidig_engine::server::proto::oversight_service_client::OversightServiceClient;
use tidig_engine::server::{self, proto, Authenticator};
use tidig_engine::settings::{ScoringSettings, Settings};
use tidig_engine::store::Store;
use tidig_engine::App;
use tidig_models::features::child_family;
use tidig_models::gate::Gate;
use tidig_tests::{edge, load, operator, stores, synth, train_options};
use tonic::transport::Channel;
use tonic::Code;

type Client = CaseworkerServiceClient<Channel>;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Scores from 0.05 are elevated and every unit takes every suggestion: enough
/// suggestions in both units to list, page and decide.
fn scoring() -> ScoringSettings {
    let mut s = ScoringSettings {
        elevated: 0.05,
        ..ScoringSettings::default()
    };
    for u in &mut s.units {
        u.weekly_capacity = 1_000_000;
    }
    s
}

/// The service's settings: demo tokens, the tests' deployment, the fixed test keys.
fn settings(keys: &Path) -> Settings {
    let mut s = tidig_tests::settings();
    s.scoring = scoring();
    s.service.demo = true;
    s.keys.dir = keys.to_path_buf();
    s
}

/// The fixed test keys of [`edge`] as key files (mode 0600).
fn key_dir(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for (file, byte) in [("pseudonym.key", "5a"), ("vault.key", "a5")] {
        let path = keys.join(file);
        std::fs::write(&path, byte.repeat(32)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    keys
}

fn municipality() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("s");
        synth(&dir, 2_500, |_| {});
        dir
    })
}

/// A store per backend through the whole pipeline: loaded, trained (alice), approved and
/// activated (bob), scored as of 2026-01-01.
async fn scored(dir: &Path, name: &str) -> Vec<(&'static str, Store)> {
    let set = child_family().unwrap();
    let lenient = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    let mut out = Vec::new();
    for (backend, store) in stores(dir, name).await {
        load(
            &store,
            &edge(Country::Fi, &[]),
            &[municipality().to_path_buf()],
        )
        .await;
        let app = tidig_tests::app_with(&store, settings(dir), tidig_tests::default_pack().clone());
        let model = train(
            &app,
            &operator("alice"),
            &set,
            date("2026-01-01"),
            &train_options(0.05, lenient.clone(), None),
        )
        .await
        .unwrap();
        approve(&app, &operator("bob"), &model.model_id)
            .await
            .unwrap();
        activate(&app, &operator("bob"), &model.model_id, &set)
            .await
            .unwrap();
        let (report, _) = score(&app, &operator("scorer"), &set, date("2026-01-01"))
            .await
            .unwrap();
        assert!(report.per_unit.len() == 2, "{backend}: {report:?}");
        out.push((backend, store));
    }
    out
}

/// A running server over `store`; stops (and closes the app) when dropped via `stop`.
struct Served {
    addr: std::net::SocketAddr,
    app: Arc<App>,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<(), server::ServeError>>,
}

/// The key test servers sign audit checkpoints with, as a deployment with its keys
/// generated does.
fn signer(settings: &Settings) -> tidig_governance::audit::NoteSigner {
    tidig_governance::audit::NoteSigner::from_seed(&settings.audit.origin, [11; 32]).unwrap()
}

/// `tidig audit verify` of the store, with the test servers' verifier key.
async fn verify_trail(store: &Store, keys: &Path) -> tidig_engine::pipeline::audit::VerifyReport {
    let app = tidig_tests::app(store);
    let verifier = signer(&settings(keys)).verifier();
    tidig_engine::pipeline::audit::verify(&app, Some(&verifier), None)
        .await
        .unwrap()
}

/// Exactly `calls` entries since `before`, and the trail verifies.
async fn assert_trail(store: &Store, keys: &Path, before: u64, calls: u64, backend: &str) {
    assert_eq!(
        audit_size(store).await - before,
        calls,
        "{backend}: one audit entry per call"
    );
    let report = verify_trail(store, keys).await;
    assert!(report.ok, "{backend}: {report:?}");
}

async fn start(store: &Store, settings: Settings) -> Served {
    let signer = signer(&settings);
    let app = Arc::new(
        App::with_store(
            store.clone(),
            settings.clone(),
            tidig_tests::default_pack().clone(),
            tidig_engine::clock::Clock::fixed_on(tidig_tests::today()),
        )
        .with_signer(signer),
    );
    let auth = Authenticator::from_settings(&settings).unwrap();
    let (listener, addr) = server::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server::serve(app.clone(), auth, listener, async {
        let _ = stopped.await;
    }));
    Served {
        addr,
        app,
        stop,
        running,
    }
}

impl Served {
    async fn client(&self) -> Client {
        CaseworkerServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn oversight(&self) -> OversightServiceClient<Channel> {
        OversightServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.running.await.unwrap().unwrap();
        self.app.audit().close().await.unwrap();
    }
}

fn as_<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A valid permit's terms under `id` (docs/permits.md).
fn permit_toml(id: &str) -> String {
    format!(
        r#"
id = "{id}"
issuer = "Findata"
holder = "University of Eastern Finland"
researchers = ["demo-researcher"]
purpose = "scientific_research"
registries = ["social", "population"]
features = ["age_years", "family_*"]
cohort = {{ birth_years = [2008, 2025] }}
data_period = {{ from = "2023-01-01", to = "2025-12-31" }}
valid = {{ from = "2026-01-01", to = "2026-12-31" }}
"#
    )
}

const CENTRAL: &str = "family-services-central";
const OUTER: &str = "family-services-outer";

fn caseworker(unit: &str) -> String {
    format!("demo-caseworker-{unit}")
}

async fn list_all(c: &mut Client, token: &str) -> Vec<proto::SuggestionSummary> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = c
            .list_suggestions(as_(
                token,
                proto::ListSuggestionsRequest {
                    page_size: 7,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(r.suggestions.len() <= 7);
        all.extend(r.suggestions);
        if r.next_page_token.is_empty() {
            return all;
        }
        page_token = r.next_page_token;
    }
}

async fn audit_size(store: &Store) -> u64 {
    store.audit_head().await.unwrap().size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_lists_reads_reidentifies_and_decides_and_every_call_is_audited_once() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    for (backend, store) in scored(dir.path(), "flow").await {
        let served = start(&store, settings(&keys)).await;
        let mut c = served.client().await;
        let before = audit_size(&store).await;
        let mut calls = 0u64;
        let me = caseworker(CENTRAL);

        // List: only my unit, most urgent first, paged without gaps or repeats.
        let listed = list_all(&mut c, &me).await;
        calls += listed.len().div_ceil(7).max(1) as u64;
        assert!(listed.len() > 7, "{backend}: {} listed", listed.len());
        assert!(listed.iter().all(|s| s.unit == CENTRAL), "{backend}");
        let ids: std::collections::HashSet<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            listed.len(),
            "{backend}: a page repeated a suggestion"
        );
        for w in listed.windows(2) {
            let key = |s: &proto::SuggestionSummary| (-s.band, -s.score);
            assert!(
                key(&w[0]) <= key(&w[1]),
                "{backend}: not most urgent first: {:?} before {:?}",
                w[0],
                w[1]
            );
        }
        let first = listed[0].clone();

        // Get: the explanation, with health factors redacted for me and the rule named.
        let got = c
            .get_suggestion(as_(
                &me,
                proto::GetSuggestionRequest {
                    id: first.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .suggestion
            .unwrap();
        calls += 1;
        assert_eq!(got.summary.as_ref().unwrap().id, first.id);
        assert_eq!(got.status, proto::SuggestionStatus::Open as i32);
        assert!(!got.factors.is_empty());
        assert!(!got.interventions.is_empty());
        assert!(got.versions.as_ref().is_some_and(|v| !v.model.is_empty()));
        let stages: Vec<&str> = got.rule_trace.iter().map(|t| t.action.as_str()).collect();
        assert!(
            stages.starts_with(&["use_feature", "score", "suggest"]),
            "{stages:?}"
        );

        // Reidentify: the person's national ID, with the audit entry that records it.
        let who = c
            .reidentify(as_(
                &me,
                proto::ReidentifyRequest {
                    suggestion_id: first.id.clone(),
                    purpose: "home visit planning".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        calls += 1;
        assert_eq!(who.national_id.len(), 11, "{backend}: a Finnish HETU");
        let entry = store.audit_entry(who.audit_seq).await.unwrap().unwrap();
        let entry: Value = serde_json::from_str(&entry.entry).unwrap();
        assert_eq!(entry["action"], "casework.reidentify");
        assert_eq!(entry["details"]["stated_purpose"], "home visit planning");
        assert_eq!(entry["subject"], first.pseudonym.as_str());
        assert!(!entry.to_string().contains(&who.national_id));

        // Decide: recorded, repeated with the same key → the same answer; another key →
        // ALREADY_EXISTS; and the suggestion is gone from the list.
        let decide = |key: &str, reason: &str| proto::RecordDecisionRequest {
            suggestion_id: first.id.clone(),
            outcome: proto::DecisionOutcome::Accepted as i32,
            reason_code: reason.into(),
            note: "called the family; visit on Monday".into(),
            idempotency_key: key.into(),
        };
        let d1 = c
            .record_decision(as_(&me, decide("k-1", "support-offered")))
            .await
            .unwrap()
            .into_inner();
        let d2 = c
            .record_decision(as_(&me, decide("k-1", "support-offered")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (d1.decision_id.clone(), d1.audit_seq),
            (d2.decision_id, d2.audit_seq)
        );
        let again = c
            .record_decision(as_(&me, decide("k-2", "support-offered")))
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
        let reused = c
            .record_decision(as_(&me, decide("k-1", "other")))
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
        calls += 4;
        let entry: Value = serde_json::from_str(
            &store
                .audit_entry(d1.audit_seq)
                .await
                .unwrap()
                .unwrap()
                .entry,
        )
        .unwrap();
        assert_eq!(entry["action"], "casework.record_decision");
        assert_eq!(entry["outcome"]["kind"], "allowed");
        assert!(
            !entry.to_string().contains("Monday"),
            "the note is never audited"
        );
        let after = list_all(&mut c, &me).await;
        calls += after.len().div_ceil(7).max(1) as u64;
        assert_eq!(after.len(), listed.len() - 1);
        assert!(after.iter().all(|s| s.id != first.id));

        // Malformed requests: INVALID_ARGUMENT naming the field.
        for (req, field) in [
            (
                proto::RecordDecisionRequest {
                    outcome: 0,
                    ..decide("k-3", "support-offered")
                },
                "outcome",
            ),
            (decide("k-4", "because"), "reason_code"),
            (
                proto::RecordDecisionRequest {
                    suggestion_id: "../etc".into(),
                    ..decide("k-5", "support-offered")
                },
                "suggestion_id",
            ),
            (decide("", "support-offered"), "idempotency_key"),
        ] {
            let e = c.record_decision(as_(&me, req)).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(e.message().starts_with(field), "{field}: {}", e.message());
            calls += 1;
        }
        let e = c
            .list_suggestions(as_(
                &me,
                proto::ListSuggestionsRequest {
                    page_size: 0,
                    page_token: "not-a-token".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        calls += 1;
        // No or unknown credentials: UNAUTHENTICATED, audited too.
        let e = c
            .list_suggestions(proto::ListSuggestionsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = c
            .list_suggestions(as_("demo-nobody", proto::ListSuggestionsRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        calls += 2;

        served.stop().await;
        assert_trail(&store, &keys, before, calls, backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_matrix_every_role_and_method_on_own_and_other_units() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    let (backend, store) = scored(dir.path(), "matrix").await.remove(0);
    let served = start(&store, settings(&keys)).await;
    let mut c = served.client().await;
    let central = list_all(&mut c, &caseworker(CENTRAL)).await;
    let outer = list_all(&mut c, &caseworker(OUTER)).await;
    // One suggestion per unit that stays open (decisions use their own).
    let mut own_left = central.iter().skip(1);
    let mut other_left = outer.iter().skip(1);
    let roles: [(&str, Option<&str>); 5] = [
        ("demo-caseworker-family-services-central", Some(CENTRAL)),
        ("demo-health-family-services-central", Some(CENTRAL)),
        ("demo-dpo", None),
        ("demo-auditor", None),
        ("demo-researcher", None),
    ];
    let methods = [
        "list",
        "get",
        "decide",
        "reidentify",
        "watch",
        "export",
        "stop",
        "resume",
        "register",
        "withdraw",
        "objections",
        "query",
        "verify",
        "prove",
        "export-audit",
        "models",
        "card",
        "approve",
        "activate",
        "retire",
        "rollback",
        "stats",
        "sar",
        "register-permit",
        "amend-permit",
        "revoke-permit",
        "permits",
        "permit",
    ];
    // The oversight service's methods concern the whole deployment ("own"/"other" ask
    // the same); objections name the person of the one suggestion that stays open.
    let deployment_wide = |m: &str| {
        matches!(
            m,
            "stop"
                | "resume"
                | "register"
                | "withdraw"
                | "objections"
                | "query"
                | "verify"
                | "prove"
                | "export-audit"
                | "models"
                | "card"
                | "approve"
                | "activate"
                | "retire"
                | "rollback"
                | "stats"
                | "sar"
                | "register-permit"
                | "amend-permit"
                | "revoke-permit"
                | "permits"
                | "permit"
        )
    };
    let objector = central[0].pseudonym.clone();
    let active = tidig_engine::pipeline::registry::active(&served.app)
        .await
        .unwrap()
        .unwrap()
        .row
        .id;
    let mut oversight = served.oversight().await;
    let mut table = Vec::new();
    for (token, unit) in roles {
        for method in methods {
            for own in [true, false] {
                let switch = deployment_wide(method);
                let id = match (switch, own) {
                    (true, _) => String::new(),
                    (false, true) => own_left.next().unwrap().id.clone(),
                    (false, false) => other_left.next().unwrap().id.clone(),
                };
                let code = match method {
                    "list" => c
                        .list_suggestions(as_(token, proto::ListSuggestionsRequest::default()))
                        .await
                        .map(|r| {
                            assert!(r
                                .get_ref()
                                .suggestions
                                .iter()
                                .all(|s| Some(s.unit.as_str()) == unit));
                        })
                        .err(),
                    "get" => c
                        .get_suggestion(as_(token, proto::GetSuggestionRequest { id }))
                        .await
                        .map(drop)
                        .err(),
                    "decide" => c
                        .record_decision(as_(
                            token,
                            proto::RecordDecisionRequest {
                                suggestion_id: id,
                                outcome: proto::DecisionOutcome::Declined as i32,
                                reason_code: "not-in-scope".into(),
                                note: String::new(),
                                idempotency_key: format!("{token}-{own}"),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "reidentify" => c
                        .reidentify(as_(
                            token,
                            proto::ReidentifyRequest {
                                suggestion_id: id,
                                purpose: "case review".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "watch" => c
                        .watch_suggestions(as_(token, proto::WatchSuggestionsRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    // The whole deployment's: "own"/"other" ask the same.
                    "stop" => oversight
                        .stop_scoring(as_(
                            token,
                            proto::StopScoringRequest {
                                reason: "matrix".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "resume" => oversight
                        .resume_scoring(as_(
                            token,
                            proto::ResumeScoringRequest {
                                reason: "matrix".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "register" => oversight
                        .register_objection(as_(
                            token,
                            proto::RegisterObjectionRequest {
                                national_id: objector.clone(),
                                reference: "matrix".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "withdraw" => oversight
                        .withdraw_objection(as_(
                            token,
                            proto::WithdrawObjectionRequest {
                                national_id: objector.clone(),
                                reference: "matrix".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "objections" => oversight
                        .list_objections(as_(token, proto::ListObjectionsRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "query" => oversight
                        .query_audit(as_(token, proto::QueryAuditRequest::default()))
                        .await
                        .map(drop)
                        .err(),
                    "verify" => oversight
                        .verify_audit(as_(token, proto::VerifyAuditRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "prove" => oversight
                        .prove_inclusion(as_(token, proto::ProveInclusionRequest { seq: 0 }))
                        .await
                        .map(drop)
                        .err(),
                    "export-audit" => oversight
                        .export_audit(as_(token, proto::ExportAuditRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "models" => oversight
                        .list_models(as_(token, proto::ListModelsRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "card" => oversight
                        .get_model_card(as_(
                            token,
                            proto::GetModelCardRequest { id: active.clone() },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    // Changes name no model here: allowed callers get NOT_FOUND (and
                    // the rollback FAILED_PRECONDITION), so the registry stays as it is.
                    "approve" => oversight
                        .approve_model(as_(token, proto::ApproveModelRequest { id: "00".into() }))
                        .await
                        .map(drop)
                        .err(),
                    "activate" => oversight
                        .activate_model(as_(token, proto::ActivateModelRequest { id: "00".into() }))
                        .await
                        .map(drop)
                        .err(),
                    "retire" => oversight
                        .retire_model(as_(token, proto::RetireModelRequest { id: "00".into() }))
                        .await
                        .map(drop)
                        .err(),
                    "rollback" => oversight
                        .rollback_model(as_(token, proto::RollbackModelRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "stats" => oversight
                        .get_statistics(as_(token, proto::GetStatisticsRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "register-permit" => oversight
                        .register_permit(as_(
                            token,
                            proto::RegisterPermitRequest {
                                permit_toml: permit_toml(&format!("M/{token}/{own}")),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    // No such permit: allowed callers get NOT_FOUND.
                    "amend-permit" => oversight
                        .amend_permit(as_(
                            token,
                            proto::AmendPermitRequest {
                                permit_toml: permit_toml("no-such-permit"),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "revoke-permit" => oversight
                        .revoke_permit(as_(
                            token,
                            proto::RevokePermitRequest {
                                id: "no-such-permit".into(),
                                reason: "matrix".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "permits" => oversight
                        .list_permits(as_(token, proto::ListPermitsRequest {}))
                        .await
                        .map(drop)
                        .err(),
                    "permit" => oversight
                        .get_permit(as_(
                            token,
                            proto::GetPermitRequest {
                                id: "no-such-permit".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    "sar" => oversight
                        .subject_access_report(as_(
                            token,
                            proto::SubjectAccessReportRequest {
                                national_id: objector.clone(),
                                reference: "matrix".into(),
                            },
                        ))
                        .await
                        .map(drop)
                        .err(),
                    _ => c
                        .export_risk_assessment(as_(
                            token,
                            proto::ExportRiskAssessmentRequest { suggestion_id: id },
                        ))
                        .await
                        .map(drop)
                        .err(),
                };
                let code = code.map_or(Code::Ok, |s| {
                    if s.code() == Code::PermissionDenied {
                        assert!(s.message().contains("access."), "names the rule: {s:?}");
                    }
                    s.code()
                });
                table.push(format!(
                    "{token} {method} {}: {code:?}",
                    if own { "own" } else { "other" }
                ));
            }
        }
    }
    // list and watch have no target unit of their own: "own"/"other" ask the same.
    let expected: Vec<String> = roles
        .iter()
        .flat_map(|(token, unit)| {
            methods.iter().flat_map(move |method| {
                [true, false].into_iter().map(move |own| {
                    let oversight = deployment_wide(method);
                    let audit_read =
                        matches!(*method, "query" | "verify" | "prove" | "export-audit");
                    let caseworker = unit.is_some() && !oversight;
                    let unit_wide = matches!(*method, "list" | "watch");
                    let auditor_read =
                        matches!(*method, "models" | "card" | "stats" | "permits" | "permit");
                    let allowed = (caseworker && (own || unit_wide))
                        || (*token == "demo-dpo" && (*method == "get" || oversight))
                        || (*token == "demo-auditor" && (audit_read || auditor_read));
                    let code = match (allowed, *method) {
                        (false, _) => Code::PermissionDenied,
                        (
                            true,
                            "approve" | "activate" | "retire" | "amend-permit" | "revoke-permit"
                            | "permit",
                        ) => Code::NotFound,
                        (true, "rollback") => Code::FailedPrecondition,
                        (true, _) => Code::Ok,
                    };
                    format!(
                        "{token} {method} {}: {code:?}",
                        if own { "own" } else { "other" }
                    )
                })
            })
        })
        .collect();
    assert_eq!(table, expected, "{backend}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_factors_are_shown_only_to_a_viewer_with_health_authority_and_exported_as_fhir() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    let (backend, store) = scored(dir.path(), "redaction").await.remove(0);
    let served = start(&store, settings(&keys)).await;
    let mut c = served.client().await;
    let plain = caseworker(CENTRAL);
    let health = format!("demo-health-{CENTRAL}");
    let listed = list_all(&mut c, &plain).await;
    let mut redacted_somewhere = false;
    for s in &listed {
        let get = |token: &str| {
            let mut c = c.clone();
            let r = as_(token, proto::GetSuggestionRequest { id: s.id.clone() });
            async move {
                c.get_suggestion(r)
                    .await
                    .unwrap()
                    .into_inner()
                    .suggestion
                    .unwrap()
            }
        };
        let (a, b) = (get(&plain).await, get(&health).await);
        assert_eq!(a.factors.len(), b.factors.len());
        for (x, y) in a.factors.iter().zip(&b.factors) {
            assert!(
                !y.redacted,
                "{backend}: health authority sees everything: {y:?}"
            );
            assert_eq!(x.registry, y.registry);
            if y.registry == "health" {
                redacted_somewhere = true;
                assert!(
                    x.redacted && x.contribution.is_none() && x.feature.is_empty(),
                    "{x:?}"
                );
                assert_eq!(x.redacting_rule, "output.health-redaction");
                // No intervention is named after what the viewer may not see.
                assert!(a.interventions.iter().all(|i| i.because_of != y.feature));
            } else {
                assert_eq!(x, y);
            }
        }
    }
    assert!(
        redacted_somewhere,
        "{backend}: no suggestion had a health factor"
    );

    // The FHIR export: an R4 RiskAssessment with ras-2's percentage.
    let first = &listed[0];
    let json = c
        .export_risk_assessment(as_(
            &plain,
            proto::ExportRiskAssessmentRequest {
                suggestion_id: first.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .resource_json;
    let r: Value = serde_json::from_str(&json).unwrap();
    tidig_tests::fhir::check_risk_assessment(&r).unwrap();
    let p = r["prediction"][0]["probabilityDecimal"].as_f64().unwrap();
    assert!(
        (p - first.score * 100.0).abs() < 1e-3,
        "{p} vs {}",
        first.score
    );
    assert_eq!(
        r["subject"]["identifier"]["value"],
        first.pseudonym.as_str()
    );
    assert_eq!(r["status"], "preliminary");
    served.stop().await;
}

/// A certificate authority for the mTLS test, made fresh (rcgen).
struct TestCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (subject alternative names) with subject `CN=cn,
    /// O=Test Municipality`, as (certificate PEM, key PEM).
    fn issue(&self, cn: &str, names: &[&str], client: bool) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Test Municipality");
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client for `served`, trusting `ca`, presenting `identity` when given.
async fn tls_client(
    served: &Served,
    ca: &TestCa,
    identity: Option<&(String, String)>,
) -> Result<Client, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.cert.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{}", served.addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(CaseworkerServiceClient::new(channel))
}

fn list_request() -> proto::ListSuggestionsRequest {
    proto::ListSuggestionsRequest {
        page_size: 50,
        page_token: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_as_their_mapped_principal_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    let (backend, store) = scored(dir.path(), "mtls").await.remove(0);
    let ca = TestCa::new("tidig test CA");
    let rogue = TestCa::new("someone else's CA");
    let server_cert = ca.issue("tidig", &["localhost", "127.0.0.1"], false);
    let central = ca.issue("case-system-central", &[], true);
    let unmapped = ca.issue("case-system-unknown", &[], true);
    let forged = rogue.issue("case-system-central", &[], true);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let tls = tidig_engine::settings::TlsSettings {
        cert: write("server.crt", &server_cert.0),
        key: write("server.key", &server_cert.1),
        client_ca: Some(write("clients-ca.crt", &ca.cert.pem())),
        clients: vec![tidig_engine::settings::ClientCertSettings {
            // Written with other spacing than the certificate parser prints it.
            subject: "CN=case-system-central ,O=Test Municipality".into(),
            id: Some("case-system-central".into()),
            role: "caseworker".into(),
            unit: Some(CENTRAL.into()),
            purpose: "case-handling".into(),
            health_authority: false,
        }],
    };

    // Certificates only: no tokens, no demo.
    let mut only_certs = settings(&keys);
    only_certs.service.demo = false;
    only_certs.service.tls = Some(tls.clone());
    only_certs.validate().unwrap();
    let served = start(&store, only_certs.clone()).await;
    let before = audit_size(&store).await;

    // The mapped certificate is a caseworker of the central unit.
    let mut c = tls_client(&served, &ca, Some(&central)).await.unwrap();
    let listed = c
        .list_suggestions(list_request())
        .await
        .unwrap()
        .into_inner()
        .suggestions;
    assert!(!listed.is_empty(), "{backend}");
    assert!(listed.iter().all(|s| s.unit == CENTRAL), "{backend}");
    c.get_suggestion(proto::GetSuggestionRequest {
        id: listed[0].id.clone(),
    })
    .await
    .unwrap();
    let entry = store.audit_entry(before + 1).await.unwrap().unwrap();
    let entry: Value = serde_json::from_str(&entry.entry).unwrap();
    assert_eq!(entry["action"], "casework.get_suggestion", "{entry}");
    assert_eq!(entry["principal"]["id"], "case-system-central", "{entry}");
    assert_eq!(entry["principal"]["auth"], "mtls", "{entry}");
    assert_eq!(entry["principal"]["unit"], CENTRAL, "{entry}");
    // A certificate from the right CA whose subject is not mapped: UNAUTHENTICATED,
    // naming the subject to map, and recorded.
    let size = audit_size(&store).await;
    let mut c = tls_client(&served, &ca, Some(&unmapped)).await.unwrap();
    let e = c.list_suggestions(list_request()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message()
            .contains("`CN=case-system-unknown, O=Test Municipality` is not mapped"),
        "{}",
        e.message()
    );
    assert_eq!(audit_size(&store).await, size + 1);

    // The mapped subject in a certificate another CA signed, no certificate at all, and
    // plaintext never reach the service: the handshake fails, nothing is recorded.
    let size = audit_size(&store).await;
    for (what, identity) in [("another CA", Some(&forged)), ("no certificate", None)] {
        let call = async {
            let mut c = tls_client(&served, &ca, identity).await?;
            Ok::<_, Box<dyn std::error::Error>>(c.list_suggestions(list_request()).await?)
        };
        assert!(call.await.is_err(), "{what}: a call went through");
    }
    let plaintext = async {
        let mut c = CaseworkerServiceClient::connect(format!("http://{}", served.addr)).await?;
        Ok::<_, Box<dyn std::error::Error>>(
            c.list_suggestions(as_(&caseworker(CENTRAL), list_request()))
                .await?,
        )
    };
    assert!(plaintext.await.is_err(), "plaintext: a call went through");
    assert_eq!(
        audit_size(&store).await,
        size,
        "a failed handshake was recorded"
    );
    served.stop().await;

    // With tokens accepted too, a client certificate is optional and a request's token
    // decides who calls.
    let mut both = only_certs;
    both.service.demo = true;
    let served = start(&store, both).await;
    let mut no_cert = tls_client(&served, &ca, None).await.unwrap();
    let outer_listed = no_cert
        .list_suggestions(as_(&caseworker(OUTER), list_request()))
        .await
        .unwrap()
        .into_inner()
        .suggestions;
    assert!(!outer_listed.is_empty() && outer_listed.iter().all(|s| s.unit == OUTER));
    let mut with_cert = tls_client(&served, &ca, Some(&central)).await.unwrap();
    let by_token = with_cert
        .list_suggestions(as_(&caseworker(OUTER), list_request()))
        .await
        .unwrap()
        .into_inner()
        .suggestions;
    assert!(!by_token.is_empty() && by_token.iter().all(|s| s.unit == OUTER));
    let by_cert = with_cert
        .list_suggestions(list_request())
        .await
        .unwrap()
        .into_inner()
        .suggestions;
    assert!(!by_cert.is_empty() && by_cert.iter().all(|s| s.unit == CENTRAL));
    // The certificate's unit is the central one: the outer unit's suggestion is refused.
    let refused = with_cert
        .get_suggestion(proto::GetSuggestionRequest {
            id: outer_listed[0].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    served.stop().await;

    // TLS without a client CA is no way to authenticate anyone.
    let mut tls_only = settings(&keys);
    tls_only.service.demo = false;
    tls_only.service.tls = Some(tidig_engine::settings::TlsSettings {
        client_ca: None,
        clients: Vec::new(),
        ..tls
    });
    let refused = Authenticator::from_settings(&tls_only).unwrap_err();
    assert!(
        matches!(refused, server::AuthSetupError::NoMethod),
        "{refused}"
    );
}

/// Two servers on one store are two processes to each other: what one decides, the
/// other's next read shows, although it had just read (and may keep) the same
/// suggestion and page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_through_one_server_shows_in_the_others_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    for (backend, store) in scored(dir.path(), "coherence").await {
        let (a, b) = (
            start(&store, settings(&keys)).await,
            start(&store, settings(&keys)).await,
        );
        let (mut ca, mut cb) = (a.client().await, b.client().await);
        let me = caseworker(CENTRAL);
        let first_page = |c: &mut Client| {
            let mut c = c.clone();
            let me = me.clone();
            async move {
                c.list_suggestions(as_(&me, list_request()))
                    .await
                    .unwrap()
                    .into_inner()
                    .suggestions
            }
        };
        let status = |c: &mut Client, id: String| {
            let mut c = c.clone();
            let me = me.clone();
            async move {
                c.get_suggestion(as_(&me, proto::GetSuggestionRequest { id }))
                    .await
                    .unwrap()
                    .into_inner()
                    .suggestion
                    .unwrap()
                    .status
            }
        };
        for round in 0..3 {
            // A reads the page and the suggestion twice (the second read may be kept).
            let listed = first_page(&mut ca).await;
            let id = listed[0].id.clone();
            for _ in 0..2 {
                assert_eq!(first_page(&mut ca).await, listed, "{backend} {round}");
                assert_eq!(
                    status(&mut ca, id.clone()).await,
                    proto::SuggestionStatus::Open as i32
                );
            }
            // B decides it; A's next reads show the decision.
            cb.record_decision(as_(
                &me,
                proto::RecordDecisionRequest {
                    suggestion_id: id.clone(),
                    outcome: proto::DecisionOutcome::Accepted as i32,
                    reason_code: "support-offered".into(),
                    note: String::new(),
                    idempotency_key: format!("coherence-{round}"),
                },
            ))
            .await
            .unwrap();
            assert_eq!(
                status(&mut ca, id.clone()).await,
                proto::SuggestionStatus::Decided as i32,
                "{backend} {round}: A still shows the decided suggestion open"
            );
            let after = first_page(&mut ca).await;
            assert!(
                after.iter().all(|s| s.id != id),
                "{backend} {round}: A still lists the decided suggestion"
            );
            // And A's own decision shows in A's next listing at once.
            let own = after[0].id.clone();
            ca.record_decision(as_(
                &me,
                proto::RecordDecisionRequest {
                    suggestion_id: own.clone(),
                    outcome: proto::DecisionOutcome::Declined as i32,
                    reason_code: "not-in-scope".into(),
                    note: String::new(),
                    idempotency_key: format!("coherence-own-{round}"),
                },
            ))
            .await
            .unwrap();
            assert!(first_page(&mut ca).await.iter().all(|s| s.id != own));
        }
        a.stop().await;
        b.stop().await;
    }
}

/// Decisions arriving at once share the audit writer's transactions; what each call is
/// told must still be what one-at-a-time recording would tell it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_record_one_per_suggestion_and_one_answer_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    for (backend, store) in scored(dir.path(), "batched").await {
        let before = audit_size(&store).await;
        let served = start(&store, settings(&keys)).await;
        let me = caseworker(CENTRAL);
        let mut c = served.client().await;
        let listed = list_all(&mut c, &me).await;
        let listing_calls = listed.len().div_ceil(7).max(1) as u64;
        let ids: Vec<String> = listed.iter().take(4).map(|s| s.id.clone()).collect();
        assert_eq!(ids.len(), 4, "{backend}: four open suggestions");
        let request = |id: &str, key: &str| proto::RecordDecisionRequest {
            suggestion_id: id.to_string(),
            outcome: proto::DecisionOutcome::Accepted as i32,
            reason_code: "support-offered".into(),
            note: String::new(),
            idempotency_key: key.to_string(),
        };
        // Eight keys on the first suggestion, one request repeated eight times on the
        // second, and one key on the third and the fourth: all at once.
        let mut calls = Vec::new();
        for i in 0..8 {
            calls.push(("rival", request(&ids[0], &format!("rival-{i}"))));
            calls.push(("repeat", request(&ids[1], "repeat")));
        }
        calls.push(("shared-key", request(&ids[2], "shared")));
        calls.push(("shared-key", request(&ids[3], "shared")));
        let running: Vec<_> = calls
            .iter()
            .map(|(what, r)| {
                let mut c = c.clone();
                let (what, me, r) = (*what, me.clone(), r.clone());
                tokio::spawn(async move { (what, c.record_decision(as_(&me, r)).await) })
            })
            .collect();
        let mut answers = Vec::new();
        for r in running {
            answers.push(r.await.unwrap());
        }
        let mut ok = std::collections::BTreeMap::<&str, Vec<proto::RecordDecisionResponse>>::new();
        for (what, answer) in answers {
            match answer {
                Ok(r) => ok.entry(what).or_default().push(r.into_inner()),
                Err(s) => {
                    assert_eq!(s.code(), Code::AlreadyExists, "{backend} {what}: {s:?}");
                    if what == "shared-key" {
                        assert!(s.message().contains("idempotency key"), "{s:?}");
                    }
                }
            }
        }
        assert_eq!(
            ok["rival"].len(),
            1,
            "{backend}: one of eight rivals decides"
        );
        assert_eq!(ok["shared-key"].len(), 1, "{backend}: one use of a key");
        let repeats = &ok["repeat"];
        assert_eq!(
            repeats.len(),
            8,
            "{backend}: a repeated request is answered"
        );
        assert!(
            repeats.iter().all(|r| r == &repeats[0]),
            "{backend}: every repeat gets the first answer: {repeats:?}"
        );
        // The store agrees: the three decided suggestions are gone from the list.
        let after = list_all(&mut c, &me).await;
        let gone = ids.iter().filter(|id| after.iter().all(|s| &s.id != *id));
        assert_eq!(gone.count(), 3, "{backend}");
        assert_eq!(after.len(), listed.len() - 3, "{backend}");
        served.stop().await;
        let calls = listing_calls + calls.len() as u64 + after.len().div_ceil(7).max(1) as u64;
        assert_trail(&store, &keys, before, calls, backend).await;
    }
}

/// An objection registered through the oversight service withdraws the person's open
/// suggestions at once, and keeps them out of the next scoring and training runs;
/// withdrawing it lets them back in. The national ID is never echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objection_withdraws_open_suggestions_and_excludes_the_person_from_scoring_and_training()
{
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    for (backend, store) in scored(dir.path(), "objection").await {
        let before = audit_size(&store).await;
        let served = start(&store, settings(&keys)).await;
        let me = caseworker(CENTRAL);
        let mut c = served.client().await;
        let mut o = served.oversight().await;
        let listed = list_all(&mut c, &me).await;
        let target = listed[0].clone();
        let national_id = c
            .reidentify(as_(
                &me,
                proto::ReidentifyRequest {
                    suggestion_id: target.id.clone(),
                    purpose: "objection received by phone".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .national_id;
        let register = |reference: &str| proto::RegisterObjectionRequest {
            national_id: national_id.clone(),
            reference: reference.into(),
        };
        // Only the data-protection officer keeps the register.
        let e = o
            .register_objection(as_(&me, register("DPO-1")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{backend}");
        assert!(!e.message().contains(&national_id));
        let r = o
            .register_objection(as_("demo-dpo", register("DPO-2026-17")))
            .await
            .unwrap()
            .into_inner();
        assert!(r.changed, "{backend}");
        assert_eq!(r.pseudonym, target.pseudonym);
        assert!(
            r.withdrawn_suggestions.contains(&target.id),
            "{backend}: {r:?}"
        );
        let again = o
            .register_objection(as_("demo-dpo", register("DPO-2026-17b")))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.changed && again.withdrawn_suggestions.is_empty());
        // A malformed ID is refused without being echoed.
        let e = o
            .register_objection(as_(
                "demo-dpo",
                proto::RegisterObjectionRequest {
                    national_id: "010101-123X".into(),
                    reference: "DPO-x".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("national_id") && !e.message().contains("010101"));

        // Gone from the caseworker's list at once; shown as withdrawn.
        let after = list_all(&mut c, &me).await;
        assert!(
            after.iter().all(|s| s.pseudonym != target.pseudonym),
            "{backend}"
        );
        let got = c
            .get_suggestion(as_(
                &me,
                proto::GetSuggestionRequest {
                    id: target.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .suggestion
            .unwrap();
        assert_eq!(got.status, proto::SuggestionStatus::Withdrawn as i32);
        let register_list = o
            .list_objections(as_("demo-dpo", proto::ListObjectionsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .objections;
        assert_eq!(register_list.len(), 1, "{backend}");
        assert_eq!(register_list[0].pseudonym, target.pseudonym);
        assert_eq!(register_list[0].reference, "DPO-2026-17");
        assert_eq!(register_list[0].registered_by, "demo-dpo");
        assert!(register_list[0].withdrawn_at.is_none());

        // The next scoring run names them nowhere; training counts the objection.
        let app =
            tidig_tests::app_with(&store, settings(&keys), tidig_tests::default_pack().clone());
        let set = child_family().unwrap();
        let (_, suggestions) = score(&app, &operator("scorer"), &set, date("2026-01-08"))
            .await
            .unwrap();
        assert!(!suggestions.is_empty(), "{backend}");
        let objectors = store.objectors().await.unwrap();
        assert_eq!(objectors.len(), 1, "{backend}");
        assert!(
            suggestions
                .iter()
                .all(|s| !objectors.contains(&s.person_id)),
            "{backend}: an objector was scored"
        );
        let lenient = Gate {
            min_demographic_parity_ratio: 0.0,
            max_equalized_odds_difference: 1.0,
            min_auc: 0.0,
            ..Gate::default()
        };
        let trained = train(
            &app,
            &operator("alice"),
            &set,
            date("2026-01-01"),
            &train_options(0.05, lenient, None),
        )
        .await
        .unwrap();
        assert_eq!(
            trained.artifact.cohort["objections registered"], 1,
            "{backend}"
        );

        // Withdrawn: the register keeps the record, and the person may be scored again.
        let w = o
            .withdraw_objection(as_(
                "demo-dpo",
                proto::WithdrawObjectionRequest {
                    national_id: national_id.clone(),
                    reference: "DPO-2026-17 withdrawn by the person".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(w.changed, "{backend}");
        let register_list = o
            .list_objections(as_("demo-dpo", proto::ListObjectionsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .objections;
        assert!(register_list[0].withdrawn_at.is_some(), "{backend}");
        assert_eq!(store.objectors().await.unwrap().len(), 0, "{backend}");
        app.audit().close().await.unwrap();
        served.stop().await;

        // Every oversight call above is one entry; none holds the national ID.
        let report = verify_trail(&store, &keys).await;
        assert!(report.ok, "{backend}: {report:?}");
        let head = audit_size(&store).await;
        for seq in before..head {
            let e = store.audit_entry(seq).await.unwrap().unwrap().entry;
            assert!(
                !e.contains(&national_id),
                "{backend}: entry {seq} holds the ID"
            );
        }
    }
}

/// The audit trail through the oversight service: the auditor and the data-protection
/// officer verify it, query it by person (a national ID, never echoed) and get an
/// inclusion proof anyone can check; others are refused; each call is one entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_verified_queried_and_proved_through_the_oversight_service() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    for (backend, store) in scored(dir.path(), "trail").await {
        let served = start(&store, settings(&keys)).await;
        let me = caseworker(CENTRAL);
        let mut c = served.client().await;
        let mut o = served.oversight().await;
        let listed = list_all(&mut c, &me).await;
        let national_id = c
            .reidentify(as_(
                &me,
                proto::ReidentifyRequest {
                    suggestion_id: listed[0].id.clone(),
                    purpose: "home visit".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .national_id;
        let before = audit_size(&store).await;
        let mut calls = 0u64;

        // Refused for caseworkers and researchers, recorded.
        for who in [me.as_str(), "demo-researcher"] {
            let e = o
                .verify_audit(as_(who, proto::VerifyAuditRequest {}))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{backend} {who}");
            calls += 1;
        }
        // The auditor verifies: OK, with the key that checks the checkpoints.
        let v = o
            .verify_audit(as_("demo-auditor", proto::VerifyAuditRequest {}))
            .await
            .unwrap()
            .into_inner();
        calls += 1;
        assert!(v.ok, "{backend}: {v:?}");
        assert!(v.entries >= before, "{backend}");
        assert!(v.problem.is_empty() && v.problem_seq.is_none());

        // The DPO finds the re-identification by the person's national ID.
        let q = o
            .query_audit(as_(
                "demo-dpo",
                proto::QueryAuditRequest {
                    person: national_id.clone(),
                    action: "casework.reidentify".into(),
                    ..proto::QueryAuditRequest::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        calls += 1;
        assert_eq!(q.entries_json.len(), 1, "{backend}: {q:?}");
        let entry: Value = serde_json::from_str(&q.entries_json[0]).unwrap();
        assert_eq!(entry["action"], "casework.reidentify");
        assert_eq!(entry["subject"], listed[0].pseudonym.as_str());
        assert!(!q.entries_json[0].contains(&national_id));
        // A malformed filter is refused naming the field, without echoing the value.
        let e = o
            .query_audit(as_(
                "demo-dpo",
                proto::QueryAuditRequest {
                    person: "010101-123X".into(),
                    ..proto::QueryAuditRequest::default()
                },
            ))
            .await
            .unwrap_err();
        calls += 1;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("person") && !e.message().contains("010101"));

        // Its inclusion proof checks against the signed checkpoint's root.
        let seq = entry["seq"].as_u64().unwrap();
        let p = o
            .prove_inclusion(as_("demo-auditor", proto::ProveInclusionRequest { seq }))
            .await
            .unwrap()
            .into_inner();
        calls += 1;
        assert_eq!(p.entry_json, q.entries_json[0], "{backend}");
        let leaf = tidig_governance::audit::merkle::leaf_hash(p.entry_json.as_bytes());
        assert_eq!(leaf.to_vec(), b64(&p.leaf_hash));
        let proof: Vec<Vec<u8>> = p.proof.iter().map(|h| b64(h)).collect();
        tidig_governance::audit::merkle::verify_inclusion(
            seq,
            p.tree_size,
            &leaf,
            &proof,
            &b64(&p.root),
        )
        .unwrap();
        assert!(p.checkpoint.contains(&format!("\n{}\n", p.tree_size)));

        // The export streams the whole trail, which verifies without the store against
        // the verifier key VerifyAudit gave; refused for a caseworker.
        let e = o
            .export_audit(as_(&me, proto::ExportAuditRequest {}))
            .await
            .unwrap_err();
        calls += 1;
        assert_eq!(e.code(), Code::PermissionDenied);
        let mut stream = o
            .export_audit(as_("demo-auditor", proto::ExportAuditRequest {}))
            .await
            .unwrap()
            .into_inner();
        calls += 1;
        let mut text = String::new();
        let mut messages = 0;
        while let Some(m) = stream.message().await.unwrap() {
            messages += 1;
            for line in m.lines {
                text.push_str(&line);
                text.push('\n');
            }
        }
        assert!(messages >= 2, "{backend}: the header and the entries");
        let verifier = tidig_governance::audit::NoteVerifier::parse(&v.verifier_key).unwrap();
        let cp = tidig_engine::pipeline::audit::verify_export(&text, &verifier).unwrap();
        assert_eq!(text.lines().count() as u64, cp.size + 1, "{backend}");
        assert!(
            cp.size >= before + calls - 1,
            "{backend}: the export holds its own entry"
        );

        served.stop().await;
        assert_eq!(
            audit_size(&store).await - before,
            calls,
            "{backend}: one entry per call"
        );
    }
}

/// Four-eyes by the authenticated principal, the release gate, activation and a
/// one-step rollback through the oversight service, every call audited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_approved_by_another_authenticated_principal_activated_and_rolled_back() {
    use tidig_engine::pipeline::registry;
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    let set = child_family().unwrap();
    let lenient = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    let impossible = Gate {
        min_auc: 0.9999,
        ..lenient.clone()
    };
    for (backend, store) in scored(dir.path(), "lifecycle").await {
        let app =
            tidig_tests::app_with(&store, settings(&keys), tidig_tests::default_pack().clone());
        let first = registry::active(&app).await.unwrap().unwrap().row.id;
        let mut trained = Vec::new();
        for (who, share, gate) in [
            ("demo-dpo", 0.06, &lenient),
            ("alice", 0.07, &lenient),
            ("alice", 0.08, &impossible),
        ] {
            let m = train(
                &app,
                &operator(who),
                &set,
                date("2026-01-01"),
                &train_options(share, gate.clone(), None),
            )
            .await
            .unwrap();
            trained.push(m.model_id);
        }
        let [own, other, failed] = <[String; 3]>::try_from(trained).unwrap();
        let served = start(&store, settings(&keys)).await;
        let mut o = served.oversight().await;
        let dpo = "demo-dpo";
        let before = audit_size(&store).await;

        let models = o
            .list_models(as_("demo-auditor", proto::ListModelsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .models;
        let find = |id: &str| models.iter().find(|m| m.id == id).unwrap().clone();
        assert_eq!(models.len(), 4, "{backend}");
        assert_eq!(find(&first).state, "active");
        assert_eq!(
            (find(&own).state.as_str(), find(&own).created_by.as_str()),
            ("trained", "demo-dpo")
        );
        assert!(!find(&failed).gate_passed);
        let card = o
            .get_model_card(as_(
                "demo-auditor",
                proto::GetModelCardRequest {
                    id: other[..12].to_string(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(card.model.unwrap().id, other);
        assert!(card.card_markdown.contains(&other[..12]), "{backend}");
        let artifact: Value = serde_json::from_str(&card.artifact_json).unwrap();
        assert_eq!(artifact["gate_passed"], true);

        // The DPO trained `own` (as the same `sub`): refused by four-eyes.
        let e = o
            .approve_model(as_(dpo, proto::ApproveModelRequest { id: own.clone() }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{backend}: {e:?}");
        assert!(
            e.message().contains("four-eyes") && e.message().contains("demo-dpo"),
            "{e:?}"
        );
        // A model that failed its gate is refused whoever approves.
        let e = o
            .approve_model(as_(dpo, proto::ApproveModelRequest { id: failed.clone() }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{backend}: {e:?}");
        assert!(e.message().contains("release gate"), "{e:?}");
        // The auditor reads the registry but changes nothing.
        let e = o
            .approve_model(as_(
                "demo-auditor",
                proto::ApproveModelRequest { id: other.clone() },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains("access.default-deny"), "{e:?}");
        // Another principal approves; activation retires the first model.
        let approved = o
            .approve_model(as_(dpo, proto::ApproveModelRequest { id: other.clone() }))
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(approved.state, "approved");
        let active = o
            .activate_model(as_(dpo, proto::ActivateModelRequest { id: other.clone() }))
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(
            (active.state.as_str(), active.replaced.as_str()),
            ("active", first.as_str())
        );
        assert_eq!(registry::active(&app).await.unwrap().unwrap().row.id, other);
        // Rollback: the first model is active again in one step, the new one retired.
        let back = o
            .rollback_model(as_(dpo, proto::RollbackModelRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(back.model.unwrap().id, first, "{backend}");
        assert_eq!(back.retired, other);
        let now = registry::list(&app).await.unwrap();
        let state = |id: &str| now.iter().find(|r| r.id == id).unwrap().state.as_str();
        assert_eq!((state(&first), state(&other)), ("active", "retired"));
        // The first model replaced none: nothing further to roll back to.
        let e = o
            .rollback_model(as_(dpo, proto::RollbackModelRequest {}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("nothing to roll back"), "{e:?}");
        assert_eq!(registry::active(&app).await.unwrap().unwrap().row.id, first);
        // Nine calls, nine entries, in order; each refusal names its rule.
        let end = audit_size(&store).await;
        assert_eq!(end - before, 9, "{backend}");
        let mut actions = Vec::new();
        let mut rules = Vec::new();
        for seq in before..end {
            let row = store.audit_entry(seq).await.unwrap().unwrap();
            let entry: Value = serde_json::from_str(&row.entry).unwrap();
            if row.outcome == "denied" {
                rules.push(entry["outcome"]["rules"][0].as_str().unwrap().to_string());
            }
            actions.push((row.action, row.outcome));
        }
        assert_eq!(rules, ["four-eyes", "release-gate", "access.default-deny"]);
        let expect = [
            ("oversight.list_models", "allowed"),
            ("oversight.get_model_card", "allowed"),
            ("model.approve", "denied"),
            ("model.approve", "denied"),
            ("model.approve", "denied"),
            ("model.approve", "allowed"),
            ("model.activate", "allowed"),
            ("model.rollback", "allowed"),
            ("model.rollback", "failed"),
        ];
        assert_eq!(
            actions,
            expect.map(|(a, o)| (a.to_string(), o.to_string())),
            "{backend}"
        );
        // A scoring run uses the rolled-back model.
        let (report, _) = score(&app, &operator("scorer"), &set, date("2026-01-01"))
            .await
            .unwrap();
        assert_eq!(report.model_id, first, "{backend}");
        served.stop().await;
        let report = verify_trail(&store, &keys).await;
        assert!(report.ok, "{backend}: {report:?}");
    }
}

/// The statistics through the oversight service on a scored store: decisions made here
/// show as counted, a count below five is suppressed, the run's counts and flag rates
/// are the run's own, nothing names a person, and each call is audited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_what_happened_and_suppress_small_cells() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    for (backend, store) in scored(dir.path(), "stats").await {
        let served = start(&store, settings(&keys)).await;
        let me = caseworker(CENTRAL);
        let mut c = served.client().await;
        let mut o = served.oversight().await;
        let listed = list_all(&mut c, &me).await;
        assert!(listed.len() >= 8, "{backend}: {}", listed.len());
        // Six declined as not in scope, two accepted.
        for (i, s) in listed.iter().take(8).enumerate() {
            let (outcome, reason) = if i < 6 {
                (proto::DecisionOutcome::Declined, "not-in-scope")
            } else {
                (proto::DecisionOutcome::Accepted, "support-offered")
            };
            c.record_decision(as_(
                &me,
                proto::RecordDecisionRequest {
                    suggestion_id: s.id.clone(),
                    outcome: outcome as i32,
                    reason_code: reason.into(),
                    note: String::new(),
                    idempotency_key: format!("stats-{i}"),
                },
            ))
            .await
            .unwrap();
        }
        let before = audit_size(&store).await;
        let e = o
            .get_statistics(as_(&me, proto::GetStatisticsRequest {}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{backend}");
        let st = o
            .get_statistics(as_("demo-auditor", proto::GetStatisticsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_trail(&store, &keys, before, 2, backend).await;
        assert_eq!(st.min_cell, 5);
        let decided = |reason: &str| {
            st.decisions
                .iter()
                .find(|d| d.reason_code == reason)
                .unwrap()
                .decisions
        };
        assert_eq!(decided("not-in-scope"), Some(6), "{backend}");
        assert_eq!(
            decided("support-offered"),
            None,
            "{backend}: 2 is suppressed"
        );
        // The central unit's override rate over its decided bands: 6 of 8 overall.
        let central: Vec<&proto::OverrideRate> = st
            .override_rates
            .iter()
            .filter(|r| r.unit == CENTRAL)
            .collect();
        assert!(!central.is_empty());
        for r in &central {
            if let (Some(d), Some(x)) = (r.decided, r.overridden) {
                assert_eq!(r.rate, Some(x as f64 / d as f64));
            } else {
                assert_eq!(r.rate, None);
            }
        }
        // Every suggestion is counted in its unit's ISO week (all were scored on
        // 2026-01-01, in 2026-W01).
        let outer = list_all(&mut c, &caseworker(OUTER)).await;
        let weeks: Vec<(&str, &str, Option<u64>)> = st
            .suggestions_per_week
            .iter()
            .map(|w| (w.unit.as_str(), w.week.as_str(), w.suggestions))
            .collect();
        assert_eq!(
            weeks,
            [
                (CENTRAL, "2026-W01", Some(listed.len() as u64)),
                (OUTER, "2026-W01", Some(outer.len() as u64)),
            ],
            "{backend}"
        );
        // The scoring run: its exclusions per rule and flag rates are its report's.
        let run = st.runs.last().unwrap();
        assert_eq!(run.as_of, "2026-01-01");
        let report: Value = serde_json::from_str(&st.report_json).unwrap();
        let runs = store.run_facts().await.unwrap();
        let stored: Value = serde_json::from_str(&runs.last().unwrap().report).unwrap();
        for rule in &run.excluded {
            let n = stored["excluded"][&rule.rule].as_u64().unwrap();
            assert_eq!(
                rule.persons,
                (n == 0 || n >= 5).then_some(n),
                "{}",
                rule.rule
            );
        }
        assert!(!run.flag_rates.is_empty(), "{backend}");
        for f in &run.flag_rates {
            let children = stored["cohort_per_unit"][&f.unit].as_u64().unwrap();
            let flagged = stored["per_unit"][&f.unit].as_u64().unwrap_or(0);
            assert!(children > 0);
            if children >= 5 && (flagged == 0 || flagged >= 5) {
                assert_eq!(f.per_1000, Some(flagged as f64 / children as f64 * 1000.0));
            } else {
                assert_eq!(f.per_1000, None);
            }
        }
        // The active model's fairness table, as its card has it.
        assert!(!st.fairness.is_empty() && !st.fairness_model_id.is_empty());
        // Aggregates only: no pseudonym, no suggestion id anywhere in the report.
        let text = report.to_string();
        for s in &listed {
            assert!(
                !text.contains(&s.pseudonym) && !text.contains(&s.id),
                "{backend}"
            );
        }
        served.stop().await;
    }
}

/// A person planted with records of their own in every registry, scored, decided on,
/// re-identified and objecting: the subject-access report has every one of those, with
/// dates and sources, and nothing about anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_access_report_holds_everything_about_the_person_and_nothing_about_anyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_dir(dir.path());
    let patients =
        std::fs::read_to_string(municipality().join("health/Patient.000.ndjson")).unwrap();
    let persons = std::fs::read_to_string(municipality().join("population/persons.csv")).unwrap();
    let social = std::fs::read_to_string(municipality().join("social/case_events.csv")).unwrap();
    for (backend, store) in scored(dir.path(), "sar").await {
        let served = start(&store, settings(&keys)).await;
        let me = caseworker(CENTRAL);
        let mut c = served.client().await;
        let mut o = served.oversight().await;
        let listed = list_all(&mut c, &me).await;
        let target = listed[0].clone();
        let nid = c
            .reidentify(as_(
                &me,
                proto::ReidentifyRequest {
                    suggestion_id: target.id.clone(),
                    purpose: "plan a home visit".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .national_id;
        c.record_decision(as_(
            &me,
            proto::RecordDecisionRequest {
                suggestion_id: target.id.clone(),
                outcome: proto::DecisionOutcome::Accepted as i32,
                reason_code: "support-offered".into(),
                note: "called the family".into(),
                idempotency_key: "sar-1".into(),
            },
        ))
        .await
        .unwrap();
        o.register_objection(as_(
            "demo-dpo",
            proto::RegisterObjectionRequest {
                national_id: nid.clone(),
                reference: "DPO-7".into(),
            },
        ))
        .await
        .unwrap();

        // Records of their own in every registry, in files of their own.
        let patient: Value = serde_json::from_str(
            patients
                .lines()
                .find(|l| l.contains(&format!("\"value\":\"{nid}\"")))
                .unwrap(),
        )
        .unwrap();
        let planted = dir.path().join(format!("planted-{backend}"));
        for sub in ["health", "social", "population"] {
            std::fs::create_dir_all(planted.join(sub)).unwrap();
        }
        std::fs::write(
            planted.join("health/Condition.planted.ndjson"),
            serde_json::json!({
                "resourceType": "Condition", "id": "cond-planted-1",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J45.9"}]},
                "subject": {"reference": format!("Patient/{}", patient["id"].as_str().unwrap())},
                "onsetDateTime": "2025-10-02T09:00:00+02:00",
            })
            .to_string()
                + "\n",
        )
        .unwrap();
        std::fs::write(
            planted.join("social/planted_case_events.csv"),
            format!(
                "record_id,national_id,code,start_date,end_date,amount,unit\n\
                 case-planted-1,{nid},LSIL,2025-09-15,,,family-services\n"
            ),
        )
        .unwrap();
        std::fs::write(
            planted.join("population/planted_addresses.csv"),
            format!(
                "national_id,valid_from,valid_to,municipality,postcode,household_id\n\
                 {nid},2025-12-01,,091,00990,D-planted\n"
            ),
        )
        .unwrap();
        let loaded = load(
            &store,
            &edge(Country::Fi, &[]),
            std::slice::from_ref(&planted),
        )
        .await;
        assert_eq!(loaded.failed_files, 0, "{backend}: {loaded:?}");

        let before = audit_size(&store).await;
        let r = o
            .subject_access_report(as_(
                "demo-dpo",
                proto::SubjectAccessReportRequest {
                    national_id: nid.clone(),
                    reference: "SAR-2026-17".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_trail(&store, &keys, before, 1, backend).await;
        assert_eq!(r.pseudonym, target.pseudonym);
        assert!(r.held);
        let record = |registry: &str, category: &str, code: &str| {
            r.records
                .iter()
                .find(|h| h.registry == registry && h.category == category && h.code == code)
                .unwrap_or_else(|| panic!("{backend}: no {registry} {category} {code}"))
                .clone()
        };
        // The planted records, each with its date and source.
        let cond = record("health", "condition", "J45.9");
        assert!(cond.start.starts_with("2025-10-02T07:00:00"), "{cond:?}");
        assert!(
            cond.source_file.contains("Condition.planted.ndjson"),
            "{cond:?}"
        );
        assert!(!cond.loaded_at.is_empty());
        let case = r
            .records
            .iter()
            .find(|h| h.source_file.contains("planted_case_events.csv"))
            .unwrap();
        assert_eq!(
            (case.code.as_str(), case.registry.as_str()),
            ("child_welfare_notification", "social")
        );
        assert!(case.start.starts_with("2025-09-15"), "{case:?}");
        assert!(case.detail.ends_with("|LSIL"), "{case:?}");
        let home = r
            .records
            .iter()
            .find(|h| h.category == "residence" && h.start == "2025-12-01")
            .unwrap();
        assert!(home.description.contains("00990"), "{home:?}");
        assert!(home.source_file.contains("planted_addresses.csv"));
        // Every social-services line of the person in the synthetic extract is there
        // too, and their relations and protected attributes.
        let social_lines = social.lines().filter(|l| l.contains(&nid)).count();
        let social_held = r.records.iter().filter(|h| h.registry == "social").count();
        assert_eq!(social_held, social_lines + 1, "{backend}");
        assert!(r
            .records
            .iter()
            .any(|h| h.category == "relation" && h.description.contains("parent")));
        assert!(r
            .records
            .iter()
            .any(|h| h.category == "protected_attribute"));
        assert!(r.records.iter().filter(|h| h.registry == "health").count() >= 1);
        // The snapshot scored, the suggestion with its explanation, rule trace and
        // decision.
        let snap = r
            .snapshots
            .iter()
            .find(|s| s.as_of == "2026-01-01")
            .unwrap();
        assert!(snap.features.len() > 10 && snap.features.iter().all(|f| !f.text.is_empty()));
        let s = r.suggestions.iter().find(|s| s.id == target.id).unwrap();
        assert_eq!(s.unit, CENTRAL);
        assert!((s.score - target.score).abs() < 1e-12);
        let explanation: Value = serde_json::from_str(&s.explanation_json).unwrap();
        assert!(!explanation.as_array().unwrap().is_empty());
        let trace: Value = serde_json::from_str(&s.rule_trace_json).unwrap();
        assert!(!trace.as_array().unwrap().is_empty());
        let d = s.decision.as_ref().unwrap();
        assert_eq!(
            (
                d.outcome.as_str(),
                d.reason_code.as_str(),
                d.note.as_str(),
                d.decided_by.as_str()
            ),
            (
                "accepted",
                "support-offered",
                "called the family",
                me.as_str()
            )
        );
        // Every access: the re-identification (who, purpose), the decision, the
        // objection, and this report.
        let access = |action: &str| r.accesses.iter().find(|a| a.action == action).cloned();
        let reid = access("casework.reidentify").unwrap();
        assert_eq!(
            (reid.principal.as_str(), reid.purpose.as_str()),
            (me.as_str(), "case-handling")
        );
        assert!(reid.details_json.contains("plan a home visit"));
        assert!(access("casework.record_decision").is_some());
        assert!(access("oversight.register_objection").is_some());
        assert_eq!(
            access("oversight.subject_access_report").unwrap().principal,
            "demo-dpo"
        );
        assert_eq!(r.objection.as_ref().unwrap().reference, "DPO-7");
        assert!(r.logic.iter().any(|p| p.contains("caseworker")));
        // One JSON document with the same content.
        let doc: Value = serde_json::from_str(&r.report_json).unwrap();
        assert_eq!(doc["pseudonym"], target.pseudonym.as_str());
        assert_eq!(doc["records"].as_array().unwrap().len(), r.records.len());
        // Nothing about anyone else: no other person's national ID, pseudonym or
        // suggestion; and the person's own ID is not echoed.
        assert!(!r.report_json.contains(&nid));
        for line in persons.lines().skip(1) {
            let other = line.split(',').next().unwrap();
            assert!(
                !r.report_json.contains(other),
                "{backend}: another person's ID"
            );
        }
        for s in listed
            .iter()
            .skip(1)
            .chain(list_all(&mut c, &caseworker(OUTER)).await.iter())
        {
            assert!(
                !r.report_json.contains(&s.pseudonym),
                "{backend}: another pseudonym"
            );
            assert!(!r.report_json.contains(&s.id));
        }
        served.stop().await;
    }
}
