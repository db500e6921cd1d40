//! Run identity, and the ownership markers that let a later run remove what a killed run
//! left behind — only runs of ours, identified by prefix and marker, whose owner is gone.

use std::os::unix::fs::PermissionsExt;
use std::{
    fs,
    path::{Path, PathBuf},
};

/// Where run markers, control sockets and topology records live.
pub const STATE_DIR: &str = "/run/stackbench";

/// One invocation's identity: `id` names results, `prefix` names namespaces and sockets.
#[derive(Debug, Clone)]
pub struct RunId {
    pub id: String,
    pub prefix: String,
    pub state_dir: PathBuf,
}

fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime), counted after the parenthesised command name.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// UTC "YYYYmmdd-HHMMSS" for a Unix time.
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A run's name: when it started (UTC) and `tag`.
fn label(tag: u32) -> String {
    format!("{}-{tag:06x}", utc_stamp(unix_now()))
}

/// A fresh run name for a run that makes no namespaces or sockets (so needs no marker).
pub fn fresh_label() -> String {
    label(rand::random::<u32>() & 0xff_ffff)
}

impl RunId {
    /// A fresh identity, with its ownership marker written.
    pub fn create() -> std::io::Result<RunId> {
        let tag: u32 = rand::random::<u32>() & 0xff_ffff;
        let run = RunId {
            id: label(tag),
            prefix: format!("sb{tag:06x}"),
            state_dir: PathBuf::from(STATE_DIR),
        };
        fs::create_dir_all(&run.state_dir)?;
        let pid = std::process::id();
        let ticks = process_start_ticks(pid).unwrap_or(0);
        fs::write(run.marker(), format!("{pid} {ticks}\n"))?;
        fs::create_dir_all(run.socket_dir())?;
        // Control sockets and the nodes' key files live here: the runner's alone.
        fs::set_permissions(run.socket_dir(), fs::Permissions::from_mode(0o700))?;
        Ok(run)
    }

    fn marker(&self) -> PathBuf {
        self.state_dir.join(format!("{}.owner", self.prefix))
    }

    /// Directory of this run's control sockets.
    pub fn socket_dir(&self) -> PathBuf {
        self.state_dir.join(&self.prefix)
    }

    /// Removes the marker and socket directory (after the topology is down).
    pub fn release(&self) {
        let _ = fs::remove_dir_all(self.socket_dir());
        let _ = fs::remove_file(self.marker());
    }
}

/// Removes the namespaces and sockets of earlier runs whose controller no longer exists.
/// Returns the prefixes cleaned.
pub fn reap_stale(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return vec![];
    };
    let mut reaped = vec![];
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(prefix) = name.strip_suffix(".owner") else {
            continue;
        };
        if !prefix.starts_with("sb") {
            continue;
        }
        let owner = fs::read_to_string(e.path()).unwrap_or_default();
        let mut f = owner.split_whitespace().map(|v| v.parse::<u64>().ok());
        let (pid, ticks) = (f.next().flatten(), f.next().flatten());
        let alive = match (pid, ticks) {
            (Some(pid), Some(ticks)) => process_start_ticks(pid as u32) == Some(ticks),
            _ => false,
        };
        if alive {
            continue;
        }
        if crate::topology::down_prefix(state_dir, prefix).is_ok() {
            let _ = fs::remove_dir_all(state_dir.join(prefix));
            let _ = fs::remove_file(e.path());
            reaped.push(prefix.to_owned());
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_541_130), "20261124-172530");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }

    #[test]
    fn own_process_start_is_readable() {
        assert!(process_start_ticks(std::process::id()).is_some());
        assert_eq!(process_start_ticks(u32::MAX), None);
    }
}
