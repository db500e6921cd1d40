//! report.html: one self-contained page (inline SVG, no scripts, no external files) that
//! leads with the findings, then warnings, the A/A noise floor, the plots and the
//! environment fingerprint.

use crate::{
    compare::fmt_change,
    document::{Finding, Report},
    stats::{Estimate, Metric},
    summary,
};

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;max-width:1600px;color:#222}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:10px;font-weight:bold;font-size:16px}
.warn{color:#8a4b00}.bad{color:#b00020;font-weight:bold}.good{color:#116611;font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid svg{border:1px solid #eee}
.muted{color:#666;font-size:12px}";

fn cell(e: &Estimate, unit: &str) -> String {
    let v = |x: f64| {
        if unit == "µs" {
            summary::fmt_us(x.round() as u64)
        } else {
            format!("{x:.1}")
        }
    };
    match e.ci95 {
        Some((lo, hi)) => format!(
            "{} <span class=muted>[{}, {}]</span>",
            v(e.point),
            v(lo),
            v(hi)
        ),
        None => format!("{} <span class=muted>(n=1)</span>", v(e.point)),
    }
}

/// How a change reads for a metric: worse changes in red, better in green, when the
/// interval excludes zero.
fn change_cell(c: &Estimate, m: Metric) -> String {
    let worse = if m.lower_is_better() {
        c.point > 0.0
    } else {
        c.point < 0.0
    };
    let clear = c.ci95.is_some_and(|(lo, hi)| lo * hi > 0.0);
    let class = match (clear, worse) {
        (true, true) => "bad",
        (true, false) => "good",
        _ => "muted",
    };
    format!("<span class={class}>{}</span>", esc(&fmt_change(c)))
}

fn find<'a>(f: &'a [Finding], stack: &str, class: &str, m: Metric) -> Option<&'a Finding> {
    f.iter()
        .find(|x| x.stack == stack && x.class == class && x.metric == m)
}

fn findings_table(report: &Report, f: &[Finding]) -> String {
    let reference = report
        .reference()
        .map(|e| e.label.clone())
        .unwrap_or_default();
    let mut s = format!(
        "<p>Means over repetitions with 95% bootstrap intervals; changes are against <b>{}</b>. Latency is per (object, receiver), from intended send time to full receipt.</p>",
        esc(&reference)
    );
    s.push_str("<table><tr><th>class</th><th>stack</th><th>p50</th><th>p99</th><th>p99.9</th><th>p99 vs reference</th><th>goodput (Mbit/s)</th></tr>");
    for c in &report.classes {
        for e in &report.entries {
            let get = |m| find(f, &e.label, &c.name, m);
            let Some(p50) = get(Metric::P50) else {
                continue;
            };
            let opt = |m: Metric| {
                get(m)
                    .map(|x| cell(&x.estimate, x.unit))
                    .unwrap_or_default()
            };
            let vs = get(Metric::P99)
                .and_then(|x| x.vs_reference.as_ref())
                .map(|c| change_cell(c, Metric::P99))
                .unwrap_or_else(|| "—".into());
            s.push_str(&format!(
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{vs}</td><td>{}</td></tr>",
                esc(&c.name),
                if c.bulk { " (bulk)" } else { "" },
                esc(&e.label),
                cell(&p50.estimate, p50.unit),
                opt(Metric::P99),
                opt(Metric::P999),
                opt(Metric::Goodput),
            ));
        }
    }
    s.push_str("</table><table><tr><th>stack</th><th>CPU ms per delivered MB</th><th>vs reference</th></tr>");
    for e in &report.entries {
        if let Some(x) = find(f, &e.label, "", Metric::CpuPerMb) {
            let vs = x
                .vs_reference
                .as_ref()
                .map(|c| change_cell(c, Metric::CpuPerMb))
                .unwrap_or_else(|| "—".into());
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{vs}</td></tr>",
                esc(&e.label),
                cell(&x.estimate, x.unit)
            ));
        }
    }
    s.push_str("</table>");
    s
}

/// One sentence per class (and for CPU): which stack is best and worst, and by how much.
fn headlines(report: &Report, f: &[Finding]) -> Vec<String> {
    let mut out = vec![];
    let insecure: Vec<String> = report
        .run
        .repetitions
        .iter()
        .filter(|r| r.insecure)
        .map(|r| r.stack.clone())
        .collect();
    let rank = |class: &str, m: Metric| {
        // The insecure control is never a candidate, so it is never "best".
        let mut v: Vec<&Finding> = f
            .iter()
            .filter(|x| x.class == class && x.metric == m && !insecure.contains(&x.stack))
            .collect();
        v.sort_by(|a, b| a.estimate.point.total_cmp(&b.estimate.point));
        if !m.lower_is_better() {
            v.reverse();
        }
        v
    };
    let show = |x: &Finding| {
        if x.unit == "µs" {
            summary::fmt_us(x.estimate.point.round() as u64)
        } else {
            format!("{:.1} {}", x.estimate.point, x.unit)
        }
    };
    for c in &report.classes {
        let metrics: &[Metric] = if c.bulk {
            &[Metric::Goodput]
        } else {
            &[Metric::P50, Metric::P99]
        };
        for &m in metrics {
            let v = rank(&c.name, m);
            if let (Some(best), Some(worst)) = (v.first(), v.last()) {
                if v.len() > 1 {
                    out.push(format!(
                        "{} {}: best {} ({}), worst {} ({}, {:.1}x)",
                        c.name,
                        m.name(),
                        best.stack,
                        show(best),
                        worst.stack,
                        show(worst),
                        if m.lower_is_better() {
                            worst.estimate.point / best.estimate.point
                        } else {
                            best.estimate.point / worst.estimate.point
                        }
                    ));
                }
            }
        }
    }
    let v = rank("", Metric::CpuPerMb);
    if let (Some(best), Some(worst), true) = (v.first(), v.last(), v.len() > 1) {
        out.push(format!(
            "CPU per delivered MB: least {} ({}), most {} ({}, {:.1}x)",
            best.stack,
            show(best),
            worst.stack,
            show(worst),
            worst.estimate.point / best.estimate.point
        ));
    }
    out
}

/// The A/A comparisons saved next to a run (`aa.json`), as a noise-floor table.
fn noise_floor(report: &Report) -> Option<String> {
    let mut rows = String::new();
    for (dir, _) in &report.runs {
        let Ok(text) = std::fs::read_to_string(dir.join("aa.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for c in v["comparisons"].as_array().into_iter().flatten() {
            let ch = &c["change"];
            let ci = ch["ci95"]
                .as_array()
                .map(|a| {
                    format!(
                        "[{:+.1}%, {:+.1}%]",
                        a[0].as_f64().unwrap_or(0.0) * 100.0,
                        a[1].as_f64().unwrap_or(0.0) * 100.0
                    )
                })
                .unwrap_or_else(|| "(n=1)".into());
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:+.1}% {ci}</td></tr>",
                esc(c["stack"].as_str().unwrap_or("")),
                esc(c["class"].as_str().unwrap_or("(all)")),
                esc(c["metric"].as_str().unwrap_or("")),
                ch["point"].as_f64().unwrap_or(0.0) * 100.0
            ));
        }
    }
    (!rows.is_empty()).then(|| {
        format!("<h2>Noise floor (A/A: the same stack run twice)</h2><p>Differences between two identical runs: changes smaller than these are noise on this machine.</p><table><tr><th>stack</th><th>class</th><th>metric</th><th>change [95% CI]</th></tr>{rows}</table>")
    })
}

fn environment(report: &Report) -> String {
    let Some((dir, _)) = report.runs.first() else {
        return String::new();
    };
    let Ok(text) = std::fs::read_to_string(dir.join("env.json")) else {
        return "<p>env.json missing</p>".into();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut s = String::from("<table>");
    for key in [
        "kernel",
        "os",
        "cpu_model",
        "cpu_id",
        "cpu_features",
        "virtualization",
        "cores",
        "memory_total_kib",
        "stackbench_git_rev",
        "rustc",
        "node_runtime",
        "emulated_cpu",
    ] {
        let val = match &v[key] {
            serde_json::Value::String(x) => x.clone(),
            serde_json::Value::Null => "—".into(),
            other => other.to_string(),
        };
        s.push_str(&format!(
            "<tr><td>{key}</td><td style='text-align:left'>{}</td></tr>",
            esc(&val)
        ));
    }
    s.push_str(&format!(
        "</table><details><summary>env.json (every field)</summary><pre>{}</pre></details>",
        esc(&text)
    ));
    s
}

/// A table of plain-text cells, on one line.
pub(crate) fn table_html<H: AsRef<str>>(headers: &[H], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table><tr>");
    for x in headers {
        t.push_str(&format!("<th>{}</th>", esc(x.as_ref())));
    }
    t.push_str("</tr>");
    for r in rows {
        t.push_str("<tr>");
        for x in r {
            t.push_str(&format!("<td>{}</td>", esc(x)));
        }
        t.push_str("</tr>");
    }
    t + "</table>"
}

/// The whole page.
pub fn page(
    report: &Report,
    findings: &[Finding],
    svgs: &[(String, String)],
    problems: &[String],
) -> String {
    let m = &report.run.manifest;
    let ids: Vec<&str> = report
        .runs
        .iter()
        .map(|(_, r)| r.manifest.run_id.as_str())
        .collect();
    let mut s = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>stackbench: {}</title><style>{STYLE}</style></head><body><h1>stackbench: {}</h1><p class=muted>run {} · status {}</p>",
        esc(&m.scenario),
        esc(&m.scenario),
        esc(&ids.join(", ")),
        esc(&m.status.to_string())
    );
    for b in crate::summary::banners(m) {
        s.push_str(&format!("<div class=banner>⚠ {}</div>", esc(&b)));
    }
    s.push_str("<h2>Findings</h2><p class=muted>Best and worst among the candidate stacks (the insecure control excluded):</p><ul>");
    for h in headlines(report, findings) {
        s.push_str(&format!("<li><b>{}</b></li>", esc(&h)));
    }
    s.push_str("</ul>");
    s.push_str(&findings_table(report, findings));
    let mut warnings = summary::warnings(&report.run);
    warnings.extend(summary::incompleteness(&report.run));
    warnings.extend(problems.iter().cloned());
    if let Some(e) = &m.error {
        warnings.push(format!("run stopped early: {e}"));
    }
    s.push_str("<h2>Warnings</h2>");
    if warnings.is_empty() {
        s.push_str("<p>None: no saturated CPU, no disturbing load, no missing stack, no undelivered object.</p>");
    } else {
        s.push_str("<ul>");
        for w in warnings {
            s.push_str(&format!("<li class=warn>{}</li>", esc(&w)));
        }
        s.push_str("</ul>");
    }
    if let Some(n) = noise_floor(report) {
        s.push_str(&n);
    }
    let table = |h: &[&str], rows: &[Vec<String>]| table_html(h, rows);
    // Sections come back with each table on a line of its own; every other line is prose.
    let mut section = |title: &str, body: String| {
        s.push_str(&format!("<h2>{title}</h2>"));
        for line in body.lines() {
            if line.starts_with("<table") {
                s.push_str(line);
            } else if !line.trim().is_empty() {
                s.push_str(&format!("<p>{}</p>", esc(line.trim())));
            }
        }
    };
    if let Some(c) = &report.run.links {
        section(
            "Network",
            crate::links::section(c, &report.run.repetitions, &table),
        );
    }
    if let Some(f) = crate::floor::section(&report.run, &table) {
        section("Machine floor", f);
    }
    if let Some(c) = crate::ceiling::section(&report.run, &table) {
        section("In-process WireGuard against its crypto-bound ceiling", c);
    }
    if let Some(n) = crate::network::section(&report.run, &table) {
        section("Reach across the network", n);
    }
    if let Some(c) = crate::churn::section(&report.run, &table) {
        section("Churn", c);
    }
    if let Some(c) = crate::crash::section(&report.run, &table) {
        section("Crashes", c);
    }
    if let Some(c) = crate::resources::section(&report.run, &table) {
        section("Memory and descriptors over the run", c);
    }
    if let Some(u) = crate::upgrade::section(&report.run, &table) {
        section("Mixed stacks and upgrades", u);
    }
    s.push_str("<h2>Plots</h2>");
    for c in report
        .classes
        .iter()
        .map(|c| c.name.as_str())
        .chain(["cpu", "upgrade"])
    {
        let mine: Vec<&(String, String)> = svgs
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{c}-")))
            .collect();
        if mine.is_empty() {
            continue;
        }
        s.push_str(&format!("<h3>{}</h3><div class=grid>", esc(c)));
        for (_, svg) in mine {
            s.push_str(svg);
        }
        s.push_str("</div>");
    }
    s.push_str("<h2>Environment</h2>");
    s.push_str(&environment(report));
    s.push_str("<h2>Every repetition</h2><pre>");
    s.push_str(&esc(&summary::summary_table(&report.run)));
    s.push_str("</pre><p class=muted>Each run folder keeps raw HdrHistogram interval logs, the resolved scenario, run.json and env.json.</p></body></html>\n");
    s
}
