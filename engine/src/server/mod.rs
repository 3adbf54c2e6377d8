//! The gRPC server: the only module that knows proto and tonic types. It converts at
//! the edge: requests become the engine's own values, the engine's errors become
//! `tonic::Status` here and nowhere else.
//!
//! Served: `tidig.v1.CaseworkerService` (`caseworker`), `tidig.v1.OversightService`
//! (`oversight`), `tidig.v1.ResearchService` (`research`), `grpc.health.v1` health and
//! server reflection (v1 and v1alpha), so stock gRPC tools can see and call the service.

use std::net::SocketAddr;
use std::sync::Arc;

pub mod auth;
pub mod caseworker;
pub mod client;
pub mod load;
pub mod oversight;
pub mod research;

pub use auth::{AuthSetupError, Authenticator};

use tokio::net::TcpListener;

/// The generated `tidig.v1` types, servers and clients, and the encoded contract.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("tidig.v1");

    /// The encoded `FileDescriptorSet` of the contract, with its comments.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tidig_descriptor.bin"));

    /// The caseworker service's full name, as health checks and reflection know it.
    pub const CASEWORKER_SERVICE: &str = "tidig.v1.CaseworkerService";

    /// The oversight service's full name.
    pub const OVERSIGHT_SERVICE: &str = "tidig.v1.OversightService";

    /// The research service's full name.
    pub const RESEARCH_SERVICE: &str = "tidig.v1.ResearchService";

    /// Every tidig service, as health checks know them.
    pub const SERVICES: [&str; 3] = [CASEWORKER_SERVICE, OVERSIGHT_SERVICE, RESEARCH_SERVICE];
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the contract's descriptor set is not valid: {0}")]
    Reflection(String),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds `addr` (port 0 picks a free one); returns the listener and its real address.
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listen = |source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// Serves the caseworker, oversight and research services, health and reflection on
/// `listener` until `shutdown` completes. Then health turns NOT_SERVING, open watches
/// end, calls in flight finish (their audit entries durable) and research runs under way
/// finish and are recorded before this returns.
pub async fn serve(
    app: Arc<crate::app::App>,
    auth: Authenticator,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for service in proto::SERVICES {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let tls = auth.tls().cloned();
    let (stop_watches, watches_stopped) = tokio::sync::watch::channel(false);
    let oversight = proto::oversight_service_server::OversightServiceServer::new(
        oversight::OversightApi::new(app.clone(), auth.clone()),
    );
    let research_api = research::ResearchApi::new(app.clone(), auth.clone());
    let research = proto::research_service_server::ResearchServiceServer::new(research_api.clone());
    let caseworker = proto::caseworker_service_server::CaseworkerServiceServer::new(
        caseworker::CaseworkerApi::new(app, auth, watches_stopped),
    );
    let shutdown = async move {
        shutdown.await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        for service in proto::SERVICES {
            health
                .set_service_status(service, tonic_health::ServingStatus::NotServing)
                .await;
        }
        let _ = stop_watches.send(true);
    };
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .add_service(caseworker)
        .add_service(oversight)
        .add_service(research)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // Replies go out at once: with Nagle's algorithm on, a small response waits for
        // the client's delayed ACK (40 ms on Linux).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    // Research runs started before the shutdown finish and are recorded.
    research_api.drain().await;
    Ok(())
}
