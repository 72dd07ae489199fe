//! Turns a vault secret's data into the data of the Kubernetes Secret (a pure function).
//!
//! Without a template every top-level key of the vault value becomes a Secret key: a JSON
//! string as its text, anything else as compact JSON. With `template.data`, each Secret key
//! is rendered from its template, where
//!
//! - `{{ .name }}` inserts the vault field `name` (string as text, other values as JSON),
//! - `{{ .name | base64 }}` inserts it base64-encoded,
//! - `{{ .name | base64decode }}` inserts the bytes of a base64-encoded field,
//!
//! and everything outside `{{ ... }}` is copied as is. Whitespace inside the braces is
//! optional. There is no escaping: a literal `{{` cannot be produced.
//!
//! Secret types: `kubernetes.io/tls` needs `tls.crt` and `tls.key` in the result;
//! `kubernetes.io/dockerconfigjson` needs `.dockerconfigjson` (valid JSON) — or, without
//! a template, vault fields `registry`, `username` and `password` from which it is built.
//!
//! Errors name keys and positions, never values.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::crd::{SecretTemplate, SecretType};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("template of key {key:?}: unclosed '{{{{' at byte {at}")]
    Unclosed { key: String, at: usize },
    #[error(
        "template of key {key:?}: expression at byte {at} is not '.field' or '.field | base64' / '| base64decode'"
    )]
    Expression { key: String, at: usize },
    #[error(
        "template of key {key:?} refers to field {field:?}, which the vault secret does not have"
    )]
    MissingField { key: String, field: String },
    #[error("template of key {key:?}: field {field:?} is not valid base64")]
    NotBase64 { key: String, field: String },
    #[error("a {secret_type} Secret needs key {key:?}, which the rendered data does not have")]
    MissingKey {
        secret_type: &'static str,
        key: &'static str,
    },
    #[error(".dockerconfigjson is not valid JSON")]
    DockerConfigNotJson,
    #[error("Secret key {0:?} is not a valid key (1..=253 of [-._a-zA-Z0-9])")]
    BadKey(String),
}

/// The string Kubernetes uses for the type.
pub fn type_name(t: SecretType) -> &'static str {
    match t {
        SecretType::Opaque => "Opaque",
        SecretType::Tls => "kubernetes.io/tls",
        SecretType::DockerConfigJson => "kubernetes.io/dockerconfigjson",
    }
}

/// Renders the Secret's data for `secret_type` from the vault value.
pub fn render(
    secret_type: SecretType,
    template: Option<&SecretTemplate>,
    data: &Map<String, Value>,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let templated = template.filter(|t| !t.data.is_empty());
    let out = match templated {
        Some(t) => t
            .data
            .iter()
            .map(|(key, tpl)| Ok((key.clone(), render_one(key, tpl, data)?)))
            .collect::<Result<BTreeMap<_, _>, Error>>()?,
        None if secret_type == SecretType::DockerConfigJson
            && !data.contains_key(".dockerconfigjson") =>
        {
            docker_config(data)?
        }
        None => data
            .iter()
            .map(|(k, v)| (k.clone(), value_bytes(v)))
            .collect(),
    };
    for key in out.keys() {
        if !valid_key(key) {
            return Err(Error::BadKey(key.clone()));
        }
    }
    match secret_type {
        SecretType::Opaque => {}
        SecretType::Tls => {
            for key in ["tls.crt", "tls.key"] {
                if !out.contains_key(key) {
                    return Err(Error::MissingKey {
                        secret_type: type_name(secret_type),
                        key,
                    });
                }
            }
        }
        SecretType::DockerConfigJson => {
            let Some(raw) = out.get(".dockerconfigjson") else {
                return Err(Error::MissingKey {
                    secret_type: type_name(secret_type),
                    key: ".dockerconfigjson",
                });
            };
            if serde_json::from_slice::<Value>(raw).is_err() {
                return Err(Error::DockerConfigNotJson);
            }
        }
    }
    Ok(out)
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// One piece of a template, in order: literal text or a `{{ .field | filter }}` expression.
enum Piece<'t> {
    Text(&'t str),
    Expression { at: usize, expr: &'t str },
}

/// Walks `template` piece by piece, so rendering and checking report the same first fault.
fn walk<'t>(
    key: &str,
    template: &'t str,
    mut on: impl FnMut(Piece<'t>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        on(Piece::Text(&rest[..start]))?;
        let at = offset + start;
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| Error::Unclosed {
            key: key.to_owned(),
            at,
        })?;
        on(Piece::Expression {
            at,
            expr: &after[..end],
        })?;
        let consumed = start + 2 + end + 2;
        rest = &rest[consumed..];
        offset += consumed;
    }
    on(Piece::Text(rest))
}

fn render_one(key: &str, template: &str, data: &Map<String, Value>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(template.len());
    walk(key, template, |piece| {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
            Piece::Expression { at, expr } => out.extend(expression(key, at, expr, data)?),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Renders one template against the vault secret's data (what [`render`] does for each
/// key of `template.data`): the agent's file templates use this, so operator and agent
/// share one template language. `key` names the template in errors (a Secret key, a
/// file name).
pub fn render_template(
    key: &str,
    template: &str,
    data: &Map<String, Value>,
) -> Result<Vec<u8>, Error> {
    render_one(key, template, data)
}

/// Checks the syntax of one template without data (what an admission webhook can do
/// before the vault value exists): the errors [`render`] would give for the template
/// itself, never [`Error::MissingField`] or [`Error::NotBase64`]. Returns the vault
/// fields it refers to, in order of first use.
pub fn check_template(key: &str, template: &str) -> Result<Vec<String>, Error> {
    let mut fields: Vec<String> = Vec::new();
    walk(key, template, |piece| {
        if let Piece::Expression { at, expr } = piece {
            let (field, filter) = parse_expression(key, at, expr)?;
            parse_filter(key, at, filter)?;
            if !fields.iter().any(|f| f == field) {
                fields.push(field.to_owned());
            }
        }
        Ok(())
    })?;
    Ok(fields)
}

/// A template filter.
#[derive(Clone, Copy)]
enum Filter {
    Base64,
    Base64Decode,
}

/// `.field` or `.field | filter` -> (field, the filter's word).
fn parse_expression<'e>(
    key: &str,
    at: usize,
    expr: &'e str,
) -> Result<(&'e str, Option<&'e str>), Error> {
    let (field, filter) = match expr.split_once('|') {
        Some((f, filter)) => (f.trim(), Some(filter.trim())),
        None => (expr.trim(), None),
    };
    let field = field
        .strip_prefix('.')
        .filter(|f| valid_key(f))
        .ok_or_else(|| bad_expression(key, at))?;
    Ok((field, filter))
}

fn bad_expression(key: &str, at: usize) -> Error {
    Error::Expression {
        key: key.to_owned(),
        at,
    }
}

fn parse_filter(key: &str, at: usize, word: Option<&str>) -> Result<Option<Filter>, Error> {
    match word {
        None => Ok(None),
        Some("base64") => Ok(Some(Filter::Base64)),
        Some("base64decode") => Ok(Some(Filter::Base64Decode)),
        Some(_) => Err(bad_expression(key, at)),
    }
}

fn expression(
    key: &str,
    at: usize,
    expr: &str,
    data: &Map<String, Value>,
) -> Result<Vec<u8>, Error> {
    let (field, filter) = parse_expression(key, at, expr)?;
    let value = data.get(field).ok_or_else(|| Error::MissingField {
        key: key.to_owned(),
        field: field.to_owned(),
    })?;
    let bytes = value_bytes(value);
    match parse_filter(key, at, filter)? {
        None => Ok(bytes),
        Some(Filter::Base64) => Ok(STANDARD.encode(bytes).into_bytes()),
        Some(Filter::Base64Decode) => {
            STANDARD
                .decode(bytes.trim_ascii())
                .map_err(|_| Error::NotBase64 {
                    key: key.to_owned(),
                    field: field.to_owned(),
                })
        }
    }
}

/// `{"auths": {registry: {username, password, auth}}}` from the three vault fields.
fn docker_config(data: &Map<String, Value>) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let field = |name: &'static str| {
        data.get(name)
            .map(value_bytes)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(Error::MissingKey {
                secret_type: type_name(SecretType::DockerConfigJson),
                key: name,
            })
    };
    let (registry, username, password) =
        (field("registry")?, field("username")?, field("password")?);
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let doc = serde_json::json!({
        "auths": { registry: { "username": username, "password": password, "auth": auth } }
    });
    Ok(BTreeMap::from([(
        ".dockerconfigjson".to_owned(),
        doc.to_string().into_bytes(),
    )]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn tpl(entries: &[(&str, &str)]) -> SecretTemplate {
        SecretTemplate {
            data: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn text(m: &BTreeMap<String, Vec<u8>>, k: &str) -> String {
        String::from_utf8(m.get(k).cloned().unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn without_template_every_field_is_a_key() {
        let out = render(
            SecretType::Opaque,
            None,
            &data(json!({"user": "app", "port": 5432, "tags": ["a"]})),
        )
        .unwrap();
        assert_eq!(text(&out, "user"), "app");
        assert_eq!(text(&out, "port"), "5432");
        assert_eq!(text(&out, "tags"), "[\"a\"]");
    }

    #[test]
    fn templates_render() {
        let d = data(json!({"user": "app", "password": "s3cr3t", "port": 5432, "b64": "aGk="}));
        let cases = [
            (
                "postgres://{{ .user }}:{{.password}}@db:{{ .port }}/x",
                "postgres://app:s3cr3t@db:5432/x",
            ),
            ("plain", "plain"),
            ("{{ .user | base64 }}", "YXBw"),
            ("{{ .b64 | base64decode }}!", "hi!"),
            ("", ""),
        ];
        for (t, want) in cases {
            let out = render(SecretType::Opaque, Some(&tpl(&[("k", t)])), &d).unwrap();
            assert_eq!(text(&out, "k"), want, "{t}");
        }
    }

    #[test]
    fn template_errors_name_keys_not_values() {
        let d = data(json!({"password": "s3cr3t"}));
        let cases = [
            (
                "{{ .password",
                Error::Unclosed {
                    key: "k".into(),
                    at: 0,
                },
            ),
            (
                "x{{ password }}",
                Error::Expression {
                    key: "k".into(),
                    at: 1,
                },
            ),
            (
                "{{ .password | upper }}",
                Error::Expression {
                    key: "k".into(),
                    at: 0,
                },
            ),
            (
                "{{ .nope }}",
                Error::MissingField {
                    key: "k".into(),
                    field: "nope".into(),
                },
            ),
            (
                "{{ .password | base64decode }}",
                Error::NotBase64 {
                    key: "k".into(),
                    field: "password".into(),
                },
            ),
        ];
        for (t, want) in cases {
            let err = render(SecretType::Opaque, Some(&tpl(&[("k", t)])), &d).unwrap_err();
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            assert_eq!(err, want, "{t}");
        }
    }

    #[test]
    fn tls_needs_both_keys() {
        let d = data(json!({"cert": "C", "key": "K"}));
        let ok = render(
            SecretType::Tls,
            Some(&tpl(&[
                ("tls.crt", "{{ .cert }}"),
                ("tls.key", "{{ .key }}"),
            ])),
            &d,
        )
        .unwrap();
        assert_eq!(text(&ok, "tls.crt"), "C");
        let err = render(SecretType::Tls, None, &d).unwrap_err();
        assert_eq!(
            err,
            Error::MissingKey {
                secret_type: "kubernetes.io/tls",
                key: "tls.crt"
            }
        );
    }

    #[test]
    fn docker_config_is_built_or_checked() {
        let d = data(json!({"registry": "r.example", "username": "u", "password": "p"}));
        let out = render(SecretType::DockerConfigJson, None, &d).unwrap();
        let doc: Value = serde_json::from_slice(&out[".dockerconfigjson"]).unwrap();
        assert_eq!(doc["auths"]["r.example"]["auth"], "dTpw");
        let bad = data(json!({".dockerconfigjson": "{not json"}));
        assert_eq!(
            render(SecretType::DockerConfigJson, None, &bad).unwrap_err(),
            Error::DockerConfigNotJson
        );
        assert!(render(SecretType::DockerConfigJson, None, &data(json!({"x": 1}))).is_err());
    }

    #[test]
    fn bad_secret_keys_are_refused() {
        let err = render(SecretType::Opaque, None, &data(json!({"a b": "x"}))).unwrap_err();
        assert_eq!(err, Error::BadKey("a b".into()));
    }

    #[test]
    fn check_template_reports_syntax_faults_and_fields() {
        assert_eq!(
            check_template("k", "{{ .user }}:{{.password | base64}}@{{ .user }}").unwrap(),
            vec!["user".to_owned(), "password".to_owned()]
        );
        assert_eq!(check_template("k", "plain").unwrap(), Vec::<String>::new());
        let cases = [
            (
                "{{ .a",
                Error::Unclosed {
                    key: "k".into(),
                    at: 0,
                },
            ),
            (
                "x{{ a }}",
                Error::Expression {
                    key: "k".into(),
                    at: 1,
                },
            ),
            (
                "{{ .a | upper }}",
                Error::Expression {
                    key: "k".into(),
                    at: 0,
                },
            ),
            (
                "{{ .a b }}",
                Error::Expression {
                    key: "k".into(),
                    at: 0,
                },
            ),
        ];
        for (t, want) in cases {
            assert_eq!(check_template("k", t).unwrap_err(), want, "{t}");
        }
    }
}
