//! The design review: one document over the runs of a suite (LAN, WANs, loss, congestion,
//! networks of 64 and 1 000 nodes, churn, crashes, upgrades, bulk, kernel WireGuard in a
//! VM) that answers each of the seed's questions with a sentence first, then its numbers
//! with 95% intervals, then the conditions under which the answer changes. Every number
//! in it is read from the runs; a question whose runs are missing says which to add.

mod context;
mod facts;
mod latency;
mod matrix;
mod operations;
mod render;

use crate::{summary, LoadedRun, ReportError};
use std::path::{Path, PathBuf};

/// What a run contributes to the review, from its scenario's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Lan,
    WanContinental,
    WanIntercontinental,
    Lossy,
    Congested,
    Gossip64,
    Regions64,
    Gossip1000,
    Churn,
    Crash,
    Upgrade,
    Bulk,
    /// Kernel WireGuard beside the userspace stacks, inside a VM.
    KernelVm,
    /// A run the review does not place; listed, not used.
    Other,
}

impl Role {
    /// Every role the suite fills, in the review's order, with the scenario that fills it.
    pub const SUITE: [(Role, &'static str); 13] = [
        (Role::Lan, "lan"),
        (Role::WanContinental, "wan-continental"),
        (Role::WanIntercontinental, "wan-intercontinental"),
        (Role::Lossy, "lossy"),
        (Role::Congested, "congested"),
        (Role::Gossip64, "gossip-64"),
        (Role::Regions64, "regions-64"),
        (Role::Gossip1000, "gossip-1000"),
        (Role::Churn, "churn"),
        (Role::Crash, "crash"),
        (Role::Upgrade, "upgrade"),
        (Role::Bulk, "bulk-goodput"),
        (Role::KernelVm, "quick-vm"),
    ];

    /// The role of a run of scenario `name`; a simulated or VM run by how it ran.
    pub fn of(run: &LoadedRun) -> Role {
        let name = run.manifest.scenario.as_str();
        if run.manifest.simulated_network.is_some() {
            // Only the 1 000-node network is the review's Shadow part; a simulated run of
            // a namespace scenario (a cross-validation) is not.
            return match name {
                "gossip-1000" => Role::Gossip1000,
                _ => Role::Other,
            };
        }
        if name.ends_with("-vm") {
            return Role::KernelVm;
        }
        match name {
            "lan" | "quick" | "compare-stacks" | "idle-latency" => Role::Lan,
            "wan-continental" => Role::WanContinental,
            "wan-intercontinental" => Role::WanIntercontinental,
            "lossy" => Role::Lossy,
            "congested" | "constrained" | "constrained-equal" => Role::Congested,
            "gossip-64" => Role::Gossip64,
            "regions-64" | "regions-8" => Role::Regions64,
            "churn" | "rekey" => Role::Churn,
            "crash" => Role::Crash,
            "upgrade" | "mixed" => Role::Upgrade,
            "bulk-goodput" | "inproc-ceiling" => Role::Bulk,
            _ => Role::Other,
        }
    }

    /// The suite's scenario for the role ("other" for none): a short id for file names.
    pub fn scenario(self) -> &'static str {
        Role::SUITE
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("other", |(_, s)| s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Role::Lan => "LAN",
            Role::WanContinental => "continental WAN",
            Role::WanIntercontinental => "intercontinental WAN",
            Role::Lossy => "lossy WAN",
            Role::Congested => "congested uplink",
            Role::Gossip64 => "gossip, 64 nodes",
            Role::Regions64 => "four regions, 64 nodes",
            Role::Gossip1000 => "gossip, 1 000 nodes (Shadow)",
            Role::Churn => "churn",
            Role::Crash => "crashes",
            Role::Upgrade => "upgrade while live",
            Role::Bulk => "bulk goodput",
            Role::KernelVm => "kernel WireGuard (VM)",
            Role::Other => "other",
        }
    }
}

/// The runs of a review, each with its role; a role filled twice uses the newest run.
pub struct Inputs {
    pub runs: Vec<(PathBuf, Role, LoadedRun)>,
}

impl Inputs {
    pub fn load(dirs: &[PathBuf]) -> Result<Inputs, ReportError> {
        let mut runs = dirs
            .iter()
            .map(|d| {
                let run = summary::load_run(d)?;
                Ok((d.clone(), Role::of(&run), run))
            })
            .collect::<Result<Vec<_>, ReportError>>()?;
        runs.sort_by_key(|(_, role, r)| (*role, r.manifest.started_unix));
        Ok(Inputs { runs })
    }

    /// The newest run in `role`, with its folder.
    pub fn get(&self, role: Role) -> Option<(&Path, &LoadedRun)> {
        self.runs
            .iter()
            .rev()
            .find(|(_, r, _)| *r == role)
            .map(|(d, _, run)| (d.as_path(), run))
    }

    /// Roles of the suite no run fills, with the scenario that would.
    pub fn missing(&self) -> Vec<(Role, &'static str)> {
        Role::SUITE
            .into_iter()
            .filter(|(role, _)| self.get(*role).is_none())
            .collect()
    }
}

/// One section of the review: the answer in one sentence, then the evidence, then what
/// would change the answer.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub answer: String,
    /// Prose and tables, rendered once per format.
    pub body: Vec<Block>,
    pub conditions: Vec<String>,
    /// The plots that show it, each with a short id for file names.
    pub charts: Vec<(String, crate::plots::Chart)>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    Table {
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A section of the per-run report, drawn in both formats.
    Embedded {
        md: String,
        html: String,
    },
}

/// Every section, in the review's order.
pub fn sections(inputs: &Inputs) -> Vec<Section> {
    vec![
        latency::per_class(inputs),
        latency::kernel_vs_userspace(inputs),
        operations::churn(inputs),
        operations::automation(inputs),
        operations::privileges(inputs),
        latency::double_encryption(inputs),
        latency::priority(inputs),
        operations::upgrade(inputs),
        context::network(inputs),
        matrix::section(inputs),
        context::not_measured(inputs),
        context::environment(inputs),
    ]
}

/// Writes review.md, review.html and the plots (plots/*.svg, *.png) for the runs in `dirs`
/// into `out`; returns the HTML's path. Plots that cannot be drawn (no font) are named in
/// the page's place of them, never silently dropped.
pub fn write_review(dirs: &[PathBuf], out: &Path) -> Result<PathBuf, ReportError> {
    let inputs = Inputs::load(dirs)?;
    let mut sections = sections(&inputs);
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| ReportError::Write(plots_dir.clone(), e))?;
    let font = crate::plots::init_fonts();
    let mut svgs = vec![];
    for sec in &mut sections {
        let mut problems = vec![];
        for (id, chart) in &sec.charts {
            let drawn = font.clone().and_then(|()| crate::plots::svg(chart));
            match drawn {
                Ok(svg) => {
                    let path = plots_dir.join(format!("{id}.svg"));
                    crate::write_atomic(&path, svg.as_bytes())
                        .map_err(|e| ReportError::Write(path, e))?;
                    if let Err(e) = crate::plots::png(chart, &plots_dir.join(format!("{id}.png"))) {
                        problems.push(format!("plot {id}.png not drawn: {e}"));
                    }
                    svgs.push((id.clone(), svg));
                }
                Err(e) => problems.push(format!("plot {id} not drawn: {e}")),
            }
        }
        sec.body.extend(problems.into_iter().map(Block::Text));
    }
    let md = render::markdown(&inputs, &sections);
    let md_path = out.join("review.md");
    crate::write_atomic(&md_path, md.as_bytes()).map_err(|e| ReportError::Write(md_path, e))?;
    let html = render::html(&inputs, &sections, &svgs);
    let path = out.join("review.html");
    crate::write_atomic(&path, html.as_bytes()).map_err(|e| ReportError::Write(path.clone(), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
