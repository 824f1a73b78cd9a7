//! Benchmark of cache-service's read path: `GetRecord` (a point read by id) and
//! `ListRecords` (one name's records) driven closed-loop at 1, 16 and 64
//! concurrent callers over one HTTP/2 connection, side by side with a floor: a
//! minimal tonic server in this binary doing the same reads with diesel and an
//! r2d2 pool of 4 on the same database file (opened read-only). It prints
//! requests per second, p50 and p99 for both and their ratio. Each line's
//! time is cut into slices that alternate between the two servers, so load
//! from elsewhere on the machine weighs on both alike.
//!
//! cache-service runs in-process (the real `run`, mesh layer included) against
//! the fake Cloudflare server seeded with 100,000 records, so both servers share
//! one runtime and one client. It measures; it never asserts a target.
//!
//! `cargo run --release -p trafego-tests --bin bench-rpc -- [--records N] [--seconds S]`

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::cache_service_server::{CacheService, CacheServiceServer};
use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};

use cache_service::cache::row_to_proto;
use cache_service::schema::dns_records;
use cache_service::store::CachedRecord;

const TOKEN: &str = "bench-token-0123456789abcdef";
const CONCURRENCY: [usize; 3] = [1, 16, 64];
const POOL_SIZE: u32 = 4;
/// Slices per measurement, alternating between the service and the floor.
const ROUNDS: u32 = 6;
/// Calls made before measuring, to open streams and fill statement caches.
const WARM_UP: Duration = Duration::from_millis(300);

type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;

/// The floor: the least a gRPC server must do for these reads (decode, one
/// pooled diesel query in `spawn_blocking`, encode), and nothing else.
#[derive(Clone)]
struct Floor {
    pool: SqlitePool,
}

impl Floor {
    async fn query<T, F>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = pool.get().map_err(|e| Status::internal(e.to_string()))?;
            f(&mut c).map_err(|e| Status::internal(e.to_string()))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchCacheResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CacheService for Floor {
    async fn list_records(
        &self,
        request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        let req = request.into_inner();
        let limit = i64::from(if req.page_size == 0 {
            1000
        } else {
            req.page_size
        });
        let rows = self
            .query(move |c| {
                dns_records::table
                    .filter(dns_records::name.eq(req.name))
                    .order((
                        dns_records::name.asc(),
                        dns_records::rtype.asc(),
                        dns_records::record_id.asc(),
                    ))
                    .limit(limit + 1)
                    .select(CachedRecord::as_select())
                    .load(c)
            })
            .await?;
        Ok(Response::new(ListRecordsResponse {
            records: rows.into_iter().map(row_to_proto).collect(),
            ..Default::default()
        }))
    }

    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<GetRecordResponse>, Status> {
        let id = request.into_inner().record_id;
        let row = self
            .query(move |c| {
                dns_records::table
                    .filter(dns_records::record_id.eq(id))
                    .select(CachedRecord::as_select())
                    .get_result(c)
                    .optional()
            })
            .await?;
        match row {
            Some(r) => Ok(Response::new(GetRecordResponse {
                record: Some(row_to_proto(r)),
            })),
            None => Err(Status::not_found("no such record")),
        }
    }

    async fn refresh_cache(
        &self,
        _: Request<RefreshCacheRequest>,
    ) -> Result<Response<RefreshCacheResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn get_cache_status(
        &self,
        _: Request<GetCacheStatusRequest>,
    ) -> Result<Response<GetCacheStatusResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn create_record(
        &self,
        _: Request<CreateRecordRequest>,
    ) -> Result<Response<CreateRecordResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn update_record(
        &self,
        _: Request<UpdateRecordRequest>,
    ) -> Result<Response<UpdateRecordResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn delete_record(
        &self,
        _: Request<DeleteRecordRequest>,
    ) -> Result<Response<DeleteRecordResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn apply_changes(
        &self,
        _: Request<ApplyChangesRequest>,
    ) -> Result<Response<ApplyChangesResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    type WatchCacheStream = WatchStream;

    async fn watch_cache(
        &self,
        _: Request<WatchCacheRequest>,
    ) -> Result<Response<Self::WatchCacheStream>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn get_change_outcomes(
        &self,
        _: Request<GetChangeOutcomesRequest>,
    ) -> Result<Response<GetChangeOutcomesResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }
}

/// Starts the floor on an ephemeral loopback port over `db` (read-only).
async fn start_floor(db: &std::path::Path) -> anyhow::Result<String> {
    let url = format!("file:{}?mode=ro", db.display());
    let pool = Pool::builder()
        .max_size(POOL_SIZE)
        .build(ConnectionManager::<SqliteConnection>::new(url))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CacheServiceServer::new(Floor { pool }))
            .serve_with_incoming(incoming),
    );
    Ok(format!("http://{addr}"))
}

/// A client over one HTTP/2 connection.
async fn connect(url: &str) -> anyhow::Result<CacheServiceClient<Channel>> {
    let channel = Channel::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(CacheServiceClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

/// What a closed-loop run measured.
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The `pct`-th percentile (nearest rank) of `sorted`, in milliseconds.
fn percentile(sorted: &[Duration], pct: usize) -> f64 {
    let rank = sorted.len().saturating_mul(pct).div_ceil(100);
    match sorted.get(rank.saturating_sub(1)) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => f64::NAN,
    }
}

/// One call of a workload: the `i`-th call of caller `caller`.
type Call = Arc<
    dyn Fn(CacheServiceClient<Channel>, usize, usize) -> BoxFuture<'static, Result<(), Status>>
        + Send
        + Sync,
>;

/// Runs `callers` closed loops of `call` for `time`; returns every call's
/// latency and the wall time.
async fn slice(
    client: &CacheServiceClient<Channel>,
    callers: usize,
    time: Duration,
    call: &Call,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let client = client.clone();
            let call = call.clone();
            tokio::spawn(async move {
                let end = Instant::now() + time;
                let mut lat = Vec::with_capacity(1 << 14);
                let mut i = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    call(client.clone(), caller, i).await?;
                    lat.push(t.elapsed());
                    i += 1;
                }
                Ok::<_, Status>(lat)
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed()))
}

/// Latencies and wall time gathered over the slices of one target.
#[derive(Default)]
struct Samples {
    lat: Vec<Duration>,
    wall: Duration,
}

impl Samples {
    fn add(&mut self, (lat, wall): (Vec<Duration>, Duration)) {
        self.lat.extend(lat);
        self.wall += wall;
    }

    fn figures(mut self) -> Figures {
        self.lat.sort_unstable();
        Figures {
            rps: self.lat.len() as f64 / self.wall.as_secs_f64(),
            p50_ms: percentile(&self.lat, 50),
            p99_ms: percentile(&self.lat, 99),
        }
    }
}

/// Measures the service and the floor under the same load: after a warm-up of
/// each, `ROUNDS` slices of `time / ROUNDS` each, alternating which goes
/// first, so background load on a shared machine falls on both alike.
async fn compare(
    svc: &CacheServiceClient<Channel>,
    floor: &CacheServiceClient<Channel>,
    callers: usize,
    time: Duration,
    call: &Call,
) -> anyhow::Result<(Figures, Figures)> {
    let part = time / ROUNDS;
    slice(floor, callers, WARM_UP, call).await?;
    slice(svc, callers, WARM_UP, call).await?;
    let (mut s, mut f) = (Samples::default(), Samples::default());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            f.add(slice(floor, callers, part, call).await?);
            s.add(slice(svc, callers, part, call).await?);
        } else {
            s.add(slice(svc, callers, part, call).await?);
            f.add(slice(floor, callers, part, call).await?);
        }
    }
    Ok((s.figures(), f.figures()))
}

fn get_record_call(ids: Arc<Vec<String>>) -> Call {
    Arc::new(move |mut c, caller, i| {
        let id = ids[(caller * 7919 + i * 104_729) % ids.len()].clone();
        Box::pin(async move {
            let r = c.get_record(GetRecordRequest { record_id: id }).await?;
            if r.into_inner().record.is_none() {
                return Err(Status::internal("no record"));
            }
            Ok(())
        })
    })
}

fn list_records_call(names: Arc<Vec<String>>) -> Call {
    Arc::new(move |mut c, caller, i| {
        let name = names[(caller * 7919 + i * 104_729) % names.len()].clone();
        Box::pin(async move {
            let r = c
                .list_records(ListRecordsRequest {
                    name,
                    ..Default::default()
                })
                .await?;
            if r.into_inner().records.len() != 1 {
                return Err(Status::internal("expected one record"));
            }
            Ok(())
        })
    })
}

fn parse_args() -> anyhow::Result<(usize, Duration)> {
    let mut records = 100_000;
    let mut seconds = 6.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?;
        match a.as_str() {
            "--records" => records = v.parse()?,
            "--seconds" => seconds = v.parse()?,
            _ => anyhow::bail!("unknown argument {a} (--records N, --seconds S)"),
        }
    }
    Ok((records, Duration::from_secs_f64(seconds)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (n, time) = parse_args()?;
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com")).await?;
    let names: Vec<String> = (0..n).map(|i| format!("host-{i:07}.example.com")).collect();
    let ids = fake.insert_many(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut r = FakeRecord::new(
                    "A",
                    name,
                    &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                );
                r.ttl = 300;
                r
            })
            .collect(),
    );
    let service = trafego_tests::start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut svc = connect(&service.url).await?;
    // Joins the start-up refresh (or runs one): the cache is full afterwards.
    let filled = svc
        .refresh_cache(RefreshCacheRequest {
            force: false,
            ..Default::default()
        })
        .await?
        .into_inner();
    anyhow::ensure!(filled.total == n as u64, "cached {} of {n}", filled.total);
    let floor = connect(&start_floor(&service.dir.join("cache.db")).await?).await?;
    println!(
        "cache-service read path vs floor: {n} records, pool {POOL_SIZE}, one HTTP/2 connection each, \
         {:.1} s each per line in {ROUNDS} alternating slices, {} cores",
        time.as_secs_f64(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let ids = Arc::new(ids);
    let names = Arc::new(names);
    for (rpc, call) in [
        ("GetRecord", get_record_call(ids)),
        ("ListRecords", list_records_call(names)),
    ] {
        for callers in CONCURRENCY {
            let (s, f) = compare(&svc, &floor, callers, time, &call).await?;
            println!(
                "{rpc:<11} callers={callers:>2}  service {:>6.0} rps p50 {:>6.2} ms p99 {:>6.2} ms  \
                 floor {:>6.0} rps p50 {:>6.2} ms p99 {:>6.2} ms  ratio rps {:.2}x p99 {:.2}x",
                s.rps,
                s.p50_ms,
                s.p99_ms,
                f.rps,
                f.p50_ms,
                f.p99_ms,
                s.rps / f.rps,
                s.p99_ms / f.p99_ms,
            );
        }
    }
    service.shutdown().await?;
    Ok(())
}
