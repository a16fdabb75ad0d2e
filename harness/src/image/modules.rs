//! The kernel's own modules a guest needs (the agent channel's virtio drivers, pvpanic), with
//! their dependencies, in load order.
//!
//! Where the modules are: `Kernel::modules_dir` is `lib/modules/<release>` for a Debian package
//! (modules under `kernel/drivers/…`) and the tree itself for a build tree (modules next to
//! their sources, `drivers/…`). Paths in `modules.dep`, `modules.builtin` and the index below
//! are relative to that directory either way.
//!
//! Dependencies come from the kernel's `modules.dep` when it has one (an installed kernel, a
//! tree after `modules_install`). Neither Debian's packages nor `make modules` ship one (the
//! package's postinst runs depmod; `kmod` is not on a fresh machine): then the same graph is
//! read from each needed module's `.modinfo` `depends=`, which is what modpost records at build
//! time and depmod would have written. Nothing about the dependencies is hard-coded.
//!
//! Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`, as Debian 6.12+ may ship) are found like
//! the others and decompressed on the host when the initramfs is written
//! ([`read_module`]): a guest kernel can only load a compressed file with
//! CONFIG_MODULE_DECOMPRESS and the right finit_module flag, and the host has the tools anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::recipe::{module_key, GuestModule, GuestRecipe};
use super::ImageError;
use crate::kernel::Kernel;

/// Suffixes of module files, compressed or not.
const SUFFIXES: &[&str] = &[".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// The module name (`virtio_console`, `-` as `_`) of a module file name, if it is one.
pub fn module_name_of(file_name: &str) -> Option<String> {
    SUFFIXES.iter().rev().find_map(|s| file_name.strip_suffix(s)).filter(|n| !n.is_empty()).map(module_key)
}

/// Where dependencies are known from.
#[derive(Debug)]
enum Deps {
    /// `modules.dep`: module name → the files it needs (relative to the modules dir).
    File(BTreeMap<String, Vec<PathBuf>>),
    /// Each module's `.modinfo`.
    Modinfo,
}

/// The modules of one kernel: by name, with how to learn their dependencies.
#[derive(Debug)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// Module name → file, relative to `dir`.
    files: BTreeMap<String, PathBuf>,
    /// Names of modules built into the kernel (`modules.builtin`).
    builtin: BTreeSet<String>,
    deps: Deps,
}

impl ModuleIndex {
    /// Index the kernel's modules directory (for a build tree: the tree).
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let mut files = BTreeMap::new();
        let dep_file = dir.join("modules.dep");
        let deps = match std::fs::read_to_string(&dep_file) {
            Ok(text) => {
                let deps = parse_modules_dep(&text);
                for (path, _) in &deps {
                    if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(module_name_of) {
                        files.insert(name, path.clone());
                    }
                }
                let by_name = deps
                    .into_iter()
                    .filter_map(|(p, d)| {
                        let n = p.file_name().and_then(|n| n.to_str()).and_then(module_name_of)?;
                        Some((n, d))
                    })
                    .collect();
                Deps::File(by_name)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                walk(dir, Path::new(""), &mut files)
                    .map_err(|e| ImageError::io(format!("listing the modules in {}", dir.display()), e))?;
                Deps::Modinfo
            }
            Err(e) => return Err(ImageError::io(format!("reading {}", dep_file.display()), e)),
        };
        let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
            .map(|t| t.lines().filter_map(|l| l.rsplit('/').next()).filter_map(module_name_of).collect::<BTreeSet<_>>())
            .unwrap_or_default();
        Ok(Self { dir: dir.to_path_buf(), files, builtin, deps })
    }

    /// The file of module `name`, if the kernel has it as a module.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.files.get(&module_key(name)).map(|p| self.dir.join(p))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_key(name))
    }

    /// The modules `name` needs directly (names).
    fn direct_deps(&self, name: &str, file: &Path) -> Result<Vec<String>, ImageError> {
        match &self.deps {
            Deps::File(map) => Ok(map
                .get(name)
                .map(|d| d.iter().filter_map(|p| p.file_name()?.to_str().and_then(module_name_of)).collect())
                .unwrap_or_default()),
            Deps::Modinfo => {
                let elf = read_module(file)?;
                let bad = |why: String| ImageError::BadModule { path: file.to_path_buf(), why };
                let info = modinfo(&elf).map_err(bad)?;
                Ok(info
                    .iter()
                    .filter_map(|kv| kv.strip_prefix("depends="))
                    .flat_map(|d| d.split(','))
                    .filter(|d| !d.is_empty())
                    .map(module_key)
                    .collect())
            }
        }
    }

    /// The files to load for `wanted`, each once, every module after the modules it needs.
    /// A module built into the kernel needs no file; one that is neither a module nor built
    /// in is an error unless it is optional (then it is left out).
    pub fn resolve(&self, wanted: &[&GuestModule], kernel: &Kernel) -> Result<Vec<PathBuf>, ImageError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for m in wanted {
            let key = module_key(&m.name);
            if self.files.contains_key(&key) {
                self.visit(&key, &mut Vec::new(), &mut done, &mut order)?;
                continue;
            }
            let built_in = self.is_builtin(&key)
                || m.config.as_deref().is_some_and(|c| config_value(kernel, c).as_deref() == Some("y"));
            if built_in || m.optional {
                continue;
            }
            return Err(ImageError::MissingModule {
                release: kernel.release.clone(),
                module: m.name.clone(),
                config: m.config.clone(),
                why: m.why.clone(),
                dir: self.dir.clone(),
            });
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<(), ImageError> {
        if done.contains(name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            path.push(name.to_string());
            return Err(ImageError::BadModule {
                path: self.dir.clone(),
                why: format!("module dependencies go round in a circle: {}", path.join(" → ")),
            });
        }
        let Some(file) = self.file(name) else {
            // A dependency that is not a module: built in (depmod lists only modules) or gone.
            if self.is_builtin(name) {
                return Ok(());
            }
            return Err(ImageError::BadModule {
                path: self.dir.clone(),
                why: format!("`{}` needs module `{name}`, which is not there", path.last().map_or("?", |s| s)),
            });
        };
        path.push(name.to_string());
        for dep in self.direct_deps(name, &file)? {
            self.visit(&dep, path, done, order)?;
        }
        path.pop();
        done.insert(name.to_string());
        order.push(file);
        Ok(())
    }
}

/// `modules.dep`: `path: dep dep …` per line; paths relative to the modules directory.
fn parse_modules_dep(text: &str) -> Vec<(PathBuf, Vec<PathBuf>)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| (PathBuf::from(m.trim()), deps.split_whitespace().map(PathBuf::from).collect()))
        .collect()
}

/// Every module file below `dir` (relative paths), not following symlinks (`build` and
/// `source` of an installed kernel point back into trees).
fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, PathBuf>) -> std::io::Result<()> {
    for ent in std::fs::read_dir(root.join(rel))? {
        let ent = ent?;
        let ft = ent.file_type()?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if ft.is_dir() && !name.starts_with('.') {
            walk(root, &rel.join(name), out)?;
        } else if ft.is_file() {
            if let Some(m) = module_name_of(name) {
                // Two files for one module (a stale uncompressed copy next to the .ko.xz):
                // the first in directory order wins, as the path sorts decide nothing here.
                out.entry(m).or_insert_with(|| rel.join(name));
            }
        }
    }
    Ok(())
}

/// The value of a kernel config option (`y`, `m`, a string), if set.
fn config_value(kernel: &Kernel, option: &str) -> Option<String> {
    let text = std::fs::read_to_string(&kernel.config).ok()?;
    let prefix = format!("{option}=");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(str::to_string)
}

/// The `.modinfo` strings (`key=value`) of a module's ELF image.
pub fn modinfo(elf: &[u8]) -> Result<Vec<String>, String> {
    let data = elf_section(elf, ".modinfo")?.ok_or("no .modinfo section: not a kernel module")?;
    Ok(data.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// The contents of the section named `name` of a 64-bit little-endian ELF file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    let short = || "truncated ELF file".to_string();
    if !elf.starts_with(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).ok_or_else(short);
    let u32_at =
        |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize).ok_or_else(short);
    let u64_at =
        |o: usize| elf.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize).ok_or_else(short);
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| -> Result<(usize, usize, usize), String> {
        let h = shoff + i * shentsize;
        Ok((u32_at(h)?, u64_at(h + 24)?, u64_at(h + 32)?))
    };
    let section = |off: usize, size: usize| off.checked_add(size).and_then(|end| elf.get(off..end)).ok_or_else(short);
    let (_, stroff, strsize) = header(shstrndx)?;
    let strtab = section(stroff, strsize)?;
    for i in 0..shnum {
        let (name_off, off, size) = header(i)?;
        let n = strtab.get(name_off..).unwrap_or_default();
        let n = &n[..n.iter().position(|&b| b == 0).unwrap_or(n.len())];
        if n == name.as_bytes() {
            return section(off, size).map(Some);
        }
    }
    Ok(None)
}

/// A module's ELF image: the file as is, or decompressed on the host if it is compressed
/// (by its magic, whatever its name says).
pub fn read_module(path: &Path) -> Result<Vec<u8>, ImageError> {
    let data = std::fs::read(path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    if data.starts_with(b"\x7fELF") {
        return Ok(data);
    }
    let bad = |why: String| ImageError::BadModule { path: path.to_path_buf(), why };
    let Some(&(_, tool, package, args)) = super::vmlinux::DECOMPRESSORS.iter().find(|(m, ..)| data.starts_with(m))
    else {
        return Err(bad("not an ELF file, nor compressed with xz, zstd or gzip".into()));
    };
    let bin = crate::tools::require_tool(tool, package, "decompress the kernel's compressed modules")
        .map_err(|e| bad(e.to_string()))?;
    super::vmlinux::decompress(&bin, args, &data).map_err(bad)
}

/// The guest's modules for `kernel` per `recipe`, dependencies first.
pub fn guest_modules(kernel: &Kernel, recipe: &GuestRecipe) -> Result<Vec<PathBuf>, ImageError> {
    ModuleIndex::open(&kernel.modules_dir)?.resolve(&recipe.boot_modules(), kernel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object, StandardSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};

    /// A relocatable ELF like a .ko: a .text and a .modinfo with `name=` and `depends=`.
    fn fake_ko(name: &str, depends: &[&str]) -> Vec<u8> {
        let mut o = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = o.section_id(StandardSection::Text);
        o.append_section_data(text, &[0xc3], 1);
        let info = o.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        let body = format!("license=GPL\0depends={}\0name={name}\0vermagic=6.1.0 SMP\0", depends.join(","));
        o.append_section_data(info, body.as_bytes(), 1);
        o.write().unwrap()
    }

    fn module(name: &str, optional: bool) -> GuestModule {
        GuestModule { name: name.into(), config: None, optional, why: "test".into() }
    }

    fn kernel(dir: &Path, config: &str) -> Kernel {
        std::fs::write(dir.join(".config"), config).unwrap();
        Kernel {
            spec: "test".into(),
            release: "6.1.0-test".into(),
            version: "6.1.0".into(),
            vmlinuz: dir.join("bzImage"),
            modules_dir: dir.to_path_buf(),
            headers_dir: dir.to_path_buf(),
            config: dir.join(".config"),
            debian_suite: None,
        }
    }

    fn put(dir: &Path, rel: &str, data: &[u8]) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn rel(dir: &Path, files: Vec<PathBuf>) -> Vec<String> {
        files.iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect()
    }

    #[test]
    fn modinfo_of_a_module() {
        let ko = fake_ko("virtio_console", &["virtio", "virtio_ring"]);
        let info = modinfo(&ko).unwrap();
        assert!(info.contains(&"depends=virtio,virtio_ring".to_string()), "{info:?}");
        assert!(modinfo(b"\x7fELF\x01\x01").is_err());
        assert!(modinfo(b"nope").unwrap_err().contains("not an ELF"));
        assert!(modinfo(&ko[..100]).is_err());
    }

    #[test]
    fn names_of_module_files() {
        assert_eq!(module_name_of("pvpanic-mmio.ko").as_deref(), Some("pvpanic_mmio"));
        assert_eq!(module_name_of("virtio_console.ko.xz").as_deref(), Some("virtio_console"));
        assert_eq!(module_name_of("virtio.ko.zst").as_deref(), Some("virtio"));
        assert_eq!(module_name_of("virtio.o"), None);
        assert_eq!(module_name_of(".ko"), None);
    }

    /// A build tree: modules next to their sources, no modules.dep; dependencies from
    /// .modinfo; a built-in module needs nothing; order puts dependencies first.
    #[test]
    fn build_tree_dependencies_from_modinfo() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        put(dir, "drivers/virtio/virtio.ko", &fake_ko("virtio", &[]));
        put(dir, "drivers/virtio/virtio_ring.ko", &fake_ko("virtio_ring", &[]));
        put(dir, "drivers/virtio/virtio_pci_modern_dev.ko", &fake_ko("virtio_pci_modern_dev", &[]));
        put(
            dir,
            "drivers/virtio/virtio_pci.ko",
            &fake_ko("virtio_pci", &["virtio_ring", "virtio_pci_modern_dev", "virtio"]),
        );
        put(dir, "drivers/char/virtio_console.ko", &fake_ko("virtio_console", &["virtio", "virtio_ring"]));
        put(dir, "drivers/misc/pvpanic/pvpanic-mmio.ko", &fake_ko("pvpanic_mmio", &["pvpanic"]));
        put(dir, "drivers/virtio/virtio.c", b"/* source */");
        put(dir, "modules.builtin", b"drivers/misc/pvpanic/pvpanic.ko\n");
        let k = kernel(dir, "CONFIG_VIRTIO_CONSOLE=m\n");
        let idx = ModuleIndex::open(dir).unwrap();
        let wanted = [module("virtio_pci", false), module("virtio_console", false), module("pvpanic-mmio", true)];
        let order = idx.resolve(&wanted.iter().collect::<Vec<_>>(), &k).unwrap();
        assert_eq!(
            rel(dir, order),
            [
                "drivers/virtio/virtio_ring.ko",
                "drivers/virtio/virtio_pci_modern_dev.ko",
                "drivers/virtio/virtio.ko",
                "drivers/virtio/virtio_pci.ko",
                "drivers/char/virtio_console.ko",
                "drivers/misc/pvpanic/pvpanic-mmio.ko",
            ]
        );
    }

    /// A Debian package layout with a modules.dep (as after depmod) and compressed modules.
    #[test]
    fn packaged_layout_with_modules_dep_and_compressed_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        for (n, deps) in [("virtio", &[][..]), ("virtio_ring", &[][..]), ("virtio_console", &["virtio", "virtio_ring"])]
        {
            let sub = if n == "virtio_console" { "char" } else { "virtio" };
            put(dir, &format!("kernel/drivers/{sub}/{n}.ko.xz"), &fake_ko(n, deps));
        }
        // modules.dep decides, whatever .modinfo says: here it orders virtio_ring first.
        put(
            dir,
            "modules.dep",
            b"kernel/drivers/virtio/virtio.ko.xz:\nkernel/drivers/virtio/virtio_ring.ko.xz:\n\
              kernel/drivers/char/virtio_console.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz\n",
        );
        let k = kernel(dir, "");
        let idx = ModuleIndex::open(dir).unwrap();
        let order = idx.resolve(&[&module("virtio_console", false)], &k).unwrap();
        assert_eq!(
            rel(dir, order),
            [
                "kernel/drivers/virtio/virtio_ring.ko.xz",
                "kernel/drivers/virtio/virtio.ko.xz",
                "kernel/drivers/char/virtio_console.ko.xz"
            ]
        );
    }

    #[test]
    fn missing_modules() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        put(dir, "drivers/char/virtio_console.ko", &fake_ko("virtio_console", &["virtio"]));
        let idx = ModuleIndex::open(dir).unwrap();
        // Optional and absent: left out. Built in by config: nothing to load.
        let k = kernel(dir, "CONFIG_VIRTIO_PCI=y\n");
        let mut pci = module("virtio_pci", false);
        pci.config = Some("CONFIG_VIRTIO_PCI".into());
        assert_eq!(idx.resolve(&[&module("pvpanic_mmio", true), &pci], &k).unwrap(), Vec::<PathBuf>::new());
        // Required and absent: named, with its config option and why.
        let k = kernel(dir, "# CONFIG_VIRTIO_PCI is not set\n");
        let e = idx.resolve(&[&pci], &k).unwrap_err().to_string();
        assert!(e.contains("virtio_pci") && e.contains("CONFIG_VIRTIO_PCI") && e.contains("6.1.0-test"), "{e}");
        // A dependency that is nowhere.
        let e = idx.resolve(&[&module("virtio_console", false)], &k).unwrap_err().to_string();
        assert!(e.contains("`virtio_console` needs module `virtio`"), "{e}");
    }

    #[test]
    fn compressed_modules_are_decompressed_on_the_host() {
        let d = tempfile::tempdir().unwrap();
        let ko = fake_ko("m", &[]);
        let plain = d.path().join("m.ko");
        std::fs::write(&plain, &ko).unwrap();
        assert_eq!(read_module(&plain).unwrap(), ko);
        for (tool, args, ext) in
            [("xz", &["-zc"][..], "xz"), ("zstd", &["-qc"][..], "zst"), ("gzip", &["-c"][..], "gz")]
        {
            let Some(bin) = crate::tools::find_tool(tool) else {
                eprintln!("{tool} not installed; skipping .ko.{ext}");
                continue;
            };
            let out = std::process::Command::new(bin).args(args).arg(&plain).output().unwrap();
            let packed = d.path().join(format!("m.ko.{ext}"));
            std::fs::write(&packed, &out.stdout).unwrap();
            assert_eq!(read_module(&packed).unwrap(), ko, "{ext}");
        }
        let junk = d.path().join("j.ko");
        std::fs::write(&junk, b"junk").unwrap();
        assert!(read_module(&junk).unwrap_err().to_string().contains("not an ELF file"));
    }
}
