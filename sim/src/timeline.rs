//! A picture of one run: a self-contained HTML page whose script draws an
//! SVG timeline from the run's trace and history — a lane per server (its
//! role and term, when it was down, paused or cut off, its commits, and
//! every event that names it), the network's faults, the cluster's events
//! (membership changes, transfers, snapshots, lulls, the final heal), one
//! lane per client (each operation, by outcome) and the verdict, marked at
//! the end for a failing run. Nothing is fetched: the data rides in the
//! page as JSON.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::history::History;
use crate::run::Verdict;

/// Commits are drawn as counts over buckets of this many nanoseconds.
const COMMIT_BUCKET_NS: u64 = 100_000_000;

/// What the page draws, in the form its script reads.
#[derive(Debug, Default)]
pub struct Model {
    /// Lanes top to bottom: (id, label).
    pub lanes: Vec<(String, String)>,
    /// Intervals: (lane, from ns, to ns, class, label).
    pub spans: Vec<(String, u64, u64, &'static str, String)>,
    /// Instants: (lane, ns, class, label).
    pub marks: Vec<(String, u64, &'static str, String)>,
    /// Commits: (lane, bucket start ns, entries applied).
    pub commits: Vec<(String, u64, u64)>,
    /// The end of the run, in nanoseconds.
    pub end_ns: u64,
}

fn node_lane(id: u64) -> String {
    format!("s{id}")
}

/// An event's fields without its name and time, as its label.
fn label(event: &Value) -> String {
    let mut fields = event.clone();
    if let Some(map) = fields.as_object_mut() {
        map.remove("t_ns");
        let name = map.remove("event");
        let rest = Value::Object(map.clone()).to_string();
        return format!(
            "{} {rest}",
            name.and_then(|n| n.as_str().map(String::from))
                .unwrap_or_default()
        );
    }
    fields.to_string()
}

fn ids(value: Option<&Value>) -> Vec<u64> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// An interval open on a lane: since when, its class and label.
type Open = (u64, &'static str, String);

/// Builds the model from a run's trace events (in time order), its client
/// history, its verdict and its simulated length.
pub fn model(events: &[Value], history: &History, verdict: &Verdict, end_ns: u64) -> Model {
    let mut m = Model {
        end_ns,
        ..Model::default()
    };
    let mut nodes: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "started")
        .filter_map(|e| e["node"].as_u64())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    for &n in &nodes {
        m.lanes.push((node_lane(n), format!("server {n}")));
    }
    m.lanes.push(("net".into(), "network".into()));
    m.lanes.push(("cluster".into(), "cluster".into()));
    // Per lane: the role it holds and the fault it is under.
    let mut role: BTreeMap<String, Open> = BTreeMap::new();
    let mut fault: BTreeMap<String, Open> = BTreeMap::new();
    let mut net: Vec<Open> = Vec::new();
    let mut commits: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let close = |m: &mut Model, open: &mut BTreeMap<String, Open>, lane: &str, t: u64| {
        if let Some((from, class, text)) = open.remove(lane) {
            m.spans.push((lane.to_string(), from, t, class, text));
        }
    };
    for e in events {
        let t = e["t_ns"].as_u64().unwrap_or(0);
        let name = e["event"].as_str().unwrap_or("");
        let lane = e["node"].as_u64().map(node_lane);
        match (name, &lane) {
            ("lead", Some(lane)) => {
                close(&mut m, &mut role, lane, t);
                let text = format!("leader, term {}", e["term"]);
                role.insert(lane.clone(), (t, "leader", text));
            }
            ("follow", Some(lane)) => {
                close(&mut m, &mut role, lane, t);
                let text = format!("follows {} in term {}", e["leader"], e["term"]);
                role.insert(lane.clone(), (t, "follower", text));
            }
            ("lead_stop" | "follow_stop", Some(lane)) => close(&mut m, &mut role, lane, t),
            ("commit", Some(lane)) => {
                let n = e["n"].as_u64().unwrap_or(1);
                *commits
                    .entry((lane.clone(), t / COMMIT_BUCKET_NS * COMMIT_BUCKET_NS))
                    .or_default() += n;
            }
            ("kill" | "kill_process" | "pause", Some(lane)) => {
                close(&mut m, &mut role, lane, t);
                close(&mut m, &mut fault, lane, t);
                let class = if name == "pause" { "paused" } else { "down" };
                fault.insert(lane.clone(), (t, class, label(e)));
                m.marks.push((lane.clone(), t, "fault", label(e)));
            }
            ("started" | "resume", Some(lane)) => {
                close(&mut m, &mut fault, lane, t);
                m.marks.push((lane.clone(), t, "event", label(e)));
            }
            ("storage_refused" | "group_error", Some(lane)) => {
                close(&mut m, &mut fault, lane, t);
                fault.insert(lane.clone(), (t, "down", label(e)));
                m.marks.push((lane.clone(), t, "fault", label(e)));
            }
            ("partition" | "blackhole" | "bridge" | "clog_link" | "slow_network", _) => {
                net.push((t, "net", label(e)));
                let cut = match name {
                    "bridge" => ids(e.get("left")),
                    _ => ids(e.get("side")),
                };
                for n in cut {
                    let lane = node_lane(n);
                    fault.entry(lane).or_insert_with(|| (t, "cut", label(e)));
                }
            }
            ("heal_network" | "heal_all", _) => {
                for (from, class, text) in net.drain(..) {
                    m.spans.push(("net".into(), from, t, class, text));
                }
                let cut: Vec<String> = fault
                    .iter()
                    .filter(|(_, open)| open.1 == "cut")
                    .map(|(lane, _)| lane.clone())
                    .collect();
                for lane in cut {
                    close(&mut m, &mut fault, &lane, t);
                }
                m.marks.push(("cluster".into(), t, "heal", label(e)));
            }
            ("inject_sync_error" | "flip_bit" | "cut_power", Some(lane)) => {
                m.marks.push((lane.clone(), t, "fault", label(e)));
            }
            (_, Some(lane)) => m.marks.push((lane.clone(), t, "event", label(e))),
            (_, None) => m.marks.push(("cluster".into(), t, "event", label(e))),
        }
    }
    for (lane, (from, class, text)) in role.into_iter().chain(fault) {
        m.spans.push((lane, from, end_ns, class, text));
    }
    for (from, class, text) in net {
        m.spans.push(("net".into(), from, end_ns, class, text));
    }
    m.commits = commits
        .into_iter()
        .map(|((lane, at), n)| (lane, at, n))
        .collect();
    let mut clients: Vec<u64> = history.records().iter().map(|r| r.client).collect();
    clients.sort_unstable();
    clients.dedup();
    for c in clients {
        m.lanes.push((format!("c{c}"), format!("client {c}")));
    }
    for r in history.records() {
        let class = match r.outcome.name() {
            "ok" => "ok",
            "fail" => "failed",
            _ => "unknown",
        };
        let text = format!(
            "client {} {} {} {:?}: {}",
            r.client,
            r.operation.name(),
            r.key,
            r.operation,
            r.outcome.name()
        );
        let to = r.complete_ns.unwrap_or(end_ns).max(r.invoke_ns + 1);
        m.spans
            .push((format!("c{}", r.client), r.invoke_ns, to, class, text));
    }
    m.lanes.push(("verdict".into(), "verdict".into()));
    match verdict {
        Verdict::Pass => m
            .marks
            .push(("verdict".into(), end_ns, "pass", "pass".into())),
        Verdict::Liveness(reason) => m.marks.push((
            "verdict".into(),
            end_ns,
            "violation",
            format!("liveness: {reason}"),
        )),
        Verdict::Correctness(violations) => {
            for v in violations {
                m.marks
                    .push(("verdict".into(), end_ns, "violation", format!("{v:?}")));
            }
        }
    }
    m
}

/// The page: a title, the verdict, and the model for the script to draw.
pub fn render(title: &str, model: &Model) -> String {
    let data = json!({
        "title": title,
        "end": model.end_ns,
        "bucket": COMMIT_BUCKET_NS,
        "lanes": model.lanes,
        "spans": model.spans,
        "marks": model.marks,
        "commits": model.commits,
    });
    // `</` inside the JSON must not end the script element.
    let data = data.to_string().replace("</", "<\\/");
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{STYLE}</style></head>\n<body><h1>{title}</h1>\n{LEGEND}\n<p id=\"verdict\"></p><div id=\"timeline\"></div><p id=\"detail\">hover or click an item for its details</p>\n<script type=\"application/json\" id=\"data\">{data}</script>\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
}

const STYLE: &str = include_str!("timeline.css");
const LEGEND: &str = "<p class=\"legend\"><span class=\"key leader\">leader</span><span class=\"key follower\">follower</span><span class=\"key down\">down</span><span class=\"key paused\">paused</span><span class=\"key cut\">cut off / network fault</span><span class=\"key commits\">entries applied</span><span class=\"key ok\">op ok</span><span class=\"key failed\">op failed</span><span class=\"key unknown\">op outcome unknown</span><span class=\"key fault\">fault</span><span class=\"key violation\">violation</span></p>";
const SCRIPT: &str = include_str!("timeline.js");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Violation;

    fn events(lines: &[&str]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    #[test]
    fn roles_faults_and_the_verdict_become_spans_and_marks() {
        let trace = events(&[
            r#"{"t_ns":1,"event":"started","node":1}"#,
            r#"{"t_ns":1,"event":"started","node":2}"#,
            r#"{"t_ns":10,"event":"lead","node":1,"term":2}"#,
            r#"{"t_ns":20,"event":"partition","side":[1]}"#,
            r#"{"t_ns":30,"event":"kill","node":2}"#,
            r#"{"t_ns":40,"event":"heal_network"}"#,
            r#"{"t_ns":50,"event":"started","node":2}"#,
            r#"{"t_ns":60,"event":"commit","node":1,"through":"2.5","n":3}"#,
        ]);
        let verdict = Verdict::Correctness(vec![Violation::LostAcknowledgedWrite { op: 7 }]);
        let m = model(&trace, &History::new(), &verdict, 100);
        let lanes: Vec<&str> = m.lanes.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(lanes, ["s1", "s2", "net", "cluster", "verdict"]);
        let span = |lane: &str, class: &str| {
            m.spans
                .iter()
                .find(|s| s.0 == lane && s.3 == class)
                .map(|s| (s.1, s.2))
        };
        assert_eq!(span("s1", "leader"), Some((10, 100)));
        assert_eq!(span("s1", "cut"), Some((20, 40)));
        assert_eq!(span("s2", "down"), Some((30, 50)));
        assert_eq!(span("net", "net"), Some((20, 40)));
        assert_eq!(m.commits, [("s1".to_string(), 0, 3)]);
        assert!(m.marks.iter().any(|k| k.0 == "verdict"
            && k.2 == "violation"
            && k.3.contains("LostAcknowledgedWrite")));
        let page = render("seed 1 <x>", &m);
        assert!(page.contains("seed 1 &lt;x&gt;") && !page.contains("\"</"));
    }
}
