//! The harness's own promises, checked without the server: the clock shim moves a
//! child's wall clock, a process's output lands in its log, a wait names what it
//! waited for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scaivault_testkit::{Process, ShiftedClock, wait_for_blocking};

fn child_epoch(clock: &ShiftedClock) -> u64 {
    let out = Command::new("date")
        .arg("+%s")
        .envs(clock.env())
        .output()
        .expect("run date");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_clock_shim_moves_a_childs_wall_clock_by_the_shift() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ShiftedClock::new(dir.path());
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = child_epoch(&clock);
    assert!(
        before.abs_diff(now()) <= 2,
        "unshifted: {before} vs {}",
        now()
    );
    clock.advance(Duration::from_secs(86_400));
    clock.advance(Duration::from_secs(3_600));
    let shifted = child_epoch(&clock);
    let expected = now() + 90_000;
    assert!(
        shifted.abs_diff(expected) <= 2,
        "shifted by a day and an hour: {shifted} vs {expected}"
    );
}

#[test]
fn a_process_output_lands_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("echo.log");
    let mut process = Process::spawn(
        "echo",
        Command::new("sh").args(["-c", "echo out; echo err >&2"]),
        &log,
    );
    let status = process.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    let logs = process.logs();
    assert!(logs.contains("out") && logs.contains("err"), "{logs}");
}

#[test]
#[should_panic(expected = "waiting for the impossible")]
fn a_wait_that_times_out_names_its_condition() {
    wait_for_blocking("the impossible", Duration::from_millis(50), || None::<()>);
}
