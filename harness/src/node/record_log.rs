//! The node's record log: first deliveries and sealed timeline steps written to a file as
//! they happen (through a buffer), so that a node's memory stays flat however long the
//! run. The controller reads the file when the node reports; the format is the core's
//! ([`stackbench_core::record_log`]).

use anyhow::{Context, Result};
use stackbench_core::record_log::{push_delivery_line, push_step_line, Delivery, Logged};
use std::{
    fs::File,
    io::{BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Bytes buffered between writes.
const BUFFER: usize = 64 << 10;

pub struct RecordLog {
    out: BufWriter<File>,
    path: PathBuf,
    written: Logged,
    /// The line being written, kept to be reused.
    line: String,
    /// The first write that failed; reported when the log is finished.
    failed: Option<std::io::Error>,
}

impl RecordLog {
    /// A new, empty log at `path`, readable by its owner only. A process started again
    /// after a crash starts the file afresh: a report covers the process's own life.
    pub fn create(path: &Path) -> Result<RecordLog> {
        // Made anew, not truncated: an existing file would keep its mode.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the old {}", path.display()))
            }
            _ => {}
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating the record log {}", path.display()))?;
        Ok(RecordLog::over(file, path))
    }

    fn over(file: File, path: &Path) -> RecordLog {
        RecordLog {
            out: BufWriter::with_capacity(BUFFER, file),
            path: path.to_owned(),
            written: Logged::default(),
            line: String::with_capacity(128),
            failed: None,
        }
    }

    /// Writes out the line in `self.line`; false if the log has failed.
    fn write_line(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.out.write_all(self.line.as_bytes()) {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    pub fn delivery(&mut self, d: &Delivery) {
        self.line.clear();
        push_delivery_line(&mut self.line, d);
        if self.write_line() {
            self.written.deliveries += 1;
        }
    }

    /// A sealed step of `class`'s timeline.
    pub fn step(&mut self, class: u8, step: usize, encoded: &str) {
        self.line.clear();
        push_step_line(&mut self.line, class, step as u32, encoded);
        if self.write_line() {
            self.written.timeline_steps += 1;
        }
    }

    /// Writes out what is buffered; returns how many records of each kind the file holds.
    pub fn finish(&mut self) -> Result<Logged> {
        let path = self.path.display();
        if let Some(e) = self.failed.take() {
            return Err(e).with_context(|| format!("writing the record log {path}"));
        }
        self.out
            .flush()
            .with_context(|| format!("writing the record log {path}"))?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackbench_core::control::{ClassCounters, NodeReport};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_log_holds_what_was_written_and_is_its_owners_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("n0.records");
        std::fs::write(&path, b"an earlier life's records").expect("writes");
        let mut log = RecordLog::create(&path).expect("creates");
        let ds: Vec<Delivery> = (0..5000u64).map(|s| (3, 1, s, s * 7)).collect();
        for d in &ds {
            log.delivery(d);
        }
        log.step(1, 12, "HISTFAAA");
        let logged = log.finish().expect("flushes");
        assert_eq!(
            logged,
            Logged {
                deliveries: 5000,
                timeline_steps: 1
            }
        );
        let text = std::fs::read_to_string(&path).expect("reads");
        let mut r = NodeReport {
            classes: vec![ClassCounters::default(); 2],
            ..Default::default()
        };
        stackbench_core::record_log::restore(&text, logged, &mut r)
            .expect("the earlier life's bytes are gone");
        assert_eq!(r.deliveries, ds);
        assert_eq!(r.classes[1].timeline_sealed, vec![(12, "HISTFAAA".into())]);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_full_disk_is_an_error_naming_the_log() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("Linux has /dev/full");
        let mut log = RecordLog::over(file, Path::new("/dev/full"));
        for s in 0..10_000 {
            log.delivery(&(0, 0, s, 1));
        }
        let e = format!("{:#}", log.finish().expect_err("the disk is full"));
        assert!(e.contains("writing the record log /dev/full"), "{e}");
        assert!(e.contains("No space left"), "{e}");
    }
}
