//! The load generator of `tidig bench serve`: concurrent clients on loopback, each a
//! loop of list / get / decide calls through the generated client for a bounded time,
//! latencies in an HDR histogram. Decisions take open suggestions from a shared queue
//! and, when it runs dry, repeat an earlier request with its idempotency key (a client's
//! retry: answered, audited, never an error).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::proto;
use super::proto::caseworker_service_client::CaseworkerServiceClient;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub url: String,
    /// Concurrent clients (tasks), spread over `connections` HTTP/2 connections.
    pub clients: usize,
    pub connections: usize,
    pub seconds: f64,
    /// The bearer token each call carries (all of one unit).
    pub token: String,
    /// Of every 20 calls: this many decisions, this many gets; the rest lists.
    pub decide_per_20: u32,
    pub get_per_20: u32,
    /// Idempotency keys start with this (unique per load: keys are per principal).
    pub key_prefix: String,
}

/// What it measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LoadReport {
    pub calls: u64,
    pub errors: u64,
    /// Error messages by status code (at most a few each).
    pub error_samples: BTreeMap<String, Vec<String>>,
    pub by_method: BTreeMap<String, u64>,
    pub seconds: f64,
    pub calls_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Suggestions decided, and decisions repeated once the queue ran dry.
    pub decided: u64,
    pub repeated: u64,
    /// List calls made before the load to find the suggestions to work on.
    pub setup_calls: u64,
}

/// Why the load could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("listing the suggestions to work on failed: {0}")]
    Setup(String),
    #[error("the latency histogram: {0}")]
    Histogram(String),
}

fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

struct Shared {
    /// Open suggestions not yet decided.
    open: Mutex<Vec<String>>,
    /// Decided requests (suggestion, key) to repeat.
    decided: Mutex<Vec<(String, String)>>,
    ids: Vec<String>,
}

/// The unit's open suggestion ids, every page.
async fn all_open(
    c: &mut CaseworkerServiceClient<tonic::transport::Channel>,
    token: &str,
    calls: &mut u64,
) -> Result<Vec<String>, LoadError> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        *calls += 1;
        let r = c
            .list_suggestions(authorized(
                token,
                proto::ListSuggestionsRequest {
                    page_size: 200,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .map_err(|s| LoadError::Setup(s.to_string()))?
            .into_inner();
        ids.extend(r.suggestions.into_iter().map(|s| s.id));
        if r.next_page_token.is_empty() {
            return Ok(ids);
        }
        page_token = r.next_page_token;
    }
}

/// Runs the load and reports.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    let mut channels = Vec::new();
    for _ in 0..spec.connections.max(1) {
        let ch = tonic::transport::Endpoint::from_shared(spec.url.clone())
            .map_err(|e| LoadError::Connect(spec.url.clone(), e.to_string()))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| LoadError::Connect(spec.url.clone(), e.to_string()))?;
        channels.push(ch);
    }
    let mut setup = CaseworkerServiceClient::new(channels[0].clone());
    let mut setup_calls = 0;
    let ids = all_open(&mut setup, &spec.token, &mut setup_calls).await?;
    if ids.is_empty() {
        return Err(LoadError::Setup("the unit has no open suggestions".into()));
    }
    let mut open = ids.clone();
    open.reverse();
    let shared = Arc::new(Shared {
        open: Mutex::new(open),
        decided: Mutex::new(Vec::new()),
        ids,
    });
    // Microseconds from 1 µs to a minute, 3 significant digits.
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| LoadError::Histogram(e.to_string()))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(spec.seconds);
    let mut tasks = Vec::new();
    for i in 0..spec.clients {
        let client = CaseworkerServiceClient::new(channels[i % channels.len()].clone());
        let (shared, spec, empty) = (shared.clone(), spec.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            client_loop(client, i, &spec, &shared, deadline, empty).await
        }));
    }
    let mut report = LoadReport {
        setup_calls,
        ..LoadReport::default()
    };
    for t in tasks {
        let Ok(part) = t.await else {
            report.errors += 1;
            continue;
        };
        latencies
            .add(&part.latencies)
            .map_err(|e| LoadError::Histogram(e.to_string()))?;
        report.calls += part.calls;
        report.errors += part.errors;
        report.decided += part.decided;
        report.repeated += part.repeated;
        for (k, v) in part.by_method {
            *report.by_method.entry(k.into()).or_default() += v;
        }
        for (k, v) in part.error_samples {
            let e = report.error_samples.entry(k).or_default();
            e.extend(v.into_iter().take(3usize.saturating_sub(e.len())));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.calls_per_second = report.calls as f64 / report.seconds;
    let ms = |us: u64| us as f64 / 1000.0;
    report.p50_ms = ms(latencies.value_at_quantile(0.50));
    report.p90_ms = ms(latencies.value_at_quantile(0.90));
    report.p99_ms = ms(latencies.value_at_quantile(0.99));
    report.max_ms = ms(latencies.max());
    Ok(report)
}

struct Part {
    calls: u64,
    errors: u64,
    decided: u64,
    repeated: u64,
    by_method: BTreeMap<&'static str, u64>,
    error_samples: BTreeMap<String, Vec<String>>,
    latencies: Histogram<u64>,
}

async fn client_loop(
    mut c: CaseworkerServiceClient<tonic::transport::Channel>,
    me: usize,
    spec: &LoadSpec,
    shared: &Shared,
    deadline: Instant,
    latencies: Histogram<u64>,
) -> Part {
    let mut part = Part {
        calls: 0,
        errors: 0,
        decided: 0,
        repeated: 0,
        by_method: BTreeMap::new(),
        error_samples: BTreeMap::new(),
        latencies,
    };
    let mut n: u64 = me as u64;
    while Instant::now() < deadline {
        n = n.wrapping_add(1);
        let slot = (n % 20) as u32;
        let t = Instant::now();
        let (method, result) = if slot < spec.decide_per_20 {
            let fresh = shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .map(|id| {
                    let key = format!("{}-{me}-{n}", spec.key_prefix);
                    (id, key, false)
                });
            let (id, key, repeat) = match fresh {
                Some(x) => x,
                None => {
                    let d = shared.decided.lock().unwrap_or_else(|p| p.into_inner());
                    match d.get((n as usize) % d.len().max(1)) {
                        Some((id, key)) => (id.clone(), key.clone(), true),
                        None => continue,
                    }
                }
            };
            let r = c
                .record_decision(authorized(
                    &spec.token,
                    proto::RecordDecisionRequest {
                        suggestion_id: id.clone(),
                        outcome: proto::DecisionOutcome::Accepted as i32,
                        reason_code: "support-offered".into(),
                        note: String::new(),
                        idempotency_key: key.clone(),
                    },
                ))
                .await
                .map(drop);
            if r.is_ok() {
                if repeat {
                    part.repeated += 1;
                } else {
                    part.decided += 1;
                    shared
                        .decided
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((id, key));
                }
            }
            ("decide", r)
        } else if slot < spec.decide_per_20 + spec.get_per_20 {
            let id = shared.ids[(n as usize) % shared.ids.len()].clone();
            let r = c
                .get_suggestion(authorized(&spec.token, proto::GetSuggestionRequest { id }))
                .await
                .map(drop);
            ("get", r)
        } else {
            let r = c
                .list_suggestions(authorized(
                    &spec.token,
                    proto::ListSuggestionsRequest {
                        page_size: 20,
                        page_token: String::new(),
                    },
                ))
                .await
                .map(drop);
            ("list", r)
        };
        let us = t.elapsed().as_micros() as u64;
        part.latencies.saturating_record(us.max(1));
        part.calls += 1;
        *part.by_method.entry(method).or_default() += 1;
        if let Err(s) = result {
            part.errors += 1;
            let e = part
                .error_samples
                .entry(format!("{:?}", s.code()))
                .or_default();
            if e.len() < 3 {
                e.push(s.message().to_string());
            }
        }
    }
    part
}
