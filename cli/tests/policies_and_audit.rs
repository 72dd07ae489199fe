//! `scaivault policies`, `identities` and `audit` against a real `scaivault-server dev`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use scaivault_testkit::Server;
use scaivault_testkit::cli::Run;
use serde_json::{Value, json};

fn policy_id(run: Run) -> String {
    run.ok().json()["id"].as_str().unwrap().to_owned()
}

fn token_for(server: &Server, identity: &str) -> (String, String) {
    let created = server
        .run(&["tokens", "create", "--identity", identity, "-o", "json"])
        .ok()
        .json();
    (
        created["token"].as_str().unwrap().to_owned(),
        created["accessor"].as_str().unwrap().to_owned(),
    )
}

fn write(server: &Server, path: &str) {
    server
        .run(&["secrets", "write", path, "--data", "k=v"])
        .ok();
}

fn names(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_str().unwrap().to_owned())
        .collect()
}

/// Yesterday and tomorrow (UTC), so a range around "now" never misses today's records.
fn around_today() -> (String, String) {
    let today = time::OffsetDateTime::now_utc().date();
    let day = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    (
        day(today.previous_day().unwrap()),
        day(today.next_day().unwrap()),
    )
}

#[test]
fn a_policy_bound_to_a_service_account_decides_what_its_token_reads() {
    let server = Server::start(&[]);
    for path in ["ci/app/config", "ci/secret/key", "other/x"] {
        write(&server, path);
    }

    let id = policy_id(server.run(&[
        "policies",
        "create",
        "--name",
        "ci",
        "--rule",
        "ci/**:read,list",
        "--rule",
        "ci/secret/*:read:deny",
        "--description",
        "CI pipelines",
        "-o",
        "json",
    ]));
    assert!(id.starts_with("pol_"), "{id}");
    let shown = server.run(&["policies", "get", &id]).ok().stdout;
    assert!(shown.contains("description  CI pipelines"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("ci/secret/*") && l.ends_with("deny")),
        "{shown}"
    );

    // The same thing from a file, and a name that is taken is the server's conflict.
    std::fs::write(
        server.workdir().join("ops.json"),
        json!({"name": "ops", "rules": [{"path_pattern": "other/**", "permissions": ["read"]}]})
            .to_string(),
    )
    .unwrap();
    let ops = policy_id(server.run(&["policies", "create", "--file", "ops.json", "-o", "json"]));
    let taken = server
        .run(&["policies", "create", "--name", "ci", "--rule", "x:read"])
        .failed_with(1);
    assert!(taken.stderr.starts_with("error: conflict: "), "{taken:#?}");
    // A malformed rule never reaches the server.
    let bad = server
        .run(&["policies", "create", "--name", "x", "--rule", "a**:read"])
        .failed_with(2);
    assert!(bad.stderr.contains("whole segment"), "{bad:#?}");

    // Bind: the type comes from the prefix.
    let binding = server
        .run(&["policies", "bind", &id, "sa:ci", "-o", "json"])
        .ok()
        .json();
    assert_eq!(binding["identity_type"], "service_account");
    assert_eq!(binding["policy_id"], id.as_str());
    let bindings = server.run(&["policies", "bindings", &id]).ok().stdout;
    assert!(
        bindings
            .lines()
            .any(|l| l.starts_with("sa:ci ") && l.contains("service_account")),
        "{bindings}"
    );

    // What-if: exit 0 when allowed, 3 when denied, the reason either way.
    let allowed = server
        .run(&[
            "policies",
            "test",
            "--identity",
            "sa:ci",
            "--path",
            "ci/app/config",
            "--permission",
            "read",
        ])
        .ok();
    assert!(allowed.stdout.starts_with("allowed  yes\n"), "{allowed:#?}");
    let denied = server
        .run(&[
            "policies",
            "test",
            "--identity",
            "sa:ci",
            "--path",
            "ci/secret/key",
            "--permission",
            "read",
        ])
        .failed_with(3);
    assert!(denied.stdout.starts_with("allowed  no\n"), "{denied:#?}");
    assert!(
        denied.stdout.contains("ci/secret/*:read:deny"),
        "{denied:#?}"
    );
    assert!(denied.stderr.is_empty(), "{denied:#?}");
    let elsewhere = server
        .run(&[
            "policies",
            "test",
            "--identity",
            "sa:ci",
            "--path",
            "other/x",
            "--permission",
            "read",
            "-o",
            "json",
        ])
        .failed_with(3)
        .json();
    assert_eq!(elsewhere["allowed"], false);
    assert_eq!(elsewhere["matched"], json!([]));
    server
        .run(&[
            "policies",
            "test",
            "--identity",
            "sa:ci",
            "--path",
            "ci/app/config",
            "--permission",
            "write",
        ])
        .failed_with(3);
    // A draft policy, with or without an identity.
    std::fs::write(
        server.workdir().join("draft.json"),
        json!({"name": "draft", "rules": [{"path_pattern": "other/*", "permissions": ["read"]}]})
            .to_string(),
    )
    .unwrap();
    for args in [
        &["--policy-file", "draft.json"][..],
        &["--policy-file", "draft.json", "--identity", "sa:ci"][..],
    ] {
        let mut all = vec![
            "policies",
            "test",
            "--path",
            "other/x",
            "--permission",
            "read",
            "-o",
            "json",
        ];
        all.extend_from_slice(args);
        let draft = server.run(&all).ok().json();
        assert_eq!(draft["matched"][0]["policy_id"], "draft", "{draft}");
    }
    server
        .run(&["policies", "test", "--path", "x", "--permission", "read"])
        .failed_with(2);

    // The token of that identity can do exactly what the test said.
    let (token, _) = token_for(&server, "sa:ci");
    let read = server
        .run_as(
            &token,
            &["secrets", "read", "ci/app/config", "--field", "k"],
        )
        .ok();
    assert_eq!(read.stdout, "v\n");
    for path in ["ci/secret/key", "other/x"] {
        let refused = server
            .run_as(&token, &["secrets", "read", path])
            .failed_with(1);
        assert!(
            refused.stderr.starts_with("error: permission_denied: "),
            "{path}: {refused:#?}"
        );
    }
    server
        .run_as(
            &token,
            &["secrets", "write", "ci/app/config", "--data", "k=w"],
        )
        .failed_with(1);

    // list --path keeps only policies with a rule matching the path.
    let matching = server
        .run(&["policies", "list", "--path", "ci/app/config", "-o", "json"])
        .ok()
        .json();
    assert_eq!(names(&matching, "policies", "name"), ["ci"]);
    let matching = server
        .run(&["policies", "list", "--path", "other/x", "-o", "json"])
        .ok()
        .json();
    assert_eq!(names(&matching, "policies", "name"), ["ops"]);
    let everything = server.run(&["policies", "list"]).ok().stdout;
    assert!(everything.starts_with("ID "), "{everything}");
    assert!(
        everything.contains("ci/**:read,list ci/secret/*:read:deny"),
        "{everything}"
    );

    // Update only the rules: name and description stay.
    let updated = server
        .run(&[
            "policies",
            "update",
            &id,
            "--rule",
            "ci/**:read,write",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(updated["name"], "ci");
    assert_eq!(updated["description"], "CI pipelines");
    assert_eq!(
        updated["rules"],
        json!([{"path_pattern": "ci/**", "permissions": ["read", "write"], "effect": "allow"}])
    );
    server
        .run_as(&token, &["secrets", "read", "ci/secret/key"])
        .ok();

    // Identity ids with '/', ':' and '@' travel through the wildcard routes.
    for identity in ["k8s:payments/api", "user:alice+ops@acme.example"] {
        server.run(&["policies", "bind", &id, identity]).ok();
    }
    let listed = server
        .run(&["policies", "bindings", &id, "-o", "json"])
        .ok()
        .json();
    let mut bound = names(&listed, "bindings", "identity_id");
    bound.sort();
    assert_eq!(
        bound,
        ["k8s:payments/api", "sa:ci", "user:alice+ops@acme.example"]
    );
    for identity in ["k8s:payments/api", "user:alice+ops@acme.example", "sa:ci"] {
        let unbound = server.run(&["policies", "unbind", &id, identity]).ok();
        assert!(unbound.stdout.starts_with("Unbound policy"), "{unbound:#?}");
    }
    let none = server
        .run(&["policies", "bindings", &id, "-o", "json"])
        .ok()
        .json();
    assert_eq!(none["bindings"], json!([]));
    let again = server
        .run(&["policies", "unbind", &id, "sa:ci"])
        .failed_with(1);
    assert!(again.stderr.starts_with("error: not_found: "), "{again:#?}");
    // Unbound: the token lost its access.
    server
        .run_as(&token, &["secrets", "read", "ci/app/config"])
        .failed_with(1);

    // Delete; the policy is gone and the other one stays.
    let deleted = server.run(&["policies", "delete", &id]).ok();
    assert!(deleted.stdout.starts_with("Deleted policy"), "{deleted:#?}");
    assert!(server.run(&["policies", "delete", &id, "-o", "json"]).code == Some(1));
    let gone = server.run(&["policies", "get", &id]).failed_with(1);
    assert!(gone.stderr.starts_with("error: not_found: "), "{gone:#?}");
    let left = server.run(&["policies", "list", "-o", "json"]).ok().json();
    assert_eq!(names(&left, "policies", "id"), [ops]);
}

#[test]
fn identities_are_registered_and_show_their_policies() {
    let server = Server::start(&[]);
    let created = server
        .run(&[
            "identities",
            "create",
            "sa:billing-prod",
            "--display-name",
            "Billing",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(created["identity_type"], "service_account");
    assert_eq!(created["display_name"], "Billing");
    server
        .run(&["identities", "create", "k8s:payments/api"])
        .ok();
    let twice = server
        .run(&["identities", "create", "sa:billing-prod"])
        .failed_with(1);
    assert!(twice.stderr.starts_with("error: conflict: "), "{twice:#?}");
    server
        .run(&["identities", "create", "billing"])
        .failed_with(2);

    let id = policy_id(server.run(&[
        "policies",
        "create",
        "--name",
        "billing",
        "--rule",
        "billing/**:read",
        "-o",
        "json",
    ]));
    server
        .run(&["policies", "bind", &id, "sa:billing-prod"])
        .ok();

    let table = server.run(&["identities", "list"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID "), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("k8s:payments/api ") && l.contains("kubernetes")),
        "{table}"
    );
    let listed = server
        .run(&["identities", "list", "-o", "json"])
        .ok()
        .json();
    let mut ids = names(&listed, "identities", "id");
    ids.sort();
    assert_eq!(ids, ["k8s:payments/api", "sa:billing-prod"]);

    let one = server
        .run(&["identities", "get", "k8s:payments/api", "-o", "json"])
        .ok()
        .json();
    assert_eq!(one["identity_type"], "kubernetes");
    let billing = server
        .run(&["identities", "get", "sa:billing-prod"])
        .ok()
        .stdout;
    assert!(billing.contains("display_name   Billing"), "{billing}");
    // The server lists policy *names* here, not ids (see client/README.md).
    let billing = server
        .run(&["identities", "get", "sa:billing-prod", "-o", "json"])
        .ok()
        .json();
    assert_eq!(billing["policies"].as_array().map(Vec::len), Some(1));
    let missing = server
        .run(&["identities", "get", "sa:nobody"])
        .failed_with(1);
    assert!(
        missing.stderr.starts_with("error: not_found: "),
        "{missing:#?}"
    );
}

#[test]
fn the_audit_log_shows_the_requests_just_made() {
    let server = Server::start(&[]);
    write(&server, "app/db");
    server.run(&["secrets", "read", "app/db"]).ok();
    let (token, accessor) = token_for(&server, "sa:intruder");
    server
        .run_as(&token, &["secrets", "read", "app/db"])
        .failed_with(1);

    // Everything, oldest first; the denied read is there with its identity.
    let logs = server
        .run(&["audit", "logs", "--all", "-o", "json"])
        .ok()
        .json();
    let records = logs["logs"].as_array().unwrap().clone();
    assert!(logs["next_cursor"].is_null());
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let denied: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{records:#?}");
    assert_eq!(denied[0]["identity_id"], "sa:intruder");
    assert_eq!(denied[0]["action"], "secrets.read");
    assert_eq!(denied[0]["path"], "app/db");
    assert_eq!(denied[0]["status"], 403);

    // The HMAC of the accessor finds that token's requests.
    let hmac = server.run(&["audit", "hmac", &accessor]).ok().stdout;
    assert_eq!(hmac.trim(), denied[0]["accessor_hmac"].as_str().unwrap());

    // Filters and paging: one record per page, all pages equal the unpaged answer.
    let filtered = server
        .run(&[
            "audit",
            "logs",
            "--identity",
            "sa:intruder",
            "--outcome",
            "denied",
            "--action",
            "secrets.read",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(filtered["logs"].as_array().map(Vec::len), Some(1));
    let paged = server
        .run(&[
            "audit", "logs", "--path", "app/db", "--limit", "1", "--all", "-o", "json",
        ])
        .ok()
        .json();
    let paged_seqs: Vec<u64> = paged["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let app_db: Vec<u64> = records
        .iter()
        .filter(|r| r["path"] == "app/db")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(paged_seqs, app_db);
    assert_eq!(app_db.len(), 3, "write, read, denied read: {records:#?}");
    let first_page = server
        .run(&["audit", "logs", "--path", "app/db", "--limit", "1"])
        .ok();
    assert!(first_page.stderr.contains("--cursor"), "{first_page:#?}");
    let table: Vec<&str> = first_page.stdout.lines().collect();
    assert!(table[0].starts_with("SEQ "), "{first_page:#?}");
    assert!(table[1].contains("secrets.write"), "{first_page:#?}");
    assert!(table[1].contains("success"), "{first_page:#?}");
    server
        .run(&["audit", "logs", "--from", "yesterday"])
        .failed_with(1);
    server
        .run(&["audit", "logs", "--outcome", "maybe"])
        .failed_with(2);

    // Per secret.
    let secret = server
        .run(&["audit", "secret", "app/db", "-o", "json"])
        .ok()
        .json();
    let actions: Vec<(String, String)> = secret["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("secrets.write".to_owned(), "success".to_owned()),
            ("secrets.read".to_owned(), "success".to_owned()),
            ("secrets.read".to_owned(), "denied".to_owned()),
        ]
    );
    let (yesterday, tomorrow) = around_today();
    let later = server
        .run(&[
            "audit", "secret", "app/db", "--from", &tomorrow, "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(later["logs"], json!([]));
    let secret_table = server.run(&["audit", "secret", "app/db"]).ok().stdout;
    assert_eq!(secret_table.lines().count(), 4, "{secret_table}");

    // Per identity: the table, the summary and the counts.
    let identity = server
        .run(&["audit", "identity", "sa:intruder", "--from", &yesterday])
        .ok()
        .stdout;
    assert!(
        identity.starts_with("identity            sa:intruder\ntotal               1\n"),
        "{identity}"
    );
    assert!(
        identity
            .lines()
            .any(|l| l.starts_with("secrets.read") && l.ends_with(" 1")),
        "{identity}"
    );
    assert!(identity.contains("denied"), "{identity}");
    let root = server
        .run(&["audit", "identity", "root", "-o", "json"])
        .ok()
        .json();
    assert_eq!(root["summary"]["by_action"]["secrets.write"], 1);
    assert!(
        root["summary"]["resources_accessed"]
            .as_array()
            .unwrap()
            .contains(&json!("app/db"))
    );

    // The chain verifies, over everything and over a range.
    let verified = server.run(&["audit", "verify"]).ok().stdout;
    assert!(first_line_is(&verified, "verified", "yes"), "{verified}");
    let verified = server
        .run(&[
            "audit", "verify", "--from", &yesterday, "--to", &tomorrow, "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(verified["verified"], true);
    assert!(verified["checked"].as_u64().unwrap() >= records.len() as u64);
    assert!(verified["first_broken"].is_null());

    // Someone without audit access is refused.
    let refused = server.run_as(&token, &["audit", "logs"]).failed_with(1);
    assert!(
        refused.stderr.starts_with("error: permission_denied: "),
        "{refused:#?}"
    );
}

#[test]
fn an_audit_export_to_a_file_can_be_waited_for_and_read_back() {
    let server = Server::dev().exports().start();
    write(&server, "app/db");
    server.run(&["secrets", "read", "app/db"]).ok();
    let (from, to) = around_today();

    let job = server
        .run(&[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--file",
            "nightly/audit.jsonl",
            "--wait",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        job["destination"],
        json!({"type": "file", "path": "nightly/audit.jsonl"})
    );
    let exported = job["records_exported"].as_u64().unwrap();
    assert!(exported >= 2, "{job}");
    assert_eq!(job["objects"].as_array().map(Vec::len), Some(1), "{job}");

    // The file holds one JSON record per line, in sequence order, write and read included.
    let file = server.export_dir().join("nightly/audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len() as u64, exported);
    assert_eq!(job["objects"][0]["records"].as_u64(), Some(exported));
    assert_eq!(job["objects"][0]["bytes"].as_u64(), Some(text.len() as u64));
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // A write leaves its request record (before the change) and its response record; a
    // read leaves one.
    let actions: Vec<(&str, Option<&str>)> = records
        .iter()
        .filter(|r| r["path"] == "app/db")
        .map(|r| (r["action"].as_str().unwrap(), r["phase"].as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("secrets.write", Some("request")),
            ("secrets.write", Some("response")),
            ("secrets.read", None)
        ]
    );

    // The status of the finished job, as people and programs see it.
    let id = job["id"].as_str().unwrap();
    let status = server
        .run(&["audit", "export-status", id, "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["status"], "completed");
    assert_eq!(status["records_exported"], job["records_exported"]);
    let status = server.run(&["audit", "export-status", id]).ok().stdout;
    assert!(status.contains("status            completed"), "{status}");
    assert!(status.contains("LOCATION"), "{status}");

    // Without --wait: the running (or already finished) job and a hint.
    let started = server
        .run(&[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--file",
            "second.jsonl",
        ])
        .ok();
    assert!(started.stdout.starts_with("id "), "{started:#?}");
    assert!(
        started.stderr.contains("audit export-status exp_"),
        "{started:#?}"
    );

    // A job that fails on the server (its directory would have to be an existing file):
    // --wait and export-status print the job and exit 1 with its error.
    let failed = server
        .run(&[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--file",
            "nightly/audit.jsonl/nested.jsonl",
            "--wait",
        ])
        .failed_with(1);
    assert!(
        failed.stdout.contains("status            failed"),
        "{failed:#?}"
    );
    assert!(
        failed.stderr.starts_with("error: export exp_") && failed.stderr.contains(" failed: "),
        "{failed:#?}"
    );
    let failed_id = failed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .map(|id| id.trim().to_owned())
        .unwrap();
    let status = server
        .run(&["audit", "export-status", &failed_id, "-o", "json"])
        .failed_with(1)
        .json();
    assert_eq!(status["status"], "failed");
    assert!(status["error"].is_string(), "{status}");

    // Refused by the server: a path outside the directory; a missing job.
    let outside = server
        .run(&[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--file",
            "../x.jsonl",
        ])
        .failed_with(1);
    assert!(
        outside.stderr.starts_with("error: invalid_request: "),
        "{outside:#?}"
    );
    let missing = server
        .run(&["audit", "export-status", "exp_0000000000000000"])
        .failed_with(1);
    assert!(
        missing.stderr.starts_with("error: not_found: "),
        "{missing:#?}"
    );
    // S3 credentials must be readable by the caller.
    let no_creds = server
        .run(&[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--s3-bucket",
            "logs",
            "--credentials-path",
            "infra/none",
        ])
        .failed_with(1);
    assert!(
        no_creds.stderr.starts_with("error: secret_not_found: "),
        "{no_creds:#?}"
    );
}

#[test]
fn a_tampered_audit_record_makes_verify_exit_1() {
    let server = Server::start(&[]);
    write(&server, "app/db");
    server.run(&["secrets", "read", "app/db"]).ok();
    server.run(&["audit", "verify"]).ok();

    // Edit the stored body of record 2 behind the server's back (the log is SQLite in WAL
    // mode, so this works while the server runs).
    let edited = std::process::Command::new("sqlite3")
        .arg(server.data_dir().join("audit.db"))
        .arg(r#"UPDATE audit_log SET body = replace(body, '"status":200', '"status":404') WHERE seq = 2"#)
        .status();
    match edited {
        Ok(status) => assert!(status.success(), "sqlite3 failed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("sqlite3 is not installed: skipping the tamper check");
            return;
        }
        Err(e) => panic!("sqlite3: {e}"),
    }

    let broken = server.run(&["audit", "verify"]).failed_with(1);
    assert!(
        first_line_is(&broken.stdout, "verified", "no"),
        "{broken:#?}"
    );
    assert!(
        broken
            .stderr
            .starts_with("error: the audit chain is broken at record 2: "),
        "{broken:#?}"
    );
    let broken = server
        .run(&["audit", "verify", "-o", "json"])
        .failed_with(1)
        .json();
    assert_eq!(broken["verified"], false);
    assert_eq!(broken["first_broken"]["seq"], 2);
}

/// The first line of a key/value table is `key value` (columns padded to the widest key).
fn first_line_is(table: &str, key: &str, value: &str) -> bool {
    table
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().eq([key, value]))
}
