//! The uncompressed kernel, for a faster boot.
//!
//! Under TCG a Debian bzImage spends about 2–3 s decompressing itself (XZ, emulated) before the
//! kernel proper starts. QEMU 7.2 boots the uncompressed ELF `vmlinux` directly through its PVH
//! entry point (Debian sets CONFIG_PVH), so the harness decompresses the payload once on the
//! host and caches it. Kernels without a PVH note, or compressed with something the host cannot
//! undo, boot from the bzImage as before.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ImageError;
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::tools;

/// The compressions a bzImage payload may use that a Debian host can undo, by magic.
pub(super) const DECOMPRESSORS: &[(&[u8], &str, &str, &[&str])] = &[
    // The payload is followed by 4 bytes of size: read one stream, ignore what follows.
    (b"\xfd7zXZ\x00", "xz", "xz-utils", &["-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd", &["-dcq"]),
    (b"\x1f\x8b", "gzip", "gzip", &["-dcq"]),
];

/// Where the compressed kernel sits in a bzImage (boot protocol ≥ 2.08), or why not.
pub fn bzimage_payload(bz: &[u8]) -> Result<&[u8], String> {
    let get =
        |off: usize, n: usize| bz.get(off..off + n).ok_or_else(|| "file too short for a bzImage header".to_string());
    if get(0x202, 4)? != b"HdrS" {
        return Err("no `HdrS` boot header: not a bzImage".into());
    }
    let version = u16::from_le_bytes(get(0x206, 2)?.try_into().unwrap());
    if version < 0x208 {
        return Err(format!("boot protocol {version:#x} has no payload fields"));
    }
    let setup_sects = match get(0x1f1, 1)?[0] {
        0 => 4,
        n => n as usize,
    };
    let off = u32::from_le_bytes(get(0x248, 4)?.try_into().unwrap()) as usize;
    let len = u32::from_le_bytes(get(0x24c, 4)?.try_into().unwrap()) as usize;
    let start = (setup_sects + 1) * 512 + off;
    bz.get(start..start + len).ok_or_else(|| "payload lies outside the file".into())
}

/// Whether an ELF kernel carries the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18).
pub fn has_pvh_note(elf: &[u8]) -> bool {
    const NOTE: &[u8] = b"\x12\x00\x00\x00Xen\x00";
    elf.starts_with(b"\x7fELF")
        && elf.windows(NOTE.len()).enumerate().any(|(i, w)| w == NOTE && i >= 8 && elf[i - 8..i - 4] == [4, 0, 0, 0])
}

/// The image to boot `kernel` from: its uncompressed `vmlinux` (cached in
/// `<cache>/boot/<release>/vmlinux`) when that can be had and boots via PVH, else its bzImage.
/// The second value says which and why, for the report.
pub fn boot_image(kernel: &Kernel, cache: &Path, progress: &Progress) -> Result<(PathBuf, String), ImageError> {
    let io = |what: String| move |e| ImageError::Io { what, source: e };
    let dir = cache.join("boot").join(&kernel.release);
    let out = dir.join("vmlinux");
    let stamp_file = dir.join("vmlinux.source");
    let entry = crate::cache::vmlinux(&out);
    let meta = std::fs::metadata(&kernel.vmlinuz).map_err(io(format!("reading {}", kernel.vmlinuz.display())))?;
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs());
    let stamp = format!("{} {} {:?}\n", kernel.vmlinuz.display(), meta.len(), mtime);
    // Parallel VM tests and runs extract the same image: one does it, the others wait and
    // find it done.
    let lock = dir.join("vmlinux.lock");
    let _lock = crate::fsutil::FileLock::acquire(&lock).map_err(io(format!("locking {}", lock.display())))?;
    // The stamp names the bzImage it was made from, and a remembered fallback after it, so a
    // kernel that cannot boot uncompressed is not decompressed again on every run.
    let stored = std::fs::read_to_string(&stamp_file).ok();
    if let Some(why) = stored.as_deref().and_then(|s| s.strip_prefix(stamp.as_str())) {
        if let Some(why) = why.strip_prefix("bzImage: ") {
            return Ok((kernel.vmlinuz.clone(), format!("bzImage ({}, remembered)", why.trim_end())));
        }
        // Verified, not trusted: a truncated or emptied vmlinux is reported and made again.
        if why.is_empty() && entry.verify_for_use(progress) {
            return Ok((out, "uncompressed vmlinux via PVH (cached)".into()));
        }
    }
    // The stamp and the record go first: a crash between the writes leaves neither, so no
    // stale match.
    let _ = std::fs::remove_file(&stamp_file);
    entry.forget().map_err(io(format!("removing {}", entry.record_path().display())))?;

    let bz = std::fs::read(&kernel.vmlinuz).map_err(io(format!("reading {}", kernel.vmlinuz.display())))?;
    let fallback = |why: String| {
        // Not being able to remember only costs the next run the same check.
        let _ = crate::fsutil::write_atomic(&stamp_file, format!("{stamp}bzImage: {why}\n").as_bytes());
        Ok((kernel.vmlinuz.clone(), format!("bzImage ({why})")))
    };
    let payload = match bzimage_payload(&bz) {
        Ok(p) => p,
        Err(why) => return fallback(why),
    };
    let Some(&(_, tool, package, args)) = DECOMPRESSORS.iter().find(|(magic, ..)| payload.starts_with(magic)) else {
        return fallback("payload compression not supported for extraction".into());
    };
    let Ok(bin) = tools::require_tool(tool, package, "decompress the kernel for a faster boot") else {
        // Not remembered: installing the tool should help the very next run.
        return Ok((kernel.vmlinuz.clone(), format!("bzImage (`{tool}` (package {package}) is not installed)")));
    };
    progress.note(format!("extracting vmlinux from {} ({tool})", kernel.vmlinuz.display()));
    let elf = match decompress(&bin, args, payload) {
        Ok(elf) => elf,
        Err(why) => return fallback(why),
    };
    if !has_pvh_note(&elf) {
        return fallback("the kernel has no PVH entry point (CONFIG_PVH)".into());
    }
    crate::fsutil::write_atomic(&out, &elf).map_err(io(format!("writing {}", out.display())))?;
    entry
        .record(serde_json::json!({ "bzImage": stamp.trim_end(), "decompressed_with": tool }))
        .map_err(io(format!("recording {}", out.display())))?;
    crate::fsutil::write_atomic(&stamp_file, stamp.as_bytes())
        .map_err(io(format!("writing {}", stamp_file.display())))?;
    Ok((out, "uncompressed vmlinux via PVH".into()))
}

/// Run a decompressor over `input`; its output must be an ELF file (a kernel, a module).
pub(super) fn decompress(bin: &Path, args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    // Feed from a thread: the decompressor's output pipe would fill while we write.
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| format!("running {}: {e}", bin.display()))?;
    let _ = feeder.join();
    // gzip exits 2 for "trailing garbage ignored" (the size word after the stream).
    if !out.stdout.starts_with(b"\x7fELF") {
        return Err(format!(
            "{} did not produce an ELF: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 5 * 512];
        b[0x1f1] = 4;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(payload);
        b.extend_from_slice(&[1, 2, 3, 4]);
        b
    }

    #[test]
    fn payload_is_found_by_the_header() {
        let b = fake_bzimage(b"\xfd7zXZ\x00rest");
        assert_eq!(bzimage_payload(&b).unwrap(), b"\xfd7zXZ\x00rest");
        assert!(bzimage_payload(b"short").is_err());
        assert!(bzimage_payload(&vec![0u8; 4096]).unwrap_err().contains("HdrS"));
    }

    #[test]
    fn pvh_note_detection() {
        let mut elf = b"\x7fELF".to_vec();
        elf.extend_from_slice(&[0; 12]);
        elf.extend_from_slice(b"\x04\x00\x00\x00\x08\x00\x00\x00\x12\x00\x00\x00Xen\x00");
        assert!(has_pvh_note(&elf));
        elf[16 + 8] = 0x11;
        assert!(!has_pvh_note(&elf));
    }

    #[test]
    fn gzip_payload_round_trip() {
        let Some(gzip) = tools::find_tool("gzip") else { return };
        let elf = b"\x7fELF then the kernel".to_vec();
        let mut child = Command::new(&gzip).arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&elf).unwrap();
        let gz = child.wait_with_output().unwrap().stdout;
        let bz = fake_bzimage(&gz);
        let mut payload = bzimage_payload(&bz).unwrap().to_vec();
        payload.extend_from_slice(&[9, 9, 9, 9]); // the size word the kernel build appends
        assert_eq!(decompress(&gzip, &["-dcq"], &payload).unwrap(), elf);
    }
}
