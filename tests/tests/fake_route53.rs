//! Integration tests of the fake Route 53 itself: raw reqwest calls over loopback, each signed
//! with the `aws-sigv4` crate as the provider client will sign them, checking that the fake
//! answers like Route 53's 2013-04-01 REST/XML API: the signature check and its refusals,
//! hosted-zone lookups, ListResourceRecordSets order and paging, atomic change batches and
//! their `InvalidChangeBatch` messages, Route 53's batch limits, throttling on a manual clock,
//! injected faults and the request counters other tests will rely on.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use trafego_common::clock::{Clock, ManualClock};
use trafego_tests::fake_route53::{
    BatchErrorStyle, FakeRoute53, LostAnswer, NAMESPACE, RecordSet, Route53Options, Route53Stats,
    SignedParts, sigv4_signature,
};

const AKID: &str = "AKIDFAKEROUTE53";
const SECRET: &str = "fake/route53/secret+key";
const ZONE: &str = "example.com";
/// 2023-11-14T22:13:20Z, where the manual clocks start.
const START_MS: i64 = 1_700_000_000_000;

// ----- XML shapes a client reads (deserialized with quick-xml, as a client would) -----

#[derive(Debug, Deserialize)]
struct ErrorResponse {
    #[serde(rename = "Error")]
    error: ErrorXml,
    #[serde(rename = "RequestId")]
    request_id: String,
}

#[derive(Debug, Deserialize)]
struct ErrorXml {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Debug, Deserialize)]
struct InvalidChangeBatch {
    #[serde(rename = "Messages")]
    messages: Messages,
}

#[derive(Debug, Deserialize)]
struct Messages {
    #[serde(rename = "Message", default)]
    message: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ListRrsets {
    #[serde(rename = "ResourceRecordSets")]
    sets: Sets,
    #[serde(rename = "IsTruncated")]
    truncated: bool,
    #[serde(rename = "NextRecordName")]
    next_name: Option<String>,
    #[serde(rename = "NextRecordType")]
    next_type: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: u32,
}

#[derive(Debug, Deserialize)]
struct Sets {
    #[serde(rename = "ResourceRecordSet", default)]
    sets: Vec<SetXml>,
}

#[derive(Debug, Deserialize)]
struct SetXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "TTL")]
    ttl: Option<u32>,
    #[serde(rename = "ResourceRecords")]
    records: Option<Records>,
}

#[derive(Debug, Deserialize)]
struct Records {
    #[serde(rename = "ResourceRecord", default)]
    records: Vec<RecordXml>,
}

#[derive(Debug, Deserialize)]
struct RecordXml {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Debug, Deserialize)]
struct ChangeInfoResponse {
    #[serde(rename = "ChangeInfo")]
    info: ChangeInfo,
}

#[derive(Debug, Deserialize)]
struct ChangeInfo {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "SubmittedAt")]
    submitted_at: String,
}

#[derive(Debug, Deserialize)]
struct GetHostedZone {
    #[serde(rename = "HostedZone")]
    zone: HostedZone,
}

#[derive(Debug, Deserialize)]
struct HostedZone {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ResourceRecordSetCount")]
    count: usize,
}

#[derive(Debug, Deserialize)]
struct ListByName {
    #[serde(rename = "HostedZones")]
    zones: HostedZones,
    #[serde(rename = "IsTruncated")]
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct HostedZones {
    #[serde(rename = "HostedZone", default)]
    zones: Vec<HostedZone>,
}

// ----- a signing client -----

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn parse<T: for<'de> Deserialize<'de>>(&self) -> T {
        quick_xml::de::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: cannot parse {}", self.body))
    }

    fn ok<T: for<'de> Deserialize<'de>>(&self) -> T {
        assert_eq!(self.status, 200, "{}", self.body);
        self.parse()
    }

    /// The `<ErrorResponse>` of a refusal, checking status and code.
    fn error(&self, status: u16, code: &str) -> ErrorXml {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.body.contains(NAMESPACE), "{}", self.body);
        let e: ErrorResponse = self.parse();
        assert_eq!(e.error.code, code, "{}", self.body);
        assert!(!e.request_id.is_empty());
        assert!(!self.body.contains(SECRET));
        e.error
    }

    fn batch_messages(&self) -> Vec<String> {
        assert_eq!(self.status, 400, "{}", self.body);
        let b: InvalidChangeBatch = self.parse();
        b.messages.message
    }
}

/// Signs every request with SigV4 (`aws-sigv4`, default settings as the SDK uses for Route 53)
/// at the time of `clock`, or of the wall clock.
struct Client {
    http: reqwest::Client,
    endpoint: String,
    akid: String,
    secret: String,
    region: String,
    clock: Option<ManualClock>,
    /// Also sign an `x-amz-content-sha256` header (Route 53's SDKs do not; some clients do).
    content_sha: bool,
}

impl Client {
    fn new(fake: &FakeRoute53, clock: Option<&ManualClock>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            endpoint: fake.endpoint(),
            akid: AKID.to_string(),
            secret: SECRET.to_string(),
            region: "us-east-1".to_string(),
            clock: clock.cloned(),
            content_sha: false,
        }
    }

    fn now(&self) -> SystemTime {
        match &self.clock {
            Some(c) => UNIX_EPOCH + Duration::from_millis(u64::try_from(c.now_ms()).unwrap_or(0)),
            None => SystemTime::now(),
        }
    }

    fn signed(&self, method: &str, path: &str, body: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.endpoint);
        let identity = Credentials::new(&self.akid, &self.secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        if self.content_sha {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("route53")
            .time(self.now())
            .settings(settings)
            .build()
            .expect("params")
            .into();
        let content_type = [("content-type", "text/xml")];
        let headers = if body.is_empty() {
            &content_type[..0]
        } else {
            &content_type[..]
        };
        let signable = SignableRequest::new(
            method,
            url.clone(),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("signable");
        let (instructions, _sig) = sign(signable, &params).expect("sign").into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        for (k, v) in instructions.headers() {
            req = req.header(k, v);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body.to_string())
    }

    async fn run(req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        Self::run(self.signed("GET", path, "")).await
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        Self::run(self.signed("POST", path, body)).await
    }

    async fn change(&self, zone_id: &str, changes: &[Change<'_>]) -> Answer {
        self.post(
            &format!("/2013-04-01/hostedzone/{zone_id}/rrset/"),
            &batch(changes),
        )
        .await
    }
}

/// One change of a batch: action, name, type, TTL, values.
type Change<'a> = (&'a str, &'a str, &'a str, u32, &'a [&'a str]);

/// A ChangeResourceRecordSetsRequest document as a client writes it.
fn batch(changes: &[Change<'_>]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{NAMESPACE}\"><ChangeBatch><Comment>test</Comment><Changes>"
    );
    for (action, name, rtype, ttl, values) in changes {
        out.push_str(&format!(
            "<Change><Action>{action}</Action><ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type><TTL>{ttl}</TTL><ResourceRecords>"
        ));
        for v in *values {
            let v = v.replace('&', "&amp;").replace('<', "&lt;");
            out.push_str(&format!(
                "<ResourceRecord><Value>{v}</Value></ResourceRecord>"
            ));
        }
        out.push_str("</ResourceRecords></ResourceRecordSet></Change>");
    }
    out.push_str("</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>");
    out
}

fn options(clock: &ManualClock) -> Route53Options {
    let mut o = Route53Options::new(AKID, SECRET, ZONE);
    o.clock = Arc::new(clock.clone());
    o
}

/// A fake on a manual clock, throttling off unless a test wants it.
async fn fake() -> (FakeRoute53, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let mut o = options(&clock);
    o.throttle = None;
    (FakeRoute53::start(o).await.expect("start"), clock)
}

fn rrset_path(fake: &FakeRoute53) -> String {
    format!("/2013-04-01/hostedzone/{}/rrset", fake.zone_id())
}

/// Every record set, following `NextRecordName` / `NextRecordType`, `maxitems` a page.
async fn list_all(c: &Client, fake: &FakeRoute53, maxitems: u32) -> (Vec<SetXml>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut start: Option<(String, String)> = None;
    loop {
        let mut path = format!("{}?maxitems={maxitems}", rrset_path(fake));
        if let Some((n, t)) = &start {
            path.push_str(&format!("&name={}&type={t}", urlencode(n)));
        }
        let page: ListRrsets = c.get(&path).await.ok();
        pages += 1;
        assert_eq!(page.max_items, maxitems);
        out.extend(page.sets.sets);
        if !page.truncated {
            assert!(page.next_name.is_none() && page.next_type.is_none());
            return (out, pages);
        }
        start = Some((
            page.next_name.expect("NextRecordName"),
            page.next_type.expect("NextRecordType"),
        ));
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ----- tests -----

#[test]
fn the_signature_check_reproduces_awss_get_vanilla_test_vector() {
    // AWS's SigV4 test suite, "get-vanilla": GET / with Host and X-Amz-Date only.
    let headers = vec![
        ("host".to_string(), "example.amazonaws.com".to_string()),
        ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
    ];
    let signed = vec!["host".to_string(), "x-amz-date".to_string()];
    let sig = sigv4_signature(
        &SignedParts {
            method: "GET",
            uri: "https://example.amazonaws.com/",
            headers: &headers,
            body: b"",
            access_key: "AKIDEXAMPLE",
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "service",
            signed_headers: &signed,
        },
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )
    .expect("signature");
    assert_eq!(
        sig,
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
}

#[tokio::test]
async fn a_correctly_signed_request_is_served() {
    let (fake, clock) = fake().await;
    let c = Client::new(&fake, Some(&clock));
    let a = c
        .get(&format!("/2013-04-01/hostedzone/{}", fake.zone_id()))
        .await;
    let z: GetHostedZone = a.ok();
    assert_eq!(z.zone.id, format!("/hostedzone/{}", fake.zone_id()));
    assert_eq!(z.zone.name, "example.com.");
    assert_eq!(z.zone.count, 2, "the apex SOA and NS");
    assert!(a.body.starts_with("<?xml"));
    assert!(a.body.contains(&format!("xmlns=\"{NAMESPACE}\"")));
    assert!(a.headers.get("x-amzn-requestid").is_some());
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/xml")
    );

    // A client that also signs x-amz-content-sha256 is served too, a write included.
    let mut sha = Client::new(&fake, Some(&clock));
    sha.content_sha = true;
    let a = sha
        .change(
            &fake.zone_id(),
            &[("CREATE", "www.example.com.", "A", 300, &["192.0.2.1"])],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_unknown_key_requests_are_refused() {
    let (fake, clock) = fake().await;
    let path = format!("/2013-04-01/hostedzone/{}", fake.zone_id());

    let plain = Client::run(
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("{}{path}", fake.endpoint())),
    )
    .await;
    plain.error(403, "MissingAuthenticationToken");

    let mut bad_secret = Client::new(&fake, Some(&clock));
    bad_secret.secret = "not-the-secret".to_string();
    let e = bad_secret
        .get(&path)
        .await
        .error(403, "SignatureDoesNotMatch");
    assert_eq!(e.kind, "Sender");
    assert!(
        e.message
            .starts_with("The request signature we calculated does not match")
    );

    let mut unknown = Client::new(&fake, Some(&clock));
    unknown.akid = "AKIDUNKNOWN".to_string();
    let e = unknown.get(&path).await.error(403, "InvalidClientTokenId");
    assert_eq!(
        e.message,
        "The security token included in the request is invalid."
    );

    // Route 53 signs in us-east-1 whatever region a client was configured with.
    let mut region = Client::new(&fake, Some(&clock));
    region.region = "eu-west-2".to_string();
    let e = region.get(&path).await.error(403, "SignatureDoesNotMatch");
    assert!(e.message.contains("valid region"), "{}", e.message);

    // A body changed after signing no longer matches its signature.
    let good = Client::new(&fake, Some(&clock));
    let body = batch(&[("CREATE", "www.example.com.", "A", 300, &["192.0.2.1"])]);
    let tampered = good
        .signed("POST", &format!("{}/", rrset_path(&fake)), &body)
        .body(body.replace("192.0.2.1", "192.0.2.66"));
    Client::run(tampered)
        .await
        .error(403, "SignatureDoesNotMatch");

    // A signature made 16 minutes ago has expired.
    let stale = good.signed("GET", &path, "");
    clock.advance(Duration::from_secs(16 * 60));
    let e = Client::run(stale).await.error(403, "SignatureDoesNotMatch");
    assert!(e.message.starts_with("Signature expired:"), "{}", e.message);

    assert!(fake.get("www.example.com", "A").is_none());
    let s = fake.stats();
    assert_eq!(
        (s.total, s.unauthorized, s.zones, s.change_batches),
        (6, 6, 0, 0)
    );
}

#[tokio::test]
async fn an_unknown_hosted_zone_is_no_such_hosted_zone() {
    let (fake, clock) = fake().await;
    let c = Client::new(&fake, Some(&clock));
    let e = c
        .get("/2013-04-01/hostedzone/ZNOSUCHZONE")
        .await
        .error(404, "NoSuchHostedZone");
    assert_eq!(e.message, "No hosted zone found with ID: ZNOSUCHZONE");
    c.get("/2013-04-01/hostedzone/ZNOSUCHZONE/rrset")
        .await
        .error(404, "NoSuchHostedZone");
}

#[tokio::test]
async fn hosted_zones_by_name_lists_from_the_name_on_in_route53_order() {
    let (fake, clock) = fake().await;
    let c = Client::new(&fake, Some(&clock));
    let by = |n: &str| format!("/2013-04-01/hostedzonesbyname?dnsname={n}");
    let exact: ListByName = c.get(&by("example.com")).await.ok();
    assert!(!exact.truncated);
    assert_eq!(exact.zones.zones.len(), 1);
    assert_eq!(exact.zones.zones[0].name, "example.com.");
    assert_eq!(
        exact.zones.zones[0].id,
        format!("/hostedzone/{}", fake.zone_id())
    );
    // A name sorting before the zone still gets it back: clients must compare names.
    let before: ListByName = c.get(&by("a.com")).await.ok();
    assert_eq!(before.zones.zones.len(), 1);
    let after: ListByName = c.get(&by("zzz.org")).await.ok();
    assert!(after.zones.zones.is_empty());
}

#[tokio::test]
async fn listing_follows_route53_order_and_pages_with_next_record_name_and_type() {
    let (fake, clock) = fake().await;
    fake.insert_many(vec![
        RecordSet::new("A", "www.example.com.", 300, &["192.0.2.1"]),
        RecordSet::new("AAAA", "www.example.com.", 300, &["2001:db8::1"]),
        RecordSet::new("A", "*.example.com.", 60, &["192.0.2.9"]),
        RecordSet::new("A", "a.b.example.com.", 60, &["192.0.2.2"]),
        RecordSet::new(
            "MX",
            "example.com.",
            3600,
            &["10 mail.example.com.", "20 mx2.example.com."],
        ),
        RecordSet::new("TXT", "example.com.", 300, &["\"v=spf1 -all\""]),
        RecordSet::new(
            "CNAME",
            "example-a.example.com.",
            300,
            &["www.example.com."],
        ),
    ]);
    let c = Client::new(&fake, Some(&clock));
    let (sets, pages) = list_all(&c, &fake, 2).await;
    assert_eq!(pages, 5);
    let order: Vec<(String, String)> = sets
        .iter()
        .map(|s| (s.name.clone(), s.rtype.clone()))
        .collect();
    // Reversed labels: com.example. < com.example.*. < com.example.b.a. < … < com.example.www.
    let want: Vec<(String, String)> = [
        ("example.com.", "MX"),
        ("example.com.", "NS"),
        ("example.com.", "SOA"),
        ("example.com.", "TXT"),
        ("\\052.example.com.", "A"),
        ("a.b.example.com.", "A"),
        ("example-a.example.com.", "CNAME"),
        ("www.example.com.", "A"),
        ("www.example.com.", "AAAA"),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    assert_eq!(order, want);
    let mx = &sets[0];
    assert_eq!(mx.ttl, Some(3600));
    let mx_values: Vec<&str> = mx
        .records
        .as_ref()
        .map(|r| r.records.iter().map(|v| v.value.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(mx_values, ["10 mail.example.com.", "20 mx2.example.com."]);
    let txt = &sets[3];
    assert_eq!(
        txt.records.as_ref().map(|r| r.records[0].value.as_str()),
        Some("\"v=spf1 -all\"")
    );

    // Starting at a name and type lists from there on.
    let from: ListRrsets = c
        .get(&format!(
            "{}?name=www.example.com&type=AAAA",
            rrset_path(&fake)
        ))
        .await
        .ok();
    assert_eq!(from.sets.sets.len(), 1);
    assert_eq!(from.sets.sets[0].rtype, "AAAA");
    // A type needs a name.
    c.get(&format!("{}?type=A", rrset_path(&fake)))
        .await
        .error(400, "InvalidInput");
}

#[tokio::test]
async fn a_page_holds_at_most_300_record_sets() {
    let (fake, clock) = fake().await;
    fake.insert_many(
        (0..350)
            .map(|i| RecordSet::new("A", &format!("h{i:03}.example.com"), 60, &["192.0.2.1"]))
            .collect(),
    );
    let c = Client::new(&fake, Some(&clock));
    let first: ListRrsets = c.get(&rrset_path(&fake)).await.ok();
    assert_eq!(first.max_items, 300);
    assert_eq!(first.sets.sets.len(), 300);
    assert!(first.truncated);
    let capped: ListRrsets = c
        .get(&format!("{}?maxitems=1000", rrset_path(&fake)))
        .await
        .ok();
    assert_eq!(capped.sets.sets.len(), 300);
    let (all, pages) = list_all(&c, &fake, 300).await;
    assert_eq!((all.len(), pages), (352, 2));
    assert_eq!(fake.stats().list, 4);
}

#[tokio::test]
async fn a_change_batch_is_applied_and_its_change_goes_insync() {
    let clock = ManualClock::new(START_MS);
    let mut o = options(&clock);
    o.throttle = None;
    o.insync_after = Duration::from_secs(60);
    let fake = FakeRoute53::start(o).await.expect("start");
    let c = Client::new(&fake, Some(&clock));
    let a = c
        .change(
            &fake.zone_id(),
            &[
                (
                    "CREATE",
                    "www.example.com.",
                    "A",
                    300,
                    &["192.0.2.1", "192.0.2.2"],
                ),
                (
                    "CREATE",
                    "\\052.example.com",
                    "TXT",
                    60,
                    &["\"hello world\""],
                ),
                (
                    "UPSERT",
                    "mail.example.com.",
                    "MX",
                    300,
                    &["10 mx.example.com."],
                ),
            ],
        )
        .await;
    let info: ChangeInfoResponse = a.ok();
    assert!(info.info.id.starts_with("/change/C"), "{}", info.info.id);
    assert_eq!(info.info.status, "PENDING");
    assert_eq!(info.info.submitted_at, "2023-11-14T22:13:20.000Z");
    let www = fake.get("www.example.com", "A").expect("created");
    assert_eq!(www.values, ["192.0.2.1", "192.0.2.2"]);
    assert!(fake.get("*.example.com.", "TXT").is_some());

    let change_path = format!(
        "/2013-04-01/change/{}",
        info.info.id.trim_start_matches("/change/")
    );
    let pending: ChangeInfoResponse = c.get(&change_path).await.ok();
    assert_eq!(pending.info.status, "PENDING");
    clock.advance(Duration::from_secs(60));
    let synced: ChangeInfoResponse = c.get(&change_path).await.ok();
    assert_eq!(synced.info.status, "INSYNC");
    c.get("/2013-04-01/change/CNOSUCH")
        .await
        .error(404, "NoSuchChange");
    let s = fake.stats();
    assert_eq!((s.change_batches, s.changes, s.get_change), (1, 3, 3));
}

#[tokio::test]
async fn a_batch_with_any_invalid_change_fails_whole_listing_every_problem() {
    let (fake, clock) = fake().await;
    fake.insert(RecordSet::new("A", "www.example.com.", 300, &["192.0.2.1"]));
    fake.insert(RecordSet::new("A", "old.example.com.", 300, &["192.0.2.5"]));
    let before = fake.record_sets();
    let c = Client::new(&fake, Some(&clock));
    let a = c
        .change(
            &fake.zone_id(),
            &[
                ("CREATE", "new.example.com.", "A", 300, &["192.0.2.7"]),
                ("CREATE", "www.example.com.", "A", 300, &["192.0.2.1"]),
                ("DELETE", "gone.example.com.", "A", 300, &["192.0.2.3"]),
                ("DELETE", "old.example.com.", "A", 300, &["192.0.2.6"]),
            ],
        )
        .await;
    assert!(a.body.contains("<InvalidChangeBatch"), "{}", a.body);
    assert_eq!(
        a.batch_messages(),
        [
            "Tried to create resource record set [name='www.example.com.', type='A'] but it already exists",
            "Tried to delete resource record set [name='gone.example.com.', type='A'] but it was not found",
            "Tried to delete resource record set [name='old.example.com.', type='A'] but the values provided do not match the current values",
        ]
    );
    assert_eq!(fake.record_sets(), before, "nothing of the batch applied");
}

#[tokio::test]
async fn invalid_change_batch_can_come_as_an_error_response() {
    let clock = ManualClock::new(START_MS);
    let mut o = options(&clock);
    o.throttle = None;
    o.batch_error_style = BatchErrorStyle::ErrorResponse;
    let fake = FakeRoute53::start(o).await.expect("start");
    let c = Client::new(&fake, Some(&clock));
    let e = c
        .change(
            &fake.zone_id(),
            &[("DELETE", "gone.example.com.", "A", 300, &["192.0.2.3"])],
        )
        .await
        .error(400, "InvalidChangeBatch");
    assert_eq!(
        e.message,
        "[Tried to delete resource record set [name='gone.example.com.', type='A'] but it was not found]"
    );
}

#[tokio::test]
async fn delete_then_create_in_one_batch_replaces_a_record_set_atomically() {
    let (fake, clock) = fake().await;
    fake.insert(RecordSet::new(
        "A",
        "www.example.com.",
        300,
        &["192.0.2.1", "192.0.2.2"],
    ));
    let c = Client::new(&fake, Some(&clock));
    // Values in another order still match exactly.
    let a = c
        .change(
            &fake.zone_id(),
            &[
                (
                    "DELETE",
                    "www.example.com.",
                    "A",
                    300,
                    &["192.0.2.2", "192.0.2.1"],
                ),
                (
                    "CREATE",
                    "www.example.com.",
                    "A",
                    300,
                    &["192.0.2.2", "192.0.2.3"],
                ),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        fake.get("www.example.com.", "A").map(|r| r.values),
        Some(vec!["192.0.2.2".to_string(), "192.0.2.3".to_string()])
    );
    // The same pair again fails: the current values changed underneath it.
    let stale = c
        .change(
            &fake.zone_id(),
            &[
                (
                    "DELETE",
                    "www.example.com.",
                    "A",
                    300,
                    &["192.0.2.1", "192.0.2.2"],
                ),
                ("CREATE", "www.example.com.", "A", 300, &["192.0.2.9"]),
            ],
        )
        .await;
    assert_eq!(
        stale.batch_messages(),
        [
            "Tried to delete resource record set [name='www.example.com.', type='A'] but the values provided do not match the current values",
            "Tried to create resource record set [name='www.example.com.', type='A'] but it already exists",
        ]
    );
    assert_eq!(
        fake.get("www.example.com.", "A").map(|r| r.values.len()),
        Some(2)
    );
}

#[tokio::test]
async fn route53s_record_rules_are_enforced() {
    let (fake, clock) = fake().await;
    fake.insert(RecordSet::new("A", "www.example.com.", 300, &["192.0.2.1"]));
    let c = Client::new(&fake, Some(&clock));
    let cases: [(Change<'_>, &str); 7] = [
        (
            (
                "CREATE",
                "www.example.com.",
                "CNAME",
                300,
                &["other.example.org."],
            ),
            "RRSet of type CNAME with DNS name www.example.com. is not permitted as it conflicts with other records with the same DNS name in zone example.com.",
        ),
        (
            (
                "CREATE",
                "example.com.",
                "CNAME",
                300,
                &["other.example.org."],
            ),
            "RRSet of type CNAME with DNS name example.com. is not permitted at apex in zone example.com.",
        ),
        (
            ("CREATE", "www.other.org.", "A", 300, &["192.0.2.1"]),
            "RRSet with DNS name www.other.org. is not permitted in zone example.com.",
        ),
        (
            ("CREATE", "bad.example.com.", "A", 300, &["192.0.2"]),
            "Invalid Resource Record: 'FATAL problem: ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '192.0.2''",
        ),
        (
            ("CREATE", "txt.example.com.", "TXT", 300, &["v=spf1 -all"]),
            "Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks) encountered with 'v=spf1 -all''",
        ),
        (
            (
                "CREATE",
                "dup.example.com.",
                "A",
                300,
                &["192.0.2.1", "192.0.2.1"],
            ),
            "Duplicate Resource Record: '192.0.2.1'",
        ),
        (
            (
                "DELETE",
                "example.com.",
                "SOA",
                900,
                &["ns-2048.awsdns-64.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"],
            ),
            "A HostedZone must contain exactly one SOA record.",
        ),
    ];
    let before = fake.record_sets();
    for (change, message) in cases {
        let a = c.change(&fake.zone_id(), &[change]).await;
        assert_eq!(a.batch_messages(), [message], "{change:?}");
    }
    assert_eq!(fake.record_sets(), before);
}

#[tokio::test]
async fn malformed_changes_are_invalid_input() {
    let (fake, clock) = fake().await;
    let c = Client::new(&fake, Some(&clock));
    let path = format!("{}/", rrset_path(&fake));
    let no_ttl = format!(
        "<ChangeResourceRecordSetsRequest xmlns=\"{NAMESPACE}\"><ChangeBatch><Changes><Change><Action>CREATE</Action><ResourceRecordSet><Name>x.example.com</Name><Type>A</Type><ResourceRecords><ResourceRecord><Value>192.0.2.1</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
    );
    let e = c.post(&path, &no_ttl).await.error(400, "InvalidInput");
    assert!(
        e.message
            .starts_with("Invalid request: Expected exactly one of [AliasTarget"),
        "{}",
        e.message
    );
    let bad_action = batch(&[("REPLACE", "x.example.com.", "A", 60, &["192.0.2.1"])]);
    let e = c.post(&path, &bad_action).await.error(400, "InvalidInput");
    assert!(
        e.message.contains("[CREATE, DELETE, UPSERT]"),
        "{}",
        e.message
    );
    c.post(&path, "not xml").await.error(400, "MalformedInput");
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn a_batch_over_route53s_record_limit_is_refused_whole() {
    let clock = ManualClock::new(START_MS);
    let mut o = options(&clock);
    o.throttle = None;
    let fake = FakeRoute53::start(o).await.expect("start");
    let c = Client::new(&fake, Some(&clock));
    let names: Vec<String> = (0..1001).map(|i| format!("h{i}.example.com.")).collect();
    let changes: Vec<Change<'_>> = names
        .iter()
        .map(|n| ("CREATE", n.as_str(), "A", 60, &["192.0.2.1"][..]))
        .collect();
    let a = c.change(&fake.zone_id(), &changes).await;
    assert_eq!(
        a.batch_messages(),
        ["Number of records limit of 1000 exceeded."]
    );
    assert_eq!(fake.count(), 2);
    // 1,000 is allowed; 500 UPSERTs count as 1,000 as well, 501 as 1,002.
    let a = c.change(&fake.zone_id(), &changes[..1000]).await;
    assert_eq!(a.status, 200, "{}", &a.body[..a.body.len().min(500)]);
    assert_eq!(fake.count(), 1002);
    let upserts: Vec<Change<'_>> = names[..501]
        .iter()
        .map(|n| ("UPSERT", n.as_str(), "A", 60, &["192.0.2.2"][..]))
        .collect();
    let a = c.change(&fake.zone_id(), &upserts).await;
    assert_eq!(
        a.batch_messages(),
        ["Number of records limit of 1000 exceeded."]
    );
    assert_eq!(c.change(&fake.zone_id(), &upserts[..500]).await.status, 200);
}

#[tokio::test]
async fn requests_over_the_rate_are_throttled_until_the_window_passes() {
    let clock = ManualClock::new(START_MS);
    let mut o = options(&clock);
    o.throttle = Some((2, Duration::from_secs(1)));
    let fake = FakeRoute53::start(o).await.expect("start");
    let c = Client::new(&fake, Some(&clock));
    let path = format!("/2013-04-01/hostedzone/{}", fake.zone_id());
    assert_eq!(c.get(&path).await.status, 200);
    assert_eq!(c.get(&path).await.status, 200);
    let e = c.get(&path).await.error(400, "Throttling");
    assert_eq!(e.message, "Rate exceeded");
    assert_eq!(e.kind, "Sender");
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.get(&path).await.status, 200);
    let s = fake.stats();
    assert_eq!((s.throttled, s.zones), (1, 3));

    // Route 53's own default is 5 a second.
    assert_eq!(
        Route53Options::new(AKID, SECRET, ZONE).throttle,
        Some((5, Duration::from_secs(1)))
    );
}

#[tokio::test]
async fn injected_failures_answer_as_route53_does() {
    let (fake, clock) = fake().await;
    let c = Client::new(&fake, Some(&clock));
    let path = format!("/2013-04-01/hostedzone/{}", fake.zone_id());

    fake.fail_next(1, 503);
    let e = c.get(&path).await.error(503, "ServiceUnavailable");
    assert_eq!(e.kind, "Receiver");
    fake.throttle_next(1);
    c.get(&path).await.error(400, "Throttling");
    fake.fail_next_with(
        1,
        400,
        "PriorRequestNotComplete",
        "The request was rejected because Route 53 was still processing a prior request.",
    );
    c.get(&path).await.error(400, "PriorRequestNotComplete");
    assert_eq!(c.get(&path).await.status, 200);

    fake.fail_writes_for_name("www.example.com", 400, "InvalidChangeBatch");
    let a = c
        .change(
            &fake.zone_id(),
            &[
                ("CREATE", "api.example.com.", "A", 60, &["192.0.2.1"]),
                ("CREATE", "www.example.com.", "A", 60, &["192.0.2.1"]),
            ],
        )
        .await;
    a.error(400, "InvalidChangeBatch");
    assert!(
        fake.get("api.example.com", "A").is_none(),
        "the whole batch refused"
    );
    fake.clear_faults();

    fake.lose_write_answers(1, LostAnswer::Status(500));
    let a = c
        .change(
            &fake.zone_id(),
            &[("CREATE", "api.example.com.", "A", 60, &["192.0.2.1"])],
        )
        .await;
    a.error(500, "InternalFailure");
    fake.wait_answers_lost(1).await;
    assert!(
        fake.get("api.example.com", "A").is_some(),
        "applied although the answer was lost"
    );
    let s = fake.stats();
    // A lost answer is counted apart from the injected failures.
    assert_eq!((s.faults, s.answers_lost, s.throttled), (4, 1, 1), "{s:?}");
}

#[tokio::test]
async fn counters_count_and_can_be_awaited_and_reset() {
    let (fake, clock) = fake().await;
    let c = Client::new(&fake, Some(&clock));
    c.get(&format!("/2013-04-01/hostedzone/{}", fake.zone_id()))
        .await;
    c.get(&rrset_path(&fake)).await;
    c.change(
        &fake.zone_id(),
        &[("CREATE", "x.example.com.", "A", 60, &["192.0.2.1"])],
    )
    .await;
    fake.wait_stats(|s| s.change_batches == 1).await;
    assert_eq!(
        fake.stats(),
        Route53Stats {
            total: 3,
            zones: 1,
            list: 1,
            change_batches: 1,
            changes: 1,
            ..Route53Stats::default()
        }
    );
    fake.reset_stats();
    assert_eq!(fake.stats(), Route53Stats::default());
}
