//! Planning one write against the record sets as this provider last read
//! them: the CREATE and DELETE changes it sends (a DELETE always names the
//! set's current values and TTL, so Route53 refuses it if the set changed),
//! the sets it leaves behind, and the record it produces; or why it cannot be
//! sent (a conflict, a missing record, a set never written), or what must be
//! read first. Pure: no I/O.

use trafego_proto::validate::{RecordType, TTL_AUTO, ValidRecordInput};

use super::super::{ProviderError, ProviderRecord, WriteOp, WriteResult};
use super::wire::{self, Action, Change};
use super::{AUTO_TTL, Key, Known, Rrset, Snapshot, simple_rrset};

/// One write, planned: the changes it sends and what it leaves behind.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) op: usize,
    pub(super) keys: Vec<Key>,
    pub(super) changes: Vec<Change>,
    pub(super) after: Vec<(Key, Option<Rrset>)>,
    pub(super) result: Option<ProviderRecord>,
}

/// What planning a write against the snapshot gives.
pub(super) enum Planned {
    Send(Plan),
    Done(WriteResult),
    /// These record sets must be read first.
    Read(Vec<Key>),
    /// The id is not known and no whole listing was read: list the zone.
    List,
}

fn key_of(input: &ValidRecordInput) -> Key {
    (
        input.spec.name.as_str().to_string(),
        input.spec.rtype.as_str().to_string(),
    )
}

/// The TTL a write gives its record set: its own, or for an automatic TTL
/// the set's (or [`AUTO_TTL`] for a new set).
fn ttl_for(asked: u32, existing: Option<&Rrset>) -> u32 {
    if asked == TTL_AUTO {
        existing.map_or(AUTO_TTL, |rs| rs.ttl)
    } else {
        asked
    }
}

fn same_record(r: &ProviderRecord, input: &ValidRecordInput) -> bool {
    r.content == input.spec.content && r.priority == input.spec.priority.map(u32::from)
}

fn left_alone(key: &Key, why: &str) -> ProviderError {
    ProviderError::Invalid(format!(
        "{} {}: {why}, which this app never writes",
        key.1, key.0
    ))
}

fn delete(key: &Key, rs: &Rrset) -> Change {
    Change {
        action: Action::Delete,
        name: key.0.clone(),
        rtype: key.1.clone(),
        ttl: rs.ttl,
        values: rs.values.clone(),
    }
}

fn create(key: &Key, rs: &Rrset) -> Change {
    Change {
        action: Action::Create,
        name: key.0.clone(),
        rtype: key.1.clone(),
        ttl: rs.ttl,
        values: rs.values.clone(),
    }
}

/// Adds `input` at its key: the changes, the set it leaves, the record made.
/// `existing` is what the key holds now.
fn plan_add(
    key: &Key,
    existing: Option<&Rrset>,
    input: &ValidRecordInput,
) -> Result<(Vec<Change>, Rrset, ProviderRecord), ProviderError> {
    let value = wire::value_of(&input.spec);
    let ttl = ttl_for(input.spec.ttl, existing);
    let mut changes = Vec::with_capacity(2);
    let mut values = Vec::new();
    if let Some(rs) = existing {
        if let Some(why) = rs.read_only {
            return Err(ProviderError::Conflict(format!(
                "{} {}: the zone holds {why} there, which this app never writes",
                key.1, key.0
            )));
        }
        if rs.records.iter().any(|r| same_record(r, input)) {
            return Err(ProviderError::Conflict(format!(
                "{} {} {:?}: Route53 already holds this record",
                key.1, key.0, input.spec.content
            )));
        }
        if input.spec.rtype == RecordType::Cname {
            return Err(ProviderError::Conflict(format!(
                "CNAME {}: the name already has a CNAME, and a name holds one",
                key.0
            )));
        }
        changes.push(delete(key, rs));
        values.extend(rs.values.iter().cloned());
    }
    values.push(value);
    let rs = simple_rrset(key, ttl, values);
    changes.push(create(key, &rs));
    let made = rs
        .records
        .last()
        .cloned()
        .ok_or_else(|| ProviderError::Other("the planned record set holds no record".into()))?;
    Ok((changes, rs, made))
}

/// The changes that take record `i` out of `rs`, and the set that remains.
fn plan_remove(key: &Key, rs: &Rrset, i: usize) -> (Vec<Change>, Option<Rrset>) {
    let mut values = rs.values.clone();
    values.remove(i);
    let mut changes = vec![delete(key, rs)];
    if values.is_empty() {
        return (changes, None);
    }
    let rest = simple_rrset(key, rs.ttl, values);
    changes.push(create(key, &rest));
    (changes, Some(rest))
}

/// Why [`find`] found no record.
enum Missing {
    NotFound,
    /// The id is not known and no whole listing was read.
    List,
    /// Its record set must be read first.
    Read(Key),
}

impl Missing {
    fn planned(self, id: &str) -> Planned {
        match self {
            Missing::NotFound => Planned::Done(Err(not_found(id))),
            Missing::List => Planned::List,
            Missing::Read(k) => Planned::Read(vec![k]),
        }
    }
}

/// Finds the record with `id`: its key, set and index.
fn find<'a>(snap: &'a Snapshot, id: &str) -> Result<(Key, &'a Rrset, usize), Missing> {
    let Some(key) = snap.ids.get(id) else {
        return Err(if snap.complete {
            Missing::NotFound
        } else {
            Missing::List
        });
    };
    match snap.get(key) {
        Known::Unknown => Err(Missing::Read(key.clone())),
        Known::Absent => Err(Missing::NotFound),
        Known::Held(rs) => match rs.records.iter().position(|r| r.id == id) {
            Some(i) => Ok((key.clone(), rs, i)),
            None => Err(Missing::NotFound),
        },
    }
}

fn not_found(id: &str) -> ProviderError {
    ProviderError::NotFound(format!("no record with id {id} in the Route53 zone"))
}

/// What a planned write sends, leaves behind and produces, or why it cannot be.
type Outcome = Result<
    (
        Vec<Change>,
        Vec<(Key, Option<Rrset>)>,
        Option<ProviderRecord>,
    ),
    ProviderError,
>;

/// Plans one write against what the snapshot holds.
pub(super) fn plan(snap: &Snapshot, index: usize, op: &WriteOp) -> Planned {
    let done = |r: Outcome| match r {
        Ok((changes, after, result)) => Planned::Send(Plan {
            op: index,
            keys: after.iter().map(|(k, _)| k.clone()).collect(),
            changes,
            after,
            result,
        }),
        Err(e) => Planned::Done(Err(e)),
    };
    match op {
        WriteOp::Create(input) => {
            let key = key_of(input);
            let existing = match snap.get(&key) {
                Known::Unknown => return Planned::Read(vec![key]),
                Known::Absent => None,
                Known::Held(rs) => Some(rs),
            };
            done(
                plan_add(&key, existing, input)
                    .map(|(c, rs, made)| (c, vec![(key.clone(), Some(rs))], Some(made))),
            )
        }
        WriteOp::Delete { id } => {
            let (key, rs, i) = match find(snap, id) {
                Ok(f) => f,
                Err(m) => return m.planned(id),
            };
            if let Some(why) = rs.read_only {
                return Planned::Done(Err(left_alone(&key, why)));
            }
            let (changes, rest) = plan_remove(&key, rs, i);
            done(Ok((changes, vec![(key, rest)], None)))
        }
        WriteOp::Update { id, input } => {
            let (old, rs, i) = match find(snap, id) {
                Ok(f) => f,
                Err(m) => return m.planned(id),
            };
            if let Some(why) = rs.read_only {
                return Planned::Done(Err(left_alone(&old, why)));
            }
            let new = key_of(input);
            if new == old {
                if rs
                    .records
                    .iter()
                    .enumerate()
                    .any(|(j, r)| j != i && same_record(r, input))
                {
                    return Planned::Done(Err(ProviderError::Conflict(format!(
                        "{} {} {:?}: Route53 already holds this record",
                        new.1, new.0, input.spec.content
                    ))));
                }
                let ttl = ttl_for(input.spec.ttl, Some(rs));
                let mut values = rs.values.clone();
                values[i] = wire::value_of(&input.spec);
                if values == rs.values && ttl == rs.ttl {
                    return Planned::Done(Ok(Some(rs.records[i].clone())));
                }
                let after = simple_rrset(&new, ttl, values);
                let made = after.records.get(i).cloned();
                let changes = vec![delete(&old, rs), create(&new, &after)];
                return done(Ok((changes, vec![(new, Some(after))], made)));
            }
            // The record moves to another name or type: out of one set, into another.
            let existing = match snap.get(&new) {
                Known::Unknown => return Planned::Read(vec![new]),
                Known::Absent => None,
                Known::Held(rs) => Some(rs),
            };
            let (mut changes, rest) = plan_remove(&old, rs, i);
            done(plan_add(&new, existing, input).map(|(c, added, made)| {
                changes.extend(c);
                (
                    changes,
                    vec![(old.clone(), rest), (new.clone(), Some(added))],
                    Some(made),
                )
            }))
        }
    }
}
