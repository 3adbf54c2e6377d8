//! `tidig.v1.OversightService` over the use cases in `pipeline::oversight`, with the
//! caseworker service's authentication, error mapping and audit of refusals.

use std::sync::Arc;

use tidig_governance::access::Operation;
use tonic::{Request, Response, Status};

use super::auth::Authenticator;
use super::caseworker::{caller, scoring_state, status};
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
}
