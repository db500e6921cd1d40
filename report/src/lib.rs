//! Reads stackbench results folders and turns them into summaries, reports (HTML, plots,
//! JSON, CSV) and comparisons for people and machines. [`write_report`] writes everything.

mod ceiling;
mod charts;
mod churn;
pub mod compare;
mod crash;
pub mod document;
mod floor;
pub mod hist;
mod html;
mod links;
mod network;
pub mod plots;
mod resources;
pub mod review;
pub mod scale;
pub mod stats;
mod summary;
mod upgrade;

/// The results schema lives in the core; these are the paths readers have always used.
pub use stackbench_core::schema;
pub use stackbench_core::schema::churn as churn_schema;

pub use summary::{
    incompleteness, load_pooled, load_run, summary_markdown, summary_table, undelivered, warnings,
    LoadedRun, ReportError, CPU_SATURATED,
};

pub use document::{write_atomic, write_report, Report};
