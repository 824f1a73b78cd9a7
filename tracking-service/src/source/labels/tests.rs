//! Unit tests of the label semantics: TrafegoDNS's labels to declared records.

use super::*;
use trafego_proto::validate::ProviderRules;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cfg(provider: Option<&str>) -> LabelConfig {
    LabelConfig {
        provider: provider.map(str::to_string),
        ..LabelConfig::trafegodns()
    }
}

fn zone() -> ZoneInfo {
    ZoneInfo {
        zone: Hostname::parse("zone", "example.com").unwrap(),
        zones: Vec::new(),
        rules: ProviderRules::from_proto(&trafego_proto::cache::Capabilities {
            record_types: ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            proxied: true,
            min_ttl: 60,
            max_ttl: 86400,
            cname_at_apex: true,
            ..Default::default()
        }),
    }
}

fn defaults() -> Defaults {
    Defaults {
        rtype: RecordType::Cname,
        content: None,
        ttl: 1,
        proxied: true,
        public_ip: Some("192.0.2.1".parse().unwrap()),
        public_ipv6: None,
    }
}

fn z() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

#[test]
fn hostnames_from_every_label_form() {
    let m = labels(&[
        ("dns.hostname", "a.example.com, b.example.com,,"),
        ("dns.domain", "example.com"),
        ("dns.subdomain", "c, d"),
        ("dns.use_apex", "true"),
        ("dns.host.1", "e.example.com"),
        ("dns.host.zz", "a.example.com"),
        ("dns.hostname_extra", "ignored.example.com"),
        ("dns.hostx", "ignored.example.com"),
        ("other.host.1", "ignored.example.com"),
    ]);
    let c = cfg(None);
    let got = Labels::new(&m, &c).hostnames(&z()).unwrap();
    assert_eq!(
        got,
        [
            "a.example.com",
            "b.example.com",
            "c.example.com",
            "d.example.com",
            "example.com",
            "e.example.com"
        ]
    );
    // A bare name is taken inside the zone.
    let m = labels(&[("dns.hostname", "web")]);
    assert_eq!(
        Labels::new(&m, &c).hostnames(&z()).unwrap(),
        ["web.example.com"]
    );
    // Another prefix.
    let c2 = LabelConfig {
        dns_prefix: "acme.dns.".into(),
        ..cfg(None)
    };
    let m = labels(&[
        ("acme.dns.hostname", "x.example.com"),
        ("dns.hostname", "y.example.com"),
    ]);
    assert_eq!(
        Labels::new(&m, &c2).hostnames(&z()).unwrap(),
        ["x.example.com"]
    );
}

#[test]
fn malformed_hostname_labels_name_the_label() {
    let c = cfg(None);
    let m = labels(&[("dns.domain", "example.com"), ("dns.use_apex", "maybe")]);
    let e = Labels::new(&m, &c).hostnames(&z()).unwrap_err();
    assert_eq!(e.label, "dns.use_apex");
    let m = labels(&[("dns.subdomain", "a")]);
    let e = Labels::new(&m, &c).hostnames(&z()).unwrap_err();
    assert_eq!(e.label, "dns.subdomain");
}

#[test]
fn manage_and_skip() {
    let on = cfg(None);
    let off = LabelConfig {
        default_manage: false,
        ..cfg(Some("cloudflare"))
    };
    let check = |c: &LabelConfig, pairs: &[(&str, &str)]| Labels::new(&labels(pairs), c).managed();
    assert_eq!(check(&on, &[]), Ok(true));
    assert_eq!(check(&off, &[]), Ok(false));
    assert_eq!(check(&off, &[("dns.manage", "true")]), Ok(true));
    assert_eq!(check(&off, &[("dns.cloudflare.manage", "true")]), Ok(true));
    assert_eq!(check(&on, &[("dns.manage", "false")]), Ok(false));
    // skip always wins.
    assert_eq!(
        check(&on, &[("dns.skip", "true"), ("dns.manage", "true")]),
        Ok(false)
    );
    assert_eq!(
        check(
            &off,
            &[("dns.cloudflare.skip", "true"), ("dns.manage", "true")]
        ),
        Ok(false)
    );
    // The provider-specific value wins over the generic one.
    assert_eq!(
        check(
            &off,
            &[("dns.cloudflare.manage", "false"), ("dns.manage", "true")]
        ),
        Ok(false)
    );
    let on_cf = cfg(Some("cloudflare"));
    assert_eq!(
        check(
            &on_cf,
            &[("dns.cloudflare.skip", "false"), ("dns.skip", "true")]
        ),
        Ok(true)
    );
    let e = check(&on, &[("dns.skip", "sometimes")]).unwrap_err();
    assert_eq!(e.label, "dns.skip");
}

#[test]
fn record_settings_with_provider_precedence() {
    let c = cfg(Some("cloudflare"));
    let m = labels(&[
        ("dns.type", "A"),
        ("dns.content", "192.0.2.7"),
        ("dns.cloudflare.content", "192.0.2.8"),
        ("dns.ttl", "300"),
        ("dns.proxied", "false"),
        ("dns.zonefile.ttl", "600"),
    ]);
    let r = Labels::new(&m, &c).record("a.example.com").unwrap();
    assert_eq!(r.r#type.as_deref(), Some("A"));
    assert_eq!(r.content.as_deref(), Some("192.0.2.8"));
    assert_eq!(r.ttl, Some(300));
    assert_eq!(r.proxied, Some(false));
    // Another provider sees its own key.
    let zf = cfg(Some("zonefile"));
    let r = Labels::new(&m, &zf).record("a.example.com").unwrap();
    assert_eq!(r.content.as_deref(), Some("192.0.2.7"));
    assert_eq!(r.ttl, Some(600));
    // Nothing given: everything left to the defaults.
    let r = Labels::new(&labels(&[]), &c)
        .record("a.example.com")
        .unwrap();
    assert_eq!(
        r,
        DesiredRecord {
            hostname: "a.example.com".into(),
            ..Default::default()
        }
    );
}

#[test]
fn type_specific_settings() {
    let c = cfg(None);
    let mx = labels(&[
        ("dns.type", "MX"),
        ("dns.content", "mail.example.com"),
        ("dns.priority", "5"),
    ]);
    let r = Labels::new(&mx, &c).record("example.com").unwrap();
    assert_eq!(r.priority, Some(5));
    let srv = labels(&[
        ("dns.type", "SRV"),
        ("dns.content", "sip.example.com"),
        ("dns.priority", "10"),
        ("dns.weight", "20"),
        ("dns.port", "5060"),
    ]);
    let r = Labels::new(&srv, &c)
        .record("_sip._tcp.example.com")
        .unwrap();
    assert_eq!(r.content.as_deref(), Some("20 5060 sip.example.com"));
    assert_eq!(r.priority, Some(10));
    let caa = labels(&[
        ("dns.type", "CAA"),
        ("dns.content", "\"letsencrypt.org\""),
        ("dns.tag", "issuewild"),
    ]);
    let r = Labels::new(&caa, &c).record("example.com").unwrap();
    assert_eq!(
        r.content.as_deref(),
        Some("0 issuewild \"letsencrypt.org\"")
    );
    let caa_full = labels(&[
        ("dns.type", "CAA"),
        ("dns.content", "128 issue \"ca.example.net\""),
    ]);
    let r = Labels::new(&caa_full, &c).record("example.com").unwrap();
    assert_eq!(r.content.as_deref(), Some("128 issue \"ca.example.net\""));
    // Priority means nothing to a CNAME.
    let cname = labels(&[("dns.priority", "junk")]);
    assert_eq!(
        Labels::new(&cname, &c)
            .record("a.example.com")
            .unwrap()
            .priority,
        None
    );
}

#[test]
fn values_that_do_not_parse_name_the_label() {
    let c = cfg(Some("cloudflare"));
    let table: &[(&[(&str, &str)], &str)] = &[
        (&[("dns.ttl", "soon")], "dns.ttl"),
        (&[("dns.ttl", "-5")], "dns.ttl"),
        (
            &[("dns.cloudflare.ttl", "x"), ("dns.ttl", "300")],
            "dns.cloudflare.ttl",
        ),
        (&[("dns.proxied", "orange")], "dns.proxied"),
        (&[("dns.type", "PTR")], "dns.type"),
        (
            &[("dns.type", "MX"), ("dns.priority", "99999")],
            "dns.priority",
        ),
        (
            &[
                ("dns.type", "SRV"),
                ("dns.content", "x.example.com"),
                ("dns.port", "http"),
            ],
            "dns.port",
        ),
        (
            &[("dns.type", "SRV"), ("dns.content", "x.example.com")],
            "dns.port",
        ),
        (
            &[
                ("dns.type", "CAA"),
                ("dns.flags", "256"),
                ("dns.content", "x"),
            ],
            "dns.flags",
        ),
    ];
    for (pairs, label) in table {
        let e = Labels::new(&labels(pairs), &c)
            .record("a.example.com")
            .unwrap_err();
        assert_eq!(e.label, *label, "{pairs:?}: {e}");
    }
}

fn container(name: &str, pairs: &[(&str, &str)]) -> Container {
    Container {
        id: format!("id-{name}"),
        name: name.into(),
        labels: labels(pairs),
    }
}

fn declare(containers: &[Container], c: &LabelConfig) -> (Vec<DesiredRecord>, Vec<Problem>) {
    let (d, z) = (defaults(), zone());
    let mut col = Collector::new(&d, &z);
    declare_containers(containers, c, &mut col);
    col.finish()
}

#[test]
fn a_container_with_a_bad_value_is_skipped_whole() {
    let c = cfg(None);
    let (records, problems) = declare(
        &[
            container("good", &[("dns.hostname", "good.example.com")]),
            container(
                "bad",
                &[
                    ("dns.hostname", "b1.example.com,b2.example.com"),
                    ("dns.ttl", "never"),
                ],
            ),
            // Valid labels, but a TTL the tracker refuses: still all or nothing.
            container(
                "range",
                &[
                    ("dns.hostname", "r1.example.com,r2.example.com"),
                    ("dns.ttl", "5"),
                ],
            ),
            container(
                "content",
                &[
                    ("dns.hostname", "c1.example.com"),
                    ("dns.type", "A"),
                    ("dns.content", "nope"),
                ],
            ),
            container(
                "skipped",
                &[("dns.hostname", "s.example.com"), ("dns.skip", "true")],
            ),
            container("plain", &[("com.example.other", "x")]),
        ],
        &c,
    );
    let names: Vec<&str> = records.iter().map(|r| r.hostname.as_str()).collect();
    assert_eq!(names, ["good.example.com"]);
    let owners: Vec<&str> = problems.iter().map(|p| p.owner.as_str()).collect();
    assert_eq!(
        owners,
        ["container bad", "container content", "container range"]
    );
    assert!(problems[0].message.contains("dns.ttl"), "{problems:?}");
    assert!(
        problems[2].message.contains("r1.example.com"),
        "{problems:?}"
    );
}

#[test]
fn outside_the_zone_is_skipped_and_clashes_keep_the_first() {
    let c = cfg(None);
    let (records, problems) = declare(
        &[
            container(
                "b-second",
                &[
                    ("dns.hostname", "same.example.com"),
                    ("dns.type", "A"),
                    ("dns.content", "192.0.2.2"),
                ],
            ),
            container(
                "a-first",
                &[
                    ("dns.hostname", "same.example.com,other.example.org"),
                    ("dns.type", "A"),
                    ("dns.content", "192.0.2.1"),
                ],
            ),
            container(
                "c-twin",
                &[
                    ("dns.hostname", "same.example.com"),
                    ("dns.type", "A"),
                    ("dns.content", "192.0.2.1"),
                ],
            ),
            container("d-cname", &[("dns.hostname", "same.example.com")]),
            container(
                "e-badname",
                &[("dns.hostname", "bad_-.example.com,ok.example.com")],
            ),
        ],
        &c,
    );
    let names: Vec<(&str, Option<&str>)> = records
        .iter()
        .map(|r| (r.hostname.as_str(), r.content.as_deref()))
        .collect();
    assert_eq!(names, [("same.example.com", Some("192.0.2.1"))]);
    let owners: Vec<&str> = problems.iter().map(|p| p.owner.as_str()).collect();
    assert_eq!(
        owners,
        [
            "container b-second",
            "container d-cname",
            "container e-badname"
        ]
    );
}

#[test]
fn opt_in_when_not_managed_by_default() {
    let c = LabelConfig {
        default_manage: false,
        ..cfg(None)
    };
    let (records, problems) = declare(
        &[
            container(
                "in",
                &[("dns.hostname", "in.example.com"), ("dns.manage", "true")],
            ),
            container("out", &[("dns.hostname", "out.example.com")]),
        ],
        &c,
    );
    assert!(problems.is_empty());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].hostname, "in.example.com");
}
