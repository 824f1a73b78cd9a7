//! The upkeep of ownership markers: what a reconcile writes beside its
//! record writes, and what a sweep deletes beside its record deletions.
//!
//! Pure: these functions read the plan and the cache view and return
//! changes; nothing here sends or records anything. A marker is only ever
//! written for a record the tracked table says is app-managed (a create or
//! update of the plan, or a tracked app-managed record whose marker is
//! missing), and only a marker proving this OWNER_ID is ever deleted.
//!
//! Grouping: a TXT marker created for a record created or updated goes in the
//! record's `Change.group`, so the provider gets both in one request; a sweep
//! deletes a record and its marker in one group too. Where the provider
//! takes one change per request the record goes first: the worst case is a
//! record without its marker after a create (the next reconcile writes the
//! marker, [`attach`]'s mending) and a marker without its record after a
//! delete (the next sweep deletes it, [`sweep_deletes`]'s stale markers).

use std::collections::{HashMap, HashSet};

use trafego_proto::cache::{Change, DeleteChange, DnsRecord, RecordInput, UpdateChange, change};
use trafego_proto::tracking::ChangeAction;
use trafego_proto::validate::Hostname;

use super::{MarkerMode, Ownership, zone_of};
use crate::plan::{Plan, Sent};

/// A reconcile's changes with the markers attached.
#[derive(Debug, Default)]
pub struct Attached {
    /// Every change to send: the plan's writes, each followed by its marker
    /// when it needs one, then the mending writes.
    pub changes: Vec<Change>,
    /// Where each of the plan's writes (in `sent` order) sits in `changes`.
    pub positions: Vec<usize>,
    /// Marker writes added (created markers, comments written).
    pub markers: usize,
}

/// The TXT marker record for `rtype` `name`, or `None` when its name is not
/// a valid DNS name (a prefix and a long first label can pass 63 octets):
/// the record is then written without one, and a warning says so.
fn txt_marker(own: &Ownership, rtype: &str, name: &str, zone: &str) -> Option<RecordInput> {
    let marker = own.marker_name(rtype, name, zone);
    if let Err(e) = Hostname::parse("marker", &marker) {
        tracing::warn!(record = name, r#type = rtype, marker, error = %e, "no ownership marker can be written for this record");
        return None;
    }
    Some(RecordInput {
        r#type: "TXT".into(),
        name: marker,
        content: own.content(),
        ttl: 1,
        proxied: false,
        priority: None,
        comment: String::new(),
    })
}

/// The names of the TXT markers in `cache` that prove this owner.
fn proving_markers<'a>(
    own: &Ownership,
    cache: impl Iterator<Item = &'a DnsRecord>,
) -> HashSet<&'a str> {
    cache
        .filter(|r| r.r#type == "TXT" && own.proves(&r.content))
        .map(|r| r.name.as_str())
        .collect()
}

/// The record input of `r` as the provider holds it, with `comment`.
fn input_from(r: &DnsRecord, comment: String) -> RecordInput {
    RecordInput {
        r#type: r.r#type.clone(),
        name: r.name.clone(),
        content: r.content.clone(),
        ttl: r.ttl,
        proxied: r.proxied,
        priority: r.priority,
        comment,
    }
}

/// The plan's writes `changes` (one per `sent`) with markers: in comment
/// mode every record write carries the marker comment; in txt mode a record
/// created or updated whose marker `cache` does not hold gets one in its
/// group. Then the mending: a tracked app-managed record the plan leaves as
/// it is, whose marker is missing, gets it (a comment rewritten, a TXT
/// created).
pub fn attach(
    own: &Ownership,
    zones: &[Hostname],
    plan: &Plan,
    sent: &[Sent],
    changes: Vec<Change>,
    cache: &[DnsRecord],
) -> Attached {
    let have = proving_markers(own, cache.iter());
    let mut added: HashSet<String> = HashSet::new();
    let mut out = Attached::default();
    for (mut c, s) in changes.into_iter().zip(sent) {
        let input = match &mut c.kind {
            Some(change::Kind::Create(i)) => Some(i),
            Some(change::Kind::Update(u)) => u.record.as_mut(),
            _ => None,
        };
        let mut marker = None;
        if let Some(input) = input {
            match own.mode {
                MarkerMode::Comment => {
                    input.comment = own.comment();
                    out.markers += 1;
                }
                MarkerMode::Txt => {
                    let name =
                        own.marker_name(&input.r#type, &input.name, zone_of(zones, &input.name));
                    if !have.contains(name.as_str()) && !added.contains(&name) {
                        marker = txt_marker(
                            own,
                            &input.r#type,
                            &input.name,
                            zone_of(zones, &input.name),
                        );
                        if marker.is_some() {
                            added.insert(name);
                        }
                    }
                }
            }
        }
        out.positions.push(out.changes.len());
        if let Some(m) = marker {
            c.group = s.change_id.clone();
            let group = c.group.clone();
            out.changes.push(c);
            out.changes.push(Change {
                kind: Some(change::Kind::Create(m)),
                change_id: String::new(),
                group,
            });
            out.markers += 1;
        } else {
            out.changes.push(c);
        }
    }
    // Mending: records the app manages that the plan does not write.
    let written: HashSet<usize> = sent.iter().map(|s| s.index).collect();
    for (i, p) in plan.changes.iter().enumerate() {
        if written.contains(&i) || p.held {
            continue;
        }
        let ours = p.claimed || p.tracked.as_ref().is_some_and(|t| t.app_managed);
        let kept = matches!(p.action, ChangeAction::Unchanged | ChangeAction::Unorphan)
            || (p.action == ChangeAction::Create && p.claimed);
        let (Some(r), true, true) = (&p.cache, ours, kept) else {
            continue;
        };
        match own.mode {
            MarkerMode::Comment => {
                if !own.comment_proves(&r.comment) {
                    out.changes.push(Change {
                        kind: Some(change::Kind::Update(UpdateChange {
                            record_id: r.record_id.clone(),
                            record: Some(input_from(r, own.comment())),
                        })),
                        change_id: String::new(),
                        group: String::new(),
                    });
                    out.markers += 1;
                }
            }
            MarkerMode::Txt => {
                let name = own.marker_name(&r.r#type, &r.name, zone_of(zones, &r.name));
                if have.contains(name.as_str()) || added.contains(&name) {
                    continue;
                }
                if let Some(m) = txt_marker(own, &r.r#type, &r.name, zone_of(zones, &r.name)) {
                    out.changes.push(Change {
                        kind: Some(change::Kind::Create(m)),
                        change_id: String::new(),
                        group: String::new(),
                    });
                    added.insert(name);
                    out.markers += 1;
                }
            }
        }
    }
    out
}

/// A record the sweep deletes: its id, name and type.
#[derive(Debug, Clone, Copy)]
pub struct Doomed<'a> {
    /// The provider's id.
    pub record_id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its type.
    pub rtype: &'a str,
}

/// What a sweep deletes for markers.
#[derive(Debug, Default)]
pub struct SweepMarkers {
    /// The marker to delete with each doomed record, by its index.
    pub with: HashMap<usize, String>,
    /// Markers proving this owner whose record is gone.
    pub stale: Vec<DnsRecord>,
}

/// The markers a sweep deletes, from `held` (the provider's records by id):
/// in txt mode, the marker of each doomed record (unless another record it
/// does not delete stays at that name and type), and the markers proving this
/// owner whose record is gone. A marker of another owner is never touched; in
/// comment mode the marker goes with its record.
pub fn sweep_deletes(
    own: &Ownership,
    zones: &[Hostname],
    doomed: &[Doomed<'_>],
    held: &HashMap<String, DnsRecord>,
) -> SweepMarkers {
    let mut out = SweepMarkers::default();
    if own.mode != MarkerMode::Txt {
        return out;
    }
    let going: HashSet<&str> = doomed.iter().map(|d| d.record_id).collect();
    let mut at: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    let mut markers: HashMap<&str, &DnsRecord> = HashMap::new();
    for r in held.values() {
        at.entry((r.name.as_str(), r.r#type.as_str()))
            .or_default()
            .push(r.record_id.as_str());
        if r.r#type == "TXT" && own.proves(&r.content) {
            markers.insert(r.name.as_str(), r);
        }
    }
    let mut taken: HashSet<String> = HashSet::new();
    for (k, d) in doomed.iter().enumerate() {
        let name = own.marker_name(d.rtype, d.name, zone_of(zones, d.name));
        let Some(m) = markers.get(name.as_str()) else {
            continue;
        };
        let stays = at
            .get(&(d.name, d.rtype))
            .is_some_and(|ids| ids.iter().any(|id| !going.contains(id)));
        if !stays && !going.contains(m.record_id.as_str()) && taken.insert(m.record_id.clone()) {
            out.with.insert(k, m.record_id.clone());
        }
    }
    for m in markers.values() {
        if taken.contains(&m.record_id) || going.contains(m.record_id.as_str()) {
            continue;
        }
        let Some(target) = own.registry.target_of(&m.name, zone_of(zones, &m.name)) else {
            continue;
        };
        let Some(rtype) = target.rtype.as_deref() else {
            continue;
        };
        if !at.contains_key(&(target.name.as_str(), rtype)) {
            out.stale.push((*m).clone());
        }
    }
    out.stale.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A delete of record `id`, in `group`.
pub fn delete(id: &str, group: &str) -> Change {
    Change {
        kind: Some(change::Kind::Delete(DeleteChange {
            record_id: id.to_string(),
        })),
        change_id: String::new(),
        group: group.to_string(),
    }
}
