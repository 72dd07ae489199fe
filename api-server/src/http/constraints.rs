//! The input rules the server enforces, stated in the OpenAPI document so that a request
//! valid by the document is one the server takes (and a client generated from it, or a
//! fuzzer, can tell). Each rule comes from the limit or grammar it states.

use scaivault_api::events::{EventType, MAX_EVENT_TYPE_FILTERS};
use scaivault_api::idempotency::{MAX_KEY_CHARS, MIN_KEY_CHARS};
use scaivault_api::limits::{
    MAX_BATCH_PATHS, MAX_CURSOR_CHARS, MAX_DESCRIPTION_CHARS, MAX_LIST_LIMIT, MAX_MAX_VERSIONS,
    MAX_PATH_BYTES, MAX_PATH_DEPTH, MAX_POLICY_NAME_CHARS, MAX_POLICY_RULES, MAX_TAG_CHARS,
    MAX_TAGS,
};
use scaivault_api::path::secret_path_pattern;
use scaivault_api::rotation::{
    MAX_GENERATED_FIELDS, MAX_GENERATED_LENGTH, MAX_GENERATED_PREFIX_CHARS,
    MAX_ROTATION_REASON_CHARS, MIN_GENERATED_LENGTH,
};
use scaivault_api::webhooks::{
    MAX_WEBHOOK_EVENT_TYPES, MAX_WEBHOOK_NAME_CHARS, MAX_WEBHOOK_SECRET_BYTES,
    MAX_WEBHOOK_URL_CHARS, MIN_WEBHOOK_SECRET_BYTES, WEBHOOK_SECRET_PREFIX,
};
use serde_json::{Value, json};

use scaivault_api::pattern::MAX_PATTERN_SEGMENTS;

use super::operations::Operation;

const AUDIT_PATHS: &str = "/v1/audit/";

const SEGMENT: &str = "[A-Za-z0-9._-]+";

pub fn secret_path() -> Value {
    json!({"type": "string", "pattern": secret_path_pattern(), "maxLength": MAX_PATH_BYTES})
}

/// A list prefix: whole segments ending with `/`, then possibly part of one.
fn prefix() -> Value {
    json!({
        "type": "string",
        "pattern": format!("^(?!(.*/)?[.]{{1,2}}/)({SEGMENT}/){{0,{}}}[A-Za-z0-9._-]*$", MAX_PATH_DEPTH - 1),
        "maxLength": MAX_PATH_BYTES,
    })
}

/// A path a policy rule or test names: a secret path or a `sys/...` resource.
fn resource_path() -> Value {
    json!({
        "type": "string",
        "pattern": format!("^(?!(.*/)?[.]{{1,2}}(/|$)){SEGMENT}(/{SEGMENT}){{0,{}}}$", MAX_PATH_DEPTH - 1),
        "maxLength": MAX_PATH_BYTES,
    })
}

/// `user:<email>`, `sa:<name>` or `k8s:<namespace>/<serviceaccount>`.
pub fn identity_id() -> Value {
    json!({
        "type": "string",
        "pattern": "^(user:[A-Za-z0-9._@+-]{1,253}|sa:[A-Za-z0-9._-]{1,253}|k8s:[A-Za-z0-9._-]+/[A-Za-z0-9._-]+)$",
        "maxLength": 257,
    })
}

/// 1..=`max` characters, none of them a control character.
fn plain_text_required(max: usize) -> Value {
    json!({"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$", "minLength": 1, "maxLength": max})
}

/// `rule`, or `null` for "leave as it is".
fn nullable(rule: Value) -> Value {
    json!({"anyOf": [rule, {"type": "null"}]})
}

/// An http(s) URL. Whether its address may be reached is decided when it is given (and
/// again on each delivery): a document cannot say.
fn webhook_url() -> Value {
    json!({"type": "string", "pattern": "^https?://", "maxLength": MAX_WEBHOOK_URL_CHARS})
}

/// `whsec_` and the base64 of 24..=64 bytes.
fn webhook_secret() -> Value {
    let (min, max) = (
        MIN_WEBHOOK_SECRET_BYTES.div_ceil(3) * 4,
        MAX_WEBHOOK_SECRET_BYTES.div_ceil(3) * 4,
    );
    json!({
        "type": "string",
        "pattern": format!("^{WEBHOOK_SECRET_PREFIX}[A-Za-z0-9+/]{{{min},{max}}}={{0,2}}$"),
    })
}

/// The types a webhook may subscribe to: every one but `webhook.test`.
fn webhook_events() -> Value {
    let types: Vec<&str> = EventType::ALL
        .iter()
        .filter(|t| **t != EventType::WebhookTest)
        .map(|t| t.as_str())
        .collect();
    json!({
        "type": "array",
        "items": {"type": "string", "enum": types},
        "minItems": 1,
        "maxItems": MAX_WEBHOOK_EVENT_TYPES,
    })
}

/// RFC 3339 time or `YYYY-MM-DD`.
fn time_or_date() -> Value {
    json!({"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}]})
}

/// `<n><unit>` groups, e.g. `30m`, `1h30m`, `7d`; at least 1s.
fn duration() -> Value {
    // At most 12 digits, as the server reads them.
    json!({"type": "string", "pattern": "^(0{0,9}[1-9][0-9]{0,2}[smhd])$"})
}

/// A rotation interval: 1m..=999d (the server takes up to 3650d and combined units).
fn rotation_interval() -> Value {
    json!({"type": "string", "pattern": "^0{0,9}[1-9][0-9]{0,2}[mhd]$"})
}

/// Text without control characters, at most `max` characters.
fn plain_text(max: usize) -> Value {
    json!({"type": ["string", "null"], "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$", "maxLength": max})
}

/// What a rotation policy must hold together, beyond each field: `generate` needs a
/// generator naming its fields (the server infers them for password, api_key and token
/// secrets, which a schema cannot know), and `rotate_at` needs an interval of whole days.
fn rotation_policy(mut policy: Value) -> Value {
    let days = json!({"type": "string", "pattern": "^0{0,9}[1-9][0-9]{0,2}d$"});
    policy["allOf"] = json!([
        {"oneOf": [
            {"properties": {"strategy": {"const": "generate"}, "generator": {"type": "object", "required": ["fields"], "properties": {"fields": {"type": "array"}}}}, "required": ["generator"]},
            {"properties": {"strategy": {"enum": ["external", "manual"]}}},
        ]},
        {"oneOf": [
            {"not": {"required": ["rotate_at"]}},
            {"properties": {"interval": days}, "required": ["rotate_at"]},
        ]},
    ]);
    policy
}

/// A token lifetime: a duration of at most 30 days.
fn token_ttl() -> Value {
    json!({"type": "string", "pattern": "^0*([1-9][0-9]{0,2}[sm]|[1-9][0-9]?h|[1-9]d)$"})
}

fn policy_name() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9._:-]+$", "minLength": 1, "maxLength": MAX_POLICY_NAME_CHARS})
}

/// A policy rule's path pattern: segments of `[A-Za-z0-9._-]` mixed with `*`, or `**`.
fn path_pattern() -> Value {
    let segment = r"(\*\*|(?![.]{1,2}(/|$))(\*?[A-Za-z0-9._-])+\*?|\*)";
    json!({
        "type": "string",
        "pattern": format!("^{segment}(/{segment}){{0,{}}}$", MAX_PATTERN_SEGMENTS - 1),
        "maxLength": MAX_PATH_BYTES,
    })
}

/// Rules for a path, query or header parameter of an operation, by name. Audit queries
/// take any identity and path: records name `root` and what no longer exists.
pub fn parameter(op: &Operation, name: &str) -> Option<Value> {
    Some(match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT}),
        "cursor" => json!({"type": "string", "maxLength": MAX_CURSOR_CHARS}),
        "from" | "to" => time_or_date(),
        "prefix" | "path_prefix" => prefix(),
        "types" => {
            let one = EventType::ALL
                .iter()
                .map(|t| t.as_str().replace('.', "[.]"))
                .collect::<Vec<_>>()
                .join("|");
            let more = MAX_EVENT_TYPE_FILTERS - 1;
            json!({"type": "string", "pattern": format!("^({one})(,({one})){{0,{more}}}$")})
        }
        "accessor" => json!({"type": "string", "pattern": "^acc_[A-Za-z0-9]+$", "maxLength": 64}),
        "identity" | "identity_id" if !op.path.starts_with(AUDIT_PATHS) => identity_id(),
        "Idempotency-Key" => json!({
            "type": "string",
            "pattern": "^[A-Za-z0-9._:-]+$",
            "minLength": MIN_KEY_CHARS,
            "maxLength": MAX_KEY_CHARS,
        }),
        _ => return None,
    })
}

/// Rules for fields of request bodies: (schema, field) -> rule.
fn fields() -> Vec<(&'static str, &'static str, Value)> {
    let tag = json!({"type": "string", "pattern": "^[A-Za-z0-9._:/=-]+$", "minLength": 1, "maxLength": MAX_TAG_CHARS});
    vec![
        (
            "SecretMetadataInput",
            "tags",
            json!({"type": ["array", "null"], "items": tag, "maxItems": MAX_TAGS}),
        ),
        (
            "SecretMetadataInput",
            "description",
            json!({"type": ["string", "null"], "maxLength": MAX_DESCRIPTION_CHARS}),
        ),
        ("WriteOptions", "expires_in", duration()),
        ("RotationPolicy", "interval", rotation_interval()),
        ("RotationPolicy", "grace", duration()),
        (
            "RotationPolicy",
            "rotate_at",
            json!({"type": ["string", "null"], "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]Z?$"}),
        ),
        (
            "Generator",
            "fields",
            json!({"type": ["array", "null"], "items": {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$", "maxLength": 128}, "minItems": 1, "maxItems": MAX_GENERATED_FIELDS}),
        ),
        (
            "Generator",
            "length",
            json!({"type": ["integer", "null"], "minimum": MIN_GENERATED_LENGTH, "maximum": MAX_GENERATED_LENGTH}),
        ),
        (
            "Generator",
            "prefix",
            json!({"type": ["string", "null"], "pattern": "^[!-~]*$", "maxLength": MAX_GENERATED_PREFIX_CHARS}),
        ),
        (
            "RotateRequest",
            "reason",
            plain_text(MAX_ROTATION_REASON_CHARS),
        ),
        (
            "WriteOptions",
            "max_versions",
            json!({"type": ["integer", "null"], "minimum": 1, "maximum": MAX_MAX_VERSIONS}),
        ),
        // Each path is checked on its own and reported in `errors`: any string is taken.
        (
            "BatchReadRequest",
            "paths",
            json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_BATCH_PATHS}),
        ),
        ("CreateTokenRequest", "identity_id", identity_id()),
        ("CreateTokenRequest", "ttl", token_ttl()),
        ("IdentityInput", "id", identity_id()),
        ("PolicyInput", "name", policy_name()),
        (
            "PolicyInput",
            "rules",
            json!({"type": "array", "items": {"$ref": "#/components/schemas/PolicyRule"}, "minItems": 1, "maxItems": MAX_POLICY_RULES}),
        ),
        ("PolicyRule", "path_pattern", path_pattern()),
        (
            "PolicyRule",
            "permissions",
            json!({"type": "array", "items": {"$ref": "#/components/schemas/Permission"}, "minItems": 1}),
        ),
        ("PolicyTestRequest", "path", resource_path()),
        (
            "CreateWebhookRequest",
            "name",
            plain_text_required(MAX_WEBHOOK_NAME_CHARS),
        ),
        ("CreateWebhookRequest", "url", webhook_url()),
        ("CreateWebhookRequest", "secret", webhook_secret()),
        ("CreateWebhookRequest", "events", webhook_events()),
        (
            "UpdateWebhookRequest",
            "name",
            nullable(plain_text_required(MAX_WEBHOOK_NAME_CHARS)),
        ),
        ("UpdateWebhookRequest", "url", nullable(webhook_url())),
        ("UpdateWebhookRequest", "secret", nullable(webhook_secret())),
        ("UpdateWebhookRequest", "events", nullable(webhook_events())),
        ("WebhookFilters", "path_prefix", nullable(prefix())),
        ("ExportRequest", "from", time_or_date()),
        ("ExportRequest", "to", time_or_date()),
        (
            "ExportRequest",
            "format",
            json!({"type": "string", "enum": ["jsonl"]}),
        ),
    ]
}

/// States the body rules on the document's component schemas.
pub fn apply(doc: &mut Value) {
    for (schema, field, rule) in fields() {
        if let Some(slot) =
            doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
        {
            // Keep what the type already says (description, examples), tighten the rest.
            match (slot.as_object_mut(), rule) {
                (Some(existing), Value::Object(rule)) => {
                    existing.remove("oneOf");
                    existing.remove("allOf");
                    existing.remove("$ref");
                    existing.extend(rule);
                }
                (_, rule) => *slot = rule,
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    schemas["RotationPolicy"] = rotation_policy(schemas["RotationPolicy"].take());
    // Event types by their wire names, from the one list of them.
    schemas["EventType"] = json!({
        "type": "string",
        "enum": EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
    });
    // At least one of the two, not null: an update with nothing in it is refused.
    let tag = fields()
        .into_iter()
        .find(|(s, f, _)| (*s, *f) == ("SecretMetadataInput", "tags"))
        .map(|(_, _, rule)| rule["items"].clone())
        .unwrap_or_default();
    let update = json!({
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": tag, "maxItems": MAX_TAGS},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
            "rotation": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/RotationPolicy"}]},
        },
        "minProperties": 1,
        "additionalProperties": false,
    });
    schemas["UpdateMetadataRequest"] = json!({
        "description": "The new tags and/or description, given as is or under `metadata`.",
        "oneOf": [
            {"type": "object", "required": ["metadata"], "properties": {"metadata": update}, "additionalProperties": false},
            update,
        ]
    });
    // An identity, a draft policy, or both: two shapes of the one object.
    let mut test = schemas["PolicyTestRequest"].take();
    test["properties"]["identity_id"] = json!({"anyOf": [identity_id(), {"type": "null"}]});
    let shape = |field: &str, rule: Value| {
        let mut shape = test.clone();
        shape["properties"][field] = rule;
        if let Some(required) = shape["required"].as_array_mut() {
            required.push(json!(field));
        } else {
            shape["required"] = json!([field]);
        }
        shape
    };
    schemas["PolicyTestRequest"] = json!({
        "anyOf": [
            shape("identity_id", identity_id()),
            shape("policy", json!({"$ref": "#/components/schemas/PolicyInput"})),
        ]
    });
    // The identity type is the prefix of the identity id.
    let kinds = [
        ("user", "user:[A-Za-z0-9._@+-]{1,253}"),
        ("service_account", "sa:[A-Za-z0-9._-]{1,253}"),
        ("kubernetes", "k8s:[A-Za-z0-9._-]+/[A-Za-z0-9._-]+"),
    ];
    schemas["BindingInput"] = json!({
        "oneOf": kinds.map(|(kind, id)| json!({
            "type": "object",
            "required": ["identity_type", "identity_id"],
            "properties": {
                "identity_type": {"type": "string", "enum": [kind]},
                "identity_id": {"type": "string", "pattern": format!("^{id}$"), "maxLength": 257},
            },
            "additionalProperties": false,
        }))
    });
}
