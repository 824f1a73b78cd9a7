//! The gRPC edge of tracking-service: requests are validated into domain
//! values here and errors become `tonic::Status` here (through
//! `From<TrackingError>`). Handlers hold no pooled connection across an
//! `.await` and never reach the provider except through the tracker.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use trafego_proto::tracking::tracking_service_server::TrackingService;
use trafego_proto::tracking::*;
use trafego_proto::validate::{self, FieldError, Hostname};

use crate::convert::row_to_proto;
use crate::desired;
use crate::error::TrackingError;
use crate::store::{self, ListFilter, PageKey};
use crate::tracker::Tracker;

const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 10_000;

/// The `trafego.tracking.v1.TrackingService` implementation.
#[derive(Clone)]
pub struct TrackingApi {
    tracker: Arc<Tracker>,
    sources: Arc<crate::source::Registry>,
}

impl TrackingApi {
    /// Serves `tracker`.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        Self {
            tracker,
            sources: Arc::default(),
        }
    }

    /// Reports the built-in sources of `sources` in `GetTrackerStatus`.
    pub fn with_sources(mut self, sources: Arc<crate::source::Registry>) -> Self {
        self.sources = sources;
        self
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl TrackingService for TrackingApi {
    async fn reconcile(
        &self,
        request: Request<ReconcileRequest>,
    ) -> Result<Response<ReconcileResponse>, Status> {
        let req = request.into_inner();
        let resp = self
            .tracker
            .reconcile(&req.source, &req.records, req.dry_run, req.force)
            .await?;
        Ok(Response::new(resp))
    }

    async fn list_tracked_records(
        &self,
        request: Request<ListTrackedRecordsRequest>,
    ) -> Result<Response<ListTrackedRecordsResponse>, Status> {
        let req = request.into_inner();
        let filter = ListFilter {
            orphaned: req.orphaned,
            app_managed: req.app_managed,
            source: non_empty(&req.source)
                .map(|s| desired::source("source", s))
                .transpose()?,
            name: non_empty(&req.name)
                .map(|n| Hostname::parse("name", n).map(|h| h.to_string()))
                .transpose()?,
        };
        let limit = validate::page_size("page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let after = PageKey::from_token(&req.page_token).map_err(|_| {
            FieldError::new(
                "page_token",
                "is not a token returned by ListTrackedRecords",
            )
        })?;
        let (rows, more, sources) = self
            .tracker
            .db()
            .run(move |c| {
                let (rows, more) = store::list(c, &filter, after.as_ref(), limit)?;
                let sources = store::sources_of(c, &rows)?;
                Ok::<_, TrackingError>((rows, more, sources))
            })
            .await?;
        let next_page_token = trafego_common::paging::next_token(&rows, more);
        let records = rows
            .into_iter()
            .map(|r| {
                let s = sources.get(&r.key()).cloned().unwrap_or_default();
                row_to_proto(r, &s)
            })
            .collect();
        Ok(Response::new(ListTrackedRecordsResponse {
            records,
            next_page_token,
        }))
    }

    /// The id never leaves tracking-service here: the shared conservative
    /// check applies (an id of another provider format is simply not tracked).
    async fn get_tracked_record(
        &self,
        request: Request<GetTrackedRecordRequest>,
    ) -> Result<Response<GetTrackedRecordResponse>, Status> {
        let id = validate::record_id("record_id", &request.get_ref().record_id)?;
        let lookup = id.clone();
        let found = self
            .tracker
            .db()
            .run(move |c| {
                let row = store::get(c, &lookup)?;
                let sources = match &row {
                    Some(r) => store::sources_of(c, std::slice::from_ref(r))?,
                    None => Default::default(),
                };
                Ok::<_, TrackingError>(row.map(|r| {
                    let s = sources.get(&r.key()).cloned().unwrap_or_default();
                    row_to_proto(r, &s)
                }))
            })
            .await?;
        match found {
            Some(record) => Ok(Response::new(GetTrackedRecordResponse {
                record: Some(record),
            })),
            None => Err(Status::not_found(format!("record {id} is not tracked"))),
        }
    }

    async fn track_record(
        &self,
        request: Request<TrackRecordRequest>,
    ) -> Result<Response<TrackRecordResponse>, Status> {
        let req = request.into_inner();
        // The id goes on to cache-service: checked first with the shared
        // conservative check (even while cache-service is down), then with
        // the provider's exact format as cache-service reports it.
        validate::record_id("record_id", &req.record_id)?;
        let source = match non_empty(&req.source) {
            Some(s) => {
                let s = desired::source("source", s)?;
                if s == desired::MANAGED_SOURCE {
                    return Err(FieldError::new(
                        "source",
                        format!(
                            "{:?} is reserved for MANAGED_HOSTNAMES",
                            desired::MANAGED_SOURCE
                        ),
                    )
                    .into());
                }
                s
            }
            None => String::new(),
        };
        let id = self
            .tracker
            .zone()
            .await?
            .rules
            .id_format
            .check("record_id", &req.record_id)?;
        let record = self.tracker.track(&id, req.app_managed, &source).await?;
        Ok(Response::new(TrackRecordResponse {
            record: Some(record),
        }))
    }

    /// As for GetTrackedRecord, the shared conservative check: untracking
    /// never reaches cache-service, and must work while it is down.
    async fn untrack_record(
        &self,
        request: Request<UntrackRecordRequest>,
    ) -> Result<Response<UntrackRecordResponse>, Status> {
        let id = validate::record_id("record_id", &request.get_ref().record_id)?;
        self.tracker.untrack(&id).await?;
        Ok(Response::new(UntrackRecordResponse { record_id: id }))
    }

    async fn run_orphan_sweep(
        &self,
        request: Request<RunOrphanSweepRequest>,
    ) -> Result<Response<RunOrphanSweepResponse>, Status> {
        let resp = self.tracker.sweep(request.get_ref().dry_run).await?;
        Ok(Response::new(resp))
    }

    async fn get_tracker_status(
        &self,
        _request: Request<GetTrackerStatusRequest>,
    ) -> Result<Response<GetTrackerStatusResponse>, Status> {
        let mut status = self.tracker.status().await?;
        status.sources = self.sources.to_proto();
        Ok(Response::new(status))
    }
}
