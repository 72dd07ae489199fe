//! Three replicas on loopback sharing one PostgreSQL database: writes through any read
//! back through any other, a token revocation, a binding, a policy change and a
//! data-key rotation on one take effect on the others within a second (measured), killing the job runner hands the jobs to another
//! replica without a job slot running twice, and a PostgreSQL restart under load answers
//! 503 with `Retry-After` until the replicas recover on their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use scaivault_testkit::postgres::Postgres;
use scaivault_testkit::server::on_postgres;
use scaivault_testkit::{Server, wait_until};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// What the issue asks of propagation between replicas.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

/// The expiry purge runs every second here, so the failover is crossed by many slots.
const PURGE_INTERVAL_SECS: i64 = 1;

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
        .args(["--purge-interval", &format!("{PURGE_INTERVAL_SECS}s")])
        // The checks read back every acknowledged write through each replica, more
        // than a minute's allowance for one identity; rate limits are tested elsewhere.
        .args(["--rate-limit-per-minute", "0"])
        .start()
}

/// Three replicas on a database of their own in `pg`.
fn three_replicas(pg: &Postgres) -> [Server; 3] {
    let url = pg.create_database();
    let a = replica(&url, None);
    let b = replica(&url, Some(&a));
    let c = replica(&url, Some(&a));
    [a, b, c]
}

fn copy_key(from: &Path, to: &Path) {
    std::fs::copy(from.join("dev-master.key"), to.join("dev-master.key")).unwrap();
}

async fn detailed_health(s: &Server) -> Value {
    let (status, health) = s.call(Method::GET, "/v1/health/detailed", None).await;
    assert!(status.is_success(), "{health}");
    health
}

/// Whether `s` runs the background jobs now.
async fn leads(s: &Server) -> bool {
    detailed_health(s).await["components"]["runner"]["details"]["leads"] == true
}

/// How many expiry purges `s` ran to completion.
async fn purges_run(s: &Server) -> u64 {
    let health = detailed_health(s).await;
    let purge = &health["components"]["jobs"]["details"]["expiry_purge"];
    purge["runs"].as_u64().unwrap_or(0) - purge["failures"].as_u64().unwrap_or(0)
}

async fn count_leaders(servers: &[&Server]) -> usize {
    let mut n = 0;
    for s in servers {
        n += usize::from(leads(s).await);
    }
    n
}

/// The purge slots that began from `from` to now: at most one purge may run in each.
fn slots_since(from: OffsetDateTime) -> u64 {
    let slot = |t: OffsetDateTime| t.unix_timestamp().div_euclid(PURGE_INTERVAL_SECS);
    (slot(OffsetDateTime::now_utc()) - slot(from) + 1) as u64
}

#[tokio::test]
async fn three_replicas_share_one_database() {
    // Both passes of `make test` would run it alike: it brings its own database.
    if on_postgres() {
        return;
    }
    let pg = Postgres::start();
    let began = OffsetDateTime::now_utc();
    let [a, b, c] = three_replicas(&pg);
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
    // A policy's rules changed on B take effect on C within the bound: read taken away.
    let policy_id = policy["id"].as_str().unwrap();
    let (status, changed) = b
        .call(Method::PUT, &format!("/v1/policies/{policy_id}"), Some(json!({"name": "shared-reader", "rules": [{"path_pattern": "other/**", "permissions": ["read"]}]})))
        .await;
    assert!(status.is_success(), "{changed}");
    let changed_at = Instant::now();
    wait_until(
        "C to apply the changed rules",
        PROPAGATION_BOUND,
        || async { read_on_c().await.unwrap().status() == StatusCode::FORBIDDEN },
    )
    .await;
    println!(
        "a policy change reached another replica in {:?}",
        changed_at.elapsed()
    );

    // A data key added on A: C reads what A sealed under it, and C's own rotation
    // follows A's key instead of colliding with it.
    let (status, rotated) = a.call(Method::POST, "/v1/sys/keys/rotate", None).await;
    assert!(status.is_success(), "{rotated}");
    // C seals with the new key within the bound, before anything asks it to read one.
    let rotated_at = Instant::now();
    wait_until("C to seal under A's new key", PROPAGATION_BOUND, || async {
        let (_, keys) = c.call(Method::GET, "/v1/sys/keys", None).await;
        keys["active_key_id"] == rotated["key_id"]
    })
    .await;
    println!(
        "a key rotation reached another replica in {:?}",
        rotated_at.elapsed()
    );
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
    assert_eq!(count_leaders(&replicas).await, 1, "one job runner");
    let mut runner = 0;
    while !leads(replicas[runner]).await {
        runner += 1;
    }
    let mut replicas = [a, b, c];
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
    // What the runner purged up to now (it may purge once more before it dies: that
    // run then goes uncounted, which only makes the bound below easier to hold).
    wait_until(
        "the runner to purge twice",
        Duration::from_secs(10),
        || async { purges_run(&replicas[runner]).await >= 2 },
    )
    .await;
    let purged_by_runner = purges_run(&replicas[runner]).await;
    replicas[runner].process().kill();
    let killed_at = Instant::now();
    let survivors: Vec<&Server> = survivors.iter().map(|&i| &replicas[i]).collect();
    wait_until(
        "another replica to take over the jobs",
        Duration::from_secs(10),
        || async { count_leaders(&survivors).await > 0 },
    )
    .await;
    println!("the job runner failed over in {:?}", killed_at.elapsed());
    assert_eq!(count_leaders(&survivors).await, 1);
    // The new runner purges, and no purge slot ran twice across the failover: three
    // replicas each running every slot would purge about three times per slot.
    let before = purges_run(survivors[0]).await + purges_run(survivors[1]).await;
    wait_until(
        "the new runner to purge twice",
        Duration::from_secs(10),
        || async { purges_run(survivors[0]).await + purges_run(survivors[1]).await >= before + 2 },
    )
    .await;
    let purged = purged_by_runner + purges_run(survivors[0]).await + purges_run(survivors[1]).await;
    let slots = slots_since(began);
    println!("{purged} expiry purges in {slots} slots of {PURGE_INTERVAL_SECS} s");
    assert!(purged <= slots, "{purged} purges in {slots} slots");
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
        let (status, logs) = survivors[0]
            .call(
                Method::GET,
                &format!("/v1/audit/logs?path={path}&action=secrets.write&limit=10"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {logs}");
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

/// What one replica's writers saw while PostgreSQL restarted.
#[derive(Default)]
struct Outcomes {
    acknowledged: AtomicUsize,
    unavailable: AtomicUsize,
}

#[tokio::test]
async fn a_postgres_restart_under_load_answers_503_then_recovers() {
    if on_postgres() {
        return;
    }
    let mut pg = Postgres::start();
    let replicas = three_replicas(&pg);
    for (i, s) in replicas.iter().enumerate() {
        s.write(&format!("restart/seed/{i}"), json!({"data": {"k": "v"}}))
            .await;
    }

    // Each replica gets a writer that also reads: every answer must be a success, or a
    // 503 that says when to retry; never a 500, a hang or a dropped connection.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let outcomes: Vec<Arc<Outcomes>> = (0..3).map(|_| Arc::default()).collect();
    let load: Vec<_> = replicas
        .iter()
        .zip(&outcomes)
        .enumerate()
        .map(|(i, (s, seen))| {
            let (http, base, token) = (s.http.clone(), s.address.clone(), s.token.clone());
            let (stopped, seen) = (stopped.clone(), Arc::clone(seen));
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut unexpected = Vec::new();
                for n in 0.. {
                    if *stopped.borrow() {
                        break;
                    }
                    let path = format!("restart/{i}/{n}");
                    let write = http
                        .put(format!("{base}/v1/secrets/{path}"))
                        .bearer_auth(&token)
                        .json(&json!({"data": {"n": n}}));
                    let read = http
                        .get(format!("{base}/v1/secrets/restart/seed/{i}"))
                        .bearer_auth(&token);
                    for (is_write, request) in [(true, write), (false, read)] {
                        match request.send().await {
                            Ok(r) if r.status().is_success() => {
                                if is_write {
                                    acknowledged.push(path.clone());
                                    seen.acknowledged.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(r)
                                if r.status() == StatusCode::SERVICE_UNAVAILABLE
                                    && r.headers().contains_key("retry-after") =>
                            {
                                seen.unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                let status = r.status();
                                unexpected.push(format!("{status}: {}", r.text().await.unwrap()));
                            }
                            Err(e) => unexpected.push(format!("no answer: {e}")),
                        }
                    }
                }
                (acknowledged, unexpected)
            })
        })
        .collect();
    let everyone = |what: fn(&Outcomes) -> usize, above: Vec<usize>| {
        let outcomes = outcomes.clone();
        move || {
            let holds = outcomes.iter().zip(&above).all(|(o, a)| what(o) > *a);
            async move { holds }
        }
    };
    let acknowledged = |o: &Outcomes| o.acknowledged.load(Ordering::Relaxed);
    let unavailable = |o: &Outcomes| o.unavailable.load(Ordering::Relaxed);
    wait_until(
        "every replica to acknowledge writes",
        Duration::from_secs(10),
        everyone(acknowledged, vec![10; 3]),
    )
    .await;

    pg.stop();
    wait_until(
        "every replica to answer 503 with Retry-After",
        Duration::from_secs(10),
        everyone(unavailable, vec![0; 3]),
    )
    .await;
    // Nothing is acknowledged while the database is down: this is where recovery starts.
    let during_outage: Vec<usize> = outcomes.iter().map(|o| acknowledged(o)).collect();
    pg.restart();
    let restarted_at = Instant::now();
    wait_until(
        "every replica to acknowledge writes again, without a restart",
        Duration::from_secs(30),
        everyone(acknowledged, during_outage),
    )
    .await;
    println!(
        "every replica acknowledged writes {:?} after PostgreSQL came back",
        restarted_at.elapsed()
    );
    stop.send_replace(true);
    let mut acknowledged = Vec::new();
    for writer in load {
        let (acked, unexpected) = writer.await.unwrap();
        assert!(unexpected.is_empty(), "{unexpected:?}");
        acknowledged.extend(acked);
    }
    let refused: usize = outcomes.iter().map(|o| unavailable(o)).sum();
    println!(
        "{} writes acknowledged, {refused} answers 503 with Retry-After",
        acknowledged.len()
    );

    // What was acknowledged is there, each with its audit record, in one chain that
    // verifies; and one replica runs the jobs again.
    for path in &acknowledged {
        for s in &replicas {
            let (status, read) = s
                .call(Method::GET, &format!("/v1/secrets/{path}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{path}: {read}");
        }
        let (_, logs) = replicas[0]
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
    let (_, verified) = replicas[2]
        .call(Method::GET, "/v1/audit/verify", None)
        .await;
    assert_eq!(verified["verified"], true, "{verified}");
    let all: Vec<&Server> = replicas.iter().collect();
    wait_until(
        "one replica to run the jobs again",
        Duration::from_secs(10),
        || async { count_leaders(&all).await == 1 },
    )
    .await;
}
