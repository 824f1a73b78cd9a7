//! external-dns's TXT registry, read at the provider for the import: which
//! records external-dns's registry gives to one owner id.
//!
//! A record is claimed when a registry TXT record with heritage
//! `external-dns` and `external-dns/owner=<ID>` names it, in the current
//! format (`<prefix><type>-<name>`, or the prefix's `%{record_type}`) or the
//! older one (`<prefix><name>`, every type at that name); the registry
//! records themselves are claimed with it, so they go when it goes. Names
//! and texts are read by [`crate::ownership::registry`], the one parser of
//! the format. A record named by another owner's entry is never claimed,
//! even if an entry of the given owner names it too, and records without an
//! entry are reported and left foreign. external-dns's marker of a zone apex
//! (`a-example.com` for `example.com`) lies outside the zone and is not
//! read: an apex record is reported without an entry.

use std::collections::{HashMap, HashSet};

use trafego_proto::cache::DnsRecord;

use super::{Line, Outcome, Served, Skip};
use crate::ownership::registry::{Registry, parse_content};
use crate::ownership::zone_of;

/// Weighs every record of `served` against the registry of `owner`.
pub fn weigh(registry: &Registry, owner: &str, served: &Served) -> Vec<Line> {
    let is_marker = |r: &DnsRecord| {
        r.r#type == "TXT"
            && parse_content(&r.content).is_some_and(|m| m.heritage == registry.heritage())
    };
    let mut by_name: HashMap<&str, Vec<&DnsRecord>> = HashMap::new();
    for r in &served.records {
        by_name.entry(r.name.as_str()).or_default().push(r);
    }
    // Record id → the registry entry that gives it to `owner`.
    let mut mine: HashMap<&str, String> = HashMap::new();
    // Record id → the other owner some entry gives it to.
    let mut others: HashMap<&str, String> = HashMap::new();
    // Entries of `owner` whose record the provider no longer holds.
    let mut dangling: HashSet<&str> = HashSet::new();
    for m in served.records.iter().filter(|r| is_marker(r)) {
        let targets_of = |t: Option<crate::ownership::registry::Target>| -> Vec<&DnsRecord> {
            let Some(t) = t else { return Vec::new() };
            by_name
                .get(t.name.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|r| !is_marker(r) && t.rtype.as_deref().is_none_or(|want| r.r#type == want))
                .collect()
        };
        let zone = zone_of(&served.zones, &m.name);
        let mut targets = targets_of(registry.target_of(&m.name, zone));
        if targets.is_empty() {
            targets = targets_of(registry.legacy_target_of(&m.name, zone));
        }
        let named = registry.target_of(&m.name, zone).is_some()
            || registry.legacy_target_of(&m.name, zone).is_some();
        if !named {
            continue;
        }
        if registry.proves(&m.content, owner) {
            if targets.is_empty() {
                dangling.insert(m.record_id.as_str());
                continue;
            }
            let entry = format!("registry {}", m.name);
            for t in &targets {
                mine.entry(t.record_id.as_str())
                    .or_insert_with(|| entry.clone());
            }
            mine.insert(
                m.record_id.as_str(),
                format!("registry entry of {}", targets[0].name),
            );
        } else {
            let who = parse_content(&m.content)
                .map(|c| c.owner)
                .unwrap_or_default();
            for t in targets.iter().copied().chain(std::iter::once(m)) {
                others.insert(t.record_id.as_str(), who.clone());
            }
        }
    }
    served
        .records
        .iter()
        .map(|r| {
            let (from, outcome) = if let Some(who) = others.get(r.record_id.as_str()) {
                (
                    String::from("zone listing"),
                    Outcome::Skip(Skip::OtherOwner(who.clone())),
                )
            } else if let Some(entry) = mine.get(r.record_id.as_str()) {
                (
                    entry.clone(),
                    Outcome::Claim {
                        record: Box::new(r.clone()),
                        app_managed: true,
                        orphaned_at: None,
                        tracked_at: None,
                    },
                )
            } else if dangling.contains(r.record_id.as_str()) {
                (
                    String::from(
                        "registry entry naming no record the provider holds: check --prefix",
                    ),
                    Outcome::Skip(Skip::Gone),
                )
            } else {
                (String::from("zone listing"), Outcome::Skip(Skip::NoEntry))
            };
            Line {
                rtype: r.r#type.clone(),
                name: r.name.clone(),
                from,
                outcome,
            }
        })
        .collect()
}
