//! The metric names Courier's Grafana dashboard and Prometheus rules query, read from the files the chart ships,
//! so a test can check every one exists in a real `/metrics`.

use std::collections::BTreeSet;

use anyhow::Context;

use crate::tools;

/// The dashboard, relative to the workspace root.
pub const DASHBOARD: &str = "charts/courier/files/dashboards/courier.json";
/// The alert rules, relative to the workspace root.
pub const RULES: &str = "charts/courier/files/prometheus-rules.yaml";

/// Every `courier_*` and `process_*` series name in the dashboard's queries and the rules' expressions.
pub fn queried_metric_names() -> anyhow::Result<BTreeSet<String>> {
    let root = tools::workspace_root();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(DASHBOARD)).with_context(|| format!("reading {DASHBOARD}"))?,
    )
    .with_context(|| format!("{DASHBOARD} is not JSON"))?;
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .context("the dashboard has no panels")?
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let rules = std::fs::read_to_string(root.join(RULES)).with_context(|| format!("reading {RULES}"))?;
    // The rules file keeps each expression on one `expr:` line (promtool checks the file itself).
    exprs.extend(rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")).map(|e| e.trim().to_owned()));
    let mut names = BTreeSet::new();
    for expr in &exprs {
        names.extend(metric_names(expr));
    }
    anyhow::ensure!(!names.is_empty(), "no metric names found in {DASHBOARD} and {RULES}");
    Ok(names)
}

/// The `courier_*` and `process_*` identifiers of one PromQL expression (label names never start so).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
            word.clear();
            continue;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if word.starts_with("courier_") || word.starts_with("process_") {
            names.insert(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    #[test]
    fn names_not_labels_or_strings() {
        let names = metric_names(
            r#"sum by (backend) (rate(courier_mounts_total{result!="courier_fake"}[5m])) and on (instance) courier_build_info"#,
        );
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["courier_build_info", "courier_mounts_total"]);
    }
}
