//! The typed client against a real `scaivault-server dev`: the endpoints the CLI does not
//! exercise (batch read, list options, description updates) and typed error matching.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use scaivault_client::api::ErrorCode;
use scaivault_client::api::audit::{ExportDestination, ExportRequest};
use scaivault_client::api::auth::CreateTokenRequest;
use scaivault_client::api::policy::{IdentityInput, Permission, PolicyInput, PolicyTestRequest};
use scaivault_client::api::secrets::{
    SecretMetadataInput, SecretType, WriteOptions, WriteSecretRequest,
};
use scaivault_client::{AuditLogOptions, AuditRange, Client, EXPORT_RUNNING, Error, ListOptions};
use scaivault_testkit::{Server, wait_for};
use serde_json::json;

fn write_request(data: serde_json::Value) -> WriteSecretRequest {
    WriteSecretRequest {
        data: data.as_object().cloned().unwrap(),
        secret_type: Some(SecretType::ApiKey),
        metadata: None,
        options: None,
    }
}

#[tokio::test]
async fn secrets_round_trip_through_the_typed_client() {
    let server = Server::start(&[]);
    let client = Client::new(&server.address, server.token.as_str()).unwrap();

    let first = client
        .write("billing/stripe", &write_request(json!({"key": "sk_1"})))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let mut second = write_request(json!({"key": "sk_2"}));
    second.options = Some(WriteOptions {
        cas: Some(1),
        ..WriteOptions::default()
    });
    assert_eq!(
        client
            .write("billing/stripe", &second)
            .await
            .unwrap()
            .version,
        2
    );

    // A stale cas is a typed conflict.
    let stale = client.write("billing/stripe", &second).await.unwrap_err();
    assert_eq!(stale.code(), Some(ErrorCode::CasMismatch));
    assert_eq!(stale.status(), Some(409));

    assert_eq!(
        client.read("billing/stripe").await.unwrap().data["key"],
        "sk_2"
    );
    assert_eq!(
        client.read_version("billing/stripe", 1).await.unwrap().data["key"],
        "sk_1"
    );
    assert_eq!(
        client
            .versions("billing/stripe")
            .await
            .unwrap()
            .versions
            .len(),
        2
    );

    let updated = client
        .update_metadata(
            "billing/stripe",
            &SecretMetadataInput {
                tags: Some(vec!["pci".into()]),
                description: Some("stripe key".into()),
                rotation: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.tags, ["pci"]);
    assert_eq!(updated.description.as_deref(), Some("stripe key"));
    assert_eq!(updated.secret_type, SecretType::ApiKey);

    let batch = client
        .batch_read(&["billing/stripe".to_owned(), "billing/missing".to_owned()])
        .await
        .unwrap();
    assert_eq!(batch.secrets["billing/stripe"].version, 2);
    assert_eq!(
        batch.errors["billing/missing"].code,
        ErrorCode::SecretNotFound
    );

    client.delete("billing/stripe").await.unwrap();
    let deleted = client.read("billing/stripe").await.unwrap_err();
    assert!(deleted.is_not_found());
    assert_eq!(deleted.code(), Some(ErrorCode::SecretDeleted));
    assert!(matches!(&deleted, Error::Api { request_id: Some(id), .. } if id.starts_with("req_")));

    let hidden = client.list(&ListOptions::default()).await.unwrap();
    assert!(hidden.secrets.is_empty());
    let with_deleted = ListOptions {
        include_deleted: true,
        include_metadata: true,
        ..ListOptions::default()
    };
    let listed = client.list_all(&with_deleted).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].deleted_at.is_some());
    assert_eq!(listed[0].version_count, Some(2));

    assert!(
        client
            .restore("billing/stripe")
            .await
            .unwrap()
            .deleted_at
            .is_none()
    );
    client.destroy("billing/stripe").await.unwrap();
    assert_eq!(
        client.metadata("billing/stripe").await.unwrap_err().code(),
        Some(ErrorCode::SecretNotFound)
    );
}

#[tokio::test]
async fn tokens_keys_and_health() {
    let server = Server::start(&[]);
    let root = Client::new(&server.address, server.token.as_str()).unwrap();

    let created = root
        .create_token(&CreateTokenRequest {
            identity_id: "user:alice@acme.example".into(),
            ttl: Some("1h".into()),
            display_name: None,
        })
        .await
        .unwrap();
    let alice = Client::new(&server.address, created.token.as_str()).unwrap();
    assert_eq!(
        alice.whoami().await.unwrap().identity_id,
        "user:alice@acme.example"
    );
    assert!(
        root.list_tokens()
            .await
            .unwrap()
            .tokens
            .iter()
            .any(|t| t.accessor == created.accessor)
    );
    root.revoke_token(&created.accessor).await.unwrap();
    assert_eq!(
        alice.whoami().await.unwrap_err().code(),
        Some(ErrorCode::Unauthenticated)
    );
    assert_eq!(
        root.revoke_token("acc_unknown").await.unwrap_err().code(),
        Some(ErrorCode::TokenNotFound)
    );

    let rotated = root.rotate_keys().await.unwrap();
    let keys = root.keys().await.unwrap();
    assert_eq!(keys.active_key_id, rotated.key_id);
    assert_eq!(keys.keys.len(), 2);

    // Health needs no token; detailed health does.
    let anonymous = Client::builder(&server.address).build().unwrap();
    assert_eq!(anonymous.health().await.unwrap().storage, "sqlite");
    assert_eq!(
        anonymous.ready().await.unwrap().status,
        scaivault_api::health::HealthStatus::Ok
    );
    assert_eq!(
        anonymous.health_detailed().await.unwrap_err().code(),
        Some(ErrorCode::Unauthenticated)
    );
    assert!(
        root.health_detailed()
            .await
            .unwrap()
            .components
            .contains_key("storage")
    );
}

#[tokio::test]
async fn policies_identities_and_audit_through_the_typed_client() {
    let server = Server::dev().exports().start();
    let root = Client::new(&server.address, server.token.as_str()).unwrap();
    root.write("team/a", &write_request(json!({"k": "v"})))
        .await
        .unwrap();

    let input: PolicyInput = serde_json::from_value(json!({
        "name": "team", "description": "team access",
        "rules": [{"path_pattern": "team/**", "permissions": ["read"]}]
    }))
    .unwrap();
    let policy = root.create_policy(&input).await.unwrap();
    let conflict = root.create_policy(&input).await.unwrap_err();
    assert_eq!(conflict.code(), Some(ErrorCode::Conflict));
    assert_eq!(root.get_policy(&policy.id).await.unwrap().name, "team");
    let missing = root.get_policy("pol_missing").await.unwrap_err();
    assert!(missing.is_not_found());
    assert!(matches!(
        root.get_policy("../sys").await.unwrap_err(),
        Error::InvalidInput { .. }
    ));

    let identity = root
        .create_identity(&IdentityInput {
            id: "k8s:team/worker".into(),
            display_name: Some("worker".into()),
        })
        .await
        .unwrap();
    assert_eq!(identity.id, "k8s:team/worker");
    let binding = root
        .bind_policy(&policy.id, "k8s:team/worker")
        .await
        .unwrap();
    assert_eq!(binding.identity_id, "k8s:team/worker");
    assert_eq!(
        root.get_identity("k8s:team/worker")
            .await
            .unwrap()
            .policies
            .len(),
        1
    );
    assert_eq!(root.list_identities().await.unwrap().identities.len(), 1);
    assert_eq!(
        root.policy_bindings(&policy.id)
            .await
            .unwrap()
            .bindings
            .len(),
        1
    );
    let listed = root.list_policies(Some("team/a")).await.unwrap();
    assert_eq!(listed.policies.len(), 1);
    assert!(
        root.list_policies(Some("elsewhere"))
            .await
            .unwrap()
            .policies
            .is_empty()
    );

    let test = |permission| PolicyTestRequest {
        identity_id: Some("k8s:team/worker".into()),
        path: "team/a".into(),
        permission,
        policy: None,
    };
    assert!(
        root.test_policy(&test(Permission::Read))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !root
            .test_policy(&test(Permission::Write))
            .await
            .unwrap()
            .allowed
    );

    let token = root
        .create_token(&CreateTokenRequest {
            identity_id: "k8s:team/worker".into(),
            ttl: Some("1h".into()),
            display_name: None,
        })
        .await
        .unwrap();
    let worker = root.with_token(token.token.as_str()).unwrap();
    assert_eq!(worker.read("team/a").await.unwrap().data["k"], "v");
    let denied = worker
        .write("team/a", &write_request(json!({"k": "w"})))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some(ErrorCode::PermissionDenied));
    assert_eq!(
        worker
            .audit_logs(&AuditLogOptions::default())
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );

    root.unbind_policy(&policy.id, "k8s:team/worker")
        .await
        .unwrap();
    assert_eq!(
        worker.read("team/a").await.unwrap_err().code(),
        Some(ErrorCode::PermissionDenied)
    );
    root.delete_policy(&policy.id).await.unwrap();
    assert!(
        root.delete_policy(&policy.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // The worker's three requests, page by page.
    let options = AuditLogOptions {
        identity: Some("k8s:team/worker".into()),
        limit: Some(1),
        ..AuditLogOptions::default()
    };
    let mut pages = root.audit_log_pages(&options);
    let mut outcomes = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.len() <= 1);
        outcomes.extend(page.into_iter().map(|r| (r.action, r.outcome)));
    }
    let pairs: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("secrets.read", "success"),
            ("secrets.write", "denied"),
            ("audit.logs", "denied"),
            ("secrets.read", "denied"),
        ]
    );
    let all = root.audit_logs_all(&options).await.unwrap();
    assert_eq!(all.len(), 4);
    let hmac = root.audit_hmac(&token.accessor).await.unwrap();
    assert!(
        all.iter()
            .all(|r| r.accessor_hmac.as_deref() == Some(hmac.as_str()))
    );

    let report = root
        .audit_identity("k8s:team/worker", &AuditRange::default())
        .await
        .unwrap();
    assert_eq!(report.summary.total, 4);
    assert_eq!(report.summary.resources_accessed, ["team/a"]);
    let secret = root
        .audit_secret("team/a", &AuditRange::default())
        .await
        .unwrap();
    assert_eq!(secret.logs.len(), 4, "write by root + three by the worker");
    let policies = root
        .audit_secret("sys/policies", &AuditRange::default())
        .await
        .unwrap();
    assert!(policies.logs.iter().any(|r| r.action == "policies.create"));
    let verified = root.audit_verify(&AuditRange::default()).await.unwrap();
    assert!(verified.verified && verified.first_broken.is_none());

    // An export, polled to completion.
    let today = time::OffsetDateTime::now_utc().date();
    let day = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    let mut job = root
        .audit_export(&ExportRequest {
            from: day(today.previous_day().unwrap()),
            to: day(today.next_day().unwrap()),
            format: "jsonl".into(),
            destination: ExportDestination::File {
                path: "typed.jsonl".into(),
            },
        })
        .await
        .unwrap();
    if job.status == EXPORT_RUNNING {
        job = wait_for("the export to finish", Duration::from_secs(10), || async {
            let job = root.audit_export_status(&job.id).await.unwrap();
            (job.status != EXPORT_RUNNING).then_some(job)
        })
        .await;
    }
    assert_eq!(job.status, "completed", "{job:?}");
    let text = std::fs::read_to_string(server.export_dir().join("typed.jsonl")).unwrap();
    assert_eq!(text.lines().count() as u64, job.records_exported);
}
