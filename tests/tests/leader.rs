//! Leader election with fencing against a real PostgreSQL (a throwaway
//! cluster, tests/src/postgres.rs): one of three candidates leads and the
//! fence grows at each takeover; a leader whose session is killed steps down
//! and another leads within the retry interval; a leader whose check stalls
//! steps down at once; a stalled old leader cannot write once another has
//! taken over, and the takeover waits for its in-flight write; and a leader
//! killed with `kill -9` (its own process, `leader-candidate`) is replaced,
//! the failover time printed. Nothing sleeps to wait: the tests wait on the
//! role's watch channel, or poll PostgreSQL's own views, under a deadline.

use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{oneshot, watch};
use trafego_common::leader::{FenceError, LeaderSettings, Leadership, Role, check_fence, lock_key};
use trafego_tests::postgres::PgCluster;

/// The service contended for in these tests.
const SERVICE: &str = "trafego.test.v1.Leader";

/// Short intervals, so a test takes well under a second per takeover.
fn fast() -> LeaderSettings {
    LeaderSettings {
        retry_interval: Duration::from_millis(200),
        check_interval: Duration::from_millis(200),
    }
}

/// Waits until `f` finds what it wants in the candidates' roles, or panics
/// naming `what` and the roles at the deadline.
async fn until<T>(
    rxs: &mut [watch::Receiver<Role>],
    within: Duration,
    what: &str,
    mut f: impl FnMut(&[Role]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let roles: Vec<Role> = rxs
            .iter_mut()
            .map(|r| r.borrow_and_update().clone())
            .collect();
        if let Some(t) = f(&roles) {
            return t;
        }
        let changed = futures::future::select_all(rxs.iter_mut().map(|r| Box::pin(r.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            panic!("{what}: not within {within:?}; roles {roles:?}");
        }
    }
}

/// The index and fence of the only leader, if exactly one leads.
fn sole_leader(roles: &[Role]) -> Option<(usize, i64)> {
    let leaders: Vec<(usize, i64)> = roles
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.fence().map(|f| (i, f)))
        .collect();
    match leaders.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// `SQL` matching the advisory lock of [`SERVICE`] in `pg_locks`.
fn lock_row() -> String {
    let key = lock_key(SERVICE);
    format!(
        "locktype = 'advisory' AND granted AND classid::bigint = {} AND objid::bigint = {} \
         AND objsubid = 1",
        key >> 32,
        key & 0xffff_ffff
    )
}

/// Ends the session holding the lock from another connection, as a network
/// cut or an operator would, and waits (in PostgreSQL) until it is gone.
async fn terminate_holder(pg: &PgCluster) {
    let out = pg
        .psql(&format!(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE {}",
            lock_row()
        ))
        .await
        .unwrap();
    assert_eq!(out, "t", "one session held the lock and was ended");
}

fn connect(url: &str) -> PgConnection {
    PgConnection::establish(url).expect("connect to the test cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_candidates_leads_and_the_fence_grows_at_each_takeover() {
    let pg = PgCluster::start().await.unwrap();
    let names = ["replica-0:50051", "replica-1:50051", "replica-2:50051"];
    let mut cands: Vec<Option<Leadership>> = names
        .iter()
        .map(|n| Some(Leadership::start(&pg.url, SERVICE, n, fast())))
        .collect();
    let mut rxs: Vec<_> = cands.iter().flatten().map(Leadership::role).collect();

    // Exactly one leads, with the first fence; never two at once.
    let (first, fence) = until(&mut rxs, Duration::from_secs(10), "a leader", |roles| {
        let leaders = roles.iter().filter(|r| r.fence().is_some()).count();
        assert!(leaders <= 1, "two leaders at once: {roles:?}");
        sole_leader(roles)
    })
    .await;
    assert_eq!(fence, 1);
    // The followers learn who leads (at their next try) and the table says so.
    until(
        &mut rxs,
        Duration::from_secs(5),
        "followers know the leader",
        |roles| {
            let leader = Some(names[first].to_string());
            roles
                .iter()
                .enumerate()
                .all(|(i, r)| {
                    i == first
                        || *r
                            == Role::Follower {
                                leader: leader.clone(),
                            }
                })
                .then_some(())
        },
    )
    .await;
    let follower = cands
        .iter()
        .flatten()
        .find(|c| c.current().fence().is_none())
        .unwrap();
    assert_eq!(
        follower.leader_address().await.unwrap().as_deref(),
        Some(names[first])
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE {}",
            lock_row()
        ))
        .await
        .unwrap(),
        "1"
    );
    assert_eq!(
        pg.psql("SELECT service, fence, holder FROM leadership")
            .await
            .unwrap(),
        format!("{SERVICE}|1|{}", names[first])
    );

    // Each leader that stands down hands over at once (it unlocks) to one of
    // the rest, with a greater fence.
    let mut leader = first;
    let mut fences = vec![fence];
    for _ in 0..2 {
        let started = Instant::now();
        cands[leader].take().unwrap().shutdown().await;
        let (next, fence) = until(&mut rxs, Duration::from_secs(5), "a new leader", |roles| {
            let live: Vec<Role> = roles
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    if cands[i].is_some() {
                        r.clone()
                    } else {
                        Role::Follower { leader: None }
                    }
                })
                .collect();
            assert!(
                live.iter().filter(|r| r.fence().is_some()).count() <= 1,
                "two leaders at once: {live:?}"
            );
            sole_leader(&live)
        })
        .await;
        eprintln!(
            "handover after a clean stand-down: {:?} (retry interval {:?})",
            started.elapsed(),
            fast().retry_interval
        );
        assert_ne!(next, leader);
        assert!(fence > *fences.last().unwrap(), "{fences:?} then {fence}");
        fences.push(fence);
        leader = next;
    }
    assert_eq!(fences, [1, 2, 3]);
    cands[leader].take().unwrap().shutdown().await;
    // Nobody holds the lock; the table keeps the last fence and holder.
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE {}",
            lock_row()
        ))
        .await
        .unwrap(),
        "0"
    );
    assert_eq!(
        pg.psql("SELECT fence, holder FROM leadership")
            .await
            .unwrap(),
        format!("3|{}", names[leader])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_is_killed_steps_down_and_another_leads() {
    let pg = PgCluster::start().await.unwrap();
    let cands: Vec<Leadership> = (0..3)
        .map(|i| Leadership::start(&pg.url, SERVICE, &format!("replica-{i}:50051"), fast()))
        .collect();
    let mut rxs: Vec<_> = cands.iter().map(Leadership::role).collect();
    let (old, old_fence) = until(&mut rxs, Duration::from_secs(10), "a leader", sole_leader).await;

    terminate_holder(&pg).await;
    let freed = Instant::now();
    // Another candidate leads, with a greater fence, within the retry interval
    // (plus scheduling slack on a busy machine)...
    let (new, fence) = until(
        &mut rxs,
        Duration::from_secs(5),
        "another leader",
        |roles| {
            roles
                .iter()
                .enumerate()
                .find_map(|(i, r)| r.fence().filter(|_| i != old).map(|f| (i, f)))
        },
    )
    .await;
    let failover = freed.elapsed();
    eprintln!(
        "failover after the leader's session was ended: {failover:?} (retry interval {:?})",
        fast().retry_interval
    );
    assert!(fence > old_fence);
    assert!(
        failover < fast().retry_interval + Duration::from_secs(1),
        "{failover:?}"
    );
    // ...and the old one has stepped down (at its next check at the latest).
    until(
        &mut rxs,
        Duration::from_secs(2),
        "the old leader steps down",
        |roles| (roles[old].fence().is_none()).then_some(()),
    )
    .await;
    assert_eq!(
        sole_leader(&cands.iter().map(Leadership::current).collect::<Vec<_>>()),
        Some((new, fence))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_check_stalls_steps_down_at_once() {
    let pg = PgCluster::start().await.unwrap();
    let a = Leadership::start(&pg.url, SERVICE, "a:1", fast());
    let mut rxs = vec![a.role()];
    let (_, fence) = until(&mut rxs, Duration::from_secs(10), "a leader", sole_leader).await;

    // Another session locks the leadership table: the leader's next check
    // blocks, as on a network pause. It still holds its lock, yet it must
    // stop believing it leads after one check interval.
    let (locked_tx, locked_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let url = pg.url.clone();
    let locker = tokio::task::spawn_blocking(move || {
        let mut c = connect(&url);
        c.transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query("LOCK TABLE leadership IN ACCESS EXCLUSIVE MODE").execute(c)?;
            locked_tx.send(()).unwrap();
            release_rx.blocking_recv().unwrap();
            Ok(())
        })
        .unwrap();
    });
    locked_rx.await.unwrap();
    let paused = Instant::now();
    until(
        &mut rxs,
        Duration::from_secs(3),
        "step-down on a stalled check",
        |roles| roles[0].fence().is_none().then_some(()),
    )
    .await;
    eprintln!(
        "stepped down {:?} after its check stalled (check interval {:?})",
        paused.elapsed(),
        fast().check_interval
    );
    // The lock is still held by the stalled session: nobody leads.
    assert_eq!(a.current().fence(), None);

    // When the pause ends, the abandoned session closes, and the replica
    // stands again and leads with a new fence.
    release_tx.send(()).unwrap();
    locker.await.unwrap();
    let (_, again) = until(&mut rxs, Duration::from_secs(5), "leads again", sole_leader).await;
    assert!(again > fence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_old_leader_cannot_write_and_a_takeover_waits_for_its_in_flight_write() {
    let pg = PgCluster::start().await.unwrap();
    pg.psql("CREATE TABLE work (id integer PRIMARY KEY)")
        .await
        .unwrap();
    let a = Leadership::start(&pg.url, SERVICE, "a:1", fast());
    let mut ra = vec![a.role()];
    let (_, old_fence) = until(&mut ra, Duration::from_secs(10), "a leads", sole_leader).await;
    let b = Leadership::start(&pg.url, SERVICE, "b:1", fast());

    // The old leader's write is in flight: its transaction has checked the
    // fence (and holds the row FOR SHARE) and written, not yet committed.
    let (held_tx, held_rx) = oneshot::channel();
    let (commit_tx, commit_rx) = oneshot::channel::<()>();
    let url = pg.url.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut c = connect(&url);
        let res = c.transaction::<_, FenceError, _>(|c| {
            check_fence(c, SERVICE, old_fence)?;
            diesel::sql_query("INSERT INTO work VALUES (1)").execute(c)?;
            held_tx.send(()).unwrap();
            commit_rx.blocking_recv().unwrap();
            Ok(())
        });
        (c, res)
    });
    held_rx.await.unwrap();

    // The old leader loses its lock (its session ends; it is stopped too,
    // so only b stands); b takes the lock and bumps the fence, and the bump
    // waits for the in-flight write.
    terminate_holder(&pg).await;
    a.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            b.current().fence().is_none(),
            "b took over while the old leader's write was in flight"
        );
        let waiting = pg
            .psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'trafego-leader' \
                 AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO leadership%'",
            )
            .await
            .unwrap();
        if waiting == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "b's fence bump never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.current().fence().is_none());

    // The write commits; only then does b lead.
    commit_tx.send(()).unwrap();
    let (mut c, res) = writer.await.unwrap();
    res.unwrap();
    let mut rb = vec![b.role()];
    let (_, new_fence) = until(&mut rb, Duration::from_secs(5), "b leads", sole_leader).await;
    assert_eq!(new_fence, old_fence + 1);

    // Every later write of the stalled old leader fails, and writes nothing.
    let (c, res) = tokio::task::spawn_blocking(move || {
        let res = c.transaction::<_, FenceError, _>(|c| {
            check_fence(c, SERVICE, old_fence)?;
            diesel::sql_query("INSERT INTO work VALUES (2)").execute(c)?;
            Ok(())
        });
        (c, res)
    })
    .await
    .unwrap();
    match res {
        Err(FenceError::Stale { ours, current, .. }) => {
            assert_eq!(ours, old_fence);
            assert_eq!(current, new_fence.to_string());
        }
        other => panic!("the stalled leader's write went on: {other:?}"),
    }
    let status = tonic::Status::from(check_fence(&mut { c }, SERVICE, old_fence).unwrap_err());
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // The new leader's fence passes.
    let url = pg.url.clone();
    tokio::task::spawn_blocking(move || check_fence(&mut connect(&url), SERVICE, new_fence))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pg.psql("SELECT id FROM work").await.unwrap(), "1");
}

/// Starts `leader-candidate` in its own process and waits until it leads.
async fn spawn_leader(pg: &PgCluster, advertise: &str) -> (tokio::process::Child, i64) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_leader-candidate"))
        .env_clear()
        .env("DATABASE_URL", &pg.url)
        .env("SERVICE", SERVICE)
        .env("ADVERTISE_ADDRESS", advertise)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let fence = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the candidate exited");
            if let Some(f) = line.strip_prefix("leader ") {
                break f.parse::<i64>().unwrap();
            }
        }
    })
    .await
    .expect("the candidate leads");
    (child, fence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leaders_process_and_a_follower_leads_within_the_retry_interval() {
    let pg = PgCluster::start().await.unwrap();
    // The shipped defaults: retry and check every second.
    let settings = LeaderSettings::default();
    let mut figures = Vec::new();
    let mut last_fence = 0;
    for round in 0..3 {
        let advertise = format!("killed-{round}:50051");
        let (mut child, fence) = spawn_leader(&pg, &advertise).await;
        assert!(fence > last_fence);
        let b = Leadership::start(&pg.url, SERVICE, "survivor:50051", settings);
        let mut rb = vec![b.role()];
        // b is contending and sees the child lead.
        until(&mut rb, Duration::from_secs(5), "b follows", |roles| {
            (roles[0]
                == Role::Follower {
                    leader: Some(advertise.clone()),
                })
            .then_some(())
        })
        .await;

        child.start_kill().unwrap(); // SIGKILL
        let killed = Instant::now();
        child.wait().await.unwrap();
        let (_, new_fence) = until(&mut rb, Duration::from_secs(10), "b leads", sole_leader).await;
        let failover = killed.elapsed();
        figures.push(failover);
        assert_eq!(new_fence, fence + 1);
        assert!(
            failover < settings.retry_interval + Duration::from_secs(1),
            "round {round}: {failover:?}"
        );
        last_fence = new_fence;
        b.shutdown().await;
    }
    figures.sort();
    eprintln!(
        "failover after kill -9 of the leader (LEADER_RETRY_INTERVAL {:?}): min {:?}, median {:?}, max {:?}",
        settings.retry_interval, figures[0], figures[1], figures[2]
    );
}

/// A fenced database: its writes (checked by `check_session_fence` first in
/// the transaction) pass with the leader's fence, fail with an old one it
/// still believes in after a takeover and write nothing, fail as a follower,
/// and an unfenced database (the one-shot import) is not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_databases_writes_carry_the_fence_it_holds_now() {
    use trafego_common::db::{AnyConnection, AnyDb, DbError, DbOptions, DbUrl, Migrations};
    use trafego_common::leader::{check_session_fence, fence_error};

    let pg = PgCluster::start().await.unwrap();
    pg.psql("CREATE TABLE work (id integer PRIMARY KEY)")
        .await
        .unwrap();
    let url = DbUrl::parse(&pg.url).unwrap();
    let open = || {
        AnyDb::connect(
            &url,
            "DATABASE_URL",
            Migrations {
                sqlite: tracking_service::MIGRATIONS,
                postgres: tracking_service::PG_MIGRATIONS,
            },
            DbOptions::default(),
        )
        .unwrap()
    };
    let a = Leadership::start(&pg.url, SERVICE, "a:1", fast());
    let mut ra = vec![a.role()];
    let (_, old) = until(&mut ra, Duration::from_secs(10), "a leads", sole_leader).await;
    // What a paused process believes: it still leads with `old`.
    let (belief_tx, belief) = watch::channel(Role::Leader { fence: old });
    let fenced = open().fenced(SERVICE, belief);
    let insert = |db: &AnyDb, id: i32| {
        let db = db.clone();
        async move {
            db.run(move |c| {
                let AnyConnection::Postgres(pg) = c else {
                    unreachable!()
                };
                pg.transaction(|t| {
                    check_session_fence(t)?;
                    diesel::sql_query(format!("INSERT INTO work VALUES ({id})")).execute(t)
                })
                .map_err(DbError::from)
            })
            .await
        }
    };
    insert(&fenced, 1).await.expect("the leader's fence passes");

    // b takes over: the old belief's writes now fail and write nothing.
    a.shutdown().await;
    let b = Leadership::start(&pg.url, SERVICE, "b:1", fast());
    let mut rb = vec![b.role()];
    let (_, new) = until(&mut rb, Duration::from_secs(10), "b leads", sole_leader).await;
    assert!(new > old);
    match insert(&fenced, 2).await {
        Err(DbError::Query(e)) => match fence_error(&e) {
            Some(FenceError::Stale { ours, current, .. }) => {
                assert_eq!(*ours, old);
                assert_eq!(*current, new.to_string());
            }
            other => panic!("not a fence error: {other:?} ({e})"),
        },
        other => panic!("the old leader's write went on: {other:?}"),
    }
    // A follower (fence 0) cannot write either; with b's fence it can.
    belief_tx.send_replace(Role::Follower { leader: None });
    assert!(insert(&fenced, 3).await.is_err());
    belief_tx.send_replace(Role::Leader { fence: new });
    insert(&fenced, 4).await.expect("the current fence passes");
    // Unfenced (the import beside the service): not checked.
    insert(&open(), 5)
        .await
        .expect("an unfenced database is not checked");
    assert_eq!(
        pg.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM work")
            .await
            .unwrap(),
        "1,4,5"
    );
    b.shutdown().await;
}
