//! Pods admitted without the agent, against the real kube-apiserver of `e2e/`: no injector
//! is registered there, so a pod created with the opt-in label is admitted unmutated, as
//! it would be had the webhook not seen it. The operator must put one `NotInjected`
//! Warning on it and count it; pods shaped like injected ones, pods that did not opt in,
//! finished pods and pods being deleted are left alone. No node runs: pods stay Pending
//! unless their status is written by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Operator, namespace, shared, wait_for};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use scaivault_kube_api::agent::AGENT_CONTAINER;
use scaivault_kube_api::annotations::INJECT;
use scaivault_operator::not_injected::REASON;
use serde_json::{Value, json};

const GAUGE: &str = "scaivault_operator_pods_not_injected ";
const WARNINGS: &str = "scaivault_operator_not_injected_warnings_total ";
const WAIT: Duration = Duration::from_secs(30);

fn pod(name: &str, labels: Value, init_containers: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "initContainers": init_containers,
            "containers": [{"name": "app", "image": "example.invalid/app:1"}],
        },
    }))
    .unwrap()
}

fn opted_in() -> Value {
    json!({INJECT: "true", "app": "web"})
}

/// What the injector adds that the operator looks at: the agent as the first init container.
fn agent() -> Value {
    json!([{"name": AGENT_CONTAINER, "image": "example.invalid/scaivault-agent:1",
            "restartPolicy": "Always"}])
}

async fn create(api: &Api<Pod>, pod: &Pod) -> Pod {
    api.create(&PostParams::default(), pod).await.unwrap()
}

async fn set_phase(api: &Api<Pod>, name: &str, phase: &str) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

/// The NotInjected events of the namespace: (pod uid, type, note, series count).
async fn warnings(client: &Client, ns: &str) -> Vec<(String, String, String, i32)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(REASON))
        .map(|e| {
            (
                e.regarding.and_then(|r| r.uid).unwrap_or_default(),
                e.type_.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.series.map_or(1, |s| s.count),
            )
        })
        .collect()
}

async fn wait_metric(op: &Operator, name: &str, value: f64) {
    wait_for(&format!("{}= {value}", name.trim_end()), WAIT, || async {
        (op.metric(name).await == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn pods_admitted_without_the_agent_get_one_warning_each() {
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(&client, "not-injected").await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);

    // Before the operator starts: what it finds in its first list.
    let missed = create(&pods, &pod("missed", opted_in(), json!([]))).await;
    let injected = create(&pods, &pod("injected", opted_in(), agent())).await;
    let plain = create(&pods, &pod("plain", json!({"app": "web"}), json!([]))).await;
    let finished = create(&pods, &pod("finished", opted_in(), json!([]))).await;
    set_phase(&pods, "finished", "Failed").await;
    // Held by a finalizer, so it stays with its deletionTimestamp.
    let mut leaving = pod("leaving", opted_in(), json!([]));
    leaving.metadata.finalizers = Some(vec!["scaivault.io/test-hold".to_owned()]);
    let leaving = create(&pods, &leaving).await;
    pods.delete("leaving", &DeleteParams::default())
        .await
        .unwrap();

    let mut op = Operator::start(shared, &ns, "op", &[]);
    op.wait_leader().await;
    // The gauge is set once the first list is through, and every warning of that list was
    // published before it: from here on, no other pod of it gets one.
    wait_metric(&op, GAUGE, 1.0).await;
    assert_eq!(op.metric(WARNINGS).await, Some(1.0));
    let found = warnings(&client, &ns).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (uid, type_, note, count) = &found[0];
    assert_eq!(Some(uid), missed.metadata.uid.as_ref(), "{found:?}");
    assert_eq!((type_.as_str(), *count), ("Warning", 1));
    assert!(
        note.contains(AGENT_CONTAINER) && note.contains("Delete the pod"),
        "{note}"
    );
    for quiet in [&injected, &plain, &finished, &leaving] {
        assert!(
            !found
                .iter()
                .any(|w| Some(&w.0) == quiet.metadata.uid.as_ref()),
            "{} was warned about",
            quiet.name_any()
        );
    }

    // A change of the missed pod, then a new missed pod: the watch delivers them in that
    // order, so once the new one is warned about the change was seen, and warned nothing.
    pods.patch(
        "missed",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    let late = create(&pods, &pod("late", opted_in(), json!([]))).await;
    wait_metric(&op, WARNINGS, 2.0).await;
    wait_metric(&op, GAUGE, 2.0).await;
    let found = warnings(&client, &ns).await;
    let on = |pod: &Pod| {
        found
            .iter()
            .filter(|w| Some(&w.0) == pod.metadata.uid.as_ref())
            .map(|w| w.3)
            .sum::<i32>()
    };
    assert_eq!(
        (on(&missed), on(&late), found.len()),
        (1, 1, 2),
        "{found:?}"
    );

    // Finished: no longer counted, and not warned about again.
    set_phase(&pods, "late", "Succeeded").await;
    wait_metric(&op, GAUGE, 1.0).await;

    // A restarted operator does not know what it warned about: one more warning for the
    // pod still missed (documented), none for the finished one.
    op.restart();
    op.wait_leader().await;
    wait_metric(&op, GAUGE, 1.0).await;
    assert_eq!(op.metric(WARNINGS).await, Some(1.0));
    let found = warnings(&client, &ns).await;
    let on_missed: Vec<_> = found
        .iter()
        .filter(|w| Some(&w.0) == missed.metadata.uid.as_ref())
        .collect();
    assert_eq!((on_missed.len(), found.len()), (2, 3), "{found:?}");

    // Deleted (not bound to a node, so at once): no longer counted.
    pods.delete("missed", &DeleteParams::default())
        .await
        .unwrap();
    wait_metric(&op, GAUGE, 0.0).await;
    assert_eq!(op.metric(WARNINGS).await, Some(1.0));

    pods.patch(
        "leaving",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "a permission is missing:\n{logs}"
    );
}
