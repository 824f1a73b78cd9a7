//! Record-format tests of the zone-file provider: every type round trips,
//! RFC 1035 escapes, underscores inside labels, the null MX, and a name the
//! parser cannot read.

use super::*;

#[tokio::test]
async fn every_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let long_txt = format!("{} é {}", "x".repeat(300), "y".repeat(300));
    // (type, name, content, priority, updated content)
    let cases: Vec<(&str, &str, &str, Option<u32>, &str)> = vec![
        ("A", "a.example.com", "192.0.2.1", None, "192.0.2.2"),
        (
            "AAAA",
            "aaaa.example.com",
            "2001:db8::1",
            None,
            "2001:db8::2",
        ),
        (
            "CNAME",
            "www.example.com",
            "target.example.net",
            None,
            "other.example.net",
        ),
        (
            "CNAME",
            "*.wild.example.com",
            "example.com",
            None,
            "a.example.com",
        ),
        (
            "TXT",
            "txt.example.com",
            r#"say "hi"; C:\path with  spaces"#,
            None,
            "v=spf1 -all",
        ),
        ("TXT", "long.example.com", &long_txt, None, "short now"),
        (
            "MX",
            "example.com",
            "mail.example.com",
            Some(10),
            "mx2.example.com",
        ),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            Some(10),
            "0 5061 .",
        ),
        (
            "CAA",
            "example.com",
            "0 issue \"letsencrypt.org\"",
            None,
            "128 issuewild \"\"",
        ),
        (
            "NS",
            "sub.example.com",
            "ns1.example.net",
            None,
            "ns2.example.net",
        ),
        (
            "A",
            "xn--bcher-kva.example.com",
            "192.0.2.9",
            None,
            "192.0.2.10",
        ),
    ];
    for (rtype, name, content, prio, updated) in cases {
        let created = one(&p, WriteOp::Create(input(rtype, name, content, 1, prio)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                created.rtype.as_str(),
                created.name.as_str(),
                created.content.as_str()
            ),
            (rtype, name, content)
        );
        assert_eq!(
            created.ttl, DEFAULT_TTL,
            "automatic TTL is written as the default"
        );
        assert_eq!(created.priority, prio);
        assert_eq!(created.comment, "");
        assert!(!created.proxied);
        assert_eq!(created.id.len(), 32);
        assert_eq!(
            find(&p, rtype, name).await,
            vec![created.clone()],
            "{rtype} {name}"
        );

        let want = parse_content_for(rtype, updated);
        let new_prio = prio.map(|p| p + 1);
        let upd = one(
            &p,
            WriteOp::Update {
                id: created.id.clone(),
                input: input(rtype, name, &want, 600, new_prio),
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(upd.content, want);
        assert_eq!(upd.ttl, 600);
        assert_eq!(upd.priority, new_prio);
        assert_ne!(upd.id, created.id, "new content means a new id");
        assert_eq!(
            find(&p, rtype, name).await,
            vec![upd.clone()],
            "{rtype} {name}"
        );

        assert_eq!(
            one(&p, WriteOp::Delete { id: upd.id.clone() }).await,
            Ok(None)
        );
        assert!(
            find(&p, rtype, name).await.is_empty(),
            "{rtype} {name} deleted"
        );
    }
    // Only the initial NS is left.
    assert_eq!(list(&p).await.len(), 1);
}

fn parse_content_for(rtype: &str, content: &str) -> String {
    trafego_proto::validate::parse_content("c", RecordType::parse("t", rtype).unwrap(), content)
        .unwrap()
}

#[tokio::test]
async fn decimal_escapes_are_read_and_written_as_rfc_1035_says() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let mut text = fs::read_to_string(path_of(&p)).unwrap();
    text.push_str("esc 300 IN TXT \"h\\195\\169llo \\034q\\034 \\092 tab\\009end\" \"\\\\065\"\n");
    fs::write(path_of(&p), &text).unwrap();
    let esc = find(&p, "TXT", "esc.example.com").await;
    assert_eq!(esc.len(), 1, "{esc:?}");
    assert_eq!(esc[0].content, "h\u{e9}llo \"q\" \\ tab\tend\\065");

    let created = one(
        &p,
        WriteOp::Create(input(
            "TXT",
            "u.example.com",
            "caf\u{e9} \"x\" \\",
            300,
            None,
        )),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(created.content, "caf\u{e9} \"x\" \\");
    let text = fs::read_to_string(path_of(&p)).unwrap();
    assert!(
        text.contains("u 300 IN TXT \"caf\\195\\169 \\\"x\\\" \\\\\"\n"),
        "{text}"
    );
    assert!(
        text.contains("esc 300 IN TXT \"h\\195\\169llo \\\"q\\\" \\\\ tab\\009end\" \"\\\\065\"\n"),
        "{text}"
    );
    assert_eq!(
        find(&p, "TXT", "esc.example.com").await,
        esc,
        "the rewrite kept it"
    );
}

#[tokio::test]
async fn underscores_inside_labels_are_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    // Hand-written: owner names, targets and unquoted TXT words with an
    // inner '_', beside a label starting with '_' and one shaped like
    // the masks (which must not be taken for one).
    let mut text = fs::read_to_string(path_of(&p)).unwrap();
    text.push_str(
        "hand_made 300 IN A 192.0.2.7\n\
         alias 300 IN CNAME my_target.example.net.\n\
         word 300 IN TXT plain_word \"quoted_word\"\n\
         _trafego0x0_ 300 IN TXT \"look-alike\"\n\
         mx_host 300 IN MX 10 mail_relay\n",
    );
    fs::write(path_of(&p), &text).unwrap();
    let rs = list(&p).await;
    let got = |rtype: &str, name: &str| {
        rs.iter()
            .find(|r| r.rtype == rtype && r.name == name)
            .map(|r| r.content.clone())
            .unwrap_or_else(|| panic!("no {rtype} {name} in {rs:?}"))
    };
    assert_eq!(got("A", "hand_made.example.com"), "192.0.2.7");
    assert_eq!(got("CNAME", "alias.example.com"), "my_target.example.net");
    assert_eq!(got("TXT", "word.example.com"), "plain_wordquoted_word");
    assert_eq!(got("TXT", "_trafego0x0_.example.com"), "look-alike");
    assert_eq!(got("MX", "mx_host.example.com"), "mail_relay.example.com");

    // Written through the provider, and kept over a rewrite.
    let created = one(
        &p,
        WriteOp::Create(input("A", "my_host.example.com", "192.0.2.1", 300, None)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(created.name, "my_host.example.com");
    let cname = one(
        &p,
        WriteOp::Create(input(
            "CNAME",
            "www_2.example.com",
            "my_host.example.com",
            300,
            None,
        )),
    )
    .await
    .unwrap()
    .unwrap();
    let text = fs::read_to_string(path_of(&p)).unwrap();
    assert!(text.contains("\nmy_host 300 IN A 192.0.2.1\n"), "{text}");
    assert!(
        text.contains("\nwww_2 300 IN CNAME my_host.example.com.\n"),
        "{text}"
    );
    assert!(
        !text.contains("_trafego1x"),
        "no mask is ever written: {text}"
    );
    let again = list(&p).await;
    assert!(
        again.contains(&created) && again.contains(&cname),
        "{again:?}"
    );
    assert_eq!(again.len(), rs.len() + 2);
    one(&p, WriteOp::Delete { id: created.id }).await.unwrap();
    assert!(find(&p, "A", "my_host.example.com").await.is_empty());
}

#[tokio::test]
async fn a_name_the_parser_cannot_read_is_reported_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let mut text = fs::read_to_string(path_of(&p)).unwrap();
    text.push_str("bad!name 300 IN A 192.0.2.1\n");
    fs::write(path_of(&p), &text).unwrap();
    let ProviderError::Unavailable(msg) = p.list().await.unwrap_err() else {
        panic!("not unavailable");
    };
    assert!(msg.contains("a name holds a character"), "{msg}");
    assert!(!msg.contains("Errors"), "no parser internals: {msg}");
}

#[tokio::test]
async fn the_null_mx_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let created = one(
        &p,
        WriteOp::Create(input("MX", "nomail.example.com", ".", 300, Some(0))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((created.content.as_str(), created.priority), (".", Some(0)));
    let text = fs::read_to_string(path_of(&p)).unwrap();
    assert!(text.contains("\nnomail 300 IN MX 0 .\n"), "{text}");
    assert_eq!(find(&p, "MX", "nomail.example.com").await, vec![created]);
}
