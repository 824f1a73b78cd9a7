//! The cache-service binary's command line: `--help` lists every setting with
//! its environment variable, and a bad setting is refused with a clear error.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cache-service"));
    c.env_clear();
    c
}

#[test]
fn help_lists_every_environment_variable() {
    let out = bin()
        .env("CLOUDFLARE_TOKEN", "secret-value-123")
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "CACHE_LISTEN_ADDR",
        "CACHE_DB_PATH",
        "DNS_PROVIDER",
        "DNS_ZONE",
        "CLOUDFLARE_ZONE",
        "ZONEFILE_PATH",
        "CLOUDFLARE_TOKEN",
        "CLOUDFLARE_TOKEN_FILE",
        "CLOUDFLARE_ZONE_ID",
        "CLOUDFLARE_API_URL",
        "DNS_CACHE_REFRESH_INTERVAL",
        "LOG_FORMAT",
        "LOG_LEVEL",
    ] {
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing from --help:\n{help}"
        );
    }
    assert!(!help.contains("secret-value-123"), "--help shows the token");
}

#[test]
fn a_missing_zone_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .env("CACHE_DB_PATH", dir.path().join("c.db"))
        .env("CACHE_LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DNS_ZONE"), "{err}");
}

#[test]
fn a_bad_duration_is_refused() {
    let out = bin()
        .env("DNS_CACHE_REFRESH_INTERVAL", "soon")
        .env("DNS_ZONE", "example.com")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("soon"), "{err}");
}
