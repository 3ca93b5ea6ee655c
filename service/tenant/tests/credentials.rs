#![allow(clippy::unwrap_used)] // a test: a panic is the failure report
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use common::TempDir;
use sors_tenant::cli;
use sors_tenant::credentials::{
    CicCredentials, CredentialError, CredentialStore, Credentials, KeyOrigin,
    SalesforceCredentials, Secret,
};

const SF_PASSWORD: &str = "sf-Pa55word!";
const SF_TOKEN: &str = "tok3nXYZ";
const SF_CLIENT_SECRET: &str = "client-secret-123";
const CIC_PASSWORD: &str = "cic-Pa55word!";

fn no_env() -> [(&'static str, &'static str); 0] {
    []
}

fn sample() -> Credentials {
    Credentials {
        salesforce: Some(SalesforceCredentials {
            username: "router@acme.example".into(),
            password: Secret::new(SF_PASSWORD),
            security_token: Secret::new(SF_TOKEN),
            client_id: Some("3MVG9-client-id".into()),
            client_secret: Some(Secret::new(SF_CLIENT_SECRET)),
        }),
        cic: Some(CicCredentials {
            user: "sors_service".into(),
            password: Secret::new(CIC_PASSWORD),
        }),
    }
}

fn assert_no_secret(text: &str) {
    for secret in [SF_PASSWORD, SF_TOKEN, SF_CLIENT_SECRET, CIC_PASSWORD] {
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read_json(store: &CredentialStore) -> serde_json::Value {
    serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap()
}

fn write_json(store: &CredentialStore, value: &serde_json::Value) {
    fs::write(store.path(), serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

#[test]
fn save_then_load_round_trips_with_private_files() {
    let dir = TempDir::new("cred-roundtrip");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    assert_eq!(store.load().unwrap(), Credentials::default(), "no file yet");
    store.save(&sample()).unwrap();

    let secure = dir.path().join("secureData");
    assert_eq!(mode(&secure), 0o700);
    assert_eq!(mode(&secure.join("key")), 0o600);
    assert_eq!(fs::metadata(secure.join("key")).unwrap().len(), 32);
    assert_eq!(mode(&store.path()), 0o600);
    assert_eq!(store.path(), secure.join("encryptData.json"));

    let text = fs::read_to_string(store.path()).unwrap();
    assert_no_secret(&text);
    assert!(
        text.contains("router@acme.example"),
        "user names are in clear"
    );
    assert_eq!(read_json(&store)["version"], 1);

    // A new store (a restart) reads the key file and gets everything back.
    let reopened = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    assert_eq!(reopened.load().unwrap(), sample());
    let names: Vec<_> = fs::read_dir(&secure)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

#[test]
fn every_save_uses_fresh_nonces() {
    let dir = TempDir::new("cred-nonce");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&sample()).unwrap();
    let first = read_json(&store);
    store.save(&sample()).unwrap();
    let second = read_json(&store);
    let sealed = |v: &serde_json::Value| {
        vec![
            v["key_check"].clone(),
            v["salesforce"]["password"].clone(),
            v["salesforce"]["security_token"].clone(),
            v["salesforce"]["client_secret"].clone(),
            v["cic"]["password"].clone(),
        ]
    };
    let mut nonces: Vec<String> = sealed(&first)
        .iter()
        .chain(sealed(&second).iter())
        .map(|s| s["nonce"].as_str().unwrap().to_owned())
        .collect();
    for nonce in &nonces {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(nonce)
            .unwrap();
        assert_eq!(raw.len(), 12, "96-bit nonce");
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 10, "every secret, every save: a new nonce");
    assert_ne!(
        first["cic"]["password"]["ciphertext"],
        second["cic"]["password"]["ciphertext"]
    );
}

#[test]
fn a_key_from_the_environment_is_used_instead_of_a_file() {
    let dir = TempDir::new("cred-envkey");
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY", key.as_str())];
    let store = CredentialStore::open_with(dir.path(), &env).unwrap();
    assert_eq!(store.key_origin(), &KeyOrigin::Env);
    store.save(&sample()).unwrap();
    assert!(!dir.path().join("secureData/key").exists(), "no key file");
    assert_eq!(
        CredentialStore::open_with(dir.path(), &env)
            .unwrap()
            .load()
            .unwrap(),
        sample()
    );

    // Without the variable there is no key at all.
    let err = CredentialStore::open_with(dir.path(), &no_env())
        .unwrap()
        .load()
        .unwrap_err();
    assert!(matches!(err, CredentialError::NoKey { .. }), "{err}");
    assert!(err.to_string().contains("SORS_CREDENTIAL_KEY"), "{err}");

    // Another key: a clear "wrong key", not "modified".
    let other = base64::engine::general_purpose::STANDARD.encode([8u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY", other.as_str())];
    let err = CredentialStore::open_with(dir.path(), &env)
        .unwrap()
        .load()
        .unwrap_err();
    assert!(matches!(err, CredentialError::WrongKey { .. }), "{err}");
    assert_no_secret(&err.to_string());
    assert_no_secret(&format!("{err:?}"));
}

#[test]
fn a_bad_environment_key_is_refused_without_echoing_it() {
    let dir = TempDir::new("cred-badenv");
    for value in ["not base64 at all!!", "c2hvcnQ="] {
        let env = [("SORS_CREDENTIAL_KEY", value)];
        let err = CredentialStore::open_with(dir.path(), &env).unwrap_err();
        assert!(matches!(err, CredentialError::BadEnvKey { .. }), "{err}");
        assert!(!err.to_string().contains(value), "{err}");
    }
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = TempDir::new("cred-perm");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&sample()).unwrap();
    let key = dir.path().join("secureData/key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let err = CredentialStore::open_with(dir.path(), &no_env()).unwrap_err();
    assert!(
        matches!(err, CredentialError::InsecureKeyFile { mode: 0o640, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");

    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&key, b"short").unwrap();
    let err = CredentialStore::open_with(dir.path(), &no_env()).unwrap_err();
    assert!(
        matches!(err, CredentialError::BadKeyFile { len: 5, .. }),
        "{err}"
    );
}

/// Changes one bit of the sealed CIC password in the file, as tampering would.
fn flip_a_bit_of_the_cic_password(store: &CredentialStore) {
    let mut json = read_json(store);
    let ct = json["cic"]["password"]["ciphertext"].as_str().unwrap();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(ct)
        .unwrap();
    raw[0] ^= 1;
    json["cic"]["password"]["ciphertext"] =
        base64::engine::general_purpose::STANDARD.encode(raw).into();
    write_json(store, &json);
}

#[test]
fn a_modified_value_is_detected_and_named() {
    let dir = TempDir::new("cred-tamper");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&sample()).unwrap();
    flip_a_bit_of_the_cic_password(&store);
    let err = store.load().unwrap_err();
    match &err {
        CredentialError::Tampered { field, .. } => assert_eq!(field, "cic.password"),
        other => panic!("expected Tampered, got {other}"),
    }
    assert_no_secret(&err.to_string());
}

#[test]
fn values_cannot_be_swapped_between_fields() {
    let dir = TempDir::new("cred-swap");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&sample()).unwrap();
    let mut json = read_json(&store);
    let password = json["salesforce"]["password"].clone();
    json["salesforce"]["password"] = json["salesforce"]["security_token"].clone();
    json["salesforce"]["security_token"] = password;
    write_json(&store, &json);
    let err = store.load().unwrap_err();
    assert!(
        matches!(&err, CredentialError::Tampered { field, .. } if field == "salesforce.password"),
        "{err}"
    );
}

#[test]
fn foreign_and_future_files_get_clear_errors() {
    let dir = TempDir::new("cred-format");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&sample()).unwrap();
    let good = read_json(&store);

    let mut future = good.clone();
    future["version"] = 2.into();
    write_json(&store, &future);
    let err = store.load().unwrap_err();
    assert!(
        matches!(err, CredentialError::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );

    // The original product's file (or any other JSON).
    write_json(
        &store,
        &serde_json::json!({"icUser": "sors", "icPassword": "abc:def"}),
    );
    let err = store.load().unwrap_err();
    assert!(matches!(err, CredentialError::Format { .. }), "{err}");
    assert!(err.to_string().contains("set-salesforce"), "{err}");

    // A hand-edited clear-text password: rejected without quoting it.
    let mut edited = good.clone();
    edited["cic"]["password"] = CIC_PASSWORD.into();
    write_json(&store, &edited);
    let err = store.load().unwrap_err();
    assert!(matches!(err, CredentialError::Format { .. }), "{err}");
    assert_no_secret(&err.to_string());

    fs::write(store.path(), b"{ not json").unwrap();
    let err = store.load().unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn secrets_never_show_in_debug_or_display() {
    let creds = sample();
    assert_no_secret(&format!("{creds:?}"));
    assert_no_secret(&format!("{:#?}", creds));
    let secret = Secret::new(SF_PASSWORD);
    assert_eq!(secret.to_string(), "***");
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert_eq!(secret.expose(), SF_PASSWORD);
    let dir = TempDir::new("cred-debug");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&creds).unwrap();
    let key = fs::read(dir.path().join("secureData/key")).unwrap();
    let debug = format!("{store:?}");
    assert!(debug.contains("Key(***)"), "{debug}");
    assert!(!debug.contains(&format!("{:?}", &key[..4])), "{debug}");
}

#[test]
fn check_summarises_without_secrets() {
    let dir = TempDir::new("cred-check");
    let store = CredentialStore::open_with(dir.path(), &no_env()).unwrap();
    store.save(&sample()).unwrap();
    let summary = store.check().unwrap();
    assert_eq!(
        summary.salesforce_username.as_deref(),
        Some("router@acme.example")
    );
    assert_eq!(summary.cic_user.as_deref(), Some("sors_service"));
    assert!(summary.salesforce_has_token);
    assert!(summary.salesforce_has_client_secret);
    assert_no_secret(&format!("{summary:?}"));
}

// The CLI core uses the process environment; SORS_CREDENTIAL_KEY is not set in tests, so the
// key file is used (if it were set, both calls would use it consistently).
#[test]
fn cli_set_and_show() {
    let dir = TempDir::new("cred-cli");
    let empty = cli::show(dir.path()).unwrap();
    assert!(empty.contains("salesforce: not set"), "{empty}");
    assert!(empty.contains("cic: not set"), "{empty}");

    cli::set_cic(dir.path(), "sors_service", Secret::new(CIC_PASSWORD)).unwrap();
    cli::set_salesforce(
        dir.path(),
        "router@acme.example",
        Secret::new(SF_PASSWORD),
        Secret::new(""),
        None,
        None,
    )
    .unwrap();
    let shown = cli::show(dir.path()).unwrap();
    assert_no_secret(&shown);
    assert!(shown.contains("\"router@acme.example\""), "{shown}");
    assert!(shown.contains("security token not set"), "{shown}");
    assert!(
        shown.contains("cic: user \"sors_service\""),
        "set-salesforce kept CIC: {shown}"
    );

    let loaded = CredentialStore::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(loaded.cic.unwrap().password.expose(), CIC_PASSWORD);
    assert_eq!(loaded.salesforce.unwrap().password.expose(), SF_PASSWORD);
}

#[test]
fn cli_secret_inputs() {
    let env = [("SF_PW", SF_PASSWORD), ("EMPTY", "")];
    assert_eq!(
        cli::secret_from_env(&env, "SF_PW").unwrap().expose(),
        SF_PASSWORD
    );
    assert_eq!(cli::secret_from_env(&env, "EMPTY").unwrap().expose(), "");
    let err = cli::secret_from_env(&env, "NOPE").unwrap_err();
    assert!(err.to_string().contains("NOPE"), "{err}");

    let mut input = std::io::Cursor::new(format!("{CIC_PASSWORD}\r\nsecond line\n"));
    assert_eq!(
        cli::secret_from_reader(&mut input).unwrap().expose(),
        CIC_PASSWORD
    );
    let mut spaces = std::io::Cursor::new(" a b ");
    assert_eq!(
        cli::secret_from_reader(&mut spaces).unwrap().expose(),
        " a b "
    );
    let mut empty = std::io::Cursor::new("");
    assert!(cli::secret_from_reader(&mut empty).is_err());
}

/// Issue 8: "enter those credentials again" must work after a refusal, and keep the refused
/// file rather than overwrite it: saving is refused until the operator sets the file aside.
#[test]
fn credentials_refused_as_modified_can_be_entered_again_after_set_aside() {
    let dir = TempDir::new("cred-reenter");
    cli::set_cic(dir.path(), "sors_service", Secret::new(CIC_PASSWORD)).unwrap();
    let store = CredentialStore::open(dir.path()).unwrap();
    flip_a_bit_of_the_cic_password(&store);
    let tampered = std::fs::read(store.path()).unwrap();
    assert!(matches!(
        store.load(),
        Err(CredentialError::Tampered { .. })
    ));

    // A save is refused, the file is left as it was, and the error says what to do.
    let err = cli::set_cic(dir.path(), "sors_service", Secret::new("new-cic-secret")).unwrap_err();
    assert!(matches!(err, CredentialError::Tampered { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&store.path().display().to_string()), "{text}");
    assert!(
        text.contains("sors credentials set-aside --tenant"),
        "{text}"
    );
    assert_eq!(std::fs::read(store.path()).unwrap(), tampered);

    let (kept, why) = cli::set_aside(dir.path()).unwrap();
    assert!(matches!(why, CredentialError::Tampered { .. }), "{why}");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        tampered,
        "kept byte for byte"
    );
    assert!(kept.to_string_lossy().contains("encryptData.json.refused-"));
    assert!(!store.path().exists());
    cli::set_cic(dir.path(), "sors_service", Secret::new("new-cic-secret")).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.cic.unwrap().password.expose(), "new-cic-secret");

    // A readable file is not set aside, and a missing one neither.
    let good = std::fs::read(store.path()).unwrap();
    let err = cli::set_aside(dir.path()).unwrap_err();
    assert!(matches!(err, CredentialError::NotRefused { .. }), "{err}");
    assert_eq!(std::fs::read(store.path()).unwrap(), good);
    let empty = TempDir::new("cred-reenter-none");
    let err = cli::set_aside(empty.path()).unwrap_err();
    assert!(matches!(err, CredentialError::NoFile { .. }), "{err}");
}

#[test]
fn empty_passwords_are_refused_and_nothing_is_saved() {
    let dir = TempDir::new("cred-empty");
    let err = cli::set_cic(dir.path(), "sors", Secret::new("")).unwrap_err();
    assert!(err.to_string().contains("CIC password is empty"), "{err}");
    let err = cli::set_salesforce(
        dir.path(),
        "router@acme.example",
        Secret::new(""),
        Secret::new("TOKEN"),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("Salesforce password is empty"),
        "{err}"
    );
    let err = cli::set_salesforce(
        dir.path(),
        "router@acme.example",
        Secret::new("pw"),
        Secret::new(""),
        Some("client"),
        Some(Secret::new("")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("client secret is empty"), "{err}");
    assert!(!CredentialStore::open(dir.path()).unwrap().path().exists());
}
