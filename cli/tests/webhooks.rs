//! Webhooks through the `scaivault` binary and the typed client against a real
//! `scaivault-server dev` (loopback receivers are allowed in dev mode), with a loopback
//! receiver that checks each delivery's signature as a receiver would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use scaivault_client::api::events::EventType;
use scaivault_client::api::webhooks::{DeliveryStatus, WebhookFilters};
use scaivault_client::{
    Client, DeliveriesOptions, NewWebhook, SecretString, WEBHOOK_TOLERANCE, WebhookHeaders,
    WebhookUpdate, generate_webhook_secret, verify_webhook_signature,
};
use scaivault_testkit::Server;
use secrecy::ExposeSecret;
use serde_json::Value;

/// One POST as the receiver got it.
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    fn verify(&self, secret: &str) -> Result<(), scaivault_client::VerifyError> {
        let headers = WebhookHeaders {
            id: self.header("webhook-id"),
            timestamp: self.header("webhook-timestamp"),
            signature: self.header("webhook-signature"),
        };
        verify_webhook_signature(
            secret,
            &headers,
            &self.body,
            SystemTime::now(),
            WEBHOOK_TOLERANCE,
        )
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A minimal HTTP/1.1 receiver on a free loopback port answering every request with
/// `status`; what it gets arrives on the channel.
fn receiver(status: u16) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or(0);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                }
            }
            let length = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap_or(());
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if tx.send(Received { headers, body }).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn next(rx: &mpsc::Receiver<Received>) -> Received {
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a delivery within 30 s")
}

#[test]
fn the_cli_creates_tests_lists_and_removes_webhooks() {
    let server = Server::start(&[]);
    let (url, rx) = receiver(200);

    // The secret the caller brings, in a file (never on the command line).
    let secret = server.run(&["webhooks", "new-secret"]).ok().stdout;
    let secret = secret.trim_end().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    std::fs::write(server.workdir().join("whsec"), format!("{secret}\n")).unwrap();
    let mut printed = Vec::new();

    let created = server.run(&[
        "webhooks",
        "create",
        "--name",
        "prod-rotations",
        "--url",
        &url,
        "--secret-file",
        "whsec",
        "--events",
        "secret.created,rotation.due",
        "--path-prefix",
        "environments/production/",
        "-o",
        "json",
    ]);
    printed.push(format!("{created:?}"));
    let webhook = created.ok().json();
    let id = webhook["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"), "{webhook}");
    assert_eq!(
        webhook["events"],
        serde_json::json!(["secret.created", "rotation.due"])
    );
    assert_eq!(
        webhook["filters"]["path_prefix"],
        "environments/production/"
    );
    assert_eq!(webhook["enabled"], true);

    // A write under the prefix arrives, signed with the secret; one elsewhere does not.
    server
        .run(&["secrets", "write", "staging/db", "--data", "password=a"])
        .ok();
    server
        .run(&[
            "secrets",
            "write",
            "environments/production/db",
            "--data",
            "password=b",
        ])
        .ok();
    let delivery = next(&rx);
    assert_eq!(delivery.verify(&secret), Ok(()));
    assert_eq!(delivery.header("content-type"), "application/json");
    let payload = delivery.json();
    assert_eq!(payload["type"], "secret.created");
    assert_eq!(payload["data"]["path"], "environments/production/db");
    assert!(!String::from_utf8_lossy(&delivery.body).contains("password=b"));
    let message_id = delivery.header("webhook-id").to_owned();
    // A different secret does not verify it.
    let other = generate_webhook_secret().unwrap();
    assert!(delivery.verify(other.expose_secret()).is_err());

    // A test event now, signed the same way.
    let test = server.run(&["webhooks", "test", &id]);
    printed.push(format!("{test:?}"));
    let test = test.ok().stdout;
    assert!(test.contains("delivered    yes"), "{test}");
    let sent = next(&rx);
    assert_eq!(sent.verify(&secret), Ok(()));
    assert_eq!(sent.json()["type"], "webhook.test");
    assert_eq!(sent.json()["data"]["webhook_id"], id.as_str());

    // The delivery is listed as succeeded, under the id the receiver saw.
    let listed = server
        .run(&["webhooks", "deliveries", &id, "-o", "json"])
        .ok()
        .json();
    let deliveries = listed["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{listed}");
    assert_eq!(deliveries[0]["id"], message_id.as_str());
    assert_eq!(deliveries[0]["status"], "succeeded");
    let table = server
        .run(&[
            "webhooks",
            "deliveries",
            &id,
            "--status",
            "succeeded",
            "--all",
        ])
        .ok()
        .stdout;
    assert!(
        table.contains(&message_id) && table.contains("HTTP 200"),
        "{table}"
    );
    let failed = server
        .run(&[
            "webhooks",
            "deliveries",
            &id,
            "--status",
            "failed",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(failed["deliveries"], serde_json::json!([]));
    // A succeeded delivery has nothing to retry.
    let retried = server
        .run(&["webhooks", "retry", &id, &message_id])
        .failed_with(1);
    assert!(retried.stderr.contains("conflict"), "{retried:?}");

    // Listing, reading, changing.
    let list = server.run(&["webhooks", "list"]).ok().stdout;
    assert!(
        list.starts_with("ID ") && list.contains("prod-rotations"),
        "{list}"
    );
    let updated = server
        .run(&[
            "webhooks",
            "update",
            &id,
            "--disable",
            "--events",
            "rotation.due,rotation.overdue",
            "--no-path-prefix",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(updated["enabled"], false);
    assert_eq!(
        updated["events"],
        serde_json::json!(["rotation.due", "rotation.overdue"])
    );
    assert!(updated["filters"].get("path_prefix").is_none(), "{updated}");
    // A new secret: the server says when it was set, never what it is.
    let rotated = server
        .run_with_stdin(
            &["webhooks", "update", &id, "--secret-file", "-", "--enable"],
            &format!("{}\n", generate_webhook_secret().unwrap().expose_secret()),
        )
        .ok()
        .stdout;
    assert!(rotated.contains("enabled          yes"), "{rotated}");
    let got = server.run(&["webhooks", "get", &id]).ok().stdout;
    printed.push(got.clone());

    // Refusals: a name taken, a malformed secret (before sending), an address the guard
    // refuses, an unknown id.
    let taken = server.run(&[
        "webhooks",
        "create",
        "--name",
        "prod-rotations",
        "--url",
        &url,
        "--secret-file",
        "whsec",
        "--events",
        "rotation.due",
    ]);
    printed.push(format!("{taken:?}"));
    assert!(taken.failed_with(1).stderr.contains("conflict"));
    std::fs::write(server.workdir().join("bad"), "whsec_short-and-not-base64\n").unwrap();
    let bad = server.run(&[
        "webhooks",
        "create",
        "--name",
        "x",
        "--url",
        &url,
        "--secret-file",
        "bad",
        "--events",
        "rotation.due",
    ]);
    printed.push(format!("{bad:?}"));
    let bad = bad.failed_with(1);
    assert!(bad.stderr.contains("invalid_request"), "{bad:?}");
    assert!(!bad.stderr.contains("short-and-not-base64"), "{bad:?}");
    let metadata = server.run(&[
        "webhooks",
        "create",
        "--name",
        "metadata",
        "--url",
        "http://169.254.169.254/latest/meta-data/",
        "--secret-file",
        "whsec",
        "--events",
        "rotation.due",
    ]);
    printed.push(format!("{metadata:?}"));
    assert!(metadata.failed_with(1).stderr.contains("invalid_request"));
    let missing = server.run(&["webhooks", "get", "wh_000000000000000000000000"]);
    assert!(missing.failed_with(1).stderr.contains("not_found"));

    server.run(&["webhooks", "delete", &id]).ok();
    let list = server.run(&["webhooks", "list", "-o", "json"]).ok().json();
    assert_eq!(list["webhooks"], serde_json::json!([]));

    // The secret never came back in anything printed.
    let key = secret.trim_start_matches("whsec_");
    for text in &printed {
        assert!(!text.contains(key), "the secret was printed: {text}");
    }
}

#[test]
fn an_environment_secret_and_a_file_secret_do_not_mix() {
    let server = Server::start(&[]);
    let (url, _rx) = receiver(200);
    std::fs::write(
        server.workdir().join("whsec"),
        generate_webhook_secret().unwrap().expose_secret(),
    )
    .unwrap();
    // The variable alone is a secret source.
    let from_env = server
        .command()
        .env(
            "SCAIVAULT_WEBHOOK_SECRET",
            generate_webhook_secret().unwrap().expose_secret(),
        )
        .args([
            "webhooks",
            "create",
            "--name",
            "from-env",
            "--url",
            &url,
            "--events",
            "rotation.due",
        ])
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{from_env:?}");
    // Beside a file, the file is meant: the variable of the shell does not conflict.
    let both = server
        .command()
        .env(
            "SCAIVAULT_WEBHOOK_SECRET",
            generate_webhook_secret().unwrap().expose_secret(),
        )
        .args([
            "webhooks",
            "create",
            "--name",
            "from-file",
            "--url",
            &url,
            "--secret-file",
            "whsec",
            "--events",
            "rotation.due",
        ])
        .output()
        .unwrap();
    assert!(both.status.success(), "{both:?}");
}

#[tokio::test]
async fn the_typed_client_pages_deliveries_and_retries_a_failed_endpoint() {
    let server = Server::start(&[]);
    // An endpoint that answers 500: every attempt fails and stays pending.
    let (url, rx) = receiver(500);
    let client = Client::new(&server.address, server.token.as_str()).unwrap();
    let secret = generate_webhook_secret().unwrap();
    let webhook = client
        .create_webhook(&NewWebhook {
            name: "failing".into(),
            url,
            secret: secret.clone(),
            events: vec![EventType::SecretCreated],
            filters: WebhookFilters::default(),
            enabled: None,
        })
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&webhook)
            .unwrap()
            .contains(secret.expose_secret())
    );

    for i in 0..3 {
        let write = scaivault_client::api::secrets::WriteSecretRequest {
            data: serde_json::json!({"k": i}).as_object().cloned().unwrap(),
            secret_type: None,
            metadata: None,
            options: None,
        };
        client.write(&format!("app/s{i}"), &write).await.unwrap();
    }
    // The first event is attempted (immediately, then after 5 s); the others wait their turn.
    let first = next(&rx);
    assert_eq!(first.verify(secret.expose_secret()), Ok(()));
    let test = client.test_webhook(&webhook.id).await.unwrap();
    assert!(!test.delivered);
    assert_eq!(test.attempt.status_code, Some(500));

    let pending = client
        .webhook_deliveries(
            &webhook.id,
            &DeliveriesOptions {
                status: Some(DeliveryStatus::Pending),
                ..DeliveriesOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        pending.deliveries.len(),
        1,
        "one pending delivery at a time"
    );
    let delivery = &pending.deliveries[0];
    assert_eq!(delivery.id, first.header("webhook-id"));
    assert!(delivery.attempts >= 1 && delivery.next_attempt_at.is_some());
    assert_eq!(delivery.attempt_log[0].status_code, Some(500));

    // Retried now: the same webhook-id again.
    let retried = client
        .retry_delivery(&webhook.id, &delivery.id)
        .await
        .unwrap();
    assert_eq!(retried.status, DeliveryStatus::Pending);
    let again = loop {
        let got = next(&rx);
        if got.header("webhook-id") == delivery.id {
            break got;
        }
    };
    assert_eq!(again.verify(secret.expose_secret()), Ok(()));

    // Pages of one, newest first, walked to the end.
    let all = client
        .webhook_deliveries_all(
            &webhook.id,
            &DeliveriesOptions {
                limit: Some(1),
                ..DeliveriesOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(!all.is_empty());
    assert!(all.windows(2).all(|w| w[0].event.seq > w[1].event.seq));

    // A disabled endpoint gets nothing more; fields left out stay.
    let disabled = client
        .update_webhook(
            &webhook.id,
            &WebhookUpdate {
                enabled: Some(false),
                ..WebhookUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.events, [EventType::SecretCreated]);
    // Errors are typed.
    let missing = client
        .webhook("wh_000000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));
    let unknown = client
        .retry_delivery(&webhook.id, "msg_nope_1")
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    let bad = client
        .create_webhook(&NewWebhook {
            name: "loop".into(),
            url: "ftp://127.0.0.1/".into(),
            secret: SecretString::from(secret.expose_secret().to_owned()),
            events: vec![EventType::RotationDue],
            filters: WebhookFilters::default(),
            enabled: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
    // A token without admin on sys/webhooks may not create one.
    let reader = client
        .create_token(&scaivault_client::api::auth::CreateTokenRequest {
            identity_id: "sa:nobody".into(),
            ttl: None,
            display_name: None,
        })
        .await
        .unwrap();
    let nobody = client.with_token(reader.token.as_str()).unwrap();
    let denied = nobody.list_webhooks().await.unwrap_err();
    assert_eq!(denied.status(), Some(403));
    client.delete_webhook(&webhook.id).await.unwrap();
    assert!(client.list_webhooks().await.unwrap().webhooks.is_empty());
}
