//! What a livepatch module's `.ko` says about itself, read on the host with the `object` crate
//! before anything boots: its `.modinfo` (name, vermagic, `livepatch=Y`) and the objects and
//! functions its `struct klp_patch` declares.
//!
//! The patch structure is found through its relocations, never through symbol names (a module
//! may call its arrays anything): the `klp_patch` is the place in a writable data section whose
//! first word is relocated to `__this_module` and whose second word (`objs`) points to a
//! zero-terminated `klp_object` array. That array is the data object (a symbol with a size) at
//! the target; its `n` objects each point (`funcs`, 2nd word) to a `klp_func` array, so with `n`
//! such pointers and the terminator the element size is `size / (n + 1)`. In a `klp_func`
//! array every function has a `new_func` (2nd word) relocated into code and an `old_name`
//! (1st word) relocated to a string; `old_sympos` is the 3rd word, stored in the section as is.
//! These are the layouts of `include/linux/livepatch.h` from 5.1 to today (`mod`, `objs` first
//! in `klp_patch`; `name`, `funcs` in `klp_object`; `old_name`, `new_func`, `old_sympos` in
//! `klp_func`). Whatever does not fit this shape is said ([`Declared::Unknown`]) and the caller
//! falls back to what sysfs shows.

use std::collections::BTreeMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind, SymbolKind};

/// Why a file cannot be a livepatch module for the kernel under test.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KoError {
    #[error("{path}: cannot read it: {why}")]
    Read { path: String, why: String },
    #[error("{path}: not an ELF file (expected a kernel module, <name>.ko, as kbuild makes it; compressed .ko.xz/.ko.zst files must be decompressed first)")]
    NotElf { path: String },
    #[error("{path}: not a loadable kernel module: {why}")]
    NotModule { path: String, why: String },
    #[error("{path}: not a livepatch module: its .modinfo has no `livepatch=Y` (MODULE_INFO(livepatch, \"Y\"); the kernel would refuse it with EINVAL, SPEC L2)")]
    NotLivepatch { path: String },
    #[error("{path}: vermagic `{module}` does not match kernel {release}'s `{kernel}` (read from {source_file}): the kernel would refuse to load it; build it against that kernel's headers (make -C <headers> M=<dir> modules)")]
    Vermagic { path: String, module: String, kernel: String, release: String, source_file: String },
}

/// One function a `klp_object` patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredFunc {
    pub old_name: String,
    pub old_sympos: u64,
}

impl DeclaredFunc {
    /// The sysfs directory name: `<old_name>,<old_sympos>`, with 1 for 0 (SPEC SY3).
    pub fn sysfs_name(&self) -> String {
        format!("{},{}", self.old_name, self.old_sympos.max(1))
    }
}

/// One `klp_object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredObject {
    /// `None`: vmlinux.
    pub name: Option<String>,
    pub funcs: Vec<DeclaredFunc>,
}

impl DeclaredObject {
    /// The sysfs directory name: `vmlinux` or the target module's name.
    pub fn sysfs_name(&self) -> &str {
        self.name.as_deref().unwrap_or("vmlinux")
    }
}

/// What the module's `klp_patch` declares, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    Read {
        objects: Vec<DeclaredObject>,
        /// `klp_patch.replace` (4th word).
        replace: bool,
    },
    Unknown(String),
}

/// A module file as the harness sees it before boot.
#[derive(Debug, Clone)]
pub struct KoInfo {
    /// The module's name (`.modinfo` `name=`, else the file name with `-` as `_`): its sysfs
    /// patch name and what suites `load`.
    pub name: String,
    pub vermagic: String,
    pub livepatch: bool,
    pub modinfo: Vec<(String, String)>,
    pub declared: Declared,
}

/// The `key=value` strings of `.modinfo`.
fn modinfo(file: &object::File) -> Option<Vec<(String, String)>> {
    let data = file.section_by_name(".modinfo")?.data().ok()?;
    Some(
        data.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = String::from_utf8_lossy(s);
                match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s.to_string(), String::new()),
                }
            })
            .collect(),
    )
}

/// Read `path` (a `.ko`).
pub fn read_ko(path: &Path) -> Result<KoInfo, KoError> {
    let shown = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| KoError::Read { path: shown.clone(), why: e.to_string() })?;
    parse_ko(&data, path)
}

/// [`read_ko`] on bytes; `path` names the file in errors and gives the fallback name.
pub fn parse_ko(data: &[u8], path: &Path) -> Result<KoInfo, KoError> {
    let shown = path.display().to_string();
    if !data.starts_with(b"\x7fELF") {
        return Err(KoError::NotElf { path: shown });
    }
    let file = object::File::parse(data)
        .map_err(|e| KoError::NotModule { path: shown.clone(), why: format!("unreadable ELF: {e}") })?;
    if file.kind() != object::ObjectKind::Relocatable {
        return Err(KoError::NotModule {
            path: shown,
            why: format!("an ELF {:?} file; kernel modules are relocatable objects (ET_REL)", file.kind()),
        });
    }
    let info = modinfo(&file).ok_or_else(|| KoError::NotModule {
        path: shown.clone(),
        why: "no .modinfo section (kbuild's modpost adds it to every module)".into(),
    })?;
    if file.section_by_name(".gnu.linkonce.this_module").is_none() {
        return Err(KoError::NotModule {
            path: shown,
            why: "no .gnu.linkonce.this_module section (struct module): was it linked by kbuild?".into(),
        });
    }
    let get = |k: &str| info.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let name = get("name").filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let f = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        f.strip_suffix(".ko").unwrap_or(f).replace('-', "_")
    });
    let vermagic = get("vermagic").ok_or_else(|| KoError::NotModule {
        path: shown.clone(),
        why: "its .modinfo has no vermagic= (kbuild's modpost adds it)".into(),
    })?;
    let livepatch = get("livepatch").as_deref() == Some("Y");
    let declared = match declared(&file) {
        Ok(d) => d,
        Err(why) => Declared::Unknown(why),
    };
    Ok(KoInfo { name, vermagic, livepatch, modinfo: info, declared })
}

/// Where a relocation points: a section and an offset in it, and the symbol's name when it is
/// not a section symbol.
#[derive(Debug, Clone)]
struct Target {
    section: object::SectionIndex,
    offset: u64,
    symbol: Option<String>,
    undefined: bool,
}

/// 64-bit absolute relocations of every section, by (section, offset).
type Relocs = BTreeMap<(usize, u64), Target>;

fn relocations(file: &object::File) -> Relocs {
    let mut out = Relocs::new();
    for section in file.sections() {
        for (offset, r) in section.relocations() {
            if r.size() != 64 || r.kind() != object::RelocationKind::Absolute {
                continue;
            }
            let RelocationTarget::Symbol(si) = r.target() else { continue };
            let Ok(sym) = file.symbol_by_index(si) else { continue };
            let undefined = sym.is_undefined();
            let (section_index, base) = match sym.section_index() {
                Some(s) => (s, sym.address()),
                None => (object::SectionIndex(0), 0),
            };
            let symbol = (sym.kind() != SymbolKind::Section).then(|| sym.name().unwrap_or("").to_string());
            out.insert(
                (section.index().0, offset),
                Target { section: section_index, offset: base.wrapping_add(r.addend() as u64), symbol, undefined },
            );
        }
    }
    out
}

/// What a pointer points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Points {
    Code,
    ReadOnly,
    Data,
    Other,
}

fn points(file: &object::File, t: &Target) -> Points {
    if t.undefined {
        return Points::Other;
    }
    match file.section_by_index(t.section).map(|s| s.kind()) {
        Ok(SectionKind::Text) => Points::Code,
        Ok(SectionKind::ReadOnlyData | SectionKind::ReadOnlyString) => Points::ReadOnly,
        // An all-zero array (`{ }`: a klp_func array with only its terminator) lands in .bss.
        Ok(SectionKind::Data | SectionKind::UninitializedData) => Points::Data,
        _ => Points::Other,
    }
}

/// The size of the data object that starts at `offset` of `section` (a symbol with a size).
fn object_size(file: &object::File, section: object::SectionIndex, offset: u64) -> Option<u64> {
    file.symbols()
        .filter(|s| s.section_index() == Some(section) && s.address() == offset && s.size() > 0)
        .filter(|s| matches!(s.kind(), SymbolKind::Data | SymbolKind::Unknown))
        .map(|s| s.size())
        .max()
}

/// The NUL-terminated string at a target.
fn string_at(file: &object::File, t: &Target) -> Option<String> {
    let data = file.section_by_index(t.section).ok()?.data().ok()?;
    let rest = data.get(t.offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

fn u64_at(file: &object::File, section: object::SectionIndex, offset: u64) -> Option<u64> {
    let data = file.section_by_index(section).ok()?.data().ok()?;
    let b = data.get(offset as usize..offset as usize + 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Relocations inside `[start, start + size)` of `section`, by offset from `start`.
fn relocs_in(relocs: &Relocs, section: object::SectionIndex, start: u64, size: u64) -> Vec<(u64, &Target)> {
    relocs.range((section.0, start)..(section.0, start + size)).map(|(&(_, o), t)| (o - start, t)).collect()
}

/// The element size of a zero-terminated array of `size` bytes holding `n` elements and the
/// terminator, each element at least `word + 1` words long.
fn element_size(size: u64, n: usize, word: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("the array is empty".into());
    }
    if !size.is_multiple_of(n as u64 + 1) {
        return Err(format!("{size} bytes do not divide into {n} elements and a terminator"));
    }
    let elem = size / (n as u64 + 1);
    if elem < 8 * (word + 1) {
        return Err(format!("elements of {elem} bytes are too small"));
    }
    Ok(elem)
}

fn declared(file: &object::File) -> Result<Declared, String> {
    let relocs = relocations(file);
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    for (&(sec, off), t) in &relocs {
        if t.symbol.as_deref() != Some("__this_module") {
            continue;
        }
        let Some(objs) = relocs.get(&(sec, off + 8)) else { continue };
        if points(file, objs) != Points::Data {
            continue;
        }
        match read_objects(file, &relocs, objs) {
            Ok(objects) => {
                let replace = file
                    .section_by_index(object::SectionIndex(sec))
                    .ok()
                    .and_then(|s| s.data().ok())
                    .and_then(|d| d.get(off as usize + 24).copied())
                    .is_some_and(|b| b != 0);
                found.push(Declared::Read { objects, replace });
            }
            Err(why) => rejected.push(why),
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if rejected.is_empty() => {
            Err("no struct klp_patch found (no `.mod = THIS_MODULE` followed by an `.objs` array)".into())
        }
        0 => Err(format!("the klp_patch's arrays could not be read: {}", rejected.join("; "))),
        n => Err(format!("{n} places look like a struct klp_patch; cannot tell which one is enabled")),
    }
}

fn read_objects(file: &object::File, relocs: &Relocs, objs: &Target) -> Result<Vec<DeclaredObject>, String> {
    let size = object_size(file, objs.section, objs.offset)
        .ok_or("the objs array has no symbol with a size (stripped module?)")?;
    let inside = relocs_in(relocs, objs.section, objs.offset, size);
    let funcs: Vec<_> = inside.iter().filter(|(_, t)| points(file, t) == Points::Data).collect();
    let elem = element_size(size, funcs.len(), 1)?;
    let mut out = Vec::new();
    for (i, (o, ft)) in funcs.iter().enumerate() {
        if *o != i as u64 * elem + 8 {
            return Err(format!(
                "object {i}'s funcs pointer is at byte {o} of the objs array, not {}",
                i as u64 * elem + 8
            ));
        }
        let name = match inside.iter().find(|(no, _)| *no == i as u64 * elem) {
            None => None,
            Some((_, nt)) => Some(string_at(file, nt).ok_or(format!("object {i}'s name is not a string"))?),
        };
        out.push(DeclaredObject { name, funcs: read_funcs(file, relocs, ft)? });
    }
    Ok(out)
}

fn read_funcs(file: &object::File, relocs: &Relocs, funcs: &Target) -> Result<Vec<DeclaredFunc>, String> {
    let size = object_size(file, funcs.section, funcs.offset)
        .ok_or("a funcs array has no symbol with a size (stripped module?)")?;
    let inside = relocs_in(relocs, funcs.section, funcs.offset, size);
    let code: Vec<_> = inside.iter().filter(|(_, t)| points(file, t) == Points::Code).collect();
    if code.is_empty() && inside.is_empty() {
        // Only the terminator: an object that patches no function (e.g. for its callbacks).
        return Ok(Vec::new());
    }
    let elem = element_size(size, code.len(), 2)?;
    let mut out = Vec::new();
    for (i, (o, _)) in code.iter().enumerate() {
        let base = i as u64 * elem;
        if *o != base + 8 {
            return Err(format!("function {i}'s new_func is at byte {o} of its funcs array, not {}", base + 8));
        }
        let (_, nt) =
            inside.iter().find(|(no, _)| *no == base).ok_or(format!("function {i} has no old_name pointer"))?;
        let old_name = string_at(file, nt).ok_or(format!("function {i}'s old_name is not a string"))?;
        let old_sympos = u64_at(file, funcs.section, funcs.offset + base + 16).unwrap_or(0);
        out.push(DeclaredFunc { old_name, old_sympos });
    }
    Ok(out)
}

/// The vermagic of a kernel: read from one of its own modules in `modules_dir`, decompressed
/// if need be: the first that `modules.dep` (a packaged kernel) or `modules.order` (a build
/// tree) lists, else the first module file found below `kernel/` or the directory. Returns it
/// and the file it was read from.
pub fn kernel_vermagic(modules_dir: &Path) -> Result<(String, String), String> {
    fn first_module(dir: &Path, depth: usize) -> Option<std::path::PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in &entries {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_file() && [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|s| n.ends_with(s)) {
                return Some(p.clone());
            }
        }
        if depth == 0 {
            return None;
        }
        entries.iter().filter(|p| p.is_dir()).find_map(|p| first_module(p, depth - 1))
    }
    let listed = ["modules.dep", "modules.order"].iter().find_map(|list| {
        let text = std::fs::read_to_string(modules_dir.join(list)).ok()?;
        text.lines().filter_map(|l| l.split(':').next()).map(|l| modules_dir.join(l.trim())).find(|p| p.is_file())
    });
    let start =
        if modules_dir.join("kernel").is_dir() { modules_dir.join("kernel") } else { modules_dir.to_path_buf() };
    let ko = listed.or_else(|| first_module(&start, 8)).ok_or_else(|| {
        format!(
            "no module file (.ko, .ko.xz, .ko.zst, .ko.gz) below {} to read the kernel's vermagic from",
            start.display()
        )
    })?;
    let data = crate::image::read_module(&ko).map_err(|e| e.to_string())?;
    let info = crate::image::modinfo(&data).map_err(|e| format!("{}: {e}", ko.display()))?;
    let vermagic = info
        .iter()
        .find_map(|s| s.strip_prefix("vermagic="))
        .ok_or_else(|| format!("{}: its .modinfo has no vermagic=", ko.display()))?;
    Ok((vermagic.to_string(), ko.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as WObject, Relocation, StandardSection, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolScope};

    /// (object name or vmlinux, [(old_name, old_sympos)]) of a synthetic module.
    type Objects<'a> = &'a [(Option<&'a str>, &'a [(&'a str, u64)])];

    /// The objects and functions of a synthetic livepatch module.
    struct Spec<'a> {
        modinfo: &'a [&'a str],
        /// (object name, [(old_name, sympos)])
        objects: Objects<'a>,
        replace: bool,
        /// Element sizes of klp_object and klp_func (kernel-config dependent in reality).
        obj_size: u64,
        func_size: u64,
        with_sizes: bool,
    }

    fn data_symbol(o: &mut WObject, name: &str, section: object::write::SectionId, offset: u64, size: u64) {
        o.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: offset,
            size,
            kind: SymbolKind::Data,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        });
    }

    /// An ELF relocatable laid out the way gcc and kbuild lay out a livepatch module.
    fn build(spec: &Spec) -> Vec<u8> {
        let mut o = WObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let modinfo = o.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        let mut mi = Vec::new();
        for s in spec.modinfo {
            mi.extend_from_slice(s.as_bytes());
            mi.push(0);
        }
        o.append_section_data(modinfo, &mi, 1);
        let this = o.add_section(Vec::new(), b".gnu.linkonce.this_module".to_vec(), SectionKind::Data);
        o.append_section_data(this, &[0u8; 64], 64);
        let this_sym = o.add_symbol(Symbol {
            name: b"__this_module".to_vec(),
            value: 0,
            size: 64,
            kind: SymbolKind::Data,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(this),
            flags: SymbolFlags::None,
        });
        let text = o.section_id(StandardSection::Text);
        o.append_section_data(text, &[0xc3; 64], 16);
        let text_sym = o.section_symbol(text);
        let strs = o.section_id(StandardSection::ReadOnlyString);
        let str_sym = o.section_symbol(strs);
        let data = o.section_id(StandardSection::Data);
        let data_sym = o.section_symbol(data);
        let abs = |offset: u64, symbol, addend: i64| Relocation {
            offset,
            symbol,
            addend,
            flags: object::RelocationFlags::Generic {
                kind: object::RelocationKind::Absolute,
                encoding: object::RelocationEncoding::Generic,
                size: 64,
            },
        };
        let string = |o: &mut WObject, s: &str| {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            o.append_section_data(strs, &b, 1)
        };
        // klp_patch: mod, objs, states, replace; then the arrays.
        let mut patch = vec![0u8; 200];
        patch[24] = u8::from(spec.replace);
        let patch_at = o.append_section_data(data, &patch, 32);
        data_symbol(&mut o, "patch", data, patch_at, 200);
        o.add_relocation(data, abs(patch_at, this_sym, 0)).unwrap();
        let objs_size = spec.obj_size * (spec.objects.len() as u64 + 1);
        let objs_at = o.append_section_data(data, &vec![0u8; objs_size as usize], 32);
        if spec.with_sizes {
            data_symbol(&mut o, "objs", data, objs_at, objs_size);
        }
        o.add_relocation(data, abs(patch_at + 8, data_sym, objs_at as i64)).unwrap();
        for (i, (name, funcs)) in spec.objects.iter().enumerate() {
            let obj = objs_at + i as u64 * spec.obj_size;
            if let Some(n) = name {
                let at = string(&mut o, n);
                o.add_relocation(data, abs(obj, str_sym, at as i64)).unwrap();
            }
            let fsize = spec.func_size * (funcs.len() as u64 + 1);
            let mut fdata = vec![0u8; fsize as usize];
            for (k, (_, sympos)) in funcs.iter().enumerate() {
                let at = k * spec.func_size as usize + 16;
                fdata[at..at + 8].copy_from_slice(&sympos.to_le_bytes());
            }
            let funcs_at = o.append_section_data(data, &fdata, 32);
            if spec.with_sizes {
                data_symbol(&mut o, &format!("funcs{i}"), data, funcs_at, fsize);
            }
            o.add_relocation(data, abs(obj + 8, data_sym, funcs_at as i64)).unwrap();
            for (k, (old, _)) in funcs.iter().enumerate() {
                let f = funcs_at + k as u64 * spec.func_size;
                let at = string(&mut o, old);
                o.add_relocation(data, abs(f, str_sym, at as i64)).unwrap();
                o.add_relocation(data, abs(f + 8, text_sym, 16 * k as i64)).unwrap();
            }
            // A callback pointer (pre_patch) into code must not be taken for a funcs array.
            o.add_relocation(data, abs(obj + 16, text_sym, 0)).unwrap();
        }
        o.write().unwrap()
    }

    const LP: &[&str] = &["livepatch=Y", "name=lp_demo", "vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions "];

    fn spec(objects: Objects<'_>) -> Spec<'_> {
        Spec { modinfo: LP, objects, replace: false, obj_size: 168, func_size: 152, with_sizes: true }
    }

    #[test]
    fn modinfo_and_a_single_vmlinux_function() {
        let ko = build(&spec(&[(None, &[("cmdline_proc_show", 0)])]));
        let info = parse_ko(&ko, Path::new("/x/lp-demo.ko")).unwrap();
        assert_eq!(info.name, "lp_demo");
        assert!(info.livepatch);
        assert_eq!(info.vermagic, "6.1.0-57-amd64 SMP preempt mod_unload modversions ");
        let Declared::Read { objects, replace } = info.declared else { panic!("{:?}", info.declared) };
        assert!(!replace);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].sysfs_name(), "vmlinux");
        assert_eq!(objects[0].funcs[0].sysfs_name(), "cmdline_proc_show,1");
    }

    #[test]
    fn several_objects_functions_sympos_and_replace() {
        let objs: Objects =
            &[(None, &[("a_func", 0), ("b_func", 2)]), (Some("cb_only"), &[]), (Some("target_mod"), &[("t_func", 1)])];
        let mut s = spec(objs);
        s.replace = true;
        // Another layout (e.g. a kernel with CONFIG_DEBUG_KOBJECT_RELEASE): the sizes follow.
        s.obj_size = 248;
        s.func_size = 232;
        let info = parse_ko(&build(&s), Path::new("m.ko")).unwrap();
        let Declared::Read { objects, replace } = info.declared else { panic!("{:?}", info.declared) };
        assert!(replace);
        let names: Vec<_> = objects
            .iter()
            .map(|o| (o.sysfs_name().to_string(), o.funcs.iter().map(DeclaredFunc::sysfs_name).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            names,
            [
                ("vmlinux".to_string(), vec!["a_func,1".to_string(), "b_func,2".into()]),
                ("cb_only".into(), vec![]),
                ("target_mod".into(), vec!["t_func,1".into()])
            ]
        );
    }

    #[test]
    fn arrays_without_sizes_are_unknown_not_guessed() {
        let mut s = spec(&[(None, &[("f", 0)])]);
        s.with_sizes = false;
        let info = parse_ko(&build(&s), Path::new("m.ko")).unwrap();
        assert!(
            matches!(&info.declared, Declared::Unknown(w) if w.contains("no symbol with a size")),
            "{:?}",
            info.declared
        );
    }

    #[test]
    fn name_falls_back_to_the_file_name_and_livepatch_flag_is_read() {
        let mut s = spec(&[(None, &[("f", 0)])]);
        s.modinfo = &["vermagic=x "];
        let info = parse_ko(&build(&s), Path::new("/d/my-patch.ko")).unwrap();
        assert_eq!(info.name, "my_patch");
        assert!(!info.livepatch);
    }

    #[test]
    fn not_elf_and_not_a_module() {
        let e = parse_ko(b"hello", Path::new("/t/a.ko")).unwrap_err();
        assert_eq!(e, KoError::NotElf { path: "/t/a.ko".into() });
        assert!(e.to_string().starts_with("/t/a.ko: not an ELF file"), "{e}");
        let mut o = WObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let t = o.section_id(StandardSection::Text);
        o.append_section_data(t, &[0xc3], 1);
        let e = parse_ko(&o.write().unwrap(), Path::new("b.o")).unwrap_err();
        assert!(e.to_string().contains("no .modinfo section"), "{e}");
    }
}
