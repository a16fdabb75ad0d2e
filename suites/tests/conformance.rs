//! Every conformance case on every selected kernel as one test, for nextest:
//! `cargo nextest run -p klp-conform-suites` lists `<kernel>::<suite>::<case>` (libtest's
//! `--list --format terse`, through libtest-mimic: only the suite files are read, nothing is
//! built, fetched or booted) and runs each by name (`--exact`), so nextest's filtersets, `-j`,
//! retries, `--partition`, JUnit and archives apply to conformance cases.
//!
//! Running a test runs the harness (`klp-conform conformance`, in this process) on that one case:
//! `--kernel K --case <suite>/<case> --shared-guest --out <results>/<kernel>/<suite>/<case>`.
//! Kernel, modules, boot image and the saved booted guest come from the shared cache, made
//! once per kernel by the first test that needs them while the others wait on its locks. Every
//! test leaves a whole run's result files in its directory; `cargo xtask report merge
//! <results>` makes one report of them.
//!
//! Environment:
//! * `KLP_CONFORM_KERNELS`: pinned kernels, comma-separated (`6.1,6.12`), or `matrix`
//!   [default: the pinned default of images/kernels.yaml];
//! * `KLP_CONFORM_RESULTS`: where the per-case results go [default:
//!   `$CARGO_TARGET_DIR` or `<workspace>/target`, then `klp-conform/nextest`];
//! * `KLP_CONFORM_ACCEL`: `auto` (default), `kvm` or `tcg`; `KLP_CONFORM_CACHE` as for the CLI.
//!
//! A case skipped on a kernel (its `requires`) passes and says why on stdout; a conformance
//! failure fails with the step and what it expected; a harness error fails too.

use std::path::{Path, PathBuf};

use clap::Parser;
use klp_conform::cli::Command;
use klp_conform::report::{Report, Status};
use libtest_mimic::{Arguments, Failed, Trial};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() {
    let args = Arguments::from_args();
    let trials = match trials() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    libtest_mimic::run(&args, trials).exit();
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("suites/ is in the workspace").to_path_buf()
}

/// The pinned kernels the tests run on, by name.
fn kernels(ws: &Path) -> Result<Vec<String>, String> {
    let pins = klp_conform::kernel::Pins::load_workspace(ws).map_err(|e| e.to_string())?;
    let wanted = std::env::var("KLP_CONFORM_KERNELS").unwrap_or_default();
    let mut names = Vec::new();
    for n in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match n {
            "matrix" => names.extend(pins.matrix.iter().cloned()),
            "default" => names.push(pins.default.clone()),
            n if pins.get(n).is_some() => names.push(n.to_string()),
            n => return Err(format!("KLP_CONFORM_KERNELS: {n} is not pinned in images/kernels.yaml")),
        }
    }
    if names.is_empty() {
        names.push(pins.default.clone());
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok(names)
}

fn trials() -> Result<Vec<Trial>, String> {
    let ws = workspace();
    let files = klp_conform::suite::resolve_suite_args(&[], &ws.join("suites")).map_err(|e| e.to_string())?;
    let mut cases = Vec::new();
    for f in &files {
        let suite = klp_conform::suite::load_suite(f).map_err(|e| e.to_string())?;
        cases.extend(suite.cases.iter().map(|c| (suite.name().to_string(), c.name().to_string())));
    }
    let mut trials = Vec::new();
    for kernel in kernels(&ws)? {
        for (suite, case) in &cases {
            let (k, s, c) = (kernel.clone(), suite.clone(), case.clone());
            trials.push(Trial::test(format!("{kernel}::{suite}::{case}"), move || run_case(&k, &s, &c)));
        }
    }
    Ok(trials)
}

/// Where the test of `kernel`/`suite`/`case` leaves its result files.
fn results_dir(kernel: &str, suite: &str, case: &str) -> PathBuf {
    let root = match std::env::var_os("KLP_CONFORM_RESULTS") {
        Some(r) => PathBuf::from(r),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"))
            .join("klp-conform/nextest"),
    };
    root.join(kernel).join(suite).join(case)
}

fn run_case(kernel: &str, suite: &str, case: &str) -> Result<(), Failed> {
    let out = results_dir(kernel, suite, case);
    // A result left by an earlier run must not pass for this one's.
    let _ = std::fs::remove_dir_all(&out);
    let accel = std::env::var("KLP_CONFORM_ACCEL").unwrap_or_else(|_| "auto".into());
    let pattern = format!("{}/{}", globset_escape(suite), globset_escape(case));
    let argv = [
        "klp-conform",
        "conformance",
        "--kernel",
        kernel,
        "--suite",
        suite,
        "--case",
        &pattern,
        "--jobs",
        "1",
        "--shared-guest",
        "--accel",
        &accel,
        "--out",
    ];
    let cli = Cli::try_parse_from(argv.iter().map(std::ffi::OsStr::new).chain([out.as_os_str()]))
        .map_err(|e| Failed::from(format!("bad arguments: {e}")))?;
    let code = klp_conform::cli::execute(cli.command);
    let report_path = out.join("report.json");
    let report: Option<Report> = std::fs::read_to_string(&report_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let outcome = report.as_ref().and_then(|r| r.runs.first()).and_then(|r| r.cases.first());
    match (code, outcome) {
        (0, Some(c)) if c.status == Status::Skip => {
            println!("SKIP {kernel}::{suite}::{case}: {}", c.skip_reason.as_deref().unwrap_or("no reason given"));
            Ok(())
        }
        (0, Some(_)) => Ok(()),
        (_, Some(c)) => Err(Failed::from(match (&c.failure, &c.error) {
            (Some(f), _) => format!(
                "FAIL at step {}{}\nexpected: {}\nactual:   {}\n(results in {})",
                f.step,
                f.line.map(|l| format!(" (line {l})")).unwrap_or_default(),
                f.expected,
                f.actual,
                out.display()
            ),
            (None, Some(e)) => format!("ERROR (harness): {e}\n(results in {})", out.display()),
            (None, None) => format!("exit code {code}, status {:?} (results in {})", c.status, out.display()),
        })),
        (code, None) => Err(Failed::from(format!(
            "exit code {code} and no case in {} (see the output above)",
            report_path.display()
        ))),
    }
}

/// A name as a glob that matches only itself.
fn globset_escape(s: &str) -> String {
    s.chars().map(|c| if "*?[]{}".contains(c) { format!("[{c}]") } else { c.to_string() }).collect()
}
