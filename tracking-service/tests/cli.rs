//! The tracking-service binary's command line: `--help` lists every setting
//! with its environment variable, secrets stay hidden, and bad settings are
//! refused with a clear error.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tracking-service"));
    c.env_clear();
    c
}

#[test]
fn help_lists_every_environment_variable() {
    let out = bin()
        .env("CACHE_SERVICE_TOKEN", "secret-value-456")
        .env("AUTH_TOKEN", "secret-value-789")
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
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
        "CACHE_SERVICE_TOKEN",
        "CACHE_SERVICE_CA_FILE",
        "AUTH_TOKEN",
        "TLS_CERT_FILE",
        "METRICS_ADDR",
        "LOG_FORMAT",
        "LOG_LEVEL",
    ] {
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing from --help:\n{help}"
        );
    }
    assert!(!help.contains("secret-value"), "--help shows a secret");
}

#[test]
fn bad_settings_are_refused_with_the_variable_named() {
    for (var, value) in [
        ("CLEANUP_GRACE_PERIOD", "soon"),
        ("MAX_ORPHAN_RATIO", "2"),
        ("MANAGED_HOSTNAMES", "bad host:A"),
        ("CACHE_SERVICE_URL", "not a url"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = bin()
            .env("TRACKING_DB_PATH", dir.path().join("t.db"))
            .env("TRACKING_LISTEN_ADDR", "127.0.0.1:0")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(var) || err.contains(value),
            "{var}={value}: error does not say what was wrong:\n{err}"
        );
    }
}
