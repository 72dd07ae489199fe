//! `POST /v1/auth/kubernetes/login` against a real kube-apiserver (e2e/testenv.sh):
//! real TokenRequest tokens are accepted and mapped to `k8s:<ns>/<sa>`; forged, expired,
//! wrong-audience and deleted-account tokens are refused; an unreachable cluster is a 503.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use scaivault_testkit::kube::{
    KubeEnv, delete_service_account, namespace, service_account, service_account_token,
};
use scaivault_testkit::{Server, error_code, send, wait_for};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const AUDIENCE: &str = "scaivault";

async fn login(server: &Server, body: Value) -> (StatusCode, Value) {
    send(
        server
            .http
            .post(server.url("/v1/auth/kubernetes/login"))
            .json(&body),
    )
    .await
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A JWT with the given claims, signed with the cluster's own ServiceAccount key.
fn sign(cluster: &KubeEnv, header_of: &str, claims: &Value) -> String {
    let header = header_of.split('.').next().unwrap();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let message = format!("{header}.{payload}");
    let key = RsaKeyPair::from_der(&cluster.signing_key_der()).unwrap();
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn expires_at(body: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(body["expires_at"].as_str().unwrap(), &Rfc3339).unwrap()
}

#[tokio::test]
async fn kubernetes_login_against_a_real_cluster() {
    let mut cluster = KubeEnv::start();
    let kube = cluster.client().await;
    let ns = namespace(&kube, "login").await;
    service_account(&kube, &ns, "web").await;
    service_account(&kube, &ns, "other").await;
    // Relative file references and a token file, as a pod's mounted ServiceAccount has
    // them: the credential is read from the file on every review.
    let kubeconfig = cluster.dir().join("pod-like.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: pod\n\
             clusters: [{{name: c, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}]\n\
             users: [{{name: u, user: {{tokenFile: pki/admin.token}}}}]\n\
             contexts: [{{name: pod, context: {{cluster: c, user: u}}}}]\n",
            cluster.url
        ),
    )
    .unwrap();
    let server = Server::start(&["--kubernetes-kubeconfig", kubeconfig.to_str().unwrap()]);

    // The vault side: a secret and a policy bound to the web ServiceAccount only.
    server
        .write("apps/web/db", json!({"data": {"password": "hunter2"}}))
        .await;
    let (status, policy) = server
        .call(
            Method::POST,
            "/v1/policies",
            Some(json!({"name": "web-read",
                "rules": [{"path_pattern": "apps/web/**", "permissions": ["read"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{policy}");
    let policy_id = policy["id"].as_str().unwrap();
    let identity = format!("k8s:{ns}/web");
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/v1/policies/{policy_id}/bindings"),
            Some(json!({"identity_type": "kubernetes", "identity_id": identity})),
        )
        .await;
    assert!(status.is_success(), "{body}");

    // A real TokenRequest token logs in as k8s:<ns>/web and reads what its policy allows.
    let jwt = service_account_token(&kube, &ns, "web", AUDIENCE).await;
    let before = OffsetDateTime::now_utc();
    let (status, issued) = login(&server, json!({"jwt": jwt, "role": "web-app"})).await;
    assert_eq!(status, StatusCode::OK, "{issued}\n{}", server.logs());
    assert_eq!(issued["identity_id"], identity);
    assert_eq!(issued["identity_type"], "kubernetes");
    let token = issued["token"].as_str().unwrap();
    // Never beyond the JWT's own expiry (10 minutes), far below the 1h default.
    let jwt_exp = claims_of(&jwt)["exp"].as_i64().unwrap();
    assert!(expires_at(&issued).unix_timestamp() <= jwt_exp);
    assert!(expires_at(&issued) > before + time::Duration::minutes(5));
    let (status, me) = send(server.req_as(token, Method::GET, "/v1/auth/whoami")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["identity_id"], identity);
    assert_eq!(me["display_name"], "kubernetes/web-app");
    assert!(
        me["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("web-read")),
        "{me}"
    );
    let (status, secret) = send(server.req_as(token, Method::GET, "/v1/secrets/apps/web/db")).await;
    assert_eq!(status, StatusCode::OK, "{secret}");
    assert_eq!(secret["data"]["password"], "hunter2");

    // Another ServiceAccount of the same namespace logs in but reads nothing of web's.
    let other_jwt = service_account_token(&kube, &ns, "other", AUDIENCE).await;
    let (status, other) = login(&server, json!({"jwt": other_jwt})).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let other_token = other["token"].as_str().unwrap();
    let (status, body) =
        send(server.req_as(other_token, Method::GET, "/v1/secrets/apps/web/db")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Refused: a token for another audience, a forged one, an expired one.
    let wrong_audience = service_account_token(&kube, &ns, "web", "not-scaivault").await;
    let mut forged_parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut claims = claims_of(&jwt);
    claims["sub"] = json!(format!("system:serviceaccount:{ns}:other"));
    forged_parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = forged_parts.join(".");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut stale = claims_of(&jwt);
    stale["iat"] = json!(now - 7200);
    stale["nbf"] = json!(now - 7200);
    stale["exp"] = json!(now - 3600);
    let expired = sign(&cluster, &jwt, &stale);
    for (what, token) in [
        ("wrong audience", wrong_audience.as_str()),
        ("forged", forged.as_str()),
        ("expired", expired.as_str()),
    ] {
        let (status, body) = login(&server, json!({"jwt": token})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(error_code(&body), "unauthenticated", "{what}");
    }
    // Control: the same claims re-signed with a live window are accepted, so the
    // rejection above was the expiry and not the signing.
    let mut fresh = stale.clone();
    fresh["iat"] = json!(now - 60);
    fresh["nbf"] = json!(now - 60);
    fresh["exp"] = json!(now + 600);
    let (status, body) = login(&server, json!({"jwt": sign(&cluster, &jwt, &fresh)})).await;
    assert_eq!(status, StatusCode::OK, "re-signed live token: {body}");

    // A deleted ServiceAccount's tokens stop working (the apiserver caches successful
    // token reviews for a few seconds, so allow it that long).
    delete_service_account(&kube, &ns, "other").await;
    wait_for(
        "a deleted ServiceAccount's token to be refused",
        std::time::Duration::from_secs(30),
        || async {
            let (status, body) = login(&server, json!({"jwt": other_jwt})).await;
            if status != StatusCode::UNAUTHORIZED {
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            (status == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;

    // Bad requests are 4xx with stable codes and never echo the token.
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({"jwt": ""}), "invalid_request"),
        (json!({"jwt": jwt, "extra": 1}), "invalid_request"),
        (json!({"jwt": jwt, "role": "no spaces"}), "invalid_request"),
        (json!({"jwt": "not-a-jwt"}), "unauthenticated"),
    ] {
        let (status, answer) = login(&server, body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(error_code(&answer), code, "{body}");
        assert!(!answer.to_string().contains(jwt.split('.').nth(2).unwrap()));
    }

    // Logins are audited under the identity they produced.
    let (status, audit) = server
        .call(
            Method::GET,
            &format!("/v1/audit/logs?identity={identity}&limit=100"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let logins = audit["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "auth.kubernetes_login" && r["outcome"] == "success")
        .count();
    assert!(logins >= 1, "no login record for {identity}: {audit}");

    // No token or JWT in the server's logs.
    let logs = server.logs();
    for needle in [
        jwt.split('.').nth(2).unwrap(),
        token,
        other_token,
        "hunter2",
    ] {
        assert!(
            !logs.contains(needle),
            "a credential reached the server log"
        );
    }

    // The cluster is gone: the vault cannot vouch for anyone and says so.
    cluster.stop();
    let (status, body) = login(&server, json!({"jwt": jwt})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "upstream_unavailable");
}

#[tokio::test]
async fn kubernetes_login_is_off_without_a_cluster() {
    let server = Server::start(&[]);
    let (status, body) = login(&server, json!({"jwt": "a.b.c"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "auth_method_disabled");
}
