//! Command-line arguments. Every global flag can also come from a `SCAIVAULT_*` variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scaivault_api::secrets::SecretType;
use scaivault_client::{DEFAULT_ADDRESS, SecretString};

use crate::input::{
    parse_duration_arg, parse_identity, parse_key_file, parse_key_value, parse_secret_type,
};

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

    /// Retries on 429/503 answers; 0 disables retrying.
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
        #[arg(long)]
        detailed: bool,
    },
    /// Issue, list and revoke tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage the data-encryption keyring.
    #[command(subcommand)]
    Keys(KeysCommand),
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
pub enum KeysCommand {
    /// Make a new data key active for new writes.
    Rotate,
    /// List the data keys.
    List,
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
