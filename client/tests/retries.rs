//! The retry loop against a scripted HTTP responder: which answers are retried, how often,
//! and what reaches the caller.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scaivault_client::api::ErrorCode;
use scaivault_client::api::auth::CreateTokenRequest;
use scaivault_client::{Client, Error, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const READ_OK: &str = r#"{"path": "app/db", "version": 1, "data": {"url": "x"}, "secret_type": "database",
  "created_at": "2026-11-26T17:00:00Z", "created_by": "root", "expires_at": null,
  "metadata": {"tags": [], "description": null}}"#;

fn error_body(code: &str) -> String {
    format!(
        r#"{{"error": {{"code": "{code}", "message": "try later", "request_id": "req_{code}"}}}}"#
    )
}

/// A scripted "status" that closes the connection after reading the request, as if the
/// answer were lost on the way back.
const LOSE: u16 = 0;

/// Answers the n-th request with the n-th scripted response (the last one repeats) and
/// records each request's head.
struct Responder {
    address: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Responder {
    async fn start(script: Vec<(u16, &'static str, String)>) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let head = read_request(&mut socket).await;
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(head);
                    seen.len() - 1
                };
                let (status, extra_headers, body) = &script[n.min(script.len() - 1)];
                if *status == LOSE {
                    // The request arrived; its answer never leaves.
                    drop(socket);
                    continue;
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Responder { address, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads the request head and its body (by content-length); returns the head.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return head;
            }
        }
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

/// The `Idempotency-Key` a request head carries, if any.
fn idempotency_key(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("idempotency-key")
            .then(|| value.trim().to_owned())
    })
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
    }
}

fn client(responder: &Responder) -> Client {
    Client::builder(&responder.address)
        .token("svt_test_token")
        .retry_policy(fast_retries())
        .build()
        .unwrap()
}

#[tokio::test]
async fn unavailable_is_retried_until_it_succeeds() {
    let responder = Responder::start(vec![
        (503, "retry-after: 0\r\n", error_body("storage_unavailable")),
        (503, "", error_body("sealed")),
        (200, "", READ_OK.to_owned()),
    ])
    .await;
    let secret = client(&responder).read("app/db").await.unwrap();
    assert_eq!(secret.version, 1);
    let requests = responder.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[0].starts_with("GET /v1/secrets/app/db HTTP/1.1"),
        "{}",
        requests[0]
    );
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer svt_test_token"),
        "{}",
        requests[0]
    );
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let responder = Responder::start(vec![
        (429, "retry-after: 1\r\n", error_body("rate_limited")),
        (200, "", READ_OK.to_owned()),
    ])
    .await;
    let started = std::time::Instant::now();
    client(&responder).read("app/db").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(responder.requests().len(), 2);
}

#[tokio::test]
async fn a_long_retry_after_is_handed_to_the_caller() {
    let responder = Responder::start(vec![(
        429,
        "retry-after: 3600\r\n",
        error_body("rate_limited"),
    )])
    .await;
    let err = client(&responder).read("app/db").await.unwrap_err();
    match err {
        Error::Api {
            status,
            code,
            retry_after,
            request_id,
            ..
        } => {
            assert_eq!(status, 429);
            assert_eq!(code, ErrorCode::RateLimited);
            assert_eq!(retry_after, Some(Duration::from_secs(3600)));
            assert_eq!(request_id.as_deref(), Some("req_rate_limited"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(responder.requests().len(), 1);
}

#[tokio::test]
async fn retries_run_out() {
    let responder = Responder::start(vec![(503, "", error_body("storage_unavailable"))]).await;
    let err = client(&responder).read("app/db").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StorageUnavailable));
    assert_eq!(
        responder.requests().len(),
        4,
        "one attempt plus three retries"
    );
}

#[tokio::test]
async fn zero_retries_disables_retrying() {
    let responder = Responder::start(vec![(503, "", error_body("storage_unavailable"))]).await;
    let client = Client::builder(&responder.address)
        .max_retries(0)
        .build()
        .unwrap();
    client.read("app/db").await.unwrap_err();
    assert_eq!(responder.requests().len(), 1);
}

#[tokio::test]
async fn token_creation_and_key_rotation_are_retried_with_one_key_each() {
    let token = r#"{"token": "svt_new", "accessor": "acc_1", "identity_id": "sa:ci",
      "identity_type": "service_account", "issued_at": "2026-11-26T17:00:00Z", "expires_at": null}"#;
    let key = r#"{"key_id": 2, "created_at": "2026-11-26T17:00:00Z"}"#;
    let responder = Responder::start(vec![
        (503, "", error_body("storage_unavailable")),
        (201, "", token.to_owned()),
        (LOSE, "", String::new()),
        (200, "", key.to_owned()),
    ])
    .await;
    let request = CreateTokenRequest {
        identity_id: "sa:ci".into(),
        ttl: None,
        display_name: None,
    };
    let c = client(&responder);
    assert_eq!(c.create_token(&request).await.unwrap().accessor, "acc_1");
    assert_eq!(c.rotate_keys().await.unwrap().key_id, 2);
    let keys: Vec<Option<String>> = responder
        .requests()
        .iter()
        .map(|r| idempotency_key(r))
        .collect();
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().all(Option::is_some), "{keys:?}");
    // One key per logical call, reused by its retry.
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[2], keys[3]);
    assert_ne!(keys[0], keys[2]);
}

#[tokio::test]
async fn a_login_is_never_repeated_even_after_a_lost_answer() {
    let responder = Responder::start(vec![(LOSE, "", String::new())]).await;
    let jwt = scaivault_client::SecretString::from("eyJhbGciOi.payload.signature".to_owned());
    let err = client(&responder)
        .login_kubernetes(&jwt, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    let requests = responder.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(idempotency_key(&requests[0]), None);
}

#[tokio::test]
async fn a_lost_answer_is_retried_for_reads_and_keyed_writes() {
    let written = r#"{"path": "app/db", "version": 1, "created_at": "2026-11-26T17:00:00Z", "expires_at": null}"#;
    let responder = Responder::start(vec![
        (LOSE, "", String::new()),
        (200, "", READ_OK.to_owned()),
        (LOSE, "", String::new()),
        (
            409,
            "retry-after: 0\r\n",
            error_body("idempotency_key_in_flight"),
        ),
        (200, "", written.to_owned()),
    ])
    .await;
    let c = client(&responder);
    assert_eq!(c.read("app/db").await.unwrap().version, 1);
    let request: scaivault_client::api::secrets::WriteSecretRequest =
        serde_json::from_str(r#"{"data": {"k": "v"}}"#).unwrap();
    assert_eq!(c.write("app/db", &request).await.unwrap().version, 1);
    let requests = responder.requests();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    // Reads carry no key; the write's three attempts carry one.
    assert_eq!(idempotency_key(&requests[0]), None);
    assert_eq!(idempotency_key(&requests[1]), None);
    let key = idempotency_key(&requests[2]);
    assert!(key.is_some());
    assert!(requests[2..].iter().all(|r| idempotency_key(r) == key));
}

#[tokio::test]
async fn a_reused_key_reaches_the_caller() {
    let responder = Responder::start(vec![(422, "", error_body("idempotency_key_reused"))]).await;
    let request: scaivault_client::api::secrets::WriteSecretRequest =
        serde_json::from_str(r#"{"data": {"k": "v"}}"#).unwrap();
    let err = client(&responder)
        .write("app/db", &request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IdempotencyKeyReused));
    assert_eq!(responder.requests().len(), 1);
}

#[tokio::test]
async fn writes_are_retried_with_the_same_body() {
    let written = r#"{"path": "app/db", "version": 2, "created_at": "2026-11-26T17:00:00Z", "expires_at": null}"#;
    let responder = Responder::start(vec![
        (503, "", error_body("storage_unavailable")),
        (200, "", written.to_owned()),
    ])
    .await;
    let request: scaivault_client::api::secrets::WriteSecretRequest =
        serde_json::from_str(r#"{"data": {"k": "v"}, "options": {"cas": 1}}"#).unwrap();
    let response = client(&responder).write("app/db", &request).await.unwrap();
    assert_eq!(response.version, 2);
    let requests = responder.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("PUT /v1/secrets/app/db "))
    );
}

#[tokio::test]
async fn a_down_health_document_is_an_answer_not_an_error() {
    let down = r#"{"status": "down", "version": "0.1.0", "storage": "sqlite"}"#;
    let responder = Responder::start(vec![(503, "", down.to_owned())]).await;
    let health = client(&responder).health().await.unwrap();
    assert_eq!(
        health.status,
        scaivault_client::api::health::HealthStatus::Down
    );
    assert_eq!(responder.requests().len(), 1);
}

#[tokio::test]
async fn non_json_errors_keep_status_and_request_id() {
    let responder = Responder::start(vec![(
        502,
        "x-request-id: req_proxy\r\n",
        "<html>".to_owned(),
    )])
    .await;
    let err = client(&responder).whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(
        err.to_string(),
        "unknown: HTTP 502 Bad Gateway without an error document (request req_proxy)"
    );
}

fn policy_input() -> scaivault_client::api::policy::PolicyInput {
    serde_json::from_str(
        r#"{"name": "ci", "rules": [{"path_pattern": "ci/**", "permissions": ["read"]}]}"#,
    )
    .unwrap()
}

#[tokio::test]
async fn creates_binds_and_exports_are_retried_with_their_key() {
    let responder = Responder::start(vec![(503, "", error_body("storage_unavailable"))]).await;
    let c = Client::builder(&responder.address)
        .token("svt_test_token")
        .retry_policy(RetryPolicy {
            max_retries: 1,
            ..fast_retries()
        })
        .build()
        .unwrap();
    let export: scaivault_client::api::audit::ExportRequest = serde_json::from_str(
        r#"{"from": "2026-11-01", "to": "2026-11-02", "destination": {"type": "file", "path": "a.jsonl"}}"#,
    )
    .unwrap();
    let identity = scaivault_client::api::policy::IdentityInput {
        id: "sa:ci".into(),
        display_name: None,
    };
    c.create_policy(&policy_input()).await.unwrap_err();
    c.bind_policy("pol_1", "sa:ci").await.unwrap_err();
    c.audit_export(&export).await.unwrap_err();
    c.create_identity(&identity).await.unwrap_err();
    let requests = responder.requests();
    assert_eq!(requests.len(), 8, "{requests:#?}");
    for (pair, line) in requests.chunks(2).zip([
        "POST /v1/policies HTTP/1.1",
        "POST /v1/policies/pol_1/bindings HTTP/1.1",
        "POST /v1/audit/export HTTP/1.1",
        "POST /v1/identities HTTP/1.1",
    ]) {
        assert!(pair.iter().all(|r| r.starts_with(line)), "{pair:#?}");
        let key = idempotency_key(&pair[0]);
        assert!(key.is_some(), "{}", pair[0]);
        assert_eq!(key, idempotency_key(&pair[1]));
    }
}

#[tokio::test]
async fn replacing_unbinding_and_what_if_tests_are_retried() {
    let policy = r#"{"id": "pol_1", "name": "ci", "description": null,
      "rules": [{"path_pattern": "ci/**", "permissions": ["read"], "effect": "allow"}],
      "created_at": "2026-11-26T17:00:00Z", "updated_at": "2026-11-26T17:00:00Z"}"#;
    let responder = Responder::start(vec![
        (503, "", error_body("storage_unavailable")),
        (200, "", policy.to_owned()),
        (503, "", error_body("storage_unavailable")),
        (204, "", String::new()),
        (429, "retry-after: 0\r\n", error_body("rate_limited")),
        (
            200,
            "",
            r#"{"allowed": false, "matched": [], "reason": "no policy grants secrets:read on x"}"#
                .to_owned(),
        ),
    ])
    .await;
    let c = client(&responder);
    let updated = c.update_policy("pol_1", &policy_input()).await.unwrap();
    assert_eq!(updated.rules[0].path_pattern, "ci/**");
    c.unbind_policy("pol_1", "k8s:payments/api").await.unwrap();
    let request: scaivault_client::api::policy::PolicyTestRequest =
        serde_json::from_str(r#"{"identity_id": "sa:ci", "path": "x", "permission": "read"}"#)
            .unwrap();
    assert!(!c.test_policy(&request).await.unwrap().allowed);
    let requests = responder.requests();
    assert_eq!(requests.len(), 6, "{requests:#?}");
    assert!(requests[1].starts_with("PUT /v1/policies/pol_1 HTTP/1.1"));
    // The k8s identity travels unescaped, as two path segments of the wildcard route.
    assert!(
        requests[3].starts_with("DELETE /v1/policies/pol_1/bindings/k8s:payments/api HTTP/1.1"),
        "{}",
        requests[3]
    );
    assert!(requests[5].starts_with("POST /v1/policies/test HTTP/1.1"));
}

#[tokio::test]
async fn audit_pages_follow_cursors_and_refuse_a_repeated_one() {
    let record = |seq: u64| {
        format!(
            r#"{{"id": "aud_{seq}", "seq": {seq}, "timestamp": "2026-11-26T17:00:00Z", "request_id": "req_{seq}",
              "identity_id": "root", "identity_type": "root", "action": "secrets.read", "path": "app/db",
              "permission": "secrets:read", "outcome": "success", "status": 200, "source_ip": null,
              "user_agent": null, "accessor_hmac": null, "prev_hash": "00", "hash": "11"}}"#
        )
    };
    let page = |seqs: &[u64], cursor: Option<&str>| {
        let logs: Vec<String> = seqs.iter().map(|s| record(*s)).collect();
        let cursor = cursor.map_or("null".to_owned(), |c| format!("\"{c}\""));
        format!(
            r#"{{"logs": [{}], "next_cursor": {cursor}}}"#,
            logs.join(",")
        )
    };
    let responder = Responder::start(vec![
        (200, "", page(&[1, 2], Some("2"))),
        (503, "", error_body("storage_unavailable")),
        (200, "", page(&[3], None)),
        // A second run whose server hands back the cursor it was given.
        (200, "", page(&[1], Some("1"))),
        (200, "", page(&[2], Some("1"))),
    ])
    .await;
    let c = client(&responder);
    let options = scaivault_client::AuditLogOptions {
        path: Some("app/db".into()),
        limit: Some(2),
        ..Default::default()
    };
    let all = c.audit_logs_all(&options).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let requests = responder.requests();
    assert!(
        requests[0].starts_with("GET /v1/audit/logs?path=app%2Fdb&limit=2 HTTP/1.1"),
        "{}",
        requests[0]
    );
    assert!(
        requests[2].starts_with("GET /v1/audit/logs?path=app%2Fdb&cursor=2&limit=2 HTTP/1.1"),
        "{}",
        requests[2]
    );
    let mut pages = c.audit_log_pages(&options);
    assert_eq!(pages.next_page().await.unwrap().map(|p| p.len()), Some(1));
    let err = pages.next_page().await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(pages.next_page().await.unwrap().is_none());
}
