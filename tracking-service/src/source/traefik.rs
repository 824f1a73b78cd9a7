//! The Traefik API client of the `traefik` source, and what its routers
//! declare. It reads HTTP and TCP routers (`/http/routers`, `/tcp/routers`),
//! every page: the API pages by `page`/`per_page` and answers `X-Next-Page`,
//! which is `1` on the last page (an API without the header answered
//! everything at once). Each router's rule goes through [`super::rule`];
//! routers that are `disabled`, or from the `internal` provider, are skipped;
//! the Docker labels of the container behind a router (TrafegoDNS's
//! overrides) decide its record settings and whether it is managed.
//!
//! Every failure (unreachable, 401, timeout, a body that is not the JSON
//! expected, a page missing) fails the whole read: a partial list of routers
//! must never reach reconcile, which would orphan the rest. Messages carry
//! no credentials (URLs are shown without them; the password never).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use trafego_proto::tracking::DesiredRecord;

use super::labels::{Collector, Container, LabelConfig, Labels};
use super::{SourceError, rule};

/// Routers asked for per page (Traefik's own default).
pub const PER_PAGE: usize = 100;
/// Pages read at most per kind (a million routers): an API that keeps
/// answering "next page" is refused rather than followed forever.
pub const MAX_PAGES: usize = 10_000;

/// A password that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// HTTP or TCP router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouterKind {
    /// `/http/routers`.
    Http,
    /// `/tcp/routers`.
    Tcp,
}

impl RouterKind {
    fn path(self) -> &'static str {
        match self {
            RouterKind::Http => "http",
            RouterKind::Tcp => "tcp",
        }
    }
}

/// A router as Traefik's API lists it (the fields this source reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Router {
    /// `name@provider`.
    pub name: String,
    /// The provider (`docker`, `file`, `internal`...).
    pub provider: String,
    /// The rule.
    pub rule: String,
    /// The service, `name` or `name@provider`.
    pub service: String,
    /// `enabled`, `warning` or `disabled`.
    pub status: String,
    /// HTTP or TCP (not in the JSON; set from the endpoint).
    #[serde(skip)]
    pub kind: Option<RouterKind>,
}

impl Router {
    /// The name without `@provider`.
    pub fn short_name(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }

    /// The provider, from its field or the name's suffix.
    pub fn provider(&self) -> &str {
        if self.provider.is_empty() {
            self.name.split_once('@').map_or("", |(_, p)| p)
        } else {
            &self.provider
        }
    }
}

/// A client of one Traefik API.
#[derive(Debug, Clone)]
pub struct TraefikClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, Password)>,
}

impl TraefikClient {
    /// A client of `base` (e.g. `http://traefik:8080/api`) with basic auth if given.
    pub fn new(
        base: &str,
        auth: Option<(String, Password)>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "trafego-tracking-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// Where the API is, without credentials.
    pub fn base(&self) -> String {
        super::redact_url(&self.base)
    }

    /// Every HTTP and TCP router, all pages. Fails whole.
    pub async fn routers(&self) -> Result<(Vec<Router>, u64), SourceError> {
        let (mut all, mut requests) = self.list(RouterKind::Http).await?;
        let (tcp, n) = self.list(RouterKind::Tcp).await?;
        all.extend(tcp);
        requests = requests.saturating_add(n);
        Ok((all, requests))
    }

    async fn list(&self, kind: RouterKind) -> Result<(Vec<Router>, u64), SourceError> {
        let url = format!("{}/{}/routers", self.base, kind.path());
        let mut out = Vec::new();
        let mut page: usize = 1;
        let mut requests: u64 = 0;
        loop {
            if page > MAX_PAGES {
                return Err(SourceError(format!(
                    "Traefik's API at {} keeps announcing more {} router pages past {MAX_PAGES}",
                    self.base(),
                    kind.path()
                )));
            }
            let mut req = self.http.get(&url).query(&[
                ("page", page.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ]);
            if let Some((u, p)) = &self.auth {
                req = req.basic_auth(u, Some(&p.0));
            }
            requests = requests.saturating_add(1);
            let what = || format!("{} routers page {page} from {}", kind.path(), self.base());
            let resp = req.send().await.map_err(|e| {
                let why = if e.is_timeout() {
                    "timed out (API_TIMEOUT)".to_string()
                } else {
                    e.without_url().to_string()
                };
                SourceError(format!("reading {}: {why}", what()))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                return Err(SourceError(format!(
                    "reading {}: refused ({status}); check TRAEFIK_API_USERNAME and TRAEFIK_API_PASSWORD",
                    what()
                )));
            }
            if !status.is_success() {
                return Err(SourceError(format!(
                    "reading {}: answered {status}",
                    what()
                )));
            }
            let next = resp
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().parse::<usize>());
            let body = resp
                .bytes()
                .await
                .map_err(|e| SourceError(format!("reading {}: {}", what(), e.without_url())))?;
            let mut routers: Vec<Router> = serde_json::from_slice(&body).map_err(|e| {
                SourceError(format!(
                    "reading {}: not the JSON list of routers expected ({e})",
                    what()
                ))
            })?;
            for r in &mut routers {
                r.kind = Some(kind);
            }
            out.extend(routers);
            match next {
                None => break,
                Some(Ok(n)) if n <= page => break,
                Some(Ok(n)) => page = n,
                Some(Err(_)) => {
                    return Err(SourceError(format!(
                        "reading {}: X-Next-Page is not a page number",
                        what()
                    )));
                }
            }
        }
        Ok((out, requests))
    }
}

/// Traefik's `provider.Normalize`: runs of characters other than letters and
/// digits become one `-`.
fn normalize(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Finds the container behind a router of the `docker` provider, as
/// TrafegoDNS does: the container whose Traefik labels define the router,
/// else the one whose labels define its service, else the container whose
/// (normalized) name, or compose service and project, is the service name.
#[derive(Debug)]
pub struct ContainerIndex<'a> {
    containers: Vec<&'a Container>,
    by_router: HashMap<(RouterKind, String), usize>,
    by_service: HashMap<(RouterKind, String), usize>,
    by_name: HashMap<String, usize>,
}

impl<'a> ContainerIndex<'a> {
    /// Indexes `containers` (first by name wins on a tie, e.g. replicas).
    pub fn new(containers: &'a [Container], cfg: &LabelConfig) -> Self {
        let mut sorted: Vec<&Container> = containers.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let mut idx = ContainerIndex {
            containers: sorted,
            by_router: HashMap::new(),
            by_service: HashMap::new(),
            by_name: HashMap::new(),
        };
        let tp = &cfg.traefik_prefix;
        for (i, c) in idx.containers.iter().enumerate() {
            for key in c.labels.keys() {
                let Some(rest) = key.strip_prefix(tp.as_str()) else {
                    continue;
                };
                for kind in [RouterKind::Http, RouterKind::Tcp] {
                    let Some(rest) = rest
                        .strip_prefix(kind.path())
                        .and_then(|r| r.strip_prefix('.'))
                    else {
                        continue;
                    };
                    let (map, rest) = if let Some(r) = rest.strip_prefix("routers.") {
                        (&mut idx.by_router, r)
                    } else if let Some(r) = rest.strip_prefix("services.") {
                        (&mut idx.by_service, r)
                    } else {
                        continue;
                    };
                    if let Some((name, _)) = rest.split_once('.') {
                        map.entry((kind, name.to_string())).or_insert(i);
                    }
                }
            }
            idx.by_name.entry(normalize(&c.name)).or_insert(i);
            if let (Some(s), Some(p)) = (
                c.labels.get("com.docker.compose.service"),
                c.labels.get("com.docker.compose.project"),
            ) {
                idx.by_name
                    .entry(normalize(&format!("{s}_{p}")))
                    .or_insert(i);
            }
        }
        idx
    }

    /// The container behind `r`, if it comes from Docker.
    pub fn find(&self, r: &Router) -> Option<&'a Container> {
        if !matches!(r.provider(), "docker" | "swarm") {
            return None;
        }
        let kind = r.kind.unwrap_or(RouterKind::Http);
        let service = r.service.split('@').next().unwrap_or(&r.service);
        let i = self
            .by_router
            .get(&(kind, r.short_name().to_string()))
            .or_else(|| self.by_service.get(&(kind, service.to_string())))
            .or_else(|| self.by_name.get(service))?;
        self.containers.get(*i).copied()
    }
}

/// What the routers declare, router by router (name order), each taken
/// whole or skipped with a problem. `containers` is `None` when no Docker
/// Engine is configured (no overrides). `logged` remembers skipped matchers
/// already logged, so each is logged once, not at every poll.
pub fn declare_routers(
    routers: &[Router],
    containers: Option<&[Container]>,
    cfg: &LabelConfig,
    collector: &mut Collector<'_>,
    logged: &mut HashSet<String>,
) {
    let index = containers.map(|c| ContainerIndex::new(c, cfg));
    let empty = BTreeMap::new();
    let mut sorted: Vec<&Router> = routers.iter().collect();
    sorted.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.name.cmp(&b.name)));
    for r in sorted {
        if r.status.eq_ignore_ascii_case("disabled") || r.provider() == "internal" {
            continue;
        }
        let owner = format!("router {}", r.name);
        let parsed = match rule::parse(&r.rule) {
            Ok(p) => p,
            Err(e) => {
                collector.problem(&owner, format!("rule {:?} cannot be read: {e}", r.rule));
                continue;
            }
        };
        for s in &parsed.skipped {
            let key = format!("{}\u{0}{}\u{0}{}", r.name, s.matcher, s.value);
            if logged.insert(key) {
                tracing::info!(router = %r.name, matcher = %s.matcher, value = %s.value, "host matcher skipped: it names no single hostname to declare");
            }
        }
        let mut hosts = Vec::with_capacity(parsed.hosts.len());
        let mut bad = None;
        for h in parsed.hosts {
            match collector.in_zone(&h) {
                Ok(true) => hosts.push(h),
                Ok(false) => {
                    tracing::debug!(router = %r.name, hostname = %h, zone = %collector.zone(), "hostname outside the managed zone skipped");
                }
                Err(e) => {
                    bad = Some(format!("hostname {h:?} in its rule: {e}"));
                    break;
                }
            }
        }
        if let Some(msg) = bad {
            collector.problem(&owner, msg);
            continue;
        }
        if hosts.is_empty() {
            continue;
        }
        let container = index.as_ref().and_then(|i| i.find(r));
        let labels = Labels::new(container.map_or(&empty, |c| &c.labels), cfg);
        let owner = match container {
            Some(c) => format!("{owner} (container {})", c.name),
            None => owner,
        };
        let records: Result<Vec<DesiredRecord>, _> = match labels.managed() {
            Ok(false) => continue,
            Ok(true) => hosts.iter().map(|h| labels.record(h)).collect(),
            Err(e) => Err(e),
        };
        match records {
            Ok(records) => {
                collector.offer(&owner, records);
            }
            Err(e) => collector.problem(&owner, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(name: &str, rule: &str) -> Router {
        Router {
            name: name.into(),
            provider: name
                .split_once('@')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default(),
            rule: rule.into(),
            service: name.split('@').next().unwrap_or_default().into(),
            status: "enabled".into(),
            kind: Some(RouterKind::Http),
        }
    }

    fn container(name: &str, pairs: &[(&str, &str)]) -> Container {
        Container {
            id: format!("id-{name}"),
            name: name.into(),
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn routers_find_their_containers() {
        let cfg = LabelConfig::trafegodns();
        let cs = vec![
            container(
                "by-router",
                &[("traefik.http.routers.web.rule", "Host(`a`)")],
            ),
            container(
                "by-service",
                &[(
                    "traefik.http.services.api-svc.loadbalancer.server.port",
                    "80",
                )],
            ),
            container("blog", &[]),
            container(
                "x_1",
                &[
                    ("com.docker.compose.service", "shop"),
                    ("com.docker.compose.project", "acme"),
                ],
            ),
            container("tcp", &[("traefik.tcp.routers.db.rule", "HostSNI(`db`)")]),
        ];
        let idx = ContainerIndex::new(&cs, &cfg);
        let name = |r: &Router| idx.find(r).map(|c| c.name.clone());
        assert_eq!(name(&router("web@docker", "")), Some("by-router".into()));
        let mut r = router("other@docker", "");
        r.service = "api-svc".into();
        assert_eq!(name(&r), Some("by-service".into()));
        r.service = "blog@docker".into();
        assert_eq!(name(&r), Some("blog".into()));
        r.service = "shop-acme".into();
        assert_eq!(name(&r), Some("x_1".into()));
        // A file-provider router has no container.
        assert_eq!(name(&router("web@file", "")), None);
        let mut t = router("db@docker", "");
        t.kind = Some(RouterKind::Tcp);
        assert_eq!(name(&t), Some("tcp".into()));
        // The HTTP router `db` is not the TCP one.
        assert_eq!(name(&router("db@docker", "")), None);
    }
}
