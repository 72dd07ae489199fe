//! A file's content from a vault secret's data, as the agent writes it: a template of the
//! operator's language ([`crate::render::render_template`]) or a [`Format`]. Pure, so the
//! operator (or anything else) can make the same bytes.
//!
//! - [`Format::Json`]: the whole data as one compact JSON object.
//! - [`Format::Env`]: one `KEY=value` line per top-level field, sorted by key; a value is
//!   its text (a string) or compact JSON (anything else), single-quoted when a POSIX shell
//!   would need it (`'` written as `'\''`), so `. file` and `set -a; . file` work. Keys
//!   must be environment variable names (`[A-Za-z_][A-Za-z0-9_]*`).
//! - [`Format::Yaml`]: one `key: value` line per top-level field, sorted by key; values in
//!   JSON syntax (double-quoted strings, flow collections), which is YAML 1.2 and is never
//!   mistaken for a YAML 1.1 boolean such as `yes`.
//! - [`Format::Raw`]: one field's value as is (a string's text, anything else as JSON).
//!
//! Errors name the file and fields or keys, never values.

use serde_json::{Map, Value};

use crate::agent::{Content, Format};
use crate::render;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("file {file:?}: {source}")]
    Template {
        file: String,
        #[source]
        source: render::Error,
    },
    #[error("file {file:?} (raw:{field}): the vault secret has no field {field:?}")]
    MissingField { file: String, field: String },
    #[error(
        "file {file:?} (env): field {key:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
    )]
    EnvKey { file: String, key: String },
}

/// The bytes of file `file` made from `data` as `content` says.
pub fn render_content(
    file: &str,
    content: &Content,
    data: &Map<String, Value>,
) -> Result<Vec<u8>, Error> {
    match content {
        Content::Template(template) => {
            render::render_template(file, template, data).map_err(|source| Error::Template {
                file: file.to_owned(),
                source,
            })
        }
        Content::Format(format) => render_format(file, format, data),
    }
}

fn render_format(file: &str, format: &Format, data: &Map<String, Value>) -> Result<Vec<u8>, Error> {
    match format {
        // A map of JSON values always serializes.
        Format::Json => Ok(serde_json::to_vec(data).unwrap_or_default()),
        Format::Env => env(file, data),
        Format::Yaml => Ok(yaml(data)),
        Format::Raw(field) => data
            .get(field)
            .map(value_bytes)
            .ok_or_else(|| Error::MissingField {
                file: file.to_owned(),
                field: field.clone(),
            }),
    }
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

fn sorted(data: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut fields: Vec<_> = data.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields
}

fn env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Characters a shell word may hold unquoted.
fn shell_plain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_-./:@%+,=".contains(&c)
}

/// The `KEY=value` pairs of [`Format::Env`], sorted by key, each value as its text
/// (unquoted): the lines of the `env` file, and the variables `scaivault-agent exec`
/// gives its child for such a file. The caller owns (and should zeroize) the values.
pub fn env_pairs<'a>(
    file: &str,
    data: &'a Map<String, Value>,
) -> Result<Vec<(&'a str, Vec<u8>)>, Error> {
    sorted(data)
        .into_iter()
        .map(|(key, value)| {
            if env_name(key) {
                Ok((key.as_str(), value_bytes(value)))
            } else {
                Err(Error::EnvKey {
                    file: file.to_owned(),
                    key: key.clone(),
                })
            }
        })
        .collect()
}

fn env(file: &str, data: &Map<String, Value>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (key, bytes) in env_pairs(file, data)? {
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        if !bytes.is_empty() && bytes.iter().copied().all(shell_plain) {
            out.extend_from_slice(&bytes);
        } else {
            out.push(b'\'');
            for &b in &bytes {
                if b == b'\'' {
                    out.extend_from_slice(b"'\\''");
                } else {
                    out.push(b);
                }
            }
            out.push(b'\'');
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// A key YAML reads as the same string without quotes.
fn yaml_plain_key(key: &str) -> bool {
    const WORDS: [&str; 11] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", "",
    ];
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !WORDS.contains(&key.to_ascii_lowercase().as_str())
}

fn yaml(data: &Map<String, Value>) -> Vec<u8> {
    if data.is_empty() {
        return b"{}\n".to_vec();
    }
    let mut out = Vec::new();
    for (key, value) in sorted(data) {
        if yaml_plain_key(key) {
            out.extend_from_slice(key.as_bytes());
        } else {
            out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn text(file: &str, content: Content, d: &Map<String, Value>) -> String {
        String::from_utf8(render_content(file, &content, d).unwrap()).unwrap()
    }

    #[test]
    fn formats_render() {
        let d =
            data(json!({"user": "app", "password": "it's s3cr3t", "port": 5432, "tags": ["a"]}));
        let cases = [
            (
                Content::Format(Format::Json),
                r#"{"password":"it's s3cr3t","port":5432,"tags":["a"],"user":"app"}"#,
            ),
            (
                Content::Format(Format::Env),
                "password='it'\\''s s3cr3t'\nport=5432\ntags='[\"a\"]'\nuser=app\n",
            ),
            (
                Content::Format(Format::Yaml),
                "password: \"it's s3cr3t\"\nport: 5432\ntags: [\"a\"]\nuser: \"app\"\n",
            ),
            (
                Content::Format(Format::Raw("password".into())),
                "it's s3cr3t",
            ),
            (Content::Format(Format::Raw("port".into())), "5432"),
            (
                Content::Template("{{ .user }}:{{ .password | base64 }}".into()),
                "app:aXQncyBzM2NyM3Q=",
            ),
        ];
        for (content, want) in cases {
            assert_eq!(text("f", content.clone(), &d), want, "{content:?}");
        }
    }

    #[test]
    fn edge_cases() {
        let d = data(json!({"empty": "", "multi": "a\nb", "yes": "no", "a b": 1}));
        assert_eq!(
            text("f", Content::Format(Format::Yaml), &d),
            "\"a b\": 1\nempty: \"\"\nmulti: \"a\\nb\"\n\"yes\": \"no\"\n"
        );
        assert_eq!(
            text("f", Content::Format(Format::Yaml), &Map::new()),
            "{}\n"
        );
        let d = data(json!({"EMPTY": "", "MULTI": "a\nb"}));
        assert_eq!(
            text("f", Content::Format(Format::Env), &d),
            "EMPTY=''\nMULTI='a\nb'\n"
        );
    }

    #[test]
    fn env_pairs_are_the_unquoted_values_of_the_env_file() {
        let d = data(json!({"B": "it's", "A": 5, "C": {"x": 1}}));
        let pairs = env_pairs("f", &d).unwrap();
        assert_eq!(
            pairs,
            [
                ("A", b"5".to_vec()),
                ("B", b"it's".to_vec()),
                ("C", br#"{"x":1}"#.to_vec())
            ]
        );
        let err = env_pairs("f", &data(json!({"a-b": "v"}))).unwrap_err();
        assert_eq!(
            err,
            Error::EnvKey {
                file: "f".into(),
                key: "a-b".into()
            }
        );
    }

    #[test]
    fn errors_name_files_and_fields_never_values() {
        let d = data(json!({"password": "s3cr3t", "bad-key": "s3cr3t"}));
        let cases = [
            (
                Content::Format(Format::Raw("nope".into())),
                Error::MissingField {
                    file: "f".into(),
                    field: "nope".into(),
                },
            ),
            (
                Content::Format(Format::Env),
                Error::EnvKey {
                    file: "f".into(),
                    key: "bad-key".into(),
                },
            ),
            (
                Content::Template("{{ .missing }}".into()),
                Error::Template {
                    file: "f".into(),
                    source: render::Error::MissingField {
                        key: "f".into(),
                        field: "missing".into(),
                    },
                },
            ),
        ];
        for (content, want) in cases {
            let err = render_content("f", &content, &d).unwrap_err();
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            assert_eq!(err, want, "{content:?}");
        }
    }
}
