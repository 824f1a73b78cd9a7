//! Reading a whole zone: page by page, a few pages in flight, falling back to
//! smaller pages when Cloudflare refuses a size, and reading again (once)
//! when the zone changed under the listing, so a partial listing is never
//! returned as if it were whole.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;

use super::wire::{CfRecord, ResultInfo};
use super::{CloudflareProvider, MIN_PER_PAGE};
use crate::provider::{ProviderError, ProviderRecord};

/// Pages fetched at once once the first page has told how many there are:
/// enough to hide latency, few enough to keep memory and the budget modest.
const LIST_CONCURRENCY: usize = 4;

/// More pages than this is taken as a broken `result_info`, not a zone.
const MAX_PAGES: u32 = 1_000_000;

impl CloudflareProvider {
    /// One listing page at `per_page`.
    async fn fetch_page(
        &self,
        zone_id: &str,
        page: u32,
        per_page: u32,
        reqs: &AtomicU64,
    ) -> Result<(Vec<CfRecord>, ResultInfo), ProviderError> {
        let page_s = page.to_string();
        let per_page_s = per_page.to_string();
        let url = self.url(
            &["zones", zone_id, "dns_records"],
            &[("page", &page_s), ("per_page", &per_page_s)],
        );
        let (records, info) = self.call(Method::GET, url, None, reqs).await?;
        Ok((records, info.unwrap_or_default()))
    }

    /// Reads the whole zone at `per_page` (records may repeat), or fails.
    /// Also returns the record count the last page reported, if any, and
    /// whether the pages disagreed about it (the zone changed meanwhile).
    async fn list_at(
        &self,
        zone_id: &str,
        per_page: u32,
        reqs: &AtomicU64,
    ) -> Result<(Vec<ProviderRecord>, Option<u64>, bool), ProviderError> {
        let (first, info) = self.fetch_page(zone_id, 1, per_page, reqs).await?;
        let mut total_count = info.total_count;
        let first_count = info.total_count;
        let mut changed = false;
        let mut out: Vec<ProviderRecord> = Vec::new();
        let mut last_len = first.len();
        out.extend(first.into_iter().map(CfRecord::into_provider));
        match info.total_pages {
            Some(total) => {
                if total > MAX_PAGES {
                    return Err(ProviderError::Other(format!(
                        "listing reports {total} pages; refusing to read that many"
                    )));
                }
                out.reserve(
                    last_len
                        .saturating_mul(
                            usize::try_from(total.saturating_sub(1)).unwrap_or(usize::MAX),
                        )
                        .min(1 << 20),
                );
                let mut done = 1u32;
                let mut known = total;
                while done < known {
                    // In page order, a few in flight, each page converted as it
                    // arrives so only a few raw pages are ever held at once.
                    let mut pages = stream::iter((done + 1)..=known)
                        .map(|p| self.fetch_page(zone_id, p, per_page, reqs))
                        .buffered(LIST_CONCURRENCY);
                    done = known;
                    while let Some((records, info)) = pages.try_next().await? {
                        changed |= info.total_count.is_some() && info.total_count != first_count;
                        total_count = info.total_count.or(total_count);
                        if let Some(t) = info.total_pages
                            && t > known
                            && t <= MAX_PAGES
                        {
                            // The zone grew while we read it: read the new pages too.
                            known = t;
                        }
                        out.extend(records.into_iter().map(CfRecord::into_provider));
                    }
                }
            }
            None => {
                // No paging information: read on until a short or empty page.
                let size = usize::try_from(info.per_page.unwrap_or(per_page)).unwrap_or(usize::MAX);
                let mut page = 1u32;
                while last_len > 0 && last_len >= size && page < MAX_PAGES {
                    page += 1;
                    let (records, info) = self.fetch_page(zone_id, page, per_page, reqs).await?;
                    changed |= info.total_count.is_some() && info.total_count != first_count;
                    total_count = info.total_count.or(total_count);
                    last_len = records.len();
                    out.extend(records.into_iter().map(CfRecord::into_provider));
                }
            }
        }
        Ok((out, total_count, changed))
    }

    /// Reads the whole zone. Pages are read by offset, so records deleted by
    /// someone else during the listing can shift others past a page boundary.
    /// When the pages disagree about the zone's size, or the records read do
    /// not add up to it, the zone is read once more, and a second such listing
    /// fails (the cache then keeps its previous snapshot whole).
    pub(super) async fn list_all(
        &self,
        reqs: &AtomicU64,
    ) -> Result<Vec<ProviderRecord>, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (records, total_count, changed) = self.list_once(reqs).await?;
            match total_count {
                Some(expected)
                    if changed || u64::try_from(records.len()).ok() != Some(expected) =>
                {
                    if attempt >= 2 {
                        return Err(ProviderError::Unavailable(format!(
                            "the zone changed while it was listed: read {} records, the provider reports {expected}",
                            records.len()
                        )));
                    }
                    tracing::warn!(
                        read = records.len(),
                        expected,
                        "the zone changed during the listing; reading it again"
                    );
                }
                _ => return Ok(records),
            }
        }
    }

    async fn list_once(
        &self,
        reqs: &AtomicU64,
    ) -> Result<(Vec<ProviderRecord>, Option<u64>, bool), ProviderError> {
        let zone_id = self.zone_id(reqs).await?;
        let mut per_page = self.cfg.per_page;
        let (mut records, total_count, changed) = loop {
            match self.list_at(zone_id, per_page, reqs).await {
                Ok(r) => break r,
                Err(ProviderError::Invalid(msg)) if per_page > MIN_PER_PAGE => {
                    let next = (per_page / 2).max(MIN_PER_PAGE);
                    tracing::warn!(
                        per_page,
                        next,
                        error = %msg,
                        "Cloudflare refused the listing; halving the page size",
                    );
                    per_page = next;
                }
                Err(e) => return Err(e),
            }
        };
        let mut seen: HashSet<String> = HashSet::with_capacity(records.len());
        records.retain(|r| seen.insert(r.id.clone()));
        Ok((records, total_count, changed))
    }
}
