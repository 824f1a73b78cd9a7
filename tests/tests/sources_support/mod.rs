//! Helpers of the hostname-source end-to-end tests (sources_traefik.rs,
//! sources_docker.rs): reading a source's status from GetTrackerStatus and
//! waiting on it, or on the provider, instead of sleeping.

#![allow(dead_code)]

use std::time::Duration;

use trafego_proto::tracking::SourceStatus;
use trafego_tests::fake_cloudflare::FakeRecord;

use crate::tracking_support::{Env, eventually};

/// The status of source `name`.
pub async fn source(env: &mut Env, name: &str) -> SourceStatus {
    env.status()
        .await
        .sources
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no source {name} in the status"))
}

/// Waits (polling the status, bounded) until source `name`'s status
/// satisfies `pred`; returns it. On timeout the last status is shown.
pub async fn wait_source(
    env: &mut Env,
    name: &str,
    what: &str,
    pred: impl Fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = source(env, name).await;
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` more reads of `name` finished than `before` counted: a
/// read that began after whatever the test just changed has completed.
pub async fn wait_reads(env: &mut Env, name: &str, before: u64, n: u64) -> SourceStatus {
    let want = before + n;
    wait_source(env, name, &format!("{name}: {want} reads"), |s| {
        s.polls >= want
    })
    .await
}

/// Waits until the provider holds a record named `name`; returns them.
pub async fn wait_at_provider(env: &Env, name: &str) -> Vec<FakeRecord> {
    eventually(&format!("{name} at the provider"), || async {
        !env.at_provider(name).is_empty()
    })
    .await;
    env.at_provider(name)
}

/// Waits until the provider holds no record named `name`.
pub async fn wait_gone_from_provider(env: &Env, name: &str) {
    eventually(&format!("{name} gone from the provider"), || async {
        env.at_provider(name).is_empty()
    })
    .await;
}

/// `&str`s of `v`, for `Env::start`.
pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
