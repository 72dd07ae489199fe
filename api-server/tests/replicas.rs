//! Three replicas on loopback sharing one PostgreSQL database: writes through any read
//! back through any other, a token revocation and a data-key rotation on one take
//! effect on the others (measured), and killing the job runner hands the jobs to
//! another replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use scaivault_testkit::postgres::Postgres;
use scaivault_testkit::server::on_postgres;
use scaivault_testkit::{Server, wait_until};
use serde_json::json;

/// What the issue asks of propagation between replicas.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

/// A replica on `url`; every replica after the first gets the first one's dev master key.
fn replica(url: &str, first: Option<&Server>) -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    if let Some(first) = first {
        copy_key(first.data_dir(), &data);
    }
    Server::dev()
        .own_storage()
        .data_dir(data)
        .args(["--storage", url, "--storage-migrate"])
        .start()
}

fn copy_key(from: &Path, to: &Path) {
    std::fs::copy(from.join("dev-master.key"), to.join("dev-master.key")).unwrap();
}

fn leads(s: &Server) -> bool {
    s.logs().contains("took over the background jobs")
}

#[tokio::test]
async fn three_replicas_share_one_database() {
    // Both passes of `make test` would run it alike: it brings its own database.
    if on_postgres() {
        return;
    }
    let pg = Postgres::start();
    let url = pg.create_database();
    let a = replica(&url, None);
    let b = replica(&url, Some(&a));
    let c = replica(&url, Some(&a));
    let replicas = [&a, &b, &c];

    // Writes through every replica read back the same through every other.
    for (i, writer) in replicas.iter().enumerate() {
        writer
            .write(&format!("shared/{i}"), json!({"data": {"written_by": i}}))
            .await;
    }
    for reader in replicas {
        for i in 0..3 {
            let (status, read) = reader
                .call(Method::GET, &format!("/v1/secrets/shared/{i}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{read}");
            assert_eq!(read["data"]["written_by"], i, "{read}");
        }
    }

    // A token used (and cached) on B, revoked on A, stops working on B within the bound.
    let (_, issued) = a
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:replicated"})),
        )
        .await;
    let token = issued["token"].as_str().unwrap();
    let whoami = |s: &Server| s.req_as(token, Method::GET, "/v1/auth/whoami").send();
    assert_eq!(whoami(&b).await.unwrap().status(), StatusCode::OK);
    let accessor = issued["accessor"].as_str().unwrap();
    let (status, _) = a
        .call(Method::DELETE, &format!("/v1/auth/tokens/{accessor}"), None)
        .await;
    assert!(status.is_success(), "{status}");
    let revoked_at = Instant::now();
    wait_until(
        "B to refuse the revoked token",
        PROPAGATION_BOUND,
        || async { whoami(&b).await.unwrap().status() == StatusCode::UNAUTHORIZED },
    )
    .await;
    println!(
        "token revocation reached another replica in {:?}",
        revoked_at.elapsed()
    );

    // A binding made on A grants on C within the bound: C's policy index follows.
    let (_, reader) = a
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:reader"})),
        )
        .await;
    let reader = reader["token"].as_str().unwrap().to_owned();
    let read_on_c = || {
        c.req_as(&reader, Method::GET, "/v1/secrets/shared/0")
            .send()
    };
    assert_eq!(read_on_c().await.unwrap().status(), StatusCode::FORBIDDEN);
    let (_, policy) = a
        .call(Method::POST, "/v1/policies", Some(json!({"name": "shared-reader", "rules": [{"path_pattern": "shared/**", "permissions": ["read"]}]})))
        .await;
    let (status, _) = a
        .call(
            Method::POST,
            &format!("/v1/policies/{}/bindings", policy["id"].as_str().unwrap()),
            Some(json!({"identity_type": "service_account", "identity_id": "sa:reader"})),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let bound_at = Instant::now();
    wait_until("C to grant the new binding", PROPAGATION_BOUND, || async {
        read_on_c().await.unwrap().status() == StatusCode::OK
    })
    .await;
    println!(
        "a policy binding reached another replica in {:?}",
        bound_at.elapsed()
    );

    // A data key added on A: C reads what A sealed under it, and C's own rotation
    // follows A's key instead of colliding with it.
    let (status, rotated) = a.call(Method::POST, "/v1/sys/keys/rotate", None).await;
    assert!(status.is_success(), "{rotated}");
    a.write("shared/after-rotation", json!({"data": {"k": "v"}}))
        .await;
    let (status, read) = c
        .call(Method::GET, "/v1/secrets/shared/after-rotation", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let (status, again) = c.call(Method::POST, "/v1/sys/keys/rotate", None).await;
    assert!(status.is_success(), "{again}");
    assert_eq!(
        again["key_id"].as_u64(),
        rotated["key_id"].as_u64().map(|id| id + 1),
        "C added the key after A's: {again} after {rotated}"
    );

    // Every replica's records are in one chain that verifies.
    let (_, verified) = b.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(verified["verified"], true, "{verified}");

    // Exactly one replica runs the jobs; killing it hands them to another.
    let leaders: Vec<_> = replicas.iter().filter(|s| leads(s)).collect();
    assert_eq!(leaders.len(), 1, "one job runner");
    let mut replicas = [a, b, c];
    let runner = replicas.iter().position(leads).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != runner).collect();
    // Writers keep going through the survivors while the runner dies.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load: Vec<_> = survivors
        .iter()
        .map(|&i| {
            let (http, base, token) = (
                replicas[i].http.clone(),
                replicas[i].address.clone(),
                replicas[i].token.clone(),
            );
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    if *stopped.borrow() {
                        break;
                    }
                    let path = format!("load/{i}/{n}");
                    let resp = http
                        .put(format!("{base}/v1/secrets/{path}"))
                        .bearer_auth(&token)
                        .json(&json!({"data": {"n": n}}))
                        .send()
                        .await;
                    if resp.is_ok_and(|r| r.status() == StatusCode::OK) {
                        acknowledged.push(path);
                    }
                }
                acknowledged
            })
        })
        .collect();
    replicas[runner].process().kill();
    let killed_at = Instant::now();
    let survivors: Vec<&Server> = survivors.iter().map(|&i| &replicas[i]).collect();
    wait_until(
        "another replica to take over the jobs",
        Duration::from_secs(10),
        || async { survivors.iter().any(|s| leads(s)) },
    )
    .await;
    println!("the job runner failed over in {:?}", killed_at.elapsed());
    assert_eq!(survivors.iter().filter(|s| leads(s)).count(), 1);
    stop.send_replace(true);
    let mut acknowledged = Vec::new();
    for writer in load {
        acknowledged.extend(writer.await.unwrap());
    }
    // And writes go on through every survivor once the jobs moved.
    for (i, s) in survivors.iter().enumerate() {
        let path = format!("load/after/{i}");
        s.write(&path, json!({"data": {"after": true}})).await;
        acknowledged.push(path);
    }
    println!(
        "{} writes acknowledged across the failover",
        acknowledged.len()
    );
    // No acknowledged write is lost, and each has its audit record in the one chain.
    for path in &acknowledged {
        for s in &survivors {
            let (status, read) = s
                .call(Method::GET, &format!("/v1/secrets/{path}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{path}: {read}");
        }
    }
    for path in &acknowledged {
        let (_, logs) = survivors[0]
            .call(
                Method::GET,
                &format!("/v1/audit/logs?path={path}&action=secrets.write&limit=10"),
                None,
            )
            .await;
        let records = logs["logs"].as_array().unwrap();
        assert!(
            records.iter().any(|r| r["outcome"] == "success"),
            "{path}: {logs}"
        );
    }
    let (_, verified) = survivors[1]
        .call(Method::GET, "/v1/audit/verify", None)
        .await;
    assert_eq!(verified["verified"], true, "{verified}");
}
