//! `tidig.v1.ResearchService` over `pipeline::research`: a run is checked and started in
//! the call, then runs in the background while clients watch its steps; its results are
//! read from the store once recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tidig_governance::access::Operation;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::auth::Authenticator;
use super::caseworker::{caller, status};
use super::proto;
use crate::app::App;
use crate::pipeline::research::{self, Kind, RunRequest, Step};
use crate::pipeline::train::TrainOptions;

/// A run under way: who started it and its latest progress.
struct Running {
    owner: String,
    progress: watch::Receiver<proto::WatchRunResponse>,
}

/// The service's state: the application core, who may call, and the runs under way in
/// this process (and their tasks, which a shutdown waits for: a run started is a run
/// recorded).
#[derive(Clone)]
pub struct ResearchApi {
    app: Arc<App>,
    auth: Authenticator,
    runs: Arc<Mutex<HashMap<String, Running>>>,
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl ResearchApi {
    pub fn new(app: Arc<App>, auth: Authenticator) -> ResearchApi {
        ResearchApi {
            app,
            auth,
            runs: Arc::default(),
            tasks: Arc::default(),
        }
    }

    /// Waits for every run under way to finish and be recorded.
    pub async fn drain(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while tasks.join_next().await.is_some() {}
    }

    fn running(&self, id: &str) -> Option<(String, watch::Receiver<proto::WatchRunResponse>)> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.get(id).map(|r| (r.owner.clone(), r.progress.clone()))
    }
}

fn state(s: &str) -> proto::RunState {
    match s {
        "released" => proto::RunState::Released,
        "withheld" => proto::RunState::Withheld,
        "failed" => proto::RunState::Failed,
        _ => proto::RunState::Unspecified,
    }
}

fn kind(k: &str) -> proto::RunKind {
    match k {
        "evaluate" => proto::RunKind::Evaluate,
        "train" => proto::RunKind::Train,
        _ => proto::RunKind::Unspecified,
    }
}

fn ended(p: &proto::WatchRunResponse) -> bool {
    p.state != proto::RunState::Running as i32
}

type WatchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<proto::WatchRunResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl proto::research_service_server::ResearchService for ResearchApi {
    type WatchRunStream = WatchStream;

    async fn start_run(
        &self,
        request: Request<proto::StartRunRequest>,
    ) -> Result<Response<proto::StartRunResponse>, Status> {
        let by = caller(&self.app, &self.auth, &request, Operation::StartResearchRun).await?;
        let r = request.into_inner();
        let kind = match proto::RunKind::try_from(r.kind) {
            Ok(proto::RunKind::Evaluate) => Kind::Evaluate,
            Ok(proto::RunKind::Train) => Kind::Train,
            _ => {
                return Err(status(crate::EngineError::invalid(
                    "kind",
                    "RUN_KIND_EVALUATE or RUN_KIND_TRAIN",
                )))
            }
        };
        let as_of = crate::dates::parse("as_of", &r.as_of).map_err(status)?;
        let request = RunRequest {
            features: r.features,
            birth_years: match (r.birth_year_from, r.birth_year_to) {
                (0, 0) => None,
                (from, to) => Some([from, to]),
            },
            municipalities: r.municipalities,
            ..RunRequest::new(&r.permit_id, kind, as_of)
        };
        let set = crate::pipeline::load_feature_set(None).map_err(status)?;
        let prepared = research::start(&self.app, &by, &request, &set)
            .await
            .map_err(status)?;
        let id = prepared.id().to_string();
        let (tx, rx) = watch::channel(proto::WatchRunResponse {
            run_id: id.clone(),
            stage: "started".into(),
            percent: 0,
            state: proto::RunState::Running as i32,
            reason: String::new(),
        });
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.clone(),
            Running {
                owner: by.id().to_string(),
                progress: rx,
            },
        );
        let (app, runs, run_id) = (self.app.clone(), self.runs.clone(), id.clone());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Finished runs' tasks are reaped here, so the set holds only those under way.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let mut options = match TrainOptions::new(0.05, app.settings().gate.clone()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!("research run {run_id}: {e}");
                    return;
                }
            };
            options.challenger = None;
            let on_step = |s: &Step| {
                tx.send_modify(|p| {
                    p.stage = s.stage.clone();
                    p.percent = s.percent;
                });
            };
            let last = match prepared.run(&app, &set, &options, &on_step).await {
                Ok(run) => (state(&run.run.state), run.run.reason.unwrap_or_default()),
                Err(e) => (proto::RunState::Failed, e.to_string()),
            };
            tx.send_modify(|p| {
                p.stage = "finished".into();
                p.percent = 100;
                p.state = last.0 as i32;
                p.reason = last.1;
            });
            // Recorded: from now on the store answers for it.
            runs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&run_id);
        });
        Ok(Response::new(proto::StartRunResponse { run_id: id }))
    }

    async fn watch_run(
        &self,
        request: Request<proto::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let by = caller(
            &self.app,
            &self.auth,
            &request,
            Operation::GetResearchResults,
        )
        .await?;
        let id = request.get_ref().run_id.clone();
        let Some((owner, mut progress)) = self.running(&id) else {
            // Ended (or never ran here): its record says how.
            let run = research::results(&self.app, &by, &id)
                .await
                .map_err(status)?;
            let last = proto::WatchRunResponse {
                run_id: id,
                stage: "finished".into(),
                percent: 100,
                state: state(&run.run.state) as i32,
                reason: run.run.reason.unwrap_or_default(),
            };
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(last)))));
        };
        research::may_follow(&self.app, &by, &id, &owner)
            .await
            .map_err(status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let now = progress.borrow_and_update().clone();
                let last = ended(&now);
                if tx.send(Ok(now)).await.is_err() || last {
                    return;
                }
                if progress.changed().await.is_err() {
                    // The run's task ended: its final message, if not yet sent.
                    let now = progress.borrow().clone();
                    if ended(&now) {
                        let _ = tx.send(Ok(now)).await;
                    }
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_results(
        &self,
        request: Request<proto::GetResultsRequest>,
    ) -> Result<Response<proto::GetResultsResponse>, Status> {
        let by = caller(
            &self.app,
            &self.auth,
            &request,
            Operation::GetResearchResults,
        )
        .await?;
        let id = request.get_ref().run_id.clone();
        if let Some((owner, progress)) = self.running(&id) {
            if !ended(&progress.borrow()) {
                research::may_follow(&self.app, &by, &id, &owner)
                    .await
                    .map_err(status)?;
                return Ok(Response::new(proto::GetResultsResponse {
                    run_id: id,
                    state: proto::RunState::Running as i32,
                    ..Default::default()
                }));
            }
        }
        let run = research::results(&self.app, &by, &id)
            .await
            .map_err(status)?;
        let r = run.run;
        Ok(Response::new(proto::GetResultsResponse {
            run_id: r.id,
            permit_id: r.permit_id,
            permit_version: r.permit_version,
            kind: kind(&r.kind) as i32,
            state: state(&r.state) as i32,
            reason: r.reason.unwrap_or_default(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            audit_seq: u64::try_from(r.audit_seq).unwrap_or_default(),
            results_json: r.results.unwrap_or_default(),
        }))
    }
}
