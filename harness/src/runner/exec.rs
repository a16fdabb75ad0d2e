//! Executing one case: each step is an action in the guest and a check of what it observed.
//! The first step whose observation differs from the expectation fails the case with both.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use klp_protocol::{errno_by_name, Condition, EntryKind, Errno, KmsgRecord, TaskInfo, TreeEntry};

use super::guest::{Guest, GuestError, GuestFault};
use crate::report::model::{Failure, StepTiming};
use crate::snapshot::{SnapshotResult, SnapshotSettings, SnapshotStatus};
use crate::suite::{Case, KmsgStep, PatchStateStep, PerKernel, ReadStep, ReaderStep, Step, WaitStep};

/// The verdict on a guest that could not be asked: `Ok((expected, actual))` is a FAIL (the
/// kernel died: the VM says so, or the console shows an oops, BUG, general protection fault,
/// WARNING or panic), `Err(message)` an ERROR (the harness lost its channel to a kernel that
/// shows no such sign, or could not do something else). A bare call trace (`irq N: nobody
/// cared`, a hung-task report) is not a kernel death: it is shown, not judged.
pub fn judge_lost_guest(e: &GuestError, console: &str) -> Result<(String, String), String> {
    use crate::vm::console;
    let fatal = console::fatal_problem(console);
    let died = |excerpt: &str| ("the kernel to stay up".to_string(), format!("{}\n{excerpt}", e.message));
    match (e.fault, fatal) {
        (GuestFault::Harness, _) => Err(e.message.clone()),
        (_, Some(p)) if agent_died(&p.excerpt) => Err(agent_died_message(&p.excerpt)),
        (_, Some(p)) => Ok(died(&p.excerpt)),
        (GuestFault::KernelDied, None) => {
            Ok(died(&e.excerpt.clone().unwrap_or_else(|| console::tail(console, CONSOLE_EXCERPT))))
        }
        (GuestFault::Lost, None) => {
            let excerpt = match console::scan_console(console) {
                Some(p) => p.excerpt,
                None => console::tail(console, CONSOLE_EXCERPT),
            };
            Err(format!(
                "the harness lost its channel to the agent: {}. The console shows no oops, BUG, WARNING or \
                 panic, so this is a harness problem, not a finding about the kernel.\n--- console ---\n{excerpt}\n\
                 --- end of console ---",
                e.message
            ))
        }
    }
}

/// The panic of a kernel whose PID 1, the agent, went away: the harness's problem, not the
/// livepatch code's.
fn agent_died(excerpt: &str) -> bool {
    excerpt.contains("Attempted to kill init!")
}

fn agent_died_message(excerpt: &str) -> String {
    format!(
        "the guest agent (PID 1) died and the kernel panicked without it: a harness problem, not a \
         kernel finding\n--- console ---\n{excerpt}\n--- end of console ---"
    )
}

/// Lines of console tail shown when there is nothing more specific.
const CONSOLE_EXCERPT: usize = 30;

/// The verdict of executing a case's steps.
#[derive(Debug, Default)]
pub struct CaseRun {
    pub failure: Option<Failure>,
    /// The guest broke down and the kernel is not to blame (agent protocol, host I/O).
    pub harness_error: Option<String>,
    pub steps: Vec<StepTiming>,
    pub snapshots: Vec<SnapshotResult>,
}

/// What earlier steps left for later ones (kernel-log marks, snapshots taken) and what every
/// step may need to know of its case.
struct CaseState<'a> {
    marks: BTreeMap<String, u64>,
    /// The case's name and modules, for its snapshots.
    case: &'a Case,
    modules: Vec<String>,
    snapshots: Option<&'a SnapshotContext<'a>>,
    taken: Vec<SnapshotResult>,
}

/// Where a case's snapshots go and what identifies them.
pub struct SnapshotContext<'a> {
    pub settings: &'a SnapshotSettings,
    /// The suite file, relative to the checkout.
    pub source: String,
    pub suite: String,
    /// What the snapshots are stored under: the release, marked for a build tree
    /// ([`crate::kernel::snapshot_key`]).
    pub release: String,
}

/// Run a case without stored snapshots (a `snapshot` step only captures).
pub fn run_case(case: &Case, guest: &mut dyn Guest) -> CaseRun {
    run_case_with(case, guest, None, &mut |_, _| {})
}

/// Run a case's steps; `on_step` hears of each step as it ends, with the snapshots it took.
pub fn run_case_with(
    case: &Case,
    guest: &mut dyn Guest,
    snapshots: Option<&SnapshotContext>,
    on_step: &mut dyn FnMut(&StepTiming, &[SnapshotResult]),
) -> CaseRun {
    let mut out = CaseRun::default();
    let mut state = CaseState { marks: BTreeMap::new(), case, modules: case.modules(), snapshots, taken: Vec::new() };
    for (i, step) in case.steps.iter().enumerate() {
        let label = format!("{}: {}", i + 1, step.value.describe());
        let started = Instant::now();
        let result = run_step(&step.value, guest, &mut state);
        let timing = StepTiming { step: label.clone(), duration_s: started.elapsed().as_secs_f64() };
        on_step(&timing, &state.taken);
        out.snapshots.append(&mut state.taken);
        out.steps.push(timing);
        let fail = |expected: String, actual: String| Failure {
            step: label.clone(),
            line: Some(step.referenced.line()),
            expected,
            actual,
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err((expected, actual))) => {
                out.failure = Some(fail(expected, actual));
                return out;
            }
            Err(e) => {
                match judge_lost_guest(&e, &guest.console_text()) {
                    Ok((expected, actual)) => out.failure = Some(fail(expected, actual)),
                    Err(message) => out.harness_error = Some(format!("step {label}: {message}")),
                }
                return out;
            }
        }
        if let Some(excerpt) = guest.kernel_problem() {
            if agent_died(&excerpt) {
                out.harness_error = Some(format!("step {label}: {}", agent_died_message(&excerpt)));
            } else {
                out.failure = Some(fail("no oops, BUG, WARNING or panic on the console".into(), excerpt));
            }
            return out;
        }
    }
    out
}

/// `Ok(Err((expected, actual)))` is a mismatch.
type StepResult = Result<Result<(), (String, String)>, GuestError>;

fn describe_errno(e: &Errno) -> String {
    format!("{} ({}: {})", e.name, e.errno, e.message)
}

/// Compare an operation's outcome with the errno the step expects (none = success).
fn expect_outcome(outcome: Result<(), Errno>, expect: Option<&str>) -> Result<(), (String, String)> {
    let want = expect.map(|n| (n, errno_by_name(n).expect("errno names are validated at load")));
    match (outcome, want) {
        (Ok(()), None) => Ok(()),
        (Err(e), Some((_, n))) if e.errno == n => Ok(()),
        (Ok(()), Some((name, _))) => Err((format!("failure with {name}"), "success".into())),
        (Err(e), None) => Err(("success".into(), describe_errno(&e))),
        (Err(e), Some((name, _))) => Err((format!("failure with {name}"), describe_errno(&e))),
    }
}

fn run_step(step: &Step, guest: &mut dyn Guest, state: &mut CaseState) -> StepResult {
    let errno = |e: &Option<crate::suite::ErrnoName>| e.as_ref().and_then(|s| s.planned().clone());
    Ok(match step {
        Step::Load(m) => {
            let path = crate::image::guest_module_path(&m.module);
            expect_outcome(guest.load_module(&path, &m.params)?, errno(&m.expect_errno).as_deref())
        }
        Step::Unload(m) => expect_outcome(guest.unload_module(&m.module)?, errno(&m.expect_errno).as_deref()),
        Step::Write(w) => {
            let data = format!("{}\n", w.value);
            expect_outcome(guest.write_file(&w.path, &data)?, errno(&w.expect_errno).as_deref())
        }
        Step::Read(r) => check_read(r, guest.read_file(&r.path)?),
        Step::Wait(w) => run_wait(w, guest, state)?,
        Step::ExpectExists(p) => {
            holds_now(guest, Condition::Exists { path: p.clone() }, || (format!("{p} exists"), "it does not exist"))?
        }
        Step::ExpectAbsent(p) => {
            holds_now(guest, Condition::Absent { path: p.clone() }, || (format!("{p} is absent"), "it exists"))?
        }
        Step::Stays(st) => {
            let cond = Condition::FileNotEquals { path: st.path.clone(), value: st.equals.planned().clone() };
            let (changed, last) = guest.wait_for(cond, Duration::from_secs_f64(st.for_s))?;
            if changed {
                Err((
                    format!("{} to stay {:?} for {}s", st.path, st.equals.planned(), st.for_s),
                    format!("it became {:?}", last.unwrap_or_default().trim_end()),
                ))
            } else {
                Ok(())
            }
        }
        Step::Tree(t) => match guest.list_tree(&t.path)? {
            Err(e) => Err((format!("the tree below {}", t.path), describe_errno(&e))),
            Ok(entries) => compare_text(&normalise_listing(t.equals.planned()), &render_tree(&entries)),
        },
        Step::Mark(name) => {
            let next = guest.read_kmsg(0)?.last().map_or(0, |r| r.seq + 1);
            state.marks.insert(name.clone(), next);
            Ok(())
        }
        Step::Kmsg(k) => {
            let since = k.since.as_ref().map_or(0, |m| state.marks.get(&m.value).copied().unwrap_or(0));
            check_kmsg(k, &guest.read_kmsg(since)?)
        }
        Step::PatchState(p) => check_patch_state(p, &guest.tasks()?),
        Step::StartReader(r) => {
            guest.start_reader(&r.tag, &r.path)?;
            Ok(())
        }
        Step::Reader(r) => check_reader(r, guest)?,
        Step::Taint(t) => check_taint(t, guest.read_file("/proc/sys/kernel/tainted")?),
        Step::Snapshot(name) => snapshot_step(name, guest, state)?,
    })
}

/// Capture the state and hold it against the stored snapshot: a difference fails the step,
/// a missing snapshot only if snapshots are required.
fn snapshot_step(name: &str, guest: &mut dyn Guest, state: &mut CaseState) -> StepResult {
    let contents = crate::snapshot::capture(guest, &state.modules)?;
    let Some(ctx) = state.snapshots else { return Ok(Ok(())) };
    let key = crate::snapshot::store::SnapshotKey {
        source: &ctx.source,
        suite: &ctx.suite,
        case: state.case.name(),
        name,
        release: &ctx.release,
    };
    let r = ctx
        .settings
        .compare(&key, &contents)
        .map_err(|e| GuestError::harness(format!("storing snapshot {name}: {e}")))?;
    let verdict = match r.status {
        SnapshotStatus::Changed => {
            Err((format!("snapshot {name} as stored in {}", r.file), r.diff.clone().unwrap_or_default()))
        }
        SnapshotStatus::New if ctx.settings.require => Err((
            format!("a stored snapshot {name} for kernel {}", ctx.release),
            format!("none in {}; take it with --snapshots accept", r.file),
        )),
        _ => Ok(()),
    };
    state.taken.push(r);
    Ok(verdict)
}

/// A condition checked once, now (a wait with no time to wait).
fn holds_now(guest: &mut dyn Guest, cond: Condition, mismatch: impl FnOnce() -> (String, &'static str)) -> StepResult {
    let (met, _) = guest.wait_for(cond, Duration::ZERO)?;
    Ok(if met {
        Ok(())
    } else {
        let (expected, actual) = mismatch();
        Err((expected, actual.to_string()))
    })
}

/// `stat -c %A`-style mode string.
fn mode_string(kind: EntryKind, mode: u32) -> String {
    let t = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// One line per entry: `drwxr-xr-x vmlinux/`, `-rw-r--r-- enabled = 1`,
/// `--w------- force (EACCES)`, `lrwxrwxrwx link -> target`. Multi-line values are escaped.
pub fn render_tree(entries: &[TreeEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&mode_string(e.kind, e.mode));
        out.push(' ');
        out.push_str(&e.path);
        match e.kind {
            EntryKind::Dir => out.push('/'),
            EntryKind::Symlink => {
                out.push_str(" -> ");
                out.push_str(e.target.as_deref().unwrap_or("?"));
            }
            _ => match (&e.value, e.read_errno) {
                (Some(v), _) => {
                    out.push_str(" = ");
                    out.push_str(&v.trim_end_matches('\n').replace('\n', "\\n"));
                }
                (None, Some(errno)) => out.push_str(&format!(" ({})", klp_protocol::errno_name(errno))),
                (None, None) => {}
            },
        }
        out.push('\n');
    }
    out
}

/// An expected listing as written in YAML: surrounding blanks and empty lines do not count.
fn normalise_listing(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect()
}

/// Equal, or a mismatch whose `actual` is a unified diff (expected → actual).
fn compare_text(expected: &str, actual: &str) -> Result<(), (String, String)> {
    if expected == actual {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(expected, actual);
    let shown = diff.unified_diff().context_radius(3).header("expected", "actual").to_string();
    Err(("the listing in the suite (diff: - expected, + actual)".into(), shown))
}

/// A kernel-log pattern: a substring, or `re:<regex>` (validated when the suite was loaded).
fn pattern_matches(pattern: &str, text: &str) -> bool {
    match pattern.strip_prefix("re:") {
        Some(re) => regex::Regex::new(re).is_ok_and(|r| r.is_match(text)),
        None => text.contains(pattern),
    }
}

fn check_kmsg(k: &KmsgStep, records: &[KmsgRecord]) -> Result<(), (String, String)> {
    let excerpt = |pred: &dyn Fn(&str) -> bool| -> String {
        let lines: Vec<&str> = records.iter().map(|r| r.text.as_str()).filter(|t| pred(t)).collect();
        let start = lines.len().saturating_sub(30);
        if lines.is_empty() {
            "(no matching records)".into()
        } else {
            lines[start..].join("\n")
        }
    };
    let livepatchy = |t: &str| t.contains("livepatch") || t.contains("klp");
    let matching = |p: &str| records.iter().filter(|r| pattern_matches(p, &r.text)).count();
    let mut from = 0;
    for want in k.contains.planned() {
        match records[from..].iter().position(|r| pattern_matches(want, &r.text)) {
            Some(i) => from += i + 1,
            None => {
                let seen_earlier = records[..from].iter().any(|r| pattern_matches(want, &r.text));
                let after = if from > 0 { " after the previous one" } else { "" };
                let why = if seen_earlier {
                    "it appears, but out of order; the log:"
                } else {
                    "not in the log; livepatch lines:"
                };
                return Err((format!("a record matching {want:?}{after}"), format!("{why}\n{}", excerpt(&livepatchy))));
            }
        }
    }
    for unwanted in k.absent.planned() {
        if let Some(r) = records.iter().find(|r| pattern_matches(unwanted, &r.text)) {
            return Err((format!("no record matching {unwanted:?}"), r.text.clone()));
        }
    }
    for (p, n) in &k.count {
        let got = matching(p);
        if got != *n {
            let shown = excerpt(&|t| pattern_matches(p, t));
            return Err((format!("{n} records matching {p:?}"), format!("{got}:\n{shown}")));
        }
    }
    for (p, n) in &k.min_count {
        let got = matching(p);
        if got < *n {
            let shown = excerpt(&|t| pattern_matches(p, t));
            return Err((format!("at least {n} records matching {p:?}"), format!("{got}:\n{shown}")));
        }
    }
    Ok(())
}

/// `/proc/sys/kernel/tainted` has every flag of `set` and none of `clear`.
fn check_taint(t: &crate::suite::TaintStep, value: Result<String, Errno>) -> Result<(), (String, String)> {
    use klp_protocol::taint::{describe_taint, taint_bit};
    let text = value.map_err(|e| ("a readable /proc/sys/kernel/tainted".to_string(), describe_errno(&e)))?;
    let bits: u64 =
        text.trim().parse().map_err(|_| ("a number in /proc/sys/kernel/tainted".to_string(), text.clone()))?;
    let has = |l: &String| taint_bit(l).is_some_and(|b| bits & (1 << b) != 0);
    let missing: Vec<&String> = t.set.iter().filter(|l| !has(l)).collect();
    let extra: Vec<&String> = t.clear.iter().filter(|l| has(l)).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err((
        format!("taint flags {:?} set and {:?} clear", t.set, t.clear),
        format!("tainted = {}", describe_taint(text.trim())),
    ))
}

fn check_patch_state(p: &PatchStateStep, tasks: &[TaskInfo]) -> Result<(), (String, String)> {
    let selected: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| p.comm.as_deref().is_none_or(|c| t.comm.starts_with(c)))
        .filter(|t| t.patch_state.is_some())
        .collect();
    let who = p.comm.as_deref().map_or("every task".to_string(), |c| format!("tasks named {c}*"));
    if selected.is_empty() {
        return Err((format!("{who} to exist"), "no such task".into()));
    }
    let show = |ts: &[&TaskInfo]| {
        let mut v: Vec<String> = ts
            .iter()
            .take(10)
            .map(|t| format!("{}:{} patch_state={}", t.comm, t.tid, t.patch_state.unwrap()))
            .collect();
        if ts.len() > 10 {
            v.push(format!("… and {} more", ts.len() - 10));
        }
        v.join(", ")
    };
    if let Some(want) = p.equals {
        let off: Vec<&TaskInfo> = selected.iter().copied().filter(|t| t.patch_state != Some(want)).collect();
        if !off.is_empty() {
            return Err((format!("{who} read patch_state {want}"), show(&off)));
        }
    }
    if let Some(not) = p.none {
        let off: Vec<&TaskInfo> = selected.iter().copied().filter(|t| t.patch_state == Some(not)).collect();
        if !off.is_empty() {
            return Err((format!("none of {who} reads patch_state {not}"), show(&off)));
        }
    }
    Ok(())
}

fn check_reader(r: &ReaderStep, guest: &mut dyn Guest) -> StepResult {
    let timeout = Duration::from_secs_f64(r.timeout_s.unwrap_or(0.0));
    let (done, _) = guest.wait_for(Condition::ReaderDone { tag: r.tag.clone() }, timeout)?;
    if !done {
        return Ok(Err((format!("reader {} finished within {timeout:?}", r.tag), "it is still reading".into())));
    }
    let st = guest.reader_status(&r.tag)?;
    let got = match (st.data, st.errno) {
        (_, Some(e)) => Err(e),
        (Some(d), None) => Ok(d),
        (None, None) => Ok(String::new()),
    };
    let as_read = ReadStep {
        path: format!("reader {}", r.tag),
        kernels: None,
        equals: r.equals.clone(),
        not_equals: None,
        contains: r.contains.clone(),
        expect_errno: r.expect_errno.clone(),
    };
    Ok(check_read(&as_read, got))
}

fn check_read(r: &ReadStep, got: Result<String, Errno>) -> Result<(), (String, String)> {
    if let Some(want) = &r.expect_errno {
        return expect_outcome(got.map(|_| ()), want.planned().as_deref());
    }
    let text = match got {
        Ok(t) => t,
        Err(e) => return Err(("a readable file".into(), describe_errno(&e))),
    };
    let value = text.trim_end_matches('\n');
    if let Some(want) = r.equals.as_ref().map(PerKernel::planned) {
        if value != want {
            return Err((format!("{want:?}"), format!("{value:?}")));
        }
    }
    if let Some(unwanted) = r.not_equals.as_ref().map(PerKernel::planned) {
        if value == unwanted {
            return Err((format!("anything but {unwanted:?}"), format!("{value:?}")));
        }
    }
    if let Some(needle) = r.contains.as_ref().map(PerKernel::planned) {
        if !value.contains(needle.as_str()) {
            return Err((format!("text containing {needle:?}"), format!("{value:?}")));
        }
    }
    Ok(())
}

/// Poll the kernel log from the host until a record matches; the agent keeps the log, so a
/// record printed between two polls is not missed.
fn wait_kmsg(pattern: &str, since: Option<u64>, timeout: Duration, guest: &mut dyn Guest) -> StepResult {
    let started = Instant::now();
    let mut next = since.unwrap_or(0);
    loop {
        let records = guest.read_kmsg(next)?;
        if records.iter().any(|r| pattern_matches(pattern, &r.text)) {
            return Ok(Ok(()));
        }
        if let Some(last) = records.last() {
            next = last.seq + 1;
        }
        if started.elapsed() >= timeout {
            return Ok(Err((
                format!("a kernel log record matching {pattern:?} within {timeout:?}"),
                "none appeared".into(),
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_wait(w: &WaitStep, guest: &mut dyn Guest, state: &CaseState) -> StepResult {
    let timeout = Duration::from_secs_f64(w.timeout_s.unwrap_or(WaitStep::DEFAULT_TIMEOUT_S));
    if let Some(pattern) = &w.kmsg {
        return wait_kmsg(
            pattern,
            w.since.as_ref().map(|m| state.marks.get(&m.value).copied().unwrap_or(0)),
            timeout,
            guest,
        );
    }
    let (cond, expected) = match (&w.path, &w.absent, &w.exists) {
        (Some(p), _, _) => {
            let v = w.equals.as_ref().map(|e| e.planned().clone()).unwrap_or_default();
            (Condition::FileEquals { path: p.clone(), value: v.clone() }, format!("{p} reads {v:?} within {timeout:?}"))
        }
        (_, Some(p), _) => (Condition::Absent { path: p.clone() }, format!("{p} disappears within {timeout:?}")),
        (_, _, Some(p)) => (Condition::Exists { path: p.clone() }, format!("{p} appears within {timeout:?}")),
        _ => unreachable!("wait forms are validated at load"),
    };
    let (met, last) = guest.wait_for(cond, timeout)?;
    Ok(if met {
        Ok(())
    } else {
        Err((
            expected,
            match last {
                Some(v) => format!("still {v:?} after {timeout:?}"),
                None => format!("unchanged after {timeout:?}"),
            },
        ))
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory guest for the executor's unit tests: files, modules and a scripted
    //! kernel problem. Never the proof that a feature works: that is the VM tests' job.
    use super::*;
    use klp_protocol::ReaderState;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeGuest {
        pub files: BTreeMap<String, String>,
        pub loaded: Vec<String>,
        pub write_errno: Option<i32>,
        pub problem_after_writes: Option<usize>,
        pub writes: usize,
        /// Every request fails with this once set (a guest that stopped answering).
        pub broken: Option<GuestError>,
        /// What the kernel printed on the console.
        pub console: String,
        pub kmsg: Vec<KmsgRecord>,
        pub tasks: Vec<TaskInfo>,
        pub readers: BTreeMap<String, ReaderState>,
    }

    fn enoent() -> Errno {
        Errno::new(2, "No such file or directory")
    }

    impl FakeGuest {
        fn up(&self) -> Result<(), GuestError> {
            self.broken.clone().map_or(Ok(()), Err)
        }
    }

    impl Guest for FakeGuest {
        fn read_file(&mut self, path: &str) -> Result<Result<String, Errno>, GuestError> {
            self.up()?;
            Ok(self.files.get(path).cloned().ok_or_else(enoent))
        }
        fn write_file(&mut self, path: &str, data: &str) -> Result<Result<(), Errno>, GuestError> {
            self.up()?;
            self.writes += 1;
            if let Some(e) = self.write_errno {
                return Ok(Err(Errno::new(e, "from fake")));
            }
            match self.files.get_mut(path) {
                Some(v) => {
                    *v = data.to_string();
                    Ok(Ok(()))
                }
                None => Ok(Err(enoent())),
            }
        }
        fn load_module(&mut self, path: &str, _params: &str) -> Result<Result<(), Errno>, GuestError> {
            self.up()?;
            let name = path.rsplit('/').next().unwrap().trim_end_matches(".ko").to_string();
            if self.loaded.contains(&name) {
                return Ok(Err(Errno::new(17, "File exists")));
            }
            self.loaded.push(name);
            Ok(Ok(()))
        }
        fn unload_module(&mut self, name: &str) -> Result<Result<(), Errno>, GuestError> {
            self.up()?;
            let before = self.loaded.len();
            self.loaded.retain(|m| m != name);
            Ok(if self.loaded.len() < before { Ok(()) } else { Err(enoent()) })
        }
        fn wait_for(&mut self, cond: Condition, _t: Duration) -> Result<(bool, Option<String>), GuestError> {
            self.up()?;
            Ok(match cond {
                Condition::FileEquals { path, value } => {
                    let v = self.files.get(&path).cloned();
                    (v.as_deref().map(|s| s.trim_end_matches('\n')) == Some(value.as_str()), v)
                }
                Condition::Exists { path } => (self.files.contains_key(&path), None),
                Condition::Absent { path } => (!self.files.contains_key(&path), None),
                Condition::FileNotEquals { path, value } => {
                    let v = self.files.get(&path).cloned();
                    (v.as_deref().map(|s| s.trim_end_matches('\n')) != Some(value.as_str()), v)
                }
                Condition::ReaderDone { tag } => (self.readers.get(&tag).is_some_and(|r| r.done), None),
            })
        }
        fn list_tree(&mut self, path: &str) -> Result<Result<Vec<TreeEntry>, Errno>, GuestError> {
            self.up()?;
            let prefix = format!("{path}/");
            let entries: Vec<TreeEntry> = self
                .files
                .iter()
                .filter_map(|(p, v)| p.strip_prefix(&prefix).map(|rel| (rel, v)))
                .map(|(rel, v)| TreeEntry {
                    path: rel.to_string(),
                    kind: EntryKind::File,
                    mode: 0o644,
                    value: Some(v.clone()),
                    read_errno: None,
                    target: None,
                })
                .collect();
            Ok(if entries.is_empty() { Err(enoent()) } else { Ok(entries) })
        }
        fn read_kmsg(&mut self, since_seq: u64) -> Result<Vec<KmsgRecord>, GuestError> {
            self.up()?;
            Ok(self.kmsg.iter().filter(|r| r.seq >= since_seq).cloned().collect())
        }
        fn tasks(&mut self) -> Result<Vec<TaskInfo>, GuestError> {
            self.up()?;
            Ok(self.tasks.clone())
        }
        fn start_reader(&mut self, tag: &str, path: &str) -> Result<i32, GuestError> {
            self.up()?;
            let data = self.files.get(path).cloned();
            self.readers.insert(
                tag.to_string(),
                ReaderState { tag: tag.into(), pid: 42, done: data.is_some(), errno: None, data },
            );
            Ok(42)
        }
        fn reader_status(&mut self, tag: &str) -> Result<ReaderState, GuestError> {
            self.up()?;
            Ok(self.readers[tag].clone())
        }
        fn kernel_problem(&mut self) -> Option<String> {
            match self.problem_after_writes {
                Some(n) if self.writes >= n => Some("BUG: kernel NULL pointer dereference".into()),
                _ => None,
            }
        }
        fn console_text(&mut self) -> String {
            self.console.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeGuest;
    use super::*;
    use crate::suite::parse_suite;
    use std::path::Path;

    fn case(steps: &str) -> Case {
        let text = format!("version: 1\nsuite: t\ncases:\n  - name: c\n    spec: [L1]\n    steps:\n{steps}");
        parse_suite(Path::new("t.yaml"), &text).unwrap().cases.remove(0)
    }

    fn guest() -> FakeGuest {
        let mut g = FakeGuest::default();
        g.files.insert("/e".into(), "1\n".into());
        g
    }

    #[test]
    fn passing_steps() {
        let c = case("      - load: m\n      - read: {path: /e, equals: '1'}\n      - write: {path: /e, value: '0'}\n      - wait: {path: /e, equals: '0'}\n      - unload: m\n      - expect_absent: /nope\n");
        let r = run_case(&c, &mut guest());
        assert!(r.failure.is_none() && r.harness_error.is_none(), "{r:?}");
        assert_eq!(r.steps.len(), 6);
        assert_eq!(r.steps[2].step, "3: write \"0\" > /e");
    }

    #[test]
    fn mismatch_reports_expected_and_actual() {
        let c = case("      - read: {path: /e, equals: '0'}\n      - load: m\n");
        let r = run_case(&c, &mut guest());
        let f = r.failure.unwrap();
        assert_eq!(f.step, "1: read /e");
        assert_eq!(f.line, Some(7));
        assert_eq!((f.expected.as_str(), f.actual.as_str()), ("\"0\"", "\"1\""));
        assert_eq!(r.steps.len(), 1, "stops at the first failure");
    }

    #[test]
    fn expected_errno_passes_and_wrong_errno_fails() {
        let c = case("      - load: m\n      - load: {module: m, expect_errno: EEXIST}\n");
        assert!(run_case(&c, &mut guest()).failure.is_none());
        let c = case("      - load: m\n      - load: {module: m, expect_errno: EBUSY}\n");
        let f = run_case(&c, &mut guest()).failure.unwrap();
        assert_eq!(f.expected, "failure with EBUSY");
        assert!(f.actual.starts_with("EEXIST (17"), "{}", f.actual);
        let c = case("      - write: {path: /e, value: '1', expect_errno: EINVAL}\n");
        let f = run_case(&c, &mut guest()).failure.unwrap();
        assert_eq!((f.expected.as_str(), f.actual.as_str()), ("failure with EINVAL", "success"));
    }

    #[test]
    fn unexpected_errno_fails() {
        let mut g = guest();
        g.write_errno = Some(22);
        let f = run_case(&case("      - write: {path: /e, value: '1'}\n"), &mut g).failure.unwrap();
        assert_eq!(f.expected, "success");
        assert!(f.actual.starts_with("EINVAL (22"));
    }

    #[test]
    fn wait_timeout_shows_last_value() {
        let f =
            run_case(&case("      - wait: {path: /e, equals: '0', timeout_s: 0.1}\n"), &mut guest()).failure.unwrap();
        assert!(f.actual.contains("\"1\\n\""), "{}", f.actual);
    }

    #[test]
    fn console_problem_fails_the_case_after_the_step() {
        let mut g = guest();
        g.problem_after_writes = Some(1);
        let c = case("      - write: {path: /e, value: '0'}\n      - read: {path: /e, equals: '0'}\n");
        let r = run_case(&c, &mut g);
        let f = r.failure.unwrap();
        assert!(f.actual.contains("BUG: kernel NULL pointer"));
        assert_eq!(r.steps.len(), 1);
    }

    fn rec(seq: u64, text: &str) -> KmsgRecord {
        KmsgRecord { seq, level: 6, ts_us: seq, text: text.into() }
    }

    #[test]
    fn kmsg_order_absence_and_counts() {
        let mut g = guest();
        g.kmsg =
            vec![rec(0, "livepatch: enabling patch 'p'"), rec(1, "noise"), rec(2, "livepatch: 'p': patching complete")];
        let ok = "      - kmsg: {contains: [\"enabling patch 'p'\", \"patching complete\"], absent: [unpatching], count: {livepatch: 2}}\n";
        assert!(run_case(&case(ok), &mut g).failure.is_none());
        let f = run_case(&case("      - kmsg: {contains: [complete, enabling]}\n"), &mut g).failure.unwrap();
        assert!(f.actual.starts_with("it appears, but out of order"), "{}", f.actual);
        let f = run_case(&case("      - kmsg: {absent: [noise]}\n"), &mut g).failure.unwrap();
        assert_eq!(f.actual, "noise");
        let f = run_case(&case("      - kmsg: {count: {livepatch: 1}}\n"), &mut g).failure.unwrap();
        assert!(f.actual.starts_with("2:"), "{}", f.actual);
    }

    #[test]
    fn kmsg_patterns_minimum_counts_and_waits() {
        let mut g = guest();
        g.kmsg = vec![
            rec(0, "livepatch: klp_try_switch_task: klp_ref_busy:93 is sleeping on function klp_ref_busy_func"),
            rec(1, "livepatch: klp_try_switch_task: klp_ref_busy:93 is sleeping on function klp_ref_busy_func"),
        ];
        let ok = "      - kmsg: {contains: ['re:klp_ref_busy:\\d+ is sleeping on function klp_ref_busy_func'], min_count: {sleeping: 2}}\n";
        assert!(run_case(&case(ok), &mut g).failure.is_none(), "{ok}");
        let f = run_case(&case("      - kmsg: {min_count: {sleeping: 3}}\n"), &mut g).failure.unwrap();
        assert_eq!(f.expected, "at least 3 records matching \"sleeping\"");
        assert!(run_case(&case("      - wait: {kmsg: 're:busy:9\\d', timeout_s: 1}\n"), &mut g).failure.is_none());
        let f = run_case(&case("      - wait: {kmsg: never, timeout_s: 0.2}\n"), &mut g).failure.unwrap();
        assert_eq!(f.actual, "none appeared");
    }

    #[test]
    fn taint_flags_by_letter() {
        let mut g = guest();
        g.files.insert("/proc/sys/kernel/tainted".into(), "45056\n".into());
        assert!(run_case(&case("      - taint: {set: [K, O, E], clear: [W]}\n"), &mut g).failure.is_none());
        let f = run_case(&case("      - taint: {clear: [K]}\n"), &mut g).failure.unwrap();
        assert_eq!(f.actual, "tainted = 45056 (O E K)");
    }

    #[test]
    fn bad_patterns_and_letters_are_load_errors() {
        let bad = |steps: &str| {
            let text = format!("version: 1\nsuite: t\ncases:\n  - name: c\n    spec: [L1]\n    steps:\n{steps}");
            parse_suite(Path::new("t.yaml"), &text).unwrap_err().to_string()
        };
        assert!(bad("      - kmsg: {contains: ['re:(']}\n").contains("bad regex"));
        assert!(bad("      - taint: {set: [Q]}\n").contains("not a taint flag letter"));
        assert!(bad("      - wait: {path: /x, equals: '1', since: m}\n").contains("`since` goes with `kmsg`"));
    }

    #[test]
    fn kmsg_since_a_mark_sees_only_later_records() {
        let mut g = guest();
        g.kmsg = vec![rec(0, "before")];
        // The mark is taken at the end of the log as it is when the step runs.
        let c = case("      - mark: m\n      - kmsg: {since: m, absent: [before]}\n");
        assert!(run_case(&c, &mut g).failure.is_none());
        let c = case("      - kmsg: {absent: [before]}\n");
        assert!(run_case(&c, &mut g).failure.is_some());
    }

    #[test]
    fn tree_is_rendered_like_stat_and_diffed() {
        let entries = vec![
            TreeEntry {
                path: "enabled".into(),
                kind: EntryKind::File,
                mode: 0o644,
                value: Some("1\n".into()),
                read_errno: None,
                target: None,
            },
            TreeEntry {
                path: "force".into(),
                kind: EntryKind::File,
                mode: 0o200,
                value: None,
                read_errno: Some(13),
                target: None,
            },
            TreeEntry {
                path: "vmlinux".into(),
                kind: EntryKind::Dir,
                mode: 0o755,
                value: None,
                read_errno: None,
                target: None,
            },
        ];
        assert_eq!(render_tree(&entries), "-rw-r--r-- enabled = 1\n--w------- force (EACCES)\ndrwxr-xr-x vmlinux/\n");
        let mut g = guest();
        g.files.insert("/lp/enabled".into(), "1\n".into());
        let ok = "      - tree:\n          path: /lp\n          equals: |\n            -rw-r--r-- enabled = 1\n";
        assert!(run_case(&case(ok), &mut g).failure.is_none());
        let bad = "      - tree:\n          path: /lp\n          equals: |\n            -rw-r--r-- enabled = 0\n";
        let f = run_case(&case(bad), &mut g).failure.unwrap();
        assert!(
            f.actual.contains("-rw-r--r-- enabled = 0") && f.actual.contains("+-rw-r--r-- enabled = 1"),
            "{}",
            f.actual
        );
    }

    #[test]
    fn patch_state_selects_by_comm() {
        let t = |comm: &str, ps: i32| TaskInfo {
            pid: 1,
            tid: 1,
            comm: comm.into(),
            state: "S".into(),
            patch_state: Some(ps),
            kthread: false,
        };
        let mut g = guest();
        g.tasks = vec![t("init", 1), t("klp_ref_busy", 0), t("kworker/0:1", 1)];
        assert!(run_case(&case("      - patch_state: {none: -1}\n"), &mut g).failure.is_none());
        assert!(run_case(&case("      - patch_state: {comm: klp_ref_busy, equals: 0}\n"), &mut g).failure.is_none());
        let f = run_case(&case("      - patch_state: {equals: 1}\n"), &mut g).failure.unwrap();
        assert_eq!(f.actual, "klp_ref_busy:1 patch_state=0");
        let f = run_case(&case("      - patch_state: {comm: nobody, equals: 1}\n"), &mut g).failure.unwrap();
        assert_eq!(f.actual, "no such task");
    }

    #[test]
    fn stays_fails_when_the_value_changes() {
        let mut g = guest();
        assert!(run_case(&case("      - stays: {path: /e, equals: '1', for_s: 0.1}\n"), &mut g).failure.is_none());
        let f = run_case(&case("      - stays: {path: /e, equals: '0', for_s: 0.1}\n"), &mut g).failure.unwrap();
        assert_eq!(f.actual, "it became \"1\"");
    }

    #[test]
    fn readers_report_what_they_read() {
        let mut g = guest();
        let c = case("      - start_reader: {tag: r, path: /e}\n      - reader: {tag: r, equals: '1'}\n");
        assert!(run_case(&c, &mut g).failure.is_none());
        let c = case("      - start_reader: {tag: r, path: /blocks}\n      - reader: {tag: r, contains: x}\n");
        let f = run_case(&c, &mut g).failure.unwrap();
        assert_eq!(f.actual, "it is still reading");
    }

    const BOOT: &str = "\
[    0.000000] Linux version 6.1.0-57-rt-amd64 (debian-kernel@lists.debian.org)
[    1.310002] Run /init as init process
[    1.401113] klp-agent: serving on /dev/vport0p1 (virtio:org.klp-conform.agent, opened in 12 ms)
";

    /// What PREEMPT_RT under TCG printed when the second UART's threaded IRQ fell behind and
    /// the kernel disabled it, silencing an agent on ttyS1: a call trace, but no oops.
    const NOBODY_CARED: &str = "\
[   41.771043] irq 3: nobody cared (try booting with the \"irqpoll\" option)
[   41.771043] CPU: 0 PID: 93 Comm: irq/3-ttyS1 Tainted: G           OE K    6.1.0-57-rt-amd64 #1  Debian 6.1.192-1
[   41.771043] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   41.771043] Call Trace:
[   41.771043]  <IRQ>
[   41.771043]  dump_stack_lvl+0x44/0x5c
[   41.771043]  __report_bad_irq+0x35/0xa7
[   41.771043]  note_interrupt.cold+0xb/0x61
[   41.771043]  </IRQ>
[   41.771043] handlers:
[   41.771043] [<00000000a5f6d1c2>] irq_default_primary_handler threaded [<0000000093a1c7a3>] serial8250_interrupt
[   41.771043] Disabling IRQ #3
";

    fn lost(message: &str) -> GuestError {
        GuestError { message: message.into(), fault: GuestFault::Lost, excerpt: None }
    }

    /// A case whose first request finds the guest not answering with `e`.
    fn silent(g: &mut FakeGuest, e: GuestError, console: &str) -> CaseRun {
        g.console = format!("{BOOT}{console}");
        g.broken = Some(e);
        run_case(&case("      - read: {path: /e, equals: '1'}\n      - write: {path: /e, value: '0'}\n"), g)
    }

    /// The agent went silent and the kernel printed no oops, BUG, WARNING or panic: the harness
    /// lost its channel, which is an ERROR with the console excerpt, not a conformance FAIL.
    #[test]
    fn a_lost_channel_with_a_quiet_kernel_is_an_error() {
        let mut g = guest();
        let r = silent(&mut g, lost("agent did not answer `read_file` within 30.0s"), NOBODY_CARED);
        assert!(r.failure.is_none(), "{:?}", r.failure);
        let e = r.harness_error.unwrap();
        assert!(
            e.starts_with("step 1: read /e: the harness lost its channel to the agent: agent did not answer"),
            "{e}"
        );
        assert!(e.contains("no oops, BUG, WARNING or panic"), "{e}");
        assert!(e.contains("irq 3: nobody cared") && e.contains("Disabling IRQ #3"), "{e}");
        // Nothing at all on the console: the tail is shown.
        let r = silent(&mut guest(), lost("agent channel closed during `write_file` (QEMU gone?)"), "");
        let e = r.harness_error.unwrap();
        assert!(e.contains("klp-agent: serving on /dev/vport0p1"), "{e}");
    }

    /// The same silence after the kernel oopsed (or warned) is the kernel's failure.
    #[test]
    fn a_lost_channel_after_an_oops_or_warning_is_a_failure() {
        let oops = "[   12.3] BUG: kernel NULL pointer dereference, address: 0000000000000000\n\
                    [   12.3] Oops: 0000 [#1] PREEMPT SMP NOPTI\n[   12.3] Call Trace:\n";
        for console in [
            format!("{NOBODY_CARED}{oops}"),
            "[    5.2] WARNING: CPU: 0 PID: 57 at kernel/livepatch/transition.c:123 x\n".to_string(),
        ] {
            let r = silent(&mut guest(), lost("agent did not answer `read_file` within 30.0s"), &console);
            assert!(r.harness_error.is_none(), "{:?}", r.harness_error);
            let f = r.failure.unwrap();
            assert_eq!((f.step.as_str(), f.expected.as_str()), ("1: read /e", "the kernel to stay up"));
            assert!(f.actual.starts_with("agent did not answer `read_file`"), "{}", f.actual);
            assert!(
                f.actual.contains("BUG: kernel NULL pointer") || f.actual.contains("WARNING: CPU: 0"),
                "{}",
                f.actual
            );
        }
    }

    /// A panic QMP reported, before the (threaded, PREEMPT_RT) console printed it: a failure
    /// with what the VM saw.
    #[test]
    fn a_kernel_the_vm_saw_die_is_a_failure() {
        let e = GuestError {
            message: "guest died during `write_file`: guest panicked (QMP GUEST_PANICKED)".into(),
            fault: GuestFault::KernelDied,
            excerpt: Some("[    9.1] sysrq: Trigger a crash".into()),
        };
        let f = silent(&mut guest(), e, "").failure.unwrap();
        assert_eq!(f.expected, "the kernel to stay up");
        assert!(f.actual.contains("GUEST_PANICKED") && f.actual.contains("sysrq: Trigger a crash"), "{}", f.actual);
    }

    /// What the harness could not do stays an ERROR whatever the console shows.
    #[test]
    fn a_harness_fault_is_an_error() {
        let r = silent(
            &mut guest(),
            GuestError::harness("agent could not serve `read_file`: bad request"),
            "[ 5.2] WARNING: CPU: 0 PID: 57 at x\n",
        );
        assert!(r.failure.is_none());
        assert_eq!(r.harness_error.unwrap(), "step 1: read /e: agent could not serve `read_file`: bad request");
    }
}
