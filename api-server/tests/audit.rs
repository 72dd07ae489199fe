//! The audit log: a record per request, tamper evidence, fail-closed writes, queries,
//! retention and export.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaivault_server::audit::s3::{S3Client, S3Credentials, S3Target};
use scaivault_testkit::moto::Moto;
use scaivault_testkit::{Server, error_code, send, wait_for, wait_until};
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

/// The records queries show of an exported (or stored) sequence: every record except the
/// request records that a response record answers.
fn as_queried(records: &[Value]) -> Vec<Value> {
    let answered: Vec<&Value> = records.iter().map(|r| &r["request_seq"]).collect();
    records
        .iter()
        .filter(|r| !(r["phase"] == "request" && answered.contains(&&r["seq"])))
        .cloned()
        .collect()
}

fn db(s: &Server) -> rusqlite::Connection {
    rusqlite::Connection::open(s.data_dir().join("audit.db")).unwrap()
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
    // A write is a mutation: its request record (durable before the change) is hidden from
    // queries once its response record follows, which links back to it.
    assert_eq!(logs[0]["phase"], "response", "{}", logs[0]);
    assert_eq!(logs[0]["request_seq"], 1, "{}", logs[0]);
    assert_eq!(logs[0]["seq"], 2);
    assert!(
        logs[1].get("phase").is_none(),
        "reads stay single-phase: {}",
        logs[1]
    );
    for (i, record) in logs.iter().enumerate() {
        if i > 0 {
            assert!(record["seq"].as_u64() > logs[i - 1]["seq"].as_u64());
        }
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
    let raw = std::fs::read(s.data_dir().join("audit.db")).unwrap_or_default();
    let wal = std::fs::read(s.data_dir().join("audit.db-wal")).unwrap_or_default();
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
    let s = Server::dev().own_storage().start();
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
    let s = Server::dev().own_storage().start();
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
    let mut s = Server::dev()
        .own_storage()
        .args(["--audit-retention", "1s"])
        .shifted_clock()
        .start();
    for i in 0..5 {
        s.write(&format!("r/{i}"), json!({"data": {"i": i}})).await;
    }
    // The records age past the retention on the server's clock, not by waiting, into the
    // next hourly slot of the job (the slot of the first start ran already).
    s.clock().advance(Duration::from_secs(2 * 3600));
    // Retention runs at start: the old records go, a checkpoint anchors what remains.
    s.restart_gracefully();
    let checkpoint: i64 = wait_for("the retention checkpoint", FSYNC_WAIT, || async {
        db(&s)
            .query_row("SELECT seq FROM audit_checkpoint", [], |r| r.get(0))
            .ok()
    })
    .await;
    let (_, a) = s.call(Method::GET, "/v1/secrets/r/0", None).await;
    assert_eq!(a["data"]["i"], 0);
    let remaining: i64 = db(&s)
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert!(
        checkpoint >= 5,
        "records were purged behind a checkpoint ({checkpoint})"
    );
    assert!(remaining >= 1);
    let (_, verify) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(verify["verified"], true, "{verify}");
    assert_eq!(
        verify["first_seq"].as_i64(),
        Some(checkpoint + 1),
        "{verify}"
    );
}

#[tokio::test]
async fn export_to_a_file_holds_every_record() {
    let s = Server::dev().exports().start();
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
    let done = wait_for_export(&s, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let text = std::fs::read_to_string(s.export_dir().join("2026/all.jsonl")).unwrap();
    let exported: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let queried = as_queried(&exported);
    assert!(queried.len() >= before.len());
    assert_eq!(
        &queried[..before.len()],
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
    wait_for(
        &format!("export {id} to finish"),
        Duration::from_secs(30),
        || async {
            let (_, status) = s
                .call(Method::GET, &format!("/v1/audit/exports/{id}"), None)
                .await;
            (status["status"] != "running").then_some(status)
        },
    )
    .await
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
    moto.create_bucket("acme-audit", "us-east-1").await;

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
        &as_queried(&exported)[..expected.len()],
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
    // Whether the server reads a request before noticing the hang-up, and whether its
    // body still arrives, is up to timing. What must hold: every request record ends with
    // its response record, and every applied write has a successful one.
    let conn = db(&s);
    let counts = || {
        conn.query_row(
            "SELECT COUNT(*), COUNT(a.seq) FROM audit_log r LEFT JOIN audit_log a ON a.request_seq = r.seq \
             WHERE r.phase = 'request' AND r.path LIKE 'hangup/%'",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .unwrap_or((0, 0))
    };
    let balanced = || {
        let (requests, answered) = counts();
        async move { answered == requests }
    };
    wait_until("every request record to be answered", FSYNC_WAIT, &balanced).await;
    let mut written = Vec::new();
    for path in &paths {
        let (status, _) = s
            .call(Method::GET, &format!("/v1/secrets/{path}"), None)
            .await;
        if status == StatusCode::OK {
            written.push(path.clone());
        }
    }
    // A write seen above may still be finishing its response record.
    wait_until("every request record to be answered", FSYNC_WAIT, &balanced).await;
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

/// Every stored record, request records included, in `seq` order.
fn stored(conn: &rusqlite::Connection) -> Vec<Value> {
    let mut st = conn
        .prepare("SELECT body FROM audit_log ORDER BY seq")
        .unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

async fn verify(s: &Server) -> Value {
    let (status, v) = s.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// How long a record may take to land: a loaded CI machine takes its time over an fsync.
const FSYNC_WAIT: Duration = Duration::from_secs(60);

/// What an attacker with `audit.db` but not the master key can do: rewrite a record and
/// re-hash it and every later one with the chain's published rule, plain SHA-256.
fn rewrite_with_sha256(
    conn: &rusqlite::Connection,
    (from_seq, to_seq): (i64, i64),
    edit: impl Fn(&mut Value),
) {
    let mut prev: String = conn
        .query_row(
            "SELECT hash FROM audit_log WHERE seq < ?1 ORDER BY seq DESC LIMIT 1",
            [from_seq],
            |r| r.get(0),
        )
        .unwrap_or_else(|_| "0".repeat(64));
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, body FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq")
        .unwrap()
        .query_map([from_seq, to_seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (seq, body) in rows {
        let mut value: Value = serde_json::from_str(&body).unwrap();
        if seq == from_seq {
            edit(&mut value);
        }
        let mut record: scaivault_api::audit::AuditRecord = serde_json::from_value(value).unwrap();
        record.prev_hash = prev.clone();
        record.hash = String::new();
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        digest.update(record.prev_hash.as_bytes());
        digest.update(b"\n");
        digest.update(&serde_json::to_vec(&record).unwrap());
        record.hash = digest
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        conn.execute(
            "UPDATE audit_log SET body = ?1, hash = ?2, identity_id = ?3 WHERE seq = ?4",
            rusqlite::params![
                serde_json::to_string(&record).unwrap(),
                record.hash,
                record.identity_id,
                seq
            ],
        )
        .unwrap();
        prev = record.hash;
    }
}

fn snapshot(conn: &rusqlite::Connection) -> Vec<(i64, String, String, Option<String>)> {
    conn.prepare("SELECT seq, body, hash, identity_id FROM audit_log ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn restore(conn: &rusqlite::Connection, rows: &[(i64, String, String, Option<String>)]) {
    for (seq, body, hash, identity) in rows {
        conn.execute(
            "UPDATE audit_log SET body = ?1, hash = ?2, identity_id = ?3 WHERE seq = ?4",
            rusqlite::params![body, hash, identity, seq],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_mutation_is_recorded_before_it_is_applied_and_linked_to_its_outcome() {
    let s = Server::dev().own_storage().start();
    s.write("phases/a", json!({"data": {"v": 1}})).await;
    let (status, _) = s
        .call(Method::POST, "/v1/policies", Some(json!({"name": "p1", "rules": [{"path_pattern": "phases/**", "permissions": ["read"]}]})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let _ = s.call(Method::GET, "/v1/secrets/phases/a", None).await;

    let all = stored(&db(&s));
    let phases: Vec<(&str, &str, Option<u64>)> = all
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["phase"].as_str().unwrap_or("-"),
                r["request_seq"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        vec![
            ("secrets.write", "request", None),
            ("secrets.write", "response", Some(1)),
            ("policies.create", "request", None),
            ("policies.create", "response", Some(3)),
            ("secrets.read", "-", None),
        ],
        "each mutation: a request record first, then its outcome linked to it"
    );
    assert_eq!(all[0]["outcome"], "unknown");
    assert_eq!(all[0]["status"], 0);
    assert_eq!(
        all[0]["identity_id"], "root",
        "the caller is known before the change"
    );
    assert_eq!(all[0]["path"], "phases/a");
    assert_eq!(all[1]["outcome"], "success");
    assert_eq!(all[0]["request_id"], all[1]["request_id"]);

    // Queries show one record per request; nothing is left `unknown`.
    let logs = all_logs(&s).await;
    assert_eq!(
        logs.iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 4, 5]
    );
    let (_, unknown) = s
        .call(Method::GET, "/v1/audit/logs?outcome=unknown", None)
        .await;
    assert_eq!(unknown["logs"], json!([]), "{unknown}");
    let v = verify(&s).await;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["legacy_unkeyed"], 0, "{v}");
    assert!(v["keyed"].as_u64().unwrap() >= 5, "{v}");
}

/// 6b: the audit store fails while a mutation is under way; the mutation is refused and
/// nothing changes.
#[tokio::test]
async fn an_audit_store_failing_during_a_write_applies_nothing() {
    let s = Server::dev().own_storage().start();
    s.write("locked/existing", json!({"data": {"v": "kept"}}))
        .await;
    // Another process holds audit.db's write lock: the server's group commit fails (after
    // its 5 s busy timeout), as it would on a full or read-only disk.
    let locker = db(&s);
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let put = send(
        s.req(Method::PUT, "/v1/secrets/locked/new")
            .json(&json!({"data": {"v": "never-stored"}})),
    );
    let delete = send(s.req(Method::DELETE, "/v1/secrets/locked/existing?destroy=true"));
    let policy = send(s.req(Method::POST, "/v1/policies").json(
        &json!({"name": "while-locked", "rules": [{"path_pattern": "**", "permissions": ["admin"]}]}),
    ));
    let (put, delete, policy) = tokio::join!(put, delete, policy);
    for (what, (status, body)) in [("write", put), ("destroy", delete), ("policy", policy)] {
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            "{what}: {body}"
        );
    }
    locker.execute_batch("ROLLBACK;").unwrap();
    drop(locker);

    let (status, _) = s.call(Method::GET, "/v1/secrets/locked/new", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the refused write was not applied"
    );
    let (status, kept) = s
        .call(Method::GET, "/v1/secrets/locked/existing", None)
        .await;
    assert_eq!(
        (status, kept["data"]["v"].as_str()),
        (StatusCode::OK, Some("kept")),
        "the refused destroy was not applied"
    );
    let (_, policies) = s.call(Method::GET, "/v1/policies", None).await;
    assert!(
        !policies.to_string().contains("while-locked"),
        "the refused policy was not created: {policies}"
    );
    let v = verify(&s).await;
    assert_eq!(v["verified"], true, "{v}");
}

/// A crash after the request record and before the response record: the request shows
/// as `unknown`, the chain still verifies.
#[tokio::test]
async fn a_crash_between_request_and_response_leaves_an_unknown_outcome() {
    use std::io::Write;

    let mut s = Server::dev().own_storage().start();
    let host = s.address.strip_prefix("http://").unwrap().to_owned();
    // Headers and half the body: authentication and the request record happen, then the
    // handler waits for the rest of the body while the server is killed.
    let body = r#"{"data":{"v":"half-sent"}}"#;
    let mut socket = std::net::TcpStream::connect(&host).unwrap();
    write!(
        socket,
        "PUT /v1/secrets/crash/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        s.token,
        body.len(),
        &body[..10]
    )
    .unwrap();
    socket.flush().unwrap();
    let conn = db(&s);
    wait_until("the request record", FSYNC_WAIT, || {
        let found = conn
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE phase = 'request' AND path = 'crash/x'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1;
        async move { found }
    })
    .await;
    drop(conn);
    s.crash_and_restart();
    drop(socket);

    let (status, _) = s.call(Method::GET, "/v1/secrets/crash/x", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, unknown) = s
        .call(Method::GET, "/v1/audit/logs?outcome=unknown", None)
        .await;
    let logs = unknown["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{unknown}");
    assert_eq!(logs[0]["action"], "secrets.write");
    assert_eq!(logs[0]["path"], "crash/x");
    assert_eq!(logs[0]["phase"], "request");
    assert_eq!(logs[0]["identity_id"], "root");
    let v = verify(&s).await;
    assert_eq!(v["verified"], true, "{v}");
}

#[tokio::test]
async fn verify_reports_rewrites_an_attacker_without_the_key_can_make() {
    let mut s = Server::dev()
        .own_storage()
        .args(["--audit-checkpoint-records", "1"])
        .start();
    for i in 0..6 {
        s.write(&format!("t/{i}"), json!({"data": {"i": i}})).await;
    }
    let conn = db(&s);
    let original = snapshot(&conn);

    // 1. An edit without re-hashing.
    conn.execute(
        "UPDATE audit_log SET body = replace(body, '\"t/2\"', '\"t/elsewhere\"'), path = 't/elsewhere' WHERE path = 't/2' AND phase = 'response'",
        [],
    )
    .unwrap();
    let edited: i64 = conn
        .query_row(
            "SELECT seq FROM audit_log WHERE path = 't/elsewhere'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v = verify(&s).await;
    assert_eq!(
        (v["verified"].clone(), v["first_broken"]["seq"].as_i64()),
        (json!(false), Some(edited)),
        "{v}"
    );
    conn.execute("UPDATE audit_log SET path = 't/2' WHERE seq = ?1", [edited])
        .unwrap();
    restore(&conn, &original);
    assert_eq!(verify(&s).await["verified"], true);

    // 2. The same edit, and every later record re-hashed with plain SHA-256.
    let original = snapshot(&conn);
    rewrite_with_sha256(&conn, (5, i64::MAX), |r| {
        r["identity_id"] = json!("user:mallory@evil.example")
    });
    let v = verify(&s).await;
    assert_eq!(v["first_broken"]["seq"], 5, "{v}");
    assert!(
        v["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("keyed hash"),
        "{v}"
    );
    restore(&conn, &original);

    // 3. The whole log re-hashed (a downgrade to the unkeyed rule).
    let original = snapshot(&conn);
    rewrite_with_sha256(&conn, (1, i64::MAX), |_| {});
    let v = verify(&s).await;
    assert_eq!(v["first_broken"]["seq"], 1, "{v}");
    restore(&conn, &original);

    // 4. A record deleted in the middle.
    conn.execute_batch(
        "CREATE TEMP TABLE saved AS SELECT * FROM audit_log WHERE seq = 4; \
         DELETE FROM audit_log WHERE seq = 4;",
    )
    .unwrap();
    let v = verify(&s).await;
    assert_eq!(v["first_broken"]["seq"], 5, "{v}");
    assert!(
        v["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{v}"
    );
    conn.execute_batch("INSERT INTO audit_log SELECT * FROM saved;")
        .unwrap();
    let v = verify(&s).await;
    assert_eq!(v["verified"], true, "restored: {v}");

    // 5. The tail truncated while the server is down: the signed checkpoint in the data
    //    store still names the last record.
    wait_until("a checkpoint of the tail", FSYNC_WAIT, || async {
        let v = verify(&s).await;
        v["checkpoint"]["seq"] == v["last_seq"]
    })
    .await;
    assert!(s.stop_gracefully().success());
    let covered: i64 = conn
        .query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    conn.execute("DELETE FROM audit_log WHERE seq > ?1", [covered - 3])
        .unwrap();
    drop(conn);
    s.crash_and_restart();
    let v = verify(&s).await;
    assert_eq!(v["verified"], false, "{v}");
    assert!(
        v["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("tail truncated"),
        "{v}"
    );
    assert_eq!(
        v["checkpoint"]["seq"].as_i64(),
        Some(covered),
        "the server did not re-sign over the gap: {v}"
    );

    // 6. The checkpoint removed from the data store.
    let data = rusqlite::Connection::open(s.data_dir().join("scaivault.db")).unwrap();
    data.execute("DELETE FROM meta WHERE key = 'audit_checkpoint'", [])
        .unwrap();
    let v = verify(&s).await;
    assert_eq!(v["verified"], false, "{v}");
    assert!(
        v["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("no signed checkpoint"),
        "{v}"
    );
}

#[tokio::test]
async fn a_forged_checkpoint_is_reported() {
    let mut s = Server::dev()
        .own_storage()
        .args(["--audit-checkpoint-records", "1"])
        .start();
    s.write("f/a", json!({"data": {"v": 1}})).await;
    wait_until("a checkpoint", FSYNC_WAIT, || async {
        verify(&s).await["checkpoint"]["seq"].as_u64() >= Some(2)
    })
    .await;
    let v = verify(&s).await;
    assert_eq!(v["verified"], true, "{v}");
    let checkpoint = &v["checkpoint"];
    assert_eq!(checkpoint["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(checkpoint["signature"].as_str().unwrap().len(), 128);
    assert_eq!(checkpoint["keyed_from"], 1);
    // The checkpoint moved back (to hide a truncated tail), its signature kept, while the
    // server is down (a running server overwrites it with the next real checkpoint).
    assert!(s.stop_gracefully().success());
    let v = {
        let data = rusqlite::Connection::open(s.data_dir().join("scaivault.db")).unwrap();
        let body: Vec<u8> = data
            .query_row(
                "SELECT value FROM meta WHERE key = 'audit_checkpoint'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let checkpoint = &v;
    let data = rusqlite::Connection::open(s.data_dir().join("scaivault.db")).unwrap();
    let mut forged = checkpoint.clone();
    forged["seq"] = json!(1);
    data.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'audit_checkpoint'",
        [serde_json::to_vec(&forged).unwrap()],
    )
    .unwrap();
    drop(data);
    s.crash_and_restart();
    let v = verify(&s).await;
    assert_eq!(v["verified"], false, "{v}");
    assert!(
        v["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{v}"
    );
}

/// A log written before keyed chaining (plain SHA-256, no checkpoint, no signing key)
/// stays verifiable after the upgrade; its part is reported as unkeyed, and from the
/// upgrade on the keyed chain protects it too.
#[tokio::test]
async fn a_log_from_before_keyed_chaining_stays_verifiable() {
    let mut s = Server::dev().own_storage().start();
    for i in 0..3 {
        let _ = s
            .call(Method::GET, &format!("/v1/secrets/legacy/{i}"), None)
            .await;
    }
    assert!(s.stop_gracefully().success());
    // Turn the data directory into what the previous release left: unkeyed records in the
    // old form (no phases), audit.db at schema version 1, no signing key or checkpoint.
    let conn = rusqlite::Connection::open(s.data_dir().join("audit.db")).unwrap();
    conn.execute("DELETE FROM audit_log WHERE phase IS NOT NULL", [])
        .unwrap();
    conn.execute_batch(
        "DROP INDEX audit_by_request; ALTER TABLE audit_log DROP COLUMN phase; \
         ALTER TABLE audit_log DROP COLUMN request_seq; \
         ALTER TABLE audit_exports DROP COLUMN running; PRAGMA user_version = 1;",
    )
    .unwrap();
    // rewrite_with_sha256 writes the columns the old schema has.
    rewrite_with_sha256(&conn, (1, i64::MAX), |_| {});
    let legacy: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert!(legacy >= 3);
    let data = rusqlite::Connection::open(s.data_dir().join("scaivault.db")).unwrap();
    data.execute(
        "DELETE FROM meta WHERE key IN ('audit_checkpoint', 'audit_signing_key')",
        [],
    )
    .unwrap();
    drop(data);

    s.crash_and_restart();
    let _ = s
        .call(Method::GET, "/v1/secrets/legacy/after-upgrade", None)
        .await;
    let v = verify(&s).await;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["legacy_unkeyed"].as_i64(), Some(legacy), "{v}");
    assert_eq!(
        v["checkpoint"]["keyed_from"].as_i64(),
        Some(legacy + 1),
        "{v}"
    );
    assert!(v["keyed"].as_u64().unwrap() >= 1, "{v}");

    // Re-hashing the legacy part now breaks the link the first keyed record holds.
    rewrite_with_sha256(&conn, (2, legacy), |r| r["path"] = json!("legacy/hidden"));
    conn.execute(
        "UPDATE audit_log SET path = 'legacy/hidden' WHERE seq = 2",
        [],
    )
    .unwrap();
    let v = verify(&s).await;
    assert_eq!(v["verified"], false, "{v}");
    assert_eq!(v["first_broken"]["seq"].as_i64(), Some(legacy + 1), "{v}");
    assert!(
        v["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("previous-hash"),
        "{v}"
    );
}

#[tokio::test]
async fn an_export_cut_off_by_a_crash_is_resumed_by_the_next_runner() {
    // An S3 endpoint that takes connections and never answers: the job is still running
    // when the server dies.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let moto = Moto::start();
    moto.create_bucket("acme-audit", "us-east-1").await;
    let mut s = Server::start(&[]);
    let credentials = |endpoint: &str| json!({"data": {"access_key_id": "AKIARESUME", "secret_access_key": "resume-secret-key", "endpoint": endpoint, "region": "us-east-1"}});
    s.write("infra/aws/uploader", credentials(&endpoint)).await;
    let (status, job) = s
        .call(
            Method::POST,
            "/v1/audit/export",
            Some(json!({
                "from": "2026-01-01T00:00:00Z", "to": "2099-12-31T23:59:59Z", "format": "jsonl",
                "destination": {"type": "s3", "bucket": "acme-audit", "prefix": "resumed/", "credentials_path": "infra/aws/uploader"}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, before) = s
        .call(Method::GET, &format!("/v1/audit/exports/{id}"), None)
        .await;
    assert_eq!(before["status"], "running", "{before}");
    assert_eq!(before["attempts"], 1, "{before}");
    // The resumed run reads the credentials afresh: these point at a live endpoint.
    s.write("infra/aws/uploader", credentials(&moto.endpoint))
        .await;

    s.crash_and_restart();
    let done = wait_for_export(&s, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["attempts"], 2,
        "resumed once, by the one runner: {done}"
    );
    assert!(done["records_exported"].as_u64().unwrap() >= 1, "{done}");
    let bucket = S3Target::new(
        "acme-audit",
        S3Credentials::new("AKIARESUME", SecretString::from("resume-secret-key")),
    )
    .with_endpoint(moto.endpoint.clone());
    let keys = S3Client::new()
        .unwrap()
        .list_objects(&bucket, "resumed/")
        .await
        .unwrap();
    assert_eq!(keys, ["resumed/part-00000.jsonl"]);
    assert!(
        s.logs().contains("resuming an audit export"),
        "the restart says what it resumed"
    );
    drop(silent);
}
