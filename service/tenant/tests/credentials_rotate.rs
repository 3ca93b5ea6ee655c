//! Key rotation: for each key source, success, refusals, and a failure at every step, after
//! which nothing is lost and the old key still opens the old file.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::TempDir;
use sors_tenant::credentials::{
    CicCredentials, CredentialError, CredentialStore, Credentials, KeyOrigin, RotateOptions,
    RotateStep, SalesforceCredentials, Secret,
};

fn sample() -> Credentials {
    Credentials {
        salesforce: Some(SalesforceCredentials {
            username: "router@acme.example".into(),
            password: Secret::new("sf-Pa55word!"),
            security_token: Secret::new("tok3nXYZ"),
            client_id: None,
            client_secret: None,
        }),
        cic: Some(CicCredentials {
            user: "sors_service".into(),
            password: Secret::new("cic-Pa55word!"),
        }),
    }
}

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn open(dir: &Path, env: &[(&str, &str)]) -> CredentialStore {
    CredentialStore::open_with(dir, &env_of(env)).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn write_key(path: &Path, key: &[u8]) -> PathBuf {
    fs::write(path, key).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    path.to_path_buf()
}

/// A key file the test can hand to `SORS_CREDENTIAL_KEY_FILE`, to try a key.
fn opens_with(dir: &Path, key: &[u8]) -> Result<Credentials, CredentialError> {
    let keys = TempDir::new("rotate-try");
    let path = write_key(&keys.path().join("k"), key);
    let env = [("SORS_CREDENTIAL_KEY_FILE", path.to_str().unwrap())];
    open(dir, &env).load()
}

#[test]
fn rotating_the_tenant_key_file_replaces_it_and_re_encrypts() {
    let dir = TempDir::new("rotate-default");
    open(dir.path(), &[]).save(&sample()).unwrap();
    let secure = dir.path().join("secureData");
    let key_path = secure.join("key");
    let old_key = fs::read(&key_path).unwrap();
    let old_file = fs::read(secure.join("encryptData.json")).unwrap();

    let rotated = open(dir.path(), &[])
        .rotate_key(&RotateOptions::default())
        .unwrap();
    assert_eq!(rotated.origin, KeyOrigin::File(key_path.clone()));
    assert_eq!(rotated.key_written, Some(key_path.clone()));
    assert_eq!(rotated.backup, None, "the old key is gone: no backup kept");
    assert!(rotated.revealed.is_none());

    let new_key = fs::read(&key_path).unwrap();
    assert_eq!(new_key.len(), 32);
    assert_ne!(new_key, old_key);
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&secure.join("encryptData.json")), 0o600);
    assert_ne!(fs::read(secure.join("encryptData.json")).unwrap(), old_file);
    assert_eq!(open(dir.path(), &[]).load().unwrap(), sample());
    let err = opens_with(dir.path(), &old_key).unwrap_err();
    assert!(matches!(err, CredentialError::WrongKey { .. }), "{err}");
    assert_eq!(names_in(&secure), ["encryptData.json", "key"]);
}

#[test]
fn rotating_a_named_key_file_writes_it_in_place_with_its_owner() {
    let dir = TempDir::new("rotate-envfile");
    let keys = TempDir::new("rotate-envfile-keys");
    let key_path = write_key(&keys.path().join("acme.key"), &[1u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY_FILE", key_path.to_str().unwrap())];
    open(dir.path(), &env).save(&sample()).unwrap();
    let file = open(dir.path(), &env).path();
    // Root rotates the files of the service user: they stay the service user's.
    let owned = std::os::unix::fs::chown(&key_path, Some(4242), Some(4243)).is_ok()
        && std::os::unix::fs::chown(&file, Some(4242), Some(4243)).is_ok();

    let rotated = open(dir.path(), &env)
        .rotate_key(&RotateOptions::default())
        .unwrap();
    assert_eq!(rotated.key_written, Some(key_path.clone()));
    assert_ne!(fs::read(&key_path).unwrap(), [1u8; 32]);
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(open(dir.path(), &env).load().unwrap(), sample());
    assert!(!dir.path().join("secureData/key").exists());
    assert_eq!(names_in(keys.path()), ["acme.key"]);
    if owned {
        for path in [&key_path, &file] {
            let meta = fs::metadata(path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{}", path.display());
        }
    }
}

#[test]
fn rotating_an_environment_key_needs_a_destination_and_keeps_the_old_file() {
    let dir = TempDir::new("rotate-env");
    let old_b64 = B64.encode([7u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY", old_b64.as_str())];
    open(dir.path(), &env).save(&sample()).unwrap();
    let file = open(dir.path(), &env).path();
    let old_file = fs::read(&file).unwrap();

    let err = open(dir.path(), &env)
        .rotate_key(&RotateOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, CredentialError::NoKeyDestination { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--new-key-file"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), old_file);
    assert_eq!(names_in(file.parent().unwrap()), ["encryptData.json"]);

    let keys = TempDir::new("rotate-env-keys");
    let new_key_file = keys.path().join("new.key");
    let rotated = open(dir.path(), &env)
        .rotate_key(&RotateOptions {
            new_key_file: Some(new_key_file.clone()),
            ..RotateOptions::default()
        })
        .unwrap();
    assert_eq!(rotated.key_written, None);
    assert_eq!(rotated.new_key_file, Some(new_key_file.clone()));
    assert_eq!(mode(&new_key_file), 0o600);
    let new_key = fs::read(&new_key_file).unwrap();
    assert_eq!(opens_with(dir.path(), &new_key).unwrap(), sample());
    let err = open(dir.path(), &env).load().unwrap_err();
    assert!(matches!(err, CredentialError::WrongKey { .. }), "{err}");

    // The backup is the old file byte for byte, and the old key opens it: the undo.
    let backup = rotated.backup.unwrap();
    assert!(
        backup
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("encryptData.json.bak-")
    );
    assert_eq!(fs::read(&backup).unwrap(), old_file);
    assert_eq!(mode(&backup), 0o600);
    fs::rename(&backup, &file).unwrap();
    assert_eq!(open(dir.path(), &env).load().unwrap(), sample());
}

#[test]
fn reveal_returns_the_new_key_only_when_asked() {
    let dir = TempDir::new("rotate-reveal");
    let old_b64 = B64.encode([7u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY", old_b64.as_str())];
    open(dir.path(), &env).save(&sample()).unwrap();
    let rotated = open(dir.path(), &env)
        .rotate_key(&RotateOptions {
            reveal: true,
            ..RotateOptions::default()
        })
        .unwrap();
    let key = rotated.revealed.as_ref().unwrap();
    assert!(format!("{rotated:?}").contains("***"), "redacted in Debug");
    assert!(!format!("{rotated:?}").contains(key.expose()));
    let env = [("SORS_CREDENTIAL_KEY", key.expose())];
    assert_eq!(open(dir.path(), &env).load().unwrap(), sample());
}

#[test]
fn rotating_the_systemd_credential_never_writes_it() {
    let dir = TempDir::new("rotate-systemd");
    let run = TempDir::new("rotate-systemd-run");
    let cred = write_key(&run.path().join("sors-credential-key"), &[9u8; 32]);
    let env = [("CREDENTIALS_DIRECTORY", run.path().to_str().unwrap())];
    open(dir.path(), &env).save(&sample()).unwrap();
    let err = open(dir.path(), &env)
        .rotate_key(&RotateOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, CredentialError::NoKeyDestination { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("systemd credential"), "{err}");

    let new_key_file = run.path().join("new.key");
    let rotated = open(dir.path(), &env)
        .rotate_key(&RotateOptions {
            new_key_file: Some(new_key_file.clone()),
            ..RotateOptions::default()
        })
        .unwrap();
    assert!(matches!(rotated.origin, KeyOrigin::SystemdCredential(_)));
    assert_eq!(fs::read(&cred).unwrap(), [9u8; 32], "untouched");
    assert!(rotated.backup.is_some());
    let new_key = fs::read(&new_key_file).unwrap();
    assert_eq!(opens_with(dir.path(), &new_key).unwrap(), sample());
}

#[test]
fn nothing_is_rotated_without_a_good_file_or_over_an_existing_key_file() {
    let dir = TempDir::new("rotate-refuse");
    let err = open(dir.path(), &[])
        .rotate_key(&RotateOptions::default())
        .unwrap_err();
    assert!(matches!(err, CredentialError::NoFile { .. }), "{err}");
    assert!(!dir.path().join("secureData").exists(), "nothing created");

    open(dir.path(), &[]).save(&sample()).unwrap();
    let secure = dir.path().join("secureData");
    let file = secure.join("encryptData.json");
    let key = fs::read(secure.join("key")).unwrap();

    // A damaged file: refused, untouched.
    let good = fs::read(&file).unwrap();
    fs::write(&file, &good[..good.len() / 2]).unwrap();
    let err = open(dir.path(), &[])
        .rotate_key(&RotateOptions::default())
        .unwrap_err();
    assert!(matches!(err, CredentialError::Format { .. }), "{err}");
    assert_eq!(fs::read(&file).unwrap(), &good[..good.len() / 2]);
    assert_eq!(fs::read(secure.join("key")).unwrap(), key);
    fs::write(&file, &good).unwrap();

    // An existing --new-key-file is not overwritten, and nothing else happens.
    let existing = write_key(&dir.path().join("existing.key"), b"precious");
    let err = open(dir.path(), &[])
        .rotate_key(&RotateOptions {
            new_key_file: Some(existing.clone()),
            ..RotateOptions::default()
        })
        .unwrap_err();
    assert!(matches!(err, CredentialError::Exists { .. }), "{err}");
    assert_eq!(fs::read(&existing).unwrap(), b"precious");
    assert_eq!(fs::read(&file).unwrap(), good);
    assert_eq!(fs::read(secure.join("key")).unwrap(), key);
}

/// The state of a tenant before a rotation, to compare after a failed one.
struct Before {
    file: Vec<u8>,
    key: Option<Vec<u8>>,
    names: Vec<String>,
}

fn snapshot(dir: &Path, key_path: Option<&Path>) -> Before {
    Before {
        file: fs::read(dir.join("secureData/encryptData.json")).unwrap(),
        key: key_path.map(|k| fs::read(k).unwrap()),
        names: names_in(&dir.join("secureData")),
    }
}

fn assert_unchanged(dir: &Path, key_path: Option<&Path>, before: &Before, what: &str) {
    assert_eq!(
        fs::read(dir.join("secureData/encryptData.json")).unwrap(),
        before.file,
        "{what}: the credential file"
    );
    assert_eq!(
        key_path.map(|k| fs::read(k).unwrap()),
        before.key,
        "{what}: the key"
    );
    assert_eq!(
        names_in(&dir.join("secureData")),
        before.names,
        "{what}: no file left behind"
    );
}

#[test]
fn a_failure_at_any_step_loses_nothing_and_the_old_key_still_opens_the_file() {
    for step in [
        RotateStep::KeyStaged,
        RotateStep::BackupWritten,
        RotateStep::CredentialsReplaced,
    ] {
        // The tenant's key file.
        let dir = TempDir::new("rotate-fail-default");
        open(dir.path(), &[]).save(&sample()).unwrap();
        let key_path = dir.path().join("secureData/key");
        let before = snapshot(dir.path(), Some(&key_path));
        let copy = dir.path().join("copy.key");
        let err = open(dir.path(), &[])
            .rotate_key(&RotateOptions {
                new_key_file: Some(copy.clone()),
                fail_after: Some(step),
                ..RotateOptions::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("injected"), "{step:?}: {err}");
        assert_unchanged(dir.path(), Some(&key_path), &before, &format!("{step:?}"));
        assert!(!copy.exists(), "{step:?}: the unused new key is removed");
        assert_eq!(open(dir.path(), &[]).load().unwrap(), sample());

        // A named key file elsewhere.
        let dir = TempDir::new("rotate-fail-envfile");
        let keys = TempDir::new("rotate-fail-envfile-keys");
        let key_path = write_key(&keys.path().join("acme.key"), &[1u8; 32]);
        let env = [("SORS_CREDENTIAL_KEY_FILE", key_path.to_str().unwrap())];
        open(dir.path(), &env).save(&sample()).unwrap();
        let before = snapshot(dir.path(), Some(&key_path));
        open(dir.path(), &env)
            .rotate_key(&RotateOptions {
                fail_after: Some(step),
                ..RotateOptions::default()
            })
            .unwrap_err();
        assert_unchanged(dir.path(), Some(&key_path), &before, &format!("{step:?}"));
        assert_eq!(names_in(keys.path()), ["acme.key"], "{step:?}");
        assert_eq!(open(dir.path(), &env).load().unwrap(), sample());

        // The environment.
        let dir = TempDir::new("rotate-fail-env");
        let old_b64 = B64.encode([7u8; 32]);
        let env = [("SORS_CREDENTIAL_KEY", old_b64.as_str())];
        open(dir.path(), &env).save(&sample()).unwrap();
        let before = snapshot(dir.path(), None);
        let new_key_file = dir.path().join("new.key");
        open(dir.path(), &env)
            .rotate_key(&RotateOptions {
                new_key_file: Some(new_key_file.clone()),
                fail_after: Some(step),
                ..RotateOptions::default()
            })
            .unwrap_err();
        assert_unchanged(dir.path(), None, &before, &format!("{step:?}"));
        assert!(!new_key_file.exists(), "{step:?}");
        assert_eq!(open(dir.path(), &env).load().unwrap(), sample());
    }
}

#[test]
fn a_real_failure_to_stage_the_key_changes_nothing() {
    let dir = TempDir::new("rotate-blocked");
    open(dir.path(), &[]).save(&sample()).unwrap();
    let key_path = dir.path().join("secureData/key");
    // Something that is not a file where the new key is staged.
    fs::create_dir(dir.path().join("secureData/key.new")).unwrap();
    let before = snapshot(dir.path(), Some(&key_path));
    let err = open(dir.path(), &[])
        .rotate_key(&RotateOptions::default())
        .unwrap_err();
    assert!(matches!(err, CredentialError::Io { .. }), "{err}");
    assert!(err.to_string().contains("key.new"), "{err}");
    assert_unchanged(dir.path(), Some(&key_path), &before, "blocked");
    assert_eq!(open(dir.path(), &[]).load().unwrap(), sample());
}

#[test]
fn a_stale_staged_key_from_an_earlier_attempt_is_replaced() {
    let dir = TempDir::new("rotate-stale");
    open(dir.path(), &[]).save(&sample()).unwrap();
    // A rotation that stopped before the credential file was replaced left its new key.
    write_key(&dir.path().join("secureData/key.new"), &[3u8; 32]);
    assert_eq!(open(dir.path(), &[]).load().unwrap(), sample());
    open(dir.path(), &[])
        .rotate_key(&RotateOptions::default())
        .unwrap();
    assert_eq!(open(dir.path(), &[]).load().unwrap(), sample());
    assert_eq!(
        names_in(&dir.path().join("secureData")),
        ["encryptData.json", "key"]
    );
}

#[test]
fn a_crash_between_the_renames_is_named_with_the_command_that_finishes_it() {
    let dir = TempDir::new("rotate-crash");
    open(dir.path(), &[]).save(&sample()).unwrap();
    let secure = dir.path().join("secureData");
    // The state a crash after the credential file's rename leaves: the file sealed with the key
    // in key.new, the old key still in key.
    fs::rename(secure.join("key"), secure.join("key.new")).unwrap();
    write_key(&secure.join("key"), &[4u8; 32]);
    let before = snapshot(dir.path(), Some(&secure.join("key")));

    let err = open(dir.path(), &[]).load().unwrap_err();
    match &err {
        CredentialError::InterruptedRotation {
            pending, key_path, ..
        } => {
            assert_eq!(pending, &secure.join("key.new"));
            assert_eq!(key_path, &secure.join("key"));
        }
        other => panic!("expected InterruptedRotation, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "mv {} {}",
            secure.join("key.new").display(),
            secure.join("key").display()
        )),
        "{text}"
    );
    // Nothing overwrites it meanwhile.
    open(dir.path(), &[]).save(&sample()).unwrap_err();
    assert_unchanged(dir.path(), Some(&secure.join("key")), &before, "crash");

    fs::rename(secure.join("key.new"), secure.join("key")).unwrap();
    assert_eq!(open(dir.path(), &[]).load().unwrap(), sample());
}
