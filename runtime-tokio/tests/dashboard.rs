//! The dashboard of a running `keel` (`dashboardEnable=true`) in headless Chromium, from
//! Debian's `chromium` package (the README's test command installs it; `KEEL_CHROMIUM` names
//! another binary): traffic of a known shape goes in, the page is loaded as a person would
//! open it, and the rendered page must show the cluster, the topic, the group with its lag
//! and a throughput chart. A screenshot is kept in `target/test-artifacts/dashboard.png`.
//! Real processes: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::protocol::client_requests::{pull_message, send_message, OutgoingMessage, PullRequest};
use keel_core::protocol::headers::{CommandHeader, UpdateConsumerOffsetRequestHeader};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use support::{http_get, scratch_dir, Client, ServerProcess};

const CONF: &str = "dashboardEnable=true\ndashboardPort=0\ndashboardHost=127.0.0.1\n";

/// Debian's Chromium, or the binary `KEEL_CHROMIUM` names.
fn chromium() -> PathBuf {
    let path =
        std::env::var_os("KEEL_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "headless Chromium is needed at {} (Debian: apt-get install chromium; scripts/test.sh installs it), or set KEEL_CHROMIUM",
        path.display()
    );
    path
}

/// Chromium, headless and offline but for the page, with `args` then `url`; its stdout.
fn headless(profile: &Path, args: &[&str], url: &str) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Let the page's scripts run and its fetches finish before the DOM or the
            // screenshot is taken.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("Chromium starts");
    assert!(output.status.success(), "Chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of each cell of each row of the table with id `id` in `dom`.
fn table_rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom.find(&format!("<table id=\"{id}\"")).unwrap_or_else(|| panic!("no table {id} in {dom}"));
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    text[..text.find("</td>").unwrap()].to_owned()
                })
                .collect()
        })
        .collect()
}

/// The text of the element with id `id`.
fn element_text(dom: &str, id: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let text = &dom[at + dom[at..].find('>').unwrap() + 1..];
    text[..text.find('<').unwrap()].to_owned()
}

#[test]
fn the_dashboard_shows_clusters_topics_lagging_groups_and_throughput_in_chromium() {
    let dir = scratch_dir("dashboard");
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, CONF).unwrap();
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &dir.join("data"), Some(&conf));
    assert!(keel.boot_line.contains("dashboard at http://127.0.0.1:"), "{}", keel.boot_line);
    assert!(!keel.boot_line.contains("metrics at"), "metrics stay off: {}", keel.boot_line);
    let (broker, dashboard) = (keel.addr_in_boot_line(1), keel.addr_in_boot_line(2));

    // 30 messages over three seconds, so the chart has several points; cg-dash commits 12.
    let mut client = Client::connect(broker);
    let started = Instant::now();
    for i in 0..30 {
        let message = OutgoingMessage {
            topic: "DashOrders".into(),
            tags: None,
            keys: None,
            user_properties: Vec::new(),
            body: Bytes::from(format!("order {i}")),
        };
        let reply = client.call(&send_message(i + 1, "pg-dash", 0, &message));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
        std::thread::sleep(Duration::from_millis(100));
    }
    let pull = PullRequest {
        group: "cg-dash".into(),
        topic: "DashOrders".into(),
        queue_id: 0,
        offset: 0,
        max_messages: 12,
        expression: "*".into(),
        suspend_ms: 0,
    };
    assert_eq!(client.call(&pull_message(40, &pull)).response_code(), ResponseCode::SUCCESS);
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg-dash".into(),
        topic: "DashOrders".into(),
        queue_id: 0,
        commit_offset: 12,
    };
    let reply = client.call(&RemotingCommand::request(
        RequestCode::UPDATE_CONSUMER_OFFSET,
        41,
        commit.to_ext_fields(),
    ));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    assert!(started.elapsed() >= Duration::from_secs(3));

    // The broker registers the topic with its next heartbeat; wait until the name server
    // lists the broker so the clusters table is not empty.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, api) = http_get(dashboard, "/api/overview");
        assert_eq!(status, 200, "{api}");
        if api.contains("\"clusters\":[{") {
            assert!(api.contains("\"topic\":\"DashOrders\""), "{api}");
            break;
        }
        assert!(Instant::now() < deadline, "the name server never listed the broker: {api}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("http://{dashboard}/");
    let dom = headless(&dir.join("chromium-dom"), &["--dump-dom"], &url);
    assert!(dom.contains("data-loaded=\"true\""), "the page never loaded its data: {dom}");

    let identity = element_text(&dom, "identity");
    assert!(
        identity.starts_with(&format!("broker-a (ASYNC_MASTER) at {broker} in DefaultCluster")),
        "{identity}"
    );
    assert!(identity.contains("30 stored, 12 delivered since start"), "{identity}");
    let clusters = table_rows(&dom, "clusters");
    assert_eq!(clusters, vec![vec!["DefaultCluster", "broker-a", "0", &broker.to_string()]], "{dom}");
    let groups = table_rows(&dom, "groups");
    let group = groups.iter().find(|row| row[0] == "cg-dash").unwrap_or_else(|| panic!("{groups:?}"));
    // Group, topic, lag, in flight, oldest unconsumed, online.
    assert_eq!(group[1..4], ["DashOrders", "18", "0"], "{groups:?}");
    assert!(
        group[4].ends_with(" s") || group[4].ends_with(" ms"),
        "the oldest unconsumed has an age: {group:?}"
    );
    let topics = table_rows(&dom, "topics");
    assert_eq!(topics[0][0], "DashOrders", "user topics come first: {topics:?}");
    assert_eq!(topics[0][2..], ["RW", "30"], "{topics:?}");
    assert!(topics.iter().any(|row| row[0] == "TBW102"), "{topics:?}");
    assert_eq!(
        element_text(&dom, "topics-note"),
        "Greyed: the broker's own topics (3).",
        "TBW102, SELF_TEST_TOPIC, and the pop revive topic rmq_sys_REVIVE_LOG_DefaultCluster"
    );
    assert!(
        dom.contains("<tr class=\"system\"><td>TBW102</td>"),
        "the broker's own topics are greyed: {dom}"
    );
    // uPlot drew the chart, and its note counts the points it has.
    assert!(dom.contains("class=\"uplot") && dom.contains("<canvas"), "no chart: {dom}");
    assert!(dom.contains("stored/s") && dom.contains("delivered/s"), "the legend names both series");
    let note = element_text(&dom, "chart-note");
    let points: usize = note.split_whitespace().next().unwrap().parse().unwrap_or_else(|_| panic!("{note}"));
    assert!(points >= 3 && note.contains(" points over the last "), "{note}");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let screenshot = format!("--screenshot={}", shot.display());
    headless(&dir.join("chromium-shot"), &[&screenshot, "--window-size=1280,1000"], &url);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());

    for (path, kind) in
        [("/assets/uPlot.iife.min.js", 200), ("/assets/LICENSE.uPlot", 200), ("/nothing", 404)]
    {
        assert_eq!(http_get(dashboard, path).0, kind, "{path}");
    }
    drop(client);
}
