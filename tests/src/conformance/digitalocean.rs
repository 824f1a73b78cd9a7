//! The conformance backend for DigitalOcean: the fake DigitalOcean (a real
//! HTTP server speaking its API v2), seeded and read out of band in its own
//! wire form (names relative to the domain, MX/SRV/CAA fields of their own).

use std::path::Path;

use super::{Backend, Boxed, Fault, Held, ZONE};
use crate::fake_digitalocean::{DoOptions, DoRecord, FakeDigitalOcean};

/// The token the conformance fake DigitalOcean accepts.
pub const DO_TOKEN: &str = "conformance-do-token-3f9c1e77ab";
/// A token it refuses.
pub const DO_BAD_TOKEN: &str = "conformance-do-wrong-token-0b12";
/// Records per listing page asked of it.
pub const DO_PER_PAGE: usize = 20;

/// The fake DigitalOcean, with the SOA and NS records every domain has.
pub struct DigitalOcean {
    fake: FakeDigitalOcean,
}

impl DigitalOcean {
    /// A fresh fake holding only the domain's own apex records.
    pub async fn start() -> Self {
        crate::capture_logs();
        let fake = FakeDigitalOcean::start(DoOptions::new(DO_TOKEN, ZONE))
            .await
            .expect("fake digitalocean");
        DigitalOcean { fake }
    }

    fn args(&self, token: &str) -> Vec<String> {
        vec![
            "--provider".into(),
            "digitalocean".into(),
            "--do-domain".into(),
            ZONE.into(),
            "--do-api-url".into(),
            self.fake.base_url(),
            "--do-token".into(),
            token.into(),
            "--do-per-page".into(),
            DO_PER_PAGE.to_string(),
        ]
    }
}

/// `h` as DigitalOcean stores it.
fn to_wire(h: &Held) -> DoRecord {
    let name = if h.name == ZONE {
        "@".to_string()
    } else {
        h.name
            .strip_suffix(&format!(".{ZONE}"))
            .unwrap_or_else(|| panic!("{} outside {ZONE}", h.name))
            .to_string()
    };
    let mut r = DoRecord::new(&h.rtype, &name, &h.content);
    r.ttl = 300;
    r.priority = h.priority;
    match h.rtype.as_str() {
        "SRV" => {
            let parts: Vec<&str> = h.content.split_whitespace().collect();
            let [weight, port, target] = parts.as_slice() else {
                panic!("SRV content {:?}", h.content)
            };
            r.weight = weight.parse().ok();
            r.port = port.parse().ok();
            r.data = (*target).to_string();
        }
        "CAA" => {
            let mut it = h.content.splitn(3, ' ');
            let (flags, tag, value) = (it.next(), it.next(), it.next());
            r.flags = flags.and_then(|f| f.parse().ok());
            r.tag = tag.map(str::to_string);
            r.data = value.unwrap_or_default().trim_matches('"').to_string();
        }
        _ => {}
    }
    r
}

/// What DigitalOcean holds, in the project's canonical form.
fn from_wire(r: DoRecord) -> Held {
    let content = match r.r#type.as_str() {
        "SRV" => format!(
            "{} {} {}",
            r.weight.unwrap_or(0),
            r.port.unwrap_or(0),
            r.data
        ),
        "CAA" => format!(
            "{} {} \"{}\"",
            r.flags.unwrap_or(0),
            r.tag.as_deref().unwrap_or(""),
            r.data
        ),
        _ if r.data == "@" => ZONE.to_string(),
        _ => r.data.clone(),
    };
    Held {
        name: r.fqdn(ZONE),
        rtype: r.r#type,
        content,
        priority: r.priority,
    }
}

impl Backend for DigitalOcean {
    fn name(&self) -> &'static str {
        "digitalocean"
    }

    fn cache_args(&self, _dir: &Path) -> Vec<String> {
        self.args(DO_TOKEN)
    }

    fn bad_credentials_args(&self, _dir: &Path) -> Option<Vec<String>> {
        Some(self.args(DO_BAD_TOKEN))
    }

    fn secrets(&self) -> Vec<String> {
        vec![DO_TOKEN.into(), DO_BAD_TOKEN.into()]
    }

    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()> {
        Box::pin(async move {
            self.fake.insert_many(records.iter().map(to_wire).collect());
        })
    }

    fn held(&self) -> Boxed<'_, Vec<Held>> {
        Box::pin(async move {
            self.fake
                .records()
                .into_iter()
                .filter(|r| !(r.name == "@" && matches!(r.r#type.as_str(), "SOA" | "NS")))
                .map(from_wire)
                .collect()
        })
    }

    fn fault(&self, fault: Fault) -> Boxed<'_, bool> {
        Box::pin(async move {
            match fault {
                Fault::Down => self.fake.fail_next(u32::MAX, 503),
                // DigitalOcean's burst refusal: 429 with Retry-After.
                Fault::RateLimited => self.fake.rate_limit_next(2, 1),
                Fault::Clear => self.fake.clear_faults(),
            }
            true
        })
    }

    fn page_size(&self) -> usize {
        DO_PER_PAGE
    }
}
