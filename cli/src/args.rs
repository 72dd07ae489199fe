//! Command-line arguments. Every global flag can also come from a `SCAIVAULT_*` variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scaivault_api::secrets::SecretType;
use scaivault_client::{DEFAULT_ADDRESS, SecretString};

use crate::input::{
    parse_audit_identity, parse_duration_arg, parse_event_type, parse_identity, parse_key_file,
    parse_key_value, parse_permission, parse_rotate_at, parse_rule, parse_secret_type,
};
use scaivault_api::events::EventType;
use scaivault_api::policy::{Permission, PolicyRule};

#[derive(Debug, Parser)]
#[command(name = "scaivault", version, about = "The ScaiVault command-line tool")]
pub struct Cli {
    /// Server address.
    #[arg(long, global = true, env = "SCAIVAULT_ADDR", default_value = DEFAULT_ADDRESS)]
    pub address: String,

    /// Bearer token (prefer the environment variable: flags show up in `ps`).
    #[arg(long, global = true, env = "SCAIVAULT_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<SecretString>,

    /// Extra CA certificate(s) to trust, as a PEM file.
    #[arg(long, global = true, env = "SCAIVAULT_CACERT", value_name = "PEM_FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Output format: aligned tables for people, the server's JSON for programs.
    #[arg(short, long, global = true, env = "SCAIVAULT_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Retries on 429/503/504 answers and lost answers (mutations carry an
    /// Idempotency-Key, so a retried one is applied once); 0 disables retrying.
    #[arg(
        long,
        global = true,
        env = "SCAIVAULT_MAX_RETRIES",
        default_value_t = 3
    )]
    pub max_retries: u32,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, write, list and manage secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Show the identity behind the token.
    Whoami,
    /// Check the server's health.
    Health {
        /// Per-component health (needs a token).
        #[arg(long, conflicts_with = "ready")]
        detailed: bool,
        /// Readiness instead of liveness: whether storage and the audit log can be written.
        #[arg(long)]
        ready: bool,
    },
    /// Issue, list and revoke tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Exchange an external credential for a vault token (no token needed).
    #[command(subcommand)]
    Login(LoginCommand),
    /// Manage the data-encryption keyring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create, bind and test access policies.
    #[command(subcommand)]
    Policies(PoliciesCommand),
    /// Register and look up identities.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
    /// Query, verify and export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Set and clear rotation schedules; list the secrets due for rotation.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Read what happened to secrets and policies.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Push events to HTTPS endpoints, signed (Standard Webhooks); see their deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a secret's value (the only command that does).
    Read {
        /// Secret path, like `app/db`.
        path: String,
        /// Read this version instead of the current one.
        #[arg(long)]
        version: Option<u64>,
        /// Print only this field of the value, unquoted.
        #[arg(long)]
        field: Option<String>,
    },
    /// Write a new version of a secret.
    Write(WriteArgs),
    /// List secrets, sorted by path.
    List {
        /// Only paths starting with this, like `environments/staging/`.
        #[arg(long)]
        prefix: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page.
        #[arg(long, conflicts_with = "all")]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
        /// Include soft-deleted secrets.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Soft-delete a secret (undo with `restore`), or erase it for good with --destroy.
    Delete {
        /// Secret path, like `app/db`.
        path: String,
        /// Erase every version permanently.
        #[arg(long)]
        destroy: bool,
    },
    /// Undo a soft delete.
    Restore {
        /// Secret path, like `app/db`.
        path: String,
    },
    /// Show everything about a secret except its value.
    Metadata {
        /// Secret path, like `app/db`.
        path: String,
    },
    /// Add or remove tags.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["add", "remove"]))]
    Tag {
        /// Secret path, like `app/db`.
        path: String,
        /// Tag to add (repeatable).
        #[arg(long, value_name = "TAG")]
        add: Vec<String>,
        /// Tag to remove (repeatable).
        #[arg(long, value_name = "TAG")]
        remove: Vec<String>,
    },
    /// List the retained versions of a secret.
    Versions {
        /// Secret path, like `app/db`.
        path: String,
    },
    /// Rotate now: a `generate` secret gets a new version; an `external` or `manual` one
    /// raises `rotation.requested` for whoever rotates it. Needs a schedule
    /// (`scaivault rotation set`).
    Rotate {
        /// Secret path, like `app/db`.
        path: String,
        /// Why (`compromise`, `offboarding`, ...): recorded in the audit log and the event.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Give a secret a rotation schedule (replacing the one it has).
    Set(RotationSetArgs),
    /// Remove a secret's rotation schedule.
    Clear {
        /// Secret path, like `app/db`.
        path: String,
    },
    /// List secrets whose next rotation falls within a window, in path order.
    Due {
        /// The window from now, in hours (server default 168, a week).
        #[arg(long, value_name = "HOURS")]
        within_hours: Option<u64>,
        /// Also list secrets past their rotation and its grace (left out otherwise).
        #[arg(long)]
        include_overdue: bool,
        /// Only paths starting with this, like `environments/production/`.
        #[arg(long)]
        prefix: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page.
        #[arg(long, conflicts_with = "all")]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
}

/// How a secret gets its next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// The server writes a new version from the generator, on schedule.
    Generate,
    /// Something outside rotates: the server signals `rotation.due`; a write counts as the rotation.
    External,
    /// Never automatic: only `secrets rotate` or a write.
    Manual,
}

/// The characters a generated value is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratorCharset {
    /// A-Z a-z 0-9.
    Alphanumeric,
    /// Alphanumeric plus punctuation.
    Symbols,
    /// Lowercase hex (the length must be even).
    Hex,
    /// Unpadded base64url.
    Base64url,
}

#[derive(Debug, Args)]
pub struct RotationSetArgs {
    /// Secret path, like `app/db`.
    pub path: String,
    /// How often, like 30d or 12h (1m to 3650d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub interval: String,
    /// Who rotates: the server (generate), something outside (external), or a person (manual).
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// How long after the rotation time the secret counts as overdue (server default 24h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub grace: Option<String>,
    /// Time of day (UTC) rotations are moved to, HH:MM, for intervals of a day or more.
    #[arg(long, value_name = "HH:MM", value_parser = parse_rotate_at)]
    pub rotate_at: Option<String>,
    /// A field the generator regenerates (repeatable; default by type: password,
    /// api_key, token).
    #[arg(long = "field", value_name = "FIELD")]
    pub fields: Vec<String>,
    /// Characters of each generated value, the prefix excluded (8..=4096, default 32).
    #[arg(long)]
    pub length: Option<u32>,
    /// Characters generated values are drawn from (default alphanumeric).
    #[arg(long, value_enum)]
    pub charset: Option<GeneratorCharset>,
    /// Put before each generated value, like sk_live_ (at most 32 characters).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events after a position, oldest first.
    List {
        /// Only these types, comma-separated (secret.updated,rotation.due,...).
        #[arg(long, value_name = "TYPE,...", value_delimiter = ',', value_parser = parse_event_type)]
        types: Vec<EventType>,
        /// Only events about paths starting with this, like `environments/production/`.
        #[arg(long)]
        path_prefix: Option<String>,
        /// Events after this position (the `last_seq` of a previous listing).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Follow every page up to the newest event.
        #[arg(long)]
        all: bool,
    },
    /// Print events as they happen (the event stream), one line each (`-o json`: one
    /// JSON document per line), until interrupted. Reconnects from where it stopped.
    Tail {
        /// Only these types, comma-separated (secret.updated,rotation.due,...).
        #[arg(long, value_name = "TYPE,...", value_delimiter = ',', value_parser = parse_event_type)]
        types: Vec<EventType>,
        /// Only events about paths starting with this, like `environments/production/`.
        #[arg(long)]
        path_prefix: Option<String>,
        /// Start after this position (replaying what came since); default: from now on.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Stop after this many events (default: never).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create a webhook; it receives the chosen events from now on.
    Create(WebhookCreateArgs),
    /// List every webhook (at most 100 exist).
    List,
    /// Show one webhook.
    Get {
        /// Webhook id (`wh_...`).
        id: String,
    },
    /// Change a webhook; flags left out stay as they are.
    Update(WebhookUpdateArgs),
    /// Delete a webhook and its delivery history.
    Delete {
        /// Webhook id (`wh_...`).
        id: String,
    },
    /// Send one signed `webhook.test` event now; exits 1 when the endpoint does not
    /// answer 2xx.
    Test {
        /// Webhook id (`wh_...`).
        id: String,
    },
    /// List a webhook's deliveries, newest first.
    Deliveries {
        /// Webhook id (`wh_...`).
        id: String,
        /// Only deliveries in this state.
        #[arg(long, value_enum)]
        status: Option<DeliveryState>,
        /// Page size (1..=1000, default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Only deliveries of events before this position (the `next_before` of a
        /// previous listing).
        #[arg(long, value_name = "SEQ", conflicts_with = "all")]
        before: Option<u64>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// Attempt a pending or failed delivery again now.
    Retry {
        /// Webhook id (`wh_...`).
        id: String,
        /// Delivery id (`msg_...`), as `deliveries` shows it.
        delivery_id: String,
    },
    /// Print a fresh signing secret (`whsec_` + 32 random bytes) for --secret-file.
    NewSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryState {
    Pending,
    Succeeded,
    Failed,
}

/// Where a webhook's signing secret comes from. A flag shows up in `ps`: prefer the file
/// (or `-` for standard input) or the environment variable.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct SecretSource {
    /// The signing secret, `whsec_...` (a --secret-file wins over it and the variable).
    #[arg(long, env = "SCAIVAULT_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_token)]
    pub secret: Option<SecretString>,
    /// A file holding the signing secret (`scaivault webhooks new-secret > FILE`); `-`
    /// reads standard input.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WebhookCreateArgs {
    /// A unique name.
    #[arg(long)]
    pub name: String,
    /// Where events are POSTed: an https:// (or http://) URL the server may reach.
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub secret: SecretSource,
    /// Event types, comma-separated (rotation.due,rotation.overdue,...).
    #[arg(long, required = true, value_name = "TYPE,...", value_delimiter = ',', value_parser = parse_event_type)]
    pub events: Vec<EventType>,
    /// Only events about paths starting with this, like `environments/production/`.
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Create it disabled (nothing is sent until `update --enable`).
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("change").required(true).multiple(true)
    .args(["name", "url", "secret", "secret_file", "events", "path_prefix", "no_path_prefix", "enable", "disable"]))]
pub struct WebhookUpdateArgs {
    /// Webhook id (`wh_...`).
    pub id: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New URL.
    #[arg(long)]
    pub url: Option<String>,
    /// A new signing secret, `whsec_...` (the old one keeps signing too for 24 h).
    #[arg(long, value_parser = parse_token, conflicts_with = "secret_file")]
    pub secret: Option<SecretString>,
    /// A file holding the new signing secret; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Replace the event types, comma-separated.
    #[arg(long, value_name = "TYPE,...", value_delimiter = ',', value_parser = parse_event_type)]
    pub events: Option<Vec<EventType>>,
    /// Only events about paths starting with this.
    #[arg(long, conflicts_with = "no_path_prefix")]
    pub path_prefix: Option<String>,
    /// Remove the path filter: events about every path.
    #[arg(long)]
    pub no_path_prefix: bool,
    /// Enable it (also re-enables a webhook the server disabled after days of failures).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable it: nothing is sent until it is enabled again.
    #[arg(long)]
    pub disable: bool,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Secret path, like `app/db`.
    pub path: String,

    /// Secret type: generic, password, api_key, json, database, certificate, ssh_key, token.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_secret_type)]
    pub secret_type: Option<SecretType>,

    #[command(flatten)]
    pub value: ValueSource,

    /// Replace the tags (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Replace the description.
    #[arg(long)]
    pub description: Option<String>,

    /// Expire this version after a duration like 30m, 1h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub expires_in: Option<String>,

    /// Check-and-set: 0 = only create; N = only if the current version is N.
    #[arg(long, value_name = "VERSION")]
    pub cas: Option<u64>,

    /// Versions to keep (1..=100).
    #[arg(long)]
    pub max_versions: Option<u32>,
}

/// Where the value comes from: a JSON object file, or key=value pairs.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct ValueSource {
    /// A file holding the value as a JSON object; `-` reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "data_file"])]
    pub json_file: Option<PathBuf>,

    /// A string field of the value (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub data: Vec<(String, String)>,

    /// A string field read from a file, for certificates and keys (repeatable; `-` is stdin).
    #[arg(long, value_name = "KEY=FILE", value_parser = parse_key_file)]
    pub data_file: Vec<(String, PathBuf)>,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token; it is shown once.
    Create {
        /// Who the token is for: user:<email>, sa:<name> or k8s:<namespace>/<serviceaccount>.
        #[arg(long, value_parser = parse_identity)]
        identity: String,
        /// Lifetime like 1h (default 24h, at most 30d).
        #[arg(long, value_parser = parse_duration_arg)]
        ttl: Option<String>,
        /// A name to recognise the token by in listings.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by its accessor.
    Revoke {
        /// The token's accessor (`acc_...`), as `tokens list` shows it.
        accessor: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Log in with a Kubernetes ServiceAccount token (audience `scaivault`), e.g. a
    /// projected volume token; prints a vault token of identity k8s:<namespace>/<name>.
    Kubernetes {
        /// File holding the ServiceAccount JWT.
        #[arg(long)]
        jwt_file: PathBuf,
        /// A label recorded on the token and in the audit log.
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new data key active for new writes.
    Rotate,
    /// List the data keys.
    List,
}

#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// Create a policy from --name/--rule flags or a JSON file.
    Create(PolicyDefinition),
    /// List policies; with --path only those with a rule matching that path.
    List {
        /// A secret path (or resource like sys/audit) the rules must match.
        #[arg(long)]
        path: Option<String>,
    },
    /// Show one policy and its rules.
    Get {
        /// Policy id (`pol_...`).
        id: String,
    },
    /// Change a policy: --file replaces it; flags replace only what they name.
    Update {
        /// Policy id (`pol_...`).
        id: String,
        #[command(flatten)]
        definition: PolicyChange,
    },
    /// Delete a policy and its bindings.
    Delete {
        /// Policy id (`pol_...`).
        id: String,
    },
    /// Bind a policy to an identity (type from the prefix: user:, sa:, k8s:).
    Bind {
        /// Policy id (`pol_...`).
        policy_id: String,
        /// user:<email>, sa:<name> or k8s:<namespace>/<serviceaccount>.
        #[arg(value_parser = parse_identity)]
        identity_id: String,
    },
    /// Remove a binding.
    Unbind {
        /// Policy id (`pol_...`).
        policy_id: String,
        /// user:<email>, sa:<name> or k8s:<namespace>/<serviceaccount>.
        #[arg(value_parser = parse_identity)]
        identity_id: String,
    },
    /// List the identities a policy is bound to.
    Bindings {
        /// Policy id (`pol_...`).
        policy_id: String,
    },
    /// What-if: would an identity (and/or a draft policy) hold a permission on a path?
    /// Exits 0 when allowed, 3 when denied.
    #[command(group = clap::ArgGroup::new("subject").required(true).multiple(true).args(["identity", "policy_file"]))]
    Test {
        /// The identity whose bound policies are evaluated.
        #[arg(long, value_parser = parse_identity)]
        identity: Option<String>,
        /// The secret path, like `billing/db`.
        #[arg(long)]
        path: String,
        /// read, write, list, delete, rotate or admin.
        #[arg(long, value_parser = parse_permission)]
        permission: Permission,
        /// A draft policy (JSON, like `policies create --file`) evaluated as if bound too.
        #[arg(long, value_name = "FILE")]
        policy_file: Option<PathBuf>,
    },
}

/// A whole policy: flags, or a JSON file holding `{name, description?, rules}`.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct PolicyDefinition {
    /// The policy's unique name.
    #[arg(long, requires = "rules", conflicts_with = "file")]
    pub name: Option<String>,
    /// A rule `PATTERN:PERM[,PERM...][:deny]`, e.g. `billing/**:read,list` (repeatable).
    #[arg(long = "rule", value_name = "RULE", value_parser = parse_rule, requires = "name", conflicts_with = "file")]
    pub rules: Vec<PolicyRule>,
    /// What the policy is for.
    #[arg(long, requires = "name", conflicts_with = "file")]
    pub description: Option<String>,
    /// A JSON file `{"name": ..., "description": ..., "rules": [...]}`; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// What `policies update` changes.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct PolicyChange {
    /// New name.
    #[arg(long, conflicts_with = "file")]
    pub name: Option<String>,
    /// Replace all rules with these (repeatable), `PATTERN:PERM[,PERM...][:deny]`.
    #[arg(long = "rule", value_name = "RULE", value_parser = parse_rule, conflicts_with = "file")]
    pub rules: Vec<PolicyRule>,
    /// New description; an empty string removes it.
    #[arg(long, conflicts_with = "file")]
    pub description: Option<String>,
    /// Replace the whole policy with this JSON file; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Register an identity.
    Create {
        /// user:<email>, sa:<name> or k8s:<namespace>/<serviceaccount>.
        #[arg(value_parser = parse_identity)]
        id: String,
        /// A name for people.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List registered identities with their policies.
    List,
    /// Show one identity.
    Get {
        /// user:<email>, sa:<name> or k8s:<namespace>/<serviceaccount>.
        #[arg(value_parser = parse_identity)]
        id: String,
    },
}

/// `--from`/`--to`: RFC 3339 times or YYYY-MM-DD dates (a --to date includes that day).
#[derive(Debug, Args, Clone, Default)]
pub struct RangeArgs {
    /// Start: RFC 3339 time or YYYY-MM-DD.
    #[arg(long)]
    pub from: Option<String>,
    /// End: RFC 3339 time or YYYY-MM-DD (the whole day).
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Outcome {
    Success,
    Denied,
    Unauthenticated,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Failure => "failure",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Query the log, oldest first.
    Logs {
        #[command(flatten)]
        range: RangeArgs,
        /// Only this identity (e.g. sa:ci, root).
        #[arg(long, value_parser = parse_audit_identity)]
        identity: Option<String>,
        /// Only this path (a secret path or a resource like sys/policies).
        #[arg(long)]
        path: Option<String>,
        /// Only this action, like secrets.read or policies.create.
        #[arg(long)]
        action: Option<String>,
        /// Only this outcome.
        #[arg(long, value_enum)]
        outcome: Option<Outcome>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page.
        #[arg(long, conflicts_with = "all")]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// Who touched a secret.
    Secret {
        /// Secret path, like `billing/db`.
        path: String,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Everything an identity did, with a summary.
    Identity {
        /// e.g. sa:ci, user:alice@acme.example, root.
        #[arg(value_parser = parse_audit_identity)]
        id: String,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Re-compute the hash chain; exits 1 when it is broken.
    Verify {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// The HMAC of a value (e.g. a token accessor) as audit records show it.
    Hmac {
        /// The value to hash.
        input: String,
    },
    /// Export records as JSONL to S3 or to a file under the server's --audit-export-dir.
    #[command(group = clap::ArgGroup::new("destination").required(true).args(["s3_bucket", "file"]))]
    Export(ExportArgs),
    /// Show an export job.
    ExportStatus {
        /// Export id (`exp_...`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Start: RFC 3339 time or YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// End: RFC 3339 time or YYYY-MM-DD (the whole day).
    #[arg(long)]
    pub to: String,
    /// S3 bucket to write `<prefix>part-NNNNN.jsonl` objects to.
    #[arg(long, requires = "credentials_path")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket, like `audit/2026-11/`.
    #[arg(long, requires = "s3_bucket")]
    pub s3_prefix: Option<String>,
    /// Secret holding access_key_id and secret_access_key (you need read on it).
    #[arg(long, requires = "s3_bucket")]
    pub credentials_path: Option<String>,
    /// S3 region.
    #[arg(long, requires = "s3_bucket")]
    pub region: Option<String>,
    /// S3 endpoint URL (for S3-compatible stores).
    #[arg(long, requires = "s3_bucket")]
    pub endpoint: Option<String>,
    /// A relative path under the server's --audit-export-dir.
    #[arg(long)]
    pub file: Option<String>,
    /// Wait for the job to finish; exits 1 when it fails.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (the job keeps running).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "1h", requires = "wait")]
    pub wait_timeout: String,
}

fn parse_token(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("scaivault").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_cookbook_write_parses() {
        let cli = parse(&[
            "secrets",
            "write",
            "app/config",
            "--type",
            "json",
            "--json-file",
            "./config.json",
        ]);
        let Ok(Cli {
            command: Command::Secrets(SecretsCommand::Write(args)),
            ..
        }) = cli
        else {
            unreachable!("{cli:?}")
        };
        assert_eq!(args.path, "app/config");
        assert_eq!(args.secret_type, Some(SecretType::Json));
        assert_eq!(args.value.json_file, Some(PathBuf::from("./config.json")));
    }

    #[test]
    fn write_needs_exactly_one_kind_of_value() {
        let usage = |args: &[&str]| parse(args).err().map(|e| e.exit_code());
        assert_eq!(usage(&["secrets", "write", "a/b"]), Some(2));
        assert_eq!(
            usage(&[
                "secrets",
                "write",
                "a/b",
                "--json-file",
                "x",
                "--data",
                "k=v"
            ]),
            Some(2)
        );
        assert_eq!(
            usage(&["secrets", "write", "a/b", "--data", "novalue"]),
            Some(2)
        );
        assert_eq!(
            usage(&["secrets", "write", "a/b", "--type", "nope", "--data", "k=v"]),
            Some(2)
        );
        assert_eq!(
            usage(&[
                "secrets",
                "write",
                "a/b",
                "--expires-in",
                "soon",
                "--data",
                "k=v"
            ]),
            Some(2)
        );
        assert!(
            parse(&[
                "secrets",
                "write",
                "a/b",
                "--data",
                "k=v",
                "--data-file",
                "c=./c.pem"
            ])
            .is_ok()
        );
    }

    #[test]
    fn policy_commands_need_a_whole_definition() {
        let usage = |args: &[&str]| parse(args).err().map(|e| e.exit_code());
        assert!(parse(&["policies", "create", "--name", "a", "--rule", "a/**:read"]).is_ok());
        assert!(parse(&["policies", "create", "--file", "p.json"]).is_ok());
        assert_eq!(usage(&["policies", "create"]), Some(2));
        assert_eq!(usage(&["policies", "create", "--name", "a"]), Some(2));
        assert_eq!(usage(&["policies", "create", "--rule", "a:read"]), Some(2));
        assert_eq!(
            usage(&[
                "policies", "create", "--file", "p.json", "--name", "a", "--rule", "a:read"
            ]),
            Some(2)
        );
        assert_eq!(usage(&["policies", "update", "pol_1"]), Some(2));
        assert!(parse(&["policies", "update", "pol_1", "--description", ""]).is_ok());
        assert_eq!(
            usage(&[
                "policies", "update", "pol_1", "--file", "p.json", "--name", "b"
            ]),
            Some(2)
        );
        // The identity type must be derivable from the prefix.
        assert!(parse(&["policies", "bind", "pol_1", "k8s:ns/sa"]).is_ok());
        assert_eq!(usage(&["policies", "bind", "pol_1", "billing"]), Some(2));
        // A what-if needs an identity, a draft, or both.
        let test = ["policies", "test", "--path", "a", "--permission", "read"];
        assert_eq!(usage(&test), Some(2));
        assert!(parse(&[&test[..], &["--identity", "sa:ci"]].concat()).is_ok());
        assert!(parse(&[&test[..], &["--policy-file", "d.json"]].concat()).is_ok());
        assert_eq!(
            usage(&[
                "policies",
                "test",
                "--identity",
                "sa:ci",
                "--path",
                "a",
                "--permission",
                "peek"
            ]),
            Some(2)
        );
    }

    #[test]
    fn audit_filters_are_checked() {
        let usage = |args: &[&str]| parse(args).err().map(|e| e.exit_code());
        assert!(
            parse(&[
                "audit",
                "logs",
                "--identity",
                "root",
                "--outcome",
                "denied",
                "--all"
            ])
            .is_ok()
        );
        assert_eq!(usage(&["audit", "logs", "--outcome", "maybe"]), Some(2));
        assert_eq!(usage(&["audit", "logs", "--cursor", "5", "--all"]), Some(2));
        assert_eq!(usage(&["audit", "identity", "alice"]), Some(2));
        assert!(
            parse(&[
                "audit",
                "identity",
                "user:alice@acme.example",
                "--from",
                "2026-11-01"
            ])
            .is_ok()
        );
    }

    #[test]
    fn rotation_commands_parse_and_check_their_values() {
        let usage = |args: &[&str]| parse(args).err().map(|e| e.exit_code());
        let cli = parse(&[
            "rotation",
            "set",
            "app/db",
            "--interval",
            "30d",
            "--strategy",
            "generate",
            "--field",
            "password",
            "--field",
            "pin",
            "--charset",
            "base64url",
            "--rotate-at",
            "03:00Z",
        ]);
        let Ok(Cli {
            command: Command::Rotation(RotationCommand::Set(args)),
            ..
        }) = cli
        else {
            unreachable!("{cli:?}")
        };
        assert_eq!(args.fields, ["password", "pin"]);
        assert_eq!(args.charset, Some(GeneratorCharset::Base64url));
        assert_eq!(args.strategy, Strategy::Generate);
        // A schedule needs an interval and a strategy, each well-formed.
        assert_eq!(
            usage(&["rotation", "set", "app/db", "--interval", "30d"]),
            Some(2)
        );
        assert_eq!(
            usage(&["rotation", "set", "app/db", "--strategy", "manual"]),
            Some(2)
        );
        for (flag, bad) in [
            ("--interval", "monthly"),
            ("--grace", "1 day"),
            ("--rotate-at", "3am"),
            ("--charset", "emoji"),
        ] {
            let args = [
                "rotation",
                "set",
                "app/db",
                "--interval",
                "30d",
                "--strategy",
                "manual",
                flag,
                bad,
            ];
            assert_eq!(usage(&args), Some(2), "{flag} {bad}");
        }
        assert!(parse(&["rotation", "clear", "app/db"]).is_ok());
        assert!(parse(&["secrets", "rotate", "app/db", "--reason", "compromise"]).is_ok());
        assert!(
            parse(&[
                "rotation",
                "due",
                "--within-hours",
                "24",
                "--include-overdue",
                "--prefix",
                "app/",
                "--all"
            ])
            .is_ok()
        );
        assert_eq!(
            usage(&["rotation", "due", "--cursor", "c", "--all"]),
            Some(2)
        );
        assert_eq!(usage(&["rotation", "due", "--within-hours", "-1"]), Some(2));
    }

    #[test]
    fn event_types_are_a_comma_separated_list() {
        let cli = parse(&[
            "events",
            "list",
            "--types",
            "rotation.due,secret.updated",
            "--after",
            "12",
        ]);
        let Ok(Cli {
            command: Command::Events(EventsCommand::List { types, after, .. }),
            ..
        }) = cli
        else {
            unreachable!("{cli:?}")
        };
        assert_eq!(types, [EventType::RotationDue, EventType::SecretUpdated]);
        assert_eq!(after, Some(12));
        assert!(parse(&["events", "list", "--types", "rotation.later"]).is_err());
    }

    #[test]
    fn webhook_commands_parse_and_keep_the_secret_hidden() {
        let usage = |args: &[&str]| parse(args).err().map(|e| e.exit_code());
        let cli = parse(&[
            "webhooks",
            "create",
            "--name",
            "prod-rotations",
            "--url",
            "https://ops.acme.example/hook",
            "--secret",
            "whsec_supersecretsupersecret",
            "--events",
            "rotation.due,rotation.overdue",
            "--path-prefix",
            "environments/production/",
        ]);
        let Ok(Cli {
            command: Command::Webhooks(WebhooksCommand::Create(args)),
            ..
        }) = &cli
        else {
            unreachable!("{cli:?}")
        };
        assert_eq!(
            args.events,
            [EventType::RotationDue, EventType::RotationOverdue]
        );
        assert!(!format!("{cli:?}").contains("supersecret"));
        let create = [
            "webhooks",
            "create",
            "--name",
            "n",
            "--url",
            "https://x.example/",
        ];
        // A secret is needed; events too.
        if std::env::var_os("SCAIVAULT_WEBHOOK_SECRET").is_none() {
            assert_eq!(
                usage(&[&create[..], &["--events", "rotation.due"]].concat()),
                Some(2)
            );
        }
        assert_eq!(
            usage(&[&create[..], &["--secret-file", "s"]].concat()),
            Some(2)
        );
        assert_eq!(
            usage(
                &[
                    &create[..],
                    &["--secret-file", "s", "--events", "rotation.later"]
                ]
                .concat()
            ),
            Some(2)
        );
        assert!(
            parse(
                &[
                    &create[..],
                    &["--secret-file", "-", "--events", "rotation.due"]
                ]
                .concat()
            )
            .is_ok()
        );
        // An update changes something, and not both ways at once.
        assert_eq!(usage(&["webhooks", "update", "wh_1"]), Some(2));
        assert!(parse(&["webhooks", "update", "wh_1", "--enable"]).is_ok());
        assert_eq!(
            usage(&["webhooks", "update", "wh_1", "--enable", "--disable"]),
            Some(2)
        );
        assert_eq!(
            usage(&[
                "webhooks",
                "update",
                "wh_1",
                "--path-prefix",
                "a/",
                "--no-path-prefix"
            ]),
            Some(2)
        );
        assert!(
            parse(&[
                "webhooks",
                "deliveries",
                "wh_1",
                "--status",
                "failed",
                "--all"
            ])
            .is_ok()
        );
        assert_eq!(
            usage(&["webhooks", "deliveries", "wh_1", "--status", "lost"]),
            Some(2)
        );
        assert_eq!(
            usage(&["webhooks", "deliveries", "wh_1", "--before", "5", "--all"]),
            Some(2)
        );
        assert!(parse(&["webhooks", "retry", "wh_1", "msg_1_5"]).is_ok());
        assert!(parse(&["webhooks", "new-secret"]).is_ok());
    }

    #[test]
    fn tag_needs_a_change() {
        assert!(parse(&["secrets", "tag", "a/b"]).is_err());
        assert!(parse(&["secrets", "tag", "a/b", "--add", "x", "--remove", "y"]).is_ok());
    }

    #[test]
    fn global_flags_go_anywhere_and_the_token_stays_hidden() {
        let cli = parse(&["whoami", "-o", "json", "--token", "svt_supersecret"]);
        let Ok(cli) = cli else {
            unreachable!("{cli:?}")
        };
        assert_eq!(cli.output, OutputFormat::Json);
        assert!(!format!("{cli:?}").contains("supersecret"));
    }
}
