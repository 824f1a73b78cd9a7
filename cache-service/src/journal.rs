//! The change-id protocol's rules (see "The change-id protocol" in
//! cache.proto): what a change looks like in the journal, and how a change
//! whose provider answer was lost is judged applied or not from what the
//! provider holds at its name and type.
//!
//! Pure: nothing here reads or writes the database or the provider, so every
//! rule is testable on its own. It must never judge a change applied on a
//! record that was already there before the change was sent (its id is among
//! the change's `prior_ids`): that record is someone else's.

use sha2::{Digest, Sha256};
use tonic::Code;
use trafego_proto::validate;

use crate::provider::{ProviderError, ProviderRecord, WriteOp};
use crate::store::{JOURNAL_PENDING, JournalRow};

/// Longest change id accepted.
pub const MAX_CHANGE_ID_LEN: usize = 128;

/// One change asked of the cache: the write and the caller's id for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeReq {
    /// The write.
    pub op: WriteOp,
    /// The caller's change id (see the protocol); `None`: not journaled.
    pub change_id: Option<String>,
    /// The group it reaches the provider with (`Change.group`): a record and
    /// its ownership marker are never split across provider requests.
    /// `None`: it stands alone.
    pub group: Option<String>,
}

impl ChangeReq {
    /// A change without an id (the single-record RPCs, tests).
    pub fn plain(op: WriteOp) -> Self {
        Self {
            op,
            change_id: None,
            group: None,
        }
    }
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider holds it; the record it produced (none for a delete).
    Applied(Option<ProviderRecord>),
    /// It was not applied: refused, or found absent after a lost answer.
    Failed {
        /// The gRPC code of the refusal.
        code: Code,
        /// Why.
        message: String,
    },
    /// Its answer was lost and the provider could not be read to settle it.
    Unsettled(String),
}

impl Outcome {
    /// The failure of a provider error.
    pub fn failed(e: &ProviderError) -> Self {
        Outcome::Failed {
            code: e.code(),
            message: e.to_string(),
        }
    }

    /// The gRPC code of the outcome: OK when applied.
    pub fn code(&self) -> Code {
        match self {
            Outcome::Applied(_) => Code::Ok,
            Outcome::Failed { code, .. } => *code,
            Outcome::Unsettled(_) => Code::Unavailable,
        }
    }

    /// The message of a failure; empty when applied.
    pub fn message(&self) -> String {
        match self {
            Outcome::Applied(_) => String::new(),
            Outcome::Failed { message, .. } => message.clone(),
            Outcome::Unsettled(m) => format!(
                "the provider's answer was lost and the provider could not be read to check \
                 whether it applied the change ({m}); it is settled by looking once the provider \
                 answers: ask GetChangeOutcomes"
            ),
        }
    }
}

/// Whether a change id is well formed: 1 to 128 characters of A-Z a-z 0-9
/// and `.` `_` `:` `-`.
pub fn valid_change_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CHANGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn op_name(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::Create(_) => "create",
        WriteOp::Update { .. } => "update",
        WriteOp::Delete { .. } => "delete",
    }
}

/// SHA-256 over the change itself, so one id is never taken for two changes.
pub fn op_fingerprint(op: &WriteOp) -> String {
    let mut h = Sha256::new();
    h.update(op_name(op));
    h.update([0]);
    if let Some(id) = op.id() {
        h.update(id);
    }
    h.update([0]);
    if let WriteOp::Create(input) | WriteOp::Update { input, .. } = op {
        h.update(input.spec.fingerprint());
    }
    hex::encode(h.finalize())
}

/// Where a change is looked for when settled by looking, and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sought {
    /// `create`, `update` or `delete`.
    pub op: String,
    /// The record updated or deleted ("" for a create).
    pub target_id: String,
    /// The name looked at ("" when unknown: the whole zone is read).
    pub name: String,
    /// The type looked at.
    pub rtype: String,
    /// The content written (creates and updates).
    pub content: String,
    /// The TTL written; 1 matches any.
    pub ttl: u32,
    /// The priority written.
    pub priority: Option<u32>,
    /// The ids held at (name, type) when the change was sent.
    pub prior_ids: Vec<String>,
}

impl Sought {
    /// The journal entry of `change_id` for `op`, about to be sent.
    /// `target` is the cached (name, type) of the record an update or delete
    /// concerns; `prior_ids` are the ids cached at the change's (name, type).
    pub fn of(op: &WriteOp, target: Option<(String, String)>, prior_ids: Vec<String>) -> Self {
        match op {
            WriteOp::Create(input) | WriteOp::Update { input, .. } => Sought {
                op: op_name(op).to_string(),
                target_id: op.id().unwrap_or_default().to_string(),
                name: input.spec.name.as_str().to_string(),
                rtype: input.spec.rtype.as_str().to_string(),
                content: input.spec.content.clone(),
                ttl: input.spec.ttl,
                priority: input.spec.priority.map(u32::from),
                prior_ids,
            },
            WriteOp::Delete { id } => {
                let (name, rtype) = target.unwrap_or_default();
                Sought {
                    op: "delete".to_string(),
                    target_id: id.clone(),
                    name,
                    rtype,
                    content: String::new(),
                    ttl: 1,
                    priority: None,
                    prior_ids,
                }
            }
        }
    }

    /// The same, read back from the journal.
    pub fn from_row(row: &JournalRow) -> Self {
        Sought {
            op: row.op.clone(),
            target_id: row.target_id.clone(),
            name: row.name.clone(),
            rtype: row.rtype.clone(),
            content: row.content.clone(),
            ttl: u32::try_from(row.ttl).unwrap_or(1),
            priority: row.priority.and_then(|p| u32::try_from(p).ok()),
            prior_ids: serde_json::from_str(&row.prior_ids).unwrap_or_default(),
        }
    }

    /// The pending journal row of this change.
    pub fn journal_row(&self, change_id: &str, fingerprint: String, now: i64) -> JournalRow {
        JournalRow {
            change_id: change_id.to_string(),
            op: self.op.clone(),
            op_fingerprint: fingerprint,
            target_id: self.target_id.clone(),
            rtype: self.rtype.clone(),
            name: self.name.clone(),
            content: self.content.clone(),
            ttl: i32::try_from(self.ttl).unwrap_or(1),
            priority: self.priority.and_then(|p| i32::try_from(p).ok()),
            prior_ids: serde_json::to_string(&self.prior_ids).unwrap_or_else(|_| "[]".into()),
            state: JOURNAL_PENDING.to_string(),
            code: 0,
            message: String::new(),
            record_id: String::new(),
            record: String::new(),
            created_at: now,
            settled_at: None,
            zone: String::new(),
        }
    }

    /// The (name, type) to read; `None` when only the whole zone will do.
    pub fn key(&self) -> Option<(String, String)> {
        (!self.name.is_empty() && !self.rtype.is_empty())
            .then(|| (self.name.clone(), self.rtype.clone()))
    }

    fn holds(&self, r: &ProviderRecord) -> bool {
        r.rtype == self.rtype
            && r.name == self.name
            && validate::same_content(&r.rtype, &r.content, &self.content)
            && (self.priority.is_none() || r.priority == self.priority)
            && (self.ttl == validate::TTL_AUTO || r.ttl == self.ttl || r.proxied)
    }
}

/// What a look at the provider says of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The provider holds it: the record it produced (none for a delete).
    Applied(Option<ProviderRecord>),
    /// It is not there: it was not applied.
    NotApplied,
}

/// Judges a change from `held`, what the provider holds now at its (name,
/// type) (or the whole zone). A create is applied when a record with its
/// content is there that was not there before it was sent; an update when
/// its record (same id, or a new id the cache did not hold before) carries
/// the new content; a delete when its record is gone.
pub fn judge(s: &Sought, held: &[ProviderRecord]) -> Judged {
    let new_or_target = |r: &&ProviderRecord| {
        (!s.target_id.is_empty() && r.id == s.target_id) || !s.prior_ids.contains(&r.id)
    };
    match s.op.as_str() {
        "delete" => {
            if held.iter().any(|r| r.id == s.target_id) {
                Judged::NotApplied
            } else {
                Judged::Applied(None)
            }
        }
        _ => match held.iter().filter(new_or_target).find(|r| s.holds(r)) {
            Some(r) => Judged::Applied(Some(r.clone())),
            None => Judged::NotApplied,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};

    fn rec(id: &str, name: &str, content: &str) -> ProviderRecord {
        ProviderRecord {
            id: id.into(),
            rtype: "A".into(),
            name: name.into(),
            content: content.into(),
            ttl: 300,
            proxied: false,
            priority: None,
            comment: String::new(),
        }
    }

    fn input(name: &str, content: &str) -> ValidRecordInput {
        ValidRecordInput {
            spec: RecordSpec::new("", "A", name, content, 300, false, None).unwrap(),
            comment: String::new(),
        }
    }

    #[test]
    fn change_ids_are_checked() {
        assert!(valid_change_id("run-1:0"));
        assert!(valid_change_id(&"a".repeat(128)));
        for bad in ["", "a/b", "../x", "a b", "é", &"a".repeat(129)] {
            assert!(!valid_change_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_tell_changes_apart() {
        let a = WriteOp::Create(input("a.example.com", "192.0.2.1"));
        let b = WriteOp::Create(input("a.example.com", "192.0.2.2"));
        let u = WriteOp::Update {
            id: "x".into(),
            input: input("a.example.com", "192.0.2.1"),
        };
        assert_eq!(op_fingerprint(&a), op_fingerprint(&a.clone()));
        assert_ne!(op_fingerprint(&a), op_fingerprint(&b));
        assert_ne!(op_fingerprint(&a), op_fingerprint(&u));
        let _ = Hostname::parse("z", "example.com").unwrap();
    }

    #[test]
    fn a_create_is_applied_only_by_a_record_that_was_not_there_before() {
        let op = WriteOp::Create(input("a.example.com", "192.0.2.1"));
        let s = Sought::of(&op, None, vec!["old".into()]);
        // Only someone else's identical record, there before: not ours.
        assert_eq!(
            judge(&s, &[rec("old", "a.example.com", "192.0.2.1")]),
            Judged::NotApplied
        );
        // A new record with the content: ours.
        let held = [
            rec("old", "a.example.com", "192.0.2.1"),
            rec("new", "a.example.com", "192.0.2.1"),
        ];
        assert_eq!(
            judge(&s, &held),
            Judged::Applied(Some(rec("new", "a.example.com", "192.0.2.1")))
        );
        // Other content: not ours.
        assert_eq!(
            judge(&s, &[rec("new", "a.example.com", "192.0.2.9")]),
            Judged::NotApplied
        );
        assert_eq!(judge(&s, &[]), Judged::NotApplied);
    }

    #[test]
    fn updates_and_deletes_are_judged_by_their_record() {
        let op = WriteOp::Update {
            id: "r1".into(),
            input: input("a.example.com", "192.0.2.2"),
        };
        let s = Sought::of(&op, None, vec!["r1".into()]);
        assert_eq!(
            judge(&s, &[rec("r1", "a.example.com", "192.0.2.1")]),
            Judged::NotApplied
        );
        assert!(matches!(
            judge(&s, &[rec("r1", "a.example.com", "192.0.2.2")]),
            Judged::Applied(Some(_))
        ));
        // A provider that gives an updated record a new id (zone files).
        assert!(matches!(
            judge(&s, &[rec("r2", "a.example.com", "192.0.2.2")]),
            Judged::Applied(Some(_))
        ));
        let d = WriteOp::Delete { id: "r1".into() };
        let s = Sought::of(&d, Some(("a.example.com".into(), "A".into())), vec![]);
        assert_eq!(
            judge(&s, &[rec("r1", "a.example.com", "192.0.2.1")]),
            Judged::NotApplied
        );
        assert_eq!(judge(&s, &[]), Judged::Applied(None));
    }

    #[test]
    fn journal_rows_round_trip() {
        let op = WriteOp::Create(input("a.example.com", "192.0.2.1"));
        let s = Sought::of(&op, None, vec!["x".into(), "y".into()]);
        let row = s.journal_row("c1", op_fingerprint(&op), 5);
        assert_eq!(Sought::from_row(&row), s);
    }
}
