//! The `trafego-healthcheck` binary's command line. Having an integration test
//! here also makes `cargo test` build the binary, which the deployment tests run.

#[test]
fn help_names_the_settings_and_a_bad_argument_exits_one() {
    let bin = env!("CARGO_BIN_EXE_trafego-healthcheck");
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("HEALTHCHECK_ADDR"), "{help}");
    let out = std::process::Command::new(bin)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "docker reserves exit code 2");
}
