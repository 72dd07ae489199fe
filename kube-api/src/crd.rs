//! The custom resources of group `scaivault.io`, version `v1alpha1`.
//!
//! The YAML in `crds/` is generated from these types by the `crdgen` binary
//! (`cargo run -p scaivault-operator --bin crdgen`); `tests/crd_drift.rs` fails when it
//! is stale. Single-object rules live in the schema (patterns, enums, CEL), so the
//! apiserver rejects a bad object with 422 before any controller sees it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use scaivault_api::limits::{MAX_PATH_BYTES, MAX_POLICY_NAME_CHARS, MAX_POLICY_RULES};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

// The vault's own enums, so a value the CRD admits is one the vault understands.
pub use scaivault_api::auth::IdentityType;
pub use scaivault_api::policy::{Effect, Permission};

/// API group of every ScaiVault resource.
pub const GROUP: &str = "scaivault.io";
/// The only served (and stored) version so far.
pub const VERSION: &str = "v1alpha1";

/// One secret path: the vault's segment grammar and depth (`scaivault_api::path`).
/// `.`/`..`, a leading `sys` and a trailing action word are rejected by CEL rules on the field.
pub const PATH_PATTERN: &str = scaivault_api::path::PATH_REGEX;
/// `<n><unit>` groups with unit s, m, h or d: `30s`, `15m`, `1h30m`, `7d`; the grammar of
/// `scaivault_api::duration`, which the controller parses the value with.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,6}[smhd]){1,4}$";

/// Condition type set when the object is fully reconciled.
pub const CONDITION_READY: &str = "Ready";

/// `type: string, format: date-time` for `Time` (k8s-openapi's schemars support is
/// not enabled: it would make the largest crate of the build larger still).
fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

fn optional_date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time", "nullable": true })
}

/// Status of a `Condition`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// The shape of `metav1.Condition`: one entry per `type` in `status.conditions`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase condition type, e.g. `Ready`.
    #[schemars(length(min = 1, max = 316))]
    pub r#type: String,
    pub status: ConditionStatus,
    /// Last time the status changed (not when the condition was last written).
    #[schemars(schema_with = "date_time")]
    pub last_transition_time: Time,
    /// CamelCase machine-readable reason for the last transition.
    #[schemars(length(max = 1024))]
    pub reason: String,
    /// Human-readable detail; never contains secret values.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// `metadata.generation` the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// The Kubernetes Secret types a `VaultSecret` may produce.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SecretType {
    #[default]
    Opaque,
    #[serde(rename = "kubernetes.io/tls")]
    Tls,
    #[serde(rename = "kubernetes.io/dockerconfigjson")]
    DockerConfigJson,
}

/// Renders the Secret's data from the vault value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Secret key -> template of its value.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 256))]
    pub data: BTreeMap<String, String>,
}

/// The Kubernetes Secret a `VaultSecret` writes, in the VaultSecret's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.type != 'kubernetes.io/tls' || !has(self.template) || !has(self.template.data) || size(self.template.data) == 0 || ('tls.crt' in self.template.data && 'tls.key' in self.template.data)"
).message("a kubernetes.io/tls target needs template keys tls.crt and tls.key (or no template)"))]
pub struct SecretTarget {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default)]
    pub r#type: SecretType,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

/// Workload kinds a `VaultSecret` may restart after the Secret changes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// A workload in the VaultSecret's namespace to rollout-restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    pub kind: RolloutKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_refresh_interval() -> String {
    "1h".to_owned()
}

/// Syncs one vault secret into a Kubernetes Secret.
// several printer columns share `type_ = "string"`
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[kube(
    group = "scaivault.io",
    version = "v1alpha1",
    kind = "VaultSecret",
    plural = "vaultsecrets",
    shortname = "vsec",
    category = "scaivault",
    namespaced,
    status = "VaultSecretStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.path"),
    printcolumn(
        name = "Version",
        type_ = "integer",
        json_path = ".status.syncedVersion"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VaultSecretSpec {
    /// Vault secret path, e.g. `apps/web/db`.
    #[schemars(length(min = 1, max = MAX_PATH_BYTES), regex(pattern = PATH_PATTERN))]
    #[x_kube(
        validation = kube::core::Rule::new("!self.matches('(^|/)[.]{1,2}(/|$)')")
            .message("path segments '.' and '..' are not allowed"),
        validation = kube::core::Rule::new("!self.matches('^sys(/|$)')")
            .message("paths under sys/ are reserved for the vault's own resources"),
        validation = kube::core::Rule::new(scaivault_api::path::ends_with_action_word_cel())
            .message(scaivault_api::path::ends_with_action_word_message().as_str())
    )]
    pub path: String,
    /// Pin a version; unset follows the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<i64>,
    /// ServiceAccount (in the VaultSecret's namespace) the vault is read as; unset: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// How often to re-read the vault, e.g. `30s`, `15m`, `1h`, `1h30m`.
    #[serde(default = "default_refresh_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub refresh_interval: String,
    pub target: SecretTarget,
    /// Workloads to rollout-restart when the Secret's data changes.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into(), "name".into()]))]
    pub rollout_restart_targets: Vec<RolloutTarget>,
}

/// Observed state of a `VaultSecret`; never holds secret values.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultSecretStatus {
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Vault version last written to the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub last_synced_at: Option<Time>,
    /// HMAC of the Secret's data as written, to detect drift without storing values.
    #[serde(default, rename = "secretMAC", skip_serializing_if = "Option::is_none")]
    pub secret_mac: Option<String>,
}

/// One rule of a vault policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Exact segments, `*` inside one segment, `**` across segments.
    #[schemars(length(min = 1, max = MAX_PATH_BYTES))]
    pub path_pattern: String,
    #[schemars(length(min = 1, max = Permission::ALL.len()))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub permissions: Vec<Permission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
}

/// Binds the policy to an existing vault identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBinding {
    pub identity_type: IdentityType,
    #[schemars(length(min = 1, max = 256))]
    pub identity_id: String,
}

/// A Kubernetes ServiceAccount whose vault identity gets the policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A vault policy managed from Kubernetes.
// several printer columns share `type_ = "string"`
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[kube(
    group = "scaivault.io",
    version = "v1alpha1",
    kind = "VaultPolicy",
    plural = "vaultpolicies",
    shortname = "vpol",
    category = "scaivault",
    namespaced,
    status = "VaultPolicyStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Policy", type_ = "string", json_path = ".status.policyId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VaultPolicySpec {
    /// Policy name in the vault; unset uses `<namespace>-<metadata.name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_POLICY_NAME_CHARS))]
    pub name: Option<String>,
    #[schemars(length(max = MAX_POLICY_RULES))]
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("rules must not be empty"))]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["identityType".into(), "identityId".into()]))]
    pub bindings: Vec<PolicyBinding>,
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["namespace".into(), "name".into()]))]
    pub service_accounts: Vec<ServiceAccountRef>,
}

/// Observed state of a `VaultPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultPolicyStatus {
    /// Id of the policy in the vault once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
