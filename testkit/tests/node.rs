//! `KubeEnv::start_node`: a pod created through the apiserver really runs on the node
//! (busybox, with the kubelet's projected ServiceAccount token), and the node's
//! processes end with the environment.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use scaivault_testkit::kube::{KubeEnv, namespace, service_account};
use scaivault_testkit::wait_until;

#[tokio::test]
async fn a_pod_runs_on_the_node_and_the_node_ends_with_the_environment() {
    let mut env = KubeEnv::start();
    let node = env.start_node(&[]);
    let client = env.client().await;
    let ns = namespace(&client, "node").await;
    service_account(&client, &ns, "app").await;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "token-reader"},
        "spec": {
            "nodeName": node.name, "restartPolicy": "Never", "hostNetwork": true,
            "serviceAccountName": "app",
            "volumes": [{"name": "token", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "audience": "scaivault", "expirationSeconds": 600}}]}}],
            "containers": [{"name": "app", "image": "scaivault.local/busybox:e2e",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "test -s /token/token && echo has-a-token"],
                "volumeMounts": [{"name": "token", "mountPath": "/token", "readOnly": true}]}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let phase = || async {
        let pod = pods.get("token-reader").await.unwrap();
        pod.status.and_then(|s| s.phase).unwrap_or_default()
    };
    wait_until("the pod to end", Duration::from_secs(60), || async {
        matches!(phase().await.as_str(), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase().await, "Succeeded");
    let log = pods
        .logs("token-reader", &Default::default())
        .await
        .unwrap();
    assert_eq!(log.trim(), "has-a-token");

    let dir = env.dir().to_path_buf();
    env.stop();
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("{}/node/", dir.display())])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "node processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
