//! The secrets API against the real binary over HTTP, SQLite underneath.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaivault_testkit::{Server, error_code, send, wait_until};
use serde_json::{Value, json};

#[tokio::test]
async fn write_read_versions_and_metadata() {
    let s = Server::start(&[]);
    let w1 = s
        .write(
            "app/db/password",
            json!({"data": {"password": "pw-one"}, "secret_type": "password", "metadata": {"tags": ["db", "billing"], "description": "main db"}}),
        )
        .await;
    assert_eq!(w1["version"], 1);
    let w2 = s
        .write("app/db/password", json!({"data": {"password": "pw-two"}}))
        .await;
    assert_eq!(w2["version"], 2);

    let (status, current) = s
        .call(Method::GET, "/v1/secrets/app/db/password", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["data"]["password"], "pw-two");
    assert_eq!(current["version"], 2);
    assert_eq!(
        current["secret_type"], "password",
        "omitting secret_type keeps the stored type"
    );
    assert_eq!(
        current["created_at"], w2["created_at"],
        "write and read report the same instant"
    );
    assert_eq!(current["metadata"]["tags"], json!(["billing", "db"]));

    let (_, v1) = s
        .call(Method::GET, "/v1/secrets/app/db/password?version=1", None)
        .await;
    assert_eq!(v1["data"]["password"], "pw-one");
    assert_eq!(v1["version"], 1);

    let (status, meta) = s
        .call(Method::GET, "/v1/secrets/app/db/password/metadata", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["current_version"], 2);
    assert_eq!(meta["version_count"], 2);
    assert_eq!(meta["versions"].as_array().unwrap().len(), 2);
    assert_eq!(meta["versions"][0]["created_by"], "root");
    assert_eq!(meta["description"], "main db");
    assert_eq!(meta["rotation"]["status"], "not_configured");
    assert!(
        !meta.to_string().contains("pw-"),
        "metadata must never hold the value: {meta}"
    );

    let (status, versions) = s
        .call(Method::GET, "/v1/secrets/app/db/password/versions", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    let (status, patched) = s
        .call(
            Method::PATCH,
            "/v1/secrets/app/db/password/metadata",
            Some(json!({"metadata": {"tags": ["x", "needs-rotation", "x"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["tags"], json!(["needs-rotation", "x"]));
    assert_eq!(
        patched["description"], "main db",
        "fields not given are kept"
    );
    let (status, patched) = s
        .call(
            Method::PATCH,
            "/v1/secrets/app/db/password/metadata",
            Some(json!({"description": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["description"], "renamed");
    assert_eq!(
        patched["current_version"], 2,
        "metadata edits do not create versions"
    );
}

#[tokio::test]
async fn check_and_set() {
    let s = Server::start(&[]);
    s.write("cas/x", json!({"data": {"v": 1}, "options": {"cas": 0}}))
        .await;
    let (status, body) = s
        .call(
            Method::PUT,
            "/v1/secrets/cas/x",
            Some(json!({"data": {"v": 2}, "options": {"cas": 0}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "cas_mismatch");
    let (status, body) = s
        .call(
            Method::PUT,
            "/v1/secrets/cas/x",
            Some(json!({"data": {"v": 2}, "options": {"cas": 7}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("current version is 1")
    );
    s.write("cas/x", json!({"data": {"v": 2}, "options": {"cas": 1}}))
        .await;
    let (_, read) = s.call(Method::GET, "/v1/secrets/cas/x", None).await;
    assert_eq!(
        read["data"]["v"], 2,
        "the conflicting writes lost nothing and changed nothing"
    );
}

#[tokio::test]
async fn retention_keeps_max_versions() {
    let s = Server::start(&[]);
    for i in 1..=4 {
        s.write(
            "keep/two",
            json!({"data": {"i": i}, "options": {"max_versions": 2}}),
        )
        .await;
    }
    let (status, body) = s
        .call(Method::GET, "/v1/secrets/keep/two?version=1", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "version_not_found");
    let (_, meta) = s
        .call(Method::GET, "/v1/secrets/keep/two/metadata", None)
        .await;
    assert_eq!(meta["version_count"], 2);
    assert_eq!(meta["max_versions"], 2);
    let (_, v3) = s
        .call(Method::GET, "/v1/secrets/keep/two?version=3", None)
        .await;
    assert_eq!(v3["data"]["i"], 3);
    // Default retention is 10.
    for i in 1..=12 {
        s.write("keep/default", json!({"data": {"i": i}})).await;
    }
    let (_, meta) = s
        .call(Method::GET, "/v1/secrets/keep/default/metadata", None)
        .await;
    assert_eq!(meta["version_count"], 10);
    assert_eq!(meta["versions"][0]["version"], 3);
}

#[tokio::test]
async fn soft_delete_restore_and_destroy() {
    let s = Server::start(&[]);
    s.write("old/path", json!({"data": {"k": "v"}})).await;
    let (status, body) = s
        .call(Method::POST, "/v1/secrets/old/path/restore", None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "restore of a never-deleted secret"
    );
    assert_eq!(error_code(&body), "not_deleted");

    let (status, _) = s.call(Method::DELETE, "/v1/secrets/old/path", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.call(Method::GET, "/v1/secrets/old/path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "secret_deleted");
    let (_, list) = s.call(Method::GET, "/v1/secrets?prefix=old/", None).await;
    assert_eq!(
        list["secrets"].as_array().unwrap().len(),
        0,
        "deleted secrets are not listed"
    );
    let (_, list) = s
        .call(
            Method::GET,
            "/v1/secrets?prefix=old/&include_deleted=true&include_metadata=true",
            None,
        )
        .await;
    assert!(list["secrets"][0]["deleted_at"].is_string());

    let (status, restored) = s
        .call(Method::POST, "/v1/secrets/old/path/restore", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(restored["deleted_at"].is_null());
    let (_, read) = s.call(Method::GET, "/v1/secrets/old/path", None).await;
    assert_eq!(read["data"]["k"], "v");

    let (status, _) = s
        .call(Method::DELETE, "/v1/secrets/old/path?destroy=true", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.call(Method::GET, "/v1/secrets/old/path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "secret_not_found");
    let (status, _) = s
        .call(Method::POST, "/v1/secrets/old/path/restore", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "destroyed secrets cannot be restored"
    );
    let (status, _) = s.call(Method::DELETE, "/v1/secrets/never/was", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn expiry_reads_as_expired_then_is_purged() {
    let s = Server::dev()
        .args(["--purge-interval", "1s"])
        .shifted_clock()
        .start();
    let w = s
        .write(
            "test/oauth-token",
            json!({"data": {"token": "t"}, "options": {"expires_in": "1s"}}),
        )
        .await;
    assert!(w["expires_at"].is_string());
    // The server's wall clock jumps past the expiry; no real time needs to pass.
    s.clock().advance(Duration::from_secs(60));
    let (status, body) = s
        .call(Method::GET, "/v1/secrets/test/oauth-token", None)
        .await;
    // Either still expired-but-present, or already purged by the job.
    assert_eq!(status, StatusCode::NOT_FOUND);
    let code = error_code(&body);
    assert!(
        code == "secret_expired" || code == "secret_not_found",
        "{code}"
    );
    // The purge job runs every second (monotonic time): it erases the secret.
    wait_until(
        "the purge job to erase the expired secret",
        Duration::from_secs(30),
        || async {
            let (status, body) = s
                .call(Method::GET, "/v1/secrets/test/oauth-token/metadata", None)
                .await;
            status == StatusCode::NOT_FOUND && error_code(&body) == "secret_not_found"
        },
    )
    .await;
}

#[tokio::test]
async fn an_expired_secret_reads_as_secret_expired() {
    let s = Server::dev()
        .args(["--purge-interval", "1h"])
        .shifted_clock()
        .start();
    s.write(
        "exp/a",
        json!({"data": {"token": "t"}, "options": {"expires_in": "1s"}}),
    )
    .await;
    let (status, _) = s.call(Method::GET, "/v1/secrets/exp/a", None).await;
    assert_eq!(status, StatusCode::OK, "live before its expiry");
    s.clock().advance(Duration::from_secs(60));
    let (status, body) = s.call(Method::GET, "/v1/secrets/exp/a", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "secret_expired");
}

#[tokio::test]
async fn list_pages_by_prefix_with_metadata() {
    let s = Server::start(&[]);
    for i in 0..7 {
        s.write(
            &format!("environments/staging/svc{i}"),
            json!({"data": {"i": i}, "metadata": {"tags": ["t"]}}),
        )
        .await;
    }
    s.write("environments/production/svc", json!({"data": {}}))
        .await;
    s.write("environments/stagingx", json!({"data": {}})).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = "/v1/secrets?prefix=environments/staging/&limit=3".to_owned();
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = s.call(Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["secrets"].as_array().unwrap() {
            assert_eq!(item["tags"], json!(["t"]));
            assert!(item["access_count_30d"].is_u64());
            seen.push(item["path"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (0..7)
            .map(|i| format!("environments/staging/svc{i}"))
            .collect::<Vec<_>>()
    );
    let (_, page) = s
        .call(
            Method::GET,
            "/v1/secrets?include_metadata=true&limit=200",
            None,
        )
        .await;
    assert_eq!(page["secrets"].as_array().unwrap().len(), 9);
    assert!(page["secrets"][0]["version_count"].is_u64());
    for bad in [
        "/v1/secrets?limit=0",
        "/v1/secrets?limit=1001",
        "/v1/secrets?limit=abc",
        "/v1/secrets?cursor=%21%21",
        "/v1/secrets?prefix=a//",
    ] {
        let (status, body) = s.call(Method::GET, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        error_code(&body);
    }
}

#[tokio::test]
async fn access_counts_aggregate_without_a_write_per_read_and_survive_restart() {
    let mut s = Server::start(&["--access-flush-interval", "1h"]);
    s.write("count/me", json!({"data": {"k": "v"}})).await;
    s.write("count/never", json!({"data": {"k": "v"}})).await;
    for _ in 0..3 {
        let (status, _) = s.call(Method::GET, "/v1/secrets/count/me", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, meta) = s
        .call(Method::GET, "/v1/secrets/count/me/metadata", None)
        .await;
    assert_eq!(
        meta["access_count_30d"], 3,
        "pending in-memory counts are included"
    );
    // A graceful stop flushes the aggregate; the count survives.
    s.restart_gracefully();
    let (_, list) = s
        .call(
            Method::GET,
            "/v1/secrets?prefix=count/&include_metadata=true",
            None,
        )
        .await;
    let counts: Vec<(String, u64)> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_owned(),
                i["access_count_30d"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![("count/me".into(), 3), ("count/never".into(), 0)]
    );
}

#[tokio::test]
async fn batch_read_is_partial_success() {
    let s = Server::start(&[]);
    s.write(
        "environments/production/billing/database",
        json!({"data": {"url": "postgres://db"}}),
    )
    .await;
    s.write(
        "environments/production/billing/stripe",
        json!({"data": {"key": "sk"}}),
    )
    .await;
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/batch/read",
            Some(json!({"paths": [
                "environments/production/billing/database",
                "environments/production/billing/stripe",
                "environments/production/billing/sendgrid",
                "bad path"
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"].as_object().unwrap().len(), 2);
    assert_eq!(
        body["secrets"]["environments/production/billing/database"]["data"]["url"],
        "postgres://db"
    );
    assert_eq!(
        body["errors"]["environments/production/billing/sendgrid"]["code"],
        "secret_not_found"
    );
    assert_eq!(body["errors"]["bad path"]["code"], "invalid_path");
    let (status, body) = s
        .call(Method::POST, "/v1/batch/read", Some(json!({"paths": []})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_code(&body);
    let many: Vec<String> = (0..101).map(|i| format!("p/{i}")).collect();
    let (status, _) = s
        .call(Method::POST, "/v1/batch/read", Some(json!({"paths": many})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Each read in a batch is counted.
    let (_, meta) = s
        .call(
            Method::GET,
            "/v1/secrets/environments/production/billing/stripe/metadata",
            None,
        )
        .await;
    assert_eq!(meta["access_count_30d"], 1);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_and_loses_nothing() {
    let s = Server::start(&["--max-value-bytes", "1024", "--max-body-bytes", "4096"]);
    s.write("app/keep", json!({"data": {"k": "original"}}))
        .await;
    let raw = |method: Method, path: &str, body: &str| {
        s.req(method, path)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            raw(Method::PUT, "/v1/secrets/app/keep", "{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            raw(Method::PUT, "/v1/secrets/app/keep", ""),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                r#"{"data": "a-string"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                r#"{"data": {}, "secret_type": "bogus"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                r#"{"data": {}, "options": {"cas": -1}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                r#"{"data": {}, "options": {"expires_in": "soon"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_ttl",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                r#"{"data": {}, "metadata": {"tags": ["has space"]}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_tag",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                r#"{"data": {}, "extra": 1}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                &format!(r#"{{"data": {{"k": "{}"}}}}"#, "x".repeat(2000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep",
                &format!(r#"{{"data": {{"k": "{}"}}}}"#, "x".repeat(5000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            raw(
                Method::PUT,
                "/v1/secrets/app/keep/metadata",
                r#"{"data": {}}"#,
            ),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            raw(Method::PUT, "/v1/secrets/a%20b", r#"{"data": {}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            raw(Method::PUT, "/v1/secrets/a%2F..%2Fb", r#"{"data": {}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            raw(Method::PUT, "/v1/secrets/sys/policies/x", r#"{"data": {}}"#),
            StatusCode::BAD_REQUEST,
            "reserved_path",
        ),
        (
            raw(
                Method::PUT,
                &format!("/v1/secrets/{}", ["s"; 17].join("/")),
                r#"{"data": {}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            raw(Method::GET, "/v1/secrets/app/keep?version=abc", ""),
            StatusCode::BAD_REQUEST,
            "invalid_version",
        ),
        (
            raw(Method::GET, "/v1/secrets/app/keep?version=0", ""),
            StatusCode::BAD_REQUEST,
            "invalid_version",
        ),
        (
            raw(Method::GET, "/v1/secrets/app/keep?version=99", ""),
            StatusCode::NOT_FOUND,
            "version_not_found",
        ),
        (
            raw(Method::GET, "/v1/secrets/app/missing", ""),
            StatusCode::NOT_FOUND,
            "secret_not_found",
        ),
        (
            raw(Method::PATCH, "/v1/secrets/app/keep/metadata", r#"{}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                Method::PATCH,
                "/v1/secrets/app/missing/metadata",
                r#"{"tags": []}"#,
            ),
            StatusCode::NOT_FOUND,
            "secret_not_found",
        ),
        (
            raw(Method::POST, "/v1/secrets/app/keep/rotate", ""),
            StatusCode::CONFLICT,
            "rotation_not_configured",
        ),
        (
            raw(Method::POST, "/v1/secrets/app/keep/destroy", ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            raw(Method::GET, "/v1/nothing/here", ""),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            raw(Method::GET, "/v1/secrets/app%2F..%2Fkeep", ""),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            raw(
                Method::POST,
                "/v1/secrets/app/keep",
                &format!(r#"{{"data": {{"k": "{}"}}}}"#, "x".repeat(5000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            raw(Method::DELETE, "/v1/auth/whoami", ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, want_status, want_code) in cases {
        let (status, body) = send(request).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (want_status, want_code),
            "{body}"
        );
    }
    let (_, read) = s.call(Method::GET, "/v1/secrets/app/keep", None).await;
    assert_eq!(read["data"]["k"], "original");
    // A path parameter may be percent-encoded, as OpenAPI clients send it: one secret.
    let (status, encoded) = s.call(Method::GET, "/v1/secrets/app%2Fkeep", None).await;
    assert_eq!((status, &encoded["data"]), (StatusCode::OK, &read["data"]));
    let (status, body) = s
        .call(Method::GET, "/v1/secrets/app%2Fkeep%2Fmetadata", None)
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "reserved_path"),
        "an encoded `/` never makes an action word: {body}"
    );
    assert_eq!(read["version"], 1, "no bad request created a version");
    // Reserved action words as a last segment are explained.
    let (status, body) = s
        .call(
            Method::PUT,
            "/v1/secrets/app/restore",
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "`app/restore` means the restore action of `app`: {body}"
    );
    let (status, body) = s.call(Method::GET, "/v1/secrets/app/restore/x", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "action words are fine mid-path: {body}"
    );
}

#[tokio::test]
async fn error_messages_never_echo_values() {
    let s = Server::start(&[]);
    let secret = "zz-top-secret-echo-check";
    for body in [
        format!(r#"{{"data": "{secret}"}}"#),
        format!(r#"{{"data": {{}}, "options": {{"cas": "{secret}"}}}}"#),
        format!(r#"{{"data": {{}}, "options": {{"expires_in": "{secret}"}}}}"#),
        format!(r#"{{"data": {{"k": "{secret}"}}, "options": {{"max_versions": 0}}}}"#),
    ] {
        let (status, response) =
            send(s.req(Method::PUT, "/v1/secrets/echo/check").body(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let shown = response.to_string();
        assert!(
            !shown.contains(secret) && !shown.contains("zz-top"),
            "value echoed: {shown}"
        );
    }
}

#[tokio::test]
async fn unauthenticated_requests_are_refused() {
    let s = Server::start(&[]);
    let (status, body) = send(s.http.get(s.url("/v1/secrets/x"))).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let (status, body) = send(s.req_as("svt_wrong", Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let (status, _) = send(
        s.http
            .get(s.url("/v1/auth/whoami"))
            .header("X-Vault-Token", &s.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "X-Vault-Token is accepted too");
}

#[tokio::test]
async fn responses_carry_request_ids_and_rate_limit_headers() {
    let s = Server::start(&[]);
    let resp = s
        .req(Method::GET, "/v1/secrets?limit=1")
        .send()
        .await
        .unwrap();
    let h = resp.headers();
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    assert_eq!(h["x-ratelimit-limit"], "1000");
    let remaining: u64 = h["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining < 1000);
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        reset >= now && reset <= now + 61,
        "reset is epoch seconds: {reset} vs {now}"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let s = Server::start(&["--rate-limit-per-minute", "3"]);
    for _ in 0..3 {
        let (status, _) = s.call(Method::GET, "/v1/auth/whoami", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let resp = s.req(Method::GET, "/v1/auth/whoami").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "rate_limited");
}
