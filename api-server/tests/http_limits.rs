//! What a production server promises under pressure, against the real binary: a flood is
//! shed with 503 `overloaded`, a slow request ends in 504 `request_timeout`, liveness
//! answers while storage is blocked and readiness tells, and one data directory serves
//! one process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use scaivault_testkit::{Server, bin, error_code, send, wait_for_blocking, wait_until};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and sends a PUT whose body never finishes: the request stays in
/// flight (its handler waits for the body) for as long as the socket is open.
async fn stalled_write(s: &Server) -> TcpStream {
    let host = s.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "PUT /v1/secrets/stall/a HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"data\":",
        s.token
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// Reads one HTTP response from a raw socket, within `limit`.
async fn read_response(socket: &mut TcpStream, limit: Duration) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// How long the server may take to notice a changed condition.
const SETTLE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_flood_beyond_the_limit_is_shed_with_503_and_probes_still_answer() {
    let s = Server::start(&["--max-concurrent-requests", "1"]);
    // The stalled request holds the only slot once the server has dispatched it; if a
    // probe got there first, the stalled one was shed itself: open it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = stalled_write(&s).await;
    loop {
        let probe = s.req(Method::GET, "/v1/auth/whoami").send().await.unwrap();
        if probe.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a request beyond the limit was not shed"
        );
        let mut byte = [0u8; 1];
        let answered = tokio::time::timeout(Duration::from_millis(50), held.read(&mut byte)).await;
        if answered.is_ok() {
            held = stalled_write(&s).await;
        }
    }
    let resp = s.req(Method::GET, "/v1/auth/whoami").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));

    // Probes are outside the limit: a busy server is not a dead one.
    let (status, health) = send(s.http.get(s.url("/v1/health"))).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _) = send(s.http.get(s.url("/v1/health/ready"))).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scaivault_http_shed_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The slot frees when the stalled client goes away.
    drop(held);
    wait_until("the server to recover after the flood", SETTLE, || async {
        s.req(Method::GET, "/v1/auth/whoami")
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

#[tokio::test]
async fn a_request_past_the_timeout_gets_504_in_the_error_shape() {
    let s = Server::start(&["--request-timeout", "1s"]);
    let mut socket = stalled_write(&s).await;
    let started = Instant::now();
    let response = read_response(&mut socket, Duration::from_secs(15)).await;
    let waited = started.elapsed();
    assert!(
        response.starts_with("HTTP/1.1 504"),
        "expected a 504, got: {response}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );
    let body: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(error_code(&body), "request_timeout");
    assert!(response.to_ascii_lowercase().contains("x-request-id: req_"));
    // The server goes on serving.
    let (status, _) = s.call(Method::GET, "/v1/auth/whoami", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn liveness_touches_no_lock_and_readiness_reports_blocked_storage() {
    let s = Server::dev().own_storage().start();
    let (status, _) = send(s.http.get(s.url("/v1/health/ready"))).await;
    assert_eq!(status, StatusCode::OK);

    // Another process holds the database's write lock.
    let locker = rusqlite::Connection::open(s.data_dir().join("scaivault.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let started = Instant::now();
    let (status, health) = send(s.http.get(s.url("/v1/health"))).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "liveness waited on storage: {:?}",
        started.elapsed()
    );
    wait_until("readiness to report the blocked writer", SETTLE, || async {
        let resp = s.http.get(s.url("/v1/health/ready")).send().await.unwrap();
        resp.status() == StatusCode::SERVICE_UNAVAILABLE
            && resp.headers().contains_key("retry-after")
    })
    .await;

    locker.execute_batch("ROLLBACK;").unwrap();
    drop(locker);
    wait_until("readiness to recover", SETTLE, || async {
        send(s.http.get(s.url("/v1/health/ready"))).await.0 == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_exits_with_a_clear_message() {
    let s = Server::start(&[]);
    let mut second = Command::new(bin::server())
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(s.data_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for_blocking(
        "the second server on a locked data directory to exit",
        Duration::from_secs(15),
        || second.try_wait().unwrap(),
    );
    assert!(!status.success(), "the second server exited 0");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("in use by another scaivault-server process"),
        "{stderr}"
    );
    // The first one is untouched.
    let (status, _) = s.call(Method::GET, "/v1/auth/whoami", None).await;
    assert_eq!(status, StatusCode::OK);
}
