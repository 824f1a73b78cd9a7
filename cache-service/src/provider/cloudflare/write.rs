//! Applying writes: chunks of `batch_size` through the batch endpoint, a
//! chunk the endpoint refuses as a whole written op by op, single ops through
//! the single-record endpoints, and no further chunk sent once the provider
//! as a whole has failed or an answer was lost.
//!
//! Ops of one group (a record and its ownership marker) are never split:
//! chunks are packed from whole groups, and a refused chunk falls back group
//! by group, a group of several ops sent as a batch of its own (the batch
//! endpoint is all-or-nothing), never op by op.

use std::ops::Range;
use std::sync::atomic::AtomicU64;

use reqwest::Method;
use serde::Serialize;
use serde::de::IgnoredAny;

use super::CloudflareProvider;
use super::wire::{BatchBody, BatchResult, CfRecord, IdOnly, WriteBody};
use crate::provider::{ProviderError, WriteOp, WriteResult};

/// Whether a batch refused with this error should be retried op by op: the
/// endpoint refused the chunk as a whole (a 4xx other than 429 or auth).
pub(super) fn refused_as_a_whole(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Invalid(_) | ProviderError::NotFound(_) | ProviderError::Conflict(_)
    )
}

/// Whether an error says nothing about the op itself but about the provider,
/// so later chunks would fail the same way and are not tried.
fn provider_wide(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Unavailable(_)
            | ProviderError::RateLimited { .. }
            | ProviderError::Unauthorized(_)
    )
}

impl CloudflareProvider {
    /// One write through the single-record endpoints.
    async fn apply_one(&self, zone_id: &str, op: &WriteOp, reqs: &AtomicU64) -> WriteResult {
        match op {
            WriteOp::Create(input) => {
                let body = encode(&WriteBody::new(None, input))?;
                let url = self.url(&["zones", zone_id, "dns_records"], &[]);
                let (r, _): (CfRecord, _) = self.call(Method::POST, url, Some(&body), reqs).await?;
                Ok(Some(r.into_provider()))
            }
            WriteOp::Update { id, input } => {
                let body = encode(&WriteBody::new(None, input))?;
                let url = self.url(&["zones", zone_id, "dns_records", id], &[]);
                let (r, _): (CfRecord, _) = self.call(Method::PUT, url, Some(&body), reqs).await?;
                Ok(Some(r.into_provider()))
            }
            WriteOp::Delete { id } => {
                let url = self.url(&["zones", zone_id, "dns_records", id], &[]);
                let _: (Option<IgnoredAny>, _) =
                    self.call_opt(Method::DELETE, url, None, reqs).await?;
                Ok(None)
            }
        }
    }

    /// One chunk through the batch endpoint; per-op results in op order.
    async fn apply_batch(
        &self,
        zone_id: &str,
        ops: &[WriteOp],
        reqs: &AtomicU64,
    ) -> Result<Vec<WriteResult>, ProviderError> {
        let mut body = BatchBody::default();
        // Where each op's answer is: (kind, index within kind).
        let mut slots: Vec<(u8, usize)> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Delete { id } => {
                    slots.push((0, body.deletes.len()));
                    body.deletes.push(IdOnly { id });
                }
                WriteOp::Update { id, input } => {
                    slots.push((1, body.puts.len()));
                    body.puts.push(WriteBody::new(Some(id), input));
                }
                WriteOp::Create(input) => {
                    slots.push((2, body.posts.len()));
                    body.posts.push(WriteBody::new(None, input));
                }
            }
        }
        let bytes = encode(&body)?;
        let url = self.url(&["zones", zone_id, "dns_records", "batch"], &[]);
        let (result, _): (BatchResult, _) =
            self.call(Method::POST, url, Some(&bytes), reqs).await?;
        let deletes = result.deletes.map_or(0, |d| d.len());
        let mut puts: Vec<Option<CfRecord>> = result
            .puts
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect();
        let mut posts: Vec<Option<CfRecord>> = result
            .posts
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect();
        let missing = || ProviderError::Other("the batch answer did not report this write".into());
        Ok(slots
            .into_iter()
            .map(|(kind, i)| match kind {
                0 if i < deletes => Ok(None),
                1 => puts
                    .get_mut(i)
                    .and_then(Option::take)
                    .map(|r| Some(r.into_provider()))
                    .ok_or_else(missing),
                2 => posts
                    .get_mut(i)
                    .and_then(Option::take)
                    .map(|r| Some(r.into_provider()))
                    .ok_or_else(missing),
                _ => Err(missing()),
            })
            .collect())
    }

    /// Applies `ops`, each of `units` (adjacent ops of one group) kept in
    /// one request.
    pub(super) async fn apply_all(
        &self,
        ops: Vec<WriteOp>,
        units: Vec<Range<usize>>,
        reqs: &AtomicU64,
    ) -> Vec<WriteResult> {
        if ops.is_empty() {
            return Vec::new();
        }
        let zone_id = match self.zone_id(reqs).await {
            Ok(id) => id,
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<WriteResult> = Vec::with_capacity(ops.len());
        let mut stop: Option<ProviderError> = None;
        for range in crate::provider::pack(&units, self.cfg.batch_size) {
            let chunk = &ops[range.clone()];
            if let Some(e) = &stop {
                results.extend(chunk.iter().map(|_| Err(e.clone())));
                continue;
            }
            if let [op] = chunk {
                let r = self.apply_one(zone_id, op, reqs).await;
                match &r {
                    Err(ProviderError::Unanswered(m)) => {
                        stop = Some(ProviderError::Unavailable(format!(
                            "not sent: an earlier write's answer was lost ({m})"
                        )));
                    }
                    Err(e) if provider_wide(e) => stop = Some(e.clone()),
                    _ => {}
                }
                results.push(r);
                continue;
            }
            match self.apply_batch(zone_id, chunk, reqs).await {
                Ok(rs) => results.extend(rs),
                Err(e) if refused_as_a_whole(&e) => {
                    tracing::info!(
                        ops = chunk.len(),
                        error = %e,
                        "Cloudflare refused the batch; writing its records one by one",
                    );
                    let inside: Vec<&Range<usize>> = units
                        .iter()
                        .filter(|u| range.start <= u.start && u.end <= range.end)
                        .collect();
                    if let [_one_group] = inside.as_slice() {
                        // The chunk was one group: refused whole, it fails whole.
                        results.extend(chunk.iter().map(|_| Err(e.clone())));
                        continue;
                    }
                    for u in inside {
                        let group = &ops[u.clone()];
                        if let [op] = group {
                            results.push(self.apply_one(zone_id, op, reqs).await);
                            continue;
                        }
                        // A group goes whole or not at all.
                        match self.apply_batch(zone_id, group, reqs).await {
                            Ok(rs) => results.extend(rs),
                            Err(e) => results.extend(group.iter().map(|_| Err(e.clone()))),
                        }
                    }
                }
                Err(e) => {
                    if let ProviderError::Unanswered(m) = &e {
                        // Later chunks were never sent: say so plainly, so
                        // they are not taken for writes whose answer was lost.
                        stop = Some(ProviderError::Unavailable(format!(
                            "not sent: an earlier batch's answer was lost ({m})"
                        )));
                    } else if provider_wide(&e) {
                        stop = Some(e.clone());
                    }
                    results.extend(chunk.iter().map(|_| Err(e.clone())));
                }
            }
        }
        results
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value)
        .map_err(|e| ProviderError::Other(format!("cannot encode the request: {e}")))
}
