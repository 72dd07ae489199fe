//! Tokens, key rotation, durability, logs, health, OpenAPI, and `init` + `serve` with TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaivault_testkit::certs::{client_trusting, write_server_cert};
use scaivault_testkit::{Process, Server, bin, error_code, free_port, send, wait_for, wait_until};
use serde_json::json;

#[tokio::test]
async fn tokens_create_whoami_list_revoke() {
    let s = Server::start(&[]);
    let (status, me) = s.call(Method::GET, "/v1/auth/whoami", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["identity_id"], "root");
    assert_eq!(me["identity_type"], "root");
    assert!(me["expires_at"].is_null());

    let (status, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:billing-prod", "ttl": "1h", "display_name": "ci"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("svt_"));
    assert_eq!(created["identity_type"], "service_account");

    let (status, me) = send(s.req_as(&token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["identity_id"], "sa:billing-prod");
    assert_eq!(me["accessor"], created["accessor"]);
    assert!(me["expires_at"].is_string());

    // Until policies exist, a non-root identity may do nothing else; the denial names the
    // scope and is the same whether or not the secret exists.
    s.write("exists/yes", json!({"data": {"k": "v"}})).await;
    let (st1, b1) = send(s.req_as(&token, Method::GET, "/v1/secrets/exists/yes")).await;
    let (st2, b2) = send(s.req_as(&token, Method::GET, "/v1/secrets/exists/no")).await;
    assert_eq!((st1, st2), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    assert!(
        b1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("secrets:read")
    );
    assert_eq!(
        b1["error"]["message"]
            .as_str()
            .unwrap()
            .replace("exists/yes", "P"),
        b2["error"]["message"]
            .as_str()
            .unwrap()
            .replace("exists/no", "P")
    );
    let (status, _) = send(
        s.req_as(&token, Method::POST, "/v1/auth/tokens")
            .json(&json!({"identity_id": "sa:x"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only root issues tokens for now"
    );

    let (_, list) = s.call(Method::GET, "/v1/auth/tokens", None).await;
    let accessors: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["accessor"].as_str().unwrap())
        .collect();
    assert!(accessors.contains(&created["accessor"].as_str().unwrap()));
    assert!(
        !list.to_string().contains(&token),
        "token values are never listed"
    );

    let accessor = created["accessor"].as_str().unwrap();
    let (status, _) = s
        .call(Method::DELETE, &format!("/v1/auth/tokens/{accessor}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(s.req_as(&token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated"),
        "revocation is immediate"
    );
    let (status, body) = s
        .call(Method::DELETE, &format!("/v1/auth/tokens/{accessor}"), None)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "token_not_found")
    );

    for bad in [
        json!({"identity_id": "nobody"}),
        json!({"identity_id": "sa:x", "ttl": "31d"}),
        json!({"identity_id": "sa:x", "ttl": "x"}),
    ] {
        let (status, body) = s
            .call(Method::POST, "/v1/auth/tokens", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn expired_tokens_stop_working() {
    let s = Server::dev().shifted_clock().start();
    let (_, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "user:alice@acme.example", "ttl": "1s"})),
        )
        .await;
    let token = created["token"].as_str().unwrap();
    let (status, _) = send(s.req_as(token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(status, StatusCode::OK);
    // The server's wall clock jumps past the TTL; no real time needs to pass.
    s.clock().advance(Duration::from_secs(60));
    let (status, _) = send(s.req_as(token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn key_rotation_keeps_old_versions_readable() {
    let mut s = Server::start(&[]);
    s.write("rot/a", json!({"data": {"v": "before"}})).await;
    let (status, rotated) = s.call(Method::POST, "/v1/sys/keys/rotate", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rotated["key_id"], 2);
    s.write("rot/a", json!({"data": {"v": "after"}})).await;
    let (_, keys) = s.call(Method::GET, "/v1/sys/keys", None).await;
    assert_eq!(keys["active_key_id"], 2);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    s.crash_and_restart();
    let (_, v1) = s
        .call(Method::GET, "/v1/secrets/rot/a?version=1", None)
        .await;
    let (_, v2) = s
        .call(Method::GET, "/v1/secrets/rot/a?version=2", None)
        .await;
    assert_eq!(
        (v1["data"]["v"].as_str(), v2["data"]["v"].as_str()),
        (Some("before"), Some("after"))
    );
    // The raw database holds neither value in clear.
    let db = std::fs::read(s.data_dir().join("scaivault.db")).unwrap_or_default();
    let wal = std::fs::read(s.data_dir().join("scaivault.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(6).any(|w| w == b"before"),
            "plaintext in database file"
        );
    }
}

#[tokio::test]
async fn every_acknowledged_write_survives_kill_9() {
    let mut s = Server::start(&[]);
    // Concurrent writers, so acknowledgements race with the crash-free fsync path.
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..40 {
        let request = s
            .req(Method::PUT, &format!("/v1/secrets/durable/item-{i}"))
            .json(&json!({"data": {"i": i}}));
        writers.spawn(async move { (i, send(request).await) });
    }
    let mut acknowledged = Vec::new();
    while let Some(done) = writers.join_next().await {
        let (i, (status, body)) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        acknowledged.push(i);
    }
    s.crash_and_restart();
    assert_eq!(acknowledged.len(), 40);
    for i in acknowledged {
        let (status, read) = s
            .call(Method::GET, &format!("/v1/secrets/durable/item-{i}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "item {i} lost after kill -9");
        assert_eq!(read["data"]["i"], i);
    }
}

#[tokio::test]
async fn secret_values_never_reach_the_logs() {
    let s = Server::start(&[]);
    let values = [
        "log-canary-alpha-7731",
        "log-canary-beta-9920",
        "log-canary-gamma-1184",
    ];
    s.write("canary/a", json!({"data": {"password": values[0]}}))
        .await;
    s.write(
        "canary/b",
        json!({"data": {"nested": {"key": values[1]}}, "options": {"expires_in": "1h"}}),
    )
    .await;
    let _ = s
        .call(
            Method::PUT,
            "/v1/secrets/canary/c",
            Some(json!({"data": values[2]})),
        )
        .await;
    let _ = s
        .call(
            Method::PUT,
            "/v1/secrets/canary/d",
            Some(json!({"data": {"k": values[2]}, "options": {"cas": 5}})),
        )
        .await;
    let _ = s.call(Method::GET, "/v1/secrets/canary/a", None).await;
    let _ = s
        .call(
            Method::POST,
            "/v1/batch/read",
            Some(json!({"paths": ["canary/a", "canary/b"]})),
        )
        .await;
    let (_, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:logcheck"})),
        )
        .await;
    let new_token = created["token"].as_str().unwrap().to_owned();
    let _ = send(s.req_as(&new_token, Method::GET, "/v1/auth/whoami")).await;
    // The request lines reach the log file after the answer: wait for the last one.
    wait_until(
        "the last request's log line",
        Duration::from_secs(10),
        || async { s.logs().contains("/v1/auth/whoami") },
    )
    .await;
    let logs = s.logs();
    assert!(
        logs.contains("/v1/secrets/canary/a"),
        "the log has request lines: {logs}"
    );
    for value in values {
        assert!(!logs.contains(value), "secret value {value} found in logs");
    }
    assert!(!logs.contains(&new_token), "a token found in logs");
    assert!(!logs.contains(&s.token), "the root token found in logs");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let s = Server::start(&[]);
    let (status, health) = send(s.http.get(s.url("/v1/health"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let (status, _) = send(s.http.get(s.url("/v1/health/detailed"))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "detailed health needs a token"
    );
    let (status, detailed) = s.call(Method::GET, "/v1/health/detailed", None).await;
    assert_eq!(status, StatusCode::OK);
    for component in ["storage", "barrier", "jobs"] {
        assert_eq!(
            detailed["components"][component]["status"], "ok",
            "{detailed}"
        );
        assert!(
            detailed["components"][component]["latency_ms"]
                .as_f64()
                .unwrap()
                >= 0.0
        );
    }
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("scaivault_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/health/detailed\""));

    let (status, doc) = send(s.http.get(s.url("/v1/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/secrets/{path}", "get"),
        ("/v1/secrets/{path}", "put"),
        ("/v1/secrets/{path}", "delete"),
        ("/v1/secrets/{path}/metadata", "get"),
        ("/v1/secrets/{path}/metadata", "patch"),
        ("/v1/secrets/{path}/restore", "post"),
        ("/v1/secrets/{path}/versions", "get"),
        ("/v1/secrets", "get"),
        ("/v1/batch/read", "post"),
        ("/v1/auth/whoami", "get"),
        ("/v1/auth/tokens", "post"),
        ("/v1/auth/tokens", "get"),
        ("/v1/auth/tokens/{accessor}", "delete"),
        ("/v1/sys/keys/rotate", "post"),
        ("/v1/sys/keys", "get"),
        ("/v1/health", "get"),
        ("/v1/health/detailed", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    assert!(doc["components"]["schemas"]["SecretResponse"].is_object());
}

/// Waits until the server answers `client` over TLS (its CA trusted); with what status.
async fn served(client: &reqwest::Client, url: &str, token: &str, what: &str) -> StatusCode {
    wait_for(what, Duration::from_secs(12), || async {
        let resp = client.get(url).bearer_auth(token).send().await.ok()?;
        Some(resp.status())
    })
    .await
}

#[tokio::test]
async fn init_then_serve_with_tls_reload_and_wrong_key_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let key = dir.join("master.key");
    let init = Command::new(bin::server())
        .args(["init", "--data-dir"])
        .arg(&data)
        .arg("--master-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let stdout = String::from_utf8(init.stdout).unwrap();
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root token: "))
        .unwrap()
        .trim()
        .to_owned();
    let again = Command::new(bin::server())
        .args(["init", "--data-dir"])
        .arg(&data)
        .arg("--master-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success(), "init twice must fail");

    // A wrong master key is refused at start.
    let wrong = dir.join("wrong.key");
    std::fs::write(&wrong, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let refused = Command::new(bin::server())
        .args([
            "serve",
            "--tls-disable",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--master-key-file")
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("master key does not match"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // No TLS material and no explicit opt-out: refuse too.
    let no_tls = Command::new(bin::server())
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--master-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!no_tls.status.success());

    write_server_cert(dir, "one");
    write_server_cert(dir, "two");
    std::fs::copy(dir.join("one.pem"), dir.join("tls.pem")).unwrap();
    std::fs::copy(dir.join("one.key"), dir.join("tls.key")).unwrap();
    let port = free_port();
    let _serve = Process::spawn(
        "scaivault-server serve",
        Command::new(bin::server())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--tls-reload-interval",
                "1s",
                "--data-dir",
            ])
            .arg(&data)
            .env(
                "SCAIVAULT_MASTER_KEY",
                std::fs::read_to_string(&key).unwrap().trim(),
            )
            .arg("--tls-cert")
            .arg(dir.join("tls.pem"))
            .arg("--tls-key")
            .arg(dir.join("tls.key")),
        &dir.join("serve.log"),
    );
    let url = format!("https://localhost:{port}/v1/auth/whoami");
    let trust_one = client_trusting(&dir.join("one-ca.pem"));
    let trust_two = client_trusting(&dir.join("two-ca.pem"));
    let status = served(&trust_one, &url, &root, "the server to answer over TLS").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        trust_two.get(&url).send().await.is_err(),
        "second CA not trusted yet"
    );

    // Swap the files: the server picks the new certificate up without a restart.
    std::fs::copy(dir.join("two.key"), dir.join("tls.key")).unwrap();
    std::fs::copy(dir.join("two.pem"), dir.join("tls.pem")).unwrap();
    let status = served(&trust_two, &url, &root, "the new certificate to be served").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn storage_that_cannot_write_answers_503_with_retry_after_and_recovers() {
    let s = Server::dev().own_storage().start();
    s.write("lock/a", json!({"data": {"v": 1}})).await;
    // Another process holds the write lock: the server's writer waits its busy timeout,
    // then reports storage unavailable instead of hanging or answering 500.
    let db = s.data_dir().join("scaivault.db");
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let resp = s
        .req(Method::PUT, "/v1/secrets/lock/a")
        .json(&json!({"data": {"v": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "storage_unavailable");
    // Reads keep working from the last committed state while the writer is blocked.
    let (status, read) = s.call(Method::GET, "/v1/secrets/lock/a", None).await;
    assert_eq!(
        (status, read["data"]["v"].as_i64()),
        (StatusCode::OK, Some(1))
    );
    locker.execute_batch("ROLLBACK;").unwrap();
    drop(locker);
    s.write("lock/a", json!({"data": {"v": 2}})).await;
}
