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
    /// cache-service could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// cache-service did not answer in time (CACHE_SERVICE_TIMEOUT).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A reconcile ran but some of its changes failed for a transient reason
    /// (cache-service or the provider unreachable, rate limited, too slow):
    /// the call ends with that code, what was applied is recorded, and the
    /// response (its summary and the changes that did not succeed) rides in
    /// the status details.
    #[error("{message}")]
    Incomplete {
        /// The transient code: UNAVAILABLE, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED.
        code: Code,
        /// What failed, in words.
        message: String,
        /// The response, every change with its outcome.
        response: Box<trafego_proto::tracking::ReconcileResponse>,
    },
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
    /// A write refused by the leadership fence is `UNAVAILABLE` (another
    /// replica leads: the caller retries, and reaches the leader); any other
    /// database error is internal.
    fn from(e: diesel::result::Error) -> Self {
        if let Some(f) = trafego_common::leader::fence_error(&e) {
            return TrackingError::Unavailable(format!("{f}; retry"));
        }
        TrackingError::Db(DbError::from(e))
    }
}

impl From<TrackingError> for Status {
    fn from(e: TrackingError) -> Self {
        match e {
            TrackingError::Invalid(f) => Status::invalid_argument(f.to_string()),
            TrackingError::Unavailable(m) => Status::unavailable(m),
            TrackingError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            TrackingError::Incomplete {
                code,
                message,
                response,
            } => incomplete_status(code, message, &response),
            TrackingError::FailedPrecondition(m) => Status::failed_precondition(m),
            TrackingError::NotFound(m) => Status::not_found(m),
            TrackingError::Cache(s) => match s.code() {
                // The caller authenticated fine: it is this service's own
                // credentials that cache-service refused. Telling the caller
                // UNAUTHENTICATED would send them after the wrong token.
                // PERMISSION_DENIED is the provider refusing cache-service's
                // own provider credentials: an operator problem of
                // cache-service, the caller can do nothing about it.
                Code::PermissionDenied => Status::failed_precondition(format!(
                    "cache-service: {}; the operator must fix cache-service's provider credentials",
                    s.message()
                )),
                Code::Unauthenticated => {
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

/// The type URL under which a reconcile's response rides in status details.
pub const RECONCILE_RESPONSE_TYPE_URL: &str =
    "type.googleapis.com/trafego.tracking.v1.ReconcileResponse";

/// A status carrying `response` in its details, as the gRPC richer error
/// model does: a `google.rpc.Status` whose one detail is an `Any` holding
/// the `trafego.tracking.v1.ReconcileResponse` (grpcurl shows it).
fn incomplete_status(
    code: Code,
    message: String,
    response: &trafego_proto::tracking::ReconcileResponse,
) -> Status {
    use prost::Message;
    let response = details_of(response);
    let details = tonic_types::pb::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: RECONCILE_RESPONSE_TYPE_URL.to_string(),
            value: response.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

/// Most bytes of a reconcile response carried in status details: they travel
/// in a trailer, and HTTP/2 peers refuse header blocks much over 16 KiB.
pub const MAX_DETAIL_BYTES: usize = 8 * 1024;

/// The response as the details carry it: the summary and the changes that
/// did not succeed, as many as fit in [`MAX_DETAIL_BYTES`] (the same call
/// again, or a dry run, shows the rest).
fn details_of(
    response: &trafego_proto::tracking::ReconcileResponse,
) -> trafego_proto::tracking::ReconcileResponse {
    use prost::Message;
    let mut out = trafego_proto::tracking::ReconcileResponse {
        changes: Vec::new(),
        ..response.clone()
    };
    let mut size = out.encoded_len();
    for c in response.changes.iter().filter(|c| c.code != 0) {
        let n = c.encoded_len() + 4;
        if size + n > MAX_DETAIL_BYTES {
            break;
        }
        size += n;
        out.changes.push(c.clone());
    }
    out
}

/// The reconcile response a status carries in its details, if it carries one
/// (for clients and tests).
pub fn reconcile_response_of(
    status: &Status,
) -> Option<trafego_proto::tracking::ReconcileResponse> {
    use prost::Message;
    let details = tonic_types::pb::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|a| a.type_url == RECONCILE_RESPONSE_TYPE_URL)
        .and_then(|a| trafego_proto::tracking::ReconcileResponse::decode(a.value.as_slice()).ok())
}

/// What a caller may read of an error: its gRPC message, which for internal
/// errors is only "internal error (request id …)" (the detail is logged).
pub fn public_message(e: TrackingError) -> String {
    tonic::Status::from(e).message().to_string()
}
