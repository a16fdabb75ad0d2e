//! Suite format v1, as typed data. Unknown keys and wrong types are rejected by serde with
//! their location; checks serde cannot express live in [`Suite::validate`].
//!
//! ```yaml
//! version: 1
//! suite: lifecycle
//! description: what the suite is about
//! cases:
//!   - name: load-enable-disable-remove
//!     spec: [L1, D1]               # ids of ../shared/SPEC.md assertions this case checks
//!     steps:
//!       - load: klp_ref_cmdline    # or {module: …, params: "a=1", expect_errno: EINVAL}
//!       - read: {path: /proc/cmdline, equals: "…"}
//!       - write: {path: /sys/kernel/livepatch/klp_ref_cmdline/enabled, value: "0"}
//!       - wait: {absent: /sys/kernel/livepatch/klp_ref_cmdline, timeout_s: 30}
//!       - unload: klp_ref_cmdline  # or {module: …, expect_errno: EAGAIN}
//! ```

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::gate::KernelVersion;
pub use super::per_kernel::{PerKernel, VersionRange};

/// A whole suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Format version; only 1 exists.
    pub version: Spanned<u32>,
    /// The suite's name: the middle part of every case id `klp_conformance.<suite>.<case>`.
    pub suite: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Spanned<String>,
    /// SPEC.md assertion ids (`L1`, `D3`, `RM2`, …) this case checks.
    pub spec: Vec<Spanned<String>>,
    #[serde(default)]
    pub description: String,
    /// What the kernel must offer for the case to make sense; otherwise the case is SKIP with
    /// the reason, never FAIL and never a silent PASS.
    #[serde(default)]
    pub requires: Option<Requires>,
    /// Where the documented livepatch contract and the kernel disagree, and this case checks
    /// what the kernel does: the report carries the text so the divergence is never hidden.
    /// Per kernel where only some kernels diverge (`{"< 5.18": null, ">= 5.18": "…"}`).
    #[serde(default)]
    pub divergence: Option<PerKernel<Option<String>>>,
    /// Why this case must run with no other guest beside it (its meaning depends on the
    /// timing of an otherwise idle host). Absent: it runs in parallel with others.
    #[serde(default)]
    pub exclusive: Option<String>,
    /// Mutants of this case (`cargo xtask suites mutate`) that no kernel behaviour can kill,
    /// each with the reason; an id no mutant of the case has is a load error.
    #[serde(default)]
    pub equivalent_mutants: Vec<EquivalentMutant>,
    pub steps: Vec<Spanned<Step>>,
}

/// A mutant marked equivalent: `{id: "12:value", why: "…"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquivalentMutant {
    /// The mutant's id, `<step line>:<operator>[:<index>]`.
    pub id: Spanned<String>,
    /// Why no kernel, right or wrong, can make the mutated case fail.
    pub why: String,
}

/// Gating of a case on the kernel under test, decided on the host before booting.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Lowest kernel version (`6.11`, `6.1.100`) that has what the case checks.
    #[serde(default)]
    pub min_kernel: Option<Spanned<String>>,
    /// Highest kernel version the case applies to (behaviour changed after it).
    #[serde(default)]
    pub max_kernel: Option<Spanned<String>>,
    /// Kernel config options that must be `y` or `m`.
    #[serde(default)]
    pub config: Vec<String>,
}

/// One action in the guest, and what it must observe. Every kernel-facing action expects
/// success unless it names the errno it expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `finit_module` of a reference module built for the kernel under test.
    Load(ModuleStep),
    /// `delete_module(O_NONBLOCK)`, as rmmod does.
    Unload(ModuleStep),
    /// One `write(2)` of `value` followed by a newline, as `echo value > path` does.
    Write(WriteStep),
    /// Read a file and check its content (trailing newline removed) or the read's errno.
    Read(ReadStep),
    /// Poll in the guest until a condition holds; failing after `timeout_s`.
    Wait(WaitStep),
    /// The path must exist now.
    ExpectExists(String),
    /// The path must not exist now.
    ExpectAbsent(String),
    /// A file must keep a value for a while (e.g. `transition` stays 1 while a task is held).
    Stays(StaysStep),
    /// The whole tree below a directory, as `<mode> <path>[/][ = value| (ERRNO)]` lines.
    Tree(TreeStep),
    /// Kernel log records since the case's guest booted (or since a `mark`).
    Kmsg(KmsgStep),
    /// Remember the current end of the kernel log under a name, for `kmsg: {since: …}`.
    Mark(String),
    /// `/proc/<pid>/task/<tid>/patch_state` of guest tasks.
    PatchState(PatchStateStep),
    /// Start a background user task that reads a file to the end (and may block in the kernel).
    StartReader(StartReaderStep),
    /// Check what a background reader read, once it has finished.
    Reader(ReaderStep),
    /// Kernel taint flags that must be set or clear.
    Taint(TaintStep),
    /// Capture the livepatch state under a name and compare it with the stored snapshot for
    /// this kernel release (see `harness/src/snapshot`).
    Snapshot(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaysStep {
    pub path: String,
    pub equals: PerKernel<String>,
    pub for_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeStep {
    pub path: String,
    /// The expected listing, one entry per line, sorted by path. A line that ends in a
    /// version range in brackets (`… = 0  [>= 6.11]`) is expected only on those kernels.
    pub equals: PerKernel<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsgStep {
    /// Only records after this `mark`.
    #[serde(default)]
    pub since: Option<Spanned<String>>,
    /// Patterns that must each match a record, in this order (other records may come between
    /// them). A pattern is a substring, or `re:<regex>` (e.g. `re:klp_ref_busy:\d+ is sleeping`).
    #[serde(default)]
    pub contains: PerKernel<Vec<String>>,
    /// Patterns no record may match.
    #[serde(default)]
    pub absent: PerKernel<Vec<String>>,
    /// `{pattern: n}`: exactly n records match.
    #[serde(default)]
    pub count: std::collections::BTreeMap<String, usize>,
    /// `{pattern: n}`: at least n records match.
    #[serde(default)]
    pub min_count: std::collections::BTreeMap<String, usize>,
}

/// Bits of /proc/sys/kernel/tainted by their letters (`K` livepatch, `O` out of tree, `E`
/// unsigned, `W` warning, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintStep {
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub clear: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchStateStep {
    /// Only tasks whose comm starts with this (at least one must exist); default: every task.
    #[serde(default)]
    pub comm: Option<String>,
    /// Every selected task reads this value.
    #[serde(default)]
    pub equals: Option<i32>,
    /// No selected task reads this value.
    #[serde(default)]
    pub none: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartReaderStep {
    /// A short name (the task's comm becomes `klp-<tag>`).
    pub tag: String,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderStep {
    pub tag: String,
    /// Wait this long for the reader to finish (default 0: it must be done already).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub equals: Option<PerKernel<String>>,
    #[serde(default)]
    pub contains: Option<PerKernel<String>>,
    #[serde(default)]
    pub expect_errno: Option<ErrnoName>,
}

/// The errno a step expects instead of success, by its symbolic name (`EINVAL`); per kernel
/// where kernels differ, `null` meaning success (`{"< 5.19": EINVAL, ">= 5.19": null}`).
pub type ErrnoName = PerKernel<Option<String>>;

#[derive(Debug, Clone, Default)]
pub struct ModuleStep {
    pub module: String,
    pub params: String,
    pub expect_errno: Option<ErrnoName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteStep {
    pub path: String,
    pub value: String,
    #[serde(default)]
    pub expect_errno: Option<ErrnoName>,
    /// Only on kernels in this version range (the file exists only there); see
    /// [`Step::applies_to`].
    #[serde(default)]
    pub kernels: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadStep {
    pub path: String,
    /// Only on kernels in this version range (e.g. `>= 6.1` for a file 5.10 does not have).
    #[serde(default)]
    pub kernels: Option<String>,
    #[serde(default)]
    pub equals: Option<PerKernel<String>>,
    #[serde(default)]
    pub not_equals: Option<PerKernel<String>>,
    #[serde(default)]
    pub contains: Option<PerKernel<String>>,
    #[serde(default)]
    pub expect_errno: Option<ErrnoName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// With `equals`: wait until the file reads this value.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub equals: Option<PerKernel<String>>,
    /// Wait until this path disappears.
    #[serde(default)]
    pub absent: Option<String>,
    /// Wait until this path appears.
    #[serde(default)]
    pub exists: Option<String>,
    /// Wait until a kernel log record matches (a substring, or `re:<regex>`).
    #[serde(default)]
    pub kmsg: Option<String>,
    /// With `kmsg`: only records after this `mark`.
    #[serde(default)]
    pub since: Option<Spanned<String>>,
    /// Default: [`WaitStep::DEFAULT_TIMEOUT_S`].
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

impl WaitStep {
    /// Generous for TCG: livepatch transitions retry once a second (SPEC T5).
    pub const DEFAULT_TIMEOUT_S: f64 = 30.0;
}

/// `load: name` or `load: {module: name, params: "…", expect_errno: EINVAL}`.
impl<'de> Deserialize<'de> for ModuleStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            module: String,
            #[serde(default)]
            params: String,
            #[serde(default)]
            expect_errno: Option<ErrnoName>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModuleStep;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a module name, or a mapping with `module` and optional `params`, `expect_errno`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModuleStep, E> {
                Ok(ModuleStep { module: v.to_string(), ..Default::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModuleStep, A::Error> {
                let f = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ModuleStep { module: f.module, params: f.params, expect_errno: f.expect_errno })
            }
        }
        d.deserialize_any(V)
    }
}

impl Step {
    /// A short human description, for progress lines and failure reports.
    pub fn describe(&self) -> String {
        match self {
            Step::Load(m) if m.params.is_empty() => format!("load {}", m.module),
            Step::Load(m) => format!("load {} {}", m.module, m.params),
            Step::Unload(m) => format!("unload {}", m.module),
            Step::Write(w) => format!("write {:?} > {}", w.value, w.path),
            Step::Read(r) => format!("read {}", r.path),
            Step::Wait(w) => match (&w.path, &w.absent, &w.exists, &w.kmsg) {
                (Some(p), _, _, _) => {
                    format!("wait for {p} == {:?}", w.equals.as_ref().map_or("", |e| e.any().as_str()))
                }
                (_, Some(p), _, _) => format!("wait for {p} to disappear"),
                (_, _, Some(p), _) => format!("wait for {p} to appear"),
                (_, _, _, Some(k)) => format!("wait for a kernel log record {k:?}"),
                _ => "wait".into(),
            },
            Step::Taint(t) => format!("taint set {:?} clear {:?}", t.set, t.clear),
            Step::ExpectExists(p) => format!("expect {p} to exist"),
            Step::ExpectAbsent(p) => format!("expect {p} to be absent"),
            Step::Stays(s) => format!("{} stays {:?} for {}s", s.path, s.equals, s.for_s),
            Step::Tree(t) => format!("tree {}", t.path),
            Step::Kmsg(k) => match &k.since {
                Some(m) => format!("kernel log since {}", m.value),
                None => "kernel log".into(),
            },
            Step::Mark(m) => format!("mark {m}"),
            Step::PatchState(p) => format!("patch_state of {}", p.comm.as_deref().unwrap_or("every task")),
            Step::StartReader(r) => format!("start reader {} of {}", r.tag, r.path),
            Step::Reader(r) => format!("result of reader {}", r.tag),
            Step::Snapshot(n) => format!("snapshot {n}"),
        }
    }

    /// The reference modules this step needs in the guest image.
    pub fn module(&self) -> Option<&str> {
        match self {
            Step::Load(m) => Some(&m.module),
            _ => None,
        }
    }
}

impl Suite {
    pub fn name(&self) -> &str {
        &self.suite.value
    }

    /// Every reference module any case loads, sorted and without duplicates.
    pub fn modules(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .cases
            .iter()
            .flat_map(|c| c.steps.iter().filter_map(|s| s.value.module().map(str::to_string)))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Case {
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// The modules the case loads, in first-load order: what its snapshots report on.
    pub fn modules(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for m in self.steps.iter().filter_map(|s| s.value.module()) {
            if !v.iter().any(|x| x == m) {
                v.push(m.to_string());
            }
        }
        v
    }

    pub fn spec_ids(&self) -> Vec<String> {
        self.spec.iter().map(|s| s.value.clone()).collect()
    }

    /// The case as it runs on kernel `v`: every per-kernel value replaced by the one for `v`.
    /// `Err` (with the step's location) when a step gives no expectation for `v`: that case
    /// cannot be judged on this kernel, which is reported before any guest boots.
    pub fn planned_for(&self, v: KernelVersion) -> Result<Case, (serde_saphyr::Location, String)> {
        let mut case = self.clone();
        if let Some(d) = &self.divergence {
            let at = self.name.referenced;
            case.divergence = Some(PerKernel::Same(d.get(v).map_err(|e| (at, format!("divergence: {e}")))?.clone()));
        }
        case.steps.retain(|s| s.value.applies_to(v));
        for step in &mut case.steps {
            let at = step.referenced;
            step.value.plan(v).map_err(|e| (at, e))?;
        }
        Ok(case)
    }

    /// The divergence text of a planned case.
    pub fn divergence_text(&self) -> Option<String> {
        self.divergence.as_ref().and_then(|d| d.any().as_ref()).map(|d| d.trim().to_string())
    }
}

/// Replace a per-kernel value by the one for `v`.
fn pick<T: Clone>(x: &mut PerKernel<T>, v: KernelVersion) -> Result<(), String> {
    *x = PerKernel::Same(x.get(v)?.clone());
    Ok(())
}

fn pick_opt<T: Clone>(x: &mut Option<PerKernel<T>>, v: KernelVersion) -> Result<(), String> {
    x.as_mut().map_or(Ok(()), |x| pick(x, v))
}

impl Step {
    /// The version range a step is limited to (`kernels:`), if any.
    pub fn kernels(&self) -> Option<&str> {
        match self {
            Step::Read(r) => r.kernels.as_deref(),
            Step::Write(w) => w.kernels.as_deref(),
            _ => None,
        }
    }

    /// Whether the step is part of the case on kernel `v`: a step limited to a version range
    /// observes something other kernels do not have (an attribute added later), and is left
    /// out on them; what those kernels show instead is checked by the case's other steps.
    pub fn applies_to(&self, v: KernelVersion) -> bool {
        self.kernels().is_none_or(|r| VersionRange::parse(r).is_ok_and(|r| r.contains(v)))
    }

    /// Resolve this step's per-kernel values for kernel `v`.
    fn plan(&mut self, v: KernelVersion) -> Result<(), String> {
        match self {
            Step::Load(m) | Step::Unload(m) => pick_opt(&mut m.expect_errno, v),
            Step::Write(w) => pick_opt(&mut w.expect_errno, v),
            Step::Read(r) => {
                pick_opt(&mut r.equals, v)?;
                pick_opt(&mut r.not_equals, v)?;
                pick_opt(&mut r.contains, v)?;
                pick_opt(&mut r.expect_errno, v)
            }
            Step::Reader(r) => {
                pick_opt(&mut r.equals, v)?;
                pick_opt(&mut r.contains, v)?;
                pick_opt(&mut r.expect_errno, v)
            }
            Step::Wait(w) => pick_opt(&mut w.equals, v),
            Step::Stays(s) => pick(&mut s.equals, v),
            Step::Tree(t) => {
                pick(&mut t.equals, v)?;
                t.equals = PerKernel::Same(super::per_kernel::filter_listing(t.equals.planned(), Some(v))?);
                Ok(())
            }
            Step::Kmsg(k) => {
                pick(&mut k.contains, v)?;
                pick(&mut k.absent, v)
            }
            _ => Ok(()),
        }
    }

    /// Every per-kernel value of this step (for validation).
    pub fn per_kernel_values(&self) -> Vec<Option<String>> {
        let o = |x: &Option<PerKernel<String>>| x.as_ref().and_then(|x| x.overlap());
        let e = |x: &Option<ErrnoName>| x.as_ref().and_then(|x| x.overlap());
        match self {
            Step::Load(m) | Step::Unload(m) => vec![e(&m.expect_errno)],
            Step::Write(w) => vec![e(&w.expect_errno)],
            Step::Read(r) => vec![o(&r.equals), o(&r.not_equals), o(&r.contains), e(&r.expect_errno)],
            Step::Reader(r) => vec![o(&r.equals), o(&r.contains), e(&r.expect_errno)],
            Step::Wait(w) => vec![o(&w.equals)],
            Step::Stays(s) => vec![s.equals.overlap()],
            Step::Tree(t) => {
                let bad = t.equals.values().into_iter().find_map(|x| super::per_kernel::filter_listing(x, None).err());
                vec![t.equals.overlap(), bad]
            }
            Step::Kmsg(k) => vec![k.contains.overlap(), k.absent.overlap()],
            _ => vec![],
        }
    }
}
