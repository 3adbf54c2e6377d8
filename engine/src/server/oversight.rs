//! `tidig.v1.OversightService` over the use cases in `pipeline::oversight`, with the
//! caseworker service's authentication, error mapping and audit of refusals.

use std::sync::Arc;

use tidig_governance::access::Operation;
use tonic::{Request, Response, Status};

use super::auth::Authenticator;
use super::caseworker::{caller, scoring_state, status, timestamp};
use super::proto;
use crate::app::App;
use crate::pipeline::oversight;

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

#[tonic::async_trait]
impl proto::oversight_service_server::OversightService for OversightApi {
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
            objections: rows
                .into_iter()
                .map(|o| proto::Objection {
                    pseudonym: o.pseudonym,
                    reference: o.reference,
                    registered_at: timestamp(&o.registered_at),
                    registered_by: o.registered_by,
                    withdrawn_at: o.withdrawn_at.as_deref().and_then(timestamp),
                    withdrawn_by: o.withdrawn_by.unwrap_or_default(),
                    withdrawn_reference: o.withdrawn_reference.unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
