//! Turning flags and files into request values.
//!
//! The `parse_*` functions are clap value parsers: their errors are usage errors (exit 2).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use scaivault_api::auth::identity_type_of;
use scaivault_api::duration::parse_duration;
use scaivault_api::events::EventType;
use scaivault_api::pattern::PathPattern;
use scaivault_api::policy::{Effect, Permission, PolicyInput, PolicyRule};
use scaivault_api::secrets::SecretType;
use serde_json::{Map, Value};

use crate::failure::Failure;

/// `--data key=value`: splits at the first `=`, so values may contain `=`.
pub fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        // The value may be a secret: name only the key part in the message.
        Some(_) => Err("expected KEY=VALUE with a non-empty KEY".to_owned()),
        None => Err("expected KEY=VALUE".to_owned()),
    }
}

/// `--data-file key=path`.
pub fn parse_key_file(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((key, path)) if !key.is_empty() && !path.is_empty() => {
            Ok((key.to_owned(), PathBuf::from(path)))
        }
        _ => Err("expected KEY=FILE".to_owned()),
    }
}

pub fn parse_secret_type(arg: &str) -> Result<SecretType, String> {
    SecretType::parse(arg).ok_or_else(|| {
        let names: Vec<&str> = SecretType::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown type {arg:?}; one of {}", names.join(", "))
    })
}

/// Durations are checked here so a typo fails before anything is sent.
pub fn parse_duration_arg(arg: &str) -> Result<String, String> {
    parse_duration(arg)
        .map(|_| arg.to_owned())
        .map_err(|e| e.to_string())
}

/// `--types secret.updated,rotation.due`: each name as the API spells it.
pub fn parse_event_type(arg: &str) -> Result<EventType, String> {
    EventType::parse(arg.trim()).ok_or_else(|| {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown event type {arg:?}; one of {}", names.join(", "))
    })
}

/// `--rotate-at 03:00` (or `03:00Z`): a UTC time of day, checked before anything is sent.
pub fn parse_rotate_at(arg: &str) -> Result<String, String> {
    const FORM: &str = "expected a UTC time of day HH:MM, like 03:00";
    let time = arg.strip_suffix('Z').unwrap_or(arg);
    let (hours, minutes) = time.split_once(':').ok_or(FORM)?;
    let two_digits = |s: &str, max: u32| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|n| *n <= max)
    };
    match (two_digits(hours, 23), two_digits(minutes, 59)) {
        (Some(_), Some(_)) => Ok(arg.to_owned()),
        _ => Err(FORM.to_owned()),
    }
}

pub fn parse_identity(arg: &str) -> Result<String, String> {
    identity_type_of(arg)
        .map(|_| arg.to_owned())
        .map_err(|e| e.to_string())
}

/// An identity in audit queries: any identity id, or `root`.
pub fn parse_audit_identity(arg: &str) -> Result<String, String> {
    if arg == "root" {
        Ok(arg.to_owned())
    } else {
        parse_identity(arg)
    }
}

/// `read`, `write`, `list`, `delete`, `rotate`, `admin` (or `secrets:read`, ...).
pub fn parse_permission(arg: &str) -> Result<Permission, String> {
    Permission::parse(arg.trim()).ok_or_else(|| {
        let names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown permission {arg:?}; one of {}", names.join(", "))
    })
}

/// `--rule PATTERN:PERM[,PERM...][:allow|:deny]`, e.g. `billing/**:read,list` or
/// `billing/secret/*:read:deny`. Patterns cannot contain `:`, so the split is unambiguous;
/// the pattern is compiled here so a typo fails before anything is sent.
pub fn parse_rule(arg: &str) -> Result<PolicyRule, String> {
    const FORM: &str = "expected PATTERN:PERM[,PERM...][:deny], e.g. billing/**:read,list";
    let parts: Vec<&str> = arg.split(':').collect();
    let (pattern, permissions, effect) = match parts.as_slice() {
        [pattern, permissions] => (*pattern, *permissions, Effect::Allow),
        [pattern, permissions, "deny"] => (*pattern, *permissions, Effect::Deny),
        [pattern, permissions, "allow"] => (*pattern, *permissions, Effect::Allow),
        [_, _, other] => {
            return Err(format!(
                "the effect must be allow or deny, not {other:?} ({FORM})"
            ));
        }
        _ => return Err(FORM.to_owned()),
    };
    PathPattern::compile(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))?;
    let mut parsed: Vec<Permission> = Vec::new();
    for name in permissions.split(',') {
        if name.trim().is_empty() {
            return Err(format!("an empty permission in {permissions:?} ({FORM})"));
        }
        let permission = parse_permission(name)?;
        if !parsed.contains(&permission) {
            parsed.push(permission);
        }
    }
    Ok(PolicyRule {
        path_pattern: pattern.to_owned(),
        permissions: parsed,
        effect,
    })
}

/// A policy document from a file (`-` is stdin): `{"name", "description"?, "rules"}`.
pub fn policy_from_file(path: &Path) -> Result<PolicyInput, Failure> {
    let bytes = read_source(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::Local(format!(
            "{}: not a policy document ({e}); expected {{\"name\": ..., \"rules\": [{{\"path_pattern\": ..., \"permissions\": [...]}}]}}",
            display_source(path)
        ))
    })
}

/// The value of a write from `--data` and `--data-file` pairs; duplicate keys are a mistake.
pub fn data_from_pairs(
    pairs: &[(String, String)],
    files: &[(String, PathBuf)],
) -> Result<Map<String, Value>, Failure> {
    let mut data = Map::new();
    let mut stdin_used = false;
    let file_values = files.iter().map(|(key, path)| {
        if path == Path::new("-") {
            if stdin_used {
                return Err(Failure::Usage(
                    "standard input can be read only once".to_owned(),
                ));
            }
            stdin_used = true;
        }
        let bytes = read_source(path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Failure::Local(format!("{} is not UTF-8 text", path.display())))?;
        Ok((key.clone(), text))
    });
    let file_values: Vec<(String, String)> = file_values.collect::<Result<_, _>>()?;
    for (key, value) in pairs.iter().cloned().chain(file_values) {
        if data.insert(key.clone(), Value::String(value)).is_some() {
            return Err(Failure::Usage(format!(
                "field {key:?} is given more than once"
            )));
        }
    }
    Ok(data)
}

/// The value of a write from `--json-file`: the file must hold one JSON object.
pub fn data_from_json_file(path: &Path) -> Result<Map<String, Value>, Failure> {
    let bytes = read_source(path)?;
    json_object(&bytes).map_err(|why| Failure::Local(format!("{}: {why}", display_source(path))))
}

/// Parses a JSON object; the error never quotes the input, which is a secret.
fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the value must be a JSON object ({...})".to_owned()),
        Err(e) => Err(format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// Reads a file, or standard input for `-`.
pub(crate) fn read_source(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    result.map_err(|e| Failure::Local(format!("cannot read {}: {e}", display_source(path))))?;
    Ok(bytes)
}

fn display_source(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// The tags after `secrets tag`: current order kept, removals dropped, additions appended once.
pub fn apply_tag_changes(
    current: &[String],
    add: &[String],
    remove: &[String],
) -> Result<Vec<String>, Failure> {
    if let Some(both) = add.iter().find(|t| remove.contains(t)) {
        return Err(Failure::Usage(format!(
            "tag {both:?} is both added and removed"
        )));
    }
    let mut seen = BTreeSet::new();
    Ok(current
        .iter()
        .chain(add)
        .filter(|tag| !remove.contains(tag))
        .filter(|tag| seen.insert(tag.as_str()))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn key_value_pairs() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("user=admin", Some(("user", "admin"))),
            (
                "url=postgres://h/db?sslmode=require",
                Some(("url", "postgres://h/db?sslmode=require")),
            ),
            ("empty=", Some(("empty", ""))),
            ("spaced key=a b", Some(("spaced key", "a b"))),
            ("=value", None),
            ("novalue", None),
            ("", None),
        ];
        for (arg, want) in cases {
            let got = parse_key_value(arg).ok();
            let want = want.map(|(k, v)| (k.to_owned(), v.to_owned()));
            assert_eq!(got, want, "{arg:?}");
        }
    }

    #[test]
    fn rotate_at_is_a_time_of_day() {
        for good in ["03:00", "03:00Z", "00:00", "23:59"] {
            assert_eq!(parse_rotate_at(good).ok().as_deref(), Some(good), "{good}");
        }
        for bad in [
            "3:00", "24:00", "12:60", "0300", "03:00z", "03:00:00", "", "aa:bb", "+3:00",
        ] {
            assert!(parse_rotate_at(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_types_are_the_api_names() {
        assert_eq!(parse_event_type("rotation.due"), Ok(EventType::RotationDue));
        assert_eq!(
            parse_event_type(" secret.updated "),
            Ok(EventType::SecretUpdated)
        );
        let err = parse_event_type("rotation.later").err().unwrap_or_default();
        assert!(
            err.contains("rotation.overdue") && err.contains("policy.changed"),
            "{err}"
        );
    }

    #[test]
    fn key_value_errors_do_not_echo_the_value() {
        let err = parse_key_value("=hunter2").err().unwrap_or_default();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(matches!(
            data_from_pairs(&pairs, &[]),
            Err(Failure::Usage(_))
        ));
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        let data = data_from_pairs(&pairs, &[]).ok().unwrap_or_default();
        assert_eq!(Value::Object(data), serde_json::json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn json_values_must_be_objects() {
        assert!(json_object(br#"{"a": {"b": [1, 2]}}"#).is_ok());
        for bad in [&b"[1]"[..], b"\"s3cret\"", b"{", b""] {
            let err = json_object(bad).err().unwrap_or_default();
            assert!(!err.is_empty() && !err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn tag_changes() {
        let current = strings(&["billing", "prod"]);
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["pci"], &[], &["billing", "prod", "pci"]),
            (&[], &["prod"], &["billing"]),
            (&["prod", "pci", "pci"], &["billing"], &["prod", "pci"]),
            (&[], &["absent"], &["billing", "prod"]),
        ];
        for (add, remove, want) in cases {
            let got = apply_tag_changes(&current, &strings(add), &strings(remove)).ok();
            assert_eq!(got, Some(strings(want)), "+{add:?} -{remove:?}");
        }
        assert!(apply_tag_changes(&current, &strings(&["x"]), &strings(&["x"])).is_err());
    }

    fn rule(pattern: &str, permissions: &[Permission], effect: Effect) -> PolicyRule {
        PolicyRule {
            path_pattern: pattern.to_owned(),
            permissions: permissions.to_vec(),
            effect,
        }
    }

    #[test]
    fn rules_parse() {
        use Permission::*;
        let cases: &[(&str, PolicyRule)] = &[
            (
                "billing/**:read,list",
                rule("billing/**", &[Read, List], Effect::Allow),
            ),
            (
                "billing/secret/*:read:deny",
                rule("billing/secret/*", &[Read], Effect::Deny),
            ),
            ("**:admin:allow", rule("**", &[Admin], Effect::Allow)),
            (
                "app/db-*:read, write,read",
                rule("app/db-*", &[Read, Write], Effect::Allow),
            ),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_rule(arg).as_ref(), Ok(want), "{arg}");
        }
    }

    #[test]
    fn bad_rules_say_why() {
        for (arg, why) in [
            ("billing/**", "expected PATTERN"),
            ("billing/**:", "empty permission"),
            ("billing/**:read,", "empty permission"),
            ("billing/**:reed", "unknown permission"),
            ("billing/**:read:maybe", "allow or deny"),
            ("billing/**:read:deny:x", "expected PATTERN"),
            ("a**:read", "whole segment"),
            ("a//b:read", "empty segment"),
            ("a/../b:read", "reserved"),
            (":read", "empty"),
            ("a:secrets:read", "allow or deny"),
        ] {
            let err = parse_rule(arg).err().unwrap_or_default();
            assert!(err.contains(why), "{arg}: {err}");
        }
    }

    #[test]
    fn policy_files() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else {
            unreachable!("tempdir")
        };
        let good = dir.path().join("p.json");
        let _ = std::fs::write(
            &good,
            r#"{"name": "ci", "rules": [{"path_pattern": "ci/**", "permissions": ["read"]}]}"#,
        );
        let policy = policy_from_file(&good).ok();
        assert_eq!(policy.as_ref().map(|p| p.name.as_str()), Some("ci"));
        assert_eq!(
            policy.map(|p| p.rules),
            Some(vec![rule("ci/**", &[Permission::Read], Effect::Allow)])
        );
        let bad = dir.path().join("bad.json");
        let _ = std::fs::write(&bad, r#"{"name": "ci", "rulez": []}"#);
        assert!(matches!(policy_from_file(&bad), Err(Failure::Local(m)) if m.contains("bad.json")));
    }

    #[test]
    fn validators() {
        assert!(parse_permission("rotate").is_ok());
        assert!(parse_permission("secrets:read").is_ok());
        assert!(parse_permission("root").is_err());
        assert!(parse_audit_identity("root").is_ok());
        assert!(parse_audit_identity("sa:ci").is_ok());
        assert!(parse_audit_identity("ci").is_err());
        assert!(parse_secret_type("ssh_key").is_ok());
        assert!(parse_secret_type("sshkey").is_err());
        assert!(parse_duration_arg("1h30m").is_ok());
        assert!(parse_duration_arg("1 hour").is_err());
        assert!(parse_identity("sa:billing-prod").is_ok());
        assert!(parse_identity("billing").is_err());
        assert_eq!(
            parse_key_file("cert=./c.pem").ok(),
            Some(("cert".to_owned(), PathBuf::from("./c.pem")))
        );
        assert!(parse_key_file("cert=").is_err());
    }
}
