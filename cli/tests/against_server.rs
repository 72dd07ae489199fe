//! The `scaivault` binary against a real `scaivault-server dev`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use scaivault_testkit::Server;
use serde_json::json;

#[test]
fn cookbook_write_a_json_blob_from_a_file() {
    let server = Server::start(&[]);
    let config = json!({"feature_flag_x": true, "pool": {"size": 5}, "name": "billing"});
    std::fs::write(server.workdir().join("config.json"), config.to_string()).unwrap();

    // Verbatim from the cookbook, run in the directory holding config.json.
    let written = server
        .run(&[
            "secrets",
            "write",
            "app/config",
            "--type",
            "json",
            "--json-file",
            "./config.json",
        ])
        .ok();
    assert!(written.stdout.contains("app/config"), "{written:#?}");

    let read = server
        .run(&["secrets", "read", "app/config", "-o", "json"])
        .ok()
        .json();
    assert_eq!(read["data"], config);
    assert_eq!(read["secret_type"], "json");
    assert_eq!(read["version"], 1);

    let table = server.run(&["secrets", "read", "app/config"]).ok().stdout;
    assert!(table.contains("type         json"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("name") && l.ends_with("billing")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("pool") && l.ends_with(r#"{"size":5}"#)),
        "{table}"
    );
}

#[test]
fn json_file_dash_reads_stdin() {
    let server = Server::start(&[]);
    server
        .run_with_stdin(
            &["secrets", "write", "app/stdin", "--json-file", "-"],
            r#"{"k": "from-stdin"}"#,
        )
        .ok();
    let value = server
        .run(&["secrets", "read", "app/stdin", "--field", "k"])
        .ok()
        .stdout;
    assert_eq!(value, "from-stdin\n");
}

#[test]
fn data_pairs_versions_and_fields() {
    let server = Server::start(&[]);
    server
        .run(&[
            "secrets",
            "write",
            "app/db",
            "--type",
            "database",
            "--data",
            "user=admin",
            "--data",
            "password=first=1",
        ])
        .ok();
    server
        .run(&[
            "secrets",
            "write",
            "app/db",
            "--data",
            "user=admin",
            "--data",
            "password=second",
            "--cas",
            "1",
        ])
        .ok();

    let field = |args: &[&str]| server.run(args).ok().stdout;
    assert_eq!(
        field(&["secrets", "read", "app/db", "--field", "password"]),
        "second\n"
    );
    assert_eq!(
        field(&[
            "secrets",
            "read",
            "app/db",
            "--version",
            "1",
            "--field",
            "password"
        ]),
        "first=1\n"
    );
    let v1 = server
        .run(&["secrets", "read", "app/db", "--version", "1", "-o", "json"])
        .ok()
        .json();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["data"], json!({"user": "admin", "password": "first=1"}));

    let versions = server.run(&["secrets", "versions", "app/db"]).ok().stdout;
    let lines: Vec<&str> = versions.lines().collect();
    assert_eq!(lines.len(), 3, "{versions}");
    assert!(lines[0].starts_with("VERSION"), "{versions}");
    let versions = server
        .run(&["secrets", "versions", "app/db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2));

    // A stale check-and-set fails with the documented code and never echoes the value.
    let stale = server
        .run(&[
            "secrets",
            "write",
            "app/db",
            "--data",
            "password=third-secret",
            "--cas",
            "1",
        ])
        .failed_with(1);
    assert!(
        stale.stderr.starts_with("error: cas_mismatch: "),
        "{stale:#?}"
    );
    assert!(!stale.stderr.contains("third-secret"), "{stale:#?}");

    let missing = server
        .run(&["secrets", "read", "app/db", "--version", "9"])
        .failed_with(1);
    assert!(
        missing.stderr.starts_with("error: version_not_found: "),
        "{missing:#?}"
    );
}

#[test]
fn list_pages_prefixes_and_json() {
    let server = Server::start(&[]);
    for path in [
        "environments/staging/a",
        "environments/staging/b",
        "environments/prod/c",
    ] {
        server
            .run(&["secrets", "write", path, "--data", "k=v"])
            .ok();
    }

    let staging = server
        .run(&["secrets", "list", "--prefix", "environments/staging/"])
        .ok()
        .stdout;
    let lines: Vec<&str> = staging.lines().collect();
    assert!(lines[0].starts_with("PATH"), "{staging}");
    assert_eq!(lines.len(), 3, "{staging}");
    assert!(
        lines[1].starts_with("environments/staging/a ")
            && lines[2].starts_with("environments/staging/b ")
    );

    let page = server
        .run(&["secrets", "list", "--limit", "2", "-o", "json"])
        .ok()
        .json();
    assert_eq!(page["secrets"].as_array().map(Vec::len), Some(2));
    assert!(page["next_cursor"].is_string(), "{page}");

    // One page for people: the hint about more pages goes to stderr.
    let first = server.run(&["secrets", "list", "--limit", "1"]).ok();
    assert!(first.stderr.contains("--cursor"), "{first:#?}");

    let all = server
        .run(&["secrets", "list", "--limit", "1", "--all", "-o", "json"])
        .ok()
        .json();
    let paths: Vec<&str> = all["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "environments/prod/c",
            "environments/staging/a",
            "environments/staging/b"
        ]
    );
}

#[test]
fn metadata_and_tags() {
    let server = Server::start(&[]);
    server
        .run(&[
            "secrets",
            "write",
            "app/api",
            "--data",
            "key=abc",
            "--tag",
            "billing",
            "--tag",
            "prod",
            "--description",
            "main api key",
        ])
        .ok();

    let metadata = server.run(&["secrets", "metadata", "app/api"]).ok().stdout;
    assert!(metadata.contains("billing, prod"), "{metadata}");
    assert!(metadata.contains("main api key"), "{metadata}");
    assert!(
        !metadata.contains("abc"),
        "metadata must not show the value: {metadata}"
    );

    let tagged = server
        .run(&[
            "secrets", "tag", "app/api", "--add", "pci", "--remove", "prod",
        ])
        .ok()
        .stdout;
    assert!(tagged.contains("billing, pci"), "{tagged}");

    let metadata = server
        .run(&["secrets", "metadata", "app/api", "-o", "json"])
        .ok()
        .json();
    assert_eq!(metadata["tags"], json!(["billing", "pci"]));
    assert_eq!(metadata["description"], "main api key");
    assert_eq!(metadata["current_version"], 1);
}

#[test]
fn delete_restore_and_destroy() {
    let server = Server::start(&[]);
    server
        .run(&["secrets", "write", "old/path", "--data", "k=v"])
        .ok();

    server.run(&["secrets", "delete", "old/path"]).ok();
    let deleted = server.run(&["secrets", "read", "old/path"]).failed_with(1);
    assert!(
        deleted.stderr.starts_with("error: secret_deleted: "),
        "{deleted:#?}"
    );

    let restored = server.run(&["secrets", "restore", "old/path"]).ok().stdout;
    assert!(restored.contains("old/path"), "{restored}");
    assert_eq!(
        server
            .run(&["secrets", "read", "old/path", "--field", "k"])
            .ok()
            .stdout,
        "v\n"
    );

    let again = server
        .run(&["secrets", "restore", "old/path"])
        .failed_with(1);
    assert!(
        again.stderr.starts_with("error: not_deleted: "),
        "{again:#?}"
    );

    server
        .run(&["secrets", "delete", "old/path", "--destroy"])
        .ok();
    let gone = server.run(&["secrets", "read", "old/path"]).failed_with(1);
    assert!(
        gone.stderr.starts_with("error: secret_not_found: "),
        "{gone:#?}"
    );
}

#[test]
fn whoami_and_health() {
    let server = Server::start(&[]);
    let me = server.run(&["whoami"]).ok().stdout;
    assert!(
        me.lines()
            .any(|l| l.starts_with("identity_type") && l.ends_with("root")),
        "{me}"
    );
    let me = server.run(&["whoami", "-o", "json"]).ok().json();
    assert_eq!(me["identity_id"], "root");
    assert_eq!(me["policies"], json!(["root"]));

    let health = server.run(&["health"]).ok().stdout;
    assert!(health.starts_with("status   ok\n"), "{health}");
    let health = server.run(&["health", "-o", "json"]).ok().json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["storage"], "sqlite");
    let ready = server.run(&["health", "--ready", "-o", "json"]).ok().json();
    assert_eq!(ready["status"], "ok");

    let detailed = server
        .run(&["health", "--detailed", "-o", "json"])
        .ok()
        .json();
    assert_eq!(detailed["status"], "ok");
    assert!(
        detailed["components"]["storage"]["latency_ms"].is_number(),
        "{detailed}"
    );
    let detailed = server.run(&["health", "--detailed"]).ok().stdout;
    assert!(detailed.contains("COMPONENT"), "{detailed}");
}

#[test]
fn login_kubernetes_reads_the_jwt_from_a_file_and_never_prints_it() {
    // The real-cluster flow is tested in api-server/tests/kubernetes_login.rs; here the
    // command's plumbing against a server that has no cluster configured.
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("token");
    std::fs::write(
        &jwt_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl\n",
    )
    .unwrap();
    let jwt_arg = jwt_file.to_str().unwrap();
    let off = server
        .run(&[
            "login",
            "kubernetes",
            "--jwt-file",
            jwt_arg,
            "--role",
            "web",
        ])
        .failed_with(1);
    assert!(
        off.stderr.starts_with("error: auth_method_disabled: "),
        "{off:#?}"
    );
    assert!(!off.stderr.contains("c2lnbmF0dXJl"), "{off:#?}");
    let missing = server
        .run(&["login", "kubernetes", "--jwt-file", "/nonexistent/token"])
        .failed_with(1);
    assert!(
        missing.stderr.contains("cannot read /nonexistent/token"),
        "{missing:#?}"
    );
}

#[test]
fn tokens_and_keys() {
    let server = Server::start(&[]);
    let created = server
        .run(&[
            "tokens",
            "create",
            "--identity",
            "sa:ci",
            "--ttl",
            "1h",
            "--display-name",
            "ci",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let token = created["token"].as_str().unwrap().to_owned();
    let accessor = created["accessor"].as_str().unwrap().to_owned();

    let listed = server.run(&["tokens", "list"]).ok().stdout;
    assert!(listed.contains(&accessor), "{listed}");
    assert!(
        !listed.contains(&token),
        "listings never show tokens: {listed}"
    );

    let mut as_ci = server.command();
    as_ci
        .env("SCAIVAULT_TOKEN", &token)
        .args(["whoami", "-o", "json"]);
    let me = scaivault_testkit::cli::run(&mut as_ci, None).ok().json();
    assert_eq!(me["identity_id"], "sa:ci");
    assert_eq!(me["identity_type"], "service_account");

    server.run(&["tokens", "revoke", &accessor]).ok();
    let mut as_revoked = server.command();
    as_revoked.env("SCAIVAULT_TOKEN", &token).arg("whoami");
    let rejected = scaivault_testkit::cli::run(&mut as_revoked, None).failed_with(1);
    assert!(
        rejected.stderr.starts_with("error: unauthenticated: "),
        "{rejected:#?}"
    );
    assert!(!rejected.stderr.contains(&token), "{rejected:#?}");

    let rotated = server.run(&["keys", "rotate", "-o", "json"]).ok().json();
    let keys = server.run(&["keys", "list", "-o", "json"]).ok().json();
    assert_eq!(keys["active_key_id"], rotated["key_id"]);
}

#[test]
fn errors_name_the_code_and_the_request() {
    let server = Server::start(&[]);

    let missing = server
        .run(&["secrets", "read", "no/such/secret"])
        .failed_with(1);
    assert!(missing.stdout.is_empty(), "{missing:#?}");
    assert!(
        missing.stderr.starts_with("error: secret_not_found: "),
        "{missing:#?}"
    );
    assert!(
        missing.stderr.trim_end().ends_with(')') && missing.stderr.contains("(request "),
        "{missing:#?}"
    );

    // Rejected by the client before anything is sent.
    let bad = server
        .run(&["secrets", "read", "app/../etc"])
        .failed_with(1);
    assert!(bad.stderr.starts_with("error: invalid_path: "), "{bad:#?}");
    let reserved = server
        .run(&["secrets", "write", "app/db/metadata", "--data", "k=v"])
        .failed_with(1);
    assert!(
        reserved.stderr.starts_with("error: reserved_path: "),
        "{reserved:#?}"
    );

    // Usage mistakes exit 2.
    server.run(&["secrets", "write", "app/x"]).failed_with(2);
    server
        .run(&["secrets", "write", "app/x", "--data", "novalue"])
        .failed_with(2);
    server
        .run(&[
            "secrets", "write", "app/x", "--data", "k=1", "--data", "k=2",
        ])
        .failed_with(2);

    // A wrong token is the server's unauthenticated, and is never echoed.
    let mut wrong = server.command();
    wrong
        .env("SCAIVAULT_TOKEN", "svt_wrong_token_value")
        .arg("whoami");
    let rejected = scaivault_testkit::cli::run(&mut wrong, None).failed_with(1);
    assert!(
        rejected.stderr.starts_with("error: unauthenticated: "),
        "{rejected:#?}"
    );
    assert!(
        !rejected.stderr.contains("svt_wrong_token_value"),
        "{rejected:#?}"
    );

    // Nobody listening: a transport error, exit 1.
    let mut nowhere = server.command();
    nowhere
        .env("SCAIVAULT_ADDR", "http://127.0.0.1:1")
        .arg("health");
    let unreachable = scaivault_testkit::cli::run(&mut nowhere, None).failed_with(1);
    assert!(
        unreachable
            .stderr
            .starts_with("error: cannot reach the server"),
        "{unreachable:#?}"
    );
}

#[test]
fn tls_is_verified_and_an_extra_ca_can_be_trusted() {
    let server = Server::start_tls();
    assert!(
        server.address.starts_with("https://127.0.0.1:"),
        "{}",
        server.address
    );
    let ca = server.ca_pem();
    let ca = ca.to_str().unwrap();

    // The test CA is in no platform store: verification is on by default.
    let untrusted = server.run(&["whoami"]).failed_with(1);
    assert!(untrusted.stderr.starts_with("error: "), "{untrusted:#?}");
    assert!(
        untrusted.stderr.to_lowercase().contains("certificate"),
        "{untrusted:#?}"
    );

    let me = server
        .run(&["whoami", "--ca-cert", ca, "-o", "json"])
        .ok()
        .json();
    assert_eq!(me["identity_id"], "root");

    let mut from_env = server.command();
    from_env
        .env("SCAIVAULT_CACERT", ca)
        .args(["secrets", "write", "tls/ok", "--data", "k=v"]);
    scaivault_testkit::cli::run(&mut from_env, None).ok();

    let missing = server
        .run(&["whoami", "--ca-cert", "./no-such-ca.pem"])
        .failed_with(1);
    assert!(missing.stderr.contains("no-such-ca.pem"), "{missing:#?}");
}
