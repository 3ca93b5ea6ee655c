//! The `sors` binary as an operator runs it: credentials (key sources, set-aside, rotate-key,
//! never a key on the console without --print) and the man page against `--help`.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

const CIC_PASSWORD: &str = "cic-Pa55word!";

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sors-cli-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `sors ARGS` with the key variables of this process removed and `env` set.
fn sors(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sors"));
    cmd.args(args)
        .env_remove("SORS_CREDENTIAL_KEY")
        .env_remove("SORS_CREDENTIAL_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> String {
    let out = sors(args, env, stdin);
    assert!(out.status.success(), "sors {args:?} failed: {}", text(&out));
    text(&out)
}

fn failed(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = sors(args, env, None);
    assert!(
        !out.status.success(),
        "sors {args:?} succeeded: {}",
        text(&out)
    );
    text(&out)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tenant with CIC credentials saved under `env`'s key.
fn tenant_with_credentials(label: &str, env: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(label);
    ok(
        &[
            "credentials",
            "set-cic",
            "--tenant",
            s(dir.path()),
            "--user",
            "sors",
            "--password-stdin",
        ],
        env,
        Some(&format!("{CIC_PASSWORD}\n")),
    );
    dir
}

fn credential_file(dir: &Path) -> PathBuf {
    dir.join("secureData/encryptData.json")
}

/// Every form the key could take on a console.
fn forms(key: &[u8]) -> Vec<String> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        B64.encode(key),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(key),
        base64::engine::general_purpose::URL_SAFE.encode(key),
        hex,
        format!("{key:?}"),
    ]
}

fn assert_key_not_in(key: &[u8], output: &str) {
    for form in forms(key) {
        assert!(!output.contains(&form), "the key leaked: {output}");
    }
    assert!(
        !output.contains(CIC_PASSWORD),
        "the password leaked: {output}"
    );
}

fn key_file(path: &Path, key: &[u8]) -> PathBuf {
    fs::write(path, key).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    path.to_path_buf()
}

#[test]
fn show_says_where_the_key_came_from() {
    let dir = tenant_with_credentials("show-default", &[]);
    let shown = ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &[],
        None,
    );
    assert!(
        shown.contains("secureData/key (the tenant's key file)"),
        "{shown}"
    );

    let env_key = B64.encode([5u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY", env_key.as_str())];
    let dir = tenant_with_credentials("show-env", &env);
    let shown = ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &env,
        None,
    );
    assert!(
        shown.contains("key: SORS_CREDENTIAL_KEY (environment variable)"),
        "{shown}"
    );
    assert_key_not_in(&[5u8; 32], &shown);

    let keys = TempDir::new("show-keys");
    let named = key_file(&keys.path().join("acme.key"), &[6u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&named))];
    let dir = tenant_with_credentials("show-envfile", &env);
    let shown = ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &env,
        None,
    );
    assert!(
        shown.contains(&format!(
            "key: {} (named by SORS_CREDENTIAL_KEY_FILE)",
            named.display()
        )),
        "{shown}"
    );

    let creds = keys.path().join("credentials");
    fs::create_dir_all(&creds).unwrap();
    key_file(&creds.join("sors-credential-key"), &[7u8; 32]);
    let env = [("CREDENTIALS_DIRECTORY", s(&creds))];
    let dir = tenant_with_credentials("show-systemd", &env);
    let shown = ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &env,
        None,
    );
    assert!(
        shown.contains("key: systemd credential sors-credential-key ("),
        "{shown}"
    );

    // A group-readable named key file: a clear refusal naming the file.
    fs::set_permissions(&named, fs::Permissions::from_mode(0o640)).unwrap();
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&named))];
    let err = failed(&["credentials", "show", "--tenant", s(dir.path())], &env);
    assert!(
        err.contains(&format!("chmod 600 {}", named.display())),
        "{err}"
    );
}

#[test]
fn rotate_key_replaces_a_key_file_and_prints_no_key() {
    let dir = tenant_with_credentials("rotate-file", &[]);
    let key_path = dir.path().join("secureData/key");
    let old_key = fs::read(&key_path).unwrap();
    let out = ok(
        &["credentials", "rotate-key", "--tenant", s(dir.path())],
        &[],
        None,
    );
    let new_key = fs::read(&key_path).unwrap();
    assert_ne!(old_key, new_key);
    assert_key_not_in(&new_key, &out);
    assert_key_not_in(&old_key, &out);
    assert!(out.contains("replaced the old one in"), "{out}");
    assert!(out.contains("systemctl restart sors@"), "{out}");
    let shown = ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &[],
        None,
    );
    assert!(shown.contains("cic: user \"sors\""), "{shown}");
    let names: Vec<String> = fs::read_dir(dir.path().join("secureData"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only the file and the key: {names:?}");
}

#[test]
fn rotate_key_with_a_named_key_file_writes_it_in_place() {
    let keys = TempDir::new("rotate-envfile-keys");
    let named = key_file(&keys.path().join("acme.key"), &[6u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY_FILE", s(&named))];
    let dir = tenant_with_credentials("rotate-envfile", &env);
    let out = ok(
        &["credentials", "rotate-key", "--tenant", s(dir.path())],
        &env,
        None,
    );
    let new_key = fs::read(&named).unwrap();
    assert_ne!(new_key, [6u8; 32]);
    assert_eq!(
        fs::metadata(&named).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_key_not_in(&new_key, &out);
    ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &env,
        None,
    );
    assert!(!dir.path().join("secureData/key").exists());
}

#[test]
fn rotate_key_with_an_environment_key_needs_a_destination_and_never_prints_unasked() {
    let env_key = B64.encode([5u8; 32]);
    let env = [("SORS_CREDENTIAL_KEY", env_key.as_str())];
    let dir = tenant_with_credentials("rotate-env", &env);
    let file = credential_file(dir.path());
    let before = fs::read(&file).unwrap();

    // No destination: refused, nothing changed.
    let err = failed(
        &["credentials", "rotate-key", "--tenant", s(dir.path())],
        &env,
    );
    assert!(err.contains("--new-key-file"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), before);

    // --new-key-file: written 0600, not printed; the old file is kept until the key is installed.
    let keys = TempDir::new("rotate-env-keys");
    let new_file = keys.path().join("new.key");
    let out = ok(
        &[
            "credentials",
            "rotate-key",
            "--tenant",
            s(dir.path()),
            "--new-key-file",
            s(&new_file),
        ],
        &env,
        None,
    );
    let new_key = fs::read(&new_file).unwrap();
    assert_eq!(new_key.len(), 32);
    assert_eq!(
        fs::metadata(&new_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_key_not_in(&new_key, &out);
    assert!(out.contains("SORS_CREDENTIAL_KEY"), "{out}");
    assert!(out.contains("encryptData.json.bak-"), "{out}");
    // The old key no longer opens the file, the new one does.
    let err = failed(&["credentials", "show", "--tenant", s(dir.path())], &env);
    assert!(err.contains("the key does not open"), "{err}");
    let new_env = [("SORS_CREDENTIAL_KEY_FILE", s(&new_file))];
    ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &new_env,
        None,
    );

    // An existing --new-key-file is never overwritten.
    let err = failed(
        &[
            "credentials",
            "rotate-key",
            "--tenant",
            s(dir.path()),
            "--new-key-file",
            s(&new_file),
        ],
        &new_env,
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&new_file).unwrap(), new_key);

    // --print: the key is printed, and it is the one that opens the file.
    let new_b64 = B64.encode(&new_key);
    let env = [("SORS_CREDENTIAL_KEY", new_b64.as_str())];
    let out = ok(
        &[
            "credentials",
            "rotate-key",
            "--tenant",
            s(dir.path()),
            "--print",
        ],
        &env,
        None,
    );
    let printed = out
        .lines()
        .find_map(|l| l.strip_prefix("New key (base64): "))
        .unwrap_or_else(|| panic!("no key printed: {out}"));
    let env = [("SORS_CREDENTIAL_KEY", printed)];
    ok(
        &["credentials", "show", "--tenant", s(dir.path())],
        &env,
        None,
    );
}

#[test]
fn rotate_key_with_the_systemd_credential_says_where_to_install_the_new_key() {
    let run = TempDir::new("rotate-systemd-run");
    key_file(&run.path().join("sors-credential-key"), &[8u8; 32]);
    let env = [("CREDENTIALS_DIRECTORY", s(run.path()))];
    let dir = tenant_with_credentials("rotate-systemd", &env);
    let new_file = run.path().join("new.key");
    let out = ok(
        &[
            "credentials",
            "rotate-key",
            "--tenant",
            s(dir.path()),
            "--new-key-file",
            s(&new_file),
        ],
        &env,
        None,
    );
    assert!(out.contains("LoadCredential=sors-credential-key"), "{out}");
    assert!(out.contains("/etc/sors/keys/"), "{out}");
    assert_key_not_in(&fs::read(&new_file).unwrap(), &out);
    assert_eq!(
        fs::read(run.path().join("sors-credential-key")).unwrap(),
        [8u8; 32],
        "the systemd credential is not ours to write"
    );
}

#[test]
fn a_refused_file_is_not_overwritten_until_it_is_set_aside() {
    let dir = tenant_with_credentials("refused", &[]);
    let file = credential_file(dir.path());
    let good = fs::read(&file).unwrap();
    let cut = good[..good.len() / 2].to_vec();
    fs::write(&file, &cut).unwrap();

    let set_cic = [
        "credentials",
        "set-cic",
        "--tenant",
        s(dir.path()),
        "--user",
        "sors",
        "--password-env",
        "NEW_PW",
    ];
    let env = [("NEW_PW", "new-password")];
    let err = failed(&set_cic, &env);
    assert!(err.contains(s(&file)), "{err}");
    assert!(err.contains("sors credentials set-aside --tenant"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), cut);
    let err = failed(
        &["credentials", "rotate-key", "--tenant", s(dir.path())],
        &[],
    );
    assert!(err.contains("not a readable sors credential file"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), cut);

    let out = ok(
        &["credentials", "set-aside", "--tenant", s(dir.path())],
        &[],
        None,
    );
    assert!(out.contains("encryptData.json.refused-"), "{out}");
    ok(&set_cic, &env, None);
    let err = failed(
        &["credentials", "set-aside", "--tenant", s(dir.path())],
        &[],
    );
    assert!(err.contains("not moved aside"), "{err}");
}

/// The subcommands and `--long` options a `--help` text lists.
fn help_items(help: &str) -> (Vec<String>, Vec<String>) {
    let mut commands = Vec::new();
    let mut options = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_commands = false;
        }
        if in_commands && let Some(name) = line.split_whitespace().next() {
            commands.push(name.to_owned());
        }
        for word in line.split_whitespace() {
            if let Some(long) = word.strip_prefix("--") {
                let long: String = long
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if !long.is_empty() {
                    options.push(long);
                }
            }
        }
    }
    (commands, options)
}

fn roff(text: &str) -> String {
    text.replace('-', "\\-")
}

#[test]
fn the_man_pages_match_help() {
    let version = ok(&["--version"], &[], None);
    let version = version.trim().strip_prefix("sors ").unwrap().to_owned();
    let man = TempDir::new("man");
    ok(&["man", "--dir", s(man.path())], &[], None);
    let printed = ok(&["man"], &[], None);
    assert_eq!(
        printed,
        fs::read_to_string(man.path().join("sors.1")).unwrap(),
        "`sors man` prints the page `sors man --dir` writes"
    );

    // Every page, against the --help of its command.
    let mut pages = 0;
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = ok(&args, &[], None);
        let page_name = std::iter::once("sors".to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let page = fs::read_to_string(man.path().join(format!("{page_name}.1")))
            .unwrap_or_else(|e| panic!("no page {page_name}.1: {e}"));
        pages += 1;
        assert!(
            page.contains(&format!(".TH {page_name} 1  \"sors {version}\"")),
            "{page_name}: title and version: {page}"
        );
        let (commands, options) = help_items(&help);
        for option in options {
            assert!(
                page.contains(&roff(&format!("--{option}"))),
                "{page_name}.1 lacks --{option} of its --help"
            );
        }
        for command in commands.into_iter().filter(|c| c != "help") {
            assert!(
                page.contains(&roff(&format!("{page_name}-{command}(1)"))),
                "{page_name}.1 lacks {command}"
            );
            let mut sub = path.clone();
            sub.push(command);
            queue.push(sub);
        }
        // The description is the long help's first paragraph.
        let first = help.lines().next().unwrap();
        assert!(
            page.contains(&roff(first)),
            "{page_name}.1 lacks the help's first line {first:?}"
        );
    }
    let written = fs::read_dir(man.path()).unwrap().count();
    assert_eq!(pages, written, "a page per command, no other pages");
    assert!(pages >= 9, "{pages} pages");
    // `man` itself is hidden: neither in --help nor in a page.
    assert!(!ok(&["--help"], &[], None).contains("  man "));
    assert!(!printed.contains("sors\\-man(1)"));
}
