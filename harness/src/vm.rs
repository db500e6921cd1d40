//! `stackbench vm run`: runs a scenario inside a virtual machine booted with virtme-ng, for
//! hosts whose kernel lacks WireGuard. The VM boots a stock Debian kernel over the host's
//! filesystem, runs this same binary, and writes results into the host's results folder.
//! Without KVM the CPU is emulated, and the results say so.

use anyhow::{bail, Context, Result};
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

/// How long a KVM test boot may take before KVM is judged unusable (a working KVM boots a
/// virtme-ng kernel in a few seconds; where nested KVM is broken the boot hangs).
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
const INSTALL: &str = "as root run: scripts/setup-vm.sh";

/// Whether the VM runs on KVM or on qemu's software emulation (TCG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM if a test boot works, otherwise software emulation.
    Auto,
    Kvm,
    /// Software emulation (qemu TCG): slow, but works everywhere.
    Tcg,
}

#[derive(Debug)]
pub struct VmOptions {
    pub scenario: PathBuf,
    pub stacks: Option<Vec<String>>,
    pub out: PathBuf,
    pub repetitions: Option<u32>,
    pub unchecked_links: bool,
    pub accel: Accel,
    pub kernel: Option<PathBuf>,
    pub memory: String,
    pub cpus: u32,
    pub require: crate::reporting::Requirement,
}

/// Shell-quotes one argument for the command line the VM runs.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The kernel release of a `/boot/vmlinuz-<release>` image.
fn release_of(image: &Path) -> Option<String> {
    let name = image.file_name()?.to_str()?;
    name.strip_prefix("vmlinuz-").map(str::to_owned)
}

/// Whether the kernel `release` has WireGuard (built in or as a module that is installed).
fn has_wireguard(release: &str) -> bool {
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).unwrap_or_default();
    let module = Path::new("/lib/modules").join(release);
    config.lines().any(|l| l == "CONFIG_WIREGUARD=y")
        || (config.lines().any(|l| l == "CONFIG_WIREGUARD=m") && module.is_dir())
}

/// The newest kernel under /boot with WireGuard.
fn find_kernel() -> Result<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    images.retain(|p| release_of(p).is_some_and(|r| has_wireguard(&r)));
    images.sort();
    images.pop().with_context(|| {
        format!("no kernel image with WireGuard under /boot (looked for vmlinuz-* whose config has CONFIG_WIREGUARD); {INSTALL}")
    })
}

/// Whether a statically linked busybox is where virtme-ng looks (it builds the VM's initramfs
/// from one, and refuses a dynamically linked one).
fn static_busybox() -> bool {
    ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .any(|elf| !elf.windows(7).take(1 << 16).any(|w| w == b"ld-linu"))
}

fn require_tool(name: &str, version_arg: &str) -> Result<()> {
    match Command::new(name).arg(version_arg).output() {
        Ok(_) => Ok(()),
        Err(_) => bail!("{name} not found; {INSTALL}"),
    }
}

/// The vng command that boots `kernel` and runs `inner`.
fn vng(kernel: &Path, kvm: bool, opts: &VmOptions, rw: &Path, inner: &str) -> Command {
    let mut c = Command::new("vng");
    c.arg("--run").arg(kernel);
    if !kvm {
        c.arg("--disable-kvm");
    }
    c.args(["--memory", &opts.memory, "--cpus", &opts.cpus.to_string()])
        .arg("--rwdir")
        .arg(rw)
        .args(["--", inner]);
    c
}

/// Whether a KVM boot finishes; the reason when it does not.
fn kvm_usable(kernel: &Path, opts: &VmOptions, rw: &Path) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    let mut child = vng(kernel, true, opts, rw, "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("vng: {e}"))?;
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("a KVM test boot failed ({s})")),
            Ok(None) if t0.elapsed() > KVM_PROBE_TIMEOUT => {
                // The whole group: vng and the qemu it started.
                // SAFETY: kill has no memory-safety preconditions; the group is our child's.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!(
                    "a KVM test boot did not finish within {KVM_PROBE_TIMEOUT:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What the VM runs: make a TUN device node (virtme-ng's /dev lacks one) for the TUN stacks,
/// then this binary's `run`.
fn inner_command(exe: &Path, opts: &VmOptions, emulated: Option<&str>) -> String {
    let mut run = vec![
        quote(&exe.to_string_lossy()),
        "run".into(),
        quote(&opts.scenario.to_string_lossy()),
        "--out".into(),
        quote(&opts.out.to_string_lossy()),
        "--no-progress".into(),
    ];
    if let Some(flag) = opts.require.flag() {
        run.push(flag.into());
    }
    if opts.unchecked_links {
        run.push("--unchecked-links".into());
    }
    if let Some(n) = opts.repetitions {
        run.push(format!("--repetitions {n}"));
    }
    if let Some(s) = &opts.stacks {
        run.push("--stacks".into());
        run.push(quote(&s.join(",")));
    }
    let mark = emulated
        .map(|e| format!("export STACKBENCH_EMULATED={}; ", quote(e)))
        .unwrap_or_default();
    format!(
        "modprobe tun 2>/dev/null; modprobe sctp 2>/dev/null; [ -e /dev/net/tun ] || {{ mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }}; {mark}exec {}",
        run.join(" ")
    )
}

/// Run folders under `out` whose run.json still says "running".
fn running_runs(out: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(out) else {
        return vec![];
    };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            std::fs::read_to_string(p.join("run.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["status"] == "running")
        })
        .collect()
}

/// Marks runs the VM left "running" as interrupted: the VM stopped under them.
fn mark_interrupted(dirs: &[PathBuf], why: &str) {
    for d in dirs {
        let path = d.join("run.json");
        let Some(mut v) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            continue;
        };
        v["status"] = "interrupted".into();
        v["error"] = why.into();
        if let Ok(bytes) = serde_json::to_vec_pretty(&v) {
            let _ = crate::results::write_atomic(&path, &bytes);
        }
    }
}

/// Copies `from` to `to` on a thread until `from` closes.
fn forward(
    mut from: impl std::io::Read + Send + 'static,
    mut to: impl std::io::Write + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
    })
}

/// Boots the VM and runs the scenario in it; returns the run's exit code.
pub fn run(opts: VmOptions) -> Result<ExitCode> {
    require_tool("vng", "--version")?;
    // vng runs virtme-run by name: it must be on the PATH, not only inside a virtualenv.
    require_tool("virtme-run", "--version")?;
    require_tool("qemu-system-x86_64", "--version")?;
    if !static_busybox() {
        bail!("no statically linked busybox (virtme-ng builds the VM's initramfs from one); {INSTALL}");
    }
    let kernel = match &opts.kernel {
        Some(k) => k.clone(),
        None => find_kernel()?,
    };
    let release = release_of(&kernel).unwrap_or_else(|| kernel.display().to_string());
    let exe = std::env::current_exe().context("locating the stackbench executable")?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let out = opts.out.canonicalize()?;
    let opts = VmOptions {
        scenario: opts.scenario.canonicalize()?,
        out: out.clone(),
        ..opts
    };
    let kvm = match opts.accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => match kvm_usable(&kernel, &opts, &out) {
            Ok(()) => true,
            Err(why) => {
                eprintln!("stackbench vm: KVM unusable ({why}); using software emulation");
                false
            }
        },
    };
    let emulated =
        (!kvm).then(|| format!("qemu TCG software emulation under virtme-ng, kernel {release}"));
    eprintln!(
        "stackbench vm: booting {} with {} vCPUs and {} memory ({}); results go to {}",
        kernel.display(),
        opts.cpus,
        opts.memory,
        if kvm { "KVM" } else { "software emulation" },
        out.display()
    );
    let before = running_runs(&out);
    let t0 = Instant::now();
    let mut child = vng(
        &kernel,
        kvm,
        &opts,
        &out,
        &inner_command(&exe, &opts, emulated.as_deref()),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .context("starting vng")?;
    // qemu opens its output as a file with truncation: handed our stdout directly, it would
    // empty a log file the caller redirected us into. Copy through pipes instead.
    let forwards = [
        child.stdout.take().map(|o| forward(o, std::io::stdout())),
        child.stderr.take().map(|e| forward(e, std::io::stderr())),
    ];
    let status = child.wait().context("waiting for vng")?;
    for f in forwards.into_iter().flatten() {
        let _ = f.join();
    }
    let left: Vec<PathBuf> = running_runs(&out)
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    mark_interrupted(&left, "the VM stopped before the run finished");
    eprintln!(
        "stackbench vm: the VM exited after {:.0} s ({status})",
        t0.elapsed().as_secs_f64()
    );
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(130),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_command_quotes_paths_and_marks_emulation() {
        let opts = VmOptions {
            scenario: "/s/it's.toml".into(),
            stacks: Some(vec!["quic-tls".into(), "quic-tls+wg-kernel".into()]),
            out: "/r/runs".into(),
            repetitions: Some(2),
            unchecked_links: true,
            accel: Accel::Tcg,
            kernel: None,
            memory: "1G".into(),
            cpus: 2,
            require: crate::reporting::Requirement::Complete,
        };
        let c = inner_command(Path::new("/bin/stackbench"), &opts, Some("qemu TCG"));
        assert!(c.contains(r"run '/s/it'\''s.toml' --out '/r/runs'"), "{c}");
        assert!(c.contains("--stacks 'quic-tls,quic-tls+wg-kernel'"), "{c}");
        assert!(
            c.contains("--require-complete --unchecked-links --repetitions 2"),
            "{c}"
        );
        assert!(
            c.contains("export STACKBENCH_EMULATED='qemu TCG'; exec"),
            "{c}"
        );
        assert!(!inner_command(Path::new("/x"), &opts, None).contains("STACKBENCH_EMULATED"));
    }

    #[test]
    fn kernel_release_comes_from_the_image_name() {
        assert_eq!(
            release_of(Path::new("/boot/vmlinuz-6.1.0-56-amd64")).as_deref(),
            Some("6.1.0-56-amd64")
        );
        assert_eq!(release_of(Path::new("/boot/initrd.img-6.1")), None);
    }

    #[test]
    fn a_vm_left_running_is_marked_interrupted() {
        let dir = std::env::temp_dir().join(format!("sbvmtest{}", std::process::id()));
        let run = dir.join("run1");
        std::fs::create_dir_all(&run).expect("temp dir");
        std::fs::write(run.join("run.json"), r#"{"status":"running","run_id":"x"}"#)
            .expect("write");
        assert_eq!(running_runs(&dir), vec![run.clone()]);
        mark_interrupted(std::slice::from_ref(&run), "the VM stopped");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).expect("read"))
                .expect("json");
        assert_eq!(v["status"], "interrupted");
        assert_eq!(v["error"], "the VM stopped");
        assert!(running_runs(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
