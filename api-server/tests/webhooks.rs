//! Webhooks against a receiver on loopback: signed deliveries in feed order, retries on
//! their schedule (the server's wall clock moved instead of waiting hours), exhaustion and
//! disabling, a kill -9 mid-delivery that loses nothing and re-sends under the same
//! `webhook-id`, secret rotation signing twice, the SSRF guard, and authorisation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use scaivault_testkit::{Server, error_code, wait_until};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// 32 bytes, base64: a secret as `scaivault webhooks new-secret` makes them.
const SECRET: &str = "whsec_c2NhaXZhdWx0LXdlYmhvb2stdGVzdC1zZWNyZXQtMzI=";
const NEW_SECRET: &str = "whsec_YW5vdGhlci1zY2FpdmF1bHQtd2ViaG9vay1zZWNyZXQ=";
/// Long enough for a delivery on a loaded 2-core CI machine; the wait ends when it comes.
const RECEIPT: Duration = Duration::from_secs(30);
/// The retry schedule after the first attempt, as `api::webhooks` declares it.
const RETRIES: [u64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

/// What the receiver answers to its next request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answer (the server is killed meanwhile).
    Hang,
}

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    id: String,
    timestamp: i64,
    signatures: Vec<String>,
    raw: Vec<u8>,
    body: Value,
}

impl Received {
    /// Whether one of the signatures is `secret`'s over this request.
    fn signed_by(&self, secret: &str) -> bool {
        let key = STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .unwrap();
        let mut message = format!("{}.{}.", self.id, self.timestamp).into_bytes();
        message.extend_from_slice(&self.raw);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &message);
        let expected = format!("v1,{}", STANDARD.encode(tag.as_ref()));
        self.signatures.contains(&expected)
    }

    fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    fn path(&self) -> &str {
        self.body["data"]["path"].as_str().unwrap_or_default()
    }
}

#[derive(Clone)]
struct ReceiverState {
    plan: Arc<Mutex<VecDeque<Answer>>>,
    got: mpsc::UnboundedSender<Received>,
}

struct Receiver {
    url: String,
    plan: Arc<Mutex<VecDeque<Answer>>>,
    got: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, got) = mpsc::unbounded_channel();
        let plan = Arc::new(Mutex::new(VecDeque::new()));
        let state = ReceiverState {
            plan: Arc::clone(&plan),
            got: tx,
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, plan, got }
    }

    /// Answers the next requests so, then 200s.
    fn answer(&self, answers: impl IntoIterator<Item = Answer>) {
        self.plan.lock().unwrap().extend(answers);
    }

    async fn next(&mut self, what: &str) -> Received {
        tokio::time::timeout(RECEIPT, self.got.recv())
            .await
            .unwrap_or_else(|_| panic!("no delivery within {RECEIPT:?}: {what}"))
            .expect("the receiver runs")
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, raw: Bytes) -> AxumStatus {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let received = Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or(0),
        signatures: header("webhook-signature")
            .split(' ')
            .map(str::to_owned)
            .collect(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw: raw.to_vec(),
    };
    let answer = state
        .plan
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    let _ = state.got.send(received);
    match answer {
        Answer::Status(code) => AxumStatus::from_u16(code).unwrap(),
        Answer::Hang => std::future::pending().await,
    }
}

async fn create(s: &Server, name: &str, url: &str, events: &[&str], prefix: Option<&str>) -> Value {
    let mut body = json!({"name": name, "url": url, "secret": SECRET, "events": events});
    if let Some(prefix) = prefix {
        body["filters"] = json!({"path_prefix": prefix});
    }
    let (status, webhook) = s.call(Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    webhook
}

async fn deliveries(s: &Server, id: &str, query: &str) -> Vec<Value> {
    let (status, body) = s
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?{query}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

fn time_of(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn deliveries_arrive_signed_in_feed_order_and_only_for_the_filter() {
    let s = Server::start(&[]);
    let mut hook = Receiver::start().await;
    let webhook = create(
        &s,
        "app-changes",
        &hook.url,
        &["secret.created", "secret.updated"],
        Some("app/"),
    )
    .await;
    let id = webhook["id"].as_str().unwrap();
    assert!(id.starts_with("wh_"), "{webhook}");
    assert_eq!(webhook["enabled"], true);
    assert!(
        !webhook
            .to_string()
            .contains(SECRET.trim_start_matches("whsec_"))
    );

    s.write("app/a", json!({"data": {"password": "value-a-1"}}))
        .await;
    s.write("other/c", json!({"data": {"password": "value-c"}}))
        .await;
    s.write("app/b", json!({"data": {"password": "value-b"}}))
        .await;
    s.write("app/a", json!({"data": {"password": "value-a-2"}}))
        .await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        let got = hook.next("the app/ writes").await;
        assert!(got.signed_by(SECRET), "{:?}", got.signatures);
        assert!(got.id.starts_with("msg_"), "{}", got.id);
        let skew = time::OffsetDateTime::now_utc().unix_timestamp() - got.timestamp;
        assert!(
            skew.abs() < 60,
            "timestamp {} is {skew} s off",
            got.timestamp
        );
        assert_eq!(got.body["data"]["type"], got.body["type"]);
        // Never a value.
        assert!(
            !String::from_utf8_lossy(&got.raw).contains("value-"),
            "{}",
            got.body
        );
        seen.push((
            got.event_type().to_owned(),
            got.path().to_owned(),
            got.body["data"]["seq"].as_u64().unwrap(),
        ));
    }
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(t, p, _)| (t.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("secret.created", "app/a"),
            ("secret.created", "app/b"),
            ("secret.updated", "app/a")
        ]
    );
    assert!(
        seen.windows(2).all(|w| w[0].2 < w[1].2),
        "out of order: {seen:?}"
    );

    // The history, newest first, each succeeded at its first attempt.
    wait_until("the third delivery is recorded", RECEIPT, || async {
        deliveries(&s, id, "status=succeeded").await.len() == 3
    })
    .await;
    let history = deliveries(&s, id, "").await;
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[0]["event"]["path"], "app/a");
    assert_eq!(history[0]["event"]["type"], "secret.updated");
    assert_eq!(history[0]["attempts"], 1);
    assert_eq!(history[0]["attempt_log"][0]["status_code"], 200);
    let page = {
        let (_, body) = s
            .call(
                Method::GET,
                &format!("/v1/webhooks/{id}/deliveries?limit=2"),
                None,
            )
            .await;
        body
    };
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2, "{page}");
    let before = page["next_before"].as_u64().unwrap();
    let older = deliveries(&s, id, &format!("before={before}")).await;
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["event"]["path"], "app/a");
    assert_eq!(older[0]["event"]["type"], "secret.created");

    // A test event goes out at once, outside the history.
    let (status, tested) = s
        .call(Method::POST, &format!("/v1/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{tested}");
    assert_eq!(tested["delivered"], true, "{tested}");
    let got = hook.next("the test event").await;
    assert_eq!(got.event_type(), "webhook.test");
    assert!(got.signed_by(SECRET));
    assert_eq!(deliveries(&s, id, "").await.len(), 3);

    // The secret is in no answer and no log line.
    let (_, listed) = s.call(Method::GET, "/v1/webhooks", None).await;
    let (_, one) = s
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    for shown in [listed.to_string(), one.to_string(), s.logs()] {
        assert!(!shown.contains(SECRET.trim_start_matches("whsec_")));
    }
    assert_eq!(one["name"], "app-changes");
    // The change has its audit record, and the record no secret.
    let (_, audit) = s
        .call(
            Method::GET,
            "/v1/audit/logs?action=webhooks.create&limit=10",
            None,
        )
        .await;
    let records = audit["logs"].as_array().unwrap();
    assert!(records.iter().any(|r| r["outcome"] == "success"), "{audit}");
    assert!(
        !audit
            .to_string()
            .contains(SECRET.trim_start_matches("whsec_"))
    );
}

#[tokio::test]
async fn failed_attempts_follow_the_schedule_then_exhaust_and_a_dead_endpoint_is_disabled() {
    let s = Server::dev().shifted_clock().start();
    let mut hook = Receiver::start().await;
    hook.answer([Answer::Status(500); 9]);
    let webhook = create(&s, "flaky", &hook.url, &["secret.created"], None).await;
    let id = webhook["id"].as_str().unwrap().to_owned();
    s.write("first", json!({"data": {"k": "v"}})).await;
    s.write("second", json!({"data": {"k": "v"}})).await;

    let first = hook.next("the first attempt").await;
    assert_eq!(first.path(), "first");
    for (attempt, delay) in RETRIES.iter().enumerate() {
        let pending = wait_for_attempts(&s, &id, attempt as u64 + 1).await;
        // The next attempt is scheduled `delay` (plus at most a tenth) after this one.
        let log = pending["attempt_log"].as_array().unwrap();
        let last_at = time_of(&log.last().unwrap()["at"]);
        let gap = time_of(&pending["next_attempt_at"]) - last_at;
        let delay_s = time::Duration::seconds(*delay as i64);
        assert!(
            gap >= delay_s && gap <= delay_s * 1.1 + time::Duration::seconds(1),
            "attempt {}: next in {gap}, schedule says {delay} s",
            attempt + 1
        );
        assert_eq!(pending["status"], "pending");
        s.clock()
            .advance(Duration::from_millis(*delay * 1100 + 1000));
        let again = hook.next("a retry").await;
        // Still the first event: the second waits its turn, under one webhook-id.
        assert_eq!(again.path(), "first", "retry {}", attempt + 1);
        assert_eq!(again.id, first.id);
    }
    // Eight attempts, all failed: the delivery is failed and the webhook says so.
    wait_until("the delivery is failed", RECEIPT, || async {
        deliveries(&s, &id, "status=failed").await.len() == 1
    })
    .await;
    let failed = &deliveries(&s, &id, "status=failed").await[0];
    assert_eq!(failed["attempts"], 8, "{failed}");
    assert_eq!(failed["attempt_log"].as_array().unwrap().len(), 8);
    assert!(
        failed["attempt_log"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status_code"] == 500)
    );
    let (_, events) = s
        .call(Method::GET, "/v1/events?types=webhook.exhausted", None)
        .await;
    let exhausted = &events["events"][0];
    assert_eq!(exhausted["webhook_id"], id.as_str(), "{events}");
    assert!(
        exhausted["reason"].as_str().unwrap().contains("8 attempts"),
        "{exhausted}"
    );

    // Then the second event goes out (and fails once more, the 9th 500).
    let second = hook.next("the second event after the first failed").await;
    assert_eq!(second.path(), "second");
    assert_ne!(second.id, first.id);
    let (_, state) = s
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert!(state["failing_since"].is_string(), "{state}");
    assert_eq!(state["enabled"], true);

    // Failing for five days: disabled at the next failure, with a reason and an event.
    hook.answer([Answer::Status(503)]);
    s.clock().advance(Duration::from_secs(4 * 86_400));
    hook.next("the retry after days").await;
    wait_until("the webhook is disabled", RECEIPT, || async {
        let (_, state) = s
            .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
            .await;
        state["enabled"] == false
    })
    .await;
    let (_, state) = s
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert!(
        state["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed since"),
        "{state}"
    );
    let (_, events) = s
        .call(Method::GET, "/v1/events?types=webhook.disabled", None)
        .await;
    assert_eq!(events["events"][0]["webhook_id"], id.as_str(), "{events}");
    // The server's own change, audited as one.
    let (_, audit) = s
        .call(
            Method::GET,
            "/v1/audit/logs?action=webhooks.disable&limit=10",
            None,
        )
        .await;
    let records = audit["logs"].as_array().unwrap();
    assert!(
        records.iter().any(|r| r["identity_id"] == "system:webhooks"
            && r["outcome"] == "success"
            && r["path"] == id.as_str()),
        "{audit}"
    );

    // Re-enabled, it goes on where it stopped; a manual retry makes it due at once.
    let (status, enabled) = s
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert!(
        enabled["disabled_reason"].is_null() && enabled["failing_since"].is_null(),
        "{enabled}"
    );
    let pending = &deliveries(&s, &id, "status=pending").await[0];
    let (status, retried) = s
        .call(
            Method::POST,
            &format!(
                "/v1/webhooks/{id}/deliveries/{}/retry",
                pending["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    let delivered = hook.next("the second event after re-enabling").await;
    assert_eq!(delivered.path(), "second");
    assert_eq!(delivered.id, second.id);
    wait_until("the second delivery succeeded", RECEIPT, || async {
        deliveries(&s, &id, "status=succeeded").await.len() == 1
    })
    .await;
    // A failed delivery can be retried too; one that succeeded cannot.
    let failed_id = failed["id"].as_str().unwrap();
    let succeeded_id = deliveries(&s, &id, "status=succeeded").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/{succeeded_id}/retry"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/{failed_id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = hook.next("the failed delivery retried by hand").await;
    assert_eq!(again.id, first.id);
}

/// Waits until the webhook's pending delivery has `attempts` recorded; returns it (it
/// stays so until the clock reaches its next attempt).
async fn wait_for_attempts(s: &Server, id: &str, attempts: u64) -> Value {
    let recorded = |d: &Value| d["attempts"] == attempts;
    wait_until(
        &format!("attempt {attempts} is recorded"),
        RECEIPT,
        || async {
            deliveries(s, id, "status=pending")
                .await
                .first()
                .is_some_and(recorded)
        },
    )
    .await;
    deliveries(s, id, "status=pending").await.remove(0)
}

#[tokio::test]
async fn a_kill_mid_delivery_loses_nothing_and_resends_under_the_same_id() {
    let mut s = Server::start(&[]);
    let mut hook = Receiver::start().await;
    hook.answer([Answer::Hang]);
    create(&s, "crash", &hook.url, &["secret.created"], Some("crash/")).await;
    for i in 0..5 {
        s.write(&format!("crash/{i}"), json!({"data": {"k": "v"}}))
            .await;
    }
    let first = hook.next("the first delivery, never answered").await;
    assert_eq!(first.path(), "crash/0");
    // The server dies while the receiver holds the request open.
    s.crash_and_restart();
    let again = hook.next("the first delivery after the restart").await;
    assert_eq!(again.path(), "crash/0");
    assert_eq!(
        again.id, first.id,
        "a re-sent delivery keeps its webhook-id"
    );
    for i in 1..5 {
        let got = hook.next("the deliveries queued before the crash").await;
        assert_eq!(got.path(), format!("crash/{i}"));
        assert!(got.signed_by(SECRET));
    }
}

#[tokio::test]
async fn a_new_secret_signs_beside_the_previous_one() {
    let s = Server::start(&[]);
    let mut hook = Receiver::start().await;
    let webhook = create(&s, "rotating", &hook.url, &["secret.created"], None).await;
    let id = webhook["id"].as_str().unwrap();
    let (status, updated) = s
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"secret": NEW_SECRET})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_ne!(updated["secret_set_at"], webhook["secret_set_at"]);
    s.write("rotated/one", json!({"data": {"k": "v"}})).await;
    let got = hook.next("a delivery after the secret changed").await;
    assert_eq!(got.signatures.len(), 2, "{:?}", got.signatures);
    assert!(got.signed_by(NEW_SECRET) && got.signed_by(SECRET));
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let s = Server::start(&[]);
    let hook = Receiver::start().await;
    let base =
        json!({"name": "n", "url": hook.url, "secret": SECRET, "events": ["secret.created"]});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    for (body, code) in [
        (with("url", json!("ftp://example.com/")), "invalid_request"),
        (
            with("url", json!("http://169.254.169.254/latest/meta-data/")),
            "invalid_request",
        ),
        (
            with("url", json!("http://10.0.0.1/hook")),
            "invalid_request",
        ),
        (
            with("url", json!("https://user:pw@example.com/")),
            "invalid_request",
        ),
        (with("secret", json!("not-a-whsec")), "invalid_request"),
        (with("secret", json!("whsec_c2hvcnQ=")), "invalid_request"),
        (with("events", json!([])), "invalid_request"),
        (with("events", json!(["webhook.test"])), "invalid_request"),
        (with("events", json!(["no.such"])), "invalid_request"),
        (with("name", json!("")), "invalid_request"),
        (
            with("filters", json!({"path_prefix": "/abs"})),
            "invalid_path",
        ),
    ] {
        let (status, answer) = s
            .call(Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!(status.as_u16() / 100, 4, "{body}: {answer}");
        assert_eq!(error_code(&answer), code, "{body}: {answer}");
        assert!(!answer.to_string().contains("c2hvcnQ"), "{answer}");
    }
    let (_, listed) = s.call(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(
        listed["webhooks"],
        json!([]),
        "nothing was created: {listed}"
    );

    create(&s, "n", &hook.url, &["secret.created"], None).await;
    let (status, taken) = s
        .call(Method::POST, "/v1/webhooks", Some(base.clone()))
        .await;
    assert_eq!(
        (status, error_code(&taken).as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    for (method, path) in [
        (Method::GET, "/v1/webhooks/wh_missing"),
        (Method::DELETE, "/v1/webhooks/wh_missing"),
        (Method::POST, "/v1/webhooks/wh_missing/test"),
        (Method::GET, "/v1/webhooks/wh_missing/deliveries"),
    ] {
        let (status, body) = s.call(method, path, None).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let (_, listed) = s.call(Method::GET, "/v1/webhooks", None).await;
    let id = listed["webhooks"][0]["id"].as_str().unwrap().to_owned();
    for query in ["limit=0", "limit=1001", "status=bogus"] {
        let (status, body) = s
            .call(
                Method::GET,
                &format!("/v1/webhooks/{id}/deliveries?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/msg_other_1/retry"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _) = s
        .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_webhook_gets_only_what_its_creator_may_list() {
    let s = Server::start(&[]);
    let mut hook = Receiver::start().await;
    let reader = s
        .token_for(
            "sa:reader",
            json!([{"path_pattern": "team/**", "permissions": ["list"]}]),
        )
        .await;
    // Without admin on sys/webhooks: refused, and nothing learned.
    let body =
        json!({"name": "mine", "url": hook.url, "secret": SECRET, "events": ["secret.created"]});
    let (status, denied) =
        scaivault_testkit::send(s.req_as(&reader, Method::POST, "/v1/webhooks").json(&body)).await;
    assert_eq!(
        (status, error_code(&denied).as_str()),
        (StatusCode::FORBIDDEN, "permission_denied")
    );
    let (status, _) = scaivault_testkit::send(s.req_as(&reader, Method::GET, "/v1/webhooks")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let owner = s
        .token_for(
            "sa:owner",
            json!([
                {"path_pattern": "team/**", "permissions": ["list"]},
                {"path_pattern": "sys/webhooks", "permissions": ["admin"]}
            ]),
        )
        .await;
    let (status, created) =
        scaivault_testkit::send(s.req_as(&owner, Method::POST, "/v1/webhooks").json(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["created_by"], "sa:owner");
    s.write("secret-elsewhere/x", json!({"data": {"k": "v"}}))
        .await;
    s.write("team/x", json!({"data": {"k": "v"}})).await;
    let got = hook.next("the event its creator may list").await;
    assert_eq!(
        got.path(),
        "team/x",
        "a path the creator may not list was sent"
    );

    // A root webhook that the limited admin points at itself is bounded by the admin's
    // access from then on: redirecting it reveals nothing the admin may not list.
    let root_hook = create(&s, "everything", &hook.url, &["secret.created"], None).await;
    let root_id = root_hook["id"].as_str().unwrap();
    let mut own = Receiver::start().await;
    let (status, redirected) = scaivault_testkit::send(
        s.req_as(&owner, Method::PATCH, &format!("/v1/webhooks/{root_id}"))
            .json(&json!({"url": own.url})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{redirected}");
    assert_eq!(redirected["created_by"], "sa:owner");
    s.write("secret-elsewhere/y", json!({"data": {"k": "v"}}))
        .await;
    s.write("team/y", json!({"data": {"k": "v"}})).await;
    assert_eq!(
        own.next("the redirected webhook's event").await.path(),
        "team/y",
        "a redirected webhook sent a path its new owner may not list"
    );
    // The first webhook sees the same two writes and still gets only its own.
    assert_eq!(hook.next("the owner's second event").await.path(), "team/y");
}

#[tokio::test]
async fn a_served_vault_refuses_loopback_and_names_that_resolve_to_private_addresses() {
    let s = Server::start_tls();
    let mut hook = Receiver::start().await;
    let body = |url: &str| json!({"name": "guarded", "url": url, "secret": SECRET, "events": ["secret.created"]});
    for url in [hook.url.clone(), hook.url.replace("127.0.0.1", "localhost")] {
        let (status, refused) = s.call(Method::POST, "/v1/webhooks", Some(body(&url))).await;
        assert_eq!(
            (status, error_code(&refused).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{url}"
        );
        assert!(
            refused.to_string().contains("--webhook-allow-networks"),
            "{refused}"
        );
    }
    // A name is judged by the addresses it resolves to when a delivery connects: this
    // machine's own name resolves to loopback or its private address.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let named = hook.url.replace("127.0.0.1", host.trim());
    let (status, created) = s
        .call(Method::POST, "/v1/webhooks", Some(body(&named)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (_, tested) = s
        .call(Method::POST, &format!("/v1/webhooks/{id}/test"), None)
        .await;
    assert_eq!(tested["delivered"], false, "{tested}");
    assert!(
        tested["attempt"]["error"]
            .as_str()
            .unwrap()
            .contains("resolves to no address"),
        "{tested}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), hook.got.recv())
            .await
            .is_err(),
        "the guarded request reached the receiver"
    );
}

#[tokio::test]
async fn an_operator_allow_list_opens_exactly_its_networks() {
    let s = Server::start_tls_with(&["--webhook-allow-networks", "127.0.0.0/8"]);
    let mut hook = Receiver::start().await;
    let webhook = create(&s, "allowed", &hook.url, &["secret.created"], None).await;
    let id = webhook["id"].as_str().unwrap();
    let (_, tested) = s
        .call(Method::POST, &format!("/v1/webhooks/{id}/test"), None)
        .await;
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(
        hook.next("the allowed test event").await.event_type(),
        "webhook.test"
    );
    let (status, refused) = s
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"name": "metadata", "url": "http://169.254.169.254/", "secret": SECRET, "events": ["secret.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
}
