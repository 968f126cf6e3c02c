//! `/metrics` as Prometheus reads it: the real `glint serve` after a little of everything,
//! checked by `promtool check metrics` (Debian's prometheus package, which the test command
//! installs), with the restart counter and the zero-initialised series an operator's first
//! `rate()` needs.

use loadtest::harness::{Glint, binary, random_bytes};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/workload.rs"]
mod workload;

use workload::{metric as value, scrape};

/// `promtool check metrics` of `text`: its complaints (empty when clean).
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's prometheus package (./scripts/test does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said
    } else {
        format!("exit {}: {said}", out.status)
    }
}

#[test]
fn metrics_pass_promtool_and_count_restarts_from_zero() {
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).unwrap();
    let text = scrape(&g);
    assert_eq!(promtool(&text), "", "{text}");
    for series in [
        "glint_supervisor_restarts_total{plane=\"dataplane\"} 0",
        "glint_supervisor_restarts_total{plane=\"controlplane\"} 0",
        "glint_channel_leases_reverted_total 0",
        "glint_db_image_transitions_total{from=\"saving\",to=\"queued\"} 0",
        "glint_db_jobs_done_total{kind=\"abort_upload\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing at start:\n{text}");
    }

    for process in ["supervisor", "controlplane", "dataplane"] {
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(
                text.contains(&format!("{family}{{process=\"{process}\"}}")),
                "{family} of {process} missing:\n{text}"
            );
        }
    }
    let started = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("process_start_time_seconds{process=\"dataplane\"}"))
            .unwrap_or_default()
            .to_owned()
    };
    let before = started(&text);

    // the database gauges (images by status are counted in the background)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = scrape(&g);
        if t.contains("glint_db_images{status=\"queued\"}")
            && t.contains("glint_db_pool_connections{state=\"idle\"}")
            && t.contains("glint_scrubber_runs_total{result=\"ok\"}")
            && t.contains("glint_store_image_bytes{store=\"file\"}")
            && t.contains("glint_store_free_bytes{store=\"file\"}")
            && t.lines().any(|l| {
                l.starts_with("glint_store_capacity_bytes{store=\"file\"}") && !l.ends_with(" 0")
            })
        {
            break;
        }
        assert!(Instant::now() < deadline, "database gauges missing:\n{t}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // a little of everything
    let c = reqwest::blocking::Client::new();
    let id = workload::create(&g, "m");
    let data = random_bytes(300_000);
    assert_eq!(workload::put(&g, &id, data.clone()).0, 204);
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap();
    assert!(r.bytes().unwrap() == data);
    assert_eq!(c.get(g.url("/v2/nothing")).send().unwrap().status(), 404);

    // transfers cut short count the bytes they moved
    let out = "glint_dp_transfer_bytes_total{direction=\"out\",store=\"file\"}";
    let inn = "glint_dp_transfer_bytes_total{direction=\"in\",store=\"file\"}";
    let uploads_ended = "glint_dp_transfer_size_bytes_count{route=\"upload\"}";
    let snapshot = scrape(&g);
    let big = workload::uploaded(&g, "big", 16 << 20);
    workload::download_part_of(&g, &big, 2 << 20);
    let cut = workload::create(&g, "cut");
    drop(workload::upload_part_of(&g, &cut, 8 << 20, 4 << 20));
    // one cut inside its first buffer counts too
    let short = workload::create(&g, "short");
    drop(workload::upload_part_of(&g, &short, 1 << 20, 300_000));
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let t = scrape(&g);
        let settled = t.contains("glint_dp_transfers_in_flight{route=\"download\"} 0")
            && t.contains("glint_dp_transfers_in_flight{route=\"upload\"} 0")
            && value(&t, "glint_dp_download_failures_total{side=\"client\"}") >= 1.0
            // the three uploads since the snapshot have ended (a dropped one may not have
            // started when the others are done)
            && value(&t, uploads_ended) - value(&snapshot, uploads_ended) >= 3.0;
        if settled {
            break t;
        }
        assert!(Instant::now() < deadline, "transfers did not end:\n{t}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for series in [
        "glint_dp_request_duration_seconds_count{route=\"download\",status_class=\"2xx\"}",
        "glint_dp_request_duration_seconds_count{route=\"upload\",status_class=\"2xx\"}",
        "glint_dp_request_duration_seconds_count{route=\"forward\",status_class=\"2xx\"}",
        "glint_dp_request_duration_seconds_count{route=\"forward\",status_class=\"4xx\"}",
        "glint_dp_time_to_first_byte_seconds_count{route=\"download\"}",
        "glint_dp_channel_round_trip_seconds_count{kind=\"authorize_download\"}",
        "glint_dp_channel_round_trip_seconds_count{kind=\"upload_complete\"}",
        "glint_dp_connections_limit",
        "glint_db_pool_max_connections",
        "glint_db_pool_acquire_duration_seconds_count",
    ] {
        assert!(value(&after, series) >= 1.0, "{series}:\n{after}");
    }
    assert!(after.contains("glint_db_pool_waiters "), "{after}");
    // bytes per transfer: the two downloads and two uploads since the snapshot, the cut-short
    // ones with what they moved
    let moved = |route: &str, what: &str| {
        let series = format!("glint_dp_transfer_size_bytes_{what}{{route=\"{route}\"}}");
        value(&after, &series) - value(&snapshot, &series)
    };
    assert!(moved("download", "count") >= 1.0, "{after}");
    assert!(moved("upload", "count") >= 3.0, "{after}");
    assert!(
        moved("upload", "sum") >= (16 << 20) as f64 + (4 << 20) as f64 + 300_000.0,
        "{after}"
    );
    let sent = value(&after, out) - value(&snapshot, out);
    assert!(
        sent >= (1 << 20) as f64,
        "the dropped download's bytes: {sent}"
    );
    let received = value(&after, inn) - value(&snapshot, inn);
    assert!(
        received >= (16 << 20) as f64 + (4 << 20) as f64 + 300_000.0,
        "the dropped uploads' bytes: {received}"
    );

    // the data plane killed: the restart shows, counted by the supervisor
    workload::kill_dataplane(&g);
    let text = scrape(&g);
    assert_eq!(promtool(&text), "", "{text}");
    assert!(
        text.contains("glint_supervisor_restarts_total{plane=\"dataplane\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("glint_db_image_transitions_total{from=\"saving\",to=\"active\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("glint_channel_request_duration_seconds_bucket{kind=\"authorize_upload\""),
        "{text}"
    );
    // the new data plane's start time, so its counters' return to 0 reads as a reset
    assert!(
        !started(&text).is_empty() && started(&text) != before,
        "{text}"
    );
}
