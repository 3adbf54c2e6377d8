//! `tidig.v1.CaseworkerService` over the use cases in `pipeline::casework`: each method
//! authenticates, converts the request, calls the use case and converts the answer. The
//! engine's errors become `tonic::Status` in [`status`] and nowhere else.

use std::pin::Pin;
use std::sync::Arc;

use prost_types::Timestamp;
use tidig_governance::access::Operation;
use tidig_governance::audit::{Actor, Outcome, Record};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::Authenticator;
use super::proto;
use crate::app::App;
use crate::domain::{Band, DecisionOutcome, SuggestionStatus};
use crate::error::EngineError;
use crate::pipeline::casework::{self, DecisionRequest, SuggestionView};
use crate::principal::Principal;
use crate::store::{ScoringSwitch, SuggestionSummaryRow};

/// The service's state: the application core, who may call, and the shutdown signal
/// that ends open watches.
#[derive(Clone)]
pub struct CaseworkerApi {
    app: Arc<App>,
    auth: Authenticator,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl CaseworkerApi {
    pub fn new(
        app: Arc<App>,
        auth: Authenticator,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> CaseworkerApi {
        CaseworkerApi {
            app,
            auth,
            shutdown,
        }
    }

    async fn caller<T>(&self, request: &Request<T>, op: Operation) -> Result<Principal, Status> {
        caller(&self.app, &self.auth, request, op).await
    }
}

/// The caller, or UNAUTHENTICATED, recorded in the audit trail like any refusal.
pub(super) async fn caller<T>(
    app: &App,
    auth: &Authenticator,
    request: &Request<T>,
    op: Operation,
) -> Result<Principal, Status> {
    let now = app.clock().now().timestamp();
    let certs = request.peer_certs();
    match auth.authenticate(request.metadata(), certs.as_deref().map(Vec::as_slice), now) {
        Ok(p) => Ok(p),
        Err(reason) => {
            let record = Record::new(
                app.clock().stamp(),
                Actor {
                    id: "anonymous".into(),
                    role: "none".into(),
                    unit: None,
                    auth: "none".into(),
                },
                "unknown",
                &crate::access::action(op),
            )
            .with_outcome(Outcome::Failed {
                error: "unauthenticated".into(),
                reason: reason.clone(),
            });
            app.audit().append(record).await.map_err(status)?;
            Err(Status::unauthenticated(reason))
        }
    }
}

/// The one mapping from the engine's errors to gRPC status codes.
pub fn status(e: EngineError) -> Status {
    match &e {
        EngineError::NotFound { .. } => Status::not_found(e.to_string()),
        EngineError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        EngineError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
        EngineError::PermissionDenied { .. } => Status::permission_denied(e.to_string()),
        EngineError::Conflict { .. } => Status::aborted(e.to_string()),
        EngineError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        EngineError::Unavailable(store) if store.is_transient() => {
            tracing::error!("store unavailable: {e}");
            Status::unavailable("the store is unavailable; try again")
        }
        // A statement the database cannot run, or data this version cannot read: a
        // defect, not worth retrying.
        EngineError::Unavailable(_) => {
            tracing::error!("store error: {e}");
            Status::internal("internal error (see the server log)")
        }
        EngineError::File { .. } | EngineError::Internal(_) => {
            tracing::error!("internal error: {e}");
            Status::internal("internal error (see the server log)")
        }
    }
}

/// A stored RFC 3339 stamp or a `YYYY-MM-DD` date (midnight UTC) as a protobuf time.
pub(super) fn timestamp(text: &str) -> Option<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })?;
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

/// The stop switch as the contract shows it.
pub(super) fn scoring_state(s: &ScoringSwitch) -> proto::ScoringState {
    proto::ScoringState {
        stopped: s.stopped,
        reason: s.reason.clone(),
        since: timestamp(&s.at),
        switched_by: s.by.clone(),
    }
}

fn band(b: Band) -> proto::Band {
    match b {
        Band::Elevated => proto::Band::Elevated,
        Band::High => proto::Band::High,
    }
}

fn summary(r: SuggestionSummaryRow) -> proto::SuggestionSummary {
    proto::SuggestionSummary {
        created_at: timestamp(&r.created_at),
        expires_at: timestamp(&r.expires_at),
        id: r.id,
        pseudonym: r.pseudonym,
        unit: r.unit,
        score: r.score,
        band: band(r.band) as i32,
    }
}

fn registry(source: &str) -> String {
    match source {
        "social" => "social_services".into(),
        other => other.into(),
    }
}

fn suggestion(v: SuggestionView) -> proto::Suggestion {
    let status = match v.status {
        SuggestionStatus::Open => proto::SuggestionStatus::Open,
        SuggestionStatus::Superseded => proto::SuggestionStatus::Superseded,
        SuggestionStatus::Decided => proto::SuggestionStatus::Decided,
        SuggestionStatus::Expired => proto::SuggestionStatus::Expired,
        SuggestionStatus::Withdrawn => proto::SuggestionStatus::Withdrawn,
    };
    proto::Suggestion {
        summary: Some(summary(v.summary)),
        status: status as i32,
        factors: v
            .factors
            .into_iter()
            .map(|f| proto::Factor {
                registry: registry(&f.factor.source),
                relation: if f.factor.redacted {
                    String::new()
                } else {
                    f.relation
                },
                feature: f.factor.feature.unwrap_or_default(),
                contribution: f.factor.contribution,
                redacted: f.factor.redacted,
                redacting_rule: f.factor.rule.unwrap_or_default(),
                text: f.factor.text,
            })
            .collect(),
        rule_trace: v
            .rule_trace
            .into_iter()
            .map(|t| proto::RuleTraceEntry {
                stage: t.stage.name().into(),
                action: t.action,
                subject: t.subject,
                allowed: t.allowed,
                rules: t.rules,
            })
            .collect(),
        interventions: v
            .interventions
            .into_iter()
            .map(|i| proto::Intervention {
                id: i.id,
                title: i.title,
                because_of: i.because_of.unwrap_or_default(),
            })
            .collect(),
        versions: Some(proto::Versions {
            model: v.model_id,
            rules: v.rules_version,
            feature_set: v.feature_set_version,
        }),
    }
}

fn outcome(value: i32) -> Option<DecisionOutcome> {
    match proto::DecisionOutcome::try_from(value).ok()? {
        proto::DecisionOutcome::Unspecified => None,
        proto::DecisionOutcome::Accepted => Some(DecisionOutcome::Accepted),
        proto::DecisionOutcome::Declined => Some(DecisionOutcome::Declined),
        proto::DecisionOutcome::AlreadyKnown => Some(DecisionOutcome::AlreadyKnown),
        proto::DecisionOutcome::NotRelevant => Some(DecisionOutcome::NotRelevant),
    }
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<proto::WatchSuggestionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl proto::caseworker_service_server::CaseworkerService for CaseworkerApi {
    async fn list_suggestions(
        &self,
        request: Request<proto::ListSuggestionsRequest>,
    ) -> Result<Response<proto::ListSuggestionsResponse>, Status> {
        let by = self.caller(&request, Operation::ListSuggestions).await?;
        let r = request.into_inner();
        let page = casework::list_suggestions(&self.app, &by, r.page_size, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListSuggestionsResponse {
            suggestions: page.suggestions.into_iter().map(summary).collect(),
            next_page_token: page.next_page_token,
            scoring_stopped: page.scoring_stop.is_some(),
            scoring: page.scoring_stop.as_ref().map(scoring_state),
        }))
    }

    async fn get_suggestion(
        &self,
        request: Request<proto::GetSuggestionRequest>,
    ) -> Result<Response<proto::GetSuggestionResponse>, Status> {
        let by = self.caller(&request, Operation::GetSuggestion).await?;
        let r = request.into_inner();
        let shown = casework::get_suggestion(&self.app, &by, &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::GetSuggestionResponse {
            scoring: shown.scoring_stop.as_ref().map(scoring_state),
            suggestion: Some(suggestion(shown.view)),
        }))
    }

    async fn record_decision(
        &self,
        request: Request<proto::RecordDecisionRequest>,
    ) -> Result<Response<proto::RecordDecisionResponse>, Status> {
        let by = self.caller(&request, Operation::RecordDecision).await?;
        let r = request.into_inner();
        let d = casework::record_decision(
            &self.app,
            &by,
            &DecisionRequest {
                suggestion_id: r.suggestion_id,
                outcome: outcome(r.outcome),
                reason_code: r.reason_code,
                note: r.note,
                idempotency_key: r.idempotency_key,
            },
        )
        .await
        .map_err(status)?;
        Ok(Response::new(proto::RecordDecisionResponse {
            decision_id: d.id,
            decided_at: timestamp(&d.at),
            audit_seq: d.audit_seq,
        }))
    }

    async fn reidentify(
        &self,
        request: Request<proto::ReidentifyRequest>,
    ) -> Result<Response<proto::ReidentifyResponse>, Status> {
        let by = self.caller(&request, Operation::Reidentify).await?;
        let r = request.into_inner();
        let found = casework::reidentify(&self.app, &by, &r.suggestion_id, &r.purpose)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ReidentifyResponse {
            audit_seq: found.audit_seq,
            national_id: found.national_id,
        }))
    }

    type WatchSuggestionsStream = WatchStream;

    async fn watch_suggestions(
        &self,
        request: Request<proto::WatchSuggestionsRequest>,
    ) -> Result<Response<Self::WatchSuggestionsStream>, Status> {
        let by = self.caller(&request, Operation::WatchSuggestions).await?;
        let mut watch = casework::watch_suggestions(&self.app, &by)
            .await
            .map_err(status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let app = self.app.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = casework::next_suggestions(&app, &mut watch) => b,
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                match batch {
                    Ok(rows) => {
                        for r in rows {
                            let event = proto::WatchSuggestionsResponse {
                                suggestion: Some(summary(r)),
                            };
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn export_risk_assessment(
        &self,
        request: Request<proto::ExportRiskAssessmentRequest>,
    ) -> Result<Response<proto::ExportRiskAssessmentResponse>, Status> {
        let by = self
            .caller(&request, Operation::ExportRiskAssessment)
            .await?;
        let r = request.into_inner();
        let resource = casework::export_risk_assessment(&self.app, &by, &r.suggestion_id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ExportRiskAssessmentResponse {
            resource_json: resource.to_string(),
        }))
    }
}
