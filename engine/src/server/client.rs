//! The client side of the contract, for `tidig client`: one call with a bearer token or
//! a client certificate, its answer as a JSON object (the command line prints it or
//! renders it).

use serde_json::{json, Value};

use super::proto;
use super::proto::caseworker_service_client::CaseworkerServiceClient;
use super::proto::oversight_service_client::OversightServiceClient;
use super::proto::research_service_client::ResearchServiceClient;
use crate::domain::DecisionOutcome;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// One call of the caseworker or oversight service.
#[derive(Clone, Debug)]
pub enum Call {
    List {
        page_size: u32,
        page_token: String,
    },
    Get {
        id: String,
    },
    Decide {
        id: String,
        outcome: DecisionOutcome,
        reason: String,
        note: String,
        key: String,
    },
    Reidentify {
        id: String,
        purpose: String,
    },
    /// Stops after `count` new suggestions (never, when `None`).
    Watch {
        count: Option<usize>,
    },
    Export {
        id: String,
    },
    /// The oversight service's stop switch.
    StopScoring {
        reason: String,
    },
    ResumeScoring {
        reason: String,
    },
    RegisterObjection {
        person: String,
        reference: String,
    },
    WithdrawObjection {
        person: String,
        reference: String,
    },
    ListObjections,
    VerifyAudit,
    QueryAudit {
        person: Option<String>,
        action: Option<String>,
        page_size: u32,
        page_token: String,
    },
    ProveInclusion {
        seq: u64,
    },
    /// Writes the export's JSON Lines to `out`.
    ExportAudit {
        out: std::path::PathBuf,
    },
    /// The model lifecycle.
    ListModels,
    ModelCard {
        id: String,
    },
    ApproveModel {
        id: String,
    },
    ActivateModel {
        id: String,
    },
    RetireModel {
        id: String,
    },
    RollbackModel,
    Statistics,
    /// The permit register.
    RegisterPermit {
        toml: String,
    },
    AmendPermit {
        toml: String,
    },
    RevokePermit {
        id: String,
        reason: String,
    },
    ListPermits,
    GetPermit {
        id: String,
    },
    /// A subject-access report; `out` receives the JSON document.
    SubjectAccess {
        person: String,
        reference: String,
        out: std::path::PathBuf,
    },
    /// Starts a research run and watches it to its end (each step an event).
    ResearchRun {
        permit: String,
        /// `evaluate` or `train`.
        kind: String,
        as_of: String,
        features: Vec<String>,
    },
    /// A research run's record and released aggregates.
    ResearchResults {
        id: String,
    },
}

/// Where and as whom to call.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The server's URL: `http://…`, or `https://…` with `ca_pem`.
    pub server: String,
    /// Bearer token (a JWT, or a demo token when the server runs in demo mode).
    pub token: Option<String>,
    /// The CA that signed the server's certificate (PEM): the call goes over TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// The client's certificate and private key (PEM), for servers that take client
    /// certificates (mTLS).
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl Caller {
    async fn connect(&self) -> Result<Channel, ClientError> {
        let connect = |e: tonic::transport::Error| {
            use std::error::Error as _;
            // The transport error's own text is terse ("transport error"); its source
            // says what went wrong (refused, certificate, handshake).
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            ClientError::Connect(text)
        };
        let mut endpoint = Channel::from_shared(self.server.clone())
            .map_err(|e| ClientError::Connect(format!("`{}`: {e}", self.server)))?;
        let https = self.server.starts_with("https://");
        if https || self.ca_pem.is_some() || self.identity_pem.is_some() {
            let Some(ca) = &self.ca_pem else {
                return Err(ClientError::Connect(
                    "TLS needs the CA that signed the server's certificate (--ca)".into(),
                ));
            };
            if !https {
                return Err(ClientError::Connect(format!(
                    "`{}`: a TLS call needs an https:// server URL",
                    self.server
                )));
            }
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &self.identity_pem {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(connect)?;
        }
        endpoint.connect().await.map_err(connect)
    }
}

/// Why a call did not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the token is not valid header text")]
    Token,
    #[error("{code}: {message}")]
    Status { code: String, message: String },
    #[error("the answer is not JSON: {0}")]
    Answer(String),
}

fn status(s: tonic::Status) -> ClientError {
    ClientError::Status {
        code: format!("{:?}", s.code()),
        message: s.message().to_string(),
    }
}

fn authorized<T>(token: Option<&str>, message: T) -> Result<tonic::Request<T>, ClientError> {
    let mut r = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Token)?;
        r.metadata_mut().insert("authorization", value);
    }
    Ok(r)
}

fn lower(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_lowercase()
}

fn time(t: Option<prost_types::Timestamp>) -> Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

fn summary(s: proto::SuggestionSummary) -> Value {
    json!({
        "id": s.id, "pseudonym": s.pseudonym, "unit": s.unit, "score": s.score,
        "band": proto::Band::try_from(s.band).map_or(String::new(), |b| lower(b.as_str_name(), "BAND_")),
        "created_at": time(s.created_at), "expires_at": time(s.expires_at),
    })
}

fn suggestion(s: proto::Suggestion) -> Value {
    let v = s.versions.unwrap_or_default();
    json!({
        "summary": summary(s.summary.unwrap_or_default()),
        "status": proto::SuggestionStatus::try_from(s.status)
            .map_or(String::new(), |x| lower(x.as_str_name(), "SUGGESTION_STATUS_")),
        "factors": s.factors.into_iter().map(|f| json!({
            "text": f.text, "registry": f.registry, "relation": f.relation, "feature": f.feature,
            "contribution": f.contribution, "redacted": f.redacted, "redacting_rule": f.redacting_rule,
        })).collect::<Vec<_>>(),
        "rule_trace": s.rule_trace.into_iter().map(|e| json!({
            "stage": e.stage, "action": e.action, "subject": e.subject, "allowed": e.allowed,
            "rules": e.rules,
        })).collect::<Vec<_>>(),
        "interventions": s.interventions.into_iter().map(|i| json!({
            "id": i.id, "title": i.title, "because_of": i.because_of,
        })).collect::<Vec<_>>(),
        "versions": {"model": v.model, "rules": v.rules, "feature_set": v.feature_set},
    })
}

fn outcome(o: DecisionOutcome) -> proto::DecisionOutcome {
    match o {
        DecisionOutcome::Accepted => proto::DecisionOutcome::Accepted,
        DecisionOutcome::Declined => proto::DecisionOutcome::Declined,
        DecisionOutcome::AlreadyKnown => proto::DecisionOutcome::AlreadyKnown,
        DecisionOutcome::NotRelevant => proto::DecisionOutcome::NotRelevant,
    }
}

/// Makes `call` as `caller`; a watch passes each new suggestion to `on_event` as it
/// arrives.
pub async fn call(
    caller: &Caller,
    call: Call,
    mut on_event: impl FnMut(&Value),
) -> Result<Value, ClientError> {
    let channel = caller.connect().await?;
    let mut c = CaseworkerServiceClient::new(channel.clone());
    let token = caller.token.as_deref();
    Ok(match call {
        Call::List {
            page_size,
            page_token,
        } => {
            let r = c
                .list_suggestions(authorized(
                    token,
                    proto::ListSuggestionsRequest {
                        page_size,
                        page_token,
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({
                "suggestions": r.suggestions.into_iter().map(summary).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
                "scoring_stopped": r.scoring_stopped,
                "scoring": r.scoring.map(scoring),
            })
        }
        Call::Get { id } => {
            let r = c
                .get_suggestion(authorized(token, proto::GetSuggestionRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            let mut s = suggestion(r.suggestion.unwrap_or_default());
            if let Some(stop) = r.scoring {
                s["scoring"] = scoring(stop);
            }
            s
        }
        Call::Decide {
            id,
            outcome: o,
            reason,
            note,
            key,
        } => {
            let r = c
                .record_decision(authorized(
                    token,
                    proto::RecordDecisionRequest {
                        suggestion_id: id.clone(),
                        outcome: outcome(o) as i32,
                        reason_code: reason,
                        note,
                        idempotency_key: key,
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"suggestion": id, "decision_id": r.decision_id, "decided_at": time(r.decided_at), "audit_seq": r.audit_seq})
        }
        Call::Reidentify { id, purpose } => {
            let r = c
                .reidentify(authorized(
                    token,
                    proto::ReidentifyRequest {
                        suggestion_id: id.clone(),
                        purpose,
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"suggestion": id, "national_id": r.national_id, "audit_seq": r.audit_seq})
        }
        Call::Watch { count } => {
            let mut stream = c
                .watch_suggestions(authorized(token, proto::WatchSuggestionsRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            let mut seen = Vec::new();
            while count.is_none_or(|n| seen.len() < n) {
                let Some(event) = stream.message().await.map_err(status)? else {
                    break;
                };
                let s = summary(event.suggestion.unwrap_or_default());
                on_event(&s);
                seen.push(s);
            }
            json!({"suggestions": seen})
        }
        Call::Export { id } => {
            let r = c
                .export_risk_assessment(authorized(
                    token,
                    proto::ExportRiskAssessmentRequest { suggestion_id: id },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            serde_json::from_str(&r.resource_json)
                .map_err(|e| ClientError::Answer(e.to_string()))?
        }
        Call::StopScoring { reason } => {
            let r = OversightServiceClient::new(channel)
                .stop_scoring(authorized(token, proto::StopScoringRequest { reason })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"scoring": r.state.map(scoring), "changed": r.changed, "audit_seq": r.audit_seq})
        }
        Call::ResumeScoring { reason } => {
            let r = OversightServiceClient::new(channel)
                .resume_scoring(authorized(token, proto::ResumeScoringRequest { reason })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"scoring": r.state.map(scoring), "changed": r.changed, "audit_seq": r.audit_seq})
        }
        Call::RegisterObjection { person, reference } => {
            let r = OversightServiceClient::new(channel)
                .register_objection(authorized(
                    token,
                    proto::RegisterObjectionRequest {
                        national_id: person,
                        reference,
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"objection": {"pseudonym": r.pseudonym, "changed": r.changed,
                   "withdrawn_suggestions": r.withdrawn_suggestions, "audit_seq": r.audit_seq}})
        }
        Call::WithdrawObjection { person, reference } => {
            let r = OversightServiceClient::new(channel)
                .withdraw_objection(authorized(
                    token,
                    proto::WithdrawObjectionRequest {
                        national_id: person,
                        reference,
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"objection": {"pseudonym": r.pseudonym, "changed": r.changed,
                   "withdrawn_suggestions": [], "audit_seq": r.audit_seq}})
        }
        Call::VerifyAudit => {
            let r = OversightServiceClient::new(channel)
                .verify_audit(authorized(token, proto::VerifyAuditRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"verify": {"ok": r.ok, "entries": r.entries, "root": r.root,
                   "checkpoints": r.checkpoints, "latest_checkpoint": r.latest_checkpoint,
                   "latest_checkpoint_size": r.latest_checkpoint_size,
                   "verifier_key": r.verifier_key, "problem": r.problem,
                   "problem_seq": r.problem_seq}})
        }
        Call::QueryAudit {
            person,
            action,
            page_size,
            page_token,
        } => {
            let r = OversightServiceClient::new(channel)
                .query_audit(authorized(
                    token,
                    proto::QueryAuditRequest {
                        person: person.unwrap_or_default(),
                        action: action.unwrap_or_default(),
                        page_size,
                        page_token,
                        ..proto::QueryAuditRequest::default()
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            let entries = r
                .entries_json
                .iter()
                .map(|e| serde_json::from_str(e).map_err(|e| ClientError::Answer(e.to_string())))
                .collect::<Result<Vec<Value>, _>>()?;
            json!({"entries": entries, "next_page_token": r.next_page_token})
        }
        Call::ProveInclusion { seq } => {
            let r = OversightServiceClient::new(channel)
                .prove_inclusion(authorized(token, proto::ProveInclusionRequest { seq })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"proof": {"seq": seq, "tree_size": r.tree_size, "leaf_hash": r.leaf_hash,
                   "proof": r.proof, "root": r.root, "checkpoint": r.checkpoint,
                   "entry": r.entry_json}})
        }
        Call::ExportAudit { out } => {
            use std::io::Write as _;
            let io = |e: std::io::Error| ClientError::Answer(format!("{}: {e}", out.display()));
            let mut stream = OversightServiceClient::new(channel)
                .export_audit(authorized(token, proto::ExportAuditRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            let mut file = std::io::BufWriter::new(std::fs::File::create(&out).map_err(io)?);
            let mut lines = 0u64;
            while let Some(m) = stream.message().await.map_err(status)? {
                for line in m.lines {
                    writeln!(file, "{line}").map_err(io)?;
                    lines += 1;
                }
            }
            file.flush().map_err(io)?;
            // The header is one of the lines.
            json!({"export": {"out": out.display().to_string(), "entries": lines.saturating_sub(1)}})
        }
        Call::ListObjections => {
            let r = OversightServiceClient::new(channel)
                .list_objections(authorized(token, proto::ListObjectionsRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"objections": r.objections.into_iter().map(objection).collect::<Vec<_>>()})
        }
        Call::ListModels => {
            let r = OversightServiceClient::new(channel)
                .list_models(authorized(token, proto::ListModelsRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"models": r.models.into_iter().map(model).collect::<Vec<_>>()})
        }
        Call::ModelCard { id } => {
            let r = OversightServiceClient::new(channel)
                .get_model_card(authorized(token, proto::GetModelCardRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            let artifact: Value = serde_json::from_str(&r.artifact_json)
                .map_err(|e| ClientError::Answer(format!("artifact_json: {e}")))?;
            json!({"model": r.model.map(model), "card": r.card_markdown, "artifact": artifact})
        }
        Call::ApproveModel { id } => {
            let r = OversightServiceClient::new(channel)
                .approve_model(authorized(token, proto::ApproveModelRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"model": r.model.map(model)})
        }
        Call::ActivateModel { id } => {
            let r = OversightServiceClient::new(channel)
                .activate_model(authorized(token, proto::ActivateModelRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"model": r.model.map(model)})
        }
        Call::RetireModel { id } => {
            let r = OversightServiceClient::new(channel)
                .retire_model(authorized(token, proto::RetireModelRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"model": r.model.map(model)})
        }
        Call::RollbackModel => {
            let r = OversightServiceClient::new(channel)
                .rollback_model(authorized(token, proto::RollbackModelRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"model": r.model.map(model), "retired": r.retired})
        }
        Call::Statistics => {
            let r = OversightServiceClient::new(channel)
                .get_statistics(authorized(token, proto::GetStatisticsRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            let report: Value = serde_json::from_str(&r.report_json)
                .map_err(|e| ClientError::Answer(format!("report_json: {e}")))?;
            json!({"statistics": report})
        }
        Call::RegisterPermit { toml } => {
            let r = OversightServiceClient::new(channel)
                .register_permit(authorized(
                    token,
                    proto::RegisterPermitRequest { permit_toml: toml },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"permits": r.permit.into_iter().map(permit).collect::<Vec<_>>()})
        }
        Call::AmendPermit { toml } => {
            let r = OversightServiceClient::new(channel)
                .amend_permit(authorized(
                    token,
                    proto::AmendPermitRequest { permit_toml: toml },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"permits": r.permit.into_iter().map(permit).collect::<Vec<_>>()})
        }
        Call::RevokePermit { id, reason } => {
            let r = OversightServiceClient::new(channel)
                .revoke_permit(authorized(
                    token,
                    proto::RevokePermitRequest { id, reason },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"permits": r.permit.into_iter().map(permit).collect::<Vec<_>>()})
        }
        Call::ListPermits => {
            let r = OversightServiceClient::new(channel)
                .list_permits(authorized(token, proto::ListPermitsRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"permits": r.permits.into_iter().map(permit).collect::<Vec<_>>()})
        }
        Call::ResearchRun {
            permit,
            kind,
            as_of,
            features,
        } => {
            let kind = match kind.as_str() {
                "evaluate" => proto::RunKind::Evaluate,
                "train" => proto::RunKind::Train,
                other => {
                    return Err(ClientError::Status {
                        code: "InvalidArgument".into(),
                        message: format!("kind `{other}`: evaluate or train"),
                    })
                }
            };
            let mut r = ResearchServiceClient::new(channel);
            let started = r
                .start_run(authorized(
                    token,
                    proto::StartRunRequest {
                        permit_id: permit,
                        kind: kind as i32,
                        as_of,
                        features,
                        ..Default::default()
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            let mut stream = r
                .watch_run(authorized(
                    token,
                    proto::WatchRunRequest {
                        run_id: started.run_id.clone(),
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            let mut last = json!({});
            while let Some(p) = stream.message().await.map_err(status)? {
                last = json!({
                    "stage": p.stage, "percent": p.percent,
                    "state": lower(p.state().as_str_name(), "RUN_STATE_"),
                    "reason": p.reason,
                });
                on_event(&last);
            }
            json!({"run_id": started.run_id, "state": last["state"], "reason": last["reason"]})
        }
        Call::ResearchResults { id } => {
            let r = ResearchServiceClient::new(channel)
                .get_results(authorized(token, proto::GetResultsRequest { run_id: id })?)
                .await
                .map_err(status)?
                .into_inner();
            let results: Value = if r.results_json.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&r.results_json)
                    .map_err(|e| ClientError::Answer(format!("results_json: {e}")))?
            };
            json!({"run": {
                "id": r.run_id, "permit_id": r.permit_id, "permit_version": r.permit_version,
                "kind": lower(r.kind().as_str_name(), "RUN_KIND_"),
                "state": lower(r.state().as_str_name(), "RUN_STATE_"),
                "reason": r.reason, "started_at": r.started_at, "finished_at": r.finished_at,
                "audit_seq": r.audit_seq,
            }, "results": results})
        }
        Call::GetPermit { id } => {
            let r = OversightServiceClient::new(channel)
                .get_permit(authorized(token, proto::GetPermitRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            json!({"permits": r.versions.into_iter().map(permit).collect::<Vec<_>>()})
        }
        Call::SubjectAccess {
            person,
            reference,
            out,
        } => {
            let r = OversightServiceClient::new(channel)
                .subject_access_report(authorized(
                    token,
                    proto::SubjectAccessReportRequest {
                        national_id: person,
                        reference,
                    },
                )?)
                .await
                .map_err(status)?
                .into_inner();
            std::fs::write(&out, &r.report_json)
                .map_err(|e| ClientError::Answer(format!("writing {}: {e}", out.display())))?;
            json!({"subject_access": {
                "pseudonym": r.pseudonym, "held": r.held, "records": r.records.len(),
                "snapshots": r.snapshots.len(), "suggestions": r.suggestions.len(),
                "accesses": r.accesses.len(), "objection": r.objection.is_some(),
                "out": out.display().to_string(),
            }})
        }
    })
}

fn permit(p: proto::PermitRecord) -> Value {
    json!({
        "id": p.id, "version": p.version, "state": p.state,
        "revoked_reason": (!p.revoked_reason.is_empty()).then_some(p.revoked_reason),
        "recorded_at": time(p.recorded_at), "recorded_by": p.recorded_by,
        "issuer": p.issuer, "holder": p.holder, "purpose": p.purpose,
        "researchers": p.researchers, "valid_from": p.valid_from, "valid_to": p.valid_to,
        "terms": serde_json::from_str::<Value>(&p.terms_json).unwrap_or(Value::Null),
    })
}

fn model(m: proto::Model) -> Value {
    json!({
        "id": m.id, "kind": m.kind, "state": m.state, "gate_passed": m.gate_passed,
        "created_at": time(m.created_at), "created_by": m.created_by,
        "created_auth": m.created_auth,
        "replaced": (!m.replaced.is_empty()).then_some(m.replaced),
    })
}

fn objection(o: proto::Objection) -> Value {
    json!({
        "pseudonym": o.pseudonym, "reference": o.reference,
        "registered_at": time(o.registered_at), "registered_by": o.registered_by,
        "withdrawn_at": o.withdrawn_at.map(|t| time(Some(t))),
        "withdrawn_by": o.withdrawn_by, "withdrawn_reference": o.withdrawn_reference,
    })
}

fn scoring(s: proto::ScoringState) -> Value {
    json!({"stopped": s.stopped, "reason": s.reason, "since": time(s.since), "switched_by": s.switched_by})
}
