//! Serving a gRPC service the way a mesh expects: `grpc.health.v1.Health`
//! (the service's own name and `""`), server reflection v1 and v1alpha, and a
//! graceful shutdown.
//!
//! On shutdown, health turns NOT_SERVING first, open streams are told to end
//! (the cancellation token), no new connections are accepted, and in-flight
//! calls get a bounded time to finish. It never waits without bound.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::mesh::{KnownMethods, MeshLayer, MeshSettings};

/// How a service is served.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The full gRPC name of the service, e.g. `trafego.cache.v1.CacheService`;
    /// health reports under it and under `""`.
    pub service_name: &'static str,
    /// The service's encoded `FileDescriptorSet`, served by reflection; its
    /// methods (and health's and reflection's) are the only `method` labels
    /// of the request metrics.
    pub descriptor_set: &'static [u8],
    /// How long in-flight calls may run on after a shutdown signal.
    pub grace: Duration,
    /// Authentication, TLS, timeout and load shedding.
    pub mesh: MeshSettings,
    /// The replica's role, with PostgreSQL replicas (`None`: one instance,
    /// which leads alone). Health then also reports `<service_name>.leader`:
    /// SERVING while this replica leads, NOT_SERVING while it follows; the
    /// service's own name and `""` stay SERVING on followers (readiness).
    pub role: Option<tokio::sync::watch::Receiver<crate::leader::Role>>,
}

/// The health name that tells whether a replica leads: `<service>.leader`.
pub fn leader_health_name(service: &str) -> String {
    format!("{service}.leader")
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The descriptor set could not be read for the known methods.
    #[error("descriptor set: {0}")]
    Descriptors(#[from] prost::DecodeError),
}

fn reflection_builder(descriptor_set: &'static [u8]) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The connections `listener` accepts, each with TCP_NODELAY set. Without it
/// a small response (most unary answers) can wait for the client's delayed ACK
/// behind Nagle's algorithm, which showed as tens of milliseconds of p99 under
/// concurrent callers. TLS is layered on top of these streams, so it covers
/// both plain and TLS serving.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serves `service` on `listener` with health and reflection until `shutdown`
/// completes, then drains as described in the module docs. `cancel` is
/// cancelled when the shutdown begins, so streams and background tasks that
/// watch it end.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
    cancel: CancellationToken,
) -> Result<(), ServeError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(cfg.service_name, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let role_task = cfg.role.clone().map(|mut role| {
        let reporter = reporter.clone();
        let name = leader_health_name(cfg.service_name);
        tokio::spawn(async move {
            loop {
                let leads = matches!(
                    *role.borrow_and_update(),
                    crate::leader::Role::Leader { .. }
                );
                let status = if leads {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(&name, status).await;
                if role.changed().await.is_err() {
                    return;
                }
            }
        })
    });
    let reflection_v1 = reflection_builder(cfg.descriptor_set).build_v1()?;
    let reflection_v1alpha = reflection_builder(cfg.descriptor_set).build_v1alpha()?;
    let methods = KnownMethods::from_descriptor_sets(&[
        cfg.descriptor_set,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])?;

    let local = listener.local_addr().ok();
    if let Some(a) = &local {
        crate::mesh::warn_if_exposed(a, &cfg.mesh);
    }
    let addr = local.map(|a| a.to_string()).unwrap_or_default();
    let stop = CancellationToken::new();
    let mut builder = Server::builder();
    if !cfg.mesh.request_timeout.is_zero() {
        builder = builder.timeout(cfg.mesh.request_timeout);
    }
    if let Some(tls) = cfg.mesh.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .layer(MeshLayer::new(cfg.service_name, &cfg.mesh, methods))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), stop.clone().cancelled_owned());
    tokio::pin!(server);
    tracing::info!(
        service = cfg.service_name,
        addr = %addr,
        tls = cfg.mesh.tls.is_some(),
        auth = cfg.mesh.auth.is_some(),
        "serving gRPC"
    );

    tokio::select! {
        res = &mut server => {
            cancel.cancel();
            if let Some(t) = &role_task {
                t.abort();
            }
            return res.map_err(Into::into);
        }
        () = shutdown => {}
        () = cancel.cancelled() => {}
    }

    reporter
        .set_service_status(cfg.service_name, ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    if let Some(t) = &role_task {
        t.abort();
    }
    tracing::info!(
        service = cfg.service_name,
        grace_ms = crate::duration::millis_u64(cfg.grace),
        "health NOT_SERVING; draining in-flight calls"
    );
    cancel.cancel();
    stop.cancel();
    match tokio::time::timeout(cfg.grace, &mut server).await {
        Ok(res) => {
            tracing::info!(service = cfg.service_name, "stopped cleanly");
            res.map_err(Into::into)
        }
        Err(_) => {
            tracing::warn!(
                service = cfg.service_name,
                "in-flight calls did not finish within the grace period; stopping anyway"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    /// The socket the server accepts has TCP_NODELAY set (the client side's
    /// setting says nothing about the server's).
    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(false).unwrap();
        let server_side = accepted.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap(), "TCP_NODELAY not set");
    }
}
