//! Reading PowerDNS: the whole zone in one `GET` (PowerDNS does not page),
//! one name's RRsets with the `rrset_name` filter, and one (name, type) for
//! settling a write whose answer was lost.
//!
//! A read turns PowerDNS's RRsets into the provider's snapshot form and into
//! cache records: names lowercase without the dot, content canonical, the
//! priority apart, ids derived from type, name and content. The SOA is left
//! out (PowerDNS owns it); disabled records are kept in the snapshot but
//! never listed, since nothing serves them. It must never return part of a
//! zone as the whole: a body that does not parse fails the read.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use reqwest::Method;

use super::wire::{self, WireZone};
use super::{Key, PowerDnsProvider, RRset, Rec};
use crate::provider::http::sanitize;
use crate::provider::{ProviderError, ProviderRecord, derived_id};

/// RRsets read, by place.
pub(crate) type RRsets = HashMap<Key, RRset>;

impl RRset {
    /// Its served records as the cache holds them.
    pub fn provider_records<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Iterator<Item = ProviderRecord> + 'a {
        self.records.iter().map(move |r| ProviderRecord {
            id: r.id.clone(),
            rtype: key.1.clone(),
            name: key.0.clone(),
            content: r.content.clone(),
            ttl: self.ttl,
            proxied: false,
            priority: r.priority,
            comment: self.comment.clone(),
        })
    }
}

/// A served record of type `rtype` at `name` from its PowerDNS content.
pub(crate) fn rec(rtype: &str, name: &str, wire_content: &str) -> Rec {
    let (content, priority) = wire::from_wire(rtype, wire_content);
    Rec {
        id: derived_id(rtype, name, &content),
        content,
        priority,
        wire: wire_content.to_string(),
    }
}

/// The RRsets of a zone answer, but the SOA and entries holding no record.
/// `only` keeps those at one canonical name (the `rrset_name` filter of 4.7
/// also returns comment-only entries of other names).
pub(crate) fn parse_zone(
    body: &[u8],
    what: &str,
    key: &str,
    only: Option<&str>,
) -> Result<RRsets, ProviderError> {
    let zone: WireZone = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Other(sanitize(&format!("{what}: unreadable answer: {e}"), key))
    })?;
    let mut out: RRsets = HashMap::with_capacity(zone.rrsets.len());
    for set in zone.rrsets {
        let rtype = set.rtype.to_ascii_uppercase();
        let name = wire::canonical_name(&set.name);
        if rtype == "SOA" || set.records.is_empty() || only.is_some_and(|n| n != name) {
            continue;
        }
        let entry = out.entry((name.clone(), rtype.clone())).or_default();
        entry.ttl = set.ttl;
        let comments: Vec<&str> = set
            .comments
            .iter()
            .map(|c| c.content.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        entry.comment = sanitize(&comments.join("; "), "");
        for r in set.records {
            if r.disabled {
                entry.disabled.push(r.content);
            } else {
                entry.records.push(rec(&rtype, &name, &r.content));
            }
        }
    }
    Ok(out)
}

impl PowerDnsProvider {
    fn what(&self, method: &Method) -> String {
        format!("{method} {}", self.zone_url.path())
    }

    /// The whole zone, read now.
    pub(crate) async fn read_zone(&self, reqs: &AtomicU64) -> Result<RRsets, ProviderError> {
        let body = self.call(Method::GET, &[], None, "list", reqs).await?;
        parse_zone(&body, &self.what(&Method::GET), &self.cfg.api_key, None).inspect_err(|_| {
            self.http.count_error();
        })
    }

    /// Every RRset at one canonical `name` (of `rtype` only, when given),
    /// read now. PowerDNS's filter leaves disabled records out.
    pub(crate) async fn read_name(
        &self,
        name: &str,
        rtype: Option<&str>,
        reqs: &AtomicU64,
    ) -> Result<RRsets, ProviderError> {
        let wire_name = wire::wire_name(name);
        let mut query = vec![("rrset_name", wire_name.as_str())];
        if let Some(t) = rtype {
            query.push(("rrset_type", t));
        }
        let body = self.call(Method::GET, &query, None, "read", reqs).await?;
        let mut sets = parse_zone(
            &body,
            &self.what(&Method::GET),
            &self.cfg.api_key,
            Some(name),
        )
        .inspect_err(|_| self.http.count_error())?;
        if let Some(t) = rtype {
            sets.retain(|k, _| k.1 == t);
        }
        Ok(sets)
    }

    /// Reads the whole zone and makes it the snapshot, unless a write was
    /// committed while it was read (the snapshot then already holds more).
    pub(crate) async fn list_all(
        &self,
        reqs: &AtomicU64,
    ) -> Result<Vec<ProviderRecord>, ProviderError> {
        let writes = self.snap().writes;
        let sets = self.read_zone(reqs).await?;
        let mut records: Vec<ProviderRecord> =
            Vec::with_capacity(sets.values().map(|s| s.records.len()).sum());
        for (key, set) in &sets {
            records.extend(set.provider_records(key));
        }
        let mut snap = self.snap();
        if snap.writes == writes {
            snap.ids.clear();
            snap.rrsets.clear();
            snap.uncertain.clear();
            for (key, set) in sets {
                snap.put(&key, set);
            }
            snap.seeded = true;
        }
        Ok(records)
    }

    /// What PowerDNS serves at (`name`, `rtype`) now: the targeted read that
    /// settles a lost answer. An RRset a lost `PATCH` left uncertain takes
    /// what was read (its disabled records, which the filter hides, kept).
    pub(crate) async fn lookup_one(
        &self,
        name: &str,
        rtype: &str,
        reqs: &AtomicU64,
    ) -> Result<Vec<ProviderRecord>, ProviderError> {
        let mut sets = self.read_name(name, Some(rtype), reqs).await?;
        let key: Key = (name.to_string(), rtype.to_string());
        let set = sets.remove(&key).unwrap_or_default();
        let held: Vec<ProviderRecord> = set.provider_records(&key).collect();
        let mut snap = self.snap();
        if snap.uncertain.remove(&key) {
            let mut set = set;
            set.disabled = snap
                .rrsets
                .get(&key)
                .map(|s| s.disabled.clone())
                .unwrap_or_default();
            snap.put(&key, set);
        }
        Ok(held)
    }
}
