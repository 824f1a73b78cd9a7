//! A follower's write RPCs go to the leader: [`Forward`] wraps a service's
//! routes and, while this replica follows, sends each call of a write method
//! on to the leader's advertised address over HTTP/2 as it came (metadata,
//! deadline, bearer token and streaming included) and returns the leader's
//! answer. Reads are served here. Every answer carries the replica's role in
//! the `x-trafego-role` header.
//!
//! When the replicas serve TLS, the forward is TLS too ([`Forwarding::Tls`]:
//! the leader's certificate checked against `FORWARD_CA_FILE`, this
//! replica's own certificate presented when the leader asks for one).
//!
//! A follower never writes on its own: with no leader known, with server TLS
//! but no `FORWARD_CA_FILE` ([`Forwarding::Off`]), or for a call that was
//! already forwarded once (a leader that stepped down in between), it
//! answers `UNAVAILABLE`, naming the leader's address when it has one (also
//! in the `x-trafego-leader` header), so the caller retries.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::server::NamedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::Role;

/// The header a forwarded call carries, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-trafego-forwarded";
/// The header every answer carries: `leader` or `follower`.
pub const ROLE_HEADER: &str = "x-trafego-role";
/// The header of an `UNAVAILABLE` answer naming the leader's address.
pub const LEADER_HEADER: &str = "x-trafego-leader";

/// How a follower reaches the leader: as the replicas serve.
#[derive(Clone, Debug)]
pub enum Forwarding {
    /// Plain HTTP/2: the replicas serve without TLS.
    Plain,
    /// TLS: the replicas serve TLS and `FORWARD_CA_FILE` says whom to trust
    /// (the leader's certificate checked against it, for
    /// `FORWARD_SERVER_NAME` or else the host of the leader's advertised
    /// address; the identity this replica presents when the leader asks).
    Tls(ClientTlsConfig),
    /// No forwarding: the replicas serve TLS and `FORWARD_CA_FILE` is unset,
    /// so a follower answers `UNAVAILABLE` naming the leader.
    Off,
}

impl Forwarding {
    /// Whether a follower sends calls on to the leader.
    pub fn forwards(&self) -> bool {
        !matches!(self, Forwarding::Off)
    }
}

/// The advice an `UNAVAILABLE` answer of a follower that cannot forward
/// ([`Forwarding::Off`]) ends with.
pub const FORWARD_OFF_HINT: &str =
    "set FORWARD_CA_FILE (the CA of the replicas' certificates) to forward over TLS";

/// What a replica's routes need to forward writes.
#[derive(Clone)]
pub struct Replication {
    /// The replica's role, as it changes.
    pub role: watch::Receiver<Role>,
    /// The full paths of the write methods (`/pkg.Service/Method`).
    pub writes: &'static [&'static str],
    /// How to reach the leader.
    pub forwarding: Forwarding,
    /// How long connecting to the leader may take.
    pub connect_timeout: Duration,
}

struct Shared {
    role: watch::Receiver<Role>,
    writes: HashSet<&'static str>,
    channels: LeaderChannels,
}

/// One lazily connected channel per leader address seen: what a follower
/// sends calls to the leader on (here, and for reads a service forwards
/// itself).
pub struct LeaderChannels {
    connect_timeout: Duration,
    forwarding: Forwarding,
    channels: Mutex<HashMap<String, Channel>>,
}

impl LeaderChannels {
    /// Channels connecting within `connect_timeout`, as `forwarding` says.
    pub fn new(connect_timeout: Duration, forwarding: Forwarding) -> Self {
        Self {
            connect_timeout,
            forwarding,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// How these channels reach the leader.
    pub fn forwarding(&self) -> &Forwarding {
        &self.forwarding
    }

    /// The channel to the leader at `addr` (`host:port`, or a URI), made on
    /// first use; `UNAVAILABLE` when the address is not usable or this
    /// replica does not forward.
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let unusable = |e: &dyn std::fmt::Display| {
            tonic::Status::unavailable(format!(
                "the leader's advertised address {addr:?} is not usable: {e}"
            ))
        };
        let (scheme, tls) = match &self.forwarding {
            Forwarding::Plain => ("http", None),
            Forwarding::Tls(tls) => ("https", Some(tls.clone())),
            Forwarding::Off => {
                return Err(tonic::Status::unavailable(format!(
                    "this replica does not lead; send the call to the leader at {addr} \
                     ({FORWARD_OFF_HINT})"
                )));
            }
        };
        let uri = match addr.split_once("://") {
            Some((_, rest)) => format!("{scheme}://{rest}"),
            None => format!("{scheme}://{addr}"),
        };
        let mut endpoint = Endpoint::from_shared(uri).map_err(|e| unusable(&e))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| unusable(&e))?;
        }
        let channel = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        // A handful of addresses over a process's life: leaders come and go.
        if channels.len() > 64 {
            channels.clear();
        }
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// A service's routes behind [`Replication`]: see the module docs.
#[derive(Clone)]
pub struct Forward<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S> Forward<S> {
    /// `inner` as it is (no replicas: it leads alone) when `replication` is
    /// `None`; otherwise followers forward the write methods.
    pub fn new(inner: S, replication: Option<Replication>) -> Self {
        if let Some(r) = &replication {
            match &r.forwarding {
                Forwarding::Plain => {
                    tracing::info!("followers forward write calls to the leader (plain HTTP/2)")
                }
                Forwarding::Tls(_) => {
                    tracing::info!("followers forward write calls to the leader over TLS")
                }
                Forwarding::Off => tracing::warn!(
                    "TLS is on and FORWARD_CA_FILE is unset: a follower answers write calls \
                     UNAVAILABLE naming the leader instead of forwarding them; {FORWARD_OFF_HINT}"
                ),
            }
        }
        Self {
            inner,
            shared: replication.map(|r| {
                Arc::new(Shared {
                    role: r.role,
                    writes: r.writes.iter().copied().collect(),
                    channels: LeaderChannels::new(r.connect_timeout, r.forwarding),
                })
            }),
        }
    }
}

impl<S: NamedService> NamedService for Forward<S> {
    const NAME: &'static str = S::NAME;
}

fn unavailable(message: String, leader: Option<&str>) -> Response<Body> {
    let mut resp = tonic::Status::unavailable(message).into_http::<Body>();
    if let Some(v) = leader.and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(LEADER_HEADER, v);
    }
    resp
}

/// Sends `req` on `channel` once it is ready.
async fn call(
    channel: &mut Channel,
    req: Request<Body>,
) -> Result<Response<Body>, tonic::transport::Error> {
    futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
    channel.call(req).await
}

fn with_role(mut resp: Response<Body>, role: &'static str) -> Response<Body> {
    resp.headers_mut()
        .insert(ROLE_HEADER, HeaderValue::from_static(role));
    resp
}

impl<S> Service<Request<Body>> for Forward<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(shared) = self.shared.clone() else {
            return Box::pin(inner.call(req));
        };
        let role = shared.role.borrow().clone();
        let leader = match &role {
            Role::Leader { .. } => None,
            Role::Follower { leader } => Some(leader.clone()),
        };
        let path = req.uri().path();
        let Some(leader) = leader.filter(|_| shared.writes.contains(path)) else {
            let name = role.name();
            return Box::pin(async move { inner.call(req).await.map(|r| with_role(r, name)) });
        };
        let method = path.to_string();
        Box::pin(async move {
            let resp = match leader {
                None => unavailable(
                    "this replica does not lead and no leader is known yet; retry shortly".into(),
                    None,
                ),
                Some(addr) if req.headers().contains_key(FORWARDED_HEADER) => unavailable(
                    format!(
                        "this replica was forwarded a write but does not lead (the leader is \
                         at {addr}); retry"
                    ),
                    Some(&addr),
                ),
                Some(addr) if !shared.channels.forwarding().forwards() => unavailable(
                    format!(
                        "this replica does not lead; send writes to the leader at {addr} \
                         ({FORWARD_OFF_HINT})"
                    ),
                    Some(&addr),
                ),
                Some(addr) => {
                    req.headers_mut()
                        .insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
                    match shared.channels.get(&addr) {
                        Err(status) => status.into_http::<Body>(),
                        Ok(mut channel) => match call(&mut channel, req).await {
                            Ok(resp) => {
                                tracing::debug!(method = %method, leader = %addr, "forwarded to the leader");
                                resp
                            }
                            Err(e) => unavailable(
                                format!("forwarding to the leader at {addr} failed: {e}; retry"),
                                Some(&addr),
                            ),
                        },
                    }
                }
            };
            Ok(with_role(resp, "follower"))
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic::transport::Server;
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;

    /// The "write" of these tests: health's Check, answered differently by
    /// the leader and the follower, so the answer tells who served it.
    const CHECK: &str = "/grpc.health.v1.Health/Check";

    /// Serves health (service "x" at `status`) behind `Forward` with this
    /// role and forwarding choice; returns the address.
    async fn replica(role: Role, status: ServingStatus, forwarding: Forwarding) -> String {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status("x", status).await;
        let (tx, rx) = watch::channel(role);
        let svc = Forward::new(
            health,
            Some(Replication {
                role: rx,
                writes: &[CHECK],
                forwarding,
                connect_timeout: Duration::from_secs(5),
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _keep = (reporter, tx);
            Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        addr
    }

    async fn check(addr: &str, forwarded: bool) -> Result<tonic::Response<i32>, tonic::Status> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: "x".into(),
        });
        if forwarded {
            req.metadata_mut()
                .insert(FORWARDED_HEADER, "1".parse().unwrap());
        }
        client.check(req).await.map(|r| {
            let (meta, body, ext) = r.into_parts();
            tonic::Response::from_parts(meta, body.status, ext)
        })
    }

    fn role_of<T>(r: &tonic::Response<T>) -> &str {
        r.metadata().get(ROLE_HEADER).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn a_follower_forwards_writes_to_the_leader_once_and_serves_reads_itself() {
        let leader = replica(
            Role::Leader { fence: 1 },
            ServingStatus::Serving,
            Forwarding::Plain,
        )
        .await;
        let follower = replica(
            Role::Follower {
                leader: Some(leader.clone()),
            },
            ServingStatus::NotServing,
            Forwarding::Plain,
        )
        .await;
        // The leader answers its own calls.
        let r = check(&leader, false).await.unwrap();
        assert_eq!(
            (*r.get_ref(), role_of(&r)),
            (ServingStatus::Serving as i32, "leader")
        );
        // A write sent to the follower is the leader's answer.
        let r = check(&follower, false).await.unwrap();
        assert_eq!(
            (*r.get_ref(), role_of(&r)),
            (ServingStatus::Serving as i32, "follower")
        );
        // A call forwarded once is never forwarded again.
        let e = check(&follower, true).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert_eq!(e.metadata().get(LEADER_HEADER).unwrap(), leader.as_str());

        // Without forwarding (server TLS, no FORWARD_CA_FILE), the follower
        // names the leader and says what would let it forward.
        let named = replica(
            Role::Follower {
                leader: Some(leader.clone()),
            },
            ServingStatus::NotServing,
            Forwarding::Off,
        )
        .await;
        let e = check(&named, false).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(
            e.message().contains(&leader) && e.message().contains("FORWARD_CA_FILE"),
            "{e:?}"
        );
        // No leader known: UNAVAILABLE, retry.
        let alone = replica(
            Role::Follower { leader: None },
            ServingStatus::NotServing,
            Forwarding::Plain,
        )
        .await;
        assert_eq!(
            check(&alone, false).await.unwrap_err().code(),
            tonic::Code::Unavailable
        );
        // A leader that is gone: UNAVAILABLE naming it, not a hang.
        let gone = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let orphan = replica(
            Role::Follower {
                leader: Some(gone.clone()),
            },
            ServingStatus::NotServing,
            Forwarding::Plain,
        )
        .await;
        let e = check(&orphan, false).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(e.message().contains(&gone), "{e:?}");
    }
}
