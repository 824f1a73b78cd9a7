//! Unit tests of `writes_of` and `commit_of`: plans built by hand, outcomes
//! as cache-service would answer, no database and no client.

use super::*;
use crate::plan::Planned;

fn spec(t: &str, n: &str, c: &str) -> RecordSpec {
    RecordSpec::new("", t, n, c, 1, false, None).unwrap()
}

fn rec(id: &str, t: &str, n: &str, c: &str) -> DnsRecord {
    DnsRecord {
        record_id: id.into(),
        r#type: t.into(),
        name: n.into(),
        content: c.into(),
        ttl: 1,
        provider: "p".into(),
        zone: "example.com".into(),
        ..Default::default()
    }
}

fn row(id: &str, n: &str, c: &str, managed: bool) -> TrackedRow {
    let mut r = row_from(&rec(id, "A", n, c), None, managed, "s", "", 5);
    r.metadata = "{\"kept\":true}".into();
    r
}

fn planned(action: ChangeAction, spec: Option<RecordSpec>) -> Planned {
    let (name, rtype) = spec.as_ref().map_or(("x.example.com", "A"), |s| {
        (s.name.as_str(), s.rtype.as_str())
    });
    Planned {
        action,
        name: name.into(),
        rtype: rtype.into(),
        spec: spec.clone(),
        cache: None,
        tracked: None,
        reason: String::new(),
        claimed: false,
        held: false,
        clear_intents: Vec::new(),
        change_id: None,
    }
}

fn plan_of(changes: Vec<Planned>) -> Plan {
    Plan {
        changes,
        previous: 0,
        dropped: 0,
        previous_names: Vec::new(),
    }
}

fn declared<'a>(specs: &'a [RecordSpec], previous: &'a [DeclRow]) -> Declared<'a> {
    Declared {
        source: "s",
        specs,
        previous,
        decl_stamp: 50,
        now: 40,
        intent_max_age_ms: 10,
    }
}

fn accepted(r: DnsRecord) -> ChangeOutcome {
    ChangeOutcome {
        code: 0,
        message: String::new(),
        record: Some(r),
        uncertain: false,
    }
}

fn failed(code: Code, uncertain: bool) -> ChangeOutcome {
    ChangeOutcome {
        code: code as i32,
        message: "no".into(),
        record: None,
        uncertain,
    }
}

#[test]
fn only_creates_and_updates_are_written_each_with_its_intent() {
    let a = spec("A", "a.example.com", "192.0.2.1");
    let mut update = planned(
        ChangeAction::Update,
        Some(spec("A", "b.example.com", "192.0.2.2")),
    );
    update.cache = Some(rec("7", "A", "b.example.com", "192.0.2.9"));
    let mut claimed = planned(
        ChangeAction::Create,
        Some(spec("A", "c.example.com", "192.0.2.3")),
    );
    claimed.claimed = true;
    let mut held = planned(
        ChangeAction::Create,
        Some(spec("A", "d.example.com", "192.0.2.4")),
    );
    held.held = true;
    let mut again = planned(
        ChangeAction::Create,
        Some(spec("A", "e.example.com", "192.0.2.5")),
    );
    again.change_id = Some("old:3".into());
    let plan = plan_of(vec![
        planned(ChangeAction::Create, Some(a)),
        update,
        claimed,
        held,
        planned(
            ChangeAction::Adopt,
            Some(spec("A", "f.example.com", "192.0.2.6")),
        ),
        planned(ChangeAction::Orphan, None),
        again,
    ]);
    let w = writes_of(&plan, "s", "run", "journal", 9);
    assert_eq!(
        w.sent,
        vec![
            Sent {
                index: 0,
                change_id: "run:0".into()
            },
            Sent {
                index: 1,
                change_id: "run:1".into()
            },
            Sent {
                index: 6,
                change_id: "old:3".into()
            },
        ]
    );
    let ids: Vec<&str> = w.changes.iter().map(|c| c.change_id.as_str()).collect();
    assert_eq!(ids, ["run:0", "run:1", "old:3"]);
    match &w.changes[1].kind {
        Some(change::Kind::Update(u)) => {
            assert_eq!(u.record_id, "7");
            assert_eq!(u.record.as_ref().unwrap().content, "192.0.2.2");
        }
        k => panic!("an update, not {k:?}"),
    }
    assert!(
        matches!(&w.changes[0].kind, Some(change::Kind::Create(c)) if c.name == "a.example.com")
    );
    let i = &w.intents[1];
    assert_eq!(
        (i.id.as_str(), i.action.as_str(), i.record_id.as_str()),
        ("run:1", store::INTENT_UPDATE, "7")
    );
    assert_eq!(
        (i.created_at, i.journal_id.as_str(), i.source.as_str()),
        (9, "journal", "s")
    );
    assert_eq!(w.intents[0].action, store::INTENT_CREATE);
    assert_eq!(w.intents[0].record_id, "");
}

#[test]
fn what_the_provider_answered_decides_rows_codes_and_intents() {
    let mut create = planned(
        ChangeAction::Create,
        Some(spec("A", "a.example.com", "192.0.2.1")),
    );
    create.clear_intents = vec!["older".into()];
    let update = planned(
        ChangeAction::Update,
        Some(spec("A", "b.example.com", "192.0.2.2")),
    );
    let unknown = planned(
        ChangeAction::Create,
        Some(spec("A", "c.example.com", "192.0.2.3")),
    );
    let no_record = planned(
        ChangeAction::Create,
        Some(spec("A", "d.example.com", "192.0.2.4")),
    );
    let mut update = update;
    update.tracked = Some(row("8", "b.example.com", "192.0.2.0", true));
    let plan = plan_of(vec![create, update, unknown, no_record]);
    let w = writes_of(&plan, "s", "r", "j", 40);
    let mut out = crate::convert::planned_changes(&plan.changes);
    let outcomes = vec![
        accepted(rec("1", "A", "a.example.com", "192.0.2.1")),
        failed(Code::FailedPrecondition, false),
        failed(Code::DeadlineExceeded, true),
        ChangeOutcome {
            record: None,
            ..accepted(rec("x", "A", "x", "x"))
        },
    ];
    let c = commit_of(&plan, &w.sent, outcomes, &declared(&[], &[]), &mut out);
    // The create: inserted as app-managed, applied, its id reported.
    assert_eq!(c.insert.len(), 1);
    assert!(c.insert[0].app_managed);
    assert_eq!(c.insert[0].record_id, "1");
    assert!(out[0].applied);
    assert_eq!(out[0].record_id, "1");
    // The refused update: its code and reason, its row untouched.
    assert_eq!(out[1].code, Code::FailedPrecondition as i32);
    assert!(
        out[1].reason.starts_with("the provider refused it"),
        "{}",
        out[1].reason
    );
    assert!(c.replace.is_empty());
    // The unheard create keeps its intent and says so.
    assert_eq!(out[2].code, Code::DeadlineExceeded as i32);
    assert!(
        out[2].reason.starts_with("outcome not known yet"),
        "{}",
        out[2].reason
    );
    // Accepted without a record: INTERNAL.
    assert_eq!(out[3].code, Code::Internal as i32);
    // Every intent with a known outcome is cleared, with those the plan resolved.
    assert_eq!(c.clear_intents, ["older", "r:0", "r:1", "r:3"]);
    assert_eq!(c.purge_intents_before, Some(30));
    assert_eq!(c.source, "s");
}

#[test]
fn claims_adoptions_orphans_and_unorphans_are_recorded() {
    let mut claimed = planned(
        ChangeAction::Create,
        Some(spec("A", "a.example.com", "192.0.2.1")),
    );
    claimed.claimed = true;
    claimed.cache = Some(rec("1", "A", "a.example.com", "192.0.2.1"));
    let mut adopt = planned(
        ChangeAction::Adopt,
        Some(spec("A", "b.example.com", "192.0.2.2")),
    );
    adopt.cache = Some(rec("2", "A", "b.example.com", "192.0.2.2"));
    let mut orphan = planned(ChangeAction::Orphan, None);
    orphan.tracked = Some(row("3", "x.example.com", "192.0.2.3", true));
    let mut unorphan = planned(
        ChangeAction::Unorphan,
        Some(spec("A", "d.example.com", "192.0.2.4")),
    );
    let mut t = row("4", "d.example.com", "192.0.2.4", true);
    t.is_orphaned = true;
    t.orphaned_at = Some(1);
    unorphan.tracked = Some(t);
    // The provider's copy changed (a new fingerprint): the row is rewritten.
    let mut r = rec("4", "A", "d.example.com", "192.0.2.4");
    r.fingerprint = "new".into();
    unorphan.cache = Some(r);
    let mut unchanged = planned(
        ChangeAction::Unchanged,
        Some(spec("A", "e.example.com", "192.0.2.5")),
    );
    let t = row("5", "e.example.com", "192.0.2.5", true);
    unchanged.cache = Some(rec("5", "A", "e.example.com", "192.0.2.5"));
    unchanged.tracked = Some(t);
    let mut held = planned(
        ChangeAction::Create,
        Some(spec("A", "f.example.com", "192.0.2.6")),
    );
    held.held = true;
    held.clear_intents = vec!["not-yet".into()];
    let plan = plan_of(vec![claimed, adopt, orphan, unorphan, unchanged, held]);
    let w = writes_of(&plan, "s", "r", "j", 40);
    assert!(w.changes.is_empty());
    let mut out = crate::convert::planned_changes(&plan.changes);
    let c = commit_of(&plan, &w.sent, Vec::new(), &declared(&[], &[]), &mut out);
    let inserted: Vec<(&str, bool)> = c
        .insert
        .iter()
        .map(|r| (r.record_id.as_str(), r.app_managed))
        .collect();
    assert_eq!(inserted, [("1", true), ("2", false)]);
    assert_eq!(c.orphan, ["3"]);
    assert_eq!(c.unorphan, ["4"]);
    // Rewritten in place with its metadata; the unchanged, current row is not.
    assert_eq!(c.replace.len(), 1);
    assert_eq!(c.replace[0].0, "4");
    assert_eq!(c.replace[0].1.fingerprint, "new");
    assert_eq!(c.replace[0].1.metadata, "{\"kept\":true}");
    let applied: Vec<bool> = out.iter().map(|o| o.applied).collect();
    assert_eq!(applied, [true, true, true, true, true, false]);
    assert_eq!(out[5].code, Code::Unavailable as i32);
    // A held change resolves nothing.
    assert!(c.clear_intents.is_empty());
}

#[test]
fn declarations_change_only_where_they_differ() {
    let same = spec("A", "a.example.com", "192.0.2.1");
    let changed = spec("A", "b.example.com", "192.0.2.9");
    let new = spec("A", "c.example.com", "192.0.2.3");
    let mut previous = vec![
        decl_of("s", &same, 0),
        decl_of("s", &spec("A", "b.example.com", "192.0.2.2"), 0),
        decl_of("s", &spec("A", "gone.example.com", "192.0.2.4"), 0),
    ];
    previous[1].declared_at = 7;
    let specs = [same, changed, new];
    let plan = plan_of(Vec::new());
    let c = commit_of(
        &plan,
        &[],
        Vec::new(),
        &declared(&specs, &previous),
        &mut [],
    );
    let mut deleted = c.decl_delete.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            ("b.example.com".to_string(), "A".to_string()),
            ("gone.example.com".to_string(), "A".to_string())
        ]
    );
    let inserted: Vec<(&str, &str, i64, i64)> = c
        .decl_insert
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.content.as_str(),
                d.declared_at,
                d.updated_at,
            )
        })
        .collect();
    // A changed declaration keeps its place in line; a new one gets the stamp.
    assert_eq!(
        inserted,
        [
            ("b.example.com", "192.0.2.9", 7, 40),
            ("c.example.com", "192.0.2.3", 50, 40)
        ]
    );
}
