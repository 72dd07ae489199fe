//! The event stream (`GET /v1/events/stream`, Server-Sent Events): changes arrive as
//! they happen, a client resumes after a disconnect with `Last-Event-ID` and misses
//! nothing, filters apply, and every event is authorised when it is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use scaivault_testkit::server::on_postgres;
use scaivault_testkit::{Server, send};
use serde_json::{Value, json};

/// How long a test waits for one event before it fails.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// Reads events off a streaming response, skipping comments (heartbeats).
struct EventReader {
    response: reqwest::Response,
    buffer: String,
    /// The position the stream announced it starts from (its first message).
    start: Option<u64>,
}

impl EventReader {
    async fn open(request: reqwest::RequestBuilder) -> EventReader {
        let response = request.send().await.expect("stream opened");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        EventReader {
            response,
            buffer: String::new(),
            start: None,
        }
    }

    async fn next(&mut self) -> Sse {
        tokio::time::timeout(EVENT_WAIT, self.read())
            .await
            .expect("an event within the wait")
    }

    /// Whether the server ends the stream (within the wait), skipping events until then.
    async fn ends(&mut self) -> bool {
        tokio::time::timeout(EVENT_WAIT, async {
            loop {
                match self.response.chunk().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return true,
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    async fn read(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        sse.id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if sse.event.is_empty() {
                    continue; // a comment: the heartbeat
                }
                sse.data = serde_json::from_str(&data).unwrap();
                if sse.event == "position" {
                    assert!(self.start.is_none(), "a second position: {block}");
                    assert_eq!(sse.data["after"].to_string(), sse.id, "{block}");
                    self.start = Some(sse.id.parse().unwrap());
                    continue;
                }
                assert!(
                    self.start.is_some(),
                    "an event before the position: {block}"
                );
                return sse;
            }
            let chunk = self
                .response
                .chunk()
                .await
                .expect("stream readable")
                .expect("stream still open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn stream(s: &Server, token: &str, query: &str) -> reqwest::RequestBuilder {
    s.req_as(token, Method::GET, &format!("/v1/events/stream?{query}"))
}

#[tokio::test]
async fn changes_arrive_as_they_happen_and_a_client_resumes_where_it_stopped() {
    let s = Server::start(&[]);
    s.write("before/stream", json!({"data": {"v": 0}})).await;
    let mut events = EventReader::open(stream(&s, &s.token, "path_prefix=live/")).await;
    let written = Instant::now();
    s.write("live/a", json!({"data": {"v": "secret-value-1"}}))
        .await;
    let created = events.next().await;
    println!("write to receipt: {:?}", written.elapsed());
    // The stream said where it started: just before the first event it sent.
    assert_eq!(
        events.start,
        Some(created.data["seq"].as_u64().unwrap() - 1)
    );
    assert_eq!(created.event, "secret.created", "{created:?}");
    assert_eq!(created.data["path"], "live/a");
    assert_eq!(created.data["version"], 1);
    assert_eq!(created.id, created.data["seq"].to_string());
    s.write("live/a", json!({"data": {"v": "secret-value-2"}}))
        .await;
    let updated = events.next().await;
    assert_eq!(
        (updated.event.as_str(), &updated.data["version"]),
        ("secret.updated", &json!(2))
    );
    drop(events);

    // Written while no one listened: a client that resumes gets them, in order, once.
    s.write("live/a", json!({"data": {"v": "secret-value-3"}}))
        .await;
    s.write("live/b", json!({"data": {"v": "secret-value-4"}}))
        .await;
    let mut resumed = EventReader::open(
        stream(&s, &s.token, "path_prefix=live/").header("Last-Event-ID", &updated.id),
    )
    .await;
    let third = resumed.next().await;
    assert_eq!(
        resumed.start.map(|s| s.to_string()),
        Some(updated.id.clone())
    );
    let fourth = resumed.next().await;
    assert_eq!(
        (&third.data["path"], &third.data["version"]),
        (&json!("live/a"), &json!(3))
    );
    assert_eq!(
        (fourth.event.as_str(), &fourth.data["path"]),
        ("secret.created", &json!("live/b"))
    );
    // And live again after the replay.
    s.write("live/c", json!({"data": {"v": 5}})).await;
    assert_eq!(resumed.next().await.data["path"], "live/c");
    for e in [&created, &updated, &third, &fourth] {
        assert!(!e.data.to_string().contains("secret-value"), "no values");
    }

    // Type filters; a malformed position is a 400.
    let mut deletions = EventReader::open(stream(
        &s,
        &s.token,
        "types=secret.deleted&path_prefix=live/",
    ))
    .await;
    s.write("live/d", json!({"data": {"v": 6}})).await;
    let (status, _) = s.call(Method::DELETE, "/v1/secrets/live/d", None).await;
    assert!(status.is_success());
    let deleted = deletions.next().await;
    assert_eq!(
        (deleted.event.as_str(), &deleted.data["path"]),
        ("secret.deleted", &json!("live/d"))
    );
    let (status, body) = send(stream(&s, &s.token, "").header("Last-Event-ID", "yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn every_event_is_authorised_when_it_is_sent() {
    let s = Server::start(&[]);
    let (_, policy) = s
        .call(
            Method::POST,
            "/v1/policies",
            Some(json!({"name": "watcher", "rules": [
                {"path_pattern": "flow/**", "permissions": ["list"]},
                {"path_pattern": "marker/**", "permissions": ["list"]}]})),
        )
        .await;
    let id = policy["id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/policies/{id}/bindings"),
            Some(json!({"identity_type": "service_account", "identity_id": "sa:watcher"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, issued) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:watcher"})),
        )
        .await;
    let token = issued["token"].as_str().unwrap();
    let mut events = EventReader::open(stream(&s, token, "")).await;

    // Paths it may list arrive; others, and policy changes, do not.
    s.write("other/hidden", json!({"data": {"v": 1}})).await;
    s.write("flow/a", json!({"data": {"v": 1}})).await;
    assert_eq!(events.next().await.data["path"], "flow/a");

    // The policy loses `flow/**`: a later flow event is not sent, the marker after it is.
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/v1/policies/{id}"),
            Some(json!({"name": "watcher", "rules": [
                {"path_pattern": "marker/**", "permissions": ["list"]}]})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    s.write("flow/b", json!({"data": {"v": 2}})).await;
    s.write("marker/after", json!({"data": {"v": 3}})).await;
    let next = events.next().await;
    assert_eq!(next.data["path"], "marker/after", "{next:?}");
}

#[tokio::test]
async fn a_stream_ends_when_its_token_is_revoked_or_expires() {
    let s = Server::start(&[]);
    let token_with = |ttl: Option<&str>| {
        let s = &s;
        let ttl = ttl.map(str::to_owned);
        async move {
            let mut body = json!({"identity_id": "sa:streamer"});
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let (status, issued) = s.call(Method::POST, "/v1/auth/tokens", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{issued}");
            (
                issued["token"].as_str().unwrap().to_owned(),
                issued["accessor"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (token, accessor) = token_with(None).await;
    let mut events = EventReader::open(stream(&s, &token, "")).await;
    let (status, _) = s
        .call(Method::DELETE, &format!("/v1/auth/tokens/{accessor}"), None)
        .await;
    assert!(status.is_success());
    assert!(events.ends().await, "a revoked token's stream ends");

    let (short, _) = token_with(Some("2s")).await;
    let mut events = EventReader::open(stream(&s, &short, "")).await;
    assert!(events.ends().await, "an expired token's stream ends");
}

/// A subscriber that stops reading: a raw connection (closed by the server when its
/// stream ends) with a small receive buffer.
async fn stalled_subscriber(s: &Server, query: &str) -> tokio::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address: std::net::SocketAddr = s.address.trim_start_matches("http://").parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&address.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let request = format!(
        "GET /v1/events/stream?{query} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\n\r\n",
        s.token
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_with_where_to_resume_and_holds_up_no_one() {
    use tokio::io::AsyncReadExt;
    // More than the hub's 1024 plus what the sockets and the HTTP server buffer for a
    // connection that reads nothing (about 2.8 MB, 13,600 events, on this machine).
    const WRITES: usize = 20_000;
    // What is tested is the hub and the HTTP stream, the same on either store: the
    // PostgreSQL pass would spend minutes on the writes for nothing more.
    if on_postgres() {
        return;
    }
    let s = Server::start(&["--rate-limit-per-minute", "0"]);
    let mut stalled = stalled_subscriber(&s, "path_prefix=slow/").await;
    let mut keeping_up = EventReader::open(stream(&s, &s.token, "path_prefix=slow/")).await;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < WRITES {
            let sse = keeping_up.next().await;
            assert_eq!(sse.event, "secret.created", "{:?}", sse.data);
            seqs.push(sse.data["seq"].as_u64().unwrap());
        }
        seqs
    });
    // Writers on several connections, while one subscriber reads nothing.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url, token) = (s.http.clone(), s.address.clone(), s.token.clone());
            tokio::spawn(async move {
                for i in (w..WRITES).step_by(8) {
                    let (status, body) = send(
                        http.put(format!("{url}/v1/secrets/slow/{i}"))
                            .bearer_auth(&token)
                            .json(&json!({"data": {"k": "v"}})),
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // The reader that kept up has every event, in order: the stalled one held up no one.
    let seqs = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    let last = *seqs.last().unwrap();

    // The stalled subscriber, read at last: some events, then `lagged` with where to
    // resume, then the end of the stream.
    let mut text = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut text))
        .await
        .expect("the server ends the stalled stream")
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    let lagged = text.find("event: lagged").expect("a lagged event");
    let resume: u64 = text[lagged..]
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .expect("the lagged event's id")
        .trim()
        .parse()
        .unwrap();
    assert!(
        resume < last,
        "dropped at {resume}, the last event is {last}"
    );
    println!(
        "a stalled subscriber was dropped {} events behind the last write",
        last - resume
    );
    // Resuming there misses nothing.
    let mut resumed = EventReader::open(
        stream(&s, &s.token, "path_prefix=slow/").header("last-event-id", resume.to_string()),
    )
    .await;
    let expected: Vec<u64> = seqs.iter().copied().filter(|seq| *seq > resume).collect();
    for seq in expected {
        assert_eq!(resumed.next().await.data["seq"].as_u64(), Some(seq));
    }
}
