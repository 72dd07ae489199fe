//! The typed client against a real `scaivault-server dev`: the endpoints the CLI does not
//! exercise (batch read, list options, description updates) and typed error matching.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use scaivault_client::api::ErrorCode;
use scaivault_client::api::auth::CreateTokenRequest;
use scaivault_client::api::secrets::{
    SecretMetadataInput, SecretType, WriteOptions, WriteSecretRequest,
};
use scaivault_client::{Client, Error, ListOptions};
use serde_json::json;
use support::Server;

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
    let server = Server::start();
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
    let server = Server::start();
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
