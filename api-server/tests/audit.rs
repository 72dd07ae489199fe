//! The audit log: a record per request, tamper evidence, fail-closed writes, queries,
//! retention and export.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::moto::Moto;
use common::{Server, error_code, send};
use reqwest::{Method, StatusCode};
use scaivault_server::audit::s3::{S3Client, S3Credentials, S3Target};
use secrecy::SecretString;
use serde_json::{Value, json};

async fn all_logs(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/audit/logs?limit=1000&cursor={c}"),
            None => "/v1/audit/logs?limit=1000".to_owned(),
        };
        let (status, page) = s.call(Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(page["logs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn db(s: &Server) -> rusqlite::Connection {
    rusqlite::Connection::open(s.data_path().join("audit.db")).unwrap()
}

#[tokio::test]
async fn every_request_leaves_one_record_including_refused_ones() {
    let s = Server::start(&[]);
    s.write(
        "environments/production/billing/stripe",
        json!({"data": {"key": "audit-canary-value-551"}}),
    )
    .await;
    let _ = s
        .call(
            Method::GET,
            "/v1/secrets/environments/production/billing/stripe",
            None,
        )
        .await;
    let _ = send(
        s.http
            .get(s.url("/v1/secrets/environments/production/billing/stripe"))
            .bearer_auth("svt_forged"),
    )
    .await;
    let (_, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "user:alice@acme.example"})),
        )
        .await;
    let alice = created["token"].as_str().unwrap().to_owned();
    let _ = send(
        s.req_as(
            &alice,
            Method::GET,
            "/v1/secrets/environments/production/billing/stripe",
        )
        .header("user-agent", "audit-test/1"),
    )
    .await;
    let _ = s
        .call(
            Method::POST,
            "/v1/batch/read",
            Some(json!({"paths": ["environments/production/billing/stripe", "a/b"]})),
        )
        .await;
    let _ = send(s.http.get(s.url("/v1/health"))).await;

    let logs = all_logs(&s).await;
    let summary: Vec<(String, String, String, Option<String>)> = logs
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["identity_id"].as_str().unwrap_or("-").to_owned(),
                r["path"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let stripe = Some("environments/production/billing/stripe".to_owned());
    let expected = vec![
        (
            "secrets.write".into(),
            "success".into(),
            "root".into(),
            stripe.clone(),
        ),
        (
            "secrets.read".into(),
            "success".into(),
            "root".into(),
            stripe.clone(),
        ),
        (
            "secrets.read".into(),
            "unauthenticated".into(),
            "-".into(),
            stripe.clone(),
        ),
        (
            "tokens.create".into(),
            "success".into(),
            "root".into(),
            Some("sys/tokens".into()),
        ),
        (
            "secrets.read".into(),
            "denied".into(),
            "user:alice@acme.example".into(),
            stripe.clone(),
        ),
        (
            "secrets.read".into(),
            "success".into(),
            "root".into(),
            stripe.clone(),
        ),
        (
            "secrets.read".into(),
            "failure".into(),
            "root".into(),
            Some("a/b".into()),
        ),
    ];
    assert_eq!(
        summary, expected,
        "health probes are not audited; batch reads leave one record per path"
    );
    // The batch answered 200, but its missing path is recorded with its own 404.
    assert_eq!(logs[6]["status"], 404, "{}", logs[6]);
    assert_eq!(logs[5]["status"], 200, "{}", logs[5]);
    for (i, record) in logs.iter().enumerate() {
        assert_eq!(record["seq"], i as u64 + 1);
        for field in [
            "id",
            "timestamp",
            "request_id",
            "action",
            "outcome",
            "status",
            "prev_hash",
            "hash",
        ] {
            assert!(!record[field].is_null(), "{field} missing in {record}");
        }
    }
    assert_eq!(logs[4]["user_agent"], "audit-test/1");
    assert_eq!(logs[4]["permission"], "secrets:read");
    assert_eq!(logs[4]["status"], 403);
    assert_eq!(logs[1]["source_ip"], "127.0.0.1");
    // An auditor can find a known accessor's requests by its HMAC.
    let accessor = created["accessor"].as_str().unwrap();
    let (_, h) = s
        .call(
            Method::POST,
            "/v1/audit/hmac",
            Some(json!({"input": accessor})),
        )
        .await;
    assert_eq!(logs[4]["accessor_hmac"], h["hmac"]);
    // No secret value, token or accessor in clear anywhere in the audit database.
    let raw = std::fs::read(s.data_path().join("audit.db")).unwrap_or_default();
    let wal = std::fs::read(s.data_path().join("audit.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        for needle in [
            "audit-canary-value-551",
            alice.as_str(),
            accessor,
            s.token.as_str(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in the audit database"
            );
        }
    }
}

#[tokio::test]
async fn cookbook_queries_per_secret_and_per_identity() {
    let s = Server::start(&[]);
    s.write(
        "environments/production/billing/stripe",
        json!({"data": {"k": "v"}}),
    )
    .await;
    let (_, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "user:alice@acme.example"})),
        )
        .await;
    let alice = created["token"].as_str().unwrap().to_owned();
    let pid = {
        let (_, p) = s
            .call(Method::POST, "/v1/policies", Some(json!({"name": "alice", "rules": [{"path_pattern": "environments/**", "permissions": ["read", "write"]}]})))
            .await;
        p["id"].as_str().unwrap().to_owned()
    };
    s.call(
        Method::POST,
        &format!("/v1/policies/{pid}/bindings"),
        Some(json!({"identity_type": "user", "identity_id": "user:alice@acme.example"})),
    )
    .await;
    let _ = send(s.req_as(
        &alice,
        Method::GET,
        "/v1/secrets/environments/production/billing/stripe",
    ))
    .await;
    let _ = send(
        s.req_as(&alice, Method::PUT, "/v1/secrets/environments/staging/x")
            .json(&json!({"data": {"a": 1}})),
    )
    .await;
    let _ = send(s.req_as(&alice, Method::GET, "/v1/secrets/other/denied")).await;

    let (status, per_secret) = s
        .call(
            Method::GET,
            "/v1/audit/secrets/environments/production/billing/stripe?from=2026-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let who: Vec<&str> = per_secret["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["identity_id"].as_str().unwrap())
        .collect();
    assert_eq!(who, vec!["root", "user:alice@acme.example"]);

    let (status, per_identity) = s
        .call(
            Method::GET,
            "/v1/audit/identities/user:alice@acme.example?from=2026-01-01",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let summary = &per_identity["summary"];
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["by_action"]["secrets.read"], 2);
    assert_eq!(summary["by_action"]["secrets.write"], 1);
    assert_eq!(
        summary["resources_accessed"],
        json!([
            "environments/production/billing/stripe",
            "environments/staging/x"
        ]),
        "denied paths are not resources accessed"
    );
    assert!(summary["first_seen"].is_string() && summary["last_seen"].is_string());

    let (_, filtered) = s
        .call(
            Method::GET,
            "/v1/audit/logs?identity=user:alice@acme.example&outcome=denied",
            None,
        )
        .await;
    assert_eq!(filtered["logs"].as_array().unwrap().len(), 1);
    let (status, body) = s
        .call(Method::GET, "/v1/audit/logs?outcome=bogus", None)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, body) = s
        .call(Method::GET, "/v1/audit/logs?from=yesterday", None)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Without sys/audit read, audit is closed.
    let (status, _) = send(s.req_as(&alice, Method::GET, "/v1/audit/logs")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn verify_catches_edited_and_deleted_rows() {
    let s = Server::start(&[]);
    for i in 0..6 {
        s.write(&format!("v/{i}"), json!({"data": {"i": i}})).await;
    }
    let (_, ok) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(ok["verified"], true, "{ok}");
    assert!(ok["checked"].as_u64().unwrap() >= 6);

    // Someone rewrites who did record 3, inside the JSON body.
    let conn = db(&s);
    let body: String = conn
        .query_row("SELECT body FROM audit_log WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "UPDATE audit_log SET body = ?1 WHERE seq = 3",
        [body.replace("\"root\"", "\"user:mallory@evil.example\"")],
    )
    .unwrap();
    let (_, broken) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(broken["verified"], false);
    assert_eq!(broken["first_broken"]["seq"], 3, "{broken}");
    conn.execute("UPDATE audit_log SET body = ?1 WHERE seq = 3", [body])
        .unwrap();

    // Someone edits only the indexed column that queries filter on.
    conn.execute(
        "UPDATE audit_log SET identity_id = 'user:nobody' WHERE seq = 2",
        [],
    )
    .unwrap();
    let (_, broken) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(broken["first_broken"]["seq"], 2, "{broken}");
    conn.execute(
        "UPDATE audit_log SET identity_id = 'root' WHERE seq = 2",
        [],
    )
    .unwrap();

    // Someone deletes a record.
    conn.execute("DELETE FROM audit_log WHERE seq = 4", [])
        .unwrap();
    let (_, broken) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(broken["verified"], false);
    assert_eq!(broken["first_broken"]["seq"], 5, "{broken}");
    assert!(
        broken["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
}

#[tokio::test]
async fn audit_write_failure_fails_the_request_closed() {
    let s = Server::start(&[]);
    s.write("closed/x", json!({"data": {"v": "fail-closed-canary"}}))
        .await;
    let locker = db(&s);
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let resp = s
        .req(Method::GET, "/v1/secrets/closed/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("fail-closed-canary"),
        "the value left without an audit record: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error_code(&body), "audit_unavailable");
    locker.execute_batch("ROLLBACK;").unwrap();
    drop(locker);
    let (status, read) = s.call(Method::GET, "/v1/secrets/closed/x", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "recovers once the log is writable: {read}"
    );
    let (_, verify) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(
        verify["verified"], true,
        "a failed batch leaves no gap in the chain: {verify}"
    );
}

#[tokio::test]
async fn retention_keeps_the_rest_of_the_chain_verifiable() {
    let mut s = Server::start(&["--audit-retention", "1s"]);
    for i in 0..5 {
        s.write(&format!("r/{i}"), json!({"data": {"i": i}})).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Retention runs at start: the old records go, a checkpoint anchors what remains.
    s.restart_gracefully();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, a) = s.call(Method::GET, "/v1/secrets/r/0", None).await;
    assert_eq!(a["data"]["i"], 0);
    let remaining: i64 = db(&s)
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    let checkpoint: i64 = db(&s)
        .query_row("SELECT seq FROM audit_checkpoint", [], |r| r.get(0))
        .unwrap();
    assert!(
        checkpoint >= 5,
        "records were purged behind a checkpoint ({checkpoint})"
    );
    assert!(remaining >= 1);
    let (_, verify) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(verify["verified"], true, "{verify}");
    assert_eq!(verify["first_seq"].as_i64().unwrap(), checkpoint + 1);
}

#[tokio::test]
async fn export_to_a_file_holds_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--audit-export-dir", dir.path().to_str().unwrap()]);
    for i in 0..5 {
        s.write(&format!("e/{i}"), json!({"data": {"i": i}})).await;
    }
    let before = all_logs(&s).await;
    let (status, job) = s
        .call(
            Method::POST,
            "/v1/audit/export",
            Some(json!({"from": "2026-01-01T00:00:00Z", "to": "2099-12-31T23:59:59Z", "format": "jsonl", "destination": {"type": "file", "path": "2026/all.jsonl"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap();
    let mut done = Value::Null;
    for _ in 0..50 {
        let (_, status) = s
            .call(Method::GET, &format!("/v1/audit/exports/{id}"), None)
            .await;
        if status["status"] != "running" {
            done = status;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["status"], "completed", "{done}");
    let text = std::fs::read_to_string(dir.path().join("2026/all.jsonl")).unwrap();
    let exported: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(exported.len() >= before.len());
    assert_eq!(
        &exported[..before.len()],
        &before[..],
        "every record, byte for byte the same content"
    );
    assert_eq!(
        done["records_exported"].as_u64().unwrap() as usize,
        exported.len()
    );
    for bad in [
        json!({"from": "2026-01-01", "to": "2026-02-01", "destination": {"type": "file", "path": "../escape.jsonl"}}),
        json!({"from": "2026-02-01", "to": "2026-01-01", "destination": {"type": "file", "path": "x.jsonl"}}),
        json!({"from": "2026-01-01", "to": "2026-02-01", "format": "csv", "destination": {"type": "file", "path": "x.jsonl"}}),
        json!({"from": "2026-01-01", "to": "2026-02-01", "destination": {"type": "ftp", "path": "x"}}),
    ] {
        let (status, body) = s
            .call(Method::POST, "/v1/audit/export", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

async fn wait_for_export(s: &Server, id: &str) -> Value {
    for _ in 0..100 {
        let (_, status) = s
            .call(Method::GET, &format!("/v1/audit/exports/{id}"), None)
            .await;
        if status["status"] != "running" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("export {id} did not finish");
}

#[tokio::test]
async fn export_to_s3_writes_every_record_of_the_range() {
    let moto = Moto::start();
    let bucket = S3Target::new(
        "acme-audit",
        S3Credentials::new("AKIAEXPORT", SecretString::from("export-secret-key-123")),
    )
    .with_endpoint(moto.endpoint.clone());
    let s3 = S3Client::new().unwrap();
    s3.create_bucket(&bucket).await.unwrap();

    let s = Server::start(&[]);
    s.write(
        "infra/aws/audit-uploader",
        json!({"data": {"access_key_id": "AKIAEXPORT", "secret_access_key": "export-secret-key-123", "endpoint": moto.endpoint, "region": "us-east-1"}}),
    )
    .await;
    for i in 0..25 {
        let _ = s
            .call(Method::GET, &format!("/v1/secrets/missing/{i}"), None)
            .await;
    }
    let expected = all_logs(&s).await;
    let (status, job) = s
        .call(
            Method::POST,
            "/v1/audit/export",
            Some(json!({
                "from": "2026-01-01T00:00:00Z", "to": "2099-12-31T23:59:59Z", "format": "jsonl",
                "destination": {"type": "s3", "bucket": "acme-audit", "prefix": "scaivault/all/", "credentials_path": "infra/aws/audit-uploader"}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = wait_for_export(&s, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        !done.to_string().contains("export-secret-key-123"),
        "credentials never appear in job status"
    );
    let keys = s3.list_objects(&bucket, "scaivault/all/").await.unwrap();
    assert_eq!(keys, vec!["scaivault/all/part-00000.jsonl".to_owned()]);
    let body = String::from_utf8(s3.get_object(&bucket, &keys[0]).await.unwrap()).unwrap();
    let exported: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        &exported[..expected.len()],
        &expected[..],
        "every record of the range, unchanged"
    );
    assert_eq!(
        done["records_exported"].as_u64().unwrap() as usize,
        exported.len()
    );
    // The chain in the exported file verifies on its own.
    for pair in exported.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }

    // A caller who may export but not read the credentials secret is refused.
    let (_, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:exporter"})),
        )
        .await;
    let (_, p) = s
        .call(Method::POST, "/v1/policies", Some(json!({"name": "exporter", "rules": [{"path_pattern": "sys/audit", "permissions": ["admin"]}]})))
        .await;
    s.call(
        Method::POST,
        &format!("/v1/policies/{}/bindings", p["id"].as_str().unwrap()),
        Some(json!({"identity_type": "service_account", "identity_id": "sa:exporter"})),
    )
    .await;
    let (status, _) = send(s.req_as(created["token"].as_str().unwrap(), Method::POST, "/v1/audit/export").json(&json!({
        "from": "2026-01-01", "to": "2099-01-01",
        "destination": {"type": "s3", "bucket": "acme-audit", "credentials_path": "infra/aws/audit-uploader"}
    })))
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no confused deputy through the export"
    );

    // A bucket that does not exist fails the job with a clear error, not the server.
    let (_, job) = s
        .call(
            Method::POST,
            "/v1/audit/export",
            Some(json!({"from": "2026-01-01", "to": "2099-01-01", "destination": {"type": "s3", "bucket": "no-such-bucket", "credentials_path": "infra/aws/audit-uploader"}})),
        )
        .await;
    let failed = wait_for_export(&s, job["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("NoSuchBucket"),
        "{failed}"
    );
    assert!(!failed.to_string().contains("export-secret-key-123"));
}

#[tokio::test]
async fn audit_sync_normal_still_records_and_chains() {
    let s = Server::start(&["--audit-sync", "normal"]);
    s.write("n/a", json!({"data": {"v": 1}})).await;
    let _ = s.call(Method::GET, "/v1/secrets/n/a", None).await;
    let logs = all_logs(&s).await;
    assert_eq!(logs.len(), 2);
    let (_, verify) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(verify["verified"], true);
}

/// A client that hangs up right after sending a write must not leave a committed change
/// without its audit record (hyper drops the request's future when the connection goes).
#[tokio::test]
async fn writes_of_clients_that_hang_up_are_still_audited() {
    use std::io::Write;

    let s = Server::start(&[]);
    let host = s.address.strip_prefix("http://").unwrap().to_owned();
    let paths: Vec<String> = (0..40).map(|i| format!("hangup/s{i}")).collect();
    for path in &paths {
        let body = r#"{"data":{"v":"x"}}"#;
        let mut socket = std::net::TcpStream::connect(&host).unwrap();
        write!(
            socket,
            "PUT /v1/secrets/{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            s.token,
            body.len()
        )
        .unwrap();
        drop(socket);
    }
    // Whether a request got as far as its handler before the hang-up is up to timing;
    // every write that did run must have finished with its audit record.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut written = Vec::new();
    for path in &paths {
        let (status, _) = s
            .call(Method::GET, &format!("/v1/secrets/{path}"), None)
            .await;
        if status == StatusCode::OK {
            written.push(path.clone());
        }
    }
    assert!(
        !written.is_empty(),
        "no write of a hung-up client ran: nothing to check"
    );
    let logs = all_logs(&s).await;
    for path in &written {
        assert!(
            logs.iter().any(|r| r["action"] == "secrets.write"
                && r["path"] == path.as_str()
                && r["outcome"] == "success"),
            "{path} was written but has no audit record"
        );
    }
}
