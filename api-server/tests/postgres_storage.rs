//! The PostgreSQL backend as an operator meets it: migrations only when asked, TLS to
//! the database verified, an outage answered 503 with Retry-After and recovered from
//! without a restart, and the URL's password never printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaivault_testkit::certs::Ca;
use scaivault_testkit::postgres::{Postgres, USER};
use scaivault_testkit::server::clean_env;
use scaivault_testkit::{Server, bin, error_code, wait_until};
use serde_json::json;

/// Trust authentication ignores it; it is there to show that it never leaks.
const PASSWORD: &str = "pw-never-printed-7f3a";

/// The database's URL with a password in it.
fn url_with_password(pg: &Postgres, query: &str) -> String {
    let url = pg.create_database();
    let url = url.replacen(&format!("{USER}@"), &format!("{USER}:{PASSWORD}@"), 1);
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?{query}"),
        None => format!("{url}?{query}"),
    }
}

fn server_command(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(bin::server());
    clean_env(&mut command).args(args);
    command.output().expect("run scaivault-server")
}

#[tokio::test]
async fn migrations_run_only_when_asked_and_once() {
    let pg = Postgres::start();
    let url = url_with_password(&pg, "sslmode=disable");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("master.key");
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--master-key-file",
            key.to_str().unwrap(),
            "--storage",
            &url,
        ];
        args.extend_from_slice(extra);
        server_command(&args)
    };

    // A schema behind the server stops it, naming the command to run.
    let refused = init(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("scaivault-server migrate"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    for _ in 0..2 {
        let migrated = server_command(&["migrate", "--storage", &url]);
        let stdout = String::from_utf8_lossy(&migrated.stdout);
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        assert!(stdout.contains("postgres schema is current"), "{stdout}");
    }

    let initialised = init(&[]);
    let stdout = String::from_utf8_lossy(&initialised.stdout);
    assert!(
        initialised.status.success(),
        "{}",
        String::from_utf8_lossy(&initialised.stderr)
    );
    assert!(stdout.contains("Root token: svt_"), "{stdout}");
    assert!(!stdout.contains(PASSWORD));

    // A wrong URL is refused before anything is opened, without echoing it.
    let bad = server_command(&["migrate", "--storage", &format!("mysql://{PASSWORD}@h/db")]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(stderr.contains("expected postgres://"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn a_database_outage_answers_503_with_retry_after_and_recovers() {
    let mut pg = Postgres::start();
    let url = url_with_password(&pg, "sslmode=disable");
    let s = Server::dev()
        .own_storage()
        .args(["--storage", &url])
        .start();
    s.write("apps/outage/db", json!({"data": {"password": "before"}}))
        .await;
    // Several pooled connections exist now; every one of them breaks with the database.
    for _ in 0..4 {
        let (status, _) = s
            .call(Method::GET, "/v1/secrets/apps/outage/db", None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    pg.stop();
    for (method, path, body) in [
        (Method::GET, "/v1/secrets/apps/outage/db", None),
        (
            Method::PUT,
            "/v1/secrets/apps/outage/db",
            Some(json!({"data": {"password": "during"}})),
        ),
    ] {
        let mut req = s.req(method.clone(), path);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("an answer, not a hang");
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        assert!(
            resp.headers().contains_key("retry-after"),
            "{method} {path}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        // The audit log lives in the same database: the request's audit record is what
        // fails first (fail closed), or the read or write itself.
        let code = error_code(&body);
        assert!(
            code == "audit_unavailable" || code == "storage_unavailable",
            "{body}"
        );
    }
    let ready = s.req(Method::GET, "/v1/health/ready").send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back without a server restart; what was acknowledged is there, what failed is not.
    pg.restart();
    wait_until(
        "reads to succeed again",
        Duration::from_secs(30),
        || async {
            s.call(Method::GET, "/v1/secrets/apps/outage/db", None)
                .await
                .0
                == StatusCode::OK
        },
    )
    .await;
    let (_, read) = s
        .call(Method::GET, "/v1/secrets/apps/outage/db", None)
        .await;
    assert_eq!(read["data"]["password"], "before");
    assert_eq!(read["version"], 1);
    let (status, _) = s
        .call(
            Method::PUT,
            "/v1/secrets/apps/outage/db",
            Some(json!({"data": {"password": "after"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !s.logs().contains(PASSWORD),
        "the URL's password reached the log"
    );
    // It leads the job runner again, under a new term, now that the database is back.
    wait_until(
        "the server to lead the job runner again",
        Duration::from_secs(30),
        || async { s.logs().matches("took over the background jobs").count() >= 2 },
    )
    .await;
}

#[tokio::test]
async fn tls_to_the_database_verifies_its_certificate() {
    let ca = Ca::new("database-ca");
    let pg = Postgres::start_tls(&ca.leaf(&["localhost", "127.0.0.1"]));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, Ca::new("someone-else").pem()).unwrap();

    let url = url_with_password(&pg, "sslmode=require");
    let s = Server::dev()
        .own_storage()
        .args([
            "--storage",
            &url,
            "--storage-ca-file",
            ca_file.to_str().unwrap(),
        ])
        .start();
    s.write("apps/tls/db", json!({"data": {"k": "v"}})).await;
    let (status, read) = s.call(Method::GET, "/v1/secrets/apps/tls/db", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["data"]["k"], "v");

    // A certificate the given CA did not sign is refused: no "encrypt but trust anyone".
    let url = url_with_password(&pg, "sslmode=require");
    let refused = server_command(&[
        "migrate",
        "--storage",
        &url,
        "--storage-ca-file",
        other_ca.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "connected to a database it cannot verify"
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn values_and_tokens_are_sealed_in_the_database() {
    let pg = Postgres::start();
    let url = url_with_password(&pg, "sslmode=disable");
    let s = Server::dev()
        .own_storage()
        .args(["--storage", &url])
        .start();
    s.write(
        "apps/sealed/db",
        json!({"data": {"password": "plaintext-canary-91c2"}}),
    )
    .await;
    let (status, created) = s
        .call(
            Method::POST,
            "/v1/auth/tokens",
            Some(json!({"identity_id": "sa:sealed", "ttl": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap();
    let dump = pg.dump(&url);
    assert!(dump.contains("apps/sealed/db"), "the dump holds the rows");
    assert!(!dump.contains("plaintext-canary-91c2"), "a value in clear");
    assert!(
        !dump.contains(token.trim_start_matches("svt_")),
        "a token in clear"
    );
    assert!(!dump.contains(&s.token), "the root token in clear");
    // The audit log is in the database too: nothing of the vault's is on the pod's disk.
    assert!(
        dump.contains("COPY public.audit_log"),
        "no audit table in the dump"
    );
    assert!(dump.contains("apps/sealed/db"));
    let (status, records) = s
        .call(Method::GET, "/v1/audit/logs?path=apps/sealed/db", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{records}");
    assert!(!records["logs"].as_array().unwrap().is_empty(), "{records}");
    assert!(!s.data_dir().join("audit.db").exists());
    assert!(!s.data_dir().join("scaivault.db").exists());
}
