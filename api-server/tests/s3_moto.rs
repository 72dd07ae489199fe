//! The audit export's S3 client (object_store's AWS backend) against a real S3-compatible
//! server: moto on loopback.
//!
//! Needs `moto_server` on PATH (`scripts/install-deps.sh` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use scaivault_server::audit::s3::{PART_BYTES, S3Client, S3Credentials, S3Error, S3Target};
use scaivault_testkit::free_port;
use scaivault_testkit::moto::Moto;
use secrecy::SecretString;

const SECRET_KEY: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-SECRET";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzE-SESSION-TOKEN-value";

fn credentials() -> S3Credentials {
    S3Credentials::new("AKIAMOTOTEST", SecretString::from(SECRET_KEY))
        .with_session_token(SecretString::from(SESSION_TOKEN))
}

fn target(moto: &Moto, bucket: &str) -> S3Target {
    S3Target::new(bucket, credentials()).with_endpoint(moto.endpoint.clone())
}

/// No error text may reveal the secret key or the session token.
fn assert_no_secrets(err: &S3Error) {
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(SECRET_KEY), "secret key leaked: {shown}");
        assert!(
            !shown.contains(SESSION_TOKEN),
            "session token leaked: {shown}"
        );
        assert!(
            !shown.contains("X-Amz-Signature"),
            "signed URL leaked: {shown}"
        );
    }
}

#[tokio::test]
async fn s3_client_against_moto() {
    let moto = Moto::start();
    let s3 = S3Client::new().unwrap();
    let audit = target(&moto, "scaivault-audit");

    // Credentials never show their secrets.
    let shown = format!("{:?}", audit.credentials);
    assert!(shown.contains("AKIAMOTOTEST"));
    assert!(
        !shown.contains(SECRET_KEY) && !shown.contains(SESSION_TOKEN),
        "{shown}"
    );
    assert!(!format!("{audit:?}").contains(SECRET_KEY));

    moto.create_bucket("scaivault-audit", "us-east-1").await;

    let jsonl = concat!(
        r#"{"seq":1,"ts":"2026-04-01T00:00:00Z","action":"secret.read","path":"kv/app/db","prev":"00"}"#,
        "\n",
        r#"{"seq":2,"ts":"2026-04-01T00:00:01Z","action":"secret.write","path":"kv/app/db","note":"ünïcødé \"quoted\""}"#,
        "\n",
        r#"{"seq":3,"ts":"2026-04-01T00:00:02Z","action":"token.create","path":"auth/token"}"#,
        "\n",
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let objects: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "scaivault/2026-04/part-00000.jsonl",
            jsonl.as_bytes().to_vec(),
            "application/x-ndjson",
        ),
        (
            "scaivault/2026-04/part-00001.jsonl",
            b"{\"seq\":4}\n".to_vec(),
            "application/x-ndjson",
        ),
        (
            "scaivault/2026-05/part-00000.jsonl",
            Vec::new(),
            "application/x-ndjson",
        ),
        (
            "scaivault/odd keys/ä b+c=d&e;f(g)'h'~.bin",
            binary.clone(),
            "application/octet-stream",
        ),
        ("other/readme.txt", b"not audit\r\n".to_vec(), "text/plain"),
    ];
    for (key, body, content_type) in &objects {
        s3.put_object(&audit, key, body.clone(), content_type)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    for (key, body, _) in &objects {
        let got = s3
            .get_object(&audit, key)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(&got, body, "{key} read back differs");
    }
    // Overwrite replaces the whole object.
    s3.put_object(&audit, "other/readme.txt", b"v2".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(
        s3.get_object(&audit, "other/readme.txt").await.unwrap(),
        b"v2"
    );

    // Listing by prefix, in key order.
    assert_eq!(
        s3.list_objects(&audit, "scaivault/2026-04/").await.unwrap(),
        [
            "scaivault/2026-04/part-00000.jsonl",
            "scaivault/2026-04/part-00001.jsonl"
        ]
    );
    assert_eq!(
        s3.list_objects(&audit, "scaivault/").await.unwrap(),
        [
            "scaivault/2026-04/part-00000.jsonl",
            "scaivault/2026-04/part-00001.jsonl",
            "scaivault/2026-05/part-00000.jsonl",
            "scaivault/odd keys/ä b+c=d&e;f(g)'h'~.bin",
        ]
    );
    assert_eq!(s3.list_objects(&audit, "").await.unwrap().len(), 5);
    // Whole segments only: "scaivault/2026" is not a prefix of "scaivault/2026-04/...".
    assert!(
        s3.list_objects(&audit, "scaivault/2026")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s3.list_objects(&audit, "nothing/")
            .await
            .unwrap()
            .is_empty()
    );

    // More than one page (S3 returns at most 1000 keys a page).
    let many = target(&moto, "scaivault-many");
    moto.create_bucket("scaivault-many", "us-east-1").await;
    for i in 0..1003 {
        s3.put_object(&many, &format!("p/{i:05}"), Vec::new(), "text/plain")
            .await
            .unwrap();
    }
    let keys = s3.list_objects(&many, "p/").await.unwrap();
    assert_eq!(keys.len(), 1003);
    assert_eq!(keys.first().map(String::as_str), Some("p/00000"));
    assert_eq!(keys.last().map(String::as_str), Some("p/01002"));

    // A large export object goes up in parts (its ETag counts them) and reads back whole.
    let large: Vec<u8> = (0..2 * PART_BYTES + 4096)
        .map(|i| b"{\"seq\":1}\n"[i % 10])
        .collect();
    let large_key = "scaivault/2026-06/part-00000.jsonl";
    s3.put_object(&audit, large_key, large.clone(), "application/x-ndjson")
        .await
        .unwrap();
    let etag = s3.object_etag(&audit, large_key).await.unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "3 parts: {etag}");
    assert!(s3.get_object(&audit, large_key).await.unwrap() == large);
    let small_etag = s3.object_etag(&audit, "other/readme.txt").await.unwrap();
    assert!(!small_etag.contains('-'), "one PUT: {small_etag}");

    // A bucket in another region.
    let eu = target(&moto, "scaivault-eu").with_region("eu-west-1");
    moto.create_bucket("scaivault-eu", "eu-west-1").await;
    s3.put_object(&eu, "k", b"eu".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(s3.get_object(&eu, "k").await.unwrap(), b"eu");

    let mut errors = Vec::new();

    // A missing bucket is a clear service error with the S3 code.
    let missing = target(&moto, "no-such-bucket-here");
    let err = s3
        .put_object(&missing, "a.jsonl", jsonl.as_bytes().to_vec(), "text/plain")
        .await
        .unwrap_err();
    assert_eq!(err.code().as_deref(), Some("NoSuchBucket"), "{err}");
    assert!(err.is_not_found(), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("PutObject") && shown.contains("NoSuchBucket"),
        "{shown}"
    );
    assert!(!shown.contains("secret.read"), "the body leaked: {shown}");
    errors.push(err);
    let err = s3.get_object(&missing, "a.jsonl").await.unwrap_err();
    assert_eq!(err.code().as_deref(), Some("NoSuchBucket"), "{err}");
    errors.push(err);
    let err = s3.list_objects(&missing, "").await.unwrap_err();
    assert_eq!(err.code().as_deref(), Some("NoSuchBucket"), "{err}");
    errors.push(err);

    // A missing key.
    let err = s3.get_object(&audit, "scaivault/absent").await.unwrap_err();
    assert_eq!(err.code().as_deref(), Some("NoSuchKey"), "{err}");
    assert!(err.is_not_found(), "{err}");
    errors.push(err);

    // Invalid names are refused before any request.
    let err = s3
        .put_object(&audit, "a/../b", Vec::new(), "text/plain")
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::InvalidKey(_)), "{err}");
    errors.push(err);
    let err = s3
        .put_object(&audit, &"k".repeat(1025), Vec::new(), "text/plain")
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::InvalidKey(_)), "{err}");
    assert!(err.to_string().contains("1024"), "{err}");
    errors.push(err);
    let err = s3
        .put_object(&target(&moto, "Bad_Bucket"), "k", Vec::new(), "text/plain")
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::InvalidBucket(_)), "{err}");
    errors.push(err);

    // Nothing listening: a transport error, after the retries.
    let closed_port = free_port();
    let nowhere = S3Target::new("scaivault-audit", credentials())
        .with_endpoint(format!("http://127.0.0.1:{closed_port}"));
    let quick = S3Client::with_timeout(Duration::from_millis(500)).unwrap();
    let err = quick.get_object(&nowhere, "k").await.unwrap_err();
    assert!(matches!(err, S3Error::Store { .. }), "{err}");
    assert_eq!(err.code(), None);
    errors.push(err);

    // A server that never answers: the request times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_target = S3Target::new("scaivault-audit", credentials())
        .with_endpoint(format!("http://{}", silent.local_addr().unwrap()));
    let started = Instant::now();
    let err = quick
        .put_object(&silent_target, "k", b"body".to_vec(), "text/plain")
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::Store { .. }), "{err}");
    // One request's retries end within four times its timeout.
    assert!(started.elapsed() < Duration::from_secs(10));
    errors.push(err);
    drop(silent);

    for err in &errors {
        println!("{err}");
        assert_no_secrets(err);
    }
}
