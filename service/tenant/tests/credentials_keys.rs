//! Where the credential key comes from: SORS_CREDENTIAL_KEY, SORS_CREDENTIAL_KEY_FILE, the
//! systemd credential, secureData/key, in that order.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::TempDir;
use sors_tenant::credentials::{
    CicCredentials, CredentialError, CredentialStore, Credentials, KeyOrigin, Secret,
};

const CIC_PASSWORD: &str = "cic-Pa55word!";

fn sample() -> Credentials {
    Credentials {
        salesforce: None,
        cic: Some(CicCredentials {
            user: "sors_service".into(),
            password: Secret::new(CIC_PASSWORD),
        }),
    }
}

/// Writes `bytes` to `path` with `mode`.
fn write_key(path: &Path, bytes: &[u8], mode: u32) -> PathBuf {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// A slice of pairs as an environment (a `Source`).
fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_key_file_named_by_the_environment_is_used_and_nothing_is_created_beside_the_file() {
    let tenant = TempDir::new("keys-envfile");
    let keys = TempDir::new("keys-envfile-keys");
    let key = write_key(&keys.path().join("acme.key"), &[3u8; 32], 0o600);
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&key))];
    let store = CredentialStore::open_with(tenant.path(), &env).unwrap();
    assert_eq!(store.key_origin(), &KeyOrigin::EnvFile(key.clone()));
    store.save(&sample()).unwrap();
    assert!(
        !tenant.path().join("secureData/key").exists(),
        "no key file"
    );
    let reopened = CredentialStore::open_with(tenant.path(), &env).unwrap();
    assert_eq!(reopened.load().unwrap(), sample());

    // The same key as base64 text (one line, as `base64` prints it) opens it too, read-only
    // mode 0400 is fine.
    let text = format!("{}\n", B64.encode([3u8; 32]));
    let b64 = write_key(&keys.path().join("acme.b64"), text.as_bytes(), 0o400);
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&b64))];
    let store = CredentialStore::open_with(tenant.path(), &env).unwrap();
    assert_eq!(store.load().unwrap(), sample());
}

#[test]
fn a_named_key_file_that_group_or_others_can_read_is_refused() {
    let tenant = TempDir::new("keys-envfile-perm");
    let keys = TempDir::new("keys-envfile-perm-keys");
    for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
        let key = write_key(&keys.path().join(format!("k{mode:o}")), &[3u8; 32], mode);
        let env = [("SORS_CREDENTIAL_KEY_FILE", s(&key))];
        let err = CredentialStore::open_with(tenant.path(), &env).unwrap_err();
        match &err {
            CredentialError::InsecureKeyFile { path, mode: m } => {
                assert_eq!(path, &key);
                assert_eq!(*m, mode);
            }
            other => panic!("mode {mode:o}: expected InsecureKeyFile, got {other}"),
        }
        let text = err.to_string();
        assert!(text.contains(s(&key)), "{text}");
        assert!(
            text.contains(&format!("chmod 600 {}", key.display())),
            "{text}"
        );
    }
}

#[test]
fn a_named_key_file_that_is_missing_or_malformed_is_an_error_not_a_fallback() {
    let tenant = TempDir::new("keys-envfile-missing");
    // A key in secureData/key must not be used instead: the operator asked for another file.
    CredentialStore::open_with(tenant.path(), &[])
        .unwrap()
        .save(&sample())
        .unwrap();
    let missing = tenant.path().join("no-such.key");
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&missing))];
    let err = CredentialStore::open_with(tenant.path(), &env).unwrap_err();
    assert!(
        matches!(&err, CredentialError::MissingKeyFile { path } if path == &missing),
        "{err}"
    );
    assert!(
        err.to_string().contains("SORS_CREDENTIAL_KEY_FILE"),
        "{err}"
    );

    let short = write_key(&tenant.path().join("short.key"), b"0123456789", 0o600);
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&short))];
    let err = CredentialStore::open_with(tenant.path(), &env).unwrap_err();
    assert!(
        matches!(err, CredentialError::BadKeyFile { len: 10, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("0123456789"), "{err}");
}

/// Four keys, one per source; each source wins over those after it.
#[test]
fn the_sources_are_tried_in_the_documented_order() {
    let tenant = TempDir::new("keys-order");
    let other = TempDir::new("keys-order-other");
    let secure = tenant.path().join("secureData");
    fs::create_dir_all(&secure).unwrap();
    let default_key = write_key(&secure.join("key"), &[4u8; 32], 0o600);
    let named = write_key(&other.path().join("named.key"), &[2u8; 32], 0o600);
    let creds_dir = other.path().join("credentials");
    fs::create_dir_all(&creds_dir).unwrap();
    let systemd = write_key(&creds_dir.join("sors-credential-key"), &[3u8; 32], 0o400);
    let env_key = B64.encode([1u8; 32]);

    let all = [
        ("SORS_CREDENTIAL_KEY", env_key.as_str()),
        ("SORS_CREDENTIAL_KEY_FILE", s(&named)),
        ("CREDENTIALS_DIRECTORY", s(&creds_dir)),
    ];
    let origin = |env: &[(&str, &str)]| {
        CredentialStore::open_with(tenant.path(), &env_of(env))
            .unwrap()
            .key_origin()
            .clone()
    };
    assert_eq!(origin(&all), KeyOrigin::Env);
    assert_eq!(origin(&all[1..]), KeyOrigin::EnvFile(named.clone()));
    assert_eq!(
        origin(&all[2..]),
        KeyOrigin::SystemdCredential(systemd.clone())
    );
    assert_eq!(origin(&[]), KeyOrigin::File(default_key.clone()));

    // Each source's key is the one used: a file saved under one source opens only with it.
    let none: &[(&str, &str)] = &[];
    let sources = [&all[..], &all[1..], &all[2..], none];
    for (n, env) in sources.into_iter().enumerate() {
        let store = CredentialStore::open_with(tenant.path(), &env_of(env)).unwrap();
        // (A file sealed with another key is never overwritten: remove the previous round's.)
        let _ = fs::remove_file(store.path());
        store.save(&sample()).unwrap();
        for (m, other_env) in sources.into_iter().enumerate() {
            let result = CredentialStore::open_with(tenant.path(), &env_of(other_env))
                .unwrap()
                .load();
            if n == m {
                assert_eq!(result.unwrap(), sample());
            } else {
                let err = result.unwrap_err();
                assert!(matches!(err, CredentialError::WrongKey { .. }), "{err}");
            }
        }
    }
}

#[test]
fn the_systemd_credential_is_used_when_present_and_none_means_the_next_source() {
    let tenant = TempDir::new("keys-systemd");
    let run = TempDir::new("keys-systemd-run");
    let creds = run.path().join("sors@acme.service");
    fs::create_dir_all(&creds).unwrap();
    let env = [("CREDENTIALS_DIRECTORY", s(&creds))];

    // No sors-credential-key in the directory (another service's credentials): secureData/key.
    let store = CredentialStore::open_with(tenant.path(), &env).unwrap();
    assert!(
        matches!(store.key_origin(), KeyOrigin::File(_)),
        "{:?}",
        store.key_origin()
    );

    // systemd's own modes apply (0440 with an ACL mask): no mode check on the credential.
    let cred = write_key(&creds.join("sors-credential-key"), &[9u8; 32], 0o440);
    let store = CredentialStore::open_with(tenant.path(), &env).unwrap();
    assert_eq!(
        store.key_origin(),
        &KeyOrigin::SystemdCredential(cred.clone())
    );
    store.save(&sample()).unwrap();
    assert!(
        !tenant.path().join("secureData/key").exists(),
        "no key file"
    );
    assert_eq!(
        CredentialStore::open_with(tenant.path(), &env)
            .unwrap()
            .load()
            .unwrap(),
        sample()
    );
    let shown = store.key_origin().to_string();
    assert!(
        shown.contains("systemd credential sors-credential-key"),
        "{shown}"
    );
    assert!(shown.contains(s(&cred)), "{shown}");

    // The packaged unit's fallback (`SetCredential=sors-credential-key:none`): the next source.
    write_key(&cred, b"none", 0o440);
    let store = CredentialStore::open_with(tenant.path(), &env).unwrap();
    assert!(matches!(store.key_origin(), KeyOrigin::File(_)));
    let err = store.load().unwrap_err();
    assert!(matches!(err, CredentialError::NoKey { .. }), "{err}");

    // Anything else that is not a key is an error, not a fallback.
    write_key(&cred, b"not a key", 0o440);
    let err = CredentialStore::open_with(tenant.path(), &env).unwrap_err();
    assert!(
        matches!(&err, CredentialError::BadKeyFile { path, .. } if path == &cred),
        "{err}"
    );
}

#[test]
fn without_a_key_the_error_lists_every_source_in_order() {
    let tenant = TempDir::new("keys-none");
    CredentialStore::open_with(tenant.path(), &[])
        .unwrap()
        .save(&sample())
        .unwrap();
    fs::remove_file(tenant.path().join("secureData/key")).unwrap();
    let store = CredentialStore::open_with(tenant.path(), &[]).unwrap();
    let err = store.load().unwrap_err();
    let text = err.to_string();
    let order = [
        "SORS_CREDENTIAL_KEY,",
        "SORS_CREDENTIAL_KEY_FILE",
        "systemd credential sors-credential-key",
        "secureData/key",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|word| {
            text.find(word)
                .unwrap_or_else(|| panic!("{word} in {text}"))
        })
        .collect();
    assert!(positions.is_sorted(), "{text}");
    assert!(text.contains(&store.path().display().to_string()), "{text}");
}

#[test]
fn key_origins_say_where_the_key_came_from() {
    let shown = |o: KeyOrigin| o.to_string();
    assert_eq!(
        shown(KeyOrigin::Env),
        "SORS_CREDENTIAL_KEY (environment variable)"
    );
    assert_eq!(
        shown(KeyOrigin::EnvFile("/etc/sors/keys/acme.key".into())),
        "/etc/sors/keys/acme.key (named by SORS_CREDENTIAL_KEY_FILE)"
    );
    assert_eq!(
        shown(KeyOrigin::SystemdCredential(
            "/run/credentials/sors@acme.service/sors-credential-key".into()
        )),
        "systemd credential sors-credential-key (/run/credentials/sors@acme.service/sors-credential-key)"
    );
    assert_eq!(
        shown(KeyOrigin::File("/var/lib/sors/acme/secureData/key".into())),
        "/var/lib/sors/acme/secureData/key (the tenant's key file)"
    );
    assert_eq!(
        KeyOrigin::File("/k".into()).owned_file(),
        Some(Path::new("/k"))
    );
    assert_eq!(
        KeyOrigin::EnvFile("/k".into()).owned_file(),
        Some(Path::new("/k"))
    );
    assert_eq!(KeyOrigin::Env.owned_file(), None);
    assert_eq!(KeyOrigin::SystemdCredential("/k".into()).owned_file(), None);
}
