//! The errors of tracking-service's request handling, and the one place where
//! each becomes a gRPC status.
//!
//! Messages say what was wrong and with which field, record or guard; they
//! never carry a secret (the cache-service URL is shown by host only). An
//! internal failure (the database, a task) reaches the caller as `internal
//! error (request id …)` only: its detail is logged with that request id.

use tonic::{Code, Status};
use trafego_common::db::DbError;
use trafego_proto::validate::FieldError;

/// Why a tracking-service operation failed. Callers branch on the kind; the
/// gRPC code is chosen once, in `From<TrackingError> for Status`.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// Bad input, refused at the edge; names the field.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// cache-service could not be reached (or did not answer in time).
    #[error("{0}")]
    Unavailable(String),
    /// A guard refused, or the state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The record asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// cache-service answered with an error of its own; its code is kept.
    #[error("cache-service: {}", .0.message())]
    Cache(Status),
    /// The tracker's database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Anything else that should not happen.
    #[error("{0}")]
    Internal(String),
}

impl From<diesel::result::Error> for TrackingError {
    fn from(e: diesel::result::Error) -> Self {
        TrackingError::Db(DbError::from(e))
    }
}

impl From<TrackingError> for Status {
    fn from(e: TrackingError) -> Self {
        match e {
            TrackingError::Invalid(f) => Status::invalid_argument(f.to_string()),
            TrackingError::Unavailable(m) => Status::unavailable(m),
            TrackingError::FailedPrecondition(m) => Status::failed_precondition(m),
            TrackingError::NotFound(m) => Status::not_found(m),
            TrackingError::Cache(s) => match s.code() {
                // The caller authenticated fine: it is this service's own
                // credentials that cache-service refused. Telling the caller
                // UNAUTHENTICATED would send them after the wrong token.
                Code::Unauthenticated | Code::PermissionDenied => {
                    tracing::error!(
                        code = ?s.code(),
                        "cache-service refused tracking-service's credentials (CACHE_SERVICE_TOKEN)"
                    );
                    Status::unavailable(format!(
                        "cache-service refused tracking-service's own credentials for it \
                         (CACHE_SERVICE_TOKEN, or its client certificate): {}; \
                         the operator must fix tracking-service's configuration",
                        s.message()
                    ))
                }
                code => {
                    let code = match code {
                        // A code that only makes sense between the services would mislead a caller.
                        Code::Ok | Code::Unknown => Code::Internal,
                        c => c,
                    };
                    Status::new(code, format!("cache-service: {}", s.message()))
                }
            },
            // The caller learns the request id; the detail (SQL, file paths)
            // is logged with it and never sent.
            TrackingError::Db(d) => trafego_common::mesh::internal_status(&d),
            TrackingError::Internal(m) => trafego_common::mesh::internal_status(&m),
        }
    }
}
