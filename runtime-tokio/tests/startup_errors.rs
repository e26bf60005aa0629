//! The binaries started wrongly, as an operator would: each exits non-zero with one line
//! that names what it was doing and with what, no backtrace (even with RUST_BACKTRACE set,
//! as it often is), and no colour codes when stderr is not a terminal. Normal builds only.
#![cfg(not(madsim))]

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};

use support::scratch_dir;

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("NO_COLOR")
        .env_remove("KEEL_BACKTRACE")
        .output()
        .unwrap()
}

/// Stderr of a failed start: exit code non-zero, no backtrace, no escape codes.
fn failure_text(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "exited successfully: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("Stack"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in a log that is not a terminal: {stderr:?}");
    stderr
}

/// Run `binary` with a port someone else holds; its stderr, checked for the one line that
/// names the address.
fn on_a_taken_port(
    binary: &str,
    name: &str,
    args: impl FnOnce(u16, &std::path::Path) -> Vec<String>,
) -> String {
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // Named by the port too: tests of one binary run at once.
    let dir = scratch_dir(&format!("startup-{name}-{port}"));
    let args = args(port, &dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = failure_text(&run(binary, &args));
    assert!(stderr.contains(&format!("{name}: cannot listen on 0.0.0.0:{port}: address in use")), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    stderr
}

/// A config file in `dir` holding `text`; its path as an argument.
fn conf(dir: &std::path::Path, name: &str, text: String) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_broker_on_a_taken_port_names_the_address_and_exits_1() {
    on_a_taken_port(env!("CARGO_BIN_EXE_mqbroker"), "mqbroker", |port, dir| {
        let text = format!("listenPort={port}\nstorePathRootDir={}\n", dir.join("store").display());
        vec!["-c".into(), conf(dir, "broker.conf", text)]
    });
}

#[test]
fn a_broker_whose_replication_port_is_taken_names_it_and_exits_1() {
    on_a_taken_port(env!("CARGO_BIN_EXE_mqbroker"), "mqbroker", |port, dir| {
        let text =
            format!("listenPort=0\nhaListenPort={port}\nstorePathRootDir={}\n", dir.join("store").display());
        vec!["-c".into(), conf(dir, "broker.conf", text)]
    });
}

#[test]
fn a_name_server_on_a_taken_port_names_the_address_and_exits_1() {
    on_a_taken_port(env!("CARGO_BIN_EXE_mqnamesrv"), "mqnamesrv", |port, dir| {
        vec!["-c".into(), conf(dir, "namesrv.properties", format!("listenPort={port}\n"))]
    });
}

#[test]
fn the_all_in_one_command_on_a_taken_port_names_it() {
    on_a_taken_port(env!("CARGO_BIN_EXE_keel"), "keel", |port, dir| {
        let data = dir.join("data").to_str().unwrap().to_owned();
        ["--data-dir", &data, "--namesrv-port", "0", "--broker-port", &port.to_string()]
            .map(str::to_owned)
            .to_vec()
    });
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = scratch_dir("startup-config");
    let missing = dir.join("nope.conf");
    let stderr = failure_text(&run(env!("CARGO_BIN_EXE_mqbroker"), &["-c", missing.to_str().unwrap()]));
    assert!(stderr.contains(&format!("mqbroker: cannot read {}", missing.display())), "{stderr}");
}

#[test]
fn a_store_directory_that_cannot_be_made_is_named() {
    let dir = scratch_dir("startup-store");
    // A file where the store directory should be.
    let blocker = dir.join("store");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, format!("listenPort=0\nstorePathRootDir={}\n", blocker.join("inner").display()))
        .unwrap();
    let stderr = failure_text(&run(env!("CARGO_BIN_EXE_mqbroker"), &["-c", conf.to_str().unwrap()]));
    assert!(stderr.contains("mqbroker: cannot open the store directory"), "{stderr}");
    assert!(stderr.contains(&blocker.join("inner").display().to_string()), "{stderr}");
}

#[test]
fn a_setting_that_cannot_work_names_its_key() {
    let dir = scratch_dir("startup-setting");
    let conf = dir.join("broker.conf");
    let store = dir.join("store");
    std::fs::write(
        &conf,
        format!("listenPort=0\nstorePathRootDir={}\ndefaultTopicQueueNums=0\n", store.display()),
    )
    .unwrap();
    let stderr = failure_text(&run(env!("CARGO_BIN_EXE_mqbroker"), &["-c", conf.to_str().unwrap()]));
    assert!(stderr.contains("defaultTopicQueueNums: 0 is not a queue count from 1 to 1024"), "{stderr}");
}
