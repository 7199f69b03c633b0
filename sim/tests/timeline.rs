//! The timeline page renders in a real browser: headless Chromium runs its
//! script, and the DOM it dumps has a lane per server, the network, the
//! cluster, each client and the verdict, the run's events (a known fault),
//! and — for a failing run — the violation marked. Skips with a message
//! where no Chromium is installed, unless `OAR_REQUIRE_CHROMIUM` is set
//! (CI sets it, and installs Debian's `chromium`).
#![cfg(madsim)]

use std::path::PathBuf;
use std::process::Command;

use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::observe::Violation;
use oar_sim::options::SimOptions;
use oar_sim::run::{Verdict, run};
use oar_sim::timeline::{model, render};

fn chromium() -> Option<String> {
    let candidates = std::env::var("CHROMIUM").into_iter().chain(
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .map(|s| s.to_string()),
    );
    for candidate in candidates {
        let found = Command::new(&candidate).arg("--version").output();
        if found.is_ok_and(|o| o.status.success()) {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var_os("OAR_REQUIRE_CHROMIUM").is_none(),
        "OAR_REQUIRE_CHROMIUM is set and no chromium was found"
    );
    eprintln!("skipped: no chromium (apt-get install chromium)");
    None
}

/// The DOM Chromium holds once the page's scripts ran.
fn rendered_dom(browser: &str, page: &str, name: &str) -> String {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "oar-sim-timeline-{}-{name}.html",
        std::process::id()
    ));
    std::fs::write(&path, page).expect("write the page");
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &format!("file://{}", path.display()),
        ])
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8 DOM")
}

#[test]
fn the_timeline_renders_lanes_events_and_violations_in_chromium() {
    let Some(browser) = chromium() else { return };
    // Seed 3 (3 servers, 4 clients): server 3 loses its metadata to a bit
    // flip and its storage refuses to open.
    // The mix as it was before `lease_pause` and `fresh_leader_restart`
    // existed (their weights are drawn last, so the other kinds keep
    // theirs): the same run.
    let options = SimOptions {
        trace: true,
        fault_weights: FaultWeights::swarm(3)
            .with(FaultKind::LeasePause, 0)
            .with(FaultKind::FreshLeaderRestart, 0),
        ..SimOptions::new(3)
    };
    let output = run(&options);
    assert!(matches!(output.report.verdict, Verdict::Pass));
    let events = output.trace.events();
    let end = output.report.sim_ns;
    let page = render(
        "seed 3",
        &model(&events, &output.history, &output.report.verdict, end),
    );
    // The lanes are the script's work, not the page's markup.
    assert!(!page.contains("class=\"lane\""));
    let dom = rendered_dom(&browser, &page, "pass");
    assert!(dom.contains("data-rendered=\"10 lanes\""), "{dom:.2000}");
    for lane in ["s1", "s2", "s3", "net", "cluster", "c0", "c3", "verdict"] {
        assert!(
            dom.contains(&format!("class=\"lane\" data-lane=\"{lane}\"")),
            "no lane {lane}"
        );
    }
    assert!(dom.contains("storage_refused"), "the known fault is drawn");
    assert!(
        dom.contains("class=\"span leader\""),
        "a leader's term is drawn"
    );
    assert!(
        dom.contains("class=\"span ok\""),
        "client operations are drawn"
    );
    assert!(!dom.contains("class=\"mark violation\""));

    // The same run judged failing: the violation is marked and named.
    let verdict = Verdict::Correctness(vec![Violation::LostAcknowledgedWrite { op: 42 }]);
    let page = render(
        "seed 3 (failing)",
        &model(&events, &output.history, &verdict, end),
    );
    let dom = rendered_dom(&browser, &page, "fail");
    assert!(dom.contains("class=\"mark violation\""), "violation marked");
    assert!(
        dom.contains("<p id=\"verdict\" class=\"fail\">LostAcknowledgedWrite { op: 42 }</p>"),
        "verdict named: {}",
        dom.lines().find(|l| l.contains("verdict")).unwrap_or("")
    );
}
