//! The operator end to end: the real kube-apiserver of `e2e/`, the real
//! `scaivault-server dev` (Kubernetes login through TokenReview) and the
//! `scaivault-operator` binary, one namespace (and one operator process) per test.
//! No controller-manager runs: ServiceAccounts are created by hand and garbage
//! collection is checked through ownerReferences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    Operator, Shared, create_vault_secret, grant_read, namespace, root, service_account, shared,
    wait_for, write,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use scaivault_client::api::policy::Permission;
use scaivault_operator::crd::{ConditionStatus, VaultPolicy, VaultSecret};
use scaivault_operator::vault_secret::RESTARTED_AT;
use scaivault_testkit::wait_until;
use serde_json::{Value, json};

fn ready(vs: &VaultSecret) -> Option<(ConditionStatus, String, String)> {
    vs.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
        .map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

/// Waits until `Ready` has `status` and returns the object.
async fn wait_ready(
    client: &Client,
    ns: &str,
    name: &str,
    status: ConditionStatus,
    timeout: Duration,
) -> VaultSecret {
    let api = Api::<VaultSecret>::namespaced(client.clone(), ns);
    wait_for(
        &format!("VaultSecret {name} Ready={status:?}"),
        timeout,
        || async {
            let vs = api.get(name).await.ok()?;
            (ready(&vs)?.0 == status).then_some(vs)
        },
    )
    .await
}

async fn secret_data(client: &Client, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect(),
    )
}

async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
}

async fn start(prefix: &str) -> (&'static Shared, Client, String) {
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(&client, prefix).await;
    (shared, client, ns)
}

#[tokio::test]
async fn vault_secret_syncs_templates_refreshes_and_repairs() {
    let (shared, client, ns) = start("vs-sync").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    let prefix = format!("apps/{ns}");
    grant_read(&vault, &ns, "app", &prefix).await;
    write(
        &vault,
        &format!("{prefix}/db"),
        json!({"user": "app", "password": "pw-one", "port": 5432}),
    )
    .await;
    write(
        &vault,
        &format!("{prefix}/tls"),
        json!({"cert": "CERT-PEM", "key": "KEY-PEM"}),
    )
    .await;
    write(
        &vault,
        &format!("{prefix}/registry"),
        json!({"registry": "registry.example", "username": "ci", "password": "reg-pass"}),
    )
    .await;
    // Polling only: this test is about the refresh grid and repairs (the stream's push is
    // tests/operator_stream.rs), and a 1 h VaultSecret below must not see pw-two early.
    let op = Operator::start(shared, &ns, "op-a", &["--event-stream", "false"]);
    create_vault_secret(
        &client,
        &ns,
        "pull",
        json!({
            "path": format!("{prefix}/registry"), "serviceAccountName": "app",
            "target": {"name": "pull", "type": "kubernetes.io/dockerconfigjson"},
        }),
    )
    .await;

    create_vault_secret(&client, &ns, "db", json!({
        "path": format!("{prefix}/db"), "serviceAccountName": "app", "refreshInterval": "2s",
        "target": {"name": "db-creds", "labels": {"team": "payments"}, "annotations": {"note": "synced"}},
    })).await;
    create_vault_secret(
        &client,
        &ns,
        "db-url",
        json!({
            "path": format!("{prefix}/db"), "serviceAccountName": "app", "refreshInterval": "1h",
            "target": {"name": "db-url", "template": {"data": {
                "url": "postgres://{{ .user }}:{{ .password }}@db:{{ .port }}/app",
                "user": "{{ .user | base64 }}",
            }}},
        }),
    )
    .await;
    create_vault_secret(
        &client,
        &ns,
        "tls",
        json!({
            "path": format!("{prefix}/tls"), "serviceAccountName": "app",
            "target": {"name": "web-tls", "type": "kubernetes.io/tls", "template": {"data": {
                "tls.crt": "{{ .cert }}", "tls.key": "{{ .key }}",
            }}},
        }),
    )
    .await;

    let started = Instant::now();
    let db = wait_ready(
        &client,
        &ns,
        "db",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    let url = wait_ready(
        &client,
        &ns,
        "db-url",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    let tls = wait_ready(
        &client,
        &ns,
        "tls",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    wait_ready(
        &client,
        &ns,
        "pull",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    let pull = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("pull")
        .await
        .unwrap();
    assert_eq!(
        pull.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let doc: Value = serde_json::from_slice(&pull.data.unwrap()[".dockerconfigjson"].0).unwrap();
    assert_eq!(doc["auths"]["registry.example"]["username"], "ci");
    assert_eq!(doc["auths"]["registry.example"]["auth"], "Y2k6cmVnLXBhc3M=");
    // Health endpoints and the metrics of this run.
    for path in ["/healthz", "/readyz"] {
        let resp = reqwest::get(format!("{}{path}", op.metrics_url))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let text = op.metrics().await.unwrap();
    for needle in [
        "scaivault_operator_reconciles_total{kind=\"VaultSecret\",result=\"ok\"}",
        "scaivault_operator_reconcile_duration_seconds_bucket{",
        "scaivault_operator_secret_writes_total{kind=\"VaultSecret\"}",
        "scaivault_operator_leader 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    eprintln!("three VaultSecrets Ready in {:?}", started.elapsed());

    // Opaque, every field a key; labels, annotations, owner.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let s = secrets.get("db-creds").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        secret_data(&client, &ns, "db-creds").await.unwrap(),
        BTreeMap::from([
            ("password".into(), "pw-one".into()),
            ("port".into(), "5432".into()),
            ("user".into(), "app".into()),
        ])
    );
    assert_eq!(s.labels().get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        s.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("scaivault-operator")
    );
    assert_eq!(
        s.annotations().get("note").map(String::as_str),
        Some("synced")
    );
    let owners = s.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "VaultSecret");
    assert_eq!(owners[0].api_version, "scaivault.io/v1alpha1");
    assert_eq!(owners[0].name, "db");
    assert_eq!(Some(owners[0].uid.as_str()), db.metadata.uid.as_deref());
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owners[0].block_owner_deletion, Some(true));
    assert!(
        s.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("scaivault-operator")
                && m.operation.as_deref() == Some("Apply")),
        "Secret not written by server-side apply of scaivault-operator"
    );

    // Status.
    let status = db.status.clone().unwrap();
    assert_eq!(status.synced_version, Some(1));
    assert!(status.last_synced_at.is_some());
    let mac = status.secret_mac.clone().unwrap();
    assert!(mac.starts_with("hmac-sha256:"), "{mac}");
    let (_, reason, message) = ready(&db).unwrap();
    assert_eq!(reason, "Synced");
    assert!(message.contains("version 1"), "{message}");
    let cond = &status.conditions[0];
    assert_eq!(cond.observed_generation, db.metadata.generation);

    // Template and tls.
    let u = secret_data(&client, &ns, "db-url").await.unwrap();
    assert_eq!(u["url"], "postgres://app:pw-one@db:5432/app");
    assert_eq!(u["user"], "YXBw");
    assert_eq!(u.len(), 2);
    let t = secrets.get("web-tls").await.unwrap();
    assert_eq!(t.type_.as_deref(), Some("kubernetes.io/tls"));
    let td = secret_data(&client, &ns, "web-tls").await.unwrap();
    assert_eq!(
        (td["tls.crt"].as_str(), td["tls.key"].as_str()),
        ("CERT-PEM", "KEY-PEM")
    );
    assert_ne!(
        url.status.unwrap().secret_mac,
        tls.status.unwrap().secret_mac
    );

    // A new version reaches the Secret within one refresh (2 s ± 10 %, plus slack for
    // the write and the apiserver).
    let v2_at = Instant::now();
    write(
        &vault,
        &format!("{prefix}/db"),
        json!({"user": "app", "password": "pw-two", "port": 5432}),
    )
    .await;
    wait_for(
        "password pw-two in db-creds",
        Duration::from_secs(6),
        || async {
            (secret_data(&client, &ns, "db-creds")
                .await?
                .get("password")?
                == "pw-two")
                .then_some(())
        },
    )
    .await;
    let took = v2_at.elapsed();
    eprintln!("new vault version reached the Secret after {took:?}");
    // one refresh (2 s + 10 % jitter) plus slack for the write, login-free read and apply
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} for a 2 s refresh"
    );
    let db = wait_for("syncedVersion 2", Duration::from_secs(5), || async {
        let vs = Api::<VaultSecret>::namespaced(client.clone(), &ns)
            .get("db")
            .await
            .ok()?;
        (vs.status.as_ref()?.synced_version == Some(2)).then_some(vs)
    })
    .await;
    assert_ne!(
        db.status.unwrap().secret_mac.unwrap(),
        mac,
        "MAC must follow the data"
    );

    // A hand edit of a Secret with a 1 h refresh is repaired at once (the owned-Secret
    // watch triggers the reconcile), back to the vault's value.
    let edit_at = Instant::now();
    secrets
        .patch(
            "web-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"tls.key": ByteString(b"tampered".to_vec())}})),
        )
        .await
        .unwrap();
    wait_for("web-tls repaired", Duration::from_secs(10), || async {
        (secret_data(&client, &ns, "web-tls").await?.get("tls.key")? == "KEY-PEM").then_some(())
    })
    .await;
    eprintln!("hand edit repaired after {:?}", edit_at.elapsed());
    // The 1 h VaultSecret db-url had not refreshed, so it still carries pw-one; a hand
    // edit there is repaired with the vault's current value (pw-two).
    assert_eq!(
        secret_data(&client, &ns, "db-url").await.unwrap()["url"],
        "postgres://app:pw-one@db:5432/app"
    );
    secrets
        .patch(
            "db-url",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"url": ByteString(b"tampered".to_vec())}})),
        )
        .await
        .unwrap();
    wait_for(
        "db-url repaired with the new version",
        Duration::from_secs(10),
        || async {
            (secret_data(&client, &ns, "db-url").await?.get("url")?
                == "postgres://app:pw-two@db:5432/app")
                .then_some(())
        },
    )
    .await;

    // Events: Created and DriftRepaired; no secret value anywhere in events or status.
    let evs = wait_for("DriftRepaired event", Duration::from_secs(10), || async {
        let evs = events(&client, &ns).await;
        evs.iter()
            .any(|e| e.reason.as_deref() == Some("DriftRepaired"))
            .then_some(evs)
    })
    .await;
    assert!(evs.iter().any(|e| e.reason.as_deref() == Some("Created")));
    let all_vs = Api::<VaultSecret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let dump = format!(
        "{}{}{}",
        serde_json::to_string(&evs).unwrap(),
        serde_json::to_string(&all_vs).unwrap(),
        op.logs()
    );
    for value in ["pw-one", "pw-two", "CERT-PEM", "KEY-PEM", "reg-pass"] {
        assert!(
            !dump.contains(value),
            "{value} leaked into events, status or the operator's log"
        );
    }
}

#[tokio::test]
async fn service_account_without_permission_gets_a_clear_condition_and_no_secret() {
    let (shared, client, ns) = start("vs-denied").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "nobody").await;
    let path = format!("apps/{ns}/db");
    write(&vault, &path, json!({"password": "top-secret"})).await;
    // The operator holds the root token, yet the read must fail: it reads as the SA.
    let op = Operator::start(shared, &ns, "op-a", &[]);
    create_vault_secret(
        &client,
        &ns,
        "db",
        json!({
            "path": path, "serviceAccountName": "nobody", "target": {"name": "db-creds"},
        }),
    )
    .await;
    // `default` does not exist (no controller-manager makes it).
    create_vault_secret(
        &client,
        &ns,
        "no-sa",
        json!({"path": path, "target": {"name": "other"}}),
    )
    .await;

    let vs = wait_ready(
        &client,
        &ns,
        "db",
        ConditionStatus::False,
        Duration::from_secs(30),
    )
    .await;
    let (_, reason, message) = ready(&vs).unwrap();
    assert_eq!(reason, "PermissionDenied");
    assert!(
        message.contains(&format!("k8s:{ns}/nobody"))
            && message.contains("may not read")
            && message.contains(&path),
        "{message}"
    );
    let vs = wait_ready(
        &client,
        &ns,
        "no-sa",
        ConditionStatus::False,
        Duration::from_secs(30),
    )
    .await;
    let (_, reason, message) = ready(&vs).unwrap();
    assert_eq!(reason, "LoginFailed");
    assert!(
        message.contains("ServiceAccount")
            && message.contains("default")
            && message.contains("does not exist"),
        "{message}"
    );

    assert!(
        secret_data(&client, &ns, "db-creds").await.is_none(),
        "a Secret was written"
    );
    assert!(
        secret_data(&client, &ns, "other").await.is_none(),
        "a Secret was written"
    );
    let evs = wait_for(
        "PermissionDenied warning",
        Duration::from_secs(10),
        || async {
            let evs = events(&client, &ns).await;
            evs.iter()
                .any(|e| {
                    e.reason.as_deref() == Some("PermissionDenied")
                        && e.type_.as_deref() == Some("Warning")
                })
                .then_some(evs)
        },
    )
    .await;
    assert!(evs.iter().any(|e| e.type_.as_deref() == Some("Warning")));
    let errors = op
        .metric("scaivault_operator_errors_total{kind=\"VaultSecret\",reason=\"PermissionDenied\"}")
        .await;
    assert!(errors.unwrap_or(0.0) >= 1.0, "errors metric: {errors:?}");

    // Granting read fixes it without touching the VaultSecret (backoff retries).
    grant_read(&vault, &ns, "nobody", &format!("apps/{ns}")).await;
    wait_ready(
        &client,
        &ns,
        "db",
        ConditionStatus::True,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        secret_data(&client, &ns, "db-creds").await.unwrap()["password"],
        "top-secret"
    );
    // Only now has the operator seen the value: none of its events or logs carry it.
    let evs = events(&client, &ns).await;
    assert!(!serde_json::to_string(&evs).unwrap().contains("top-secret"));
    assert!(!op.logs().contains("top-secret"));
}

async fn restarted_at(client: &Client, ns: &str) -> Option<String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .unwrap();
    d.spec
        .template
        .metadata?
        .annotations?
        .get(RESTARTED_AT)
        .cloned()
}

#[tokio::test]
async fn rollout_restart_only_when_the_data_changes() {
    let (shared, client, ns) = start("vs-rollout").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    let path = format!("apps/{ns}/db");
    grant_read(&vault, &ns, "app", &format!("apps/{ns}")).await;
    write(&vault, &path, json!({"password": "one"})).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let mut op = Operator::start(shared, &ns, "op-a", &[]);
    create_vault_secret(
        &client,
        &ns,
        "db",
        json!({
            "path": path, "serviceAccountName": "app", "refreshInterval": "1s",
            "target": {"name": "db-creds"},
            "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}],
        }),
    )
    .await;
    wait_ready(
        &client,
        &ns,
        "db",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    let reconciles = "scaivault_operator_reconciles_total{kind=\"VaultSecret\",result=\"ok\"}";
    // Several refreshes of unchanged data: no restart (and none for the first sync).
    wait_for("3 refreshes", Duration::from_secs(10), || async {
        (op.metric(reconciles).await? >= 3.0).then_some(())
    })
    .await;
    assert_eq!(
        restarted_at(&client, &ns).await,
        None,
        "restarted without a change"
    );

    // A hand edit is repaired, which is not a change of the data either.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "db-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"password": ByteString(b"x".to_vec())}})),
        )
        .await
        .unwrap();
    wait_for("repair", Duration::from_secs(10), || async {
        (secret_data(&client, &ns, "db-creds")
            .await?
            .get("password")?
            == "one")
            .then_some(())
    })
    .await;
    assert_eq!(
        restarted_at(&client, &ns).await,
        None,
        "restarted after a drift repair"
    );

    // An operator restart re-reads everything and still restarts nothing.
    op.restart();
    wait_for(
        "reconciles after the operator restart",
        Duration::from_secs(20),
        || async { (op.metric(reconciles).await? >= 2.0).then_some(()) },
    )
    .await;
    assert_eq!(
        restarted_at(&client, &ns).await,
        None,
        "restarted after an operator restart"
    );

    // A new version does restart, once.
    write(&vault, &path, json!({"password": "two"})).await;
    let first = wait_for("restartedAt annotation", Duration::from_secs(10), || {
        restarted_at(&client, &ns)
    })
    .await;
    assert_eq!(
        secret_data(&client, &ns, "db-creds").await.unwrap()["password"],
        "two"
    );
    let seen = op.metric(reconciles).await.unwrap();
    wait_for("2 more refreshes", Duration::from_secs(10), || async {
        (op.metric(reconciles).await? >= seen + 2.0).then_some(())
    })
    .await;
    assert_eq!(
        restarted_at(&client, &ns).await,
        Some(first),
        "restarted again without a change"
    );
    assert_eq!(
        op.metric("scaivault_operator_rollout_restarts_total").await,
        Some(1.0)
    );
    let evs = events(&client, &ns).await;
    assert!(
        evs.iter()
            .any(|e| e.reason.as_deref() == Some("RolloutRestarted"))
    );
}

#[tokio::test]
async fn vault_policy_round_trips_and_is_removed_on_delete() {
    let (shared, client, ns) = start("vp").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    let path = format!("apps/{ns}/db");
    write(&vault, &path, json!({"password": "pw"})).await;
    let _op = Operator::start(shared, &ns, "op-a", &[]);
    let api = Api::<VaultPolicy>::namespaced(client.clone(), &ns);
    let vp: VaultPolicy = serde_json::from_value(json!({
        "apiVersion": "scaivault.io/v1alpha1", "kind": "VaultPolicy", "metadata": {"name": "readers"},
        "spec": {
            "rules": [{"pathPattern": format!("apps/{ns}/**"), "permissions": ["read", "list"]}],
            "bindings": [{"identityType": "user", "identityId": "user:alice@example.com"}],
            "serviceAccounts": [{"namespace": ns, "name": "app"}],
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &vp).await.unwrap();
    let vp = wait_for("VaultPolicy Ready", Duration::from_secs(30), || async {
        let vp = api.get("readers").await.ok()?;
        let ok = vp
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == ConditionStatus::True);
        ok.then_some(vp)
    })
    .await;
    assert!(
        vp.finalizers().iter().any(|f| f == "scaivault.io/policy"),
        "{:?}",
        vp.finalizers()
    );
    let id = vp.status.unwrap().policy_id.unwrap();
    let policy = vault.get_policy(&id).await.unwrap();
    assert_eq!(policy.name, format!("{ns}-readers"));
    assert_eq!(policy.rules.len(), 1);
    assert_eq!(policy.rules[0].path_pattern, format!("apps/{ns}/**"));
    assert_eq!(
        policy.rules[0].permissions,
        [Permission::Read, Permission::List]
    );
    let bound = |v: &scaivault_client::Client| {
        let v = v.clone();
        let id = id.clone();
        async move {
            let mut ids: Vec<String> = v
                .policy_bindings(&id)
                .await
                .unwrap()
                .bindings
                .into_iter()
                .map(|b| b.identity_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        bound(&vault).await,
        [format!("k8s:{ns}/app"), "user:alice@example.com".to_owned()]
    );

    // The binding really grants: a VaultSecret as that ServiceAccount syncs.
    create_vault_secret(
        &client,
        &ns,
        "db",
        json!({"path": path, "serviceAccountName": "app", "target": {"name": "db"}}),
    )
    .await;
    wait_ready(
        &client,
        &ns,
        "db",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;

    // Edit: drop the user binding, change the rule; the vault follows.
    api.patch(
        "readers",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "bindings": [],
            "rules": [{"pathPattern": format!("apps/{ns}/**"), "permissions": ["read"]}],
        }})),
    )
    .await
    .unwrap();
    wait_for("vault policy updated", Duration::from_secs(20), || async {
        let p = vault.get_policy(&id).await.ok()?;
        let b = bound(&vault).await;
        (p.rules[0].permissions == [Permission::Read] && b == [format!("k8s:{ns}/app")])
            .then_some(())
    })
    .await;

    // Delete: the finalizer removes the policy from the vault, then lets the object go.
    api.delete("readers", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("VaultPolicy gone", Duration::from_secs(20), || async {
        api.get_opt("readers").await.ok()?.is_none().then_some(())
    })
    .await;
    let err = vault.get_policy(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn vault_policies_outside_the_allowed_namespaces_never_reach_the_vault() {
    let (shared, client, ns) = start("vp-ns").await;
    let vault = root(&shared.vault);
    // The operator's own namespace is `ns`, but the list names only another one.
    let _op = Operator::start(
        shared,
        &ns,
        "op-a",
        &["--policy-namespaces", "vault-admins"],
    );
    let api = Api::<VaultPolicy>::namespaced(client.clone(), &ns);
    let vp: VaultPolicy = serde_json::from_value(json!({
        "apiVersion": "scaivault.io/v1alpha1", "kind": "VaultPolicy", "metadata": {"name": "grab"},
        "spec": {"rules": [{"pathPattern": "**", "permissions": ["admin"]}],
                 "serviceAccounts": [{"namespace": ns, "name": "app"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &vp).await.unwrap();
    let message = wait_for("VaultPolicy refused", Duration::from_secs(30), || async {
        let vp = api.get("grab").await.ok()?;
        vp.status?
            .conditions
            .into_iter()
            .find(|c| {
                c.r#type == "Ready"
                    && c.status == ConditionStatus::False
                    && c.reason == "NamespaceNotAllowed"
            })
            .map(|c| c.message)
    })
    .await;
    assert!(message.contains("vault-admins"), "{message}");
    let names: Vec<String> = vault
        .list_policies(None)
        .await
        .unwrap()
        .policies
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(!names.contains(&format!("{ns}-grab")), "{names:?}");
    // Deleting it is not blocked by the finalizer.
    api.delete("grab", &DeleteParams::default()).await.unwrap();
    wait_for("VaultPolicy gone", Duration::from_secs(20), || async {
        api.get_opt("grab").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn two_replicas_only_the_leader_writes_and_the_standby_takes_over() {
    let (shared, client, ns) = start("vs-leader").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    grant_read(&vault, &ns, "app", &format!("apps/{ns}")).await;
    write(&vault, &format!("apps/{ns}/a"), json!({"v": "a"})).await;
    write(&vault, &format!("apps/{ns}/b"), json!({"v": "b"})).await;

    let mut a = Operator::start(shared, &ns, "replica-a", &[]);
    a.wait_leader().await;
    // The standby logs each election round it loses (at debug): the test waits on those.
    let mut b = Operator::new_in(shared, &ns, "replica-b", &[])
        .log_filter("info,kube=warn,scaivault_operator::lease=debug");
    b.spawn();
    wait_for("replica-b up", Duration::from_secs(20), || async {
        b.metric("scaivault_operator_leader ").await
    })
    .await;
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    assert_eq!(
        holder(leases.get("scaivault-operator").await.unwrap()).as_deref(),
        Some("replica-a")
    );

    create_vault_secret(&client, &ns, "a", json!({"path": format!("apps/{ns}/a"), "serviceAccountName": "app", "target": {"name": "a"}})).await;
    wait_ready(
        &client,
        &ns,
        "a",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    // Let the standby lose two more election rounds (renew intervals) with a secret to
    // sync in its namespace: it must stay out.
    let lost_rounds = |logs: String| logs.matches("waiting for the leader lease").count();
    let before = lost_rounds(b.logs());
    wait_until(
        "replica-b to lose two more election rounds",
        Duration::from_secs(30),
        || async { lost_rounds(b.logs()) >= before + 2 },
    )
    .await;
    assert_eq!(b.metric("scaivault_operator_leader ").await, Some(0.0));
    assert_eq!(
        b.metric("scaivault_operator_reconciles_total").await,
        None,
        "standby reconciled"
    );
    assert!(b.logs().contains("waiting for leadership"));
    assert!(!b.logs().contains("synced"), "standby wrote:\n{}", b.logs());
    wait_until(
        "replica-a to log the sync",
        Duration::from_secs(10),
        || async { a.logs().contains("synced") },
    )
    .await;
    // Every event so far was reported by the leader.
    let evs = events(&client, &ns).await;
    assert!(!evs.is_empty());
    for e in &evs {
        assert_eq!(
            e.reporting_instance.as_deref(),
            Some("replica-a"),
            "{:?}",
            e.reason
        );
    }

    // SIGKILL the leader (no release): the standby takes over once the lease expires.
    let killed = Instant::now();
    a.kill();
    b.wait_leader().await;
    eprintln!(
        "standby took over {:?} after the leader was killed (lease 4 s)",
        killed.elapsed()
    );
    assert_eq!(
        holder(leases.get("scaivault-operator").await.unwrap()).as_deref(),
        Some("replica-b")
    );
    create_vault_secret(&client, &ns, "b", json!({"path": format!("apps/{ns}/b"), "serviceAccountName": "app", "target": {"name": "b"}})).await;
    wait_ready(
        &client,
        &ns,
        "b",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    // The operator logs "synced" after it has written the status and the event.
    wait_until(
        "replica-b to log the sync",
        Duration::from_secs(10),
        || async { b.logs().contains("synced") },
    )
    .await;

    // Graceful shutdown releases the lease at once.
    assert!(b.terminate().success(), "{}", b.logs());
    let lease = leases.get("scaivault-operator").await.unwrap();
    assert_eq!(holder(lease), None, "lease not released");
    assert!(b.logs().contains("released the leader lease"));
}

#[tokio::test]
async fn hundred_vault_secrets_become_ready() {
    const N: usize = 100;
    let (shared, client, ns) = start("vs-hundred").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    grant_read(&vault, &ns, "app", &format!("apps/{ns}")).await;
    let writes = (0..N).map(|i| {
        let vault = vault.clone();
        let path = format!("apps/{ns}/s{i}");
        async move { write(&vault, &path, json!({"value": format!("v{i}")})).await }
    });
    futures::future::join_all(writes).await;
    let op = Operator::start(shared, &ns, "op-a", &[]);
    op.wait_leader().await;

    let started = Instant::now();
    let creates = (0..N).map(|i| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            create_vault_secret(&client, &ns, &format!("s{i}"), json!({
                "path": format!("apps/{ns}/s{i}"), "serviceAccountName": "app", "target": {"name": format!("s{i}")},
            }))
            .await
        }
    });
    futures::future::join_all(creates).await;
    let api = Api::<VaultSecret>::namespaced(client.clone(), &ns);
    wait_for(
        "100 VaultSecrets Ready",
        Duration::from_secs(120),
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let n = list
                .items
                .iter()
                .filter(|vs| matches!(ready(vs), Some((ConditionStatus::True, _, _))))
                .count();
            (n == N).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "MEASURED: {N} VaultSecrets Ready in {:.2} s (one ServiceAccount, {} vault logins)",
        took.as_secs_f64(),
        op.metric("scaivault_operator_vault_logins_total")
            .await
            .unwrap_or(-1.0)
    );
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let synced = secrets
        .items
        .iter()
        .filter(|s| {
            s.name_any()
                .strip_prefix('s')
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(synced, N);
    // One login serves them all (the token cache is per identity).
    assert_eq!(
        op.metric("scaivault_operator_vault_logins_total").await,
        Some(1.0)
    );
}

/// Counts the VaultSecrets of `ns` whose `Ready` is `True`.
async fn ready_count(client: &Client, ns: &str) -> usize {
    Api::<VaultSecret>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|vs| matches!(ready(vs), Some((ConditionStatus::True, _, _))))
                .count()
        })
        .unwrap_or(0)
}

/// Leadership taken away while 300 VaultSecrets are being synced: a deleted Lease is
/// simply recreated by the leader, but a Lease overwritten by another holder makes the
/// leader stop writing and exit non-zero at once, saying why (never an idle process that
/// still answers /healthz). Its restart waits for the thief's lease to expire, takes over,
/// and every VaultSecret becomes Ready.
#[tokio::test]
async fn leadership_taken_away_under_load_exits_and_the_restart_finishes_the_sync() {
    const N: usize = 300;
    let (shared, client, ns) = start("vs-steal").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    grant_read(&vault, &ns, "app", &format!("apps/{ns}")).await;
    let writes = (0..N).map(|i| {
        let vault = vault.clone();
        let path = format!("apps/{ns}/s{i}");
        async move { write(&vault, &path, json!({"value": format!("v{i}")})).await }
    });
    futures::future::join_all(writes).await;
    let mut op = Operator::start(shared, &ns, "op-a", &[]);
    op.wait_leader().await;
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());

    // A deleted Lease is recreated by the leader, which keeps leading.
    leases
        .delete("scaivault-operator", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the leader to recreate its Lease",
        Duration::from_secs(10),
        || async {
            let lease = leases.get_opt("scaivault-operator").await.ok()??;
            (holder(&lease).as_deref() == Some("op-a")).then_some(())
        },
    )
    .await;
    assert_eq!(op.metric("scaivault_operator_leader ").await, Some(1.0));

    let creates = (0..N).map(|i| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            create_vault_secret(&client, &ns, &format!("s{i}"), json!({
                "path": format!("apps/{ns}/s{i}"), "serviceAccountName": "app", "target": {"name": format!("s{i}")},
            }))
            .await
        }
    });
    futures::future::join_all(creates).await;
    // Steal the lease while the sync is under way: another holder, freshly renewed, for
    // 3 s (read-modify-write, again if the leader's renewal got in between).
    wait_for("the lease stolen", Duration::from_secs(10), || async {
        let mut lease = leases.get("scaivault-operator").await.ok()?;
        let spec = lease.spec.as_mut()?;
        spec.holder_identity = Some("thief".into());
        spec.lease_duration_seconds = Some(3);
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        leases
            .replace("scaivault-operator", &PostParams::default(), &lease)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let stolen = Instant::now();
    let before = ready_count(&client, &ns).await;
    // Renew interval 1 s: the next round sees the thief, and the process exits.
    let status = op.wait_exit(Duration::from_secs(10));
    let noticed = stolen.elapsed();
    assert!(!status.success(), "exited {status} after losing the lease");
    let logs = op.logs();
    assert!(
        logs.contains("lost the leader lease") && logs.contains("thief"),
        "no reason in the log:\n{logs}"
    );
    eprintln!(
        "MEASURED: exited ({status}) {:.2} s after the lease was stolen, {before} of {N} Ready by then",
        noticed.as_secs_f64()
    );

    // Its restart (what the pod's restart policy does) waits out the thief's lease,
    // takes over and finishes the sync.
    op.spawn();
    op.wait_leader().await;
    wait_for(
        &format!("{N} VaultSecrets Ready after the restart"),
        Duration::from_secs(120),
        || async { (ready_count(&client, &ns).await == N).then_some(()) },
    )
    .await;
    let lease = leases.get("scaivault-operator").await.unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("op-a"));
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);
}

/// Applies the RBAC objects of `examples/operator.yaml` (not the Deployment: no kubelet
/// here) and runs the operator binary as its ServiceAccount, so a missing permission in
/// the example fails this test.
#[tokio::test]
async fn operator_runs_with_the_example_rbac() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use kube::api::{ApiResource, DynamicObject};
    use serde::Deserialize;

    let (shared, client, ns) = start("vs-rbac").await;
    let text = std::fs::read_to_string(common::repo_root().join("examples/operator.yaml")).unwrap();
    let apply = PatchParams::apply(common::TEST_FIELD_MANAGER).force();
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let obj = Value::deserialize(doc).unwrap();
        let kind = obj["kind"].as_str().unwrap().to_owned();
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let on = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (resource, namespaced) = match kind.as_str() {
            "Namespace" => (ApiResource::erase::<Namespace>(&()), false),
            "ServiceAccount" => (ApiResource::erase::<ServiceAccount>(&()), true),
            "ClusterRole" => (ApiResource::erase::<ClusterRole>(&()), false),
            "ClusterRoleBinding" => (ApiResource::erase::<ClusterRoleBinding>(&()), false),
            "Role" => (ApiResource::erase::<Role>(&()), true),
            "RoleBinding" => (ApiResource::erase::<RoleBinding>(&()), true),
            _ => continue,
        };
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), &on, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        api.patch(&name, &apply, &Patch::Apply(&obj)).await.unwrap();
        kinds.push(kind);
    }
    assert_eq!(kinds.len(), 6, "{kinds:?}");

    // A kubeconfig for system:serviceaccount:scaivault-system:scaivault-operator.
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), "scaivault-system")
        .create_token_request("scaivault-operator", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    let mut kubeconfig: Value =
        serde_yaml::from_str(&std::fs::read_to_string(shared.env.kubeconfig()).unwrap()).unwrap();
    for user in kubeconfig["users"].as_array_mut().unwrap() {
        user["user"] = json!({"token": token});
    }
    let path = shared.env.dir().join(format!("kubeconfig-{ns}"));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();

    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    let vpath = format!("apps/{ns}/db");
    write(&vault, &vpath, json!({"password": "one"})).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let op = Operator::start_as(
        shared,
        &path,
        "scaivault-system",
        &ns,
        "rbac",
        &["--policy-namespaces", &ns],
    );

    // VaultPolicy (finalizer, status) grants the VaultSecret's ServiceAccount.
    let policies = Api::<VaultPolicy>::namespaced(client.clone(), &ns);
    let vp: VaultPolicy = serde_json::from_value(json!({
        "apiVersion": "scaivault.io/v1alpha1", "kind": "VaultPolicy", "metadata": {"name": "readers"},
        "spec": {"rules": [{"pathPattern": format!("apps/{ns}/**"), "permissions": ["read"]}],
                 "serviceAccounts": [{"namespace": ns, "name": "app"}]},
    }))
    .unwrap();
    policies.create(&PostParams::default(), &vp).await.unwrap();
    create_vault_secret(&client, &ns, "db", json!({
        "path": vpath, "serviceAccountName": "app", "refreshInterval": "1s", "target": {"name": "db"},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}],
    }))
    .await;
    wait_ready(
        &client,
        &ns,
        "db",
        ConditionStatus::True,
        Duration::from_secs(30),
    )
    .await;
    write(&vault, &vpath, json!({"password": "two"})).await;
    wait_for("rollout restart", Duration::from_secs(10), || {
        restarted_at(&client, &ns)
    })
    .await;
    let evs = events(&client, &ns).await;
    assert!(
        evs.iter().any(|e| e.reason.as_deref() == Some("Created")),
        "no events"
    );
    policies
        .delete("readers", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("VaultPolicy gone", Duration::from_secs(20), || async {
        policies
            .get_opt("readers")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "a permission is missing:\n{logs}"
    );
    let lease = Api::<Lease>::namespaced(client.clone(), "scaivault-system")
        .get("scaivault-operator")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("rbac"));
}
