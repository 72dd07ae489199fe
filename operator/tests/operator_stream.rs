//! The operator follows the vault's event stream: a changed source reaches its Secret
//! within a second although `refreshInterval` is an hour; with the stream off polling
//! still refreshes; after a vault restart the stream resumes from its position. Real
//! kube-apiserver, real `scaivault-server dev`, the `scaivault-operator` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Operator, Server, Shared, create_vault_secret, grant_read, namespace, root, service_account,
    shared, wait_for, write,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use scaivault_client::api::auth::CreateTokenRequest;
use scaivault_client::api::policy::{IdentityInput, Permission, PolicyInput, PolicyRule};
use scaivault_operator::crd::VaultSecret;
use serde_json::json;

fn value_of(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8_lossy(&bytes.0).into_owned())
}

/// The Secret `name` as a kube watch sees it change: [`SecretWatch::until`] returns when
/// it shows a value, without polling.
struct SecretWatch {
    stream: futures::stream::BoxStream<'static, Result<Secret, watcher::Error>>,
}

impl SecretWatch {
    fn new(client: &Client, ns: &str, name: &str) -> SecretWatch {
        let api = Api::<Secret>::namespaced(client.clone(), ns);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        SecretWatch {
            stream: watcher(api, config).applied_objects().boxed(),
        }
    }

    /// Waits (at most `timeout`) for `key` to read `want`.
    async fn until(&mut self, key: &str, want: &str, timeout: Duration) {
        let seen = tokio::time::timeout(timeout, async {
            while let Some(secret) = self.stream.try_next().await.expect("watch Secrets") {
                if value_of(&secret, key).as_deref() == Some(want) {
                    return;
                }
            }
            panic!("the Secret watch ended");
        })
        .await;
        assert!(seen.is_ok(), "{key}={want} not seen within {timeout:?}");
    }
}

/// `apps/<ns>/db` holding `pw-0`, readable by the ServiceAccount `app` of `ns`; its path.
async fn seeded_db(client: &Client, ns: &str, vault: &scaivault_client::Client) -> String {
    service_account(client, ns, "app").await;
    let prefix = format!("apps/{ns}");
    grant_read(vault, ns, "app", &prefix).await;
    let path = format!("{prefix}/db");
    write(vault, &path, json!({"password": "pw-0"})).await;
    path
}

/// A VaultSecret `db` of `path` refreshed every `refresh`, and a watch of its Secret
/// `db-creds` once that holds `pw-0`.
async fn synced_db(client: &Client, ns: &str, path: &str, refresh: &str) -> SecretWatch {
    create_vault_secret(
        client,
        ns,
        "db",
        json!({"path": path, "serviceAccountName": "app", "refreshInterval": refresh,
               "target": {"name": "db-creds"}}),
    )
    .await;
    let mut watch = SecretWatch::new(client, ns, "db-creds");
    watch
        .until("password", "pw-0", Duration::from_secs(30))
        .await;
    watch
}

async fn wait_stream_connected(op: &Operator) {
    wait_for(
        "the operator's event stream to connect",
        Duration::from_secs(30),
        || async {
            (op.metric("scaivault_operator_event_stream_connected ")
                .await
                == Some(1.0))
            .then_some(())
        },
    )
    .await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn a_changed_source_reaches_its_secret_within_a_second() {
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(&client, "stream-push").await;
    let vault = root(&shared.vault);
    let path = seeded_db(&client, &ns, &vault).await;
    let op = Operator::start(shared, &ns, "op", &[]);
    let mut watch = synced_db(&client, &ns, &path, "1h").await;
    wait_stream_connected(&op).await;
    let reads_before = op.metric("scaivault_operator_vault_reads_total ").await;

    // Write acknowledged -> the watch shows the new value. (The event leaves the vault at
    // commit, before the write's answer, so the Secret can change before the answer is
    // in: the time from sending the write is printed too, as an upper bound.)
    let (mut took, mut from_sent) = (Vec::new(), Vec::new());
    for i in 1..=5 {
        let value = format!("pw-{i}");
        let sent = Instant::now();
        write(&vault, &path, json!({"password": value})).await;
        let acknowledged = Instant::now();
        watch
            .until("password", &value, Duration::from_secs(10))
            .await;
        took.push(acknowledged.elapsed());
        from_sent.push(sent.elapsed());
    }
    let (mid, max) = (median(took.clone()), took.iter().max().copied().unwrap());
    println!(
        "stream push latency over {} writes, acknowledged -> seen by a watch: median {mid:?}, max {max:?}, all {took:?}; from sending the write: median {:?}, max {:?}",
        took.len(),
        median(from_sent.clone()),
        from_sent.iter().max().unwrap()
    );
    assert!(
        mid < Duration::from_secs(1),
        "median {mid:?} (all {took:?})"
    );
    // One vault read per change: the stream triggers a reconcile, not a read per event.
    let reads_after = op.metric("scaivault_operator_vault_reads_total ").await;
    assert_eq!(
        reads_after.zip(reads_before).map(|(a, b)| a - b),
        Some(5.0),
        "vault reads for five changes"
    );
    let events = op
        .metric("scaivault_operator_event_stream_events_total ")
        .await
        .unwrap_or_default();
    assert!(events >= 5.0, "events received: {events}");

    // A delete is a change too: the VaultSecret says so at once (the Secret keeps its last
    // value), and a restore makes it Ready again.
    let mut status = ReadyWatch::new(&client, &ns, "db");
    vault.delete(&path).await.expect("delete");
    status.until("SecretNotFound", Duration::from_secs(5)).await;
    vault.restore(&path).await.expect("restore");
    status.until("Synced", Duration::from_secs(5)).await;
}

/// The `Ready` reason of one VaultSecret as a kube watch sees it change.
struct ReadyWatch {
    stream: futures::stream::BoxStream<'static, Result<VaultSecret, watcher::Error>>,
}

impl ReadyWatch {
    fn new(client: &Client, ns: &str, name: &str) -> ReadyWatch {
        let api = Api::<VaultSecret>::namespaced(client.clone(), ns);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        ReadyWatch {
            stream: watcher(api, config).applied_objects().boxed(),
        }
    }

    async fn until(&mut self, reason: &str, timeout: Duration) {
        let seen = tokio::time::timeout(timeout, async {
            while let Some(vs) = self.stream.try_next().await.expect("watch VaultSecrets") {
                let ready = vs
                    .status
                    .iter()
                    .flat_map(|s| &s.conditions)
                    .find(|c| c.r#type == "Ready");
                if ready.is_some_and(|c| c.reason == reason) {
                    return;
                }
            }
            panic!("the VaultSecret watch ended");
        })
        .await;
        assert!(
            seen.is_ok(),
            "Ready reason {reason} not seen within {timeout:?}"
        );
    }
}

#[tokio::test]
async fn many_vault_secrets_on_one_path_share_the_read_after_a_change() {
    const N: usize = 20;
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(&client, "stream-shared").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    let prefix = format!("apps/{ns}");
    grant_read(&vault, &ns, "app", &prefix).await;
    let path = format!("{prefix}/shared");
    write(&vault, &path, json!({"token": "t-0"})).await;
    let op = Operator::start(shared, &ns, "op", &[]);
    for i in 0..N {
        create_vault_secret(
            &client,
            &ns,
            &format!("s{i}"),
            json!({"path": path, "serviceAccountName": "app", "refreshInterval": "1h",
                   "target": {"name": format!("s{i}")}}),
        )
        .await;
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let all_show = |want: &'static str| {
        let secrets = secrets.clone();
        move || {
            let secrets = secrets.clone();
            async move {
                let list = secrets.list(&Default::default()).await.ok()?;
                let n = list
                    .items
                    .iter()
                    .filter(|s| value_of(s, "token").as_deref() == Some(want))
                    .count();
                (n == N).then_some(())
            }
        }
    };
    wait_for(
        "every Secret at t-0",
        Duration::from_secs(60),
        all_show("t-0"),
    )
    .await;
    wait_stream_connected(&op).await;
    let reads_before = op
        .metric("scaivault_operator_vault_reads_total ")
        .await
        .unwrap();
    let written = Instant::now();
    write(&vault, &path, json!({"token": "t-1"})).await;
    wait_for(
        "every Secret at t-1",
        Duration::from_secs(20),
        all_show("t-1"),
    )
    .await;
    let reads = op
        .metric("scaivault_operator_vault_reads_total ")
        .await
        .unwrap()
        - reads_before;
    println!(
        "{N} VaultSecrets on one path: {reads} vault reads after one change, all Secrets updated within {:?}",
        written.elapsed()
    );
    // Reads are shared for a second: one, or a few if the reconciles spread wider.
    assert!(
        reads <= 3.0,
        "{reads} vault reads for {N} VaultSecrets of one path"
    );
}

#[tokio::test]
async fn with_the_stream_off_the_refresh_interval_still_refreshes() {
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(&client, "stream-off").await;
    let vault = root(&shared.vault);
    let path = seeded_db(&client, &ns, &vault).await;
    let op = Operator::start(shared, &ns, "op", &["--event-stream", "false"]);
    let mut watch = synced_db(&client, &ns, &path, "3s").await;
    write(&vault, &path, json!({"password": "pw-1"})).await;
    let acknowledged = Instant::now();
    // Within one refresh (3 s + 10 % jitter), plus slack for the write and the apiserver.
    watch
        .until("password", "pw-1", Duration::from_secs(8))
        .await;
    println!("polling only: the change took {:?}", acknowledged.elapsed());
    assert_eq!(
        op.metric("scaivault_operator_event_stream_connected ")
            .await,
        Some(0.0)
    );
    assert_eq!(
        op.metric("scaivault_operator_event_stream_events_total ")
            .await,
        Some(0.0)
    );
}

/// The flags of an operator watching `ns` (also its lease's namespace) of the shared
/// test environment, on the vault at `vault_addr` with the token in `token_file`.
fn operator_args(
    shared: &Shared,
    vault_addr: &str,
    token_file: &std::path::Path,
    ns: &str,
) -> Vec<String> {
    [
        "--vault-addr",
        vault_addr,
        "--vault-token-file",
        &token_file.display().to_string(),
        "--kubeconfig",
        &shared.env.kubeconfig().display().to_string(),
        "--operator-namespace",
        ns,
        "--watch-namespace",
        ns,
        "--identity",
        "op",
        "--lease-duration",
        "4s",
        "--renew-interval",
        "1s",
    ]
    .map(str::to_owned)
    .into()
}

#[tokio::test]
async fn a_token_that_may_only_list_the_paths_gets_their_events() {
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(&client, "stream-list").await;
    let vault = root(&shared.vault);
    service_account(&client, &ns, "app").await;
    let prefix = format!("apps/{ns}");
    grant_read(&vault, &ns, "app", &prefix).await;
    // The operator's own token: `list` under the synced prefix, nothing else (what
    // docs/kubernetes.md asks for); values are read as the ServiceAccount.
    let identity = format!("sa:operator-{ns}");
    vault
        .create_identity(&IdentityInput {
            id: identity.clone(),
            display_name: None,
        })
        .await
        .expect("create identity");
    let policy = vault
        .create_policy(&PolicyInput {
            name: format!("operator-events-{ns}"),
            description: None,
            rules: vec![PolicyRule {
                path_pattern: format!("{prefix}/**"),
                permissions: vec![Permission::List],
                effect: Default::default(),
            }],
        })
        .await
        .expect("create policy");
    vault
        .bind_policy(&policy.id, &identity)
        .await
        .expect("bind policy");
    let token = vault
        .create_token(&CreateTokenRequest {
            identity_id: identity,
            ttl: None,
            display_name: None,
        })
        .await
        .expect("create token");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token.token).unwrap();
    let path = format!("{prefix}/db");
    write(&vault, &path, json!({"password": "pw-0"})).await;
    let args = operator_args(shared, &shared.vault.address, &token_file, &ns);
    let op = Operator::start_args(shared, &format!("{ns}-op"), "op", args);
    let mut watch = synced_db(&client, &ns, &path, "1h").await;
    wait_stream_connected(&op).await;
    write(&vault, &path, json!({"password": "pw-1"})).await;
    let acknowledged = Instant::now();
    watch
        .until("password", "pw-1", Duration::from_secs(5))
        .await;
    println!(
        "with a list-only operator token the change took {:?}",
        acknowledged.elapsed()
    );
}

/// A fixed local address forwarding to a server that comes back on another port after a
/// restart (the testkit's servers listen on port 0): what the operator is pointed at.
struct Forwarder {
    address: String,
    /// Where connections go; `None`: refused (the operator cannot reach the vault).
    target: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn to(server: &Server) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let target = std::sync::Arc::new(std::sync::Mutex::new(Some(host_port(&server.address))));
        let task = tokio::spawn({
            let target = target.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let Some(to) = target.lock().unwrap().clone() else {
                        continue;
                    };
                    tokio::spawn(async move {
                        // A server that is down refuses: the client sees its connection end.
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Forwarder {
            address,
            target,
            task,
        }
    }

    fn retarget(&self, server: Option<&Server>) {
        *self.target.lock().unwrap() = server.map(|s| host_port(&s.address));
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
async fn after_a_vault_restart_the_stream_resumes_and_misses_nothing() {
    restart_under_the_operator(true).await;
}

#[tokio::test]
async fn a_stream_that_delivered_nothing_resumes_from_where_it_opened() {
    restart_under_the_operator(false).await;
}

/// The vault restarts while the operator cannot reach it and a write lands meanwhile; the
/// write must reach the Secret once the vault is reachable again, by a replay from the
/// operator's position, never by re-reading everything. `with_position`: the stream
/// delivered an event before; without, the position is where the vault said the stream
/// started (its first message).
async fn restart_under_the_operator(with_position: bool) {
    let shared = shared().await;
    let client = shared.env.client().await;
    let ns = namespace(
        &client,
        if with_position {
            "stream-resume"
        } else {
            "stream-resync"
        },
    )
    .await;
    // A vault of its own, restarted under the operator, which reaches it through a
    // forwarder that follows it to its new port.
    let mut own = Server::dev()
        .arg("--kubernetes-kubeconfig")
        .arg(shared.env.kubeconfig())
        .start();
    let forwarder = Forwarder::to(&own).await;
    let vault = scaivault_client::Client::new(forwarder.address.clone(), own.token.clone())
        .expect("root client");
    let path = seeded_db(&client, &ns, &vault).await;
    let args = operator_args(shared, &forwarder.address, &own.token_file(), &ns);
    let op = Operator::start_args(shared, &format!("{ns}-op"), "op", args);
    let mut watch = synced_db(&client, &ns, &path, "1h").await;
    wait_stream_connected(&op).await;
    if with_position {
        // One change through the live stream gives the operator a position to resume from.
        write(&vault, &path, json!({"password": "pw-1"})).await;
        watch
            .until("password", "pw-1", Duration::from_secs(5))
            .await;
    }

    // The operator loses the vault (new connections refused), the vault restarts (SIGTERM,
    // exit, start again on the same data) and takes a write the operator cannot hear of.
    forwarder.retarget(None);
    own.restart_gracefully();
    wait_for(
        "the operator to see the stream gone",
        Duration::from_secs(30),
        || async {
            (op.metric("scaivault_operator_event_stream_connected ")
                .await
                == Some(0.0))
            .then_some(())
        },
    )
    .await;
    write(&root(&own), &path, json!({"password": "pw-2"})).await;
    // Reachable again: only the replay from the operator's position can bring this
    // change (no refresh is due for an hour).
    forwarder.retarget(Some(&own));
    let reachable = Instant::now();
    watch
        .until("password", "pw-2", Duration::from_secs(40))
        .await;
    let took = reachable.elapsed();
    println!(
        "after the vault restart ({}): a write made while the operator's stream was down reached the Secret {took:?} after the vault was reachable again (reconnect backoff included)",
        if with_position {
            "resumed after the last event"
        } else {
            "resumed from where the stream opened"
        }
    );
    let reconnects = op
        .metric("scaivault_operator_event_stream_reconnects_total ")
        .await
        .unwrap_or_default();
    assert!(reconnects >= 1.0, "reconnects: {reconnects}");
    // Resumed by position, not by re-reading everything.
    assert_eq!(
        op.metric("scaivault_operator_event_stream_resyncs_total ")
            .await,
        Some(0.0)
    );
}
