//! A writer (and, for tests, a reader) of the `newc` cpio format the kernel unpacks as its
//! initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Written here rather than taken from a crate: the format is a 110-byte ASCII header, the
//! name and the data, each padded to 4 bytes; forty lines we can test byte for byte, with the
//! output fully deterministic (inode numbers in order, uid/gid 0, mtime 0) so an unchanged
//! image is byte-identical and a changed one is visibly so.

use std::io::{self, Write};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// Streams newc entries to `out`. Paths are given without a leading `/`; parents must be
/// written before their children (the kernel does not create missing directories).
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out, next_ino: 1, offset: 0 }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (e.g. `dev/console`, 5:1), which needs no privilege to pack.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Write the trailer and hand back the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.entry(TRAILER, 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad cpio entry name {name:?}")));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is larger than 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        // The 13 newc header fields, in order (rustfmt moved the old inline labels off their
        // fields; one per line keeps them right).
        #[rustfmt::skip]
        let fields = [
            ino,                   // c_ino
            mode,                  // c_mode
            0,                     // c_uid
            0,                     // c_gid
            nlink,                 // c_nlink
            0,                     // c_mtime (0: reproducible images)
            size,                  // c_filesize
            0,                     // c_devmajor
            0,                     // c_devminor
            rdev.0,                // c_rdevmajor
            rdev.1,                // c_rdevminor
            name.len() as u32 + 1, // c_namesize, with the NUL
            0,                     // c_check
        ];
        let mut header = String::with_capacity(110 + name.len() + 4);
        header.push_str(MAGIC);
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        header.push_str(name);
        header.push('\0');
        self.put(header.as_bytes())?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = ((4 - self.offset % 4) % 4) as usize;
        self.put(&[0u8; 3][..n])
    }
}

/// One entry read back by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Read a newc archive back (up to the trailer); `Err` with the offset of the first defect.
pub fn parse(bytes: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let align = |n: usize| (n + 3) & !3;
    loop {
        let header = bytes.get(off..off + 110).ok_or(format!("truncated header at {off}"))?;
        let header = std::str::from_utf8(header).map_err(|_| format!("non-ASCII header at {off}"))?;
        if &header[..6] != MAGIC {
            return Err(format!("bad magic at {off}"));
        }
        let field = |i: usize| {
            u32::from_str_radix(&header[6 + 8 * i..14 + 8 * i], 16).map_err(|_| format!("bad field {i} at {off}"))
        };
        let (mode, size, rmaj, rmin, namesize) =
            (field(1)?, field(6)? as usize, field(9)?, field(10)?, field(11)? as usize);
        let name_start = off + 110;
        let name = bytes.get(name_start..name_start + namesize).ok_or(format!("truncated name at {off}"))?;
        let name =
            std::str::from_utf8(&name[..namesize.saturating_sub(1)]).map_err(|_| format!("bad name at {off}"))?;
        let data_start = align(name_start + namesize);
        let data = bytes.get(data_start..data_start + size).ok_or(format!("truncated data of {name}"))?;
        if name == TRAILER {
            return Ok(out);
        }
        out.push(CpioEntry { name: name.to_string(), mode, rdev: (rmaj, rmin), data: data.to_vec() });
        off = align(data_start + size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("/init", 0o755, b"#!agent\x00binary").unwrap();
        w.dir("lib", 0o755).unwrap();
        w.file("lib/a", 0o644, b"").unwrap();
        w.file("lib/abc", 0o644, b"xyz").unwrap();
        w.symlink("lib/l", "abc").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn header_layout_is_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("init", 0o755, b"hi").unwrap();
        let b = w.finish().unwrap();
        let expected_header = "070701\
            00000001\
            000081ED\
            00000000\
            00000000\
            00000001\
            00000000\
            00000002\
            00000000\
            00000000\
            00000000\
            00000000\
            00000005\
            00000000\
            init\0";
        assert_eq!(&b[..115], expected_header.as_bytes());
        // 110 + 5 = 115 → padded to 116, then "hi" and two bytes of padding.
        assert_eq!(&b[115..120], b"\0hi\0\0");
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn round_trip_through_our_reader() {
        let b = sample();
        let entries = parse(&b).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "lib", "lib/a", "lib/abc", "lib/l"]);
        assert_eq!(entries[1].rdev, (5, 1));
        assert_eq!(entries[1].mode, S_IFCHR | 0o600);
        assert_eq!(entries[2].data, b"#!agent\x00binary");
        assert_eq!(entries[5].data, b"xyz");
        assert_eq!(entries[6].mode, S_IFLNK | 0o777);
        assert_eq!(entries[6].data, b"abc");
        assert_eq!(sample(), b, "output is deterministic");
    }

    #[test]
    fn round_trip_through_gnu_cpio() {
        let Some(cpio) = crate::tools::find_tool("cpio") else {
            eprintln!("cpio not installed; skipping the GNU cpio cross-check");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let list =
            std::process::Command::new(&cpio).args(["-i", "-t", "-v", "--quiet", "-F"]).arg(&archive).output().unwrap();
        assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
        let listing = String::from_utf8_lossy(&list.stdout);
        let names: Vec<_> = listing.lines().map(|l| l.split_whitespace().last().unwrap()).collect();
        // GNU cpio prints a symlink as `name -> target`.
        assert_eq!(names, ["dev", "dev/console", "init", "lib", "lib/a", "lib/abc", "abc"]);
        assert!(listing.lines().nth(1).unwrap().starts_with("crw-------"));
        assert!(listing.lines().nth(2).unwrap().starts_with("-rwxr-xr-x"));

        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let st = std::process::Command::new(&cpio)
            .current_dir(&out)
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        // Creating dev/console needs mknod rights; everything else must have been extracted.
        let _ = st;
        assert_eq!(std::fs::read(out.join("lib/abc")).unwrap(), b"xyz");
        assert_eq!(std::fs::read(out.join("init")).unwrap(), b"#!agent\x00binary");
        assert_eq!(std::fs::read_link(out.join("lib/l")).unwrap().to_str(), Some("abc"));
    }

    #[test]
    fn bad_names_are_refused() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
    }

    #[test]
    fn truncation_is_detected() {
        let b = sample();
        assert!(parse(&b[..b.len() - 130]).is_err());
        assert!(parse(b"070702").is_err());
    }
}
