//! `Idempotency-Key` against the real server: a mutation retried after a lost answer is
//! applied once, a key is bound to its request and its caller, bad keys are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaivault_client::api::auth::CreateTokenRequest;
use scaivault_client::api::secrets::WriteSecretRequest;
use scaivault_client::{Client, RetryPolicy};
use scaivault_testkit::{Server, error_code, send};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotency-replayed";

/// Reads one HTTP/1.1 message (head and a `content-length` body) from `socket`.
async fn read_message(socket: &mut TcpStream) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return buffer;
            }
        }
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return buffer;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A TCP proxy in front of the server that loses the first answer: it forwards the first
/// request, waits for the server's whole response, then closes the client's connection
/// without relaying it. Later connections are relayed. Records each connection's first
/// request head.
struct LosingProxy {
    address: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl LosingProxy {
    async fn start(upstream: &str) -> LosingProxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            let mut connections = 0usize;
            while let Ok((mut client, _)) = listener.accept().await {
                connections += 1;
                let lose = connections == 1;
                let seen = Arc::clone(&seen);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let request = read_message(&mut client).await;
                    let head = String::from_utf8_lossy(&request)
                        .split("\r\n\r\n")
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(head);
                    let mut server = TcpStream::connect(&upstream).await.unwrap();
                    server.write_all(&request).await.unwrap();
                    if lose {
                        // The server has answered (so it has applied the change) when
                        // its response is read; the client never sees it.
                        let response = read_message(&mut server).await;
                        assert!(response.starts_with(b"HTTP/1.1 2"), "first attempt failed");
                        drop(client);
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        LosingProxy { address, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn key_of(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case(KEY)
            .then(|| value.trim().to_owned())
    })
}

fn client_through(proxy: &LosingProxy, token: &str) -> Client {
    Client::builder(&proxy.address)
        .token(token)
        .retry_policy(RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(2),
        })
        .build()
        .unwrap()
}

async fn version_count(s: &Server, path: &str) -> usize {
    let (status, versions) = s
        .call(Method::GET, &format!("/v1/secrets/{path}/versions"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    versions["versions"].as_array().unwrap().len()
}

/// Sends `method path` with `body` and an Idempotency-Key; returns status, whether the
/// answer was a replay, and the body.
async fn keyed(
    s: &Server,
    token: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, bool, Value) {
    let mut request = s.req_as(token, method, path).header(KEY, key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let replayed = response
        .headers()
        .get(REPLAYED)
        .is_some_and(|v| v == "true");
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, replayed, body)
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_applied_once() {
    let s = Server::start(&[]);
    let proxy = LosingProxy::start(&s.address).await;
    let client = client_through(&proxy, &s.token);
    let request: WriteSecretRequest =
        serde_json::from_value(json!({"data": {"password": "hunter2"}})).unwrap();
    let written = client.write("app/lost-answer", &request).await.unwrap();
    assert_eq!(written.version, 1);
    assert_eq!(version_count(&s, "app/lost-answer").await, 1);
    // Two attempts through the proxy, one key: the second got the first's answer.
    let requests = proxy.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let keys: Vec<Option<String>> = requests.iter().map(|r| key_of(r)).collect();
    assert!(keys[0].is_some(), "{requests:#?}");
    assert_eq!(keys[0], keys[1]);
    // A second logical write is a new request with a new key: a new version.
    let again = client.write("app/lost-answer", &request).await.unwrap();
    assert_eq!(again.version, 2);
}

#[tokio::test]
async fn a_token_created_with_a_lost_answer_is_issued_once() {
    let s = Server::start(&[]);
    let proxy = LosingProxy::start(&s.address).await;
    let client = client_through(&proxy, &s.token);
    let request = CreateTokenRequest {
        identity_id: "sa:lost-answer".into(),
        ttl: None,
        display_name: Some("lost-answer".into()),
    };
    let created = client.create_token(&request).await.unwrap();
    assert_eq!(proxy.requests().len(), 2);
    let (status, tokens) = s.call(Method::GET, "/v1/auth/tokens", None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let issued: Vec<&Value> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["identity_id"] == "sa:lost-answer")
        .collect();
    assert_eq!(issued.len(), 1, "{tokens}");
    assert_eq!(issued[0]["accessor"], json!(created.accessor));
    // The replayed token works, and it never sits in clear in the data store.
    let (status, me) = send(s.req_as(&created.token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let secret_part = created.token.trim_start_matches("svt_");
    for file in ["scaivault.db", "scaivault.db-wal"] {
        let bytes = std::fs::read(s.data_dir().join(file)).unwrap_or_default();
        assert!(
            !bytes
                .windows(secret_part.len())
                .any(|w| w == secret_part.as_bytes()),
            "the token is in clear in {file}"
        );
    }
}

#[tokio::test]
async fn same_key_same_request_replays_and_a_different_request_is_refused() {
    let s = Server::start(&[]);
    let body = json!({"data": {"k": "v1"}});
    let path = "/v1/secrets/app/replay";
    let first = keyed(
        &s,
        &s.token,
        Method::PUT,
        path,
        "key-replay-0001",
        Some(body.clone()),
    )
    .await;
    assert_eq!((first.0, first.1), (StatusCode::OK, false), "{}", first.2);
    let repeat = keyed(
        &s,
        &s.token,
        Method::PUT,
        path,
        "key-replay-0001",
        Some(body.clone()),
    )
    .await;
    assert_eq!((repeat.0, repeat.1), (StatusCode::OK, true), "{}", repeat.2);
    assert_eq!(repeat.2, first.2, "the first answer, byte for byte");
    assert_eq!(version_count(&s, "app/replay").await, 1);
    // The same key for another body, path or method: 422, and nothing is applied.
    for (method, path, body) in [
        (Method::PUT, path, json!({"data": {"k": "v2"}})),
        (Method::PUT, "/v1/secrets/app/other", body.clone()),
        (Method::POST, path, body.clone()),
    ] {
        let (status, _, answer) =
            keyed(&s, &s.token, method, path, "key-replay-0001", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(error_code(&answer), "idempotency_key_reused");
    }
    assert_eq!(version_count(&s, "app/replay").await, 1);
    let (status, _) = s.call(Method::GET, "/v1/secrets/app/other", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A key on a read is ignored (reads are repeatable anyway).
    let (status, replayed, _) =
        keyed(&s, &s.token, Method::GET, path, "key-replay-0001", None).await;
    assert_eq!((status, replayed), (StatusCode::OK, false));
}

#[tokio::test]
async fn a_settled_error_is_replayed_too() {
    let s = Server::start(&[]);
    let path = "/v1/secrets/app/cas";
    let body = json!({"data": {"k": "v"}, "options": {"cas": 7}});
    let (status, replayed, first) = keyed(
        &s,
        &s.token,
        Method::PUT,
        path,
        "key-cas-00001",
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::CONFLICT, false), "{first}");
    assert_eq!(error_code(&first), "cas_mismatch");
    let (status, replayed, again) =
        keyed(&s, &s.token, Method::PUT, path, "key-cas-00001", Some(body)).await;
    assert_eq!((status, replayed), (StatusCode::CONFLICT, true));
    assert_eq!(again, first);
}

#[tokio::test]
async fn another_callers_same_key_is_its_own() {
    let s = Server::start(&[]);
    let (status, policy) = s
        .call(
            Method::POST,
            "/v1/policies",
            Some(json!({"name": "writer", "rules": [{"path_pattern": "app/**", "permissions": ["read", "write", "list"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{policy}");
    let (status, bound) = s
        .call(
            Method::POST,
            &format!("/v1/policies/{}/bindings", policy["id"].as_str().unwrap()),
            Some(json!({"identity_type": "service_account", "identity_id": "sa:other"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bound}");
    let (status, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:other"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let other = created["token"].as_str().unwrap().to_owned();

    let path = "/v1/secrets/app/shared";
    let body = json!({"data": {"k": "v"}});
    let (status, replayed, mine) = keyed(
        &s,
        &s.token,
        Method::PUT,
        path,
        "key-shared-0001",
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{mine}");
    // Same key, same request, another identity: run for that caller, not replayed.
    let (status, replayed, theirs) = keyed(
        &s,
        &other,
        Method::PUT,
        path,
        "key-shared-0001",
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{theirs}");
    assert_eq!(
        (mine["version"].clone(), theirs["version"].clone()),
        (json!(1), json!(2))
    );
    // Each caller's repeat replays its own answer.
    let (_, replayed, again) =
        keyed(&s, &other, Method::PUT, path, "key-shared-0001", Some(body)).await;
    assert!(replayed);
    assert_eq!(again["version"], json!(2));
    assert_eq!(version_count(&s, "app/shared").await, 2);
}

#[tokio::test]
async fn malformed_keys_are_refused_before_anything_runs() {
    let s = Server::start(&[]);
    let path = "/v1/secrets/app/bad-key";
    let body = json!({"data": {"k": "v"}});
    let too_long = "k".repeat(129);
    for key in [
        "short",
        "has spaces in it",
        "slash/in/the/key",
        too_long.as_str(),
    ] {
        let (status, _, answer) =
            keyed(&s, &s.token, Method::PUT, path, key, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {answer}");
        assert_eq!(error_code(&answer), "invalid_idempotency_key");
    }
    let (status, answer) = send(
        s.req(Method::PUT, path)
            .header(KEY, "key-number-one")
            .header(KEY, "key-number-two")
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(error_code(&answer), "invalid_idempotency_key");
    let (status, _) = s.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no attempt was applied");
    // The quoted form of the IETF draft is the same key as the bare one.
    let (status, replayed, _) = keyed(
        &s,
        &s.token,
        Method::PUT,
        path,
        "\"key-quoted-1\"",
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::OK, false));
    let (status, replayed, _) =
        keyed(&s, &s.token, Method::PUT, path, "key-quoted-1", Some(body)).await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
}

#[tokio::test]
async fn concurrent_repeats_run_the_request_once() {
    let s = Arc::new(Server::start(&[]));
    let body = json!({"data": {"k": "v"}});
    let attempts = (0..16).map(|_| {
        let s = Arc::clone(&s);
        let body = body.clone();
        tokio::spawn(async move {
            keyed(
                &s,
                &s.token,
                Method::PUT,
                "/v1/secrets/app/race",
                "key-race-00001",
                Some(body),
            )
            .await
        })
    });
    let mut fresh = 0;
    for attempt in attempts {
        let (status, replayed, answer) = attempt.await.unwrap();
        match status {
            StatusCode::OK if !replayed => fresh += 1,
            StatusCode::OK => assert_eq!(answer["version"], json!(1)),
            StatusCode::CONFLICT => assert_eq!(error_code(&answer), "idempotency_key_in_flight"),
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one attempt ran");
    assert_eq!(version_count(&s, "app/race").await, 1);
}
