//! Policies, bindings, identities and enforcement on every endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, error_code, send};
use reqwest::{Method, StatusCode};
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
