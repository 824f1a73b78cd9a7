//! Writing to a DigitalOcean domain: one request per change (`POST` to
//! create, `PUT` to update, `DELETE`), sent in order within the budget, since
//! DigitalOcean has no batch endpoint. A change whose answer was lost is
//! reported as such and never sent again from here; the changes after it
//! still go (each stands alone). Once DigitalOcean refuses the token, rate
//! limits past waiting, or cannot be reached, the rest are not sent.

use std::sync::atomic::AtomicU64;

use reqwest::Method;
use serde::Serialize;

use super::DigitalOceanProvider;
use super::wire::{RecordAnswer, WriteBody};
use crate::provider::http::{Call, sanitize};
use crate::provider::{ProviderError, WriteOp, WriteResult};

/// Whether an error says nothing about the change itself but about the
/// provider, so the changes after it would fail the same way.
fn provider_wide(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Unavailable(_)
            | ProviderError::RateLimited { .. }
            | ProviderError::Unauthorized(_)
    )
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value)
        .map_err(|e| ProviderError::Other(format!("cannot encode the request: {e}")))
}

/// A record id as DigitalOcean's integer: validation checked its shape, and
/// anything else never reaches a URL.
fn integer_id(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty() && id.len() <= 19 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(ProviderError::Invalid(format!(
            "record id {id:?} is not a DigitalOcean id (decimal digits)"
        )))
    }
}

impl DigitalOceanProvider {
    /// Sends a write and reads its record, if it answers with one.
    async fn write(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&[u8]>,
        operation: &'static str,
        reqs: &AtomicU64,
    ) -> WriteResult {
        let url = self.base.url(segments, &[]);
        let what = format!("{method} {}", url.path());
        let answers = method != Method::DELETE;
        let call = Call {
            method,
            url,
            body,
            operation,
        };
        let bytes = self.http.send(call, reqs).await?;
        if !answers {
            return Ok(None);
        }
        let answer: RecordAnswer = serde_json::from_slice(&bytes).map_err(|e| {
            self.http.count_error();
            // Applied, but what it produced cannot be read: settled by looking.
            ProviderError::Unanswered(sanitize(
                &format!("{what}: unreadable answer: {e}"),
                &self.cfg.token,
            ))
        })?;
        Ok(Some(answer.domain_record.into_provider(self.domain())))
    }

    /// One change, one request.
    async fn apply_one(&self, op: &WriteOp, reqs: &AtomicU64) -> WriteResult {
        let domain = self.domain();
        match op {
            WriteOp::Create(input) => {
                let body = encode(&WriteBody::new(input, &self.cfg.domain)?)?;
                let segs = ["domains", domain, "records"];
                self.write(Method::POST, &segs, Some(&body), "create", reqs)
                    .await
            }
            WriteOp::Update { id, input } => {
                let body = encode(&WriteBody::new(input, &self.cfg.domain)?)?;
                let segs = ["domains", domain, "records", integer_id(id)?];
                self.write(Method::PUT, &segs, Some(&body), "update", reqs)
                    .await
            }
            WriteOp::Delete { id } => {
                let segs = ["domains", domain, "records", integer_id(id)?];
                self.write(Method::DELETE, &segs, None, "delete", reqs)
                    .await
            }
        }
    }

    /// Every change in order, one result each.
    pub(super) async fn apply_all(&self, ops: Vec<WriteOp>, reqs: &AtomicU64) -> Vec<WriteResult> {
        let mut results: Vec<WriteResult> = Vec::with_capacity(ops.len());
        let mut stop: Option<ProviderError> = None;
        for op in &ops {
            if let Some(e) = &stop {
                results.push(Err(e.clone()));
                continue;
            }
            let r = self.apply_one(op, reqs).await;
            if let Err(e) = &r
                && provider_wide(e)
            {
                tracing::warn!(
                    error = %e,
                    left = ops.len() - results.len() - 1,
                    "DigitalOcean refused a write for every write; the rest are not sent",
                );
                stop = Some(e.clone());
            }
            results.push(r);
        }
        results
    }
}
