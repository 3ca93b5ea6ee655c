//! Saving the pages' settings into `config.toml`, keeping the operator's comments and layout:
//! only the keys that change are touched (with `toml_edit`), the file is replaced atomically,
//! and the result must load with [`Config::load`], else the previous file is put back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use sors_tenant::Config;
use sors_tenant::config::CONFIG_FILE;
use toml_edit::{DocumentMut, Item, Table, Value};

/// Why the settings could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// One setting to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    Text(&'static str, &'static str, String),
    Bool(&'static str, &'static str, bool),
    List(&'static str, &'static str, Vec<String>),
}

/// Applies `settings` to `<dir>/config.toml` and loads the result. On a load error the file
/// is restored as it was and the error is returned.
pub fn save(dir: &Path, settings: &[Setting]) -> Result<Config, SaveError> {
    let path = dir.join(CONFIG_FILE);
    let old = match fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(SaveError::Io {
                action: "read",
                path,
                source,
            });
        }
    };
    let text =
        edit(old.as_deref().unwrap_or(""), settings).map_err(|message| SaveError::Syntax {
            path: path.clone(),
            message,
        })?;
    write_atomic(&path, text.as_bytes())?;
    match Config::load(dir) {
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            let restored = match &old {
                Some(t) => write_atomic(&path, t.as_bytes()),
                None => fs::remove_file(&path).map_err(|source| SaveError::Io {
                    action: "remove",
                    path: path.clone(),
                    source,
                }),
            };
            restored?;
            Err(SaveError::Invalid(e.to_string()))
        }
    }
}

/// The text of `old` with `settings` applied (untouched keys, comments and order kept).
pub fn edit(old: &str, settings: &[Setting]) -> Result<String, String> {
    let mut doc: DocumentMut = old
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().trim_end().to_owned())?;
    for s in settings {
        let (section, key, value) = match s {
            Setting::Text(sec, key, v) => (*sec, *key, Value::from(v.as_str())),
            Setting::Bool(sec, key, v) => (*sec, *key, Value::from(*v)),
            Setting::List(sec, key, v) => (
                *sec,
                *key,
                Value::Array(v.iter().map(String::as_str).collect()),
            ),
        };
        set(&mut doc, section, key, value)?;
    }
    Ok(doc.to_string())
}

fn set(doc: &mut DocumentMut, section: &str, key: &str, mut value: Value) -> Result<(), String> {
    let entry = doc
        .as_table_mut()
        .entry(section)
        .or_insert_with(|| Item::Table(Table::new()));
    let Some(table) = entry.as_table_like_mut() else {
        return Err(format!("`{section}` is a value, not a section"));
    };
    match table.get_mut(key) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                // Keep the comment after the value, and the spacing around it.
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
    Ok(())
}

/// Puts `text` back as the whole file `path` (atomically).
pub fn save_text(path: &Path, text: &str) -> Result<(), SaveError> {
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same directory (mode 0644).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let io = |action, source| SaveError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{CONFIG_FILE}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_comments_order_and_other_keys() {
        let old = r#"# Acme's tenant. Ask Pat before changing.
[tenant]
name = "acme"

[cic]
# primary first
servers = ["old1"] # the pair
request_timeout_secs = 10

[routing]
auto_disconnect_on_reply = true   # agents asked for it
"#;
        let new = edit(
            old,
            &[
                Setting::List("cic", "servers", vec!["cic1".into(), "cic2:8019".into()]),
                Setting::Bool("routing", "auto_disconnect_on_reply", false),
                Setting::Bool("routing", "reroute_lost_on_switchover", true),
                Setting::Text("http", "listen", "127.0.0.1:3100".into()),
            ],
        )
        .unwrap();
        assert!(
            new.starts_with(
                "# Acme's tenant. Ask Pat before changing.\n[tenant]\nname = \"acme\"\n"
            ),
            "{new}"
        );
        assert!(new.contains("# primary first\nservers = [\"cic1\", \"cic2:8019\"] # the pair\nrequest_timeout_secs = 10\n"), "{new}");
        assert!(
            new.contains("auto_disconnect_on_reply = false   # agents asked for it\n"),
            "{new}"
        );
        assert!(new.contains("reroute_lost_on_switchover = true"), "{new}");
        assert!(new.contains("[http]\nlisten = \"127.0.0.1:3100\""), "{new}");
        let parsed: DocumentMut = new.parse().unwrap();
        assert_eq!(parsed["cic"]["request_timeout_secs"].as_integer(), Some(10));
    }

    #[test]
    fn an_empty_file_gets_sections() {
        let new = edit(
            "",
            &[Setting::Text(
                "salesforce",
                "login_url",
                "https://test.salesforce.com".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            new.trim(),
            "[salesforce]\nlogin_url = \"https://test.salesforce.com\""
        );
    }

    #[test]
    fn a_save_that_does_not_load_is_undone() {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("sors-admin-settings-{n:016x}"));
        fs::create_dir_all(&dir).unwrap();
        let before = "# keep me\n[tenant]\nname = \"acme\"\n";
        fs::write(dir.join(CONFIG_FILE), before).unwrap();
        let err = save(
            &dir,
            &[Setting::Text("http", "listen", "not an address".into())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("http.listen"), "{err}");
        assert_eq!(fs::read_to_string(dir.join(CONFIG_FILE)).unwrap(), before);
        let cfg = save(
            &dir,
            &[Setting::Bool("routing", "auto_disconnect_on_reply", false)],
        )
        .unwrap();
        assert!(!cfg.routing.auto_disconnect_on_reply);
        assert!(
            fs::read_to_string(dir.join(CONFIG_FILE))
                .unwrap()
                .starts_with("# keep me\n")
        );
        let _ = fs::remove_dir_all(dir);
    }
}
