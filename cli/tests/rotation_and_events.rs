//! Rotation schedules, forced rotation, the due/overdue list and events through the
//! `scaivault` binary against a real `scaivault-server dev` whose wall clock the test moves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use scaivault_testkit::Server;
use serde_json::Value;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The value of `key` in a `key  value` listing.
fn field<'t>(table: &'t str, key: &str) -> Option<&'t str> {
    table.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim())
    })
}

/// The first column of each row of a table, header left out.
fn first_column(table: &str) -> Vec<&str> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

fn paths(due: &Value) -> Vec<&str> {
    due["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect()
}

#[test]
fn schedules_forced_rotation_and_the_due_list() {
    let server = Server::dev().shifted_clock().start();
    server
        .run(&[
            "secrets",
            "write",
            "app/db",
            "--type",
            "password",
            "--data",
            "password=first",
            "--data",
            "user=app",
        ])
        .ok();

    // A generate schedule: the table says what it is and where it stands.
    let set = server
        .run(&[
            "rotation",
            "set",
            "app/db",
            "--interval",
            "30d",
            "--strategy",
            "generate",
            "--length",
            "40",
            "--charset",
            "hex",
        ])
        .ok()
        .stdout;
    assert_eq!(field(&set, "rotation"), Some("scheduled"), "{set}");
    assert_eq!(field(&set, "rotation_strategy"), Some("generate"), "{set}");
    assert_eq!(field(&set, "rotation_interval"), Some("30d"), "{set}");
    assert_eq!(
        field(&set, "generator"),
        Some("length=40 charset=hex"),
        "{set}"
    );
    let metadata = server.run(&["secrets", "metadata", "app/db"]).ok().stdout;
    assert_eq!(
        field(&metadata, "rotation"),
        Some("scheduled"),
        "{metadata}"
    );
    assert!(
        field(&metadata, "next_rotation_at").is_some_and(|t| t.starts_with("20")),
        "{metadata}"
    );

    // Forced: a new version from the generator; the other fields are kept.
    let rotated = server
        .run(&[
            "secrets",
            "rotate",
            "app/db",
            "--reason",
            "compromise",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(rotated["outcome"], "rotated");
    assert_eq!(rotated["version"], 2);
    let password = server
        .run(&["secrets", "read", "app/db", "--field", "password"])
        .ok()
        .stdout;
    let password = password.trim_end();
    assert_eq!(password.len(), 40);
    assert!(password.bytes().all(|b| b.is_ascii_hexdigit()) && password != "first");
    let user = server
        .run(&["secrets", "read", "app/db", "--field", "user"])
        .ok()
        .stdout;
    assert_eq!(user, "app\n");

    // External: the server only asks for it.
    server
        .run(&["secrets", "write", "app/partner", "--data", "key=k1"])
        .ok();
    server
        .run(&[
            "rotation",
            "set",
            "app/partner",
            "--interval",
            "1d",
            "--strategy",
            "external",
            "--grace",
            "12h",
        ])
        .ok();
    let requested = server
        .run(&["secrets", "rotate", "app/partner"])
        .ok()
        .stdout;
    assert_eq!(
        field(&requested, "outcome"),
        Some("requested"),
        "{requested}"
    );
    assert_eq!(field(&requested, "version"), Some("1"), "{requested}");

    // No schedule, no rotation.
    server
        .run(&["secrets", "write", "app/plain", "--data", "k=v"])
        .ok();
    let refused = server
        .run(&["secrets", "rotate", "app/plain"])
        .failed_with(1);
    assert!(
        refused
            .stderr
            .starts_with("error: rotation_not_configured: "),
        "{refused:#?}"
    );

    // A week ahead: the daily one; a month ahead: both.
    let week = server.run(&["rotation", "due"]).ok().stdout;
    assert_eq!(first_column(&week), ["app/partner"], "{week}");
    assert!(week.starts_with("PATH "), "{week}");
    let month = server
        .run(&["rotation", "due", "--within-hours", "800", "-o", "json"])
        .ok()
        .json();
    assert_eq!(paths(&month), ["app/db", "app/partner"]);
    assert_eq!(month["next_cursor"], Value::Null);

    // Three days on, the daily one is past its grace: overdue, listed only when asked.
    server.clock().advance(3 * DAY);
    let week = server.run(&["rotation", "due"]).ok().stdout;
    assert!(first_column(&week).is_empty(), "{week}");
    let overdue = server
        .run(&["rotation", "due", "--include-overdue"])
        .ok()
        .stdout;
    let row: Vec<&str> = overdue.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[2], row[3]),
        ("app/partner", "yes", "external"),
        "{overdue}"
    );
    let metadata = server
        .run(&["secrets", "metadata", "app/partner"])
        .ok()
        .stdout;
    assert_eq!(field(&metadata, "rotation"), Some("overdue"), "{metadata}");
    // A write of a new version is the rotation of an external secret: next due in a day.
    server
        .run(&["secrets", "write", "app/partner", "--data", "key=k2"])
        .ok();
    let due = server
        .run(&["rotation", "due", "--include-overdue", "-o", "json"])
        .ok()
        .json();
    assert_eq!(paths(&due), ["app/partner"]);
    assert_eq!(due["secrets"][0]["is_overdue"], false);
    assert!(due["secrets"][0]["last_rotated_at"].is_string(), "{due}");

    // The rotations are events, with their reasons; the write was one too.
    let events = server
        .run(&[
            "events",
            "list",
            "--types",
            "rotation.completed,rotation.requested",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let seen: Vec<(&str, &str, Value)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
                e["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("rotation.completed", "app/db", Value::from("compromise")),
            ("rotation.requested", "app/partner", Value::Null),
            ("rotation.completed", "app/partner", Value::Null),
        ]
    );

    // Cleared: nothing left to rotate.
    let cleared = server.run(&["rotation", "clear", "app/db"]).ok().stdout;
    assert_eq!(
        field(&cleared, "rotation"),
        Some("not_configured"),
        "{cleared}"
    );
    assert_eq!(field(&cleared, "rotation_strategy"), None, "{cleared}");
    server.run(&["secrets", "rotate", "app/db"]).failed_with(1);
}

#[test]
fn events_list_pages_on_with_after() {
    let server = Server::start(&[]);
    for value in ["k=1", "k=2", "k=3"] {
        server
            .run(&["secrets", "write", "app/evt", "--data", value])
            .ok();
    }
    server
        .run(&["secrets", "write", "other/evt", "--data", "k=1"])
        .ok();

    let table = server
        .run(&["events", "list", "--path-prefix", "app/"])
        .ok();
    assert!(table.stdout.starts_with("SEQ "), "{table:#?}");
    let types: Vec<&str> = table
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        types,
        ["secret.created", "secret.updated", "secret.updated"]
    );
    // People are told where to go on from; programs read last_seq.
    let all = server
        .run(&["events", "list", "--path-prefix", "app/", "-o", "json"])
        .ok()
        .json();
    let last_seq = all["last_seq"].as_u64().unwrap();
    assert!(
        table.stderr.contains(&format!("--after {last_seq}")),
        "{table:#?}"
    );

    let first = server
        .run(&[
            "events",
            "list",
            "--path-prefix",
            "app/",
            "--limit",
            "2",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let after = first["last_seq"].as_u64().unwrap().to_string();
    let rest = server
        .run(&[
            "events",
            "list",
            "--path-prefix",
            "app/",
            "--after",
            &after,
            "-o",
            "json",
        ])
        .ok()
        .json();
    let seqs = |page: &Value| -> Vec<u64> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!([seqs(&first), seqs(&rest)].concat(), seqs(&all));

    // --all reads every page to the newest event.
    let everything = server
        .run(&["events", "list", "--limit", "1", "--all", "-o", "json"])
        .ok()
        .json();
    let paths: Vec<&str> = everything["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["app/evt", "app/evt", "app/evt", "other/evt"]);

    let bad = server
        .run(&["events", "list", "--types", "secret.peeked"])
        .failed_with(2);
    assert!(bad.stderr.contains("unknown event type"), "{bad:#?}");
}

#[test]
fn events_tail_replays_from_a_position_then_follows_live() {
    let server = Server::start(&[]);
    server
        .run(&["secrets", "write", "tail/a", "--data", "k=1"])
        .ok();
    let start = server
        .run(&["events", "list", "--path-prefix", "tail/", "-o", "json"])
        .ok()
        .json()["last_seq"]
        .as_u64()
        .unwrap();
    // Started from a position, `tail` replays what came after it and then follows the
    // stream; whichever way the next write reaches it, it prints it once.
    let after = start.to_string();
    let tail = std::thread::scope(|scope| {
        let tail = scope.spawn(|| {
            server.run(&[
                "events",
                "tail",
                "--path-prefix",
                "tail/",
                "--after",
                &after,
                "--count",
                "2",
                "-o",
                "json",
            ])
        });
        server
            .run(&["secrets", "write", "tail/b", "--data", "k=2"])
            .ok();
        server
            .run(&["secrets", "write", "tail/b", "--data", "k=3"])
            .ok();
        tail.join().unwrap()
    })
    .ok();
    let events: Vec<Value> = tail
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [("secret.created", 1), ("secret.updated", 2)],
        "{tail:#?}"
    );
    assert!(events.iter().all(|e| e["path"] == "tail/b"));
    assert!(!tail.stdout.contains("k=2"), "no values");

    // The table form: one line per event.
    let line = server
        .run(&[
            "events",
            "tail",
            "--path-prefix",
            "tail/",
            "--after",
            "0",
            "--count",
            "1",
        ])
        .ok();
    assert!(
        line.stdout.contains("secret.created tail/a v1 by root"),
        "{line:#?}"
    );
}
