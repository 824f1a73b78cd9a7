//! The cache-service binary's command line: `--help` lists every setting with
//! its environment variable, and a bad setting is refused with a clear error.

use std::process::Command;

use clap::CommandFactory;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cache-service"));
    c.env_clear();
    c
}

/// Every environment variable the service reads, taken from its clap
/// definition (flattened shared settings included), so a new setting cannot
/// be left out of the checks below.
fn env_vars() -> Vec<String> {
    let vars: Vec<String> = cache_service::Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for shared in ["SHUTDOWN_GRACE", "AUTH_TOKEN", "LOG_LEVEL"] {
        assert!(
            vars.iter().any(|v| v == shared),
            "{shared} missing: {vars:?}"
        );
    }
    vars
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
    let missing: Vec<String> = env_vars()
        .into_iter()
        .filter(|var| {
            !help.contains(&format!("[env: {var}=")) && !help.contains(&format!("[env: {var}]"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing from --help: {missing:?}\n{help}"
    );
    assert!(!help.contains("secret-value-123"), "--help shows a secret");
}

/// What a user reads: the README's configuration section names every
/// variable the service reads.
#[test]
fn the_readme_configuration_tables_name_every_environment_variable() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Configuration")
        .expect("a Configuration section");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let missing: Vec<String> = env_vars()
        .into_iter()
        .filter(|var| !section.contains(&format!("`{var}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's configuration tables do not name {missing:?}"
    );
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

/// A listen address already taken gives one line naming the variable to
/// change, and a failed exit.
#[test]
fn a_port_in_use_is_one_line_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .env("CACHE_LISTEN_ADDR", addr.to_string())
        .env("DNS_ZONE", "example.com")
        .env("CACHE_DB_PATH", dir.path().join("c.db"))
        .env("ZONEFILE_PATH", dir.path().join("example.com.zone"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!("Error: {addr} is already in use: set CACHE_LISTEN_ADDR to a free address"),
    );
}
