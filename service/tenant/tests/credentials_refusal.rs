//! A credential file that does not open (tampered, truncated, foreign, another key) is refused
//! with an error that names it and says what to do, and nothing overwrites it: not a save
//! through the store, not the CLI's set commands. The file's bytes are compared after each
//! refusal.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::TempDir;
use serde_json::{Value, json};
use sors_tenant::cli;
use sors_tenant::credentials::{
    CicCredentials, CredentialError, CredentialStore, Credentials, SalesforceCredentials, Secret,
};

const SF_PASSWORD: &str = "sf-Pa55word!";
const SF_TOKEN: &str = "tok3nXYZ";
const SF_CLIENT_SECRET: &str = "client-secret-123";
const CIC_PASSWORD: &str = "cic-Pa55word!";

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

/// A tenant directory with the sample saved under its own secureData/key; returns the file.
fn saved(dir: &Path) -> Vec<u8> {
    let store = CredentialStore::open_with(dir, &[]).unwrap();
    store.save(&sample()).unwrap();
    fs::read(store.path()).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Flips one bit of the decoded bytes of a base64 value at `pointer` (e.g. `/cic/password/nonce`).
fn flip(mut json: Value, pointer: &str, at: usize) -> Value {
    let value = json.pointer_mut(pointer).unwrap();
    let mut raw = B64.decode(value.as_str().unwrap()).unwrap();
    let at = at.min(raw.len() - 1);
    raw[at] ^= 0x01;
    *value = B64.encode(raw).into();
    json
}

fn swap(mut json: Value, a: &str, b: &str) -> Value {
    let va = json.pointer(a).unwrap().clone();
    let vb = json.pointer(b).unwrap().clone();
    *json.pointer_mut(a).unwrap() = vb;
    *json.pointer_mut(b).unwrap() = va;
    json
}

fn bytes(json: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(json).unwrap()
}

/// Every way to damage a good file, named, with the error kind expected.
fn damaged(good: &[u8], other_key_file: &[u8]) -> Vec<(String, Vec<u8>, &'static str)> {
    let json: Value = serde_json::from_slice(good).unwrap();
    let other: Value = serde_json::from_slice(other_key_file).unwrap();
    let mut cases: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    for field in [
        "/salesforce/password",
        "/salesforce/security_token",
        "/salesforce/client_secret",
        "/cic/password",
    ] {
        for at in [0, 7, 1000] {
            cases.push((
                format!("one bit of {field} ciphertext byte {at}"),
                bytes(&flip(json.clone(), &format!("{field}/ciphertext"), at)),
                "tampered",
            ));
        }
        cases.push((
            format!("one bit of the {field} nonce"),
            bytes(&flip(json.clone(), &format!("{field}/nonce"), 3)),
            "tampered",
        ));
    }
    cases.push((
        "password and token swapped".into(),
        bytes(&swap(
            json.clone(),
            "/salesforce/password",
            "/salesforce/security_token",
        )),
        "tampered",
    ));
    cases.push((
        "Salesforce and CIC passwords swapped".into(),
        bytes(&swap(json.clone(), "/salesforce/password", "/cic/password")),
        "tampered",
    ));
    cases.push((
        "key_check ciphertext altered".into(),
        bytes(&flip(json.clone(), "/key_check/ciphertext", 5)),
        "tampered",
    ));
    let mut foreign_check = json.clone();
    foreign_check["key_check"] = other["key_check"].clone();
    cases.push((
        "key_check of a file sealed with another key".into(),
        bytes(&foreign_check),
        "tampered",
    ));
    let mut not_base64 = json.clone();
    not_base64["cic"]["password"]["ciphertext"] = "***not base64***".into();
    cases.push((
        "a ciphertext that is not base64".into(),
        bytes(&not_base64),
        "tampered",
    ));
    cases.push((
        "the whole file sealed with another key".into(),
        other_key_file.to_vec(),
        "wrong key",
    ));

    // Truncations: every cut before the closing brace leaves JSON that does not parse.
    let last_brace = good.iter().rposition(|&b| b == b'}').unwrap();
    for cut in [
        0,
        1,
        2,
        17,
        good.len() / 3,
        good.len() / 2,
        last_brace - 1,
        last_brace,
    ] {
        cases.push((
            format!("cut at {cut} of {} bytes", good.len()),
            good[..cut].to_vec(),
            "format",
        ));
    }
    cases.push(("only white space".into(), b" \n\n".to_vec(), "format"));

    // Foreign files: JSON of other shapes, then not JSON at all.
    for (what, value) in [
        ("an empty object", json!({})),
        ("an array", json!([1, 2, 3])),
        ("a string", json!("sors-credentials")),
        ("null", json!(null)),
        (
            "the original product's file",
            json!({"icUser": "sors", "icPassword": "abc:def"}),
        ),
        (
            "our header without key_check",
            json!({"format": "sors-credentials", "version": 1, "cipher": "AES-256-GCM"}),
        ),
        (
            "another cipher",
            json!({"format": "sors-credentials", "version": 1, "cipher": "ROT13"}),
        ),
    ] {
        cases.push((what.into(), bytes(&value), "format"));
    }
    let mut unknown = json.clone();
    unknown["cic"]["note"] = "hello".into();
    cases.push(("an unknown field".into(), bytes(&unknown), "format"));
    let mut clear = json.clone();
    clear["cic"]["password"] = CIC_PASSWORD.into();
    cases.push(("a clear-text password".into(), bytes(&clear), "format"));
    let mut future = json.clone();
    future["version"] = 2.into();
    cases.push(("a newer version".into(), bytes(&future), "version"));
    cases.push((
        "binary garbage".into(),
        vec![0x00, 0xff, 0x13, 0x37, 0x80],
        "format",
    ));
    cases.push((
        "plain text".into(),
        b"password=hunter2\n".to_vec(),
        "format",
    ));
    cases
}

fn kind(err: &CredentialError) -> &'static str {
    match err {
        CredentialError::Tampered { .. } => "tampered",
        CredentialError::WrongKey { .. } => "wrong key",
        CredentialError::Format { .. } => "format",
        CredentialError::UnsupportedVersion { .. } => "version",
        _ => "other",
    }
}

#[test]
fn every_damaged_file_is_refused_named_and_left_as_it_is() {
    let dir = TempDir::new("refuse");
    let good = saved(dir.path());
    let other_dir = TempDir::new("refuse-other");
    let other = saved(other_dir.path());
    let store = CredentialStore::open_with(dir.path(), &[]).unwrap();
    let path = store.path();
    let secure = dir.path().join("secureData");
    let before = names_in(&secure);

    let cases = damaged(&good, &other);
    assert!(cases.len() > 40, "{} cases", cases.len());
    for (what, content, expected) in cases {
        fs::write(&path, &content).unwrap();

        let err = store.load().unwrap_err();
        assert_eq!(kind(&err), expected, "{what}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()),
            "{what}: the error names the file: {text}"
        );
        assert!(
            text.contains(&format!(
                "sors credentials set-aside --tenant {}",
                dir.path().display()
            )),
            "{what}: the error says what to do: {text}"
        );
        assert_no_secret(&text);
        assert_no_secret(&format!("{err:?}"));
        assert!(!text.contains("hunter2"), "{what}: {text}");

        // A save through the store is refused with the same error; the bytes are unchanged.
        let err = store.save(&sample()).unwrap_err();
        assert_eq!(kind(&err), expected, "{what}: save: {err}");
        assert_eq!(fs::read(&path).unwrap(), content, "{what}: save changed it");

        // So are the CLI's set commands (the same key: secureData/key, no key variables set
        // in tests).
        let err = cli::set_cic(dir.path(), "sors", Secret::new("new-pw")).unwrap_err();
        assert_eq!(kind(&err), expected, "{what}: set-cic: {err}");
        let err = cli::set_salesforce(
            dir.path(),
            "router@acme.example",
            Secret::new("new-pw"),
            Secret::new(""),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(kind(&err), expected, "{what}: set-salesforce: {err}");
        assert_eq!(fs::read(&path).unwrap(), content, "{what}: set changed it");
        let err = cli::show(dir.path()).unwrap_err();
        assert_eq!(kind(&err), expected, "{what}: show: {err}");

        assert_eq!(
            names_in(&secure),
            before,
            "{what}: no file added or removed"
        );
    }
}

#[test]
fn without_the_key_a_save_is_refused_instead_of_sealing_over_the_file_with_a_new_key() {
    let dir = TempDir::new("refuse-nokey");
    let good = saved(dir.path());
    let key = dir.path().join("secureData/key");
    let key_bytes = fs::read(&key).unwrap();
    fs::remove_file(&key).unwrap();

    let store = CredentialStore::open_with(dir.path(), &[]).unwrap();
    let err = store.save(&sample()).unwrap_err();
    assert!(matches!(err, CredentialError::NoKey { .. }), "{err}");
    let err = cli::set_cic(dir.path(), "sors", Secret::new("pw")).unwrap_err();
    assert!(matches!(err, CredentialError::NoKey { .. }), "{err}");
    assert_eq!(fs::read(store.path()).unwrap(), good);
    assert!(!key.exists(), "no new key was made");

    // Restoring the key is all it takes.
    fs::write(&key, &key_bytes).unwrap();
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let store = CredentialStore::open_with(dir.path(), &[]).unwrap();
    assert_eq!(store.load().unwrap(), sample());
}

#[test]
fn set_aside_keeps_the_refused_file_and_frees_the_place_for_new_credentials() {
    let dir = TempDir::new("refuse-aside");
    let good = saved(dir.path());
    let store = CredentialStore::open_with(dir.path(), &[]).unwrap();
    let cut = &good[..good.len() / 2];
    fs::write(store.path(), cut).unwrap();

    let (kept, why) = cli::set_aside(dir.path()).unwrap();
    assert!(matches!(why, CredentialError::Format { .. }), "{why}");
    assert_eq!(fs::read(&kept).unwrap(), cut);
    assert_eq!(kept.parent(), store.path().parent());
    cli::set_cic(dir.path(), "sors", Secret::new("fresh")).unwrap();
    assert_eq!(
        store.load().unwrap().cic.unwrap().password.expose(),
        "fresh"
    );
    assert_eq!(fs::read(&kept).unwrap(), cut, "the kept file is left alone");

    // A file sealed with another key (the key is lost) may be set aside too.
    let other_dir = TempDir::new("refuse-aside-other");
    let other = saved(other_dir.path());
    fs::write(store.path(), &other).unwrap();
    let (kept, why) = cli::set_aside(dir.path()).unwrap();
    assert!(matches!(why, CredentialError::WrongKey { .. }), "{why}");
    assert_eq!(fs::read(kept).unwrap(), other);
}
