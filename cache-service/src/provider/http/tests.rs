//! Tests of the shared HTTP plumbing: the budget, backoff and `Retry-After`,
//! and the retry policy against a real (raw, loopback) HTTP server speaking
//! for a provider that is not Cloudflare.

use super::*;

#[test]
fn budget_allows_the_limit_then_paces() {
    let b = Budget::new(3, Duration::from_millis(100), Duration::from_secs(1));
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(b.reserve(t0), Ok(t0));
    }
    // The fourth waits until the first leaves the window.
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(100)));
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(100)));
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(100)));
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(200)));
    // Later, the old entries are gone.
    let later = t0 + Duration::from_millis(500);
    assert_eq!(b.reserve(later), Ok(later));
}

#[test]
fn budget_refuses_a_wait_over_the_maximum() {
    let b = Budget::new(2, Duration::from_secs(10), Duration::from_secs(5));
    let t0 = Instant::now();
    assert!(b.reserve(t0).is_ok());
    assert!(b.reserve(t0).is_ok());
    assert_eq!(b.reserve(t0), Err(Duration::from_secs(10)));
    // Nothing was reserved by the refusal.
    let t1 = t0 + Duration::from_secs(6);
    assert_eq!(b.reserve(t1), Ok(t0 + Duration::from_secs(10)));
}

#[test]
fn budget_never_exceeds_its_limit_in_any_window() {
    let window = Duration::from_millis(50);
    let b = Budget::new(5, window, Duration::from_secs(60));
    let t0 = Instant::now();
    let mut times = Vec::new();
    for i in 0..200u64 {
        let now = t0 + Duration::from_millis(i / 3);
        times.push(b.reserve(now).unwrap());
    }
    for (i, &t) in times.iter().enumerate() {
        let in_window = times.iter().filter(|&&u| u <= t && u + window > t).count();
        assert!(in_window <= 5, "request {i}: {in_window} in one window");
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn budget_of_zero_is_off() {
    let b = Budget::new(0, Duration::from_secs(1), Duration::ZERO);
    let t0 = Instant::now();
    for _ in 0..10 {
        assert_eq!(b.reserve(t0), Ok(t0));
    }
}

#[test]
fn budget_with_a_window_too_long_for_an_instant_never_panics() {
    // CLOUDFLARE_RATE_WINDOW=18446744073709551615 (bare: ms) or larger.
    let b = Budget::new(2, Duration::MAX, Duration::from_secs(1));
    let t0 = Instant::now();
    assert_eq!(b.reserve(t0), Ok(t0));
    assert_eq!(b.reserve(t0), Ok(t0));
    // The window never ends: the third request waits "forever", refused.
    assert_eq!(b.reserve(t0), Err(Duration::MAX));
}

#[test]
fn backoff_doubles_and_caps() {
    let base = Duration::from_millis(250);
    let max = Duration::from_secs(10);
    assert_eq!(backoff_cap(0, base, max), Duration::from_millis(250));
    assert_eq!(backoff_cap(1, base, max), Duration::from_millis(500));
    assert_eq!(backoff_cap(3, base, max), Duration::from_secs(2));
    assert_eq!(backoff_cap(6, base, max), max);
    assert_eq!(backoff_cap(40, base, max), max);
    assert_eq!(backoff_cap(u32::MAX, base, max), max);
    for attempt in 0..10 {
        let cap = backoff_cap(attempt, base, max);
        for _ in 0..50 {
            assert!(jitter(cap) <= cap);
        }
    }
    assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
}

#[test]
fn retry_after_is_read_as_seconds() {
    let v = |s: &'static str| HeaderValue::from_static(s);
    assert_eq!(parse_retry_after(Some(&v("0"))), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(Some(&v(" 7 "))),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        parse_retry_after(Some(&v("Wed, 21 Oct 2015 07:28:00 GMT"))),
        None
    );
    assert_eq!(parse_retry_after(None), None);
}

/// A raw HTTP/1.1 server on loopback that answers each request with the next
/// status of `script` (then 200s) and records what it was sent: the request
/// line and the `x-api-key` header. One request per connection.
async fn scripted_server(
    script: Vec<u16>,
) -> (
    Url,
    std::sync::Arc<Mutex<Vec<(String, Option<String>)>>>,
    tokio::task::JoinHandle<()>,
) {
    scripted_server_with(script.into_iter().map(|s| (s, "")).collect()).await
}

/// [`scripted_server`] whose answers also carry the given header lines
/// (each ending in `\r\n`).
async fn scripted_server_with(
    script: Vec<(u16, &'static str)>,
) -> (
    Url,
    std::sync::Arc<Mutex<Vec<(String, Option<String>)>>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/api/v1", listener.local_addr().unwrap())).unwrap();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let line = head.lines().next().unwrap_or_default().to_string();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("x-api-key: "))
                .map(str::to_string);
            log.lock().unwrap().push((line, key));
            let (status, extra) = script.next().unwrap_or((200, ""));
            let body = if status == 200 {
                "{\"ok\":true}"
            } else {
                "{\"error\":\"no\"}"
            };
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(answer.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, seen, task)
}

fn settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_secs(10),
        budget_requests: 0,
        budget_window: Duration::from_secs(1),
        max_budget_wait: Duration::from_secs(1),
        max_retries: 3,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        max_retry_after: Duration::from_secs(1),
    }
}

/// How a provider that is not Cloudflare reads a refusal: by status only.
fn by_status(status: u16, _body: &[u8], what: &str, secret: &str) -> ProviderError {
    let detail = sanitize(&format!("{what}: HTTP {status}"), secret);
    match status {
        401 | 403 => ProviderError::Unauthorized(detail),
        404 => ProviderError::NotFound(detail),
        _ => ProviderError::Invalid(detail),
    }
}

/// Another provider (an `X-API-Key` header, its own error mapping) gets the
/// whole policy: reads retried past 5xx, a write whose answer was a 5xx
/// never re-sent, a 429'd write retried, refusals mapped by its mapper, and
/// its key sent on every attempt but never in an error.
#[tokio::test]
async fn another_provider_gets_the_budget_retries_and_mapping() {
    let key = "pdns-s3cr3t-key";
    let auth = HeaderAuth::new(HeaderName::from_static("x-api-key"), key).unwrap();
    let http = HttpClient::new("powerdns", settings(), auth, key, by_status).unwrap();
    assert!(!format!("{http:?}").contains(key));
    // 503 for two reads, then 200: retried, three requests.
    let (url, seen, task) = scripted_server(vec![503, 503, 200, 503, 429, 200, 404]).await;
    let root = ApiRoot::parse("PowerDNS API URL", url.as_str()).unwrap();
    let reqs = AtomicU64::new(0);
    let get = |operation| Call {
        method: Method::GET,
        url: root.url(&["servers", "localhost", "zones"], &[]),
        body: None,
        operation,
    };
    let body = http.send(get("list"), &reqs).await.unwrap();
    assert_eq!(body, b"{\"ok\":true}");
    assert_eq!(reqs.load(Ordering::Relaxed), 3);
    // A write answered 503: its answer is lost, it is not sent again.
    let patch = |operation| Call {
        method: Method::PATCH,
        url: root.url(&["servers", "localhost", "zones", "example.com."], &[]),
        body: Some(b"{}"),
        operation,
    };
    let e = http.send(patch("update"), &reqs).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unanswered(_)), "{e:?}");
    assert_eq!(reqs.load(Ordering::Relaxed), 4);
    // A write refused with 429 was not applied: it is sent again.
    http.send(patch("update"), &reqs).await.unwrap();
    assert_eq!(reqs.load(Ordering::Relaxed), 6);
    // A refusal goes through the provider's own mapper, without the key.
    let e = http.send(get("get"), &reqs).await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("GET /api/v1/servers/localhost/zones"),
        "{e}"
    );
    assert!(!e.to_string().contains(key), "{e}");
    let st = http.stats();
    assert_eq!(
        (st.requests, st.retries, st.rate_limited, st.errors),
        (7, 3, 1, 2)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7);
    assert!(
        seen.iter().all(|(_, k)| k.as_deref() == Some(key)),
        "{seen:?}"
    );
    assert!(
        seen[3]
            .0
            .starts_with("PATCH /api/v1/servers/localhost/zones/example.com.")
    );
    task.abort();
}

/// The API root refuses what cannot be one and keeps ids from changing paths.
#[test]
fn api_roots_are_checked_and_segments_encoded() {
    assert!(matches!(
        ApiRoot::parse("X API URL", "not a url"),
        Err(ProviderError::Invalid(m)) if m.starts_with("X API URL")
    ));
    assert!(ApiRoot::parse("X API URL", "ftp://example.com").is_err());
    let root = ApiRoot::parse("X API URL", "http://127.0.0.1:1/v2/?q=1#f").unwrap();
    assert_eq!(
        root.url(&["records", "a/../b?c"], &[("page", "1")])
            .as_str(),
        "http://127.0.0.1:1/v2/records/a%2F..%2Fb%3Fc?page=1"
    );
    assert!(HeaderAuth::bearer("").is_err());
    let e = HeaderAuth::bearer("line\nbreak").unwrap_err();
    assert!(!e.to_string().contains("line"), "{e}");
}

#[test]
fn budget_keeps_every_window() {
    // 3 a second and 4 in any 10 s: the fourth waits a second, the fifth ten.
    let mut b = Budget::new(3, Duration::from_secs(1), Duration::from_secs(60));
    b.add_window(4, Duration::from_secs(10));
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(b.reserve(t0), Ok(t0));
    }
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_secs(1)));
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_secs(10)));
    // A window of zero is off.
    let mut off = Budget::new(0, Duration::from_secs(1), Duration::ZERO);
    off.add_window(5, Duration::ZERO);
    assert_eq!(off.reserve(t0), Ok(t0));
}

#[test]
fn a_hold_delays_or_refuses_what_follows() {
    let b = Budget::new(0, Duration::ZERO, Duration::from_secs(5));
    let t0 = Instant::now();
    b.hold(t0 + Duration::from_secs(2));
    // An earlier hold never shortens a later one.
    b.hold(t0 + Duration::from_secs(1));
    assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_secs(2)));
    b.hold(t0 + Duration::from_secs(3600));
    assert_eq!(b.reserve(t0), Err(Duration::from_secs(3600)));
    // Once passed, the hold is gone.
    let later = t0 + Duration::from_secs(3601);
    assert_eq!(b.reserve(later), Ok(later));
}

/// A provider's rate-limit headers: a spent budget holds the next request
/// (refused client-side when the wait is too long, nothing sent), and a
/// 429 without `Retry-After` waits what the headers say.
#[tokio::test]
async fn rate_limit_headers_hold_requests() {
    let key = "hdr-s3cr3t";
    let auth = HeaderAuth::new(HeaderName::from_static("x-api-key"), key).unwrap();
    // "x-spent: N": the budget is spent for N ms.
    let reader: RateHeaders = Box::new(|h: &HeaderMap| {
        let ms: u64 = h.get("x-spent")?.to_str().ok()?.parse().ok()?;
        Some(Duration::from_millis(ms))
    });
    let http = HttpClient::new("other", settings(), auth, key, by_status)
        .unwrap()
        .rate_headers(reader);
    let (url, seen, task) = scripted_server_with(vec![
        // A 429 without Retry-After whose headers say 300 ms: waited, then ok.
        (429, "x-spent: 300\r\n"),
        (200, ""),
        // A success saying the budget is spent for an hour: the next
        // request is refused here, never sent.
        (200, "x-spent: 3600000\r\n"),
        (200, ""),
    ])
    .await;
    let root = ApiRoot::parse("X API URL", url.as_str()).unwrap();
    let reqs = AtomicU64::new(0);
    let get = || Call {
        method: Method::GET,
        url: root.url(&["records"], &[]),
        body: None,
        operation: "list",
    };
    let t = std::time::Instant::now();
    http.send(get(), &reqs).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "waited {:?}, less than the headers said",
        t.elapsed()
    );
    http.send(get(), &reqs).await.unwrap();
    let e = http.send(get(), &reqs).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::RateLimited { retry_after: Some(d) } if d > Duration::from_secs(3500)),
        "{e:?}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "the held request was not sent"
    );
    task.abort();
}

/// How a provider that answers throttling with a 400 reads a refusal
/// (Route53's `Throttling`): a 400 is a rate limit, anything else refused.
fn throttles_with_400(status: u16, _body: &[u8], what: &str, secret: &str) -> ProviderError {
    match status {
        400 => ProviderError::RateLimited { retry_after: None },
        _ => ProviderError::Conflict(sanitize(&format!("{what}: HTTP {status}"), secret)),
    }
}

/// A refusal the provider's mapper reads as a rate limit is ridden out like a
/// 429, writes included (it was refused unapplied); any other refusal keeps
/// its status and body for the provider beside the error.
#[tokio::test]
async fn a_rate_limit_told_with_another_status_is_retried_and_refusals_keep_their_body() {
    let key = "r53-s3cr3t";
    let auth = HeaderAuth::new(HeaderName::from_static("x-api-key"), key).unwrap();
    let http = HttpClient::new("route53", settings(), auth, key, throttles_with_400).unwrap();
    let (url, seen, task) = scripted_server(vec![400, 400, 200, 409, 400, 400, 400, 400]).await;
    let root = ApiRoot::parse("Route53 API URL", url.as_str()).unwrap();
    let reqs = AtomicU64::new(0);
    let post = || Call {
        method: Method::POST,
        url: root.url(&["hostedzone", "Z1", "rrset"], &[]),
        body: Some(b"<x/>"),
        operation: "change",
    };
    let body = http.send(post(), &reqs).await.unwrap();
    assert_eq!(body, b"{\"ok\":true}");
    assert_eq!(
        reqs.load(Ordering::Relaxed),
        3,
        "two throttled attempts, then the write"
    );
    let f = http.send_keeping_refusal(post(), &reqs).await.unwrap_err();
    assert!(matches!(f.error, ProviderError::Conflict(_)), "{f:?}");
    assert_eq!(f.refused, Some((409, b"{\"error\":\"no\"}".to_vec())));
    assert!(
        !format!("{f:?}").contains("error\\\":"),
        "Debug shows no body: {f:?}"
    );
    // Still throttled after max_retries (3): rate limited, four attempts.
    let e = http.send(post(), &reqs).await.unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    assert_eq!(reqs.load(Ordering::Relaxed), 8);
    let st = http.stats();
    assert_eq!((st.rate_limited, st.errors), (6, 2));
    assert_eq!(seen.lock().unwrap().len(), 8);
    task.abort();
}
