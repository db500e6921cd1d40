//! A report over one or more run folders: loading and combining them, the findings with
//! their intervals, and writing report.html, plots (SVG and PNG), summary.md and the JSON and
//! CSV exports into one folder.

use crate::{
    charts, html, plots,
    schema::RepetitionSummary,
    stats::{self, Estimate, Metric},
    summary, LoadedRun, ReportError,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One stack of one run, as the report shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The stack's name, with its run's id when several runs are combined.
    pub label: String,
    pub run_id: String,
    /// The stack's folder (repetition folders inside).
    pub dir: PathBuf,
    pub reps: u32,
}

#[derive(Debug, Clone)]
pub struct ClassInfo {
    pub name: String,
    pub priority: i32,
    pub bulk: bool,
}

/// Runs combined: every repetition relabelled with its entry's label.
#[derive(Debug)]
pub struct Report {
    pub run: LoadedRun,
    pub runs: Vec<(PathBuf, LoadedRun)>,
    pub entries: Vec<Entry>,
    pub classes: Vec<ClassInfo>,
}

/// One row of the exports: a metric of a stack (and class) with its interval.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub stack: String,
    pub class: String,
    pub metric: Metric,
    pub unit: &'static str,
    pub estimate: Estimate,
    /// Relative to the reference stack (the first, quic-tls when present), with its interval.
    pub vs_reference: Option<Estimate>,
}

/// Marks, in a combined report, the entries of a run on a simulated network.
pub const SIMULATED_MARK: &str = "shadow ";

impl Report {
    pub fn load(dirs: &[PathBuf]) -> Result<Report, ReportError> {
        let runs: Vec<(PathBuf, LoadedRun)> = dirs
            .iter()
            .map(|d| Ok((d.clone(), summary::load_run(d)?)))
            .collect::<Result<_, ReportError>>()?;
        let several = runs.len() > 1;
        let mut entries = vec![];
        let mut reps: Vec<RepetitionSummary> = vec![];
        let mut classes: Vec<ClassInfo> = vec![];
        for (dir, run) in &runs {
            for s in run
                .manifest
                .stacks
                .iter()
                .filter(|s| s.repetitions_done > 0)
            {
                let label = if several {
                    let engine = match run.manifest.simulated_network {
                        Some(_) => SIMULATED_MARK,
                        None => "",
                    };
                    format!("{} @{engine}{}", s.name, run.manifest.run_id)
                } else {
                    s.name.clone()
                };
                entries.push(Entry {
                    label: label.clone(),
                    run_id: run.manifest.run_id.clone(),
                    dir: dir.join(&s.name),
                    reps: s.repetitions_done,
                });
                for r in run.repetitions.iter().filter(|r| r.stack == s.name) {
                    for c in &r.classes {
                        if !classes.iter().any(|k| k.name == c.name) {
                            classes.push(ClassInfo {
                                name: c.name.clone(),
                                priority: c.priority,
                                bulk: c.bulk,
                            });
                        }
                    }
                    let mut r = r.clone();
                    r.stack = label.clone();
                    reps.push(r);
                }
            }
        }
        let mut manifest = runs
            .first()
            .map(|(_, r)| r.manifest.clone())
            .unwrap_or_default();
        for (_, r) in runs.iter().skip(1) {
            manifest.stacks.extend(r.manifest.stacks.iter().cloned());
            manifest.emulated_cpu = manifest.emulated_cpu.or(r.manifest.emulated_cpu.clone());
            manifest.links_not_verified = manifest
                .links_not_verified
                .or(r.manifest.links_not_verified.clone());
            manifest.simulated_network = manifest
                .simulated_network
                .or(r.manifest.simulated_network.clone());
        }
        let simulated = runs
            .iter()
            .filter(|(_, r)| r.manifest.simulated_network.is_some())
            .count();
        if several && simulated > 0 && simulated < runs.len() {
            manifest.simulated_network = manifest
                .simulated_network
                .map(|n| format!("the runs labelled @{SIMULATED_MARK}…: {n}"));
        }
        // The network section describes one run; combined runs each have their own. The
        // prediction holds for all of them when they ran the same scenario (a run in
        // namespaces beside the same scenario under Shadow).
        let (links, floor, simulation) = match runs.as_slice() {
            [(_, only)] => (
                only.links.clone(),
                only.floor.clone(),
                only.simulation.clone(),
            ),
            [(_, first), rest @ ..] => {
                let same = |r: &LoadedRun| {
                    let key = |r: &LoadedRun| {
                        r.simulation
                            .as_ref()
                            .map(|s| serde_json::to_value(&s.classes).ok())
                    };
                    key(r).is_some() && key(r) == key(first)
                };
                let shared = rest.iter().all(|(_, r)| same(r)) && same(first);
                (None, None, first.simulation.clone().filter(|_| shared))
            }
            _ => (None, None, None),
        };
        Ok(Report {
            run: LoadedRun {
                manifest,
                repetitions: reps,
                links,
                floor,
                simulation,
            },
            runs,
            entries,
            classes,
        })
    }

    /// The stack others are compared with: quic-tls when present, else the first.
    pub fn reference(&self) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.label.split(" @").next() == Some("quic-tls"))
            .or(self.entries.first())
    }

    /// Every metric of every stack and class, with intervals and the change against the
    /// reference stack.
    pub fn findings(&self) -> Vec<Finding> {
        let reference = self.reference().map(|e| e.label.clone());
        let mut out = vec![];
        for e in &self.entries {
            for m in Metric::ALL {
                let classes: Vec<String> = if m.per_class() {
                    self.classes.iter().map(|c| c.name.clone()).collect()
                } else {
                    vec![String::new()]
                };
                for class in classes {
                    let v = stats::values(&self.run, &e.label, &class, m);
                    if v.is_empty() {
                        continue;
                    }
                    let vs_reference = reference
                        .as_ref()
                        .filter(|r| **r != e.label)
                        .map(|r| stats::values(&self.run, r, &class, m))
                        .filter(|b| !b.is_empty())
                        .map(|b| stats::relative_change(&b, &v));
                    out.push(Finding {
                        stack: e.label.clone(),
                        class,
                        metric: m,
                        unit: m.unit(),
                        estimate: stats::estimate(&v),
                        vs_reference,
                    });
                }
            }
        }
        out
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    write_atomic(path, bytes).map_err(|e| ReportError::Write(path.to_owned(), e))
}

/// Writes `bytes` to `path` via a temporary file of this process's and a rename, so
/// readers never see half a file, two writers never share a temporary, and a failed write
/// (a full disk) leaves nothing behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or("file".into(), |f| f.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp~", std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The findings as CSV, one row per stack × class × metric.
pub fn csv(findings: &[Finding]) -> String {
    let mut s = String::from("stack,class,metric,unit,mean,ci95_low,ci95_high,repetitions,vs_reference,vs_reference_ci95_low,vs_reference_ci95_high\n");
    let opt = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_default();
    for f in findings {
        let e = &f.estimate;
        let r = f.vs_reference.as_ref();
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&f.stack),
            csv_field(&f.class),
            f.metric.name(),
            f.unit,
            e.point,
            opt(e.ci95.map(|c| c.0)),
            opt(e.ci95.map(|c| c.1)),
            e.n,
            opt(r.map(|r| r.point)),
            opt(r.and_then(|r| r.ci95.map(|c| c.0))),
            opt(r.and_then(|r| r.ci95.map(|c| c.1))),
        ));
    }
    s
}

/// Writes the whole report into `out`: report.html (plots inline), plots/*.svg and *.png,
/// summary.md, report.json and report.csv, and ceiling.json when the run measured in-process
/// WireGuard's crypto. Returns report.html's path.
pub fn write_report(dirs: &[PathBuf], out: &Path) -> Result<PathBuf, ReportError> {
    let report = Report::load(dirs)?;
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| ReportError::Write(plots_dir.clone(), e))?;
    let font = plots::init_fonts();
    let mut rendered = vec![];
    let mut problems = vec![];
    if let Err(e) = &font {
        problems.push(format!("plots not drawn: {e}"));
    }
    if font.is_ok() {
        for (id, chart) in charts::build(&report) {
            match plots::svg(&chart) {
                Ok(svg) => {
                    write(&plots_dir.join(format!("{id}.svg")), svg.as_bytes())?;
                    if let Err(e) = plots::png(&chart, &plots_dir.join(format!("{id}.png"))) {
                        problems.push(format!("{id}.png: {e}"));
                    }
                    rendered.push((id, svg));
                }
                Err(e) => problems.push(format!("{id}: {e}")),
            }
        }
    }
    let findings = report.findings();
    write(
        &out.join("report.json"),
        &serde_json::to_vec_pretty(&findings)
            .map_err(|e| ReportError::Parse(out.join("report.json"), e))?,
    )?;
    write(&out.join("report.csv"), csv(&findings).as_bytes())?;
    if let Some(costs) = report.run.floor.as_ref().and_then(|f| f.wireguard.as_ref()) {
        // Each in-process stack's crypto-bound ceiling; its share is goodput / ceiling.
        let rows = stackbench_core::ceiling::ceilings(&report.run.repetitions, costs);
        write(
            &out.join("ceiling.json"),
            &serde_json::to_vec_pretty(&rows)
                .map_err(|e| ReportError::Parse(out.join("ceiling.json"), e))?,
        )?;
    }
    write(
        &out.join("summary.md"),
        summary::summary_markdown(&report.run).as_bytes(),
    )?;
    let page = html::page(&report, &findings, &rendered, &problems);
    let path = out.join("report.html");
    write(&path, page.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("quic-tls"), "quic-tls");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
