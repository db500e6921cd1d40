//! Reads stackbench results folders and turns them into summaries for people and machines.

mod charts;
pub mod compare;
pub mod document;
pub mod hist;
mod html;
pub mod plots;
pub mod schema;
pub mod stats;
mod summary;

pub use summary::{
    incompleteness, load_run, summary_markdown, summary_table, warnings, LoadedRun, ReportError,
    CPU_SATURATED,
};

pub use document::{write_report, Report};

use std::path::Path;

/// Writes `summary.md` into a run folder and returns its text.
pub fn write_summary(run_dir: &Path) -> Result<String, ReportError> {
    let run = load_run(run_dir)?;
    let md = summary_markdown(&run);
    let path = run_dir.join("summary.md");
    let tmp = run_dir.join(".summary.md.tmp");
    std::fs::write(&tmp, &md).map_err(|e| ReportError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ReportError::Io(path, e))?;
    Ok(md)
}
