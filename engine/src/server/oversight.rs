//! `tidig.v1.OversightService` over the use cases in `pipeline::oversight`, with the
//! caseworker service's authentication, error mapping and audit of refusals.

use std::sync::Arc;

use tidig_governance::access::Operation;
use tonic::{Request, Response, Status};

use super::auth::Authenticator;
use super::caseworker::{caller, scoring_state, status, timestamp};
use super::proto;
use crate::app::App;
use crate::pipeline::{oversight, permits, registry};

/// The service's state: the application core and who may call.
#[derive(Clone)]
pub struct OversightApi {
    app: Arc<App>,
    auth: Authenticator,
}

impl OversightApi {
    pub fn new(app: Arc<App>, auth: Authenticator) -> OversightApi {
        OversightApi { app, auth }
    }
}

type ExportStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<proto::ExportAuditResponse, Status>> + Send>,
>;

/// Entries per streamed message of an export.
const EXPORT_LINES_PER_MESSAGE: u64 = 4096;

#[tonic::async_trait]
impl proto::oversight_service_server::OversightService for OversightApi {
    type ExportAuditStream = ExportStream;

    async fn export_audit(
        &self,
        request: Request<proto::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ExportAudit).await?;
        let (header, size) = oversight::export_audit(&self.app, &by)
            .await
            .map_err(status)?;
        // A few messages ahead at most: a slow reader holds the reading back, not memory.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let app = self.app.clone();
        tokio::spawn(async move {
            if tx
                .send(Ok(proto::ExportAuditResponse {
                    lines: vec![header],
                }))
                .await
                .is_err()
            {
                return;
            }
            let mut from = 0;
            while from < size {
                let to = (from + EXPORT_LINES_PER_MESSAGE).min(size);
                let message = crate::pipeline::audit::export_lines(&app, from, to)
                    .await
                    .map(|lines| proto::ExportAuditResponse { lines })
                    .map_err(status);
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
                from = to;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn stop_scoring(
        &self,
        request: Request<proto::StopScoringRequest>,
    ) -> Result<Response<proto::StopScoringResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::StopScoring).await?;
        let c = oversight::stop_scoring(&self.app, &by, &request.get_ref().reason)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::StopScoringResponse {
            state: Some(scoring_state(&c.state)),
            changed: c.changed,
            audit_seq: c.audit_seq,
        }))
    }

    async fn resume_scoring(
        &self,
        request: Request<proto::ResumeScoringRequest>,
    ) -> Result<Response<proto::ResumeScoringResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ResumeScoring).await?;
        let c = oversight::resume_scoring(&self.app, &by, &request.get_ref().reason)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ResumeScoringResponse {
            state: Some(scoring_state(&c.state)),
            changed: c.changed,
            audit_seq: c.audit_seq,
        }))
    }

    async fn register_objection(
        &self,
        request: Request<proto::RegisterObjectionRequest>,
    ) -> Result<Response<proto::RegisterObjectionResponse>, Status> {
        let by = caller(
            &self.app,
            &self.auth,
            &request,
            Operation::RegisterObjection,
        )
        .await?;
        let r = request.get_ref();
        let c = oversight::register_objection(&self.app, &by, &r.national_id, &r.reference)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RegisterObjectionResponse {
            pseudonym: c.pseudonym,
            changed: c.changed,
            withdrawn_suggestions: c.withdrawn_suggestions,
            audit_seq: c.audit_seq,
        }))
    }

    async fn withdraw_objection(
        &self,
        request: Request<proto::WithdrawObjectionRequest>,
    ) -> Result<Response<proto::WithdrawObjectionResponse>, Status> {
        let by = caller(
            &self.app,
            &self.auth,
            &request,
            Operation::WithdrawObjection,
        )
        .await?;
        let r = request.get_ref();
        let c = oversight::withdraw_objection(&self.app, &by, &r.national_id, &r.reference)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::WithdrawObjectionResponse {
            pseudonym: c.pseudonym,
            changed: c.changed,
            audit_seq: c.audit_seq,
        }))
    }

    async fn list_objections(
        &self,
        request: Request<proto::ListObjectionsRequest>,
    ) -> Result<Response<proto::ListObjectionsResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ListObjections).await?;
        let rows = oversight::list_objections(&self.app, &by)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListObjectionsResponse {
            objections: rows.into_iter().map(objection).collect(),
        }))
    }

    async fn query_audit(
        &self,
        request: Request<proto::QueryAuditRequest>,
    ) -> Result<Response<proto::QueryAuditResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::QueryAudit).await?;
        let r = request.into_inner();
        let text = |s: String| (!s.is_empty()).then_some(s);
        let q = crate::pipeline::audit::Query {
            from: r.from.and_then(rfc3339),
            to: r.to.and_then(rfc3339),
            principal: text(r.principal),
            action: text(r.action),
            outcome: text(r.outcome),
            person: text(r.person),
            page_size: if r.page_size == 0 { 100 } else { r.page_size },
            page_token: text(r.page_token),
        };
        let page = oversight::query_audit(&self.app, &by, &q)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::QueryAuditResponse {
            entries_json: page.entries,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn verify_audit(
        &self,
        request: Request<proto::VerifyAuditRequest>,
    ) -> Result<Response<proto::VerifyAuditResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::VerifyAudit).await?;
        let (report, verifier) = oversight::verify_audit(&self.app, &by)
            .await
            .map_err(status)?;
        let latest = report.latest_checkpoint.as_ref();
        Ok(Response::new(proto::VerifyAuditResponse {
            ok: report.ok,
            entries: report.entries,
            root: report.root.clone(),
            checkpoints: u32::try_from(report.checkpoints).unwrap_or(u32::MAX),
            latest_checkpoint: latest.map(|c| c.note.clone()).unwrap_or_default(),
            latest_checkpoint_size: latest.map_or(0, |c| c.size),
            verifier_key: verifier.unwrap_or_default(),
            problem: report
                .problem
                .as_ref()
                .map(|p| {
                    let kind = serde_json::to_value(p.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("{kind}: {}", p.detail)
                })
                .unwrap_or_default(),
            problem_seq: report.problem.as_ref().and_then(|p| p.seq),
        }))
    }

    async fn prove_inclusion(
        &self,
        request: Request<proto::ProveInclusionRequest>,
    ) -> Result<Response<proto::ProveInclusionResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ProveInclusion).await?;
        let p = oversight::prove_inclusion(&self.app, &by, request.get_ref().seq)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ProveInclusionResponse {
            tree_size: p.tree_size,
            leaf_hash: p.leaf_hash,
            proof: p.proof,
            root: p.root,
            checkpoint: p.checkpoint,
            entry_json: p.entry_text,
        }))
    }

    async fn list_models(
        &self,
        request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ListModels).await?;
        let rows = oversight::list_models(&self.app, &by)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListModelsResponse {
            models: rows.into_iter().map(model).collect(),
        }))
    }

    async fn get_model_card(
        &self,
        request: Request<proto::GetModelCardRequest>,
    ) -> Result<Response<proto::GetModelCardResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::GetModelCard).await?;
        let set = feature_set()?;
        let (m, card) = oversight::model_card(&self.app, &by, &request.get_ref().id, &set)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::GetModelCardResponse {
            artifact_json: serde_json::to_string(&m.artifact).map_err(|e| status(e.into()))?,
            model: Some(model(m.row)),
            card_markdown: card,
        }))
    }

    async fn approve_model(
        &self,
        request: Request<proto::ApproveModelRequest>,
    ) -> Result<Response<proto::ApproveModelResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ApproveModel).await?;
        let row = registry::approve(&self.app, &by, &request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ApproveModelResponse {
            model: Some(model(row)),
        }))
    }

    async fn activate_model(
        &self,
        request: Request<proto::ActivateModelRequest>,
    ) -> Result<Response<proto::ActivateModelResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ActivateModel).await?;
        let set = feature_set()?;
        let row = registry::activate(&self.app, &by, &request.get_ref().id, &set)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ActivateModelResponse {
            model: Some(model(row)),
        }))
    }

    async fn retire_model(
        &self,
        request: Request<proto::RetireModelRequest>,
    ) -> Result<Response<proto::RetireModelResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::RetireModel).await?;
        let row = registry::retire(&self.app, &by, &request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RetireModelResponse {
            model: Some(model(row)),
        }))
    }

    async fn rollback_model(
        &self,
        request: Request<proto::RollbackModelRequest>,
    ) -> Result<Response<proto::RollbackModelResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::RollbackModel).await?;
        let set = feature_set()?;
        let done = registry::rollback(&self.app, &by, &set)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RollbackModelResponse {
            model: Some(model(done.activated)),
            retired: done.retired,
        }))
    }

    async fn get_statistics(
        &self,
        request: Request<proto::GetStatisticsRequest>,
    ) -> Result<Response<proto::GetStatisticsResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::GetStatistics).await?;
        let st = crate::pipeline::stats::statistics(&self.app, &by)
            .await
            .map_err(status)?;
        Ok(Response::new(statistics(st).map_err(|e| status(e.into()))?))
    }

    async fn subject_access_report(
        &self,
        request: Request<proto::SubjectAccessReportRequest>,
    ) -> Result<Response<proto::SubjectAccessReportResponse>, Status> {
        let by = caller(
            &self.app,
            &self.auth,
            &request,
            Operation::SubjectAccessReport,
        )
        .await?;
        let r = request.get_ref();
        let report = crate::pipeline::subject::subject_access_report(
            &self.app,
            &by,
            &r.national_id,
            &r.reference,
        )
        .await
        .map_err(status)?;
        Ok(Response::new(
            subject_report(report).map_err(|e| status(e.into()))?,
        ))
    }

    async fn register_permit(
        &self,
        request: Request<proto::RegisterPermitRequest>,
    ) -> Result<Response<proto::RegisterPermitResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::RegisterPermit).await?;
        let v = permits::register(&self.app, &by, &request.get_ref().permit_toml)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RegisterPermitResponse {
            permit: Some(permit(v).map_err(|e| status(e.into()))?),
        }))
    }

    async fn amend_permit(
        &self,
        request: Request<proto::AmendPermitRequest>,
    ) -> Result<Response<proto::AmendPermitResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::AmendPermit).await?;
        let v = permits::amend(&self.app, &by, &request.get_ref().permit_toml)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::AmendPermitResponse {
            permit: Some(permit(v).map_err(|e| status(e.into()))?),
        }))
    }

    async fn revoke_permit(
        &self,
        request: Request<proto::RevokePermitRequest>,
    ) -> Result<Response<proto::RevokePermitResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::RevokePermit).await?;
        let r = request.get_ref();
        let v = permits::revoke(&self.app, &by, &r.id, &r.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RevokePermitResponse {
            permit: Some(permit(v).map_err(|e| status(e.into()))?),
        }))
    }

    async fn list_permits(
        &self,
        request: Request<proto::ListPermitsRequest>,
    ) -> Result<Response<proto::ListPermitsResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::ListPermits).await?;
        let all = permits::list(&self.app, &by).await.map_err(status)?;
        Ok(Response::new(proto::ListPermitsResponse {
            permits: all
                .into_iter()
                .map(permit)
                .collect::<Result<_, _>>()
                .map_err(|e| status(e.into()))?,
        }))
    }

    async fn get_permit(
        &self,
        request: Request<proto::GetPermitRequest>,
    ) -> Result<Response<proto::GetPermitResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::GetPermit).await?;
        let all = permits::show(&self.app, &by, &request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::GetPermitResponse {
            versions: all
                .into_iter()
                .map(permit)
                .collect::<Result<_, _>>()
                .map_err(|e| status(e.into()))?,
        }))
    }
}

fn permit(v: permits::PermitView) -> Result<proto::PermitRecord, serde_json::Error> {
    let p = &v.permit;
    Ok(proto::PermitRecord {
        terms_json: serde_json::to_string(p)?,
        id: p.id.clone(),
        version: v.version,
        state: v.state.clone(),
        revoked_reason: v.revoked_reason.clone().unwrap_or_default(),
        recorded_at: timestamp(&v.recorded_at),
        recorded_by: v.recorded_by.clone(),
        issuer: p.issuer.clone(),
        holder: p.holder.clone(),
        purpose: p.purpose.as_str().into(),
        researchers: p.researchers.clone(),
        valid_from: p.valid.from.clone(),
        valid_to: p.valid.to.clone(),
    })
}

fn subject_report(
    r: crate::pipeline::subject::SubjectAccessReport,
) -> Result<proto::SubjectAccessReportResponse, serde_json::Error> {
    let report_json = serde_json::to_string(&r)?;
    let json = |v: &serde_json::Value| serde_json::to_string(v);
    Ok(proto::SubjectAccessReportResponse {
        pseudonym: r.pseudonym,
        generated_at: timestamp(&r.generated_at),
        held: r.held,
        person: r.person.map(|p| proto::SubjectPerson {
            scheme: p.scheme,
            birth_date: p.birth_date.unwrap_or_default(),
            sex: p.sex.unwrap_or_default(),
            death_date: p.death_date.unwrap_or_default(),
        }),
        records: r
            .records
            .into_iter()
            .map(|h| proto::HeldRecord {
                registry: h.registry.into(),
                category: h.category,
                description: h.description,
                code_system: h.code_system.unwrap_or_default(),
                code: h.code.unwrap_or_default(),
                detail: h.detail.unwrap_or_default(),
                start: h.start.unwrap_or_default(),
                end: h.end.unwrap_or_default(),
                value: h.value,
                status: h.status.unwrap_or_default().into(),
                source_file: h.source_file.unwrap_or_default(),
                loaded_at: h.loaded_at.unwrap_or_default(),
            })
            .collect(),
        snapshots: r
            .snapshots
            .into_iter()
            .map(|s| proto::FeatureSnapshot {
                feature_set: s.feature_set,
                feature_set_name: s.feature_set_name.unwrap_or_default(),
                as_of: s.as_of,
                features: s
                    .features
                    .into_iter()
                    .map(|f| proto::FeatureValue {
                        id: f.id,
                        text: f.text,
                        value: f.value,
                    })
                    .collect(),
                label: s.label,
                label_complete: s.label_complete,
            })
            .collect(),
        suggestions: r
            .suggestions
            .into_iter()
            .map(|s| {
                Ok(proto::SubjectSuggestion {
                    created_at: timestamp(&s.created_at),
                    explanation_json: json(&s.explanation)?,
                    interventions_json: json(&s.interventions)?,
                    rule_trace_json: json(&s.rule_trace)?,
                    decision: s.decision.map(|d| proto::SubjectDecision {
                        decided_at: timestamp(&d.decided_at),
                        outcome: d.outcome,
                        reason_code: d.reason_code,
                        note: d.note,
                        decided_by: d.decided_by,
                    }),
                    id: s.id,
                    as_of: s.as_of,
                    unit: s.unit,
                    score: s.score,
                    band: s.band,
                    status: s.status,
                    expires_at: s.expires_at,
                    model_id: s.model_id,
                    rules_version: s.rules_version,
                    feature_set_version: s.feature_set_version,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?,
        accesses: r
            .accesses
            .into_iter()
            .map(|a| {
                Ok(proto::DataAccess {
                    at: timestamp(&a.at),
                    details_json: json(&a.details)?,
                    seq: a.seq,
                    principal: a.principal,
                    role: a.role,
                    purpose: a.purpose,
                    action: a.action,
                    outcome: a.outcome,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?,
        objection: r.objection.map(objection),
        logic: r.logic,
        not_kept: r.not_kept,
        report_json,
    })
}

/// An objection register row as the contract has it.
pub(super) fn objection(o: crate::store::ObjectionRow) -> proto::Objection {
    proto::Objection {
        pseudonym: o.pseudonym,
        reference: o.reference,
        registered_at: timestamp(&o.registered_at),
        registered_by: o.registered_by,
        withdrawn_at: o.withdrawn_at.as_deref().and_then(timestamp),
        withdrawn_by: o.withdrawn_by.unwrap_or_default(),
        withdrawn_reference: o.withdrawn_reference.unwrap_or_default(),
    }
}

fn statistics(
    st: crate::pipeline::stats::Statistics,
) -> Result<proto::GetStatisticsResponse, serde_json::Error> {
    use crate::pipeline::stats::RuleCount;
    let rules = |v: Vec<RuleCount>| {
        v.into_iter()
            .map(|r| proto::RuleCount {
                rule: r.rule,
                persons: r.persons,
            })
            .collect()
    };
    let report_json = serde_json::to_string(&st)?;
    let (fairness_model_id, fairness) = match st.fairness {
        None => (String::new(), Vec::new()),
        Some(f) => (
            f.model_id,
            f.tables
                .into_iter()
                .map(|t| proto::FairnessTable {
                    attribute: t.attribute,
                    groups: t
                        .groups
                        .into_iter()
                        .map(|g| proto::FairnessGroup {
                            group: g.group,
                            count: g.count,
                            suppressed: g.suppressed,
                            selection_rate: g.selection_rate,
                            tpr: g.tpr,
                            fpr: g.fpr,
                        })
                        .collect(),
                    demographic_parity_difference: t.demographic_parity_difference,
                    demographic_parity_ratio: t.demographic_parity_ratio,
                    equalized_odds_difference: t.equalized_odds_difference,
                    equalized_odds_ratio: t.equalized_odds_ratio,
                })
                .collect(),
        ),
    };
    Ok(proto::GetStatisticsResponse {
        min_cell: st.min_cell,
        today: st.today,
        suggestions_per_week: st
            .suggestions_per_week
            .into_iter()
            .map(|w| proto::WeekCount {
                unit: w.unit,
                week: w.week,
                suggestions: w.suggestions,
            })
            .collect(),
        decisions: st
            .decisions
            .into_iter()
            .map(|d| proto::DecisionCount {
                outcome: d.outcome,
                reason_code: d.reason_code,
                decisions: d.decisions,
            })
            .collect(),
        override_rates: st
            .override_rates
            .into_iter()
            .map(|o| proto::OverrideRate {
                unit: o.unit,
                band: o.band,
                decided: o.decided,
                overridden: o.overridden,
                rate: o.rate,
            })
            .collect(),
        time_to_decision: st
            .time_to_decision
            .into_iter()
            .map(|t| proto::TimeToDecision {
                unit: t.unit,
                decided: t.decided,
                median_hours: t.median_hours,
            })
            .collect(),
        expired_undecided: st
            .expired_undecided
            .into_iter()
            .map(|u| proto::UnitCount {
                unit: u.unit,
                count: u.count,
            })
            .collect(),
        runs: st
            .runs
            .into_iter()
            .map(|r| proto::RunStatistics {
                id: r.id,
                as_of: r.as_of,
                at: timestamp(&r.at),
                model_id: r.model_id,
                score_psi: r.score_psi,
                drift_warnings: r.drift_warnings,
                cohort: r.cohort,
                excluded: rules(r.excluded),
                suppressed: rules(r.suppressed),
                flag_rates: r
                    .flag_rates
                    .into_iter()
                    .map(|f| proto::FlagRate {
                        unit: f.unit,
                        children: f.children,
                        flagged: f.flagged,
                        per_1000: f.per_1000,
                    })
                    .collect(),
            })
            .collect(),
        fairness,
        fairness_model_id,
        report_json,
    })
}

/// The feature set the server's models are checked against (the built-in one).
fn feature_set() -> Result<tidig_models::features::FeatureSet, Status> {
    crate::pipeline::load_feature_set(None).map_err(status)
}

fn model(r: crate::store::ModelRow) -> proto::Model {
    proto::Model {
        created_at: timestamp(&r.created_at),
        id: r.id,
        kind: r.kind,
        state: r.state.as_str().to_string(),
        gate_passed: r.gate_passed,
        created_by: r.created_by,
        created_auth: r.created_auth,
        replaced: r.replaced.unwrap_or_default(),
    }
}

/// A protobuf time as RFC 3339 (what the query's time bounds take).
fn rfc3339(t: prost_types::Timestamp) -> Option<String> {
    let nanos = u32::try_from(t.nanos).ok()?;
    chrono::DateTime::from_timestamp(t.seconds, nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}
