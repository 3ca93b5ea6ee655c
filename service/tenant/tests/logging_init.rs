//! `logging::init` installs the process-wide subscriber, so it gets a test binary of its own
//! with a single test.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::TempDir;
use sors_tenant::config::LoggingConfig;
use sors_tenant::logging;

#[test]
fn init_writes_the_daily_file_and_the_journal() {
    let tenant = TempDir::new("log-init");
    let old = tenant
        .path()
        .join("logs")
        .join("application.2001-01-01.log");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::write(&old, "old").unwrap();

    let journal_path = tenant.path().join("journal.sock");
    let journal = UnixDatagram::bind(&journal_path).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let config = LoggingConfig {
        level: "warn".into(),
        retention_days: 7,
        dir: None,
        journal: true,
    };
    let env: [(&str, &str); 0] = [];
    let guard = logging::init_with(&config, tenant.path(), "acme", &env, &journal_path)
        .expect("logging starts");
    assert_eq!(guard.log_dir(), tenant.path().join("logs"));
    assert!(!old.exists(), "old files are pruned at start");

    tracing::info!("hidden at warn level");
    // An operational event below the configured level still reaches the journal.
    tracing::info!(
        event = "salesforce.login.ok",
        user = "router@acme.example",
        "Logged in successfully to Salesforce"
    );
    tracing::warn!(
        event = "icws.redirect",
        "Error: 503: Connecting to alternate CIC Server"
    );
    let mut buf = [0u8; 4096];
    let mut datagrams = Vec::new();
    for _ in 0..2 {
        let n = journal
            .recv(&mut buf)
            .expect("journal datagram within 10 s");
        datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        datagrams[0].contains("Logged in successfully to Salesforce event=salesforce.login.ok"),
        "{datagrams:?}"
    );
    assert!(
        datagrams[1].contains("Connecting to alternate CIC Server event=icws.redirect"),
        "{datagrams:?}"
    );

    // A second init in the same process is an error, not a panic.
    assert!(matches!(
        logging::init_with(&config, tenant.path(), "acme", &env, &journal_path),
        Err(logging::LoggingError::AlreadyInitialized(_))
    ));

    drop(guard); // flushes the file writer
    // One daily file (named by the UTC date; read them all in case the test spans midnight).
    let mut text = String::new();
    for entry in fs::read_dir(tenant.path().join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("application.20") && name.ends_with(".log"),
            "unexpected file {name}"
        );
        text.push_str(&fs::read_to_string(&path).unwrap());
    }
    assert!(
        text.contains("Error: 503: Connecting to alternate CIC Server"),
        "{text}"
    );
    assert!(text.contains("icws.redirect"), "{text}");
    assert!(
        !text.contains("Logged in successfully"),
        "below the level: {text}"
    );
    assert!(!text.contains("hidden at warn level"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in files");
}
