//! The fleet report as one self-contained HTML page: inline CSS, inline SVG charts drawn here,
//! no script, nothing fetched. Every string taken from the registry or the audit is escaped
//! with [`escape`].

use std::fmt::Write as _;

use crate::report::{FleetReport, Rate};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#fff;border:1px solid #ddd;\
border-radius:6px;padding:.8em 1.2em;min-width:9em}.card b{display:block;font-size:1.6em}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.3em .6em;\
text-align:left;font-size:.9em}th{background:#f0f0f0}svg{background:#fff;border:1px solid #ddd}\
.card svg{display:block;margin:.3em 0}\
.CRITICAL{color:#a00;font-weight:bold}.HIGH{color:#c50}.MEDIUM{color:#a80}.LOW{color:#555}";

/// A horizontal bar chart of labelled counts.
fn bars(out: &mut String, id: &str, rows: &[(String, f64, String)]) {
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max);
    let height = 24 * rows.len().max(1) + 8;
    let _ = write!(
        out,
        "<svg id=\"{id}\" width=\"520\" height=\"{height}\" role=\"img\">"
    );
    if rows.is_empty() {
        out.push_str("<text x=\"8\" y=\"20\">no data</text>");
    }
    for (i, (label, value, shown)) in rows.iter().enumerate() {
        let y = 8 + 24 * i;
        let w = if max > 0.0 { value / max * 300.0 } else { 0.0 };
        let _ = write!(
            out,
            "<text x=\"8\" y=\"{ty}\" font-size=\"12\">{label}</text>\
             <rect x=\"160\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#4a7bd0\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{shown}</text>",
            ty = y + 13,
            label = escape(label),
            tx = 166.0 + w,
            shown = escape(shown),
        );
    }
    out.push_str("</svg>");
}

/// A gauge for a rate: a bar filled to its value.
fn gauge(out: &mut String, label: &str, rate: &Rate) {
    let value = rate.value.unwrap_or(0.0).clamp(0.0, 1.0);
    let shown = match rate.value {
        Some(v) => format!(
            "{:.1}% ({} of {})",
            v * 100.0,
            rate.numerator,
            rate.denominator
        ),
        None => String::from("n/a (0 of 0)"),
    };
    let _ = write!(
        out,
        "<div class=\"card\">{label}<svg width=\"200\" height=\"20\" role=\"img\">\
         <rect x=\"0\" y=\"2\" width=\"200\" height=\"16\" fill=\"#e4e4e4\"/>\
         <rect x=\"0\" y=\"2\" width=\"{w:.1}\" height=\"16\" fill=\"#d0704a\"/></svg>\
         <div>{shown}</div></div>",
        label = escape(label),
        w = value * 200.0,
    );
}

/// A line chart of connected devices over time.
fn line(out: &mut String, report: &FleetReport) {
    let samples = &report.connected_over_time;
    out.push_str("<svg id=\"connected-chart\" width=\"520\" height=\"160\" role=\"img\">");
    if samples.len() < 2 {
        out.push_str("<text x=\"8\" y=\"20\">fewer than two samples (a running server takes one a minute)</text>");
    } else {
        let max = samples
            .iter()
            .map(|s| s.connected)
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let (t0, t1) = (samples[0].at, samples[samples.len() - 1].at);
        let span = (t1 - t0).max(1) as f64;
        let mut points = String::new();
        for s in samples {
            let x = 40.0 + (s.at - t0) as f64 / span * 460.0;
            let y = 140.0 - s.connected as f64 / max * 120.0;
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        let _ = write!(
            out,
            "<line x1=\"40\" y1=\"140\" x2=\"500\" y2=\"140\" stroke=\"#999\"/>\
             <text x=\"4\" y=\"24\" font-size=\"11\">{max}</text><text x=\"4\" y=\"144\" font-size=\"11\">0</text>\
             <polyline fill=\"none\" stroke=\"#4a7bd0\" stroke-width=\"2\" points=\"{}\"/>",
            points.trim_end()
        );
    }
    out.push_str("</svg>");
}

/// Renders the page.
pub fn render(r: &FleetReport) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>thingkit fleet report</title><style>{CSS}</style></head><body>\
         <h1>Fleet report, account {}</h1><p>Generated at <span id=\"generated-at\">{}</span> (Unix seconds).</p>",
        escape(&r.account),
        r.generated_at
    );
    let open: u64 = r.findings.len() as u64;
    let certs: u64 = r.certificates.values().sum();
    let _ = write!(
        o,
        "<div class=\"cards\">\
         <div class=\"card\">Connected<b id=\"connected\">{} of {}</b>things</div>\
         <div class=\"card\">Certificates<b id=\"certificates\">{certs}</b></div>\
         <div class=\"card\">Policies<b id=\"policies\">{}</b></div>\
         <div class=\"card\">Open findings<b id=\"findings-count\">{open}</b></div>\
         <div class=\"card\">Active violations<b id=\"violations-count\">{}</b></div></div>",
        r.things_connected,
        r.things_registered,
        r.policies,
        r.violations.len()
    );
    o.push_str("<h2>Connected devices over time</h2>");
    line(&mut o, r);
    o.push_str("<h2>Key metrics</h2><div class=\"cards\">");
    gauge(&mut o, "Connection rate", &r.metrics.connection_rate);
    gauge(
        &mut o,
        "Firmware vulnerability rate",
        &r.metrics.firmware_vulnerability_rate,
    );
    gauge(
        &mut o,
        "Finding vulnerability rate",
        &r.metrics.finding_vulnerability_rate,
    );
    let us = |v: Option<u64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v} µs"));
    let _ = write!(
        o,
        "<div class=\"card\">Rules latency<b>{}</b>p50; p99 {}</div>\
         <div class=\"card\">Maintenance cost<b id=\"maintenance-cost\">{}</b>since start</div></div>",
        us(r.metrics.rules_latency_p50_us),
        us(r.metrics.rules_latency_p99_us),
        r.metrics
            .maintenance_cost_nano_usd
            .map_or_else(|| "n/a".to_string(), |n| format!("${:.4}", n as f64 / 1e9)),
    );
    o.push_str("<h2>Messages per account</h2>");
    let usage: Vec<(String, f64, String)> = r
        .usage
        .iter()
        .map(|u| {
            (
                u.account.clone(),
                u.messages as f64,
                match &u.bill {
                    Some(bill) => format!("{} messages, {} units, {bill}", u.messages, u.units),
                    None => format!("{} messages, {} units", u.messages, u.units),
                },
            )
        })
        .collect();
    bars(&mut o, "usage-chart", &usage);
    o.push_str("<h2>Firmware versions</h2>");
    let fw: Vec<(String, f64, String)> = r
        .firmware_versions
        .iter()
        .map(|(v, n)| (v.clone(), *n as f64, n.to_string()))
        .collect();
    bars(&mut o, "firmware-chart", &fw);
    o.push_str("<h2>Rollout progress</h2><table id=\"rollout\"><tr><th>Job</th><th>Status</th><th>Executions</th></tr>");
    for job in &r.rollout {
        let total: u64 = job.executions.values().sum();
        let mut cell = String::new();
        let mut x = 0.0_f64;
        let _ = write!(cell, "<svg width=\"300\" height=\"18\" role=\"img\">");
        for (i, (status, n)) in job.executions.iter().enumerate() {
            let w = if total > 0 {
                *n as f64 / total as f64 * 300.0
            } else {
                0.0
            };
            let color = match status.as_str() {
                "SUCCEEDED" => "#3a9a4a",
                "FAILED" | "TIMED_OUT" | "REJECTED" => "#c0392b",
                "IN_PROGRESS" => "#4a7bd0",
                _ => ["#999", "#bbb", "#777"][i % 3],
            };
            let _ = write!(
                cell,
                "<rect x=\"{x:.1}\" y=\"1\" width=\"{w:.1}\" height=\"16\" fill=\"{color}\"><title>{} {n}</title></rect>",
                escape(status)
            );
            x += w;
        }
        cell.push_str("</svg>");
        let counts: Vec<String> = job
            .executions
            .iter()
            .map(|(s, n)| format!("{} {n}", escape(s)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{cell} {}</td></tr>",
            escape(&job.job_id),
            escape(&job.status),
            counts.join(", ")
        );
    }
    o.push_str("</table>");
    o.push_str("<h2>Findings by severity</h2>");
    let sev: Vec<(String, f64, String)> = r
        .findings_by_severity
        .iter()
        .map(|(s, n)| (s.clone(), *n as f64, n.to_string()))
        .collect();
    bars(&mut o, "severity-chart", &sev);
    o.push_str("<h2>Open findings</h2><table id=\"findings\"><tr><th>Severity</th><th>Check</th><th>Resource</th><th>Reason</th></tr>");
    for f in &r.findings {
        let _ = write!(
            o,
            "<tr><td class=\"{s}\">{s}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.check),
            escape(&f.resource),
            escape(&f.reason),
            s = escape(&f.severity),
        );
    }
    o.push_str("</table><h2>Active violations</h2><table id=\"violations\"><tr><th>Thing</th><th>Profile</th><th>Behavior</th><th>Since</th></tr>");
    for v in &r.violations {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&v.thing),
            escape(&v.profile),
            escape(&v.behavior),
            v.since
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AccountUsage, ConnectedSample, FleetReport, ReportInputs, ViolationRow};

    fn inputs() -> ReportInputs {
        ReportInputs {
            now: 1_764_115_200,
            account: "123456789012".into(),
            things: vec![
                ("<script>alert(1)</script>".into(), Some("1.0<b>".into())),
                ("sensor-1".into(), Some("1.0".into())),
                ("sensor-2".into(), None),
            ],
            connected: vec!["sensor-1".into(), "not-registered".into()],
            certificate_statuses: vec!["ACTIVE".into(), "ACTIVE".into(), "REVOKED".into()],
            policies: 2,
            samples: vec![
                ConnectedSample {
                    at: 1_764_115_080,
                    connected: 0,
                },
                ConnectedSample {
                    at: 1_764_115_140,
                    connected: 1,
                },
            ],
            usage: vec![AccountUsage {
                account: "<acct>".into(),
                messages: 10,
                units: 12,
                bytes: 100,
                bill: Some("USD 0.000012".into()),
            }],
            violations: vec![ViolationRow {
                thing: "<script>x</script>".into(),
                profile: "p".into(),
                behavior: "b".into(),
                since: 1,
            }],
            vulnerable_firmware: vec!["1.0".into()],
            rollout: vec![crate::report::JobProgress {
                job_id: "fw-<2>".into(),
                status: "IN_PROGRESS".into(),
                executions: [("SUCCEEDED".to_string(), 3), ("QUEUED".to_string(), 1)]
                    .into_iter()
                    .collect(),
            }],
            ..ReportInputs::default()
        }
    }

    #[test]
    fn counts_and_metrics() {
        let r = FleetReport::build(&inputs());
        assert_eq!(r.things_registered, 3);
        assert_eq!(
            r.things_connected, 1,
            "an unregistered client is not a thing"
        );
        assert_eq!(r.certificates["ACTIVE"], 2);
        assert_eq!(r.firmware_versions["unknown"], 1);
        assert_eq!(r.metrics.firmware_vulnerability_rate.numerator, 1);
        assert_eq!(r.metrics.connection_rate.denominator, 3);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["things_connected"], 1);
        assert_eq!(json["connected_over_time"][1]["connected"], 1);
    }

    #[test]
    fn registry_strings_are_escaped() {
        let html = FleetReport::build(&inputs()).to_html();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("1.0<b>"));
        assert!(!html.contains("<acct>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("1.0&lt;b&gt;"));
        assert!(html.contains("<b id=\"connected\">1 of 3</b>"));
        assert!(html.contains("<polyline"));
        assert!(html.contains("10 messages, 12 units, USD 0.000012"));
        assert!(html.contains("fw-&lt;2&gt;") && html.contains("SUCCEEDED 3"));
        // Self-contained: nothing fetched.
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    }

    #[test]
    fn escape_covers_attribute_quotes() {
        assert_eq!(escape(r#"a"b'c&"#), "a&quot;b&#39;c&amp;");
    }
}
