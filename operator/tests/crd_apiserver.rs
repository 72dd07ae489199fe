//! Installs `crds/` into the real kube-apiserver of `e2e/` and checks that the schema
//! and CEL rules accept the examples and reject bad objects with 422.
//!
//! Needs the binaries of `make e2e-env` in `${E2E_BIN_DIR:-e2e/.bin}`; without them the
//! test fails (it does not build them: that takes ~15 minutes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{KubeEnv, install_crds, namespace, repo_root};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use scaivault_api::limits::MAX_POLICY_RULES;
use scaivault_operator::crd::{VaultPolicy, VaultSecret};
use serde_json::{Value, json};

fn dynamic_api<K: Resource<DynamicType = ()>>(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
}

fn object<K: Resource<DynamicType = ()>>(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("dynamic object")
}

/// Creates `obj` and expects a 422 whose message contains every one of `needles`.
async fn rejected(api: &Api<DynamicObject>, obj: &DynamicObject, needles: &[&str]) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => panic!("{name}: accepted, expected 422 mentioning {needles:?}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{name}: {status:?}");
            for needle in needles {
                assert!(
                    status.message.contains(needle),
                    "{name}: 422 message lacks {needle:?}: {}",
                    status.message
                );
            }
        }
        Err(e) => panic!("{name}: unexpected error {e}"),
    }
}

async fn accepted(api: &Api<DynamicObject>, obj: &DynamicObject) -> DynamicObject {
    let name = obj.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), obj)
        .await
        .unwrap_or_else(|e| panic!("{name}: rejected: {e}"))
}

fn valid_secret_spec() -> Value {
    json!({
        "path": "apps/web/db",
        "target": {"name": "web-db"},
    })
}

/// The manifests of `examples/` are accepted as they are.
async fn examples_are_accepted(client: &Client) {
    let ns = namespace(client, "crd-examples").await;
    let dir = repo_root().join("examples");

    let text =
        std::fs::read_to_string(dir.join("vaultsecret.yaml")).expect("examples/vaultsecret.yaml");
    let secret: VaultSecret = serde_yaml::from_str(&text).expect("parse examples/vaultsecret.yaml");
    let created = Api::<VaultSecret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create examples/vaultsecret.yaml");
    assert_eq!(
        created.spec, secret.spec,
        "the apiserver changed the example's spec"
    );

    let text =
        std::fs::read_to_string(dir.join("vaultpolicy.yaml")).expect("examples/vaultpolicy.yaml");
    let policy: VaultPolicy = serde_yaml::from_str(&text).expect("parse examples/vaultpolicy.yaml");
    let created = Api::<VaultPolicy>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &policy)
        .await
        .expect("create examples/vaultpolicy.yaml");
    assert_eq!(
        created.spec, policy.spec,
        "the apiserver changed the example's spec"
    );
}

/// Defaults are applied and status is a subresource with list-map conditions.
async fn defaults_and_status(client: &Client) {
    let ns = namespace(client, "crd-status").await;
    let api = Api::<VaultSecret>::namespaced(client.clone(), &ns);
    let dynamic = dynamic_api::<VaultSecret>(client, &ns);
    accepted(
        &dynamic,
        &object::<VaultSecret>("minimal", valid_secret_spec()),
    )
    .await;
    let got = api.get("minimal").await.expect("get minimal");
    assert_eq!(got.spec.refresh_interval, "1h");
    assert_eq!(
        got.spec.target.r#type,
        scaivault_operator::crd::SecretType::Opaque
    );
    assert!(got.status.is_none());

    // status is only writable through the subresource
    let status = json!({
        "status": {
            "syncedVersion": 3,
            "secretMAC": "hmac-sha256:abc",
            "lastSyncedAt": "2026-01-01T00:00:00Z",
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Synced", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1
            }]
        }
    });
    api.patch_status("minimal", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    let got = api.get("minimal").await.expect("get minimal");
    let st = got.status.expect("status");
    assert_eq!(st.synced_version, Some(3));
    assert_eq!(st.secret_mac.as_deref(), Some("hmac-sha256:abc"));
    assert_eq!(st.conditions[0].observed_generation, Some(1));

    // two conditions of the same type violate the list-map
    let dup = json!({
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "False", "reason": "B", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        }
    });
    match api
        .patch_status("minimal", &PatchParams::default(), &Patch::Merge(&dup))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains("Duplicate value"), "{}", s.message);
        }
        other => panic!("duplicate condition type accepted: {other:?}"),
    }
}

async fn vault_secret_rules(client: &Client) {
    let ns = namespace(client, "crd-vaultsecret").await;
    let api = dynamic_api::<VaultSecret>(client, &ns);
    let vs = |name: &str, patch: Value| {
        let mut spec = valid_secret_spec();
        json_merge(&mut spec, patch);
        object::<VaultSecret>(name, spec)
    };

    accepted(
        &api,
        &vs(
            "tls-ok",
            json!({"target": {"type": "kubernetes.io/tls", "template": {"data": {
                "tls.crt": "{{ .cert }}", "tls.key": "{{ .key }}"}}}}),
        ),
    )
    .await;
    accepted(
        &api,
        &vs(
            "tls-no-template",
            json!({"target": {"type": "kubernetes.io/tls"}}),
        ),
    )
    .await;
    accepted(
        &api,
        &vs(
            "full",
            json!({"version": 4, "serviceAccountName": "web", "refreshInterval": "1h30m",
                "target": {"type": "kubernetes.io/dockerconfigjson", "labels": {"a": "b"}},
                "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"},
                    {"kind": "StatefulSet", "name": "db"}, {"kind": "DaemonSet", "name": "agent"}]}),
        ),
    )
    .await;

    rejected(&api, &vs("empty-path", json!({"path": ""})), &["spec.path"]).await;
    rejected(
        &api,
        &vs("bad-path-chars", json!({"path": "apps/web db"})),
        &["spec.path", "should match"],
    )
    .await;
    rejected(
        &api,
        &vs("bad-path-slash", json!({"path": "/apps/db"})),
        &["spec.path", "should match"],
    )
    .await;
    rejected(
        &api,
        &vs("bad-path-dots", json!({"path": "apps/../db"})),
        &["spec.path", "'.' and '..' are not allowed"],
    )
    .await;
    rejected(
        &api,
        &vs("bad-path-sys", json!({"path": "sys/policies"})),
        &["spec.path", "reserved"],
    )
    .await;
    rejected(
        &api,
        &vs("bad-path-action", json!({"path": "apps/db/metadata"})),
        &["spec.path", "action word"],
    )
    .await;
    rejected(
        &api,
        &vs("bad-interval", json!({"refreshInterval": "1 hour"})),
        &["spec.refreshInterval", "should match"],
    )
    .await;
    rejected(
        &api,
        &vs("bad-version", json!({"version": 0})),
        &["spec.version"],
    )
    .await;
    rejected(
        &api,
        &vs(
            "bad-type",
            json!({"target": {"type": "kubernetes.io/basic-auth"}}),
        ),
        &["spec.target.type", "Unsupported value"],
    )
    .await;
    rejected(
        &api,
        &vs(
            "tls-missing-key",
            json!({"target": {"type": "kubernetes.io/tls", "template": {"data": {"tls.crt": "x"}}}}),
        ),
        &["spec.target", "tls.crt and tls.key"],
    )
    .await;
    rejected(
        &api,
        &vs(
            "bad-rollout-kind",
            json!({"rolloutRestartTargets": [{"kind": "Pod", "name": "web"}]}),
        ),
        &[
            "spec.rolloutRestartTargets[0].kind",
            "Unsupported value",
            "Deployment",
        ],
    )
    .await;
    rejected(
        &api,
        &vs(
            "dup-rollout",
            json!({"rolloutRestartTargets": [{"kind": "Deployment", "name": "web"},
                {"kind": "Deployment", "name": "web"}]}),
        ),
        &["spec.rolloutRestartTargets", "Duplicate value"],
    )
    .await;
    rejected(
        &api,
        &object::<VaultSecret>("no-target", json!({"path": "apps/db"})),
        &["spec.target", "Required value"],
    )
    .await;
}

fn valid_policy_spec() -> Value {
    json!({"rules": [{"pathPattern": "apps/web/**", "permissions": ["read", "list"]}]})
}

async fn vault_policy_rules(client: &Client) {
    let ns = namespace(client, "crd-vaultpolicy").await;
    let api = dynamic_api::<VaultPolicy>(client, &ns);
    let vp = |name: &str, patch: Value| {
        let mut spec = valid_policy_spec();
        json_merge(&mut spec, patch);
        object::<VaultPolicy>(name, spec)
    };

    accepted(&api, &vp("minimal", json!({}))).await;
    accepted(
        &api,
        &vp(
            "full",
            json!({"name": "web-readers",
                "rules": [{"pathPattern": "apps/web/*", "permissions": ["read", "write", "list", "delete", "rotate"]},
                          {"pathPattern": "apps/web/admin/**", "permissions": ["admin"], "effect": "deny"}],
                "bindings": [{"identityType": "user", "identityId": "user:alice"}],
                "serviceAccounts": [{"namespace": "web", "name": "web"}]}),
        ),
    )
    .await;

    rejected(
        &api,
        &vp("empty-rules", json!({"rules": []})),
        &["spec.rules", "rules must not be empty"],
    )
    .await;
    rejected(
        &api,
        &vp(
            "bad-permission",
            json!({"rules": [{"pathPattern": "apps/**", "permissions": ["read", "sudo"]}]}),
        ),
        &[
            "spec.rules[0].permissions[1]",
            "Unsupported value",
            "\"sudo\"",
        ],
    )
    .await;
    rejected(
        &api,
        &vp(
            "no-permissions",
            json!({"rules": [{"pathPattern": "apps/**", "permissions": []}]}),
        ),
        &["spec.rules[0].permissions"],
    )
    .await;
    rejected(
        &api,
        &vp(
            "dup-permission",
            json!({"rules": [{"pathPattern": "apps/**", "permissions": ["read", "read"]}]}),
        ),
        &["spec.rules[0].permissions[1]", "Duplicate value"],
    )
    .await;
    rejected(
        &api,
        &vp(
            "bad-effect",
            json!({"rules": [{"pathPattern": "apps/**", "permissions": ["read"], "effect": "maybe"}]}),
        ),
        &["spec.rules[0].effect", "Unsupported value"],
    )
    .await;
    rejected(
        &api,
        &vp(
            "bad-identity-type",
            json!({"bindings": [{"identityType": "root", "identityId": "root"}]}),
        ),
        &["spec.bindings[0].identityType", "Unsupported value"],
    )
    .await;
    // The vault's own rule limit: a policy the apiserver admits is one the vault takes.
    let rule = json!({"pathPattern": "apps/**", "permissions": ["read"]});
    accepted(
        &api,
        &vp(
            "most-rules",
            json!({"rules": vec![rule.clone(); MAX_POLICY_RULES]}),
        ),
    )
    .await;
    rejected(
        &api,
        &vp(
            "too-many-rules",
            json!({"rules": vec![rule; MAX_POLICY_RULES + 1]}),
        ),
        &[
            "spec.rules",
            &format!("must have at most {MAX_POLICY_RULES} items"),
        ],
    )
    .await;
    rejected(
        &api,
        &object::<VaultPolicy>("no-rules", json!({})),
        &["spec.rules", "Required value"],
    )
    .await;
}

/// RFC 7386 merge of `patch` into `base`.
fn json_merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                json_merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_install_and_validate_in_a_real_apiserver() {
    let env = KubeEnv::start();
    let client = env.client().await;
    install_crds(&client).await;
    examples_are_accepted(&client).await;
    defaults_and_status(&client).await;
    vault_secret_rules(&client).await;
    vault_policy_rules(&client).await;
    drop(env);
}
