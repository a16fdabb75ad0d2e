//! KVM or TCG: `--accel auto` takes KVM only where a KVM guest actually reaches the agent.
//!
//! On nested-virtualisation hosts /dev/kvm opens fine and the guest then hangs right after the
//! kernel decompressor, so "can open /dev/kvm" is not enough: the probe boots a real guest
//! with a short deadline. Its answer is remembered per host (hostname + host kernel) and guest
//! kernel image in `<cache>/accel-probe.json`, so only the first run pays for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Accel, Vm, VmConfig, VmError};
use crate::progress::Progress;

/// How long a KVM guest may take to reach the agent (it takes ~1–2 s where KVM works).
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

pub const CACHE_FILE: &str = "accel-probe.json";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Remembered {
    accel: Accel,
    note: String,
    /// Seconds since the epoch when the probe ran.
    probed_at: u64,
}

/// Whether /dev/kvm can be opened read-write; the reason if not.
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("cannot open /dev/kvm read-write: {e}"))
}

/// The host (name and kernel: nested KVM depends on both) and the guest kernel image.
fn host_key(vmlinuz: &Path) -> String {
    // The full path: cached images are named by release (…/6.1.0-56-amd64/vmlinux).
    let guest = vmlinuz.display();
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    format!("{} / host {} / guest {guest}", read("/proc/sys/kernel/hostname"), read("/proc/sys/kernel/osrelease"))
}

/// Resolve the requested accelerator into `Kvm` or `Tcg`, with a note for the report.
///
/// `Tcg` and `Kvm` are taken as asked (`Kvm` fails if /dev/kvm is not usable). `Auto` is TCG
/// when /dev/kvm cannot be opened; otherwise the remembered answer for this host and the
/// guest kernel image (its path), or else a probe: `probe` booted with KVM and [`KVM_PROBE_TIMEOUT`] (its
/// workdir gets a `kvm-probe` subdirectory with the probe's console).
pub fn probe_accel(
    requested: Accel,
    probe: &VmConfig,
    cache_dir: &Path,
    progress: &Progress,
) -> Result<(Accel, String), VmError> {
    match requested {
        Accel::Tcg => return Ok((Accel::Tcg, "TCG (requested)".into())),
        Accel::Kvm => {
            kvm_usable().map_err(VmError::KvmUnavailable)?;
            return Ok((Accel::Kvm, "KVM (requested)".into()));
        }
        Accel::Auto => {}
    }
    if let Err(why) = kvm_usable() {
        return Ok((Accel::Tcg, format!("TCG: {why}")));
    }
    let cache_file = cache_dir.join(CACHE_FILE);
    // Two first runs at once would both pay the probe and one would drop the other's entry.
    let lock = cache_dir.join("accel-probe.lock");
    let _lock =
        crate::fsutil::FileLock::acquire(&lock).map_err(|e| VmError::io(format!("locking {}", lock.display()), e))?;
    let key = host_key(&probe.vmlinuz);
    // Verified, not trusted: a probe file that does not match its record (or does not parse)
    // is reported, dropped and probed again.
    let entry = crate::cache::accel_probe(&cache_file);
    let read = || -> Option<BTreeMap<String, Remembered>> {
        serde_json::from_str(&std::fs::read_to_string(&cache_file).ok()?).ok()
    };
    let usable = entry.verify_or_adopt(progress, || read().is_some(), || serde_json::json!("probes of this host"));
    let mut cache: BTreeMap<String, Remembered> = usable.then(read).flatten().unwrap_or_default();
    if let Some(r) = cache.get(&key) {
        return Ok((r.accel, format!("{} (remembered from the probe in {})", r.note, cache_file.display())));
    }

    let mut cfg = probe.clone();
    cfg.accel = Accel::Kvm;
    cfg.boot_timeout = KVM_PROBE_TIMEOUT;
    cfg.workdir = probe.workdir.join("kvm-probe");
    progress.note(format!("probing KVM: booting a guest, up to {}s", KVM_PROBE_TIMEOUT.as_secs()));
    let started = Instant::now();
    let (accel, note) = match Vm::boot(&cfg) {
        Ok(vm) => {
            let t = started.elapsed();
            let _ = vm.shutdown();
            (Accel::Kvm, format!("KVM: a KVM guest reached the agent in {:.1}s", t.as_secs_f64()))
        }
        Err(e) => {
            let why = match &e {
                VmError::QemuExited { status, stderr, .. } => {
                    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
                    format!("QEMU exited ({status}): {}", last.trim())
                }
                VmError::BootTimeout { after, .. } => format!("no answer within {:.0}s", after.as_secs_f64()),
                other => other.to_string().lines().next().unwrap_or_default().to_string(),
            };
            (
                Accel::Tcg,
                format!("TCG: /dev/kvm opens but a KVM guest did not reach the agent ({why}); nested virtualisation?"),
            )
        }
    };
    progress.note(&note);
    let probed_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    cache.insert(key, Remembered { accel, note: note.clone(), probed_at });
    let json = serde_json::to_string_pretty(&cache).expect("plain data serialises");
    // Not being able to remember is not worth failing the run for: the next run probes again.
    let written = entry
        .forget()
        .and_then(|()| crate::fsutil::write_atomic(&cache_file, json.as_bytes()))
        .and_then(|()| entry.record(serde_json::json!("probes of this host")).map(drop));
    if let Err(e) = written {
        progress.note(format!(
            "could not remember the KVM probe: {}",
            crate::fsutil::describe_io_error(&e, &cache_file, Some(json.len() as u64))
        ));
    }
    Ok((accel, note))
}
