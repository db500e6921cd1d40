//! Reads stackbench results folders and turns them into summaries, reports (HTML, plots,
//! JSON, CSV) and comparisons for people and machines. [`write_report`] writes everything.

mod charts;
mod churn;
pub mod churn_schema;
pub mod compare;
pub mod document;
mod floor;
pub mod hist;
mod html;
mod links;
pub mod plots;
pub mod schema;
pub mod stats;
mod summary;

pub use summary::{
    incompleteness, load_pooled, load_run, summary_markdown, summary_table, warnings, LoadedRun,
    ReportError, CPU_SATURATED,
};

pub use document::{write_report, Report};
