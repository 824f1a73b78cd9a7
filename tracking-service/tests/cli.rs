//! The tracking-service binary's command line: `--help` lists every setting
//! with its environment variable, secrets stay hidden, and bad settings are
//! refused with a clear error.

use std::process::Command;

use clap::CommandFactory;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tracking-service"));
    c.env_clear();
    c
}

/// Every environment variable the service reads, taken from its clap
/// definition (flattened shared settings included), so a new setting cannot
/// be left out of the checks below.
fn env_vars() -> Vec<String> {
    let vars: Vec<String> = tracking_service::Config::command()
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
        .env("CACHE_SERVICE_TOKEN", "secret-value-456")
        .env("AUTH_TOKEN", "secret-value-789")
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
    assert!(!help.contains("secret-value"), "--help shows a secret");
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

/// A listen address already taken gives one line naming the variable to
/// change, and a failed exit.
#[test]
fn a_port_in_use_is_one_line_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .env("TRACKING_LISTEN_ADDR", addr.to_string())
        .env("TRACKING_DB_PATH", dir.path().join("t.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!("Error: {addr} is already in use: set TRACKING_LISTEN_ADDR to a free address"),
    );
}

/// A PostgreSQL URL nothing answers at stops the start with an error naming
/// the variable and the host, never the password, and a failed exit.
#[test]
fn an_unreachable_postgres_is_named_without_its_password() {
    // A loopback port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .env("TRACKING_LISTEN_ADDR", "127.0.0.1:0")
        .env("TRACKING_DB_PATH", dir.path().join("t.db"))
        .env(
            "TRACKING_DATABASE_URL",
            format!("postgres://trafego:hunter2@127.0.0.1:{port}/tracking"),
        )
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("TRACKING_DATABASE_URL"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!all.contains("hunter2"), "{all}");
    assert!(
        !dir.path().join("t.db").exists(),
        "the URL wins: no SQLite file is made"
    );
}
