//! Policies, bindings, identities and enforcement on every endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::{Method, StatusCode};
use scaivault_testkit::{Server, error_code, send};
use serde_json::{Value, json};

async fn create_policy(s: &Server, body: Value) -> String {
    let (status, policy) = s.call(Method::POST, "/v1/policies", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{policy}");
    let id = policy["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pol_"));
    id
}

async fn bind(s: &Server, policy_id: &str, identity_type: &str, identity_id: &str) {
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/policies/{policy_id}/bindings"),
            Some(json!({"identity_type": identity_type, "identity_id": identity_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn token_for(s: &Server, identity_id: &str) -> String {
    let (status, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": identity_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_cookbook_grant_and_test_flow() {
    let s = Server::start(&[]);
    s.write(
        "environments/production/billing/stripe",
        json!({"data": {"key": "sk_live"}}),
    )
    .await;
    s.write(
        "environments/production/billing/database",
        json!({"data": {"url": "pg"}}),
    )
    .await;
    let id = create_policy(
        &s,
        json!({"name": "sa-billing-stripe-read", "rules": [{"path_pattern": "environments/production/billing/stripe", "permissions": ["read"]}]}),
    )
    .await;
    bind(&s, &id, "service_account", "sa:billing-prod").await;

    let (status, test) = s
        .call(
            Method::POST,
            "/v1/policies/test",
            Some(json!({"identity_id": "sa:billing-prod", "path": "environments/production/billing/stripe", "permission": "read"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(test["allowed"], true);
    assert_eq!(test["matched"][0]["policy_id"], id.as_str());
    assert!(
        test["reason"]
            .as_str()
            .unwrap()
            .contains("sa-billing-stripe-read")
    );

    let token = token_for(&s, "sa:billing-prod").await;
    let (status, read) = send(s.req_as(
        &token,
        Method::GET,
        "/v1/secrets/environments/production/billing/stripe",
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["data"]["key"], "sk_live");
    let (status, _) = send(s.req_as(
        &token,
        Method::GET,
        "/v1/secrets/environments/production/billing/database",
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        s.req_as(
            &token,
            Method::PUT,
            "/v1/secrets/environments/production/billing/stripe",
        )
        .json(&json!({"data": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, me) = send(s.req_as(&token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(me["policies"], json!(["sa-billing-stripe-read"]));

    // Unbinding takes effect on the next request.
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/policies/{id}/bindings/sa:billing-prod"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(s.req_as(
        &token,
        Method::GET,
        "/v1/secrets/environments/production/billing/stripe",
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn metadata_needs_list_not_read_and_lists_are_filtered() {
    let s = Server::start(&[]);
    for p in ["team-a/one", "team-a/two", "team-b/secret"] {
        s.write(p, json!({"data": {"v": p}})).await;
    }
    let id = create_policy(&s, json!({"name": "team-a-list", "rules": [{"path_pattern": "team-a/**", "permissions": ["list"]}]})).await;
    bind(&s, &id, "user", "user:alice@acme.example").await;
    let token = token_for(&s, "user:alice@acme.example").await;
    let (status, meta) =
        send(s.req_as(&token, Method::GET, "/v1/secrets/team-a/one/metadata")).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    let (status, _) = send(s.req_as(&token, Method::GET, "/v1/secrets/team-a/one")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "list does not grant read");
    let (status, list) = send(s.req_as(&token, Method::GET, "/v1/secrets")).await;
    assert_eq!(status, StatusCode::OK);
    let paths: Vec<&str> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["team-a/one", "team-a/two"], "team-b is hidden");
}

#[tokio::test]
async fn deny_beats_allow_and_denials_reveal_nothing() {
    let s = Server::start(&[]);
    s.write("app/public", json!({"data": {"v": 1}})).await;
    s.write("app/private", json!({"data": {"v": 2}})).await;
    let allow = create_policy(&s, json!({"name": "allow-app", "rules": [{"path_pattern": "app/**", "permissions": ["read"]}]})).await;
    let deny = create_policy(
        &s,
        json!({"name": "deny-private", "rules": [{"path_pattern": "app/priv*", "permissions": ["admin"], "effect": "deny"}]}),
    )
    .await;
    bind(&s, &allow, "service_account", "sa:web").await;
    bind(&s, &deny, "service_account", "sa:web").await;
    let token = token_for(&s, "sa:web").await;
    let (status, _) = send(s.req_as(&token, Method::GET, "/v1/secrets/app/public")).await;
    assert_eq!(status, StatusCode::OK);
    let (st_exists, b_exists) =
        send(s.req_as(&token, Method::GET, "/v1/secrets/app/private")).await;
    let (st_missing, b_missing) =
        send(s.req_as(&token, Method::GET, "/v1/secrets/app/privnone")).await;
    assert_eq!(
        (st_exists, st_missing),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN)
    );
    assert_eq!(error_code(&b_exists), "permission_denied");
    assert_eq!(
        b_exists["error"]["message"]
            .as_str()
            .unwrap()
            .replace("app/private", "X"),
        b_missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("app/privnone", "X"),
        "a denial must not tell whether the secret exists"
    );
    // In a batch, each path is authorised on its own: partial success, no leak.
    let (status, batch) = send(
        s.req_as(&token, Method::POST, "/v1/batch/read")
            .json(&json!({"paths": ["app/public", "app/private", "app/privnone"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch["secrets"]["app/public"]["data"]["v"], 1);
    assert_eq!(batch["errors"]["app/private"]["code"], "permission_denied");
    assert_eq!(batch["errors"]["app/privnone"]["code"], "permission_denied");
    let (_, test) = s
        .call(
            Method::POST,
            "/v1/policies/test",
            Some(json!({"identity_id": "sa:web", "path": "app/private", "permission": "read"})),
        )
        .await;
    assert_eq!(test["allowed"], false);
    assert!(
        test["reason"]
            .as_str()
            .unwrap()
            .contains("deny beats allow")
    );
    assert_eq!(test["matched"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn what_if_with_a_draft_policy_and_policies_for_a_path() {
    let s = Server::start(&[]);
    let draft = json!({"name": "draft", "rules": [{"path_pattern": "environments/*/billing/**", "permissions": ["read"]}]});
    let (status, test) = s
        .call(
            Method::POST,
            "/v1/policies/test",
            Some(json!({"identity_id": "sa:nobody", "path": "environments/production/billing/stripe", "permission": "read", "policy": draft})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{test}");
    assert_eq!(test["allowed"], true);
    assert_eq!(test["matched"][0]["policy_id"], "draft");
    let (_, policies) = s.call(Method::GET, "/v1/policies", None).await;
    assert_eq!(
        policies["policies"].as_array().unwrap().len(),
        0,
        "a draft is never saved"
    );

    let a = create_policy(&s, json!({"name": "a", "rules": [{"path_pattern": "environments/*/billing/stripe", "permissions": ["read"]}]})).await;
    create_policy(&s, json!({"name": "b", "rules": [{"path_pattern": "environments/staging/**", "permissions": ["read"]}]})).await;
    let (status, matching) = s
        .call(
            Method::GET,
            "/v1/policies?path=environments/production/billing/stripe",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = matching["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str()]);
}

#[tokio::test]
async fn policy_crud_and_validation() {
    let s = Server::start(&[]);
    let id = create_policy(&s, json!({"name": "p1", "description": "d", "rules": [{"path_pattern": "a/*", "permissions": ["read"]}]})).await;
    let (status, got) = s
        .call(Method::GET, &format!("/v1/policies/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["rules"][0]["effect"], "allow");
    let (status, updated) = s
        .call(Method::PUT, &format!("/v1/policies/{id}"), Some(json!({"name": "p1", "rules": [{"path_pattern": "b/**", "permissions": ["write"]}]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["rules"][0]["path_pattern"], "b/**");
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/policies",
            Some(json!({"name": "p1", "rules": [{"path_pattern": "x", "permissions": ["read"]}]})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    for bad in [
        json!({"name": "x", "rules": [{"path_pattern": "a**", "permissions": ["read"]}]}),
        json!({"name": "x", "rules": [{"path_pattern": "a//b", "permissions": ["read"]}]}),
        json!({"name": "x", "rules": [{"path_pattern": "a", "permissions": []}]}),
        json!({"name": "x", "rules": [{"path_pattern": "a", "permissions": ["fly"]}]}),
        json!({"name": "x", "rules": []}),
        json!({"name": "bad name", "rules": [{"path_pattern": "a", "permissions": ["read"]}]}),
    ] {
        let (status, body) = s
            .call(Method::POST, "/v1/policies", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        error_code(&body);
    }
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/policies/{id}/bindings"),
            Some(json!({"identity_type": "user", "identity_id": "sa:mismatch"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/policies/pol_nope/bindings",
            Some(json!({"identity_type": "service_account", "identity_id": "sa:x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bind(&s, &id, "kubernetes", "k8s:team-a/default").await;
    let (_, first) = s
        .call(Method::GET, &format!("/v1/policies/{id}/bindings"), None)
        .await;
    let again = json!({"identity_type": "kubernetes", "identity_id": "k8s:team-a/default"});
    let (status, twice) = s
        .call(
            Method::POST,
            &format!("/v1/policies/{id}/bindings"),
            Some(again),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        twice["created_at"], first["bindings"][0]["created_at"],
        "binding twice reports the stored binding"
    );
    for bad in ["/v1/policies?path=../x", "/v1/policies?path=a//b"] {
        let (status, body) = s.call(Method::GET, bad, None).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{bad}"
        );
    }
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/policies/test",
            Some(json!({"identity_id": "sa:x", "path": "../x", "permission": "read"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, bindings) = s
        .call(Method::GET, &format!("/v1/policies/{id}/bindings"), None)
        .await;
    assert_eq!(bindings["bindings"][0]["identity_id"], "k8s:team-a/default");
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/policies/{id}/bindings/k8s:team-a/default"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(Method::DELETE, &format!("/v1/policies/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(Method::GET, &format!("/v1/policies/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn identities_are_created_and_listed_with_their_policies() {
    let s = Server::start(&[]);
    let (status, created) = s
        .call(
            Method::POST,
            "/v1/identities",
            Some(json!({"id": "user:alice@acme.example", "display_name": "Alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["identity_type"], "user");
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/identities",
            Some(json!({"id": "user:alice@acme.example"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/identities",
            Some(json!({"id": "nobody"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let id = create_policy(
        &s,
        json!({"name": "alice", "rules": [{"path_pattern": "alice/**", "permissions": ["admin"]}]}),
    )
    .await;
    bind(&s, &id, "user", "user:alice@acme.example").await;
    let (_, list) = s.call(Method::GET, "/v1/identities", None).await;
    assert_eq!(list["identities"][0]["policies"], json!(["alice"]));
    let (status, one) = s
        .call(Method::GET, "/v1/identities/user:alice@acme.example", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["display_name"], "Alice");
}

/// Every endpoint: without the needed permission 403 (and the body names only the scope),
/// with it success.
#[tokio::test]
async fn authorization_matrix() {
    let s = Server::start(&[]);
    s.write("m/secret", json!({"data": {"v": "matrix-value"}}))
        .await;
    s.call(Method::DELETE, "/v1/secrets/m/deleted", None).await;
    s.write("m/deleted", json!({"data": {"v": 1}})).await;
    s.call(Method::DELETE, "/v1/secrets/m/deleted", None).await;
    let pid = create_policy(
        &s,
        json!({"name": "target", "rules": [{"path_pattern": "x", "permissions": ["read"]}]}),
    )
    .await;

    // (method, path, body, resource path, permission, success status)
    type Case<'a> = (Method, String, Option<Value>, &'a str, &'a str, StatusCode);
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/v1/secrets/m/secret".into(),
            None,
            "m/secret",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/secrets/m/secret/metadata".into(),
            None,
            "m/secret",
            "list",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/secrets/m/secret/versions".into(),
            None,
            "m/secret",
            "list",
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/secrets/m/secret".into(),
            Some(json!({"data": {"v": 2}})),
            "m/secret",
            "write",
            StatusCode::OK,
        ),
        (
            Method::PATCH,
            "/v1/secrets/m/secret/metadata".into(),
            Some(json!({"tags": ["t"]})),
            "m/secret",
            "write",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/secrets/m/deleted/restore".into(),
            None,
            "m/deleted",
            "delete",
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/secrets/m/secret".into(),
            None,
            "m/secret",
            "delete",
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            "/v1/auth/tokens".into(),
            Some(json!({"identity_id": "sa:other"})),
            "sys/tokens",
            "admin",
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/auth/tokens".into(),
            None,
            "sys/tokens",
            "admin",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/sys/keys".into(),
            None,
            "sys/keys",
            "admin",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/sys/keys/rotate".into(),
            None,
            "sys/keys",
            "admin",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/health/detailed".into(),
            None,
            "sys/health",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/policies".into(),
            None,
            "sys/policies",
            "list",
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/v1/policies/{pid}"),
            None,
            "sys/policies",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/v1/policies/{pid}/bindings"),
            None,
            "sys/policies",
            "read",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/policies/test".into(),
            Some(json!({"identity_id": "sa:x", "path": "a", "permission": "read"})),
            "sys/policies",
            "read",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/policies".into(),
            Some(json!({"name": "new", "rules": [{"path_pattern": "a", "permissions": ["read"]}]})),
            "sys/policies",
            "admin",
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            format!("/v1/policies/{pid}"),
            Some(
                json!({"name": "target", "rules": [{"path_pattern": "y", "permissions": ["read"]}]}),
            ),
            "sys/policies",
            "admin",
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/v1/policies/{pid}/bindings"),
            Some(json!({"identity_type": "service_account", "identity_id": "sa:z"})),
            "sys/policies",
            "admin",
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/identities".into(),
            None,
            "sys/identities",
            "list",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/identities".into(),
            Some(json!({"id": "sa:new"})),
            "sys/identities",
            "admin",
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/identities/sa:new".into(),
            None,
            "sys/identities",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/audit/logs".into(),
            None,
            "sys/audit",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/audit/secrets/m/secret".into(),
            None,
            "sys/audit",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/audit/identities/root".into(),
            None,
            "sys/audit",
            "read",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/audit/verify".into(),
            None,
            "sys/audit",
            "read",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/audit/hmac".into(),
            Some(json!({"input": "x"})),
            "sys/audit",
            "read",
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            format!("/v1/policies/{pid}/bindings/sa:z"),
            None,
            "sys/policies",
            "admin",
            StatusCode::NO_CONTENT,
        ),
        (
            Method::DELETE,
            format!("/v1/policies/{pid}"),
            None,
            "sys/policies",
            "admin",
            StatusCode::NO_CONTENT,
        ),
    ];
    for (i, (method, path, body, resource, permission, success)) in cases.into_iter().enumerate() {
        let identity = format!("sa:matrix-{i}");
        let token = token_for(&s, &identity).await;
        let mut req = s.req_as(&token, method.clone(), &path);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let (status, denied) = send(req).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} without permission: {denied}"
        );
        assert!(
            denied["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("secrets:{permission}"))
        );
        assert!(!denied.to_string().contains("matrix-value"));
        // Grant exactly that permission on that resource, then it works.
        let grant = create_policy(
            &s,
            json!({"name": format!("grant-{i}"), "rules": [{"path_pattern": resource, "permissions": [permission]}]}),
        )
        .await;
        bind(&s, &grant, "service_account", &identity).await;
        let mut req = s.req_as(&token, method.clone(), &path);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let (status, ok) = send(req).await;
        assert_eq!(
            status, success,
            "{method} {path} with secrets:{permission} on {resource}: {ok}"
        );
    }
}

#[tokio::test]
async fn bindings_hold_across_a_restart() {
    let mut s = Server::start(&[]);
    s.write("persist/x", json!({"data": {"v": 1}})).await;
    let id = create_policy(&s, json!({"name": "persist", "rules": [{"path_pattern": "persist/**", "permissions": ["read"]}]})).await;
    bind(&s, &id, "service_account", "sa:persist").await;
    let token = token_for(&s, "sa:persist").await;
    s.crash_and_restart();
    let (status, read) = send(s.req_as(&token, Method::GET, "/v1/secrets/persist/x")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "policies bound before the restart apply after it: {read}"
    );
}

/// Follows `next_cursor` from the first page of `list` (a path with its query) to the
/// last, as `token`; returns the `key` of every item of `field` and every cursor seen.
async fn walk(
    s: &Server,
    token: &str,
    list: &str,
    field: &str,
    key: &str,
    limit: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut items, mut cursors) = (Vec::new(), Vec::new());
    let sep = if list.contains('?') { '&' } else { '?' };
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{list}{sep}limit={limit}&cursor={c}"),
            None => format!("{list}{sep}limit={limit}"),
        };
        let (status, page) = send(s.req_as(token, Method::GET, &url)).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        let got = page[field].as_array().unwrap();
        assert!(got.len() <= limit, "{url}: page larger than limit");
        items.extend(got.iter().map(|i| i[key].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => {
                cursors.push(next.to_owned());
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                return (items, cursors);
            }
        }
    }
    panic!("{list}: more than 1000 pages");
}

/// A cursor must not carry a name in any form a client could read back.
fn assert_opaque(cursors: &[String], names: &[String]) {
    use base64::Engine;
    for cursor in cursors {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        for name in names {
            assert!(
                !cursor.contains(name.as_str()) && !decoded.contains(name.as_str()),
                "cursor {cursor} reveals {name}"
            );
        }
        assert!(
            cursor.parse::<u64>().is_err(),
            "cursor {cursor} is a number"
        );
    }
}

async fn expect_invalid_cursor(s: &Server, token: &str, url: &str) {
    let (status, body) = send(s.req_as(token, Method::GET, url)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_cursor"),
        "{url}: {body}"
    );
}

/// Listing reveals nothing the caller may not list: not in the items, not through the
/// cursor, not to a token without any policy. Fails on a server that pages first and
/// filters after, or hands out a readable cursor.
#[tokio::test]
async fn paged_lists_reveal_only_what_the_caller_may_list() {
    let s = Server::start(&[]);
    let all = [
        "alpha/hidden",
        "hr/payroll/key",
        "shared/a/visible",
        "shared/b/hidden",
        "shared/c/visible",
        "team-a/five",
        "team-a/four",
        "team-a/one",
        "team-a/private/x",
        "team-a/six",
        "team-a/three",
        "team-a/two",
        "team-ab/hidden",
        "team-b/secret",
        "zz/last",
    ];
    for p in all {
        s.write(p, json!({"data": {"v": p}})).await;
    }
    let names: Vec<String> = all.iter().map(|p| (*p).to_owned()).collect();
    let allowed = [
        "shared/a/visible",
        "shared/c/visible",
        "team-a/five",
        "team-a/four",
        "team-a/one",
        "team-a/six",
        "team-a/three",
        "team-a/two",
    ];

    // A token whose identity has no policy learns nothing, not even that a next page exists.
    let nobody = token_for(&s, "sa:nobody").await;
    for url in [
        "/v1/secrets?limit=1",
        "/v1/secrets?limit=1&prefix=hr/",
        "/v1/secrets",
    ] {
        let (status, page) = send(s.req_as(&nobody, Method::GET, url)).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        assert_eq!(page["secrets"], json!([]), "{url}");
        assert!(page["next_cursor"].is_null(), "{url}: {page}");
    }

    let lister = create_policy(
        &s,
        json!({"name": "team-a-lister", "rules": [
            {"path_pattern": "team-a/**", "permissions": ["list"]},
            {"path_pattern": "team-a/private/**", "permissions": ["list"], "effect": "deny"},
            {"path_pattern": "shared/*/visible", "permissions": ["list"]},
            {"path_pattern": "team-b/**", "permissions": ["read"]}
        ]}),
    )
    .await;
    bind(&s, &lister, "user", "user:alice@acme.example").await;
    bind(&s, &lister, "user", "user:bob@acme.example").await;
    let alice = token_for(&s, "user:alice@acme.example").await;
    let bob = token_for(&s, "user:bob@acme.example").await;

    // Every page size walks to exactly the allowed paths, in order, nothing else.
    for limit in [1, 2, 3, 7, 100] {
        let (paths, cursors) = walk(&s, &alice, "/v1/secrets", "secrets", "path", limit).await;
        assert_eq!(paths, allowed, "limit {limit}");
        assert_eq!(
            cursors.len(),
            (allowed.len() - 1) / limit,
            "limit {limit}: no empty tail page"
        );
        assert_opaque(&cursors, &names);
    }
    let (paths, _) = walk(
        &s,
        &alice,
        "/v1/secrets?prefix=team-a/t",
        "secrets",
        "path",
        1,
    )
    .await;
    assert_eq!(paths, ["team-a/three", "team-a/two"]);
    let (paths, _) = walk(
        &s,
        &alice,
        "/v1/secrets?prefix=team-b/",
        "secrets",
        "path",
        1,
    )
    .await;
    assert!(paths.is_empty(), "read does not grant list: {paths:?}");
    // Root still sees everything through the same pages.
    let (paths, cursors) = walk(&s, &s.token, "/v1/secrets", "secrets", "path", 4).await;
    assert_eq!(paths, all);
    assert_opaque(&cursors, &names);

    let (_, first) = send(s.req_as(&alice, Method::GET, "/v1/secrets?limit=2")).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // The page size may change between pages.
    let (status, next) = send(s.req_as(
        &alice,
        Method::GET,
        &format!("/v1/secrets?limit=3&cursor={cursor}"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(next["secrets"][0]["path"], "team-a/five");
    // Another identity with the very same policy, another prefix or filter, a token
    // without policies: the cursor is refused.
    expect_invalid_cursor(&s, &bob, &format!("/v1/secrets?limit=2&cursor={cursor}")).await;
    expect_invalid_cursor(&s, &nobody, &format!("/v1/secrets?limit=2&cursor={cursor}")).await;
    expect_invalid_cursor(
        &s,
        &alice,
        &format!("/v1/secrets?limit=2&prefix=team-a/&cursor={cursor}"),
    )
    .await;
    expect_invalid_cursor(
        &s,
        &alice,
        &format!("/v1/secrets?limit=2&include_deleted=true&cursor={cursor}"),
    )
    .await;
    // Tampered, truncated, or forged the way the old cursors were (base64 of a path).
    let mut tampered = cursor.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    expect_invalid_cursor(&s, &alice, &format!("/v1/secrets?cursor={tampered}")).await;
    expect_invalid_cursor(
        &s,
        &alice,
        &format!("/v1/secrets?cursor={}", &cursor[..cursor.len() - 2]),
    )
    .await;
    expect_invalid_cursor(&s, &alice, "/v1/secrets?cursor=aHIvcGF5cm9sbC9rZXk").await;
    expect_invalid_cursor(
        &s,
        &alice,
        &format!("/v1/secrets?cursor={}", "A".repeat(5000)),
    )
    .await;
    for bad in [
        "/v1/secrets?limit=0",
        "/v1/secrets?limit=1001",
        "/v1/secrets?limit=x",
    ] {
        let (status, body) = send(s.req_as(&alice, Method::GET, bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // Revoking the binding mid-walk: the next page shows nothing more.
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/policies/{lister}/bindings/user:alice@acme.example"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, after) = send(s.req_as(
        &alice,
        Method::GET,
        &format!("/v1/secrets?limit=2&cursor={cursor}"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["secrets"], json!([]));
    assert!(after["next_cursor"].is_null());
}

/// Pages are filled past long runs of rows the caller may not see, in bounded chunks.
#[tokio::test]
async fn a_page_is_filled_across_many_hidden_rows() {
    let s = Server::start(&[]);
    for i in 0..300 {
        s.write(&format!("b/hidden-{i:03}"), json!({"data": {"v": i}}))
            .await;
    }
    for p in ["a/seen", "c/seen"] {
        s.write(p, json!({"data": {"v": p}})).await;
    }
    let policy = create_policy(
        &s,
        json!({"name": "all-but-b", "rules": [
            {"path_pattern": "**", "permissions": ["list"]},
            {"path_pattern": "b/**", "permissions": ["list"], "effect": "deny"}
        ]}),
    )
    .await;
    bind(&s, &policy, "service_account", "sa:scanner").await;
    let token = token_for(&s, "sa:scanner").await;
    let (paths, cursors) = walk(&s, &token, "/v1/secrets", "secrets", "path", 1).await;
    assert_eq!(paths, ["a/seen", "c/seen"]);
    assert_eq!(cursors.len(), 1);
}

/// Every list endpoint pages the same way: limit, sealed cursor, `next_cursor`.
#[tokio::test]
async fn every_list_endpoint_pages_with_sealed_cursors() {
    let s = Server::start(&[]);
    let mut policy_names = Vec::new();
    let mut identities = Vec::new();
    let first = create_policy(
        &s,
        json!({"name": "p-0", "rules": [{"path_pattern": "x/**", "permissions": ["read"]}]}),
    )
    .await;
    policy_names.push("p-0".to_owned());
    for i in 1..5 {
        let name = format!("p-{i}");
        create_policy(
            &s,
            json!({"name": name, "rules": [{"path_pattern": "x/**", "permissions": ["read"]}]}),
        )
        .await;
        policy_names.push(name);
    }
    for i in 0..5 {
        let id = format!("sa:pager-{i}");
        let (status, body) = s
            .call(Method::POST, "/v1/identities", Some(json!({"id": id})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        bind(&s, &first, "service_account", &id).await;
        token_for(&s, &id).await;
        identities.push(id);
    }
    s.write("audited/x", json!({"data": {"v": 1}})).await;
    for _ in 0..4 {
        s.call(Method::GET, "/v1/secrets/audited/x", None).await;
    }

    let (names, cursors) = walk(&s, &s.token, "/v1/policies", "policies", "name", 2).await;
    assert_eq!(names, policy_names);
    assert_opaque(&cursors, &policy_names);
    let policies_cursor = cursors[0].clone();
    let (ids, cursors) = walk(
        &s,
        &s.token,
        &format!("/v1/policies/{first}/bindings"),
        "bindings",
        "identity_id",
        2,
    )
    .await;
    assert_eq!(ids, identities);
    assert_opaque(&cursors, &identities);
    let (ids, cursors) = walk(&s, &s.token, "/v1/identities", "identities", "id", 2).await;
    assert_eq!(ids, identities);
    assert_opaque(&cursors, &identities);
    let (accessors, cursors) = walk(&s, &s.token, "/v1/auth/tokens", "tokens", "accessor", 2).await;
    let (_, unpaged) = s
        .call(Method::GET, "/v1/auth/tokens?limit=1000", None)
        .await;
    let every: Vec<String> = unpaged["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["accessor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accessors, every);
    let owners: Vec<&str> = unpaged["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["identity_id"].as_str().unwrap())
        .filter(|id| id.starts_with("sa:pager-"))
        .collect();
    assert_eq!(owners.len(), 5, "{unpaged}");
    assert_opaque(&cursors, &accessors);
    let (seqs, cursors) = walk(
        &s,
        &s.token,
        "/v1/audit/logs?path=audited/x",
        "logs",
        "id",
        2,
    )
    .await;
    let (_, whole) = s
        .call(
            Method::GET,
            "/v1/audit/logs?path=audited/x&limit=1000",
            None,
        )
        .await;
    let every: Vec<String> = whole["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seqs, every);
    assert!(seqs.len() >= 5, "a write and four reads: {seqs:?}");
    assert_opaque(&cursors, &[]);
    let audit_cursor = cursors[0].clone();
    let (again, _) = walk(&s, &s.token, "/v1/audit/secrets/audited/x", "logs", "id", 2).await;
    assert_eq!(again, seqs);

    // A cursor is good for its own list, caller and filters only.
    expect_invalid_cursor(
        &s,
        &s.token,
        &format!("/v1/identities?cursor={policies_cursor}"),
    )
    .await;
    expect_invalid_cursor(
        &s,
        &s.token,
        &format!("/v1/auth/tokens?cursor={policies_cursor}"),
    )
    .await;
    expect_invalid_cursor(
        &s,
        &s.token,
        &format!("/v1/policies?path=x/y&cursor={policies_cursor}"),
    )
    .await;
    expect_invalid_cursor(
        &s,
        &s.token,
        &format!("/v1/audit/logs?path=other&cursor={audit_cursor}"),
    )
    .await;
    expect_invalid_cursor(
        &s,
        &s.token,
        &format!("/v1/audit/logs?cursor={audit_cursor}"),
    )
    .await;
    expect_invalid_cursor(&s, &s.token, "/v1/audit/logs?cursor=3").await;
    let admin = create_policy(&s, json!({"name": "policy-lister", "rules": [{"path_pattern": "sys/**", "permissions": ["admin"]}]})).await;
    bind(&s, &admin, "service_account", "sa:other-admin").await;
    let other = token_for(&s, "sa:other-admin").await;
    expect_invalid_cursor(
        &s,
        &other,
        &format!("/v1/policies?cursor={policies_cursor}"),
    )
    .await;
    for list in [
        "/v1/policies",
        "/v1/identities",
        "/v1/auth/tokens",
        &format!("/v1/policies/{first}/bindings"),
    ] {
        for bad in ["limit=0", "limit=1001"] {
            let (status, body) = s.call(Method::GET, &format!("{list}?{bad}"), None).await;
            assert_eq!(
                (status, error_code(&body).as_str()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{list}?{bad}"
            );
        }
        // Without a limit, the declared default page (100) holds these small lists whole.
        let (status, body) = s.call(Method::GET, list, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["next_cursor"].is_null(), "{list}: {body}");
    }
}
