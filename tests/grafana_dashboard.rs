//! The Grafana dashboard in `docs/` queries only metrics the server
//! exposes, and every exposed metric has a panel: a renamed metric fails
//! here instead of leaving an empty graph.

use std::collections::BTreeSet;

use oar::runtime::METRIC_NAMES;
use serde_json::Value;

/// Every PromQL query in the dashboard: panel targets and variable queries.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `oar_*` metric names a query mentions.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("oar_") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// A histogram's series name (`_bucket`, `_sum`, `_count`) as its base name.
fn base_name(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && METRIC_NAMES.contains(&base)
        {
            return base;
        }
    }
    name
}

#[test]
fn every_dashboard_query_names_exposed_metrics_and_every_metric_has_a_panel() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    assert!(
        all.len() > 20,
        "the dashboard has its queries: {}",
        all.len()
    );
    let mut used = BTreeSet::new();
    for query in &all {
        let depth = query.chars().fold(0i32, |d, c| match c {
            '(' | '{' | '[' => d + 1,
            ')' | '}' | ']' => d - 1,
            _ => d,
        });
        assert_eq!(depth, 0, "unbalanced query: {query}");
        let names = metric_names(query);
        assert!(!names.is_empty(), "a query without an oar metric: {query}");
        for name in names {
            let base = base_name(&name);
            assert!(
                METRIC_NAMES.contains(&base),
                "{query}: {name} is not an exposed metric"
            );
            used.insert(base.to_string());
        }
    }
    let unused: Vec<_> = METRIC_NAMES
        .iter()
        .filter(|n| !used.contains(**n))
        .collect();
    assert!(unused.is_empty(), "metrics without a panel: {unused:?}");
}

#[test]
fn metric_names_are_found_in_queries() {
    assert_eq!(
        metric_names("rate(oar_a_total{x=\"oar_no\"}[1m]) / foo_oar_b + oar_c_bucket"),
        ["oar_a_total", "oar_no", "oar_c_bucket"]
    );
}
