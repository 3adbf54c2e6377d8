//! `tidig serve` as real processes: it refuses to start when nobody could authenticate,
//! replicas on one store decide the same suggestion at once with exactly one decision, a
//! scoring run in another process reaches a watching client, and SIGTERM drains and
//! closes the audit trail, which verifies afterwards.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{command, pg, quickstart, stderr, tidig};
use tidig_engine::server::proto;
use tidig_engine::server::proto::caseworker_service_client::CaseworkerServiceClient;
use tonic::Code;

const SETTINGS: &str = r#"[deployment]
legal_basis = "demo on synthetic data"
dpia_ref = "DPIA-T"
fria_ref = "FRIA-T"
art9_basis = "GDPR Art 9(2)(h)"

[service]
demo = true
watch_poll_ms = 200
"#;

#[test]
fn serve_refuses_in_one_line_when_nobody_could_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidig(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("refusing to serve"), "{err}");
    assert!(
        !dir.path().join("tidig.db").exists(),
        "no store was created"
    );
}

/// A `tidig serve` process and the address it printed.
struct Server {
    child: Child,
    url: String,
}

/// `tidig [args] --json serve --listen 127.0.0.1:0` in `dir`, and its start line.
fn spawn_serve(dir: &Path, args: &[&str]) -> (Child, serde_json::Value) {
    let mut all = args.to_vec();
    all.extend(["--json", "serve", "--listen", "127.0.0.1:0"]);
    let mut child = command(dir, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("not the start line ({e}): {line:?}"));
    (child, v)
}

fn spawn_server(dir: &Path, db: &str) -> Server {
    let (child, v) = spawn_serve(dir, &["--db", db]);
    assert_eq!(v["demo"], true);
    Server {
        child,
        url: format!("http://{}", v["listening"].as_str().unwrap()),
    }
}

impl Server {
    /// SIGTERM, then the exit status and what it wrote to stderr.
    fn terminate(self) -> (std::process::ExitStatus, String) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = self.child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn as_<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_decide_once_a_run_elsewhere_reaches_a_watcher_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tidig.toml"), SETTINGS).unwrap();
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}", d.join("serve.db").display()),
    )];
    if let Some(pg) = pg() {
        urls.push(("postgres", pg.create_database("serve").await.unwrap()));
    }
    for (backend, db) in urls {
        let q = quickstart(d, Some(&db));
        assert!(q["serving"].is_null(), "{backend}");

        // Two replicas on the one store.
        let (one, two) = (spawn_server(d, &db), spawn_server(d, &db));
        let mut c1 = CaseworkerServiceClient::connect(one.url.clone())
            .await
            .unwrap();
        let mut c2 = CaseworkerServiceClient::connect(two.url.clone())
            .await
            .unwrap();
        let token = "demo-caseworker-family-services-central";
        let listed = c1
            .list_suggestions(as_(token, proto::ListSuggestionsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .suggestions;
        assert!(listed.len() >= 5, "{backend}: {} listed", listed.len());

        // The same suggestion decided through both replicas at once, five times over:
        // exactly one decision each time, the other ALREADY_EXISTS.
        for (i, s) in listed.iter().take(5).enumerate() {
            let req = |key: &str| {
                as_(
                    token,
                    proto::RecordDecisionRequest {
                        suggestion_id: s.id.clone(),
                        outcome: proto::DecisionOutcome::Accepted as i32,
                        reason_code: "support-offered".into(),
                        note: String::new(),
                        idempotency_key: format!("{key}-{i}"),
                    },
                )
            };
            let (a, b) = tokio::join!(
                c1.record_decision(req("one")),
                c2.record_decision(req("two"))
            );
            let mut codes = [
                a.map_or_else(|e| e.code(), |_| Code::Ok),
                b.map_or_else(|e| e.code(), |_| Code::Ok),
            ];
            codes.sort_by_key(|c| *c as i32);
            assert_eq!(
                codes,
                [Code::Ok, Code::AlreadyExists],
                "{backend}: round {i}"
            );
        }
        let after = c2
            .list_suggestions(as_(token, proto::ListSuggestionsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .suggestions;
        assert!(listed
            .iter()
            .take(5)
            .all(|s| after.iter().all(|a| a.id != s.id)));

        // Reads through both replicas at once: each replica's writer appends after the
        // head its last batch left, which the other keeps moving. One gap-free chain
        // with exactly one entry per call.
        let verify = || {
            let o = tidig(d, &["--db", &db, "--json", "audit", "verify"]);
            assert!(o.status.success(), "{backend}: {}", stderr(&o));
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
        };
        let entries = |v: &serde_json::Value| v["verify"]["entries"].as_u64().unwrap();
        let before = entries(&verify());
        let mut burst = Vec::new();
        for c in [&c1, &c2] {
            for task in 0..8 {
                let (mut c, ids) = (c.clone(), after.clone());
                burst.push(tokio::spawn(async move {
                    for i in 0..25 {
                        let id = ids[(task * 25 + i) % ids.len()].id.clone();
                        c.get_suggestion(as_(token, proto::GetSuggestionRequest { id }))
                            .await
                            .unwrap();
                    }
                }));
            }
        }
        for b in burst {
            b.await.unwrap();
        }
        let v = verify();
        assert_eq!(v["ok"], true, "{backend}: {v}");
        assert_eq!(entries(&v) - before, 2 * 8 * 25, "{backend}: {v}");

        // A watcher on replica one; a scoring run of the next week in another process.
        let mut watch = c1
            .watch_suggestions(as_(token, proto::WatchSuggestionsRequest {}))
            .await
            .unwrap()
            .into_inner();
        let run = tidig(
            d,
            &["--db", &db, "--json", "score", "--as-of", "2026-01-08"],
        );
        assert!(run.status.success(), "{backend}: {}", stderr(&run));
        let first = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("the run reached the watcher within seconds")
            .unwrap()
            .unwrap()
            .suggestion
            .unwrap();
        assert_eq!(first.unit, "family-services-central");
        assert!(
            listed.iter().all(|s| s.id != first.id),
            "{backend}: not new"
        );

        // SIGTERM: both replicas drain (the open watch ends) and exit cleanly.
        let (status, err) = one.terminate();
        assert!(status.success(), "{backend}: {err}");
        assert!(err.contains("audit trail closed"), "{backend}: {err}");
        // What was already sent may still arrive; then the stream ends.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(_)) = watch.message().await {}
        })
        .await;
        assert!(
            ended.is_ok(),
            "{backend}: the watch did not end with the server"
        );
        let (status, err) = two.terminate();
        assert!(status.success(), "{backend}: {err}");

        let v = tidig(d, &["--db", &db, "--json", "audit", "verify"]);
        assert!(v.status.success(), "{backend}: {}", stderr(&v));
        let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(v["ok"], true, "{backend}: {v}");
    }
}

/// A fresh CA (rcgen) and certificates it signs: `server.crt`/`.key` for localhost and
/// 127.0.0.1, and for each of `clients` `<cn>.crt`/`.key` with subject `CN=<cn>,
/// O=Test Municipality`; `ca.crt` is the CA.
fn certificates(dir: &Path, clients: &[&str]) {
    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.crt"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, sans) in std::iter::once(("server", vec!["localhost", "127.0.0.1"]))
        .chain(clients.iter().map(|c| (*c, vec![])))
    {
        let mut p =
            CertificateParams::new(sans.into_iter().map(String::from).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name
            .push(DnType::OrganizationName, "Test Municipality");
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

#[test]
fn tidig_client_calls_a_tls_server_with_a_client_certificate_it_maps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d, &["case-system-central", "case-system-unknown"]);
    let settings = SETTINGS.replace("demo = true", "demo = false")
        + "[service.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\nclient_ca = \"ca.crt\"\n\
           [[service.tls.clients]]\nsubject = \"CN=case-system-central, O=Test Municipality\"\n\
           role = \"caseworker\"\nunit = \"family-services-central\"\npurpose = \"case-handling\"\n";
    std::fs::write(d.join("tidig.toml"), settings).unwrap();
    let (child, v) = spawn_serve(d, &[]);
    assert_eq!(
        (&v["tls"], &v["client_certificates"], &v["demo"]),
        (&true.into(), &1.into(), &false.into()),
        "{v}"
    );
    let server = Server {
        child,
        url: format!(
            "https://localhost:{}",
            v["listening"].as_str().unwrap().rsplit(':').next().unwrap()
        ),
    };
    let client = |cn: &str, extra: &[&str]| {
        let (crt, key) = (format!("{cn}.crt"), format!("{cn}.key"));
        let mut args = vec!["--json", "client", "--server", &server.url];
        args.extend_from_slice(extra);
        args.extend(["--cert", &crt, "--key", &key, "list"]);
        tidig(d, &args)
    };
    let ok = client("case-system-central", &["--ca", "ca.crt"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let answer: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(answer["suggestions"].is_array(), "{answer}");
    let unknown = client("case-system-unknown", &["--ca", "ca.crt"]);
    assert!(!unknown.status.success());
    let err = stderr(&unknown);
    assert!(
        err.contains("Unauthenticated")
            && err.contains("`CN=case-system-unknown, O=Test Municipality` is not mapped"),
        "{err}"
    );
    let no_ca = client("case-system-central", &[]);
    assert!(!no_ca.status.success());
    assert!(stderr(&no_ca).contains("--ca"), "{}", stderr(&no_ca));
    let (status, err) = server.terminate();
    assert!(status.success(), "{err}");
}

/// The stop switch through one replica reaches the other replica's answers, refuses a
/// new run and halts a run that was about to write; resuming lets runs write again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_switch_reaches_every_replica_and_a_run_about_to_write() {
    use tidig_engine::server::proto::oversight_service_client::OversightServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tidig.toml"), SETTINGS).unwrap();
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}", d.join("stop.db").display()),
    )];
    if let Some(pg) = pg() {
        urls.push(("postgres", pg.create_database("stop").await.unwrap()));
    }
    for (backend, db) in urls {
        quickstart(d, Some(&db));
        let (one, two) = (spawn_server(d, &db), spawn_server(d, &db));
        let mut oversight = OversightServiceClient::connect(one.url.clone())
            .await
            .unwrap();
        let mut cw = CaseworkerServiceClient::connect(two.url.clone())
            .await
            .unwrap();
        let token = "demo-caseworker-family-services-central";
        let list = |mut c: CaseworkerServiceClient<tonic::transport::Channel>| async move {
            c.list_suggestions(as_(token, proto::ListSuggestionsRequest::default()))
                .await
                .unwrap()
                .into_inner()
        };
        let before = list(cw.clone()).await;
        assert!(
            !before.scoring_stopped && before.scoring.is_none(),
            "{backend}"
        );
        let stop = |reason: &str| proto::StopScoringRequest {
            reason: reason.into(),
        };

        // Only the data-protection officer switches, and only with a reason.
        for who in [token, "demo-auditor", "demo-researcher"] {
            let e = oversight
                .stop_scoring(as_(who, stop("not mine to stop")))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{backend} {who}: {e:?}");
            assert!(e.message().contains("access."), "{e:?}");
        }
        let e = oversight
            .stop_scoring(as_("demo-dpo", stop("  ")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("reason"), "{e:?}");

        // A run held just before its writing transaction; the DPO stops scoring
        // through replica one meanwhile; the run then writes nothing.
        let gate = d.join(format!("gate-{backend}"));
        let held = command(
            d,
            &["--db", &db, "--json", "score", "--as-of", "2026-01-08"],
        )
        .env("TIDIG_PAUSE_BEFORE_SCORE_WRITE", &gate)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let reached = d.join(format!("gate-{backend}.reached"));
        let waited = std::time::Instant::now();
        while !reached.exists() {
            assert!(
                waited.elapsed() < Duration::from_secs(120),
                "{backend}: the run never reached its write"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = oversight
            .stop_scoring(as_("demo-dpo", stop("model drift under review")))
            .await
            .unwrap()
            .into_inner();
        assert!(r.changed, "{backend}");
        assert!(r.state.as_ref().unwrap().stopped);
        // Its entry was written by the transaction that stopped scoring.
        assert!(r.audit_seq > 0);
        std::fs::write(&gate, b"").unwrap();
        let out = held.wait_with_output().unwrap();
        assert!(!out.status.success(), "{backend}: the held run wrote");
        assert!(
            stderr(&out).contains("scoring is stopped"),
            "{backend}: {}",
            stderr(&out)
        );

        // Replica two says so in its answers, and its list is what it was.
        let after = list(cw.clone()).await;
        assert!(after.scoring_stopped, "{backend}");
        let state = after.scoring.unwrap();
        assert_eq!(state.reason, "model drift under review");
        assert_eq!(state.switched_by, "demo-dpo");
        assert!(state.since.is_some());
        assert_eq!(after.suggestions, before.suggestions, "{backend}");
        let got = cw
            .get_suggestion(as_(
                token,
                proto::GetSuggestionRequest {
                    id: before.suggestions[0].id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.scoring.unwrap().reason, "model drift under review");
        // A new run refuses at once; a second stop changes nothing.
        let o = tidig(d, &["--db", &db, "score", "--as-of", "2026-01-08"]);
        assert!(!o.status.success(), "{backend}");
        assert!(stderr(&o).contains("scoring is stopped"), "{}", stderr(&o));
        let again = oversight
            .stop_scoring(as_("demo-dpo", stop("still under review")))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.changed);
        assert_eq!(again.state.unwrap().reason, "model drift under review");

        // Resumed through replica two: runs write again.
        let mut oversight_two = OversightServiceClient::connect(two.url.clone())
            .await
            .unwrap();
        let r = oversight_two
            .resume_scoring(as_(
                "demo-dpo",
                proto::ResumeScoringRequest {
                    reason: "review done".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(r.changed && !r.state.unwrap().stopped, "{backend}");
        let o = tidig(d, &["--db", &db, "score", "--as-of", "2026-01-08"]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let resumed = list(cw.clone()).await;
        assert!(!resumed.scoring_stopped && resumed.scoring.is_none());
        // Every stop call is in the trail, refused ones included (three refused by the
        // access policy, one malformed, the stop, the second stop).
        let q = tidig(
            d,
            &[
                "--db",
                &db,
                "--json",
                "audit",
                "query",
                "--action",
                "oversight.stop_scoring",
                "--page-size",
                "100",
            ],
        );
        assert!(q.status.success(), "{backend}: {}", stderr(&q));
        let q: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
        assert_eq!(q["entries"].as_array().unwrap().len(), 6, "{backend}: {q}");
        // The same through the oversight service with `tidig client`, as the auditor.
        let client = |call: &[&str]| {
            let mut args = vec![
                "--json",
                "client",
                "--server",
                &two.url,
                "--token",
                "demo-auditor",
            ];
            args.extend(call);
            let o = tidig(d, &args);
            assert!(o.status.success(), "{backend} {call:?}: {}", stderr(&o));
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
        };
        let q = client(&["query-audit", "--action", "oversight.stop_scoring"]);
        assert_eq!(q["entries"].as_array().unwrap().len(), 6, "{backend}: {q}");
        let v = client(&["verify-audit"]);
        assert_eq!(v["verify"]["ok"], true, "{backend}: {v}");
        let seq = q["entries"][0]["seq"].as_u64().unwrap().to_string();
        let p = client(&["prove", &seq]);
        assert_eq!(p["proof"]["seq"].to_string(), seq, "{backend}: {p}");
        // Exported through the service, checked offline with the verifier key.
        let export = format!("export-{backend}.jsonl");
        let e = client(&["export-audit", "--out", &export]);
        assert!(
            e["export"]["entries"].as_u64().unwrap() > 0,
            "{backend}: {e}"
        );
        let key = tidig(d, &["keys", "verifier"]);
        assert!(key.status.success(), "{}", stderr(&key));
        std::fs::write(d.join("verifier.txt"), &key.stdout).unwrap();
        let v = tidig(
            d,
            &[
                "--json",
                "audit",
                "verify-export",
                &export,
                "--verifier",
                "verifier.txt",
            ],
        );
        assert!(v.status.success(), "{backend}: {}", stderr(&v));

        let (status, err) = one.terminate();
        assert!(status.success(), "{backend}: {err}");
        let (status, err) = two.terminate();
        assert!(status.success(), "{backend}: {err}");
        let v = tidig(d, &["--db", &db, "--json", "audit", "verify"]);
        assert!(v.status.success(), "{backend}: {}", stderr(&v));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_research_run_is_watched_to_its_end_and_a_revocation_mid_way_releases_nothing() {
    use prost::Message as _;
    use proto::oversight_service_client::OversightServiceClient;
    use proto::research_service_client::ResearchServiceClient;

    // The SQLite store: the same store code is tested on both backends in
    // tests/tests/research.rs; this is the service and its processes.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tidig.toml"), SETTINGS).unwrap();
    let q = quickstart(d, None);
    let permit = q["research"]["permit"].as_str().unwrap().to_string();
    let as_of = q["research"]["as_of"].as_str().unwrap().to_string();
    let gate = d.join("research-gate");
    let (child, v) = {
        let mut child = command(d, &["--json", "serve", "--listen", "127.0.0.1:0"])
            .env("TIDIG_PAUSE_RESEARCH", &gate)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (
            child,
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
        )
    };
    let server = Server {
        child,
        url: format!("http://{}", v["listening"].as_str().unwrap()),
    };
    let mut research = ResearchServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    let mut oversight = OversightServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    let researcher = "demo-researcher";
    let start = |kind: proto::RunKind| proto::StartRunRequest {
        permit_id: permit.clone(),
        kind: kind as i32,
        as_of: as_of.clone(),
        ..Default::default()
    };
    // Every encoded answer, for the walk at the end.
    let mut answers: Vec<Vec<u8>> = Vec::new();

    // Refused at the start, naming the permit rule: a caseworker is no researcher; a
    // training run needs health features this permit does not allow.
    let e = research
        .start_run(as_(
            "demo-caseworker-family-services-central",
            start(proto::RunKind::Evaluate),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = research
        .start_run(as_(researcher, start(proto::RunKind::Train)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("permit `"), "{e:?}");

    // A run held once it has read its data: the watcher sees its stages, in order.
    let started = research
        .start_run(as_(researcher, start(proto::RunKind::Evaluate)))
        .await
        .unwrap()
        .into_inner();
    answers.push(started.encode_to_vec());
    let mut watch = research
        .watch_run(as_(
            researcher,
            proto::WatchRunRequest {
                run_id: started.run_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let reached = d.join("research-gate.reached");
    let waited = std::time::Instant::now();
    while !reached.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the run never reached the gate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While it runs: RUNNING, nothing to read yet; another researcher does not see it.
    let running = research
        .get_results(as_(
            researcher,
            proto::GetResultsRequest {
                run_id: started.run_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.state(), proto::RunState::Running);
    assert!(running.results_json.is_empty());
    answers.push(running.encode_to_vec());
    // The permit is revoked through the oversight service meanwhile; the run goes on
    // from its gate, finds it revoked at its next stage and stops.
    oversight
        .revoke_permit(as_(
            "demo-dpo",
            proto::RevokePermitRequest {
                id: permit.clone(),
                reason: "consent of the register keeper withdrawn".into(),
            },
        ))
        .await
        .unwrap();
    std::fs::write(&gate, b"").unwrap();
    let mut steps = Vec::new();
    while let Some(p) = watch.message().await.unwrap() {
        answers.push(p.encode_to_vec());
        steps.push(p);
    }
    let last = steps.last().unwrap();
    assert_eq!(last.state(), proto::RunState::Withheld, "{steps:?}");
    assert!(last.reason.contains("revoked"), "{last:?}");
    let percents: Vec<u32> = steps.iter().map(|p| p.percent).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(
        steps
            .iter()
            .any(|p| p.stage.starts_with("reading snapshot")),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|p| p.stage == "aggregating"),
        "it stopped before: {steps:?}"
    );
    let withheld = research
        .get_results(as_(
            researcher,
            proto::GetResultsRequest {
                run_id: started.run_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withheld.state(), proto::RunState::Withheld);
    assert!(withheld.results_json.is_empty(), "nothing released");
    assert!(withheld.audit_seq > 0);
    answers.push(withheld.encode_to_vec());
    // A watch after the end answers with how it ended.
    let mut again = research
        .watch_run(as_(
            researcher,
            proto::WatchRunRequest {
                run_id: started.run_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let end = again.message().await.unwrap().unwrap();
    assert_eq!(end.state(), proto::RunState::Withheld);
    assert!(again.message().await.unwrap().is_none());
    // A revoked permit starts nothing.
    let e = research
        .start_run(as_(researcher, start(proto::RunKind::Evaluate)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // The quickstart's released run through the service: its aggregates, and nothing
    // person-level in any answer.
    let quick = q["research"]["run"].as_str().unwrap().to_string();
    let e = research
        .get_results(as_(
            "demo-auditor",
            proto::GetResultsRequest {
                run_id: quick.clone(),
            },
        ))
        .await;
    assert!(e.is_ok(), "oversight reads runs: {e:?}");
    let released = research
        .get_results(as_(
            researcher,
            proto::GetResultsRequest {
                run_id: quick.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.state(), proto::RunState::Released);
    let results: serde_json::Value = serde_json::from_str(&released.results_json).unwrap();
    let min = results["min_cell"].as_u64().unwrap();
    assert!(results["calibration"]["lines"].as_array().unwrap().len() == 10);
    assert!(!results["fairness"].as_array().unwrap().is_empty());
    assert!(!results["factors"]["factors"].as_array().unwrap().is_empty());
    answers.push(released.encode_to_vec());
    assert_eq!(
        tidig_engine::testkit::person_level(&results, min),
        Vec::<String>::new(),
        "person-level content in the results"
    );
    // And no answer's bytes hold a pseudonym of the persons the quickstart flagged.
    let pseudonyms: Vec<String> = q["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pseudonym"].as_str().unwrap().to_string())
        .collect();
    assert!(!pseudonyms.is_empty());
    for bytes in &answers {
        for p in &pseudonyms {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "an answer holds pseudonym {p}"
            );
        }
    }
    let (status, err) = server.terminate();
    assert!(status.success(), "{err}");
}
