#![allow(clippy::unwrap_used)] // a test: a panic is the failure report
mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use common::TempDir;
use sors_tenant::config::LoggingConfig;
use sors_tenant::logging::{JournalLayer, log_dir, prune_logs};
use tracing_subscriber::layer::SubscriberExt;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn pruning_keeps_retention_days_including_today() {
    let dir = TempDir::new("log-prune");
    for name in [
        "application.2024-02-26.log", // 4 days before today: removed
        "application.2024-02-27.log", // 3 days before: removed (retention 3 keeps 28, 29, 1)
        "application.2024-02-28.log",
        "application.2024-02-29.log",
        "application.2024-03-01.log", // today
        "application-2024-01-15.log", // the original product's name: removed
        "application.log",            // not a daily file: kept
        "notes-2024-01-01.log",       // not ours: kept
        "application.2024-01-01.log.gz",
    ] {
        fs::write(dir.path().join(name), "x").unwrap();
    }
    let removed = prune_logs(dir.path(), 3, date(2024, 3, 1)).unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert_eq!(
        names(dir.path()),
        [
            "application.2024-01-01.log.gz",
            "application.2024-02-28.log",
            "application.2024-02-29.log",
            "application.2024-03-01.log",
            "application.log",
            "notes-2024-01-01.log",
        ]
    );
    // Nothing more to do on the same day; retention 1 keeps only today.
    assert!(
        prune_logs(dir.path(), 3, date(2024, 3, 1))
            .unwrap()
            .is_empty()
    );
    prune_logs(dir.path(), 1, date(2024, 3, 1)).unwrap();
    assert!(!names(dir.path()).contains(&"application.2024-02-29.log".to_owned()));
    assert!(names(dir.path()).contains(&"application.2024-03-01.log".to_owned()));
    // An absurd retention (not validated when called directly) keeps everything, no panic.
    fs::write(dir.path().join("application.0001-01-01.log"), "x").unwrap();
    assert!(
        prune_logs(dir.path(), u32::MAX, date(2024, 3, 1))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn log_directory_choice() {
    let tenant = Path::new("/var/lib/sors/acme");
    let mut config = LoggingConfig::default();
    let none: [(&str, &str); 0] = [];
    assert_eq!(log_dir(&config, tenant, "acme", &none), tenant.join("logs"));
    let trace = [("ININ_TRACE_ROOT", "/var/log/inin")];
    assert_eq!(
        log_dir(&config, tenant, "acme", &trace),
        Path::new("/var/log/inin/acme")
    );
    config.dir = Some("/srv/logs".into());
    assert_eq!(
        log_dir(&config, tenant, "acme", &trace),
        Path::new("/srv/logs")
    );
    config.dir = Some("mylogs".into());
    assert_eq!(
        log_dir(&config, tenant, "acme", &none),
        tenant.join("mylogs")
    );
}

fn receiver(dir: &TempDir) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&path).expect("bind test syslog socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (socket, path)
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 16384];
    let n = socket.recv(&mut buf).expect("a datagram within 10 s");
    String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram")
}

#[test]
fn journal_layer_sends_operational_events_as_syslog_datagrams() {
    let dir = TempDir::new("log-journal");
    let (socket, path) = receiver(&dir);
    let subscriber = tracing_subscriber::registry().with(JournalLayer::new(&path, "acme"));
    tracing::subscriber::with_default(subscriber, || {
        // Not operational: not sent.
        tracing::info!(event = "logging.started", "logging started");
        tracing::info!("no event field at all");
        // Operational but debug: not sent.
        tracing::debug!(event = "icws.debug_detail", "detail");
        tracing::info!(
            event = "icws.connected",
            server = "cic1.example.com",
            "Successfully connected to Primary CIC server"
        );
        tracing::warn!(
            event = "icws.redirect",
            to = "cic2",
            "Error: 503: Connecting to alternate CIC Server"
        );
        tracing::error!(
            event = "salesforce.relogin",
            reason = "session expired\nagain",
            "Re-logging to Salesforce"
        );
    });
    let pid = std::process::id();

    let first = recv(&socket);
    assert!(first.starts_with("<30>"), "daemon.info: {first}");
    let (_, rest) = first.split_at(4);
    // "Mmm dd hh:mm:ss " is 16 characters.
    let (timestamp, rest) = rest.split_at(16);
    assert!(
        chrono::NaiveTime::parse_from_str(&timestamp[7..15], "%H:%M:%S").is_ok(),
        "RFC 3164 timestamp: {timestamp:?}"
    );
    assert_eq!(
        rest,
        format!(
            "sors-acme[{pid}]: Successfully connected to Primary CIC server event=icws.connected server=cic1.example.com"
        )
    );

    let second = recv(&socket);
    assert!(second.starts_with("<28>"), "daemon.warning: {second}");
    assert!(
        second.ends_with(
            "Error: 503: Connecting to alternate CIC Server event=icws.redirect to=cic2"
        ),
        "{second}"
    );
    let third = recv(&socket);
    assert!(third.starts_with("<27>"), "daemon.err: {third}");
    assert!(
        third.ends_with(
            "Re-logging to Salesforce event=salesforce.relogin reason=\"session expired again\""
        ),
        "one line, quoted: {third}"
    );
}

#[test]
fn journal_layer_without_a_socket_carries_on_and_reconnects() {
    let dir = TempDir::new("log-nosock");
    let path = dir.path().join("log.sock");
    let layer = JournalLayer::new(&path, "acme");
    let err = layer.connect_now().unwrap_err();
    assert!(err.contains("log.sock"), "{err}");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..3 {
            tracing::info!(event = "router.push_lost", "dropped: nobody listens");
        }
        // The socket appears (journald started): the next event reaches it.
        let (socket, _) = receiver(&dir);
        tracing::info!(event = "router.push_lost", "push notifications appear lost");
        assert!(recv(&socket).ends_with("push notifications appear lost event=router.push_lost"));
    });
}
