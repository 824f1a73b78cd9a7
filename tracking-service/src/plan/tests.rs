//! Unit tests of the planner: one rule per test, over hand-built cache
//! views, tracked rows, declarations and intents.

use super::*;

fn spec(t: &str, n: &str, c: &str) -> RecordSpec {
    RecordSpec::new("", t, n, c, 1, false, None).unwrap()
}

fn rec(id: &str, t: &str, n: &str, c: &str) -> DnsRecord {
    DnsRecord {
        record_id: id.into(),
        r#type: t.into(),
        name: n.into(),
        content: c.into(),
        ttl: 300,
        provider: "cloudflare".into(),
        zone: "example.com".into(),
        comment: "Managed by TrafegoDNS".into(),
        ..Default::default()
    }
}

fn row(id: &str, t: &str, n: &str, c: &str, managed: bool) -> TrackedRow {
    TrackedRow {
        provider: "cloudflare".into(),
        zone: "example.com".into(),
        record_id: id.into(),
        rtype: t.into(),
        name: n.into(),
        content: c.into(),
        ttl: 300,
        proxied: false,
        priority: None,
        fingerprint: String::new(),
        app_managed: managed,
        source: "s".into(),
        is_orphaned: false,
        orphaned_at: None,
        is_missing: false,
        missing_since: None,
        drift: String::new(),
        tracked_at: 0,
        updated_at: 0,
        first_seen: 0,
        metadata: "{}".into(),
    }
}

fn actions(p: &Plan) -> Vec<ChangeAction> {
    p.changes.iter().map(|c| c.action).collect()
}

#[test]
fn the_comment_is_never_ownership() {
    // Untracked, carrying the managed comment, other content: conflict, not update.
    let cache = vec![rec("1", "A", "a.example.com", "192.0.2.1")];
    let p = plan(
        "s",
        &[spec("A", "a.example.com", "192.0.2.2")],
        &cache,
        &PlanInput::default(),
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Conflict]);
    // Same content: adopted as not managed.
    let p = plan(
        "s",
        &[spec("A", "a.example.com", "192.0.2.1")],
        &cache,
        &PlanInput::default(),
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Adopt]);
}

#[test]
fn create_update_unchanged_and_cname_conflict() {
    let cache = vec![
        rec("1", "A", "a.example.com", "192.0.2.1"),
        rec("2", "A", "c.example.com", "192.0.2.1"),
    ];
    let input = PlanInput {
        tracked: vec![row("1", "A", "a.example.com", "192.0.2.1", true)],
        ..Default::default()
    };
    let p = plan(
        "s",
        &[
            spec("A", "a.example.com", "192.0.2.9"),
            spec("A", "b.example.com", "192.0.2.1"),
            spec("CNAME", "c.example.com", "example.com"),
        ],
        &cache,
        &input,
        Timing::default(),
    );
    assert_eq!(
        actions(&p),
        vec![
            ChangeAction::Update,
            ChangeAction::Create,
            ChangeAction::Conflict
        ]
    );
    let p = plan(
        "s",
        &[spec("A", "a.example.com", "192.0.2.1")],
        &cache,
        &input,
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Unchanged]);
}

#[test]
fn orphans_respect_other_sources() {
    let cache = vec![rec("1", "A", "a.example.com", "192.0.2.1")];
    let s = spec("A", "a.example.com", "192.0.2.1");
    let mut input = PlanInput {
        previous: vec![decl_of("s", &s, 0)],
        declarations: vec![decl_of("s", &s, 0), decl_of("other", &s, 0)],
        tracked: vec![row("1", "A", "a.example.com", "192.0.2.1", true)],
        ..Default::default()
    };
    let p = plan("s", &[], &cache, &input, Timing::default());
    assert!(actions(&p).is_empty(), "another source still declares it");
    assert_eq!(p.dropped, 1);
    input.declarations.pop();
    let p = plan("s", &[], &cache, &input, Timing::default());
    assert_eq!(actions(&p), vec![ChangeAction::Orphan]);
}

fn intent(id: &str, n: &str, c: &str, at: i64) -> IntentRow {
    IntentRow {
        id: id.into(),
        source: "s".into(),
        action: INTENT_CREATE.into(),
        record_id: String::new(),
        name: n.into(),
        rtype: "A".into(),
        content: c.into(),
        ttl: 1,
        proxied: false,
        priority: None,
        created_at: at,
        journal_id: String::new(),
    }
}

#[test]
fn a_renamed_record_is_found_by_id_and_never_orphaned() {
    let cache = vec![rec("1", "A", "b.example.com", "192.0.2.1")];
    let a = spec("A", "a.example.com", "192.0.2.1");
    let input = PlanInput {
        previous: vec![decl_of("s", &a, 0)],
        declarations: vec![decl_of("s", &a, 0)],
        tracked: vec![row("1", "A", "a.example.com", "192.0.2.1", true)],
        ..Default::default()
    };
    let p = plan(
        "s",
        &[spec("A", "b.example.com", "192.0.2.1")],
        &cache,
        &input,
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Unchanged], "{p:?}");
    assert_eq!(p.changes[0].record_id(), "1");
    assert!(p.changes[0].reason.contains("renamed"));
    // Declared under both names: the old name gets a new record, the
    // renamed one stays with its new name.
    let p = plan(
        "s",
        &[a.clone(), spec("A", "b.example.com", "192.0.2.1")],
        &cache,
        &input,
        Timing::default(),
    );
    assert_eq!(
        actions(&p),
        vec![ChangeAction::Create, ChangeAction::Unchanged]
    );
    assert!(p.changes[0].tracked.is_none(), "{p:?}");
}

#[test]
fn only_an_earlier_declaration_makes_a_conflict() {
    let x1 = spec("A", "x.example.com", "192.0.2.1");
    let x2 = spec("A", "x.example.com", "192.0.2.2");
    let input = PlanInput {
        previous: vec![decl_of("first", &x1, 10)],
        declarations: vec![decl_of("first", &x1, 10), decl_of("second", &x2, 20)],
        ..Default::default()
    };
    let p = plan(
        "first",
        std::slice::from_ref(&x1),
        &[],
        &input,
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Create], "the first stands");
    let input = PlanInput {
        previous: vec![decl_of("second", &x2, 20)],
        ..input
    };
    let p = plan("second", &[x2], &[], &input, Timing::default());
    assert_eq!(actions(&p), vec![ChangeAction::Conflict]);
    assert!(p.changes[0].reason.contains("first"));
}

#[test]
fn unvouched_intents_are_claimed_by_content_until_too_old() {
    let cache = vec![rec("9", "A", "p.example.com", "192.0.2.1")];
    let want = [spec("A", "p.example.com", "192.0.2.1")];
    let timing = Timing {
        now: 1_000,
        intent_max_age_ms: 10_000,
    };
    let mut input = PlanInput {
        intents: vec![intent("r:0", "p.example.com", "192.0.2.1", 900)],
        ..Default::default()
    };
    let p = plan("s", &want, &cache, &input, timing);
    assert_eq!(actions(&p), vec![ChangeAction::Create]);
    assert!(p.changes[0].claimed && !p.changes[0].held);
    assert_eq!(p.changes[0].clear_intents, vec!["r:0".to_string()]);
    // Not there: created again at once (nothing can still be writing it).
    let p = plan("s", &want, &[], &input, timing);
    assert!(!p.changes[0].held && !p.changes[0].claimed, "{p:?}");
    assert_eq!(p.changes[0].clear_intents, vec!["r:0".to_string()]);
    // Older than the maximum age: claims nothing.
    input.intents[0].created_at = -20_000;
    let p = plan("s", &want, &cache, &input, timing);
    assert_eq!(actions(&p), vec![ChangeAction::Adopt]);
}

#[test]
fn the_journal_decides_what_an_intent_became() {
    let want = [spec("A", "p.example.com", "192.0.2.1")];
    let theirs = rec("8", "A", "p.example.com", "192.0.2.1");
    let ours = rec("9", "A", "p.example.com", "192.0.2.1");
    let with = |st: IntentState| PlanInput {
        intents: vec![intent("r:0", "p.example.com", "192.0.2.1", 900)],
        outcomes: [("r:0".to_string(), st)].into_iter().collect(),
        ..Default::default()
    };
    // Applied with record 9: record 9 is claimed, record 8 is not ours.
    let input = with(IntentState::Applied("9".into()));
    let p = plan(
        "s",
        &want,
        &[theirs.clone(), ours.clone()],
        &input,
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Create]);
    assert!(p.changes[0].claimed);
    assert_eq!(p.changes[0].record_id(), "9");
    // Not applied: a matching record there is someone else's (adopted,
    // never claimed), and with nothing there the create is sent again
    // under the same change id.
    let input = with(IntentState::NotApplied);
    let p = plan(
        "s",
        &want,
        std::slice::from_ref(&theirs),
        &input,
        Timing::default(),
    );
    assert_eq!(actions(&p), vec![ChangeAction::Adopt]);
    assert!(!p.changes[0].claimed);
    let p = plan("s", &want, &[], &input, Timing::default());
    assert_eq!(actions(&p), vec![ChangeAction::Create]);
    assert_eq!(p.changes[0].change_id.as_deref(), Some("r:0"));
    assert!(p.changes[0].clear_intents.is_empty());
    // Still in flight: nothing planned, even if a matching record shows.
    let input = with(IntentState::Pending("in flight".into()));
    let p = plan(
        "s",
        &want,
        std::slice::from_ref(&ours),
        &input,
        Timing::default(),
    );
    assert!(p.changes[0].held, "{p:?}");
    assert!(p.changes[0].clear_intents.is_empty());
}
