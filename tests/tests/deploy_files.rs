//! The deployment files stay deployable: `docker-compose config -q` accepts
//! docker-compose.yml; the Compose services, the Kubernetes manifests and the
//! Dockerfile keep their health checks, probes, volumes and hardening; the
//! PostgreSQL variant (deploy/kubernetes/postgres) runs two replicas of each
//! service with the database URLs from a Secret, ADVERTISE_ADDRESS from the
//! pod's IP, readiness on "", no PVC and a PodDisruptionBudget; every
//! environment variable they set (or show commented out) is a real setting;
//! and `trafego-healthcheck`, the binary the image's health checks run, exits
//! 0 against a serving cache-service and 1 when nothing answers.
//!
//! Needs `docker-compose` (Debian package `docker-compose`, installed by
//! `.ci/run`) and the healthcheck binary (`cargo build -p trafego-common --bins`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

/// Settings listed in README.md's configuration tables.
const README_SETTINGS: &[&str] = &[
    // cache-service
    "CACHE_LISTEN_ADDR",
    "CACHE_DB_PATH",
    "DNS_PROVIDER",
    "DNS_ZONE",
    "CLOUDFLARE_ZONE",
    "ZONEFILE_PATH",
    "ZONEFILE_DEFAULT_TTL",
    "CLOUDFLARE_TOKEN",
    "CLOUDFLARE_TOKEN_FILE",
    "CLOUDFLARE_ZONE_ID",
    "CLOUDFLARE_API_URL",
    "CLOUDFLARE_PER_PAGE",
    "CLOUDFLARE_BATCH_SIZE",
    "CLOUDFLARE_RATE_LIMIT",
    "CLOUDFLARE_RATE_WINDOW",
    "DNS_CACHE_REFRESH_INTERVAL",
    "DNS_CACHE_REFRESH_TIMEOUT",
    "WATCH_BUFFER",
    "SHUTDOWN_GRACE",
    "DB_POOL_SIZE",
    "MAX_MESSAGE_BYTES",
    "LOG_FORMAT",
    "LOG_LEVEL",
    // both, with PostgreSQL replicas
    "LEADER_RETRY_INTERVAL",
    "LEADER_CHECK_INTERVAL",
    "ADVERTISE_ADDRESS",
    // both, on PostgreSQL
    "CACHE_DATABASE_URL",
    "TRACKING_DATABASE_URL",
    "DATABASE_URL",
    // tracking-service
    "TRACKING_LISTEN_ADDR",
    "TRACKING_DB_PATH",
    "CACHE_SERVICE_URL",
    "DNS_DEFAULT_TYPE",
    "DNS_DEFAULT_CONTENT",
    "DNS_DEFAULT_TTL",
    "DNS_DEFAULT_PROXIED",
    "PUBLIC_IP",
    "PUBLIC_IPV6",
    "CLEANUP_ORPHANED",
    "CLEANUP_GRACE_PERIOD",
    "CLEANUP_INTERVAL",
    "PRESERVED_HOSTNAMES",
    "MANAGED_HOSTNAMES",
    "MAX_ORPHAN_RATIO",
    "RECONCILE_MAX_STALENESS",
];

/// The service-mesh settings (tokens, TLS, metrics): real when README.md
/// documents them or a service declares them (`env = "NAME"` in its sources).
const MESH_SETTINGS: &[&str] = &[
    "AUTH_TOKEN",
    "AUTH_TOKEN_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "TLS_CLIENT_CA_FILE",
    "METRICS_ADDR",
    "CACHE_SERVICE_TOKEN",
    "CACHE_SERVICE_CA_FILE",
    "CACHE_SERVICE_CLIENT_CERT_FILE",
    "CACHE_SERVICE_CLIENT_KEY_FILE",
];

/// Variables the Kubernetes manifests set only to build another one's value
/// (`ADVERTISE_ADDRESS: $(POD_IP):50051`): no service reads them.
const KUBERNETES_ONLY: &[&str] = &["POD_IP"];

/// trafego-healthcheck's own settings (declared in its source).
const HEALTHCHECK_SETTINGS: &[&str] = &[
    "HEALTHCHECK_ADDR",
    "HEALTHCHECK_SERVICE",
    "HEALTHCHECK_TIMEOUT",
    "HEALTHCHECK_CA_FILE",
    "HEALTHCHECK_CERT_FILE",
    "HEALTHCHECK_KEY_FILE",
    "HEALTHCHECK_TLS_DOMAIN",
];

const CACHE_GRPC: &str = "trafego.cache.v1.CacheService";
const TRACKING_GRPC: &str = "trafego.tracking.v1.TrackingService";

/// (Compose service / Deployment name, gRPC port, gRPC service name, volume).
const SERVICES: &[(&str, u64, &str, &str)] = &[
    ("cache-service", 50051, CACHE_GRPC, "cache-data"),
    ("tracking-service", 50052, TRACKING_GRPC, "tracking-data"),
];

// ---------------------------------------------------------------- helpers

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML text, merge keys (`<<:`)
/// applied; empty documents are skipped.
fn yaml_docs(name: &str, text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let mut v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: bad YAML: {e}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{name}: bad merge key: {e}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `v.a.b.c` for string keys and sequence indexes written as numbers.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) if v.is_sequence() => v.get(i),
            _ => v.get(*key),
        })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn seq_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A scalar as text (`true`, `10001`, `"x"` → `x`).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `text` mentions `name` as a whole word (so `CLOUDFLARE_TOKEN`
/// inside `CLOUDFLARE_TOKEN_FILE` does not count).
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Names that look like environment variables: `[A-Z][A-Z0-9_]+`.
fn is_env_name(s: &str) -> bool {
    s.len() > 1
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// All `*.rs` text under `dir`, concatenated.
fn rust_sources(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            out.push('\n');
        }
    }
}

fn kubernetes_files() -> Vec<(String, String)> {
    kubernetes_files_in("deploy/kubernetes")
}

/// The PostgreSQL variant's manifests (deploy/kubernetes/postgres).
const POSTGRES_DIR: &str = "deploy/kubernetes/postgres";

/// The `*.yaml` files of `rel` (not of its subdirectories), by name.
fn kubernetes_files_in(rel: &str) -> Vec<(String, String)> {
    let dir = repo_root().join(rel);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read manifest");
            (name, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// Every Kubernetes object of deploy/kubernetes (kustomization.yaml aside),
/// with the file it came from.
fn kubernetes_objects() -> Vec<(String, Value)> {
    objects_of(kubernetes_files())
}

/// The objects of manifest files (kustomization.yaml aside), each with its file.
fn objects_of(files: Vec<(String, String)>) -> Vec<(String, Value)> {
    files
        .into_iter()
        .filter(|(name, _)| name != "kustomization.yaml")
        .flat_map(|(name, text)| {
            yaml_docs(&name, &text)
                .into_iter()
                .map(move |doc| (name.clone(), doc))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn compose() -> Value {
    let mut docs = yaml_docs("docker-compose.yml", &read("docker-compose.yml"));
    assert_eq!(docs.len(), 1, "docker-compose.yml is one document");
    docs.remove(0)
}

/// Runs a command with a deadline, so a hung child fails the test instead of
/// hanging it.
async fn run(cmd: &mut tokio::process::Command, what: &str) -> std::io::Result<Output> {
    cmd.kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within 60 s"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------- Compose

#[tokio::test]
async fn docker_compose_config_accepts_the_compose_file() {
    let root = repo_root();
    let out = run(
        tokio::process::Command::new("docker-compose")
            .current_dir(&root)
            .args(["-f", "docker-compose.yml", "config", "-q"])
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME"),
        "docker-compose config",
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "cannot run docker-compose ({e}): install it (Debian package `docker-compose`; \
             .ci/run installs it) to check docker-compose.yml"
        )
    });
    assert!(
        out.status.success(),
        "docker-compose config -q rejected docker-compose.yml ({}):\n{}",
        out.status,
        text(&out)
    );
}

#[test]
fn compose_runs_both_services_with_volumes_health_checks_and_hardening() {
    let c = compose();
    let declared: BTreeSet<&str> = at(&c, &["volumes"])
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    for &(name, port, grpc, volume) in SERVICES {
        let s = at(&c, &["services", name]).unwrap_or_else(|| panic!("no service {name}"));
        assert!(
            at(s, &["build"]).is_some(),
            "{name}: built from the Dockerfile"
        );

        // Its own named volume at /data.
        assert!(
            declared.contains(volume),
            "top-level volume {volume} missing"
        );
        let mounts: Vec<String> = seq_at(s, &["volumes"]).iter().filter_map(scalar).collect();
        assert!(
            mounts
                .iter()
                .any(|m| m.starts_with(&format!("{volume}:/data"))),
            "{name}: named volume {volume} at /data, got {mounts:?}"
        );

        // Health through grpc.health.v1, on its own port and service name.
        let test: Vec<String> = seq_at(s, &["healthcheck", "test"])
            .iter()
            .filter_map(scalar)
            .collect();
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "{name}: {test:?}"
        );
        assert_eq!(test.get(1).map(String::as_str), Some("trafego-healthcheck"));
        assert!(
            test.contains(&format!("http://127.0.0.1:{port}")),
            "{name}: checks its own port {port}: {test:?}"
        );
        assert!(
            test.iter().any(|t| t == grpc),
            "{name}: checks {grpc}: {test:?}"
        );

        // Listens on all interfaces inside the container, published on loopback.
        let listen = if port == 50051 {
            "CACHE_LISTEN_ADDR"
        } else {
            "TRACKING_LISTEN_ADDR"
        };
        assert_eq!(
            str_at(s, &["environment", listen]),
            Some(format!("0.0.0.0:{port}").as_str()),
            "{name}: {listen}"
        );
        let ports: Vec<String> = seq_at(s, &["ports"]).iter().filter_map(scalar).collect();
        assert!(!ports.is_empty(), "{name}: publishes its port");
        for p in &ports {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: {p} is published beyond loopback"
            );
        }

        // Hardening.
        assert_eq!(
            at(s, &["read_only"]).and_then(Value::as_bool),
            Some(true),
            "{name}: read_only"
        );
        let user = at(s, &["user"]).and_then(scalar).unwrap_or_default();
        assert!(
            !user.is_empty() && !user.starts_with("root") && !user.starts_with('0'),
            "{name}: runs as a non-root user, got {user:?}"
        );
        let opts: Vec<String> = seq_at(s, &["security_opt"])
            .iter()
            .filter_map(scalar)
            .collect();
        assert!(
            opts.iter().any(|o| o == "no-new-privileges:true"),
            "{name}: no-new-privileges"
        );
        assert!(
            at(s, &["stop_grace_period"]).is_some(),
            "{name}: stop_grace_period"
        );
    }

    let tracking = at(&c, &["services", "tracking-service"]).unwrap();
    assert_eq!(
        str_at(tracking, &["depends_on", "cache-service", "condition"]),
        Some("service_healthy"),
        "tracking-service waits for a healthy cache-service"
    );
    assert_eq!(
        str_at(tracking, &["environment", "CACHE_SERVICE_URL"]),
        Some("http://cache-service:50051")
    );
}

// ---------------------------------------------------------------- Kubernetes

#[test]
fn kubernetes_manifests_are_valid_yaml_with_kind_and_name() {
    for (file, doc) in kubernetes_objects() {
        assert!(
            str_at(&doc, &["apiVersion"]).is_some(),
            "{file}: apiVersion"
        );
        assert!(str_at(&doc, &["kind"]).is_some(), "{file}: kind");
        assert!(
            str_at(&doc, &["metadata", "name"]).is_some(),
            "{file}: metadata.name"
        );
    }
    // kustomization.yaml lists every manifest, and only existing ones, except
    // the Secret example: a real Secret is created by hand, so the example's
    // placeholder token can never be applied by `kubectl apply -k`.
    let kustomization = yaml_docs(
        "kustomization.yaml",
        &read("deploy/kubernetes/kustomization.yaml"),
    );
    let listed: BTreeSet<String> = seq_at(&kustomization[0], &["resources"])
        .iter()
        .filter_map(scalar)
        .collect();
    let present: BTreeSet<String> = kubernetes_files()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name != "kustomization.yaml" && name != "secret.example.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml resources vs the files present"
    );
}

#[test]
fn kubernetes_deployments_probe_over_grpc_and_run_unprivileged() {
    let objects = kubernetes_objects();
    let of_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|(_, o)| str_at(o, &["kind"]) == Some(kind))
            .map(|(_, o)| o)
            .collect()
    };
    let name_of = |o: &Value| {
        str_at(o, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned()
    };
    let pvcs: BTreeMap<String, &Value> = of_kind("PersistentVolumeClaim")
        .into_iter()
        .map(|o| (name_of(o), o))
        .collect();
    let secrets: BTreeMap<String, &Value> = of_kind("Secret")
        .into_iter()
        .map(|o| (name_of(o), o))
        .collect();
    let deployments = of_kind("Deployment");
    let names: BTreeSet<String> = deployments.iter().map(|d| name_of(d)).collect();
    assert_eq!(
        names,
        SERVICES.iter().map(|s| s.0.to_owned()).collect(),
        "one Deployment per service"
    );

    for d in &deployments {
        let name = name_of(d);
        let &(_, port, grpc, _) = SERVICES.iter().find(|s| s.0 == name).unwrap();
        assert_eq!(
            at(d, &["spec", "replicas"]).and_then(Value::as_u64),
            Some(1),
            "{name}: replicas"
        );
        assert_eq!(
            str_at(d, &["spec", "strategy", "type"]),
            Some("Recreate"),
            "{name}: single writer, so Recreate"
        );
        let pod = at(d, &["spec", "template", "spec"]).expect("pod spec");
        let pod_sc = at(pod, &["securityContext"]);
        assert_eq!(
            pod_sc
                .and_then(|s| at(s, &["fsGroup"]))
                .and_then(Value::as_u64),
            Some(10001),
            "{name}: fsGroup"
        );
        assert_eq!(
            at(pod, &["terminationGracePeriodSeconds"]).and_then(Value::as_u64),
            Some(30),
            "{name}: terminationGracePeriodSeconds"
        );

        // Volumes: the PVC (ReadWriteOnce) at /data, an emptyDir at /tmp,
        // secrets that exist.
        let volumes = seq_at(pod, &["volumes"]);
        let volume = |vname: &str| {
            volumes
                .iter()
                .find(|v| str_at(v, &["name"]) == Some(vname))
                .unwrap_or_else(|| panic!("{name}: no volume {vname}"))
        };
        for v in volumes {
            if let Some(claim) = str_at(v, &["persistentVolumeClaim", "claimName"]) {
                let pvc = pvcs
                    .get(claim)
                    .unwrap_or_else(|| panic!("{name}: PVC {claim} is not defined"));
                let modes: Vec<String> = seq_at(pvc, &["spec", "accessModes"])
                    .iter()
                    .filter_map(scalar)
                    .collect();
                assert_eq!(modes, ["ReadWriteOnce"], "{name}: PVC {claim}");
            }
            if let Some(secret) = str_at(v, &["secret", "secretName"]) {
                assert!(
                    secrets.contains_key(secret),
                    "{name}: Secret {secret} is not defined"
                );
            }
        }

        let containers = seq_at(pod, &["containers"]);
        assert!(!containers.is_empty(), "{name}: containers");
        for c in containers {
            let cname = str_at(c, &["name"]).unwrap_or_default();
            let ctx = format!("{name}/{cname}");

            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                assert_eq!(
                    at(c, &[probe, "grpc", "port"]).and_then(Value::as_u64),
                    Some(port),
                    "{ctx}: native gRPC {probe} on {port}"
                );
            }
            assert_eq!(
                str_at(c, &["readinessProbe", "grpc", "service"]),
                Some(grpc),
                "{ctx}: readiness asks about {grpc}"
            );

            for key in ["cpu", "memory"] {
                assert!(
                    at(c, &["resources", "requests", key]).is_some(),
                    "{ctx}: resources.requests.{key}"
                );
            }
            assert!(
                at(c, &["resources", "limits", "memory"]).is_some(),
                "{ctx}: resources.limits.memory"
            );

            let sc =
                at(c, &["securityContext"]).unwrap_or_else(|| panic!("{ctx}: securityContext"));
            let flag = |key: &str| {
                at(sc, &[key])
                    .or_else(|| pod_sc.and_then(|p| at(p, &[key])))
                    .and_then(Value::as_bool)
            };
            assert_eq!(flag("runAsNonRoot"), Some(true), "{ctx}: runAsNonRoot");
            assert_eq!(
                at(sc, &["readOnlyRootFilesystem"]).and_then(Value::as_bool),
                Some(true),
                "{ctx}: readOnlyRootFilesystem"
            );
            assert_eq!(
                at(sc, &["allowPrivilegeEscalation"]).and_then(Value::as_bool),
                Some(false),
                "{ctx}: allowPrivilegeEscalation"
            );
            let dropped: Vec<String> = seq_at(sc, &["capabilities", "drop"])
                .iter()
                .filter_map(scalar)
                .collect();
            assert!(
                dropped.iter().any(|d| d == "ALL"),
                "{ctx}: drops ALL capabilities"
            );
            let user = at(sc, &["runAsUser"])
                .or_else(|| pod_sc.and_then(|p| at(p, &["runAsUser"])))
                .and_then(Value::as_u64);
            assert!(
                user.is_some_and(|u| u != 0),
                "{ctx}: runAsUser non-zero, got {user:?}"
            );

            let mounts = seq_at(c, &["volumeMounts"]);
            let mounted = |path: &str| {
                let m = mounts
                    .iter()
                    .find(|m| str_at(m, &["mountPath"]) == Some(path))
                    .unwrap_or_else(|| panic!("{ctx}: nothing mounted at {path}"));
                volume(str_at(m, &["name"]).unwrap_or_default())
            };
            assert!(
                at(mounted("/data"), &["persistentVolumeClaim"]).is_some(),
                "{ctx}: /data is the PVC"
            );
            assert!(
                at(mounted("/tmp"), &["emptyDir"]).is_some(),
                "{ctx}: /tmp is an emptyDir"
            );

            // Secret references point at keys the Secret has.
            for e in seq_at(c, &["env"]) {
                if let Some(r) = at(e, &["valueFrom", "secretKeyRef"]) {
                    let (sname, key) = (
                        str_at(r, &["name"]).unwrap_or_default(),
                        str_at(r, &["key"]).unwrap_or_default(),
                    );
                    let secret = secrets
                        .get(sname)
                        .unwrap_or_else(|| panic!("{ctx}: Secret {sname} is not defined"));
                    assert!(
                        at(secret, &["stringData", key])
                            .or_else(|| at(secret, &["data", key]))
                            .is_some(),
                        "{ctx}: Secret {sname} has no key {key}"
                    );
                }
            }

            // Listens on all interfaces; metrics on a port named `metrics`.
            let env_value = |var: &str| {
                seq_at(c, &["env"])
                    .iter()
                    .find(|e| str_at(e, &["name"]) == Some(var))
                    .and_then(|e| str_at(e, &["value"]))
            };
            let listen = if port == 50051 {
                "CACHE_LISTEN_ADDR"
            } else {
                "TRACKING_LISTEN_ADDR"
            };
            assert_eq!(
                env_value(listen),
                Some(format!("0.0.0.0:{port}").as_str()),
                "{ctx}: {listen}"
            );
            let metrics = seq_at(c, &["ports"])
                .iter()
                .find(|p| str_at(p, &["name"]) == Some("metrics"))
                .and_then(|p| at(p, &["containerPort"]))
                .and_then(Value::as_u64);
            assert_eq!(
                metrics,
                Some(9090),
                "{ctx}: metrics port 9090 named `metrics`"
            );
            assert_eq!(
                env_value("METRICS_ADDR"),
                Some("0.0.0.0:9090"),
                "{ctx}: METRICS_ADDR"
            );
        }
        assert_eq!(
            str_at(
                d,
                &[
                    "spec",
                    "template",
                    "metadata",
                    "annotations",
                    "prometheus.io/scrape"
                ]
            ),
            Some("true"),
            "{name}: prometheus.io/scrape"
        );
    }

    // Every Service selects a Deployment's pods.
    for s in of_kind("Service") {
        let selector = at(s, &["spec", "selector"])
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("Service {}: selector", name_of(s)));
        assert!(
            deployments.iter().any(|d| {
                let labels = at(d, &["spec", "template", "metadata", "labels"]);
                selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            }),
            "Service {} selects no Deployment's pods",
            name_of(s)
        );
    }

    // The example Secret is marked as such and has the keys the pods use.
    let secret = secrets.values().next().expect("a Secret example");
    for key in ["cloudflare-token", "auth-token"] {
        assert!(
            at(secret, &["stringData", key]).is_some(),
            "Secret example: {key}"
        );
    }
    assert!(
        read("deploy/kubernetes/secret.example.yaml").contains("EXAMPLE"),
        "secret.example.yaml says it is an example"
    );
}

/// Whether a manifest object is the PostgreSQL variant's database server
/// (`app.kubernetes.io/component: database`), which runs the postgres image.
fn is_database(o: &Value) -> bool {
    str_at(o, &["metadata", "labels", "app.kubernetes.io/component"]) == Some("database")
}

/// The env entry `var` of a container.
fn env_entry<'a>(c: &'a Value, var: &str) -> Option<&'a Value> {
    seq_at(c, &["env"])
        .iter()
        .find(|e| str_at(e, &["name"]) == Some(var))
}

#[test]
fn kubernetes_postgres_variant_runs_two_replicas_per_service_on_postgres() {
    // Valid YAML, every object named, and kustomization.yaml lists every
    // file but the Secret example.
    let files = kubernetes_files_in(POSTGRES_DIR);
    let objects = objects_of(files.clone());
    for (file, doc) in &objects {
        for path in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            assert!(str_at(doc, path).is_some(), "postgres/{file}: {path:?}");
        }
    }
    let kustomization = yaml_docs(
        "postgres/kustomization.yaml",
        &read(&format!("{POSTGRES_DIR}/kustomization.yaml")),
    );
    let listed: BTreeSet<String> = seq_at(&kustomization[0], &["resources"])
        .iter()
        .filter_map(scalar)
        .collect();
    let present: BTreeSet<String> = files
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| name != "kustomization.yaml" && name != "secret.example.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "postgres/kustomization.yaml resources vs the files present"
    );

    let of_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|(_, o)| str_at(o, &["kind"]) == Some(kind))
            .map(|(_, o)| o)
            .collect()
    };
    let name_of = |o: &Value| {
        str_at(o, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned()
    };
    let secrets = of_kind("Secret");
    assert_eq!(secrets.len(), 1, "one Secret example");
    let secret = secrets[0];
    assert_eq!(name_of(secret), "trafegodns");
    assert!(
        read(&format!("{POSTGRES_DIR}/secret.example.yaml")).contains("EXAMPLE"),
        "postgres/secret.example.yaml says it is an example"
    );
    let secret_value = |key: &str| str_at(secret, &["stringData", key]);
    // The services keep nothing on a volume: no PVC at all (PostgreSQL's
    // own storage is its StatefulSet's volumeClaimTemplates).
    assert!(
        of_kind("PersistentVolumeClaim").is_empty(),
        "no PVC: the state is in PostgreSQL"
    );

    let deployments = of_kind("Deployment");
    let names: BTreeSet<String> = deployments.iter().map(|d| name_of(d)).collect();
    assert_eq!(
        names,
        SERVICES.iter().map(|s| s.0.to_owned()).collect(),
        "one Deployment per service"
    );
    let mut database_urls = BTreeSet::new();
    for d in &deployments {
        let name = name_of(d);
        let &(_, port, _, _) = SERVICES.iter().find(|s| s.0 == name).unwrap();
        let replicas = at(d, &["spec", "replicas"]).and_then(Value::as_u64);
        assert_eq!(replicas, Some(2), "{name}: replicas");
        assert_ne!(
            str_at(d, &["spec", "strategy", "type"]),
            Some("Recreate"),
            "{name}: replicas roll, one at a time"
        );
        let pod = at(d, &["spec", "template", "spec"]).expect("pod spec");
        let pod_labels = at(d, &["spec", "template", "metadata", "labels"]);
        let selects_pods = |o: &Value| {
            at(o, &["spec", "selector", "matchLabels"])
                .or_else(|| at(o, &["spec", "selector"]))
                .and_then(Value::as_mapping)
                .is_some_and(|sel| {
                    !sel.is_empty()
                        && sel
                            .iter()
                            .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v))
                })
        };

        // A PodDisruptionBudget keeps one replica through a drain.
        let pdbs: Vec<&Value> = of_kind("PodDisruptionBudget")
            .into_iter()
            .filter(|p| selects_pods(p))
            .collect();
        assert_eq!(pdbs.len(), 1, "{name}: one PodDisruptionBudget");
        let min = at(pdbs[0], &["spec", "minAvailable"]).and_then(Value::as_u64);
        let max_unavailable = at(pdbs[0], &["spec", "maxUnavailable"]).and_then(Value::as_u64);
        assert!(
            min.is_some_and(|m| (1..replicas.unwrap_or(0)).contains(&m))
                || max_unavailable == Some(1),
            "{name}: the PDB lets one replica go and keeps one: {min:?} {max_unavailable:?}"
        );
        // A Service in front of both replicas.
        assert!(
            of_kind("Service").iter().any(|s| selects_pods(s)),
            "{name}: a Service selects its pods"
        );

        // No volume but /tmp and the secrets: nothing to share between pods.
        for v in seq_at(pod, &["volumes"]) {
            assert!(
                at(v, &["persistentVolumeClaim"]).is_none(),
                "{name}: no PVC volume"
            );
        }
        let containers = seq_at(pod, &["containers"]);
        assert_eq!(containers.len(), 1, "{name}: one container");
        let c = &containers[0];
        let ctx = format!("postgres/{name}");
        let env_value = |var: &str| env_entry(c, var).and_then(|e| str_at(e, &["value"]));
        for m in seq_at(c, &["volumeMounts"]) {
            assert_ne!(str_at(m, &["mountPath"]), Some("/data"), "{ctx}: no /data");
        }
        let (listen, url_var, path_var) = if port == 50051 {
            ("CACHE_LISTEN_ADDR", "CACHE_DATABASE_URL", "CACHE_DB_PATH")
        } else {
            (
                "TRACKING_LISTEN_ADDR",
                "TRACKING_DATABASE_URL",
                "TRACKING_DB_PATH",
            )
        };
        assert_eq!(
            env_value(listen),
            Some(format!("0.0.0.0:{port}").as_str()),
            "{ctx}: {listen}"
        );
        assert!(
            env_entry(c, path_var).is_none() && env_entry(c, "DATABASE_URL").is_none(),
            "{ctx}: only {url_var} names the database"
        );

        // The database URL (it carries the password) comes from the Secret,
        // a PostgreSQL URL of a database of this service's own.
        let key = str_at(
            env_entry(c, url_var).unwrap_or_else(|| panic!("{ctx}: {url_var} is set")),
            &["valueFrom", "secretKeyRef", "key"],
        )
        .unwrap_or_else(|| panic!("{ctx}: {url_var} comes from a Secret key"));
        let url = secret_value(key).unwrap_or_else(|| panic!("{ctx}: the Secret has {key}"));
        assert!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "{ctx}: {url_var} example is a PostgreSQL URL: {url}"
        );
        let database = url.rsplit('/').next().unwrap_or_default();
        assert!(
            database_urls.insert(database.to_owned()),
            "{ctx}: a database of its own, not {database}"
        );

        // The address the other replicas forward to: this pod's IP.
        let pod_ip = env_entry(c, "POD_IP").unwrap_or_else(|| panic!("{ctx}: POD_IP"));
        assert_eq!(
            str_at(pod_ip, &["valueFrom", "fieldRef", "fieldPath"]),
            Some("status.podIP"),
            "{ctx}: POD_IP from the pod's status"
        );
        assert_eq!(
            env_value("ADVERTISE_ADDRESS"),
            Some(format!("$(POD_IP):{port}").as_str()),
            "{ctx}: ADVERTISE_ADDRESS"
        );
        let position = |var: &str| {
            seq_at(c, &["env"])
                .iter()
                .position(|e| str_at(e, &["name"]) == Some(var))
        };
        assert!(
            position("POD_IP") < position("ADVERTISE_ADDRESS"),
            "{ctx}: POD_IP is defined before ADVERTISE_ADDRESS uses it"
        );
        for var in ["LEADER_RETRY_INTERVAL", "LEADER_CHECK_INTERVAL"] {
            let v = env_value(var).unwrap_or_else(|| panic!("{ctx}: {var}"));
            assert!(
                humantime::parse_duration(v).is_ok(),
                "{ctx}: {var} {v:?} is a duration"
            );
        }
        if port == 50051 {
            assert_ne!(
                env_value("DNS_PROVIDER"),
                Some("zonefile"),
                "{ctx}: a zone file is local to a pod, not for replicas"
            );
        } else {
            assert_eq!(
                env_value("CACHE_SERVICE_URL"),
                Some("http://cache-service:50051"),
                "{ctx}: CACHE_SERVICE_URL"
            );
        }
        // Every Secret reference is to a key the example has.
        for e in seq_at(c, &["env"]) {
            if let Some(k) = str_at(e, &["valueFrom", "secretKeyRef", "key"]) {
                assert!(secret_value(k).is_some(), "{ctx}: the Secret has {k}");
            }
        }

        // Probes over gRPC; readiness on the server's overall health, so a
        // follower stays ready.
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(
                at(c, &[probe, "grpc", "port"]).and_then(Value::as_u64),
                Some(port),
                "{ctx}: native gRPC {probe} on {port}"
            );
        }
        assert_eq!(
            str_at(c, &["readinessProbe", "grpc", "service"]).unwrap_or_default(),
            "",
            "{ctx}: readiness asks about the server (\"\"), which followers are too"
        );

        // The same hardening as the single-instance manifests.
        let sc = at(c, &["securityContext"]).unwrap_or_else(|| panic!("{ctx}: securityContext"));
        assert_eq!(
            at(sc, &["runAsNonRoot"]).and_then(Value::as_bool),
            Some(true),
            "{ctx}: runAsNonRoot"
        );
        assert_eq!(
            at(sc, &["readOnlyRootFilesystem"]).and_then(Value::as_bool),
            Some(true),
            "{ctx}: readOnlyRootFilesystem"
        );
        assert_eq!(
            at(sc, &["allowPrivilegeEscalation"]).and_then(Value::as_bool),
            Some(false),
            "{ctx}: allowPrivilegeEscalation"
        );
        for key in ["cpu", "memory"] {
            assert!(
                at(c, &["resources", "requests", key]).is_some(),
                "{ctx}: resources.requests.{key}"
            );
        }
    }

    // The PostgreSQL server shipped for trying it out creates both
    // databases the URLs name, with the password from the same Secret.
    let init: String = of_kind("ConfigMap")
        .iter()
        .filter(|o| is_database(o) || str_at(o, &["metadata", "name"]) == Some("postgresql-init"))
        .filter_map(|o| at(o, &["data"]).and_then(Value::as_mapping))
        .flat_map(|m| m.values().filter_map(Value::as_str))
        .collect();
    let statefulsets = of_kind("StatefulSet");
    if let Some(pg) = statefulsets.first() {
        for database in &database_urls {
            assert!(
                init.contains(&format!("CREATE DATABASE {database}")),
                "postgres/postgresql.yaml creates {database}"
            );
        }
        let c = at(pg, &["spec", "template", "spec", "containers", "0"]).expect("container");
        let key = env_entry(c, "POSTGRES_PASSWORD")
            .and_then(|e| str_at(e, &["valueFrom", "secretKeyRef", "key"]))
            .expect("POSTGRES_PASSWORD from the Secret");
        let password = secret_value(key).expect("the Secret has the password");
        for url_key in ["cache-database-url", "tracking-database-url"] {
            assert!(
                secret_value(url_key).is_some_and(|u| u.contains(&format!(":{password}@"))),
                "{url_key} uses the server's password"
            );
        }
        assert_eq!(
            at(c, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
            Some(true),
            "postgresql: runAsNonRoot (the namespace enforces restricted)"
        );
    }
}

// ---------------------------------------------------------------- settings

/// Environment variable names the deployment files set, each with where it
/// was seen; lines commented out count too (they are instructions to users).
fn env_names_in_deploy_files() -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |name: &str, file: &str| {
        found
            .entry(name.to_owned())
            .or_default()
            .insert(file.to_owned());
    };

    // Compose: environment maps (or lists), and commented `# NAME: value` lines.
    let compose_text = read("docker-compose.yml");
    let c = compose();
    if let Some(services) = at(&c, &["services"]).and_then(Value::as_mapping) {
        for s in services.values() {
            match at(s, &["environment"]) {
                Some(Value::Mapping(m)) => {
                    for k in m.keys().filter_map(Value::as_str) {
                        add(k, "docker-compose.yml");
                    }
                }
                Some(Value::Sequence(items)) => {
                    for item in items.iter().filter_map(Value::as_str) {
                        add(item.split('=').next().unwrap_or(item), "docker-compose.yml");
                    }
                }
                _ => {}
            }
        }
    }
    for line in compose_text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix('#')
            && let Some((key, _)) = rest.trim_start().split_once(':')
            && is_env_name(key)
        {
            add(key, "docker-compose.yml (commented)");
        }
    }

    // Kubernetes (both variants): container env names, and commented
    // `# - name: NAME` lines. The PostgreSQL variant's own database server
    // is left out: its variables are the postgres image's, not ours.
    let postgres_files = kubernetes_files_in(POSTGRES_DIR)
        .into_iter()
        .map(|(name, text)| (format!("postgres/{name}"), text));
    for (file, text) in kubernetes_files().into_iter().chain(postgres_files) {
        for doc in yaml_docs(&file, &text) {
            if is_database(&doc) {
                continue;
            }
            for c in seq_at(&doc, &["spec", "template", "spec", "containers"]) {
                for e in seq_at(c, &["env"]) {
                    if let Some(n) = str_at(e, &["name"]) {
                        add(n, &file);
                    }
                }
            }
        }
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix('#')
                && let Some(n) = rest.trim_start().strip_prefix("- name:")
                && is_env_name(n.trim())
            {
                add(n.trim(), &format!("{file} (commented)"));
            }
        }
    }

    // Dockerfile: ENV NAME=value ... (continuation lines joined).
    for instruction in dockerfile_instructions() {
        if let Some(rest) = instruction.strip_prefix("ENV ") {
            for token in rest.split_whitespace() {
                if let Some((k, _)) = token.split_once('=') {
                    add(k, "Dockerfile");
                }
            }
        }
    }
    found
}

#[test]
fn every_variable_in_the_deploy_files_is_a_real_setting() {
    let readme = read("README.md");
    let mut sources = String::new();
    for dir in ["common/src", "cache-service/src", "tracking-service/src"] {
        rust_sources(&repo_root().join(dir), &mut sources);
    }
    let healthcheck = read("common/src/bin/trafego-healthcheck.rs");
    let declared = |src: &str, name: &str| src.contains(&format!("env = \"{name}\""));

    // The lists themselves stay true.
    let mut problems = Vec::new();
    for name in README_SETTINGS {
        if !mentions(&readme, name) {
            problems.push(format!(
                "{name}: listed as a README setting, not in README.md"
            ));
        }
    }
    for name in MESH_SETTINGS {
        if !mentions(&readme, name) && !declared(&sources, name) {
            problems.push(format!(
                "{name}: neither documented in README.md nor declared (env = \"{name}\") by a service"
            ));
        }
    }
    for name in HEALTHCHECK_SETTINGS {
        if !declared(&healthcheck, name) {
            problems.push(format!("{name}: not declared by trafego-healthcheck"));
        }
    }

    // Every variable the deployment files use is one of them.
    let known: BTreeSet<&str> = README_SETTINGS
        .iter()
        .chain(MESH_SETTINGS)
        .chain(HEALTHCHECK_SETTINGS)
        .chain(KUBERNETES_ONLY)
        .copied()
        .collect();
    let used = env_names_in_deploy_files();
    assert!(used.len() > 10, "found too few variables: {used:?}");
    for (name, files) in &used {
        if !known.contains(name.as_str()) {
            problems.push(format!("{name} (in {files:?}) is not a known setting"));
        }
    }
    assert!(
        problems.is_empty(),
        "settings problems:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------- Dockerfile

/// The Dockerfile's instructions, continuation lines joined, comments and
/// blank lines dropped.
fn dockerfile_instructions() -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.trim().is_empty() {
                out.push(current.trim().to_owned());
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_pinned_unprivileged_and_health_checked() {
    let instructions = dockerfile_instructions();
    let keyword = |i: &String| {
        i.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    };

    let froms: Vec<&String> = instructions
        .iter()
        .filter(|i| keyword(i) == "FROM")
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let mut stages = BTreeSet::new();
    for from in &froms {
        let words: Vec<&str> = from
            .split_whitespace()
            .skip(1)
            .filter(|w| !w.starts_with("--"))
            .collect();
        let image = words.first().copied().unwrap_or_default();
        if !stages.contains(image) {
            let tag = image
                .rsplit('/')
                .next()
                .and_then(|last| last.split('@').next())
                .and_then(|last| last.split_once(':'))
                .map(|(_, tag)| tag);
            assert!(
                tag.is_some_and(|t| t != "latest" && !t.is_empty()),
                "{from}: pin the base image by tag (not :latest)"
            );
        }
        if let [_, as_kw, stage] = words.as_slice()
            && as_kw.eq_ignore_ascii_case("as")
        {
            stages.insert(*stage);
        }
    }

    let user = instructions
        .iter()
        .rfind(|i| keyword(i) == "USER")
        .expect("a USER instruction");
    let who = user.split_whitespace().nth(1).unwrap_or_default();
    let who = who.split(':').next().unwrap_or_default();
    assert!(
        who != "root" && who != "0" && !who.is_empty(),
        "{user}: not root"
    );

    let health = instructions
        .iter()
        .find(|i| keyword(i) == "HEALTHCHECK")
        .expect("a HEALTHCHECK instruction");
    assert!(health.contains("trafego-healthcheck"), "{health}");

    let all = instructions.join("\n");
    for bin in ["cache-service", "tracking-service", "trafego-healthcheck"] {
        assert!(all.contains(&format!("--bin {bin}")), "builds {bin}");
    }
    assert!(all.contains("--locked"), "builds with --locked");
    let expose = instructions
        .iter()
        .find(|i| keyword(i) == "EXPOSE")
        .expect("EXPOSE");
    for port in ["50051", "50052"] {
        assert!(
            expose.split_whitespace().any(|p| p.starts_with(port)),
            "{expose}: {port}"
        );
    }
}

// ---------------------------------------------------------------- healthcheck binary

fn healthcheck_bin() -> PathBuf {
    let bin = trafego_tests::workspace_bin("trafego-healthcheck");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p trafego-common --bins`",
        bin.display()
    );
    bin
}

async fn healthcheck(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(healthcheck_bin());
    cmd.args(args);
    for var in HEALTHCHECK_SETTINGS {
        cmd.env_remove(var);
    }
    run(&mut cmd, "trafego-healthcheck")
        .await
        .expect("run trafego-healthcheck")
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_serving_cache_service() {
    let cache = trafego_tests::start_cache(&[]).await;
    let addr = format!("http://{}", cache.addr);

    for service in [CACHE_GRPC, ""] {
        let out = healthcheck(&["--addr", &addr, "--service", service]).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "service {service:?}: {}",
            text(&out)
        );
        assert!(text(&out).starts_with("SERVING"), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            1,
            "one line"
        );
    }

    // host:port without a scheme, and the address from the environment.
    let bare = cache.addr.to_string();
    let out = healthcheck(&["--addr", &bare]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        tokio::process::Command::new(healthcheck_bin())
            .env("HEALTHCHECK_ADDR", &addr)
            .env("HEALTHCHECK_SERVICE", CACHE_GRPC),
        "trafego-healthcheck",
    )
    .await
    .expect("run trafego-healthcheck");
    assert_eq!(
        out.status.code(),
        Some(0),
        "from the environment: {}",
        text(&out)
    );

    // A service the server does not know is not healthy.
    let out = healthcheck(&["--addr", &addr, "--service", "no.such.Service"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    cache.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn healthcheck_exits_1_when_nothing_answers() {
    // A port that was just free: connection refused.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let out = healthcheck(&["--addr", &format!("http://{closed}"), "--timeout", "2s"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).starts_with("UNHEALTHY"), "{}", text(&out));

    // A listener that accepts but never speaks HTTP/2: the timeout ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let out = healthcheck(&[
        "--addr",
        &format!("http://{silent_addr}"),
        "--timeout",
        "1s",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout bounds the check: took {:?}",
        started.elapsed()
    );
    drop(silent);

    // Bad arguments are a failed check too (1, not clap's 2).
    let out = healthcheck(&["--timeout", "soon"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}
