//! Reading a DigitalOcean domain: the whole listing, page by page following
//! `links.pages.next` until there is none, checked against `meta.total`; and
//! the targeted read (`?name=&type=`) that settles a write whose answer was
//! lost. Either every record or an error: never a partial listing.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::DigitalOceanProvider;
use super::wire::{DoRecord, ListAnswer};
use crate::provider::http::{Call, sanitize};
use crate::provider::{ProviderError, ProviderRecord};

/// More pages than this is taken as a broken `links`, not a domain.
const MAX_PAGES: u32 = 1_000_000;

/// Records read by following the pages, with the total the answers reported
/// and whether they disagreed about it (the domain changed meanwhile).
struct Pages {
    records: Vec<DoRecord>,
    total: Option<u64>,
    changed: bool,
}

impl DigitalOceanProvider {
    /// Sends a GET and reads its JSON answer.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        operation: &'static str,
        reqs: &AtomicU64,
    ) -> Result<T, ProviderError> {
        let what = format!("GET {}", url.path());
        let call = Call {
            method: Method::GET,
            url,
            body: None,
            operation,
        };
        let bytes = self.http.send(call, reqs).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            self.http.count_error();
            ProviderError::Other(sanitize(
                &format!("{what}: unreadable answer: {e}"),
                &self.cfg.token,
            ))
        })
    }

    /// Every record matching `filter` (none: the whole domain), following
    /// `links.pages.next`. Only the page number of a next link is taken; the
    /// URL is built on the configured root, so the token goes nowhere else.
    async fn pages(
        &self,
        filter: &[(&str, &str)],
        operation: &'static str,
        reqs: &AtomicU64,
    ) -> Result<Pages, ProviderError> {
        let per_page = self.cfg.per_page.to_string();
        let mut out = Pages {
            records: Vec::new(),
            total: None,
            changed: false,
        };
        let mut page = 1u32;
        loop {
            let page_s = page.to_string();
            let mut query = vec![("per_page", per_page.as_str()), ("page", page_s.as_str())];
            query.extend_from_slice(filter);
            let url = self
                .base
                .url(&["domains", self.domain(), "records"], &query);
            let path = url.path().to_string();
            let answer: ListAnswer = self.get_json(url, operation, reqs).await?;
            let total = answer.meta.as_ref().and_then(|m| m.total);
            if page > 1 && total.is_some() && total != out.total {
                out.changed = true;
            }
            out.total = total.or(out.total);
            let next = answer.next_page();
            if page == 1 {
                // The first page says how many there are: room for them all.
                let expected = total.and_then(|t| usize::try_from(t).ok()).unwrap_or(0);
                out.records.reserve(expected.min(1 << 20));
            }
            out.records.extend(answer.domain_records);
            let broken = |why: String| {
                self.http.count_error();
                ProviderError::Other(format!("GET {path} page {page}: {why}"))
            };
            match next {
                Ok(None) => return Ok(out),
                Ok(Some(n)) if n > page && n <= MAX_PAGES => page = n,
                Ok(Some(n)) => return Err(broken(format!("the next link names page {n}"))),
                Err(why) => return Err(broken(why)),
            }
        }
    }

    /// Reads the whole domain. Pages are read by offset, so records created
    /// or deleted by someone else during the listing can shift others across
    /// a page boundary: when the pages disagree about the total, or the
    /// records read do not add up to it, the domain is read once more, and a
    /// second such listing fails (the cache then keeps its snapshot whole).
    pub(super) async fn list_all(
        &self,
        reqs: &AtomicU64,
    ) -> Result<Vec<ProviderRecord>, ProviderError> {
        let domain = self.domain();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let read = self.pages(&[], "list", reqs).await?;
            let mut seen: HashSet<u64> = HashSet::with_capacity(read.records.len());
            let records: Vec<ProviderRecord> = read
                .records
                .into_iter()
                .filter(|r| seen.insert(r.id))
                .map(|r| r.into_provider(domain))
                .collect();
            match read.total {
                Some(expected)
                    if read.changed || u64::try_from(records.len()).ok() != Some(expected) =>
                {
                    if attempt >= 2 {
                        return Err(ProviderError::Unavailable(format!(
                            "the domain changed while it was listed: read {} records, \
                             DigitalOcean reports {expected}",
                            records.len()
                        )));
                    }
                    tracing::warn!(
                        read = records.len(),
                        expected,
                        "the domain changed during the listing; reading it again"
                    );
                }
                _ => return Ok(records),
            }
        }
    }

    /// What DigitalOcean holds at one fully qualified name and type now.
    pub(super) async fn lookup_at(
        &self,
        name: &str,
        rtype: &str,
        reqs: &AtomicU64,
    ) -> Result<Vec<ProviderRecord>, ProviderError> {
        let read = self
            .pages(&[("name", name), ("type", rtype)], "lookup", reqs)
            .await?;
        let domain = self.domain();
        Ok(read
            .records
            .into_iter()
            .map(|r| r.into_provider(domain))
            .filter(|r| r.name == name && r.rtype == rtype)
            .collect())
    }
}
