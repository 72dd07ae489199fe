//! Pods that opted in to the agent but were admitted without it ("missed"): one Warning
//! event `NotInjected` on each, and the gauge `pods_not_injected` of those there are now,
//! so a pod running without its secret files is visible instead of silent.
//!
//! A pod is missed when it carries the opt-in label (`scaivault.io/inject: "true"`) and
//! has no [`AGENT_CONTAINER`] init container, the injector's mark. That happens when the
//! injector's webhook never saw the pod: it was created before the webhook configuration
//! existed, the webhook was unreachable under `failurePolicy: Ignore`, or its namespace is
//! not selected. Pods being deleted and finished pods (`Succeeded`, `Failed`) are left
//! alone. A pod's containers cannot change after it is created, so a missed pod stays
//! missed until it is deleted: the fix is to delete it so it is admitted again.
//!
//! Only the label is watched (a label selector: the operator never lists the cluster's
//! other pods). A pod that opts in with the annotation alone is not seen; with the
//! example webhook configuration it never reaches the injector either.
//!
//! Each pod is warned about once per operator process, by uid: resyncs and re-lists do not
//! repeat it. A restarted operator (or a new leader) does not know what the previous
//! one warned about and warns once more about each pod still missed.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use scaivault_kube_api::agent::AGENT_CONTAINER;
use scaivault_kube_api::annotations::INJECT;
use tokio::sync::watch;

use crate::context::Context;

/// Reason of the Warning event on a missed pod.
pub const REASON: &str = "NotInjected";
const ACTION: &str = "Inject";

/// The label selector of the watch: only opted-in pods.
pub fn selector() -> String {
    format!("{INJECT}=true")
}

/// Whether `pod` opted in (label or annotation `"true"`) but has no agent, and is neither
/// being deleted nor finished.
pub fn is_missed(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    let opted_in = [&meta.labels, &meta.annotations]
        .into_iter()
        .any(|map| map.as_ref().and_then(|m| m.get(INJECT)).map(String::as_str) == Some("true"));
    if !opted_in || meta.deletion_timestamp.is_some() {
        return false;
    }
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| matches!(p, "Succeeded" | "Failed"));
    let injected = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|init| init.iter().any(|c| c.name == AGENT_CONTAINER));
    !finished && !injected
}

/// The missed pods the watch has shown, by uid, and whether each was warned about.
#[derive(Debug, Default)]
pub struct Tracker {
    missed: HashMap<String, bool>,
    /// During a re-list: the missed pods listed so far (they replace `missed` when it ends).
    relisted: Option<HashMap<String, bool>>,
}

impl Tracker {
    /// Takes one watch event; returns the pods to warn about now (missed, not warned yet).
    pub fn observe(&mut self, event: watcher::Event<Pod>) -> Vec<ObjectReference> {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitDone => {
                // A pod missing from the new list is gone.
                if let Some(listed) = self.relisted.take() {
                    self.missed = listed;
                }
                Vec::new()
            }
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => self.apply(&pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.forget(uid);
                }
                Vec::new()
            }
        }
    }

    fn apply(&mut self, pod: &Pod) -> Vec<ObjectReference> {
        let Some(uid) = pod.metadata.uid.clone() else {
            return Vec::new();
        };
        if !is_missed(pod) {
            // Finished or being deleted: it will not be missed again.
            self.forget(&uid);
            return Vec::new();
        }
        let warned = self.missed.get(&uid).copied().unwrap_or(false)
            || self
                .relisted
                .as_ref()
                .and_then(|l| l.get(&uid))
                .copied()
                .unwrap_or(false);
        let map = self.relisted.as_mut().unwrap_or(&mut self.missed);
        map.insert(uid, warned);
        if warned {
            Vec::new()
        } else {
            vec![pod.object_ref(&())]
        }
    }

    fn forget(&mut self, uid: &str) {
        self.missed.remove(uid);
        if let Some(listed) = &mut self.relisted {
            listed.remove(uid);
        }
    }

    /// Records that the pod `uid` was warned about (a failed warning is retried on the
    /// pod's next watch event).
    pub fn warned(&mut self, uid: &str) {
        for map in [Some(&mut self.missed), self.relisted.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(w) = map.get_mut(uid) {
                *w = true;
            }
        }
    }

    /// How many pods are missed now (as of the last complete list and the events since).
    pub fn count(&self) -> usize {
        self.missed.len()
    }
}

/// The note of the Warning event.
fn note() -> String {
    format!(
        "the pod opts in to ScaiVault ({INJECT}=true) but has no {AGENT_CONTAINER} init \
         container, so its secret files are missing: the injector's webhook did not mutate \
         it (the pod predates the webhook, the webhook was unreachable with failurePolicy \
         Ignore, or the namespace is not selected). Delete the pod so it is admitted again \
         (its controller re-creates it)."
    )
}

/// Watches opted-in pods (in `namespace`, or all) until `stop`, warning about missed ones.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, mut stop: watch::Receiver<bool>) {
    let api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let pods = watcher(api, watcher::Config::default().labels(&selector())).default_backoff();
    let watch = async move {
        let mut pods = std::pin::pin!(pods);
        let mut tracker = Tracker::default();
        while let Some(event) = pods.next().await {
            let event = match event {
                Ok(event) => event,
                // Retried with backoff; a warning, as a missing `list`/`watch` on pods
                // (RBAC) shows here and nowhere else.
                Err(e) => {
                    tracing::warn!(error = %e, "watching opted-in pods");
                    continue;
                }
            };
            for pod in tracker.observe(event) {
                if warn(&ctx, &pod).await {
                    tracker.warned(pod.uid.as_deref().unwrap_or_default());
                }
            }
            ctx.metrics
                .pods_not_injected
                .set(i64::try_from(tracker.count()).unwrap_or(i64::MAX));
        }
    };
    tokio::select! {
        () = watch => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Publishes the Warning event about `pod`; whether it was published.
async fn warn(ctx: &Context, pod: &ObjectReference) -> bool {
    let name = format!(
        "{}/{}",
        pod.namespace.as_deref().unwrap_or_default(),
        pod.name.as_deref().unwrap_or_default()
    );
    match ctx
        .events
        .publish(pod, EventType::Warning, REASON, ACTION, note())
        .await
    {
        Ok(()) => {
            tracing::warn!(pod = %name, "the pod opts in to ScaiVault but was admitted without the agent");
            ctx.metrics.not_injected_warnings.inc();
            true
        }
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "publishing the NotInjected event failed; retried on the pod's next watch event");
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, value: serde_json::Value) -> Pod {
        let mut pod: Pod = serde_json::from_value(value).unwrap();
        pod.metadata.uid = Some(uid.to_owned());
        pod.metadata.name = Some(format!("pod-{uid}"));
        pod.metadata.namespace = Some("ns".to_owned());
        pod
    }

    fn labelled() -> serde_json::Value {
        json!({"metadata": {"labels": {INJECT: "true"}},
               "spec": {"containers": [{"name": "app"}]}})
    }

    #[test]
    fn which_pods_are_missed() {
        let agent = json!([{"name": AGENT_CONTAINER}, {"name": "migrate"}]);
        let cases = [
            ("labelled, no agent", labelled(), true),
            (
                "annotation only, no agent",
                json!({"metadata": {"annotations": {INJECT: "true"}},
                       "spec": {"containers": [{"name": "app"}]}}),
                true,
            ),
            (
                "labelled, an app init container only",
                json!({"metadata": {"labels": {INJECT: "true"}},
                       "spec": {"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}}),
                true,
            ),
            (
                "labelled, injected",
                json!({"metadata": {"labels": {INJECT: "true"}},
                       "spec": {"initContainers": agent, "containers": [{"name": "app"}]}}),
                false,
            ),
            (
                "a container named like the agent is not the agent",
                json!({"metadata": {"labels": {INJECT: "true"}},
                       "spec": {"containers": [{"name": AGENT_CONTAINER}]}}),
                true,
            ),
            (
                "not opted in",
                json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app"}]}}),
                false,
            ),
            (
                "opted out",
                json!({"metadata": {"labels": {INJECT: "false"}}, "spec": {"containers": [{"name": "app"}]}}),
                false,
            ),
            (
                "not exactly \"true\"",
                json!({"metadata": {"labels": {INJECT: "True"}}, "spec": {"containers": [{"name": "app"}]}}),
                false,
            ),
            (
                "being deleted",
                json!({"metadata": {"labels": {INJECT: "true"}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
                       "spec": {"containers": [{"name": "app"}]}}),
                false,
            ),
            (
                "succeeded",
                json!({"metadata": {"labels": {INJECT: "true"}},
                       "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Succeeded"}}),
                false,
            ),
            (
                "failed",
                json!({"metadata": {"labels": {INJECT: "true"}},
                       "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Failed"}}),
                false,
            ),
            (
                "running",
                json!({"metadata": {"labels": {INJECT: "true"}},
                       "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Running"}}),
                true,
            ),
            (
                "no spec",
                json!({"metadata": {"labels": {INJECT: "true"}}}),
                true,
            ),
        ];
        for (what, value, missed) in cases {
            assert_eq!(is_missed(&pod("u", value)), missed, "{what}");
        }
    }

    fn uids(refs: &[ObjectReference]) -> Vec<&str> {
        refs.iter().filter_map(|r| r.uid.as_deref()).collect()
    }

    #[test]
    fn each_missed_pod_is_warned_about_once() {
        let mut t = Tracker::default();
        assert!(t.observe(watcher::Event::Init).is_empty());
        assert_eq!(
            uids(&t.observe(watcher::Event::InitApply(pod("a", labelled())))),
            ["a"]
        );
        t.warned("a");
        assert_eq!(t.count(), 0, "counted once the list is complete");
        t.observe(watcher::Event::InitDone);
        assert_eq!(t.count(), 1);
        // A change of the pod, and a re-list: no second warning.
        assert!(
            t.observe(watcher::Event::Apply(pod("a", labelled())))
                .is_empty()
        );
        t.observe(watcher::Event::Init);
        assert!(
            t.observe(watcher::Event::InitApply(pod("a", labelled())))
                .is_empty()
        );
        t.observe(watcher::Event::InitDone);
        assert_eq!(t.count(), 1);
        // A warning that could not be published is tried again on the next event.
        assert_eq!(
            uids(&t.observe(watcher::Event::Apply(pod("b", labelled())))),
            ["b"]
        );
        assert_eq!(
            uids(&t.observe(watcher::Event::Apply(pod("b", labelled())))),
            ["b"]
        );
        t.warned("b");
        assert!(
            t.observe(watcher::Event::Apply(pod("b", labelled())))
                .is_empty()
        );
        assert_eq!(t.count(), 2);
        // Finished: no longer counted.
        let mut done = labelled();
        done["status"] = json!({"phase": "Failed"});
        assert!(t.observe(watcher::Event::Apply(pod("b", done))).is_empty());
        assert_eq!(t.count(), 1);
        // Gone while the watch was down: dropped by the re-list.
        t.observe(watcher::Event::Init);
        t.observe(watcher::Event::InitDone);
        assert_eq!(t.count(), 0);
        assert_eq!(
            uids(&t.observe(watcher::Event::Apply(pod("c", labelled())))),
            ["c"]
        );
        t.warned("c");
        t.observe(watcher::Event::Delete(pod("c", labelled())));
        assert_eq!(t.count(), 0);
    }
}
