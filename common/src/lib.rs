//! Plumbing both TrafegoDNS services share: the SQLite pool and its blocking
//! helper, keyset paging for list RPCs, logging, the mesh layer (bearer-token
//! authentication, load shedding, request ids, per-call metrics, TLS), the
//! gRPC server with health, reflection and graceful shutdown, the settings
//! both take alike, duration parsing, lossless integer conversions, an
//! injectable clock, and leader election with fencing among replicas on
//! PostgreSQL (with the SQLite guard that keeps one instance per file).
//!
//! Nothing here knows about DNS records; service logic lives in the services.

pub mod clock;
pub mod db;
pub mod duration;
pub mod leader;
pub mod mesh;
pub mod num;
pub mod paging;
pub mod server;
pub mod service_args;
pub mod shutdown;
pub mod telemetry;
