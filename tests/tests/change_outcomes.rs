//! The change-id protocol of cache-service, end to end against the fake
//! Cloudflare: a write whose answer was lost is settled by looking (never
//! sent twice blindly), a change id is applied once however often it is
//! sent, GetChangeOutcomes tells what became of each id, and an entry left
//! pending by a cache-service that died is settled by looking after restart.

use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, LostAnswer};
use trafego_tests::*;

const TOKEN: &str = "cf-outcomes-token-0123456789abcdef";

async fn fake() -> FakeCloudflare {
    FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com"))
        .await
        .unwrap()
}

fn create(id: &str, name: &str, content: &str) -> Change {
    Change {
        kind: Some(change::Kind::Create(RecordInput {
            r#type: "A".into(),
            name: name.into(),
            content: content.into(),
            ttl: 300,
            ..Default::default()
        })),
        change_id: id.into(),
        group: String::new(),
    }
}

async fn apply(
    c: &mut CacheServiceClient<tonic::transport::Channel>,
    changes: Vec<Change>,
) -> ApplyChangesResponse {
    c.apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap()
        .into_inner()
}

async fn outcomes(
    c: &mut CacheServiceClient<tonic::transport::Channel>,
    ids: &[&str],
) -> GetChangeOutcomesResponse {
    c.get_change_outcomes(GetChangeOutcomesRequest {
        change_ids: ids.iter().map(|s| s.to_string()).collect(),
        wait_ms: 0,
    })
    .await
    .unwrap()
    .into_inner()
}

fn state(r: &ChangeResult) -> ChangeState {
    ChangeState::try_from(r.state).unwrap()
}

#[tokio::test]
async fn a_batch_whose_answer_is_lost_is_settled_by_looking_not_sent_again() {
    let fake = fake().await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    // Cloudflare applies the batch; the answer is lost on the way back.
    fake.lose_write_answers(1, LostAnswer::Status(502));
    let r = apply(
        &mut c,
        vec![
            create("c1", "l1.example.com", "192.0.2.1"),
            create("c2", "l2.example.com", "192.0.2.2"),
            create("c3", "l3.example.com", "192.0.2.3"),
        ],
    )
    .await;
    assert_eq!(r.succeeded, 3, "{r:?}");
    assert!(r.results.iter().all(|x| state(x) == ChangeState::Applied));
    assert!(r.results.iter().all(|x| x.record.is_some()), "{r:?}");
    let s = fake.stats();
    assert_eq!(s.batch, 1, "sent once: {s:?}");
    assert_eq!(s.answers_lost, 1);
    assert!(s.list >= 1, "settled by a read: {s:?}");
    assert_eq!(fake.count(), 3, "no duplicate");
    // The journal holds the outcome, with the record.
    let o = outcomes(&mut c, &["c1", "c2", "c3"]).await;
    assert!(!o.journal_id.is_empty());
    for (x, id) in o.outcomes.iter().zip(["c1", "c2", "c3"]) {
        assert_eq!(x.change_id, id);
        assert_eq!(x.state, ChangeState::Applied as i32, "{x:?}");
        let rec = x.record.as_ref().expect("record");
        assert!(fake.get(&rec.record_id).is_some());
        assert_eq!(x.record_id, rec.record_id);
    }
}

#[tokio::test]
async fn a_lost_write_found_absent_is_sent_again_after_the_look() {
    let fake = fake().await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    // The next request (the batch) fails with 502 without being applied.
    fake.fail_next(1, 502);
    let r = apply(
        &mut c,
        vec![
            create("a1", "s1.example.com", "192.0.2.1"),
            create("a2", "s2.example.com", "192.0.2.2"),
        ],
    )
    .await;
    assert_eq!(r.succeeded, 2, "{r:?}");
    let s = fake.stats();
    assert_eq!(
        s.batch, 1,
        "the failed batch never reached the endpoint: {s:?}"
    );
    assert_eq!(s.faults, 1);
    assert_eq!(fake.count(), 2, "exactly once each");
}

#[tokio::test]
async fn a_change_id_is_applied_once_however_often_it_is_sent() {
    let fake = fake().await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    let first = apply(&mut c, vec![create("once", "o.example.com", "192.0.2.1")]).await;
    assert_eq!(state(&first.results[0]), ChangeState::Applied);
    fake.reset_stats();
    let again = apply(&mut c, vec![create("once", "o.example.com", "192.0.2.1")]).await;
    assert_eq!(state(&again.results[0]), ChangeState::Applied);
    assert_eq!(
        again.results[0].record_id, first.results[0].record_id,
        "the recorded result"
    );
    let s = fake.stats();
    assert_eq!(s.batch + s.create, 0, "nothing sent again: {s:?}");
    assert_eq!(fake.count(), 1);
    // The same id for another change is refused.
    let other = apply(&mut c, vec![create("once", "o.example.com", "192.0.2.9")]).await;
    assert_eq!(state(&other.results[0]), ChangeState::Failed);
    assert_eq!(other.results[0].code, tonic::Code::InvalidArgument as i32);
    assert!(other.results[0].message.contains("different change"));
    assert_eq!(fake.count(), 1);
    // A change refused by the provider may be sent again under its id.
    fake.fail_writes_for_name("bad.example.com", 9005, 400);
    let refused = apply(
        &mut c,
        vec![create("retry", "bad.example.com", "192.0.2.1")],
    )
    .await;
    assert_eq!(state(&refused.results[0]), ChangeState::Failed);
    let o = outcomes(&mut c, &["retry"]).await;
    assert_eq!(o.outcomes[0].state, ChangeState::Failed as i32);
    fake.clear_faults();
    let ok = apply(
        &mut c,
        vec![create("retry", "bad.example.com", "192.0.2.1")],
    )
    .await;
    assert_eq!(state(&ok.results[0]), ChangeState::Applied, "{ok:?}");
}

#[tokio::test]
async fn change_ids_are_checked_at_the_edge() {
    let fake = fake().await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    for (changes, field) in [
        (
            vec![create("../x", "a.example.com", "192.0.2.1")],
            "changes[0].change_id",
        ),
        (
            vec![
                create("dup", "a.example.com", "192.0.2.1"),
                create("dup", "b.example.com", "192.0.2.1"),
            ],
            "changes[1].change_id",
        ),
    ] {
        let e = c
            .apply_changes(ApplyChangesRequest { changes })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(field), "{e:?}");
    }
    let e = c
        .get_change_outcomes(GetChangeOutcomesRequest {
            change_ids: vec!["a b".into()],
            wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("change_ids[0]"), "{e:?}");
    let e = c
        .get_change_outcomes(GetChangeOutcomesRequest {
            change_ids: vec![],
            wait_ms: 600_000,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("wait_ms"), "{e:?}");
    assert_eq!(fake.count(), 0, "nothing written");
}

#[tokio::test]
async fn unknown_ids_are_unknown_and_the_journal_id_survives_restarts_of_the_same_database() {
    let fake = fake().await;
    let dir = tempdir();
    let url = fake.base_url();
    let args = [
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        url.as_str(),
        "--cloudflare-token",
        TOKEN,
    ];
    let cache = start_cache_in(dir.path(), &args).await;
    let mut c = cache_client(&cache).await;
    let o = outcomes(&mut c, &["never-sent"]).await;
    assert_eq!(o.outcomes[0].state, ChangeState::Unknown as i32);
    let journal = o.journal_id.clone();
    let st = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.journal_id, journal);
    apply(&mut c, vec![create("kept", "k.example.com", "192.0.2.1")]).await;
    cache.shutdown().await.unwrap();
    let cache = start_cache_in(dir.path(), &args).await;
    let mut c = cache_client(&cache).await;
    let o = outcomes(&mut c, &["kept"]).await;
    assert_eq!(o.journal_id, journal, "same database, same journal");
    assert_eq!(o.outcomes[0].state, ChangeState::Applied as i32);
    cache.shutdown().await.unwrap();
    // A new database is a new journal: its UNKNOWN vouches for nothing older.
    let other = tempdir();
    let cache = start_cache_in(other.path(), &args).await;
    let mut c = cache_client(&cache).await;
    let o = outcomes(&mut c, &["kept"]).await;
    assert_eq!(o.outcomes[0].state, ChangeState::Unknown as i32);
    assert_ne!(o.journal_id, journal);
}
