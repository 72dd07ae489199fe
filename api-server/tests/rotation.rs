//! Rotation: schedules on a write or a metadata update, forced rotation, the due/overdue
//! query, the scheduler (with a movable wall clock instead of waiting for days), and the
//! events all of it leaves, authorised per path and never carrying a value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaivault_testkit::{Server, error_code, send, wait_until};
use serde_json::{Value, json};

const DAY: Duration = Duration::from_secs(86_400);

fn schedule(interval: &str, strategy: &str) -> Value {
    json!({"interval": interval, "strategy": strategy, "grace": "1h"})
}

async fn write_scheduled(s: &Server, path: &str, secret_type: &str, data: Value, rotation: Value) {
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/v1/secrets/{path}"),
            Some(json!({"data": data, "secret_type": secret_type, "metadata": {"rotation": rotation}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn metadata(s: &Server, path: &str) -> Value {
    let (status, body) = s
        .call(Method::GET, &format!("/v1/secrets/{path}/metadata"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn events(s: &Server, query: &str) -> Vec<Value> {
    let (status, body) = s
        .call(Method::GET, &format!("/v1/events?{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// Events of `event_type` about `path`.
async fn events_of(s: &Server, event_type: &str, path: &str) -> Vec<Value> {
    events(
        s,
        &format!("types={event_type}&path_prefix={path}&limit=1000"),
    )
    .await
    .into_iter()
    .filter(|e| e["path"] == path)
    .collect()
}

#[tokio::test]
async fn a_schedule_shows_in_metadata_and_lists_and_can_be_replaced_or_removed() {
    let s = Server::start(&[]);
    write_scheduled(
        &s,
        "app/api",
        "generic",
        json!({"k": "v"}),
        schedule("30d", "external"),
    )
    .await;
    let meta = metadata(&s, "app/api").await;
    let rotation = &meta["rotation"];
    assert_eq!(rotation["status"], "scheduled", "{meta}");
    assert_eq!(rotation["strategy"], "external");
    assert_eq!(rotation["interval"], "30d");
    assert_eq!(rotation["is_overdue"], false);
    let next = time::OffsetDateTime::parse(
        rotation["next_rotation_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let from_now = next - time::OffsetDateTime::now_utc();
    assert!(
        (from_now - time::Duration::days(30)).abs() < time::Duration::minutes(5),
        "{from_now}"
    );
    let (_, list) = s.call(Method::GET, "/v1/secrets?prefix=app/", None).await;
    assert_eq!(
        list["secrets"][0]["rotation"]["status"], "scheduled",
        "{list}"
    );

    // A metadata update replaces the schedule; `null` removes it.
    let (status, updated) = s
        .call(
            Method::PATCH,
            "/v1/secrets/app/api/metadata",
            Some(json!({"rotation": {"interval": "7d", "strategy": "manual", "rotate_at": "03:00Z"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["rotation"]["strategy"], "manual");
    assert!(
        updated["rotation"]["next_rotation_at"]
            .as_str()
            .unwrap()
            .contains("T03:00:00"),
        "{updated}"
    );
    let (status, cleared) = s
        .call(
            Method::PATCH,
            "/v1/secrets/app/api/metadata",
            Some(json!({"rotation": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["rotation"]["status"], "not_configured");

    // Bad schedules are refused with what is wrong, and nothing changes.
    for bad in [
        json!({"interval": "30s", "strategy": "external"}),
        json!({"interval": "soon", "strategy": "external"}),
        json!({"interval": "1d", "strategy": "sometimes"}),
        json!({"interval": "1h", "strategy": "manual", "rotate_at": "03:00"}),
        json!({"interval": "1d", "strategy": "generate"}),
        json!({"interval": "1d", "strategy": "generate", "generator": {"fields": ["k"], "length": 3}}),
    ] {
        let (status, body) = s
            .call(
                Method::PATCH,
                "/v1/secrets/app/api/metadata",
                Some(json!({ "rotation": bad })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(
        metadata(&s, "app/api").await["rotation"]["status"],
        "not_configured"
    );
}

#[tokio::test]
async fn a_forced_rotation_generates_a_version_or_asks_for_one() {
    let s = Server::start(&[]);
    let generated = json!({"interval": "30d", "strategy": "generate",
        "generator": {"fields": ["password"], "length": 40, "charset": "symbols"}});
    write_scheduled(
        &s,
        "db/main",
        "json",
        json!({"username": "app", "password": "hunter2-original"}),
        generated,
    )
    .await;
    let (status, rotated) = s
        .call(
            Method::POST,
            "/v1/secrets/db/main/rotate",
            Some(json!({"reason": "compromise"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["outcome"], "rotated");
    assert_eq!(rotated["version"], 2);
    assert!(
        rotated["rotation"]["last_rotated_at"].is_string(),
        "{rotated}"
    );
    let (_, read) = s.call(Method::GET, "/v1/secrets/db/main", None).await;
    let password = read["data"]["password"].as_str().unwrap();
    assert_eq!(password.chars().count(), 40, "{read}");
    assert_ne!(password, "hunter2-original");
    assert_eq!(read["data"]["username"], "app", "other fields are kept");

    // The reason is in the audit record and the event; the event names the version and
    // who rotated, and no event carries a value.
    let (_, logs) = s
        .call(
            Method::GET,
            "/v1/audit/logs?path=db/main&action=secrets.rotate",
            None,
        )
        .await;
    assert!(
        logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "compromise" && r["outcome"] == "success"),
        "{logs}"
    );
    let completed = events_of(&s, "rotation.completed", "db/main").await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["reason"], "compromise");
    assert_eq!(completed[0]["version"], 2);
    assert_eq!(completed[0]["actor"], "root");
    let (_, all) = s.call(Method::GET, "/v1/events?limit=1000", None).await;
    let text = all.to_string();
    assert!(
        !text.contains(password) && !text.contains("hunter2"),
        "events never carry values"
    );

    // External and manual secrets: the server asks whoever rotates them.
    write_scheduled(
        &s,
        "ext/key",
        "api_key",
        json!({"api_key": "k"}),
        schedule("30d", "external"),
    )
    .await;
    let (status, requested) = s
        .call(
            Method::POST,
            "/v1/secrets/ext/key/rotate",
            Some(json!({"reason": "offboarding"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{requested}");
    assert_eq!(requested["outcome"], "requested");
    assert_eq!(requested["version"], 1);
    let asked = events_of(&s, "rotation.requested", "ext/key").await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["reason"], "offboarding");
    assert_eq!(asked[0]["version"], 1, "the version to replace");

    // What cannot be rotated says why.
    s.write("plain/x", json!({"data": {"k": "v"}})).await;
    let (status, body) = s
        .call(Method::POST, "/v1/secrets/plain/x/rotate", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "rotation_not_configured");
    let (status, body) = s
        .call(Method::POST, "/v1/secrets/nothing/here/rotate", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/secrets/ext/key/rotate",
            Some(json!({"reason": "x".repeat(513)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_due_query_lists_what_is_due_within_the_window_and_what_is_overdue() {
    let s = Server::dev().shifted_clock().start();
    for (path, interval) in [
        ("team-a/one-day", "1d"),
        ("team-a/three-days", "3d"),
        ("team-a/ten-days", "10d"),
        ("team-b/two-days", "2d"),
    ] {
        write_scheduled(
            &s,
            path,
            "generic",
            json!({"k": "v"}),
            schedule(interval, "external"),
        )
        .await;
    }
    s.write("team-a/unscheduled", json!({"data": {"k": "v"}}))
        .await;
    let due = |query: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s
                .call(Method::GET, &format!("/v1/rotation/due?{query}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["secrets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap().to_owned(),
                        e["is_overdue"].as_bool().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let week = due("within_hours=168").await;
    assert_eq!(
        week,
        [
            ("team-a/one-day".to_owned(), false),
            ("team-a/three-days".to_owned(), false),
            ("team-b/two-days".to_owned(), false)
        ]
    );
    assert_eq!(due("within_hours=168&prefix=team-b/").await.len(), 1);

    // Two days on: the one-day secret is past its time and its hour of grace.
    s.clock().advance(2 * DAY);
    assert_eq!(
        due("within_hours=24").await,
        [
            ("team-a/three-days".to_owned(), false),
            ("team-b/two-days".to_owned(), false)
        ],
        "overdue secrets only when asked for"
    );
    assert_eq!(
        due("within_hours=24&include_overdue=true").await,
        [
            ("team-a/one-day".to_owned(), true),
            ("team-a/three-days".to_owned(), false),
            ("team-b/two-days".to_owned(), false)
        ]
    );
    let meta = metadata(&s, "team-a/one-day").await;
    assert_eq!(meta["rotation"]["status"], "overdue", "{meta}");
    assert_eq!(meta["rotation"]["is_overdue"], true);

    // A write is the rotation of an external secret: due again only a day from now.
    s.write("team-a/one-day", json!({"data": {"k": "rotated"}}))
        .await;
    assert!(
        !due("within_hours=23&include_overdue=true")
            .await
            .iter()
            .any(|(p, _)| p == "team-a/one-day")
    );

    // Pages of one, and a caller sees only what it may list.
    let (_, first) = s
        .call(
            Method::GET,
            "/v1/rotation/due?within_hours=240&include_overdue=true&limit=1",
            None,
        )
        .await;
    assert_eq!(first["secrets"].as_array().unwrap().len(), 1, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = s
        .call(
            Method::GET,
            &format!(
                "/v1/rotation/due?within_hours=240&include_overdue=true&limit=1&cursor={cursor}"
            ),
            None,
        )
        .await;
    assert_ne!(second["secrets"][0]["path"], first["secrets"][0]["path"]);
    let team_b = s
        .token_for(
            "sa:team-b",
            json!([{"path_pattern": "team-b/**", "permissions": ["list"]}]),
        )
        .await;
    let (status, seen) = send(s.req_as(
        &team_b,
        Method::GET,
        "/v1/rotation/due?within_hours=87600&include_overdue=true",
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let paths: Vec<&str> = seen["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["team-b/two-days"]);
    for bad in [
        "within_hours=0",
        "within_hours=87601",
        "limit=0",
        "cursor=forged",
    ] {
        let (status, body) = s
            .call(Method::GET, &format!("/v1/rotation/due?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

/// How many runs the rotation scheduler completed.
async fn scheduler_runs(s: &Server) -> u64 {
    let (_, health) = s.call(Method::GET, "/v1/health/detailed", None).await;
    health["components"]["jobs"]["details"]["rotation"]["runs"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until the scheduler has run `n` more times: whatever it would do by now is done.
async fn scheduler_passes(s: &Server, n: u64) {
    let from = scheduler_runs(s).await;
    wait_until(
        "the rotation scheduler to run",
        Duration::from_secs(20),
        || async { scheduler_runs(s).await >= from + n },
    )
    .await;
}

#[tokio::test]
async fn the_scheduler_signals_once_per_cycle_rotates_on_time_and_catches_up() {
    let mut s = Server::dev()
        .shifted_clock()
        .args(["--rotation-check-interval", "1s"])
        .start();
    write_scheduled(
        &s,
        "sched/external",
        "api_key",
        json!({"api_key": "outside"}),
        schedule("1d", "external"),
    )
    .await;
    write_scheduled(
        &s,
        "sched/generated",
        "password",
        json!({"password": "first"}),
        schedule("1d", "generate"),
    )
    .await;
    // A `generate` schedule the secret no longer fits: a generic secret has no field the
    // generator could fill by default.
    write_scheduled(
        &s,
        "sched/broken",
        "password",
        json!({"password": "p"}),
        schedule("1d", "generate"),
    )
    .await;
    let (status, body) = s
        .call(
            Method::PUT,
            "/v1/secrets/sched/broken",
            Some(json!({"data": {"other": "x"}, "secret_type": "generic"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    scheduler_passes(&s, 2).await;
    assert!(events(&s, "types=rotation.due").await.is_empty());

    // A day and two hours on: due, past the hour of grace, and rotated where generated.
    s.clock().advance(DAY + Duration::from_secs(2 * 3600));
    wait_until(
        "the scheduler to act on the cycle",
        Duration::from_secs(20),
        || async {
            !events_of(&s, "rotation.overdue", "sched/external")
                .await
                .is_empty()
                && !events_of(&s, "rotation.failed", "sched/broken")
                    .await
                    .is_empty()
        },
    )
    .await;
    let (_, read) = s
        .call(Method::GET, "/v1/secrets/sched/generated", None)
        .await;
    assert_eq!(read["version"], 2, "{read}");
    assert_eq!(read["created_by"], "system:rotation");
    assert_ne!(read["data"]["password"], "first");
    let completed = events_of(&s, "rotation.completed", "sched/generated").await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["actor"], "system");
    let failed = events_of(&s, "rotation.failed", "sched/broken").await;
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("fields"),
        "{failed:?}"
    );
    let (_, logs) = s
        .call(
            Method::GET,
            "/v1/audit/logs?path=sched/generated&action=secrets.rotate",
            None,
        )
        .await;
    assert!(
        logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["identity_id"] == "system:rotation" && r["outcome"] == "success"),
        "a scheduled rotation is audited: {logs}"
    );

    // Later runs, and a restart, raise nothing twice.
    scheduler_passes(&s, 3).await;
    s.crash_and_restart();
    scheduler_passes(&s, 3).await;
    for (event_type, path) in [
        ("rotation.due", "sched/external"),
        ("rotation.overdue", "sched/external"),
        ("rotation.failed", "sched/broken"),
        ("rotation.completed", "sched/generated"),
    ] {
        let seen = events_of(&s, event_type, path).await;
        assert_eq!(seen.len(), 1, "{event_type} {path}: {seen:?}");
    }

    // An external secret stays in its cycle (overdue) until someone writes it; that write
    // is the rotation. The next cycle: the generated secret rotates again, the external
    // one is due again.
    assert_eq!(
        metadata(&s, "sched/external").await["rotation"]["status"],
        "overdue"
    );
    s.write(
        "sched/external",
        json!({"data": {"api_key": "rotated outside"}}),
    )
    .await;
    assert_eq!(
        events_of(&s, "rotation.completed", "sched/external")
            .await
            .len(),
        1
    );
    s.clock().advance(DAY + Duration::from_secs(1800));
    wait_until("the second cycle", Duration::from_secs(20), || async {
        events_of(&s, "rotation.due", "sched/external").await.len() == 2
            && events_of(&s, "rotation.completed", "sched/generated")
                .await
                .len()
                == 2
    })
    .await;
    assert_eq!(
        events_of(&s, "rotation.overdue", "sched/external")
            .await
            .len(),
        1,
        "the new cycle is within its grace"
    );
}

#[tokio::test]
async fn events_are_filtered_paged_and_authorised_per_path() {
    let s = Server::start(&[]);
    s.write("ev/a/one", json!({"data": {"v": "value-a1"}}))
        .await;
    s.write("ev/a/one", json!({"data": {"v": "value-a2"}}))
        .await;
    s.write("ev/b/two", json!({"data": {"v": "value-b"}})).await;
    let (status, _) = s.call(Method::DELETE, "/v1/secrets/ev/b/two", None).await;
    assert!(status.is_success());
    let mine = events(&s, "path_prefix=ev/&limit=1000").await;
    let kinds: Vec<(&str, &str)> = mine
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("secret.created", "ev/a/one"),
            ("secret.updated", "ev/a/one"),
            ("secret.created", "ev/b/two"),
            ("secret.deleted", "ev/b/two"),
        ]
    );
    assert_eq!(mine[1]["version"], 2);
    assert_eq!(mine[0]["actor"], "root");
    assert!(
        mine.windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );

    // Paging by `after`.
    let (_, page) = s
        .call(Method::GET, "/v1/events?path_prefix=ev/&limit=2", None)
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let after = page["last_seq"].as_u64().unwrap();
    let rest = events(&s, &format!("path_prefix=ev/&after={after}")).await;
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["path"], "ev/b/two");

    // Type filters; bad filters are 400s.
    assert_eq!(
        events(&s, "types=secret.deleted&path_prefix=ev/")
            .await
            .len(),
        1
    );
    for bad in ["types=secret.nope", "limit=0", "limit=1001", "after=-1"] {
        let (status, body) = s
            .call(Method::GET, &format!("/v1/events?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // A caller sees events of the paths it may list, and no policy change without the
    // right to read policies.
    let token = s
        .token_for(
            "sa:ev-a",
            json!([{"path_pattern": "ev/a/**", "permissions": ["list"]}]),
        )
        .await;
    let (status, seen) = send(s.req_as(&token, Method::GET, "/v1/events?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let seen = seen["events"].as_array().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|e| e["path"].as_str().is_some_and(|p| p.starts_with("ev/a/"))),
        "{seen:?}"
    );
    let (_, all) = s.call(Method::GET, "/v1/events?limit=1000", None).await;
    assert!(
        all["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "policy.changed" && e["policy_id"].is_string()),
        "{all}"
    );
    assert!(
        !all.to_string().contains("value-a"),
        "events carry no value"
    );
}
