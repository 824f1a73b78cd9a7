//! Reading Route53: the hosted zone's id (ListHostedZonesByName when it is
//! not configured), the whole zone page by page (`ListResourceRecordSets`
//! from `StartRecordName`/`StartRecordType` on, following `NextRecordName`,
//! `NextRecordType` and `NextRecordIdentifier` while `IsTruncated`), and one
//! record set at a time for the targeted reads that settle lost answers and
//! stale record sets. Record sets are turned into records here; a listing is
//! whole or an error, never part of a zone.

use std::sync::atomic::AtomicU64;

use reqwest::Method;

use super::super::ProviderError;
use super::super::http::Call;
use super::wire::{self, SetXml};
use super::{API_VERSION, Key, Route53Provider, Rrset, bare_zone_id, records_of, simple_rrset};

/// More pages than this is taken as a broken answer, not a zone.
const MAX_PAGES: u32 = 100_000;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Start {
    name: Option<String>,
    rtype: Option<String>,
    identifier: Option<String>,
}

/// One page: its record sets, and where the next starts if there is one.
struct Page {
    sets: Vec<SetXml>,
    next: Option<Start>,
}

/// Why a listed record set is never written, if it is not a simple one.
fn read_only(set: &SetXml) -> Option<&'static str> {
    if set.alias.is_some() {
        Some("a Route53 alias record set")
    } else if set.set_identifier.is_some() {
        Some("a Route53 routing-policy record set (weighted, latency, failover, geolocation…)")
    } else if set.traffic_policy.is_some() {
        Some("a record set of a Route53 traffic policy")
    } else if set.rtype == "SOA" {
        Some("the zone's SOA")
    } else {
        None
    }
}

/// A listed record set as the records the cache holds. An alias is one
/// record whose content is its target's name (TTL 1, "automatic": the
/// target's); a routing-policy set's records have ids of their own set
/// identifier, so weighted sets of equal values stay apart.
fn rrset_of(set: SetXml) -> (Key, Rrset) {
    let key = (
        wire::name_of(&set.name),
        set.rtype.trim().to_ascii_uppercase(),
    );
    let why = read_only(&set);
    let values: Vec<String> = set
        .records
        .map(|r| r.records.into_iter().map(|v| v.value).collect())
        .unwrap_or_default();
    if let Some(alias) = &set.alias {
        let target = wire::name_of(&alias.dns_name);
        let comment = format!(
            "Route53 alias (zone {}), never written",
            alias.hosted_zone_id
        );
        let records = records_of(&key, 1, &[target], &comment)
            .into_iter()
            .map(|mut r| {
                r.content = wire::name_of(&alias.dns_name);
                r
            })
            .collect();
        return (
            key,
            Rrset {
                ttl: 0,
                values: Vec::new(),
                records,
                read_only: why,
            },
        );
    }
    let ttl = set.ttl.unwrap_or(0);
    match (&set.set_identifier, why) {
        (Some(ident), _) => {
            let comment = format!("Route53 routing policy {ident:?}, never written");
            let mut records = records_of(&key, ttl, &values, &comment);
            for r in &mut records {
                r.id = super::derived_id(&key.1, &key.0, &format!("{}\0{ident}", r.content));
            }
            (
                key,
                Rrset {
                    ttl,
                    values,
                    records,
                    read_only: why,
                },
            )
        }
        (None, why) => {
            let mut rs = simple_rrset(&key, ttl, values);
            rs.read_only = why;
            (key, rs)
        }
    }
}

/// Listed record sets grouped by key, in listing order. Several sets at one
/// key (routing policies) become one read-only set holding all their records.
fn group(sets: Vec<SetXml>) -> Vec<(Key, Rrset)> {
    let mut out: Vec<(Key, Rrset)> = Vec::with_capacity(sets.len());
    for set in sets {
        let (key, rs) = rrset_of(set);
        match out.last_mut() {
            Some((k, prev)) if *k == key => {
                prev.read_only = prev.read_only.or(rs.read_only).or(Some(
                    "one of several Route53 record sets of one name and type",
                ));
                prev.records.extend(rs.records);
                prev.values.extend(rs.values);
            }
            _ => out.push((key, rs)),
        }
    }
    out
}

impl Route53Provider {
    /// Sends a read and parses its answer.
    async fn read<T: for<'de> serde::Deserialize<'de>>(
        &self,
        url: reqwest::Url,
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
        wire::parse(&bytes, &what).inspect_err(|_| self.http.count_error())
    }

    /// The hosted zone id: configured, or looked up by name once and remembered.
    pub(super) async fn zone_id(&self, reqs: &AtomicU64) -> Result<&str, ProviderError> {
        let id = self
            .zone_id
            .get_or_try_init(|| async {
                let zone = self.cfg.zone.as_str();
                let dns_name = wire::wire_name(zone);
                let url = self.base.url(
                    &[API_VERSION, "hostedzonesbyname"],
                    &[("dnsname", dns_name.as_str()), ("maxitems", "10")],
                );
                let found: wire::ZonesResponse = self.read(url, "zone", reqs).await?;
                // The answer starts at the name: later zones may follow.
                let named: Vec<_> = found
                    .zones
                    .zones
                    .into_iter()
                    .filter(|z| wire::name_of(&z.name) == zone)
                    .collect();
                let [one] = named.as_slice() else {
                    return Err(if named.is_empty() {
                        ProviderError::NotFound(format!("no Route53 hosted zone named {zone}"))
                    } else {
                        // Never guess between a public and a private zone (or two
                        // private ones): the wrong one would be managed silently.
                        let ids: Vec<String> = named
                            .iter()
                            .map(|z| {
                                let kind = if z.config.as_ref().is_some_and(|c| c.private_zone) {
                                    "private"
                                } else {
                                    "public"
                                };
                                format!("{} {kind}", bare_zone_id(&z.id).unwrap_or_default())
                            })
                            .collect();
                        ProviderError::Invalid(format!(
                            "{} Route53 hosted zones are named {zone} ({}); set ROUTE53_ZONE_ID \
                             to the one to manage and serve that zone alone (with DNS_ZONES each \
                             zone's name must be unique in the account)",
                            named.len(),
                            ids.join(", ")
                        ))
                    });
                };
                let id = bare_zone_id(&one.id).ok_or_else(|| {
                    ProviderError::Other(format!(
                        "zone {zone}: Route53 gave a malformed hosted zone id"
                    ))
                })?;
                tracing::info!(zone, zone_id = %id, "found the Route53 hosted zone");
                Ok(id)
            })
            .await?;
        Ok(id.as_str())
    }

    /// One page of ListResourceRecordSets from `start`, `max` sets long.
    async fn page(
        &self,
        zone_id: &str,
        start: &Start,
        max: u32,
        reqs: &AtomicU64,
    ) -> Result<Page, ProviderError> {
        let max = max.to_string();
        let mut query: Vec<(&str, &str)> = vec![("maxitems", max.as_str())];
        if let Some(n) = &start.name {
            query.push(("name", n));
        }
        if let Some(t) = &start.rtype {
            query.push(("type", t));
        }
        if let Some(i) = &start.identifier {
            query.push(("identifier", i));
        }
        let url = self
            .base
            .url(&[API_VERSION, "hostedzone", zone_id, "rrset"], &query);
        let page: wire::ListResponse = self.read(url, "list", reqs).await?;
        let next = match (page.truncated, page.next_name) {
            (true, Some(name)) => Some(Start {
                name: Some(name),
                rtype: page.next_type,
                identifier: page.next_identifier,
            }),
            (true, None) => {
                self.http.count_error();
                return Err(ProviderError::Other(
                    "Route53 said the listing goes on but not where".into(),
                ));
            }
            (false, _) => None,
        };
        Ok(Page {
            sets: page.sets.sets,
            next,
        })
    }

    /// Every record set of the zone, or an error.
    pub(super) async fn list_sets(
        &self,
        reqs: &AtomicU64,
    ) -> Result<Vec<(Key, Rrset)>, ProviderError> {
        let zone_id = self.zone_id(reqs).await?;
        let mut start = Start::default();
        let mut sets = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.page(zone_id, &start, self.cfg.max_items, reqs).await?;
            sets.extend(page.sets);
            match page.next {
                Some(next) if next == start => {
                    return Err(ProviderError::Other(
                        "Route53's listing did not move on from one page to the next".into(),
                    ));
                }
                Some(next) => start = next,
                None => return Ok(group(sets)),
            }
        }
        Err(ProviderError::Other(format!(
            "the listing runs past {MAX_PAGES} pages; refusing to read that many"
        )))
    }

    /// Reads one record set now (`None`: the zone holds none at that key) and
    /// remembers it for the writes that follow.
    pub(super) async fn read_set(
        &self,
        key: &Key,
        reqs: &AtomicU64,
    ) -> Result<Option<Rrset>, ProviderError> {
        let zone_id = self.zone_id(reqs).await?;
        let (name, rtype) = key;
        let mut start = Start {
            name: Some(wire::wire_name(name)),
            rtype: Some(rtype.clone()),
            identifier: None,
        };
        let mut sets = Vec::new();
        // The page starts at the key; read on only while it holds more sets
        // of the key (routing-policy sets), in small pages.
        for _ in 0..MAX_PAGES {
            let page = self.page(zone_id, &start, 100, reqs).await?;
            let more = page.sets.last().is_some_and(|s| {
                wire::name_of(&s.name) == *name && s.rtype.eq_ignore_ascii_case(rtype)
            });
            sets.extend(page.sets.into_iter().filter(|s| {
                wire::name_of(&s.name) == *name && s.rtype.eq_ignore_ascii_case(rtype)
            }));
            match page.next {
                Some(next) if more && next != start => start = next,
                _ => break,
            }
        }
        let rs = group(sets).into_iter().next().map(|(_, rs)| rs);
        self.snapshot().put(key.clone(), rs.clone());
        Ok(rs)
    }
}
