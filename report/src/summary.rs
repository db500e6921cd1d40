//! The per-class summary: a Markdown table for CI and reviews, and an aligned table for
//! terminals. Both come from the same rows.

use crate::{
    links,
    schema::{LinkCheck, MachineFloor, RepetitionSummary, RunManifest, Simulation},
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("parsing {0}: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("{0}: {1}")]
    Config(PathBuf, String),
    #[error("{path}: results schema version {found}; this build reads versions {oldest} to {newest} (use the stackbench that wrote it)", oldest = crate::schema::OLDEST_READABLE_SCHEMA, newest = crate::schema::SCHEMA_VERSION)]
    Schema { path: PathBuf, found: u64 },
}

/// A run folder's manifest and every repetition summary in it.
#[derive(Debug)]
pub struct LoadedRun {
    pub manifest: RunManifest,
    pub repetitions: Vec<RepetitionSummary>,
    /// `links.json`: the links' self-check (runs from before it existed have none).
    pub links: Option<LinkCheck>,
    /// `floor.json`: the machine's own latency (runs from before it existed have none).
    pub floor: Option<MachineFloor>,
    /// `simulation.json`: the simulator's prediction for the run's network.
    pub simulation: Option<Simulation>,
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(p).map_err(|e| ReportError::Io(p.to_owned(), e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ReportError::Parse(p.to_owned(), e))?;
    // Files that carry a version must be one this build understands; older ones read with
    // their missing fields defaulted.
    if let Some(found) = value.get("schema").and_then(serde_json::Value::as_u64) {
        if !(crate::schema::OLDEST_READABLE_SCHEMA as u64..=crate::schema::SCHEMA_VERSION as u64)
            .contains(&found)
        {
            return Err(ReportError::Schema {
                path: p.to_owned(),
                found,
            });
        }
    }
    serde_json::from_value(value).map_err(|e| ReportError::Parse(p.to_owned(), e))
}

/// Several runs of one scenario as one: their repetitions pooled per stack (renumbered in
/// the order given), the first run's manifest, self-check and floor. For comparisons whose
/// repetitions ran as separate runs, interleaved with another build's.
pub fn load_pooled(dirs: &[PathBuf]) -> Result<LoadedRun, ReportError> {
    let mut runs = dirs.iter().map(|d| load_run(d));
    let mut pooled = match runs.next() {
        Some(first) => first?,
        None => {
            return Err(ReportError::Config(
                PathBuf::new(),
                "no run folder given".into(),
            ))
        }
    };
    let mut ids = vec![pooled.manifest.run_id.clone()];
    for run in runs {
        let run = run?;
        ids.push(run.manifest.run_id.clone());
        for mut r in run.repetitions {
            r.repetition = pooled
                .repetitions
                .iter()
                .filter(|x| x.stack == r.stack)
                .count() as u32;
            pooled.repetitions.push(r);
        }
    }
    pooled.manifest.run_id = ids.join("+");
    Ok(pooled)
}

pub fn load_run(dir: &Path) -> Result<LoadedRun, ReportError> {
    let manifest: RunManifest = read_json(&dir.join("run.json"))?;
    let mut repetitions = vec![];
    for s in &manifest.stacks {
        // A stack's name is a folder of the run's: nothing that reaches outside it.
        let plain = Path::new(&s.name).components().count() == 1
            && matches!(
                Path::new(&s.name).components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return Err(ReportError::Config(
                dir.join("run.json"),
                format!("stack {:?} is not a stack folder of the run", s.name),
            ));
        }
        for rep in 0..s.repetitions_done {
            repetitions.push(read_json(
                &dir.join(&s.name).join(rep.to_string()).join("summary.json"),
            )?);
        }
    }
    let optional = |name: &str| -> Result<_, ReportError> {
        let path = dir.join(name);
        Ok(if path.exists() { Some(path) } else { None })
    };
    let links = optional("links.json")?.map(|p| read_json(&p)).transpose()?;
    let floor = optional("floor.json")?.map(|p| read_json(&p)).transpose()?;
    let simulation = optional("simulation.json")?
        .map(|p| read_json(&p))
        .transpose()?;
    Ok(LoadedRun {
        manifest,
        repetitions,
        links,
        floor,
        simulation,
    })
}

const HEADERS: [&str; 12] = [
    "stack",
    "rep",
    "class",
    "prio",
    "sent",
    "delivered",
    "lost",
    "p50",
    "p99",
    "p99.9",
    "max",
    "goodput",
];

/// Microseconds as a short human string.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..=9_999 => format!("{us}µs"),
        10_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

pub(crate) fn fmt_rate(bytes_per_sec: f64) -> String {
    let mbit = bytes_per_sec * 8.0 / 1e6;
    if mbit >= 1000.0 {
        format!("{:.2}Gbit/s", mbit / 1000.0)
    } else {
        format!("{mbit:.1}Mbit/s")
    }
}

fn rows(run: &LoadedRun) -> Vec<[String; 12]> {
    let mut out = vec![];
    for r in &run.repetitions {
        let stack = if r.insecure {
            format!("{} (INSECURE control)", r.stack)
        } else {
            r.stack.clone()
        };
        for c in &r.classes {
            let l = &c.latency_us;
            out.push([
                stack.clone(),
                r.repetition.to_string(),
                if c.bulk {
                    format!("{} (bulk)", c.name)
                } else {
                    c.name.clone()
                },
                c.priority.to_string(),
                c.sent.to_string(),
                c.delivered.to_string(),
                c.lost.to_string(),
                fmt_us(l.p50),
                fmt_us(l.p99),
                fmt_us(l.p999),
                fmt_us(l.max),
                fmt_rate(c.goodput_bytes_per_sec),
            ]);
        }
    }
    out
}

/// Share of CPU above which a repetition's latencies are flagged as CPU-bound.
pub const CPU_SATURATED: f64 = 0.9;
/// Share of CPU used by others above which a repetition is flagged as disturbed.
pub(crate) const OTHER_LOAD: f64 = 0.15;

/// Warnings a reader must see next to the numbers.
pub fn warnings(run: &LoadedRun) -> Vec<String> {
    let mut w = vec![];
    for r in &run.repetitions {
        if r.cpu_busy_fraction >= CPU_SATURATED {
            w.push(format!(
                "{} rep {}: CPU {:.0}% busy; latencies include waiting for a CPU",
                r.stack,
                r.repetition,
                r.cpu_busy_fraction * 100.0
            ));
        } else if r.cpu_busy_peak_fraction >= CPU_SATURATED {
            w.push(format!(
                "{} rep {}: CPU {:.0}% busy in the busiest second ({:.0}% on average); latencies then include waiting for a CPU",
                r.stack,
                r.repetition,
                r.cpu_busy_peak_fraction * 100.0,
                r.cpu_busy_fraction * 100.0
            ));
        }
        if r.other_load_fraction >= OTHER_LOAD {
            w.push(format!(
                "{} rep {}: other work (other processes, or the hypervisor taking this virtual machine's CPUs: steal) kept {:.0}% of the host's CPU busy; latencies are disturbed, rerun on a quiet machine",
                r.stack,
                r.repetition,
                r.other_load_fraction * 100.0
            ));
        }
        let fragments: u64 = r
            .nodes
            .iter()
            .map(|n| n.transport.ip_fragments_created)
            .sum();
        if fragments > 0 {
            w.push(format!(
                "{} rep {}: {fragments} IP fragments created; the tunnel MTU sizing is wrong",
                r.stack, r.repetition
            ));
        }
        for c in r.classes.iter().filter(|c| c.not_sent_in_time > 0) {
            w.push(format!(
                "{} rep {}: the offered load is more than the nodes could generate: class {} had {} (object, receiver) pairs not sent in time (dropped more than 1 s behind schedule); the generators ran up to {} late",
                r.stack,
                r.repetition,
                c.name,
                c.not_sent_in_time,
                fmt_us(r.send_lag_us.max)
            ));
        }
        if r.insecure {
            w.push(format!(
                "{}: INSECURE control (no encryption, no authentication), not a candidate",
                r.stack
            ));
        }
        w.extend(
            r.node_errors
                .iter()
                .map(|e| format!("{} rep {}: {e}", r.stack, r.repetition)),
        );
    }
    w.extend(links::check_warnings(run.links.as_ref()));
    w.extend(links::warnings(&run.repetitions));
    w.dedup();
    w
}

/// What keeps a run from being complete: a stack that did not run or failed, a class
/// that sent nothing, objects the nodes could not send in time, or objects not delivered.
/// Empty when every stack delivered everything the scenario offered.
pub fn incompleteness(run: &LoadedRun) -> Vec<String> {
    shortfalls(run).into_iter().map(|(_, s)| s).collect()
}

/// What keeps a run from having delivered what it sent: [`incompleteness`] without the
/// objects the nodes could not send in time. A slow or emulated CPU may not generate a
/// scenario's load; that is the machine's limit, reported as a warning, while an object
/// sent and not delivered (or a stack that did not run) is the stack's failure.
pub fn undelivered(run: &LoadedRun) -> Vec<String> {
    shortfalls(run)
        .into_iter()
        .filter(|(k, _)| *k != Shortfall::NotGenerated)
        .map(|(_, s)| s)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortfall {
    /// The nodes could not offer the load in time.
    NotGenerated,
    /// A stack, a class or the run itself fell short of delivering what was sent.
    Undelivered,
}

fn shortfalls(run: &LoadedRun) -> Vec<(Shortfall, String)> {
    let mut v: Vec<_> = unavailable(run)
        .into_iter()
        .map(|s| (Shortfall::Undelivered, s))
        .collect();
    for r in &run.repetitions {
        for c in &r.classes {
            let at = format!("{} rep {}: class {}", r.stack, r.repetition, c.name);
            if c.sent == 0 {
                v.push((Shortfall::Undelivered, format!("{at} sent nothing")));
                continue;
            }
            if c.not_sent_in_time > 0 {
                v.push((
                    Shortfall::NotGenerated,
                    format!(
                        "{at}: {} (object, receiver) pairs not sent in time: the nodes could not generate the offered load",
                        c.not_sent_in_time
                    ),
                ));
            }
            if c.lost > 0 || c.delivered < c.sent {
                v.push((
                    Shortfall::Undelivered,
                    format!("{at} delivered {} of {}", c.delivered, c.sent),
                ));
            }
        }
    }
    if let Some(e) = &run.manifest.error {
        v.push((Shortfall::Undelivered, format!("run stopped early: {e}")));
    }
    v
}

/// The emulated-CPU mark as a banner line: it changes how every number below is read.
/// The marks every output of a run carries, most important first: an emulated CPU, a
/// simulated network, links not held to the scenario.
pub fn banners(m: &crate::schema::RunManifest) -> Vec<String> {
    let mut out = vec![];
    if let Some(e) = &m.emulated_cpu {
        out.push(e.replacen("emulated CPU", "EMULATED CPU", 1));
    }
    if let Some(s) = &m.simulated_network {
        out.push(format!("SIMULATED NETWORK: {s}"));
    }
    out.extend(links::unchecked_banner(m));
    out
}

fn unavailable(run: &LoadedRun) -> Vec<String> {
    run.manifest
        .stacks
        .iter()
        .filter_map(|s| match (&s.reason, &s.error) {
            (Some(r), _) => Some(format!("{}: unavailable: {r}", s.name)),
            (None, Some(e)) => Some(format!("{}: failed: {e}", s.name)),
            _ => None,
        })
        .collect()
}

const COST_HEADERS: [&str; 11] = [
    "stack",
    "rep",
    "CPU busy",
    "busiest second",
    "harness CPU",
    "node CPU",
    "RSS/node max",
    "underlay CPU",
    "softirq",
    "wire B/B",
    "1st handshake",
];

/// One row per stack and repetition: what the stack cost beyond latency.
fn cost_rows(run: &LoadedRun) -> Vec<[String; 11]> {
    run.repetitions
        .iter()
        .map(|r| {
            let node_cpu: f64 = r
                .nodes
                .iter()
                .map(|n| n.cpu_user_seconds + n.cpu_sys_seconds)
                .sum();
            [
                r.stack.clone(),
                r.repetition.to_string(),
                format!("{:.0}%", r.cpu_busy_fraction * 100.0),
                format!("{:.0}%", r.cpu_busy_peak_fraction * 100.0),
                format!("{:.0}%", r.harness_cpu_fraction * 100.0),
                format!("{node_cpu:.2}s"),
                format!(
                    "{:.1}MB",
                    r.nodes.iter().map(|n| n.max_rss_bytes).max().unwrap_or(0) as f64 / 1e6
                ),
                format!("{:.2}s", r.underlay_cpu_seconds),
                format!("{:.2}s", r.host_softirq_seconds),
                format!("{:.3}", r.wire_bytes_per_delivered_byte),
                fmt_us(r.handshake_us.p50),
            ]
        })
        .collect()
}

pub(crate) fn markdown_table<R: AsRef<[String]>>(headers: &[&str], rows: &[R]) -> String {
    let mut s = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for r in rows {
        s.push_str(&format!("| {} |\n", r.as_ref().join(" | ")));
    }
    s
}

fn text_table<const N: usize>(headers: [&str; N], rows: &[[String; N]], left: usize) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                if i < left {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut s = line(&headers.map(String::from));
    s.push('\n');
    for r in rows {
        s.push_str(&line(r));
        s.push('\n');
    }
    s
}

/// Compact Markdown: the per-class table, then stacks that did not run and why.
pub fn summary_markdown(run: &LoadedRun) -> String {
    let m = &run.manifest;
    let mut s = format!(
        "## stackbench: {} (run {}, {})\n\n",
        m.scenario, m.run_id, m.status
    );
    for b in banners(m) {
        s.push_str(&format!("> **⚠ {b}**\n\n"));
    }
    s.push_str(
        "Latency is per (object, receiver), from the intended send time to full receipt.\n\n",
    );
    s.push_str(&markdown_table(&HEADERS, &rows(run)));
    s.push_str("\nCost per stack (CPU over the whole repetition; wire bytes on the veths per delivered byte):\n\n");
    s.push_str(&markdown_table(&COST_HEADERS, &cost_rows(run)));
    if let Some(c) = &run.links {
        s.push_str("\n### Network\n\n");
        s.push_str(&links::section(c, &run.repetitions, &|h, r| {
            markdown_table(h, r)
        }));
    }
    if let Some(f) = crate::floor::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### Machine floor\n\n");
        s.push_str(&f);
    }
    if let Some(c) = crate::ceiling::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### In-process WireGuard against its crypto-bound ceiling\n\n");
        s.push_str(&c);
    }
    if let Some(n) = crate::network::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### Reach across the network\n\n");
        s.push_str(&n);
    }
    if let Some(c) = crate::churn::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### Churn\n\n");
        s.push_str(&c);
    }
    if let Some(c) = crate::crash::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### Crashes\n\n");
        s.push_str(&c);
    }
    if let Some(c) = crate::resources::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### Memory and descriptors over the run\n\n");
        s.push_str(&c);
    }
    if let Some(u) = crate::upgrade::section(run, &|h, r| markdown_table(h, r)) {
        s.push_str("\n### Mixed stacks and upgrades\n\n");
        s.push_str(&u);
    }
    let warn = warnings(run);
    if !warn.is_empty() {
        s.push_str("\n**Warnings:**\n\n");
        for x in warn {
            s.push_str(&format!("- {x}\n"));
        }
    }
    let na = unavailable(run);
    if !na.is_empty() {
        s.push_str("\n**Not measured:**\n\n");
        for n in na {
            s.push_str(&format!("- {n}\n"));
        }
    }
    if let Some(e) = &m.error {
        s.push_str(&format!("\n**Run stopped early:** {e}\n"));
    }
    s
}

/// Aligned plain-text tables for the terminal.
pub fn summary_table(run: &LoadedRun) -> String {
    let mut s = String::new();
    for b in banners(&run.manifest) {
        s.push_str(&format!("*** {b} ***\n"));
    }
    s.push_str(&text_table(HEADERS, &rows(run), 3));
    s.push('\n');
    s.push_str(&text_table(COST_HEADERS, &cost_rows(run), 2));
    if let Some(c) = &run.links {
        s.push_str(&links::terminal_line(c));
    }
    s.push_str(&crate::floor::terminal_lines(run));
    s.push_str(&crate::ceiling::terminal_lines(run));
    s.push_str(&crate::network::terminal_lines(run));
    s.push_str(&crate::churn::terminal_lines(run));
    s.push_str(&crate::crash::terminal_lines(run));
    s.push_str(&crate::upgrade::terminal_lines(run));
    for x in warnings(run) {
        s.push_str(&format!("warning: {x}\n"));
    }
    for n in unavailable(run) {
        s.push_str(&format!("not measured: {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::schema::{NodeSummary, RepetitionSummary, RunManifest};

    #[test]
    fn refuses_a_schema_it_does_not_know() {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = |schema: u32| {
            let m = RunManifest {
                schema,
                ..Default::default()
            };
            std::fs::write(
                dir.path().join("run.json"),
                serde_json::to_vec(&m).expect("plain data serializes"),
            )
            .expect("writing run.json");
            load_run(dir.path())
        };
        assert!(run(crate::schema::SCHEMA_VERSION).is_ok());
        let err = run(crate::schema::SCHEMA_VERSION + 1).expect_err("a newer schema");
        assert!(matches!(err, ReportError::Schema { .. }), "{err}");
        assert!(err.to_string().contains("run.json"), "{err}");
    }

    #[test]
    fn a_simulated_network_heads_every_summary() {
        let mut run = run_with(RepetitionSummary::default());
        assert!(!summary_markdown(&run).contains("SIMULATED"));
        run.manifest.simulated_network = Some("Shadow 3.3.0; CPU infinitely fast".into());
        let md = summary_markdown(&run);
        let at = md
            .find("SIMULATED NETWORK: Shadow 3.3.0")
            .expect("markdown banner");
        assert!(at < md.find("| stack").expect("table"), "banner first");
        assert!(summary_table(&run).starts_with("*** SIMULATED NETWORK: Shadow"));
    }

    #[test]
    fn an_emulated_cpu_heads_every_summary() {
        let mut run = run_with(RepetitionSummary::default());
        assert!(!summary_markdown(&run).contains("EMULATED"));
        run.manifest.emulated_cpu =
            Some("emulated CPU: QEMU TCG; timings are comparable only within this run".into());
        let md = summary_markdown(&run);
        let banner_at = md.find("EMULATED CPU: QEMU TCG").expect("markdown banner");
        assert!(
            banner_at < md.find("| stack").expect("table"),
            "banner before the table"
        );
        assert!(summary_table(&run).starts_with("*** EMULATED CPU: QEMU TCG"));
    }

    #[test]
    fn incompleteness_names_what_was_not_delivered() {
        let class = |sent, delivered| crate::schema::ClassSummary {
            name: "vote".into(),
            priority: 10,
            bulk: false,
            sent,
            delivered,
            lost: sent - delivered,
            ..Default::default()
        };
        let full = RepetitionSummary {
            stack: "quic-tls".into(),
            classes: vec![class(10, 10)],
            ..Default::default()
        };
        assert!(incompleteness(&run_with(full.clone())).is_empty());
        let short = RepetitionSummary {
            classes: vec![class(10, 9)],
            ..full.clone()
        };
        assert_eq!(
            incompleteness(&run_with(short)),
            ["quic-tls rep 0: class vote delivered 9 of 10"]
        );
        let silent = RepetitionSummary {
            classes: vec![class(0, 0)],
            ..full
        };
        assert!(incompleteness(&run_with(silent.clone()))[0].contains("sent nothing"));
        assert!(undelivered(&run_with(silent))[0].contains("sent nothing"));
    }

    /// Objects the nodes could not send in time make a run incomplete, but not
    /// undelivered; a class short of both is named for both.
    #[test]
    fn objects_not_sent_in_time_are_not_undelivered() {
        let class = |delivered, not_sent_in_time| crate::schema::ClassSummary {
            name: "tx".into(),
            sent: 10,
            delivered,
            lost: 10 - delivered,
            not_sent_in_time,
            ..Default::default()
        };
        let rep = |c| RepetitionSummary {
            stack: "quic-tls".into(),
            classes: vec![c],
            ..Default::default()
        };
        let slow = run_with(rep(class(10, 4)));
        assert!(incompleteness(&slow)[0].contains("4 (object, receiver) pairs not sent in time"));
        assert!(undelivered(&slow).is_empty());
        let both = run_with(rep(class(9, 4)));
        assert_eq!(incompleteness(&both).len(), 2);
        assert_eq!(
            undelivered(&both),
            ["quic-tls rep 0: class tx delivered 9 of 10"]
        );
    }

    fn run_with(r: RepetitionSummary) -> LoadedRun {
        LoadedRun {
            manifest: RunManifest::default(),
            repetitions: vec![r],
            links: None,
            floor: None,
            simulation: None,
        }
    }

    #[test]
    fn warnings_flag_what_disturbs_the_numbers() {
        let quiet = RepetitionSummary {
            stack: "quic-tls".into(),
            cpu_busy_fraction: 0.4,
            ..Default::default()
        };
        assert!(
            warnings(&run_with(quiet.clone())).is_empty(),
            "a quiet run has no warnings"
        );
        let busy = RepetitionSummary {
            cpu_busy_fraction: 0.95,
            ..quiet.clone()
        };
        assert!(warnings(&run_with(busy))[0].contains("CPU 95% busy"));
        let disturbed = RepetitionSummary {
            other_load_fraction: 0.5,
            ..quiet.clone()
        };
        assert!(warnings(&run_with(disturbed))[0].contains("steal) kept 50%"));
        let mut fragmented = quiet.clone();
        let mut node = NodeSummary::default();
        node.transport.ip_fragments_created = 3;
        fragmented.nodes.push(node);
        assert!(warnings(&run_with(fragmented))[0].contains("3 IP fragments"));
        let insecure = RepetitionSummary {
            insecure: true,
            ..quiet
        };
        assert!(warnings(&run_with(insecure))[0].contains("INSECURE"));
    }

    #[test]
    fn formats_units() {
        assert_eq!(fmt_us(75), "75µs");
        assert_eq!(fmt_us(12_345), "12.3ms");
        assert_eq!(fmt_us(2_500_000), "2.50s");
        assert_eq!(fmt_rate(125_000_000.0 * 1.5), "1.50Gbit/s");
        assert_eq!(fmt_rate(2_500_000.0), "20.0Mbit/s");
    }
}
