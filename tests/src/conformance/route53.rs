//! The conformance backend for Route53: the fake Route53 (a real HTTP server
//! speaking Route53's REST/XML API and checking every request's SigV4
//! signature), seeded and read out of band in Route53's own value forms, so
//! the provider's conversions are checked, not reused.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Backend, Boxed, Fault, Held, ZONE};
use crate::fake_route53::{FakeRoute53, RecordSet, Route53Options};

/// The access key id the conformance fake accepts.
pub const R53_ACCESS_KEY: &str = "AKIACONFORMANCE0R53";
/// Its secret key.
pub const R53_SECRET: &str = "conformance/route53+secret-9f3c1d";
/// A secret key it refuses (the signature then does not match).
pub const R53_BAD_SECRET: &str = "conformance/wrong+secret-77e0b2";
/// Record sets per listing page asked of it.
pub const R53_MAX_ITEMS: usize = 50;

/// The fake Route53 with the documented limits (300 a page at most, 1,000
/// records a batch, 5 requests a second, signing region us-east-1).
pub struct Route53 {
    fake: FakeRoute53,
}

impl Route53 {
    /// A fresh fake with an empty zone (only its SOA and apex NS).
    pub async fn start() -> Self {
        crate::capture_logs();
        let fake = FakeRoute53::start(Route53Options::new(R53_ACCESS_KEY, R53_SECRET, ZONE))
            .await
            .expect("fake route53");
        Route53 { fake }
    }

    /// The fake, for tests that look further.
    pub fn fake(&self) -> &FakeRoute53 {
        &self.fake
    }

    fn args(&self, secret: &str) -> Vec<String> {
        vec![
            "--provider".into(),
            "route53".into(),
            "--zone".into(),
            ZONE.into(),
            "--route53-api-url".into(),
            self.fake.endpoint(),
            "--route53-access-key".into(),
            R53_ACCESS_KEY.into(),
            "--route53-secret-key".into(),
            secret.into(),
            "--route53-max-items".into(),
            R53_MAX_ITEMS.to_string(),
        ]
    }
}

/// `h`'s value as Route53 writes it.
pub fn value_of(h: &Held) -> String {
    let p = h.priority.unwrap_or(0);
    match h.rtype.as_str() {
        "CNAME" | "NS" => format!("{}.", h.content),
        "MX" => format!("{p} {}.", h.content),
        "SRV" => format!("{p} {}.", h.content),
        "TXT" => format!(
            "\"{}\"",
            h.content.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        _ => h.content.clone(),
    }
}

/// A Route53 value as the project's content and priority.
pub fn held_of(rtype: &str, name: &str, value: &str) -> Held {
    let dotless = |s: &str| s.trim_end_matches('.').to_string();
    let mut h = Held::new(rtype, name, value);
    match rtype {
        "CNAME" | "NS" => h.content = dotless(value),
        "MX" | "SRV" => {
            let (p, rest) = value.split_once(' ').unwrap_or(("0", value));
            h.priority = p.parse().ok();
            h.content = match rest.rsplit_once(' ') {
                Some((head, target)) => format!("{head} {}", dotless(target)),
                None => dotless(rest),
            };
        }
        "TXT" => {
            h.content = value
                .split("\" \"")
                .map(|s| {
                    s.trim_matches('"')
                        .replace("\\\"", "\"")
                        .replace("\\\\", "\\")
                })
                .collect::<String>();
        }
        _ => {}
    }
    h
}

impl Backend for Route53 {
    fn name(&self) -> &'static str {
        "route53"
    }

    fn cache_args(&self, _dir: &Path) -> Vec<String> {
        self.args(R53_SECRET)
    }

    fn bad_credentials_args(&self, _dir: &Path) -> Option<Vec<String>> {
        Some(self.args(R53_BAD_SECRET))
    }

    fn secrets(&self) -> Vec<String> {
        vec![R53_SECRET.into(), R53_BAD_SECRET.into()]
    }

    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let mut sets: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
            for h in &records {
                sets.entry((h.name.clone(), h.rtype.clone()))
                    .or_default()
                    .push(value_of(h));
            }
            let sets = sets
                .into_iter()
                .map(|((name, rtype), mut values)| {
                    let (ttl, mut held) = match self.fake.get(&name, &rtype) {
                        Some(rs) => (rs.ttl.unwrap_or(300), rs.values),
                        None => (300, Vec::new()),
                    };
                    held.append(&mut values);
                    let refs: Vec<&str> = held.iter().map(String::as_str).collect();
                    RecordSet::new(&rtype, &name, ttl, &refs)
                })
                .collect();
            self.fake.insert_many(sets);
        })
    }

    fn held(&self) -> Boxed<'_, Vec<Held>> {
        Box::pin(async move {
            let apex = format!("{ZONE}.");
            self.fake
                .record_sets()
                .into_iter()
                .filter(|rs| !(rs.name == apex && matches!(rs.r#type.as_str(), "SOA" | "NS")))
                .flat_map(|rs| {
                    let name = rs.name.trim_end_matches('.').to_string();
                    rs.values
                        .iter()
                        .map(|v| held_of(&rs.r#type, &name, v))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
    }

    fn fault(&self, fault: Fault) -> Boxed<'_, bool> {
        Box::pin(async move {
            match fault {
                Fault::Down => self.fake.fail_next(u32::MAX, 503),
                Fault::RateLimited => self.fake.throttle_next(2),
                Fault::Clear => self.fake.clear_faults(),
            }
            true
        })
    }

    fn page_size(&self) -> usize {
        R53_MAX_ITEMS
    }
}
