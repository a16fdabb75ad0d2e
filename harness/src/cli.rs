//! The command line shared by `klp-conform` and `cargo xtask`: both are thin shells over
//! these commands, so the contract (flags, stdout = KTAP, exit codes) lives in one place.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::kernel::{self, KernelSpec, Pins};
use crate::progress::Progress;
use crate::runner::{self, RunConfig};
use crate::snapshot::{SnapshotMode, SnapshotSettings};
use crate::vm::Accel;

/// Exit code: the harness could not do its job.
pub const EXIT_HARNESS: i32 = 2;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run conformance suites on one or more kernels: KTAP on stdout, results under --out.
    Conformance(ConformanceArgs),
    /// Build the reference livepatch modules for a kernel and print where they are.
    Kmod(KernelArgs),
    /// Fetch (or find) a kernel and print its artefacts; `kernel config <tree>` configures a
    /// kernel source tree for klp-conform.
    Kernel(KernelCommand),
    /// Benchmarks (medians and ratios within one run).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Stored regression snapshots.
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// The pinned kernels of images/kernels.yaml.
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// The suite files themselves.
    #[command(subcommand)]
    Suites(SuitesCommand),
    /// Result files of several runs.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The cache of kernels and builds: verify it, clean it.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the report.json files of shards (nextest partitions, several machines, whole runs)
    /// into one report.json, junit.xml, kcidb.json and report.html, by stable case id (kernel
    /// release + suite + case). A case reported twice with different results is an error (exit
    /// 2, nothing written); a case of the selected suites that no shard reported for a kernel
    /// is listed and becomes an `error` case. Exit code as a run's: 0, 1 or 2.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard results: directories (searched for report.json files, e.g. a nextest results tree
    /// with one per case) or report.json files.
    #[arg(required = true, value_name = "DIR")]
    pub inputs: Vec<PathBuf>,
    /// Where the merged report.json, junit.xml, kcidb.json, report.html and the logs they refer
    /// to go.
    #[arg(long, value_name = "DIR", default_value = "target/klp-conform/merged")]
    pub out: PathBuf,
    /// Kernels the shards must cover (pinned name, `matrix`, or release), besides every kernel
    /// they report. Repeatable.
    #[arg(long = "kernel", value_name = "SPEC")]
    pub kernels: Vec<String>,
    /// The suites the shards ran (name or path), whose every case each kernel must have.
    /// Repeatable; default: every suite.
    #[arg(long = "suite", value_name = "NAME|PATH")]
    pub suites: Vec<String>,
    /// Only these cases of them (`<suite>/<case>` globs) are expected. Repeatable.
    #[arg(long = "case", value_name = "PATTERN")]
    pub cases: Vec<String>,
    /// Do not check that every expected case is there.
    #[arg(long)]
    pub no_expect: bool,
    #[command(flatten)]
    pub reports: Box<ReportArgs>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Check every cache entry against the integrity record written when it was made: one line
    /// per entry (ok, broken and why, unrecorded). Exit 0 when none is broken, 1 otherwise.
    Verify {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Remove the cache entries of the given kernels (extracted tree, vmlinux, module sets),
    /// or with no --kernel every entry. The next run makes what it needs again.
    Clean {
        #[arg(long = "kernel", value_name = "SPEC")]
        kernels: Vec<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SuitesCommand {
    /// Validate suite files and report every problem of every file at once, each with
    /// file:line:column (unknown reference modules included). Exit 0 when all are valid, 2 if not.
    Check {
        /// Suite files [default: every suites/*.yaml].
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Mutation testing of the suites on a real kernel: every selected case runs unmutated
    /// (its baseline) and once per mutant, a wrong variant derived from its own expectations
    /// (another value, errno, message, count or order, a dropped tree line or wait, …), each in
    /// its own guest. A mutant is killed when the mutated case fails, survives when it passes;
    /// errors are reported apart. Prints per case killed/survived/equivalent with the
    /// survivors, a score per suite and overall. Exit 0 when no mutant not marked
    /// `equivalent_mutants` survives, 1 when one does, 2 on a harness error.
    Mutate(Box<MutateArgs>),
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    /// Kernel (as for `conformance`). Repeatable. [default: the pinned default]
    #[arg(long = "kernel", value_name = "SPEC")]
    pub kernels: Vec<String>,
    /// Suite, by name or path. Repeatable; default: every suite.
    #[arg(long = "suite", value_name = "NAME|PATH")]
    pub suites: Vec<String>,
    /// Only the cases whose `<suite>/<case>` matches this glob. Repeatable.
    #[arg(long = "case", value_name = "PATTERN")]
    pub cases: Vec<String>,
    /// Guests at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    /// Run surviving mutants again, up to this many times: a mutant the case kills in any run
    /// is killed (the report says which were killed only on a rerun: they depend on timing).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub reruns: usize,
    /// Run only about one mutant in N (every baseline still runs, with its sampled mutants),
    /// chosen by a hash of the seed and the mutant's name: a quick, rotating check for CI. The
    /// scores then count only the sampled mutants.
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
    /// The seed of `--sample` [default: the number of the day since 1970 (UTC), so that a daily
    /// run rotates through the mutants]. Printed, to run the same sample again.
    #[arg(long, value_name = "SEED", requires = "sample")]
    pub sample_seed: Option<u64>,
    /// Kernel mutants instead of case mutants: run the selected cases against each kernel
    /// mutant, a livepatch core function redirected to a wrong version by the module
    /// `klp_mutant` (loaded right after the guest starts, before the case's steps), and against
    /// its control (`mutant=none`). Reports per mutant which cases detected it (failed while
    /// their control passed), or that it is not applicable to the kernel and why. Exit 0 when
    /// every applicable mutant is detected, 1 when one is not, 2 on errors only.
    #[arg(long)]
    pub kernel_mutants: bool,
    /// Only this kernel mutant (implies --kernel-mutants). Repeatable; default: all of them
    /// (enabled_store_noop, force_store_noop, transition_show_zero, check_stack_always_safe,
    /// switch_task_never, send_signals_noop, free_patch_no_module_put).
    #[arg(long = "kernel-mutant", value_name = "ID")]
    pub kernel_mutant: Vec<String>,
    /// Also write the result as JSON (schema `klp-conform.mutate.v1`) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Where the run's report.json and every mutant's logs go (`<case>@<mutant id>`).
    #[arg(long, value_name = "DIR", default_value = "target/klp-conform/mutate")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Accel,
    /// Keep the initramfs and the saved booted guest in the cache (as for `conformance`).
    #[arg(long)]
    pub shared_guest: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KernelCommand {
    #[command(subcommand)]
    pub sub: Option<KernelSub>,
    #[command(flatten)]
    pub args: KernelArgs,
}

#[derive(Debug, Subcommand)]
pub enum KernelSub {
    /// Give a kernel source tree the smallest config klp-conform and every suite need: `make
    /// <base>`, the tree's scripts/kconfig/merge_config.sh with images/kernel-config.fragment,
    /// `make olddefconfig`; then print what changed against the base, which fragment options
    /// Kconfig did not take, and whether the result has what a run checks. Exit 2 if it lacks
    /// something the harness needs.
    Config {
        /// The kernel source tree (its .config is replaced; the old one is kept as
        /// .config.before-klp-conform).
        tree: PathBuf,
        #[arg(long, value_enum, default_value = "tinyconfig")]
        base: crate::kernel::tree_config::Base,
        /// The fragment to merge [default: <workspace>/images/kernel-config.fragment].
        #[arg(long, value_name = "FILE")]
        fragment: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KernelsCommand {
    /// What is pinned, whether it is cached, and what the archive has now for each pin.
    List {
        /// Download fresh package lists first (otherwise the cached lists are used).
        #[arg(long)]
        refresh: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Move every pin to the newest package of its suite and flavour (on the same kernel
    /// line), rewrite images/kernels.yaml and print what changed.
    Update {
        /// Print what would change without writing the file.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// What appeared, disappeared and changed between two kernels' snapshots, case by case.
    /// Exit 0 when identical, 1 when they differ, 2 on error.
    Diff {
        /// Exactly two kernels: pinned names (`6.1`, `6.12`), `debian:<abi>`,
        /// `debian/<suite>:<abi>` or a build tree (only their releases are needed; nothing is
        /// downloaded).
        #[arg(long = "kernel", value_name = "SPEC", num_args = 1, required = true)]
        kernels: Vec<String>,
        /// Where snapshots are stored [default: <workspace>/suites/snapshots].
        #[arg(long, value_name = "DIR")]
        snapshot_dir: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// One table, cases × kernels: for each kernel whether its snapshots of a case are
    /// identical to the first kernel's, changed, or absent.
    Matrix {
        /// Kernels, the first being the baseline [default: the pinned default, then the rest of
        /// the pinned matrix].
        #[arg(long = "kernel", value_name = "SPEC")]
        kernels: Vec<String>,
        /// Print JSON (schema `klp-conform.snapshot-matrix.v1`) instead of the table.
        #[arg(long)]
        json: bool,
        /// Where snapshots are stored [default: <workspace>/suites/snapshots].
        #[arg(long, value_name = "DIR")]
        snapshot_dir: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Boot-to-agent time and request round trip: the recipe's agent channel against the 8250
    /// UART, and the bzImage against the extracted vmlinux.
    Boot {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Boots per image.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, value_enum, default_value = "tcg")]
        accel: Accel,
    },
    /// What a virtiofs share costs a case (host time): virtiofsd start, hot-add of the
    /// vhost-user-fs-pci device, the guest's mount, on guests restored one at a time.
    Share {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Restores, each with one share added.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long, value_enum, default_value = "tcg")]
        accel: Accel,
    },
    /// Handler latency: what a call of a livepatched function costs, per kernel and state
    /// (unpatched, ftrace-only, patched, patched+ftrace, stacked, replace-nop, after-disable),
    /// interleaved in randomised rounds in one fresh guest per kernel; writes DIR/bench.json
    /// (schema klp-conform.bench.v1) and prints a table, one column per kernel.
    Latency(LatencyArgs),
    /// Compare a bench.json with stored ones (`--baseline`, as `bench latency --baseline` does
    /// after its run), without running anything: exit 1 when an overhead regressed.
    Compare {
        /// The bench.json of the run to judge.
        #[arg(value_name = "BENCH_JSON")]
        run: PathBuf,
        #[command(flatten)]
        compare: CompareArgs,
    },
    /// Wall time of the same cases run three ways, interleaved: one guest at a time each
    /// booting its own (`--jobs 1 --fresh-boot`), parallel guests each booting their own, and
    /// the default (parallel guests restored from one saved booted guest); the ratio, and the
    /// per-case boot-or-restore time.
    Suite {
        #[arg(long = "kernel", value_name = "SPEC")]
        kernels: Vec<String>,
        #[arg(long = "suite", value_name = "NAME|PATH")]
        suites: Vec<String>,
        /// Guests at once for the parallel variants.
        #[arg(long, short = 'j', default_value_t = DEFAULT_JOBS)]
        jobs: usize,
        /// How many times each variant runs (interleaved).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        #[arg(long, value_enum, default_value = "auto")]
        accel: Accel,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Kernels, the first being the baseline of the table (`matrix`: every pinned kernel).
    /// Repeatable. [default: the pinned default]
    #[arg(long = "kernel", value_name = "SPEC")]
    pub kernels: Vec<String>,
    /// `icount`: guest instructions (-icount shift=0,sleep=off, deterministic, comparable
    /// across kernels and hosts); `host`: the host's TSC under plain TCG (ratios within the run
    /// only). Never mixed in one result.
    #[arg(long, value_enum, default_value = "icount")]
    pub clock: crate::bench::latency::Clock,
    /// Rounds; each measures every state once, in a new random order of visits (a visit enters
    /// one configuration, e.g. the patch enabled, and measures every state it offers).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Batches kept per state and round.
    #[arg(long, default_value_t = 31)]
    pub batches: usize,
    /// Batches discarded after every state change.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Calls of the function per batch (with preemption and interrupts off).
    #[arg(long, default_value_t = 1000)]
    pub calls: usize,
    /// Seed of the round order and the bootstrap.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Transitions under load, in a guest of their own booted beside the states' guest: runs of
    /// one enable and one disable each with `--load-tasks` kthreads asleep in the patched
    /// function (0: skip, and no second guest).
    #[arg(long, default_value_t = 10)]
    pub load_runs: usize,
    /// Kernel threads sleeping in the patched function (klp_bench's holders; also the tasks that
    /// hold the transition-held states' transition open), 1..=16.
    #[arg(long, default_value_t = 4)]
    pub load_tasks: usize,
    /// How long each holder stays there once the transition started (guest ms).
    #[arg(long, default_value_t = 2000)]
    pub load_hold_ms: u32,
    /// Kernel functions to time with the guest's function_graph tracer during the rounds
    /// (comma-separated; the trace goes to `logs/<release>/trace.txt`). For finding where state
    /// changes spend their time: the tracer's own ops change the guest, so such a run is not a
    /// baseline.
    #[arg(long, value_delimiter = ',', value_name = "FUNC,...")]
    pub trace_functions: Vec<String>,
    /// Where bench.json goes, and each kernel's guest logs (`logs/<release>/console.log`; the
    /// loaded transitions' guest's in `logs/<release>/loaded/`).
    #[arg(long, value_name = "DIR", default_value = "target/klp-conform/bench")]
    pub out: PathBuf,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `--baseline` and its threshold (`bench latency`, `bench compare`).
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A stored bench.json to compare with, kernel by kernel (matched by release), state by
    /// state; repeatable (e.g. reports/bench/*-icount.json). Refused when measured on another
    /// clock. Exit 1 when an overhead regressed.
    #[arg(long = "baseline", value_name = "FILE")]
    pub baselines: Vec<PathBuf>,
    /// A regression grew by more than this % of the baseline's overhead...
    #[arg(long, value_name = "PCT", default_value_t = 2.0)]
    pub max_growth_pct: f64,
    /// ...and by more than this many units of the clock (instructions/call under icount), with
    /// the 95 % intervals apart.
    #[arg(long, value_name = "N", default_value_t = 2.0)]
    pub max_growth_abs: f64,
}

impl CompareArgs {
    pub fn threshold(&self) -> Result<crate::bench::compare::Threshold, String> {
        if !(self.max_growth_pct >= 0.0 && self.max_growth_abs >= 0.0) {
            return Err("--max-growth-pct and --max-growth-abs must be at least 0".into());
        }
        Ok(crate::bench::compare::Threshold { pct: self.max_growth_pct, abs: self.max_growth_abs })
    }
}

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// Kernel to test: a pinned kernel of images/kernels.yaml (`6.1`, `5.10`, `6.12`, `7.2`,
    /// `6.1-rt`, …), `matrix` (every pinned kernel of the matrix), `debian` (follows bookworm's
    /// linux-image-amd64), `debian:<abi>`, `debian/<suite>:<abi>`, or a build tree. Repeatable.
    /// [default: the pinned default]
    #[arg(long = "kernel", value_name = "SPEC")]
    pub kernels: Vec<String>,
    /// Suite to run, by name (suites/<NAME>.yaml) or path. Repeatable; default: every suite.
    #[arg(long = "suite", value_name = "NAME|PATH")]
    pub suites: Vec<String>,
    /// Only the cases whose `<suite>/<case>` matches this glob (`transition/*`,
    /// `*/force-*`). Repeatable.
    #[arg(long = "case", value_name = "PATTERN")]
    pub cases: Vec<String>,
    /// Print what would run on each kernel (and why a case would be skipped) without building
    /// or booting anything; the kernels are resolved (fetched if needed) to judge their gates.
    #[arg(long)]
    pub list: bool,
    /// Where report.json, report.html, junit.xml, kcidb.json and the per-case logs go.
    #[arg(long, value_name = "DIR", default_value = "target/klp-conform/latest")]
    pub out: PathBuf,
    /// Where the JUnit and KCIDB files go (boxed: the command enum stays small).
    #[command(flatten)]
    pub reports: Box<ReportArgs>,
    /// `auto` uses KVM only if /dev/kvm works and a guest boots in time, else TCG.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Accel,
    /// Regression snapshots: `check` fails a case whose snapshot differs from the stored one,
    /// `review` also leaves .snap.new files for `cargo insta review`, `accept` stores this run's.
    #[arg(long, value_enum, default_value = "check")]
    pub snapshots: SnapshotMode,
    /// A kernel with no stored snapshot fails instead of reporting it as new.
    #[arg(long)]
    pub require_snapshots: bool,
    /// Where snapshots are stored [default: <workspace>/suites/snapshots].
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Every case boots its own guest, instead of starting from one booted guest saved once
    /// per kernel and restored for each case (the default; the report says which was used).
    #[arg(long)]
    pub fresh_boot: bool,
    /// Keep the initramfs and the saved booted guest in the cache (`<cache>/boot/<release>/`,
    /// named by their content) and start from them in later runs and concurrent processes, e.g.
    /// one case per process under nextest; by default they stay in DIR and the saved guest is
    /// deleted when the run ends.
    #[arg(long)]
    pub shared_guest: bool,
    /// Cases run in this many guests at once (a case marked `exclusive` runs alone).
    #[arg(long, short = 'j', value_name = "N", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    /// Your own livepatch modules (boxed: the command enum stays small).
    #[command(flatten)]
    pub user: Box<ModuleArgs>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ModuleArgs {
    /// Your own livepatch module, built for the kernel under test: it is checked before any
    /// guest boots (an ELF kernel module, `livepatch=Y`, the kernel's vermagic; exit 2 if not)
    /// and runs the generic contract suite `module` (one case per module: load, sysfs as the
    /// .ko declares it, transition, taint K, disable, refcount 0, rmmod, snapshots at each
    /// point). Repeatable. Without --suite only the module suites run.
    #[arg(long = "module", value_name = "PATH.ko")]
    pub modules: Vec<PathBuf>,
    /// A suite file of your own whose cases `load` your --module modules by name (the normal
    /// suite format). Repeatable.
    #[arg(long = "module-suite", value_name = "FILE")]
    pub module_suites: Vec<PathBuf>,
    /// Where the snapshots of --module and --module-suite cases are kept
    /// [default: <cache>/module-snapshots]; below it one directory per module
    /// (`<name>-<sha256 prefix>`) or module suite. Never suites/snapshots unless given.
    #[arg(long, value_name = "DIR")]
    pub module_snapshot_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the JUnit XML here instead of DIR/junit.xml.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the KCIDB v5 JSON here instead of DIR/kcidb.json.
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,
    /// Where CI publishes DIR: KCIDB's log and config URLs are made below it
    /// [default: DIR as a file:// URL].
    #[arg(long, value_name = "URL", value_parser = crate::report::kcidb::parse_url_base)]
    pub kcidb_url_base: Option<url::Url>,
}

/// Guests mostly wait (transitions retry once a second, fake signals come after 15 s), so more
/// guests than cores pays off. Measured on a 2-core host, full default-kernel run, restored
/// guests: 1 → ~11 min, 2 → 179 s, 3 → 131 s, 4 → 108 s, 6 → 97 s, 8 → 84 s (README).
pub const DEFAULT_JOBS: usize = 8;

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// A pinned kernel, `debian`, `debian:<abi>`, `debian/<suite>:<abi>` or a build tree
    /// [default: the pinned default].
    #[arg(long = "kernel", value_name = "SPEC")]
    pub kernel: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Cache for kernels and builds [default: $KLP_CONFORM_CACHE or ~/.cache/klp-conform].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The klp-conform checkout (reference-kmod/, suites/, the agent crate).
    #[arg(long, value_name = "DIR", default_value_os_t = default_workspace())]
    pub workspace: PathBuf,
}

impl CommonArgs {
    fn cache(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(kernel::default_cache_dir)
    }

    fn pins(&self) -> Result<Pins, String> {
        Pins::load_workspace(&self.workspace).map_err(|e| e.to_string())
    }

    /// `--kernel` arguments as specs (`matrix` expanded); none means the pinned default.
    fn kernel_specs(&self, args: &[String]) -> Result<Vec<KernelSpec>, String> {
        let pins = self.pins()?;
        if args.is_empty() {
            return Ok(vec![KernelSpec::Pinned(pins.default_pin().clone())]);
        }
        let mut specs = Vec::new();
        for a in args {
            specs.extend(KernelSpec::parse_all(a, &pins).map_err(|e| e.to_string())?);
        }
        Ok(specs)
    }
}

/// The checkout this binary was built from.
pub fn default_workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// Ctrl-C or SIGTERM: kill every VM and build tool at once (they also die with us through
/// PDEATHSIG, this just does not wait for it), say so, and exit 130 without writing a partial
/// report. Cache entries appear only by rename once whole, so an interrupted build leaves a
/// scratch directory the next build sweeps, never a broken entry.
extern "C" fn on_interrupt(_sig: libc::c_int) {
    crate::vm::kill_all_children();
    const MSG: &[u8] = b"\ninterrupted: every VM and build tool was killed; no report written\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(130);
    }
}

fn install_interrupt_handler() {
    // SAFETY: the handler only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_interrupt as *const () as libc::sighandler_t);
    }
}

/// Run a command; the return value is the process exit code.
pub fn execute(cmd: Command) -> i32 {
    install_interrupt_handler();
    let progress = Progress::new();
    match cmd {
        Command::Conformance(a) => conformance(a, &progress),
        Command::Kmod(a) => with_kernel(&a, &progress, |k| {
            let set =
                crate::kmod::build_all(k, &a.common.workspace.join("reference-kmod"), &a.common.cache(), &progress)
                    .map_err(|e| runner::chain_error(&e))?;
            for (name, path) in &set.modules {
                println!("{name}\t{}", path.display());
            }
            Ok(())
        }),
        Command::Bench(BenchCommand::Boot { kernel: a, runs, accel }) => with_kernel(&a, &progress, |k| {
            if runs == 0 || accel == Accel::Auto {
                return Err("--runs must be at least 1 and --accel kvm or tcg".into());
            }
            let agent =
                crate::image::agent_binary(&a.common.workspace, &progress).map_err(|e| runner::chain_error(&e))?;
            let recipe = crate::image::GuestRecipe::from_workspace(&a.common.workspace).map_err(|e| e.to_string())?;
            let bench = crate::bench::boot_to_agent(k, &agent, &a.common.cache(), &recipe, accel, runs, &progress)?;
            print!("{}", bench.render(&format!("{} under {accel}", k.release)));
            Ok(())
        }),
        Command::Bench(BenchCommand::Share { kernel: a, runs, accel }) => with_kernel(&a, &progress, |k| {
            if runs == 0 || accel == Accel::Auto {
                return Err("--runs must be at least 1 and --accel kvm or tcg".into());
            }
            let agent =
                crate::image::agent_binary(&a.common.workspace, &progress).map_err(|e| runner::chain_error(&e))?;
            let recipe = crate::image::GuestRecipe::from_workspace(&a.common.workspace).map_err(|e| e.to_string())?;
            let series = crate::bench::share_cost(k, &agent, &a.common.cache(), &recipe, accel, runs, &progress)?;
            print!(
                "{}",
                crate::bench::render(
                    &format!("one virtiofs share on a restored guest, {} under {accel}, host time", k.release),
                    &series
                )
            );
            Ok(())
        }),
        Command::Bench(BenchCommand::Latency(a)) => bench_exit(bench_latency(&a, &progress)),
        Command::Bench(BenchCommand::Compare { run, compare }) => bench_exit(bench_compare(&run, &compare)),
        Command::Bench(BenchCommand::Suite { kernels, suites, jobs, rounds, accel, common }) => {
            report_result(bench_suite(&kernels, &suites, jobs, rounds, accel, &common, &progress))
        }
        Command::Snapshots(SnapshotsCommand::Diff { kernels, snapshot_dir, common }) => {
            let dir = snapshot_dir.clone().unwrap_or_else(|| common.workspace.join("suites/snapshots"));
            snapshots_diff(&kernels, &dir, &common)
        }
        Command::Snapshots(SnapshotsCommand::Matrix { kernels, json, snapshot_dir, common }) => {
            let dir = snapshot_dir.clone().unwrap_or_else(|| common.workspace.join("suites/snapshots"));
            report_result(snapshots_matrix(&kernels, json, &dir, &common))
        }
        Command::Suites(SuitesCommand::Check { files, common }) => suites_check(&files, &common),
        Command::Suites(SuitesCommand::Mutate(a)) => suites_mutate(&a, &progress),
        Command::Report(ReportCommand::Merge(a)) => report_merge(&a, &progress),
        Command::Kernels(KernelsCommand::List { refresh, common }) => {
            report_result(crate::kernel::pin_tools::list(&common.pins(), &common.cache(), refresh, &progress))
        }
        Command::Kernels(KernelsCommand::Update { dry_run, common }) => {
            report_result(crate::kernel::pin_tools::update(&common.pins(), &common.cache(), dry_run, &progress))
        }
        Command::Cache(CacheCommand::Verify { common }) => {
            match crate::cache::verify_all(&common.cache(), &mut std::io::stdout().lock()) {
                Ok(0) => 0,
                Ok(_) => 1,
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_HARNESS
                }
            }
        }
        Command::Cache(CacheCommand::Clean { kernels, common }) => report_result(cache_clean(&kernels, &common)),
        Command::Kernel(KernelCommand { sub: Some(KernelSub::Config { tree, base, fragment, common }), .. }) => {
            kernel_config(&tree, base, fragment, &common, &progress)
        }
        Command::Kernel(KernelCommand { sub: None, args: a }) => with_kernel(&a, &progress, |k| {
            println!("{}", serde_json::to_string_pretty(k).expect("kernel serialises"));
            Ok(())
        }),
    }
}

fn cache_clean(kernels: &[String], common: &CommonArgs) -> Result<(), String> {
    let cache = common.cache();
    let releases = if kernels.is_empty() {
        None
    } else {
        let mut rels = Vec::new();
        for spec in common.kernel_specs(kernels)? {
            rels.push(spec.release(&cache).map_err(|e| runner::chain_error(&e))?);
        }
        Some(rels)
    };
    let removed = crate::cache::clean(&cache, releases.as_deref())?;
    for p in &removed {
        println!("removed {}", p.display());
    }
    if removed.is_empty() {
        println!("nothing to remove in {}", cache.display());
    }
    Ok(())
}

fn kernel_config(
    tree: &std::path::Path,
    base: crate::kernel::tree_config::Base,
    fragment: Option<PathBuf>,
    common: &CommonArgs,
    progress: &Progress,
) -> i32 {
    let fragment = fragment.unwrap_or_else(|| common.workspace.join(crate::kernel::tree_config::FRAGMENT_PATH));
    let result =
        crate::image::GuestRecipe::from_workspace(&common.workspace).map_err(|e| e.to_string()).and_then(|recipe| {
            crate::kernel::tree_config::configure(tree, base, &fragment, &recipe, progress)
                .map_err(|e| runner::chain_error(&e))
        });
    match result {
        Ok(done) => {
            print!("{}", done.render());
            if done.missing.is_some() {
                EXIT_HARNESS
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS
        }
    }
}

fn report_result(result: Result<(), String>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS
        }
    }
}

fn with_kernel(a: &KernelArgs, progress: &Progress, f: impl FnOnce(&kernel::Kernel) -> Result<(), String>) -> i32 {
    let result = a
        .common
        .kernel_specs(a.kernel.as_slice())
        .and_then(|specs| match specs.as_slice() {
            [spec] => kernel::resolve(spec, &a.common.cache(), progress).map_err(|e| runner::chain_error(&e)),
            _ => Err("this command takes one kernel, not the matrix".into()),
        })
        .and_then(|k| f(&k));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS
        }
    }
}

/// The suite files `--suite` names (every suite when none), and whether it names `upstream`,
/// the kernel's own selftests, which are not a file and run only when asked for by name.
fn select_suites(args: &[String], workspace: &Path) -> Result<(Vec<PathBuf>, bool), String> {
    let upstream = args.iter().any(|s| s == crate::upstream::SUITE);
    let named: Vec<String> = args.iter().filter(|s| *s != crate::upstream::SUITE).cloned().collect();
    let dir = workspace.join("suites");
    let suites = if upstream && named.is_empty() {
        Vec::new()
    } else {
        crate::suite::resolve_suite_args(&named, &dir).map_err(|e| e.to_string())?
    };
    if suites.is_empty() && !upstream {
        return Err(format!("no suites found in {}", dir.display()));
    }
    Ok((suites, upstream))
}

fn conformance(a: ConformanceArgs, progress: &Progress) -> i32 {
    let prepared = (|| -> Result<RunConfig, String> {
        let kernels = a.common.kernel_specs(&a.kernels)?;
        let (suites, upstream) = select_suites(&a.suites, &a.common.workspace)?;
        if a.jobs == 0 {
            return Err("--jobs must be at least 1".into());
        }
        Ok(RunConfig {
            mutate: false,
            mutants_only: None,
            mutant_sample: None,
            user_modules: Vec::new(),
            snapshot_overrides: Default::default(),
            upstream,
            kernel_mutants: Vec::new(),
            cases: a.cases.clone(),
            jobs: a.jobs,
            fresh_boot: a.fresh_boot,
            shared_guest: a.shared_guest,
            kernels,
            suites,
            out: a.out.clone(),
            accel: a.accel,
            cache: a.common.cache(),
            workspace: a.common.workspace.clone(),
            reports: crate::report::ResultFiles {
                junit: a.reports.junit.clone(),
                kcidb: a.reports.kcidb.clone(),
                kcidb_url_base: a.reports.kcidb_url_base.clone(),
            },
            snapshots: SnapshotSettings {
                dir: a.snapshot_dir.clone().unwrap_or_else(|| a.common.workspace.join("suites/snapshots")),
                mode: a.snapshots,
                require: a.require_snapshots,
                // As insta does: pending files for review, but not in CI, which only checks.
                write_pending: a.snapshots == SnapshotMode::Review
                    || (a.snapshots == SnapshotMode::Check && std::env::var_os("CI").is_none()),
                store_new: false,
            },
        })
    })();
    let mut cfg = match prepared {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_HARNESS;
        }
    };
    if !a.user.modules.is_empty() || !a.user.module_suites.is_empty() {
        if let Err(problems) = user_modules(&a, &mut cfg, progress) {
            for p in problems {
                eprintln!("error: {p}");
            }
            return EXIT_HARNESS;
        }
    }
    if a.list {
        return match runner::list(&cfg, &mut std::io::stdout().lock(), progress) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_HARNESS
            }
        };
    }
    // KTAP on stdout, progress on stderr, the result files: the contract.
    let mut ktap = crate::report::event::KtapReporter::new(std::io::stdout().lock());
    let mut lines = crate::report::event::ProgressReporter::new(progress, cfg.jobs > 1, cfg.snapshots.write_pending);
    let mut files = crate::report::event::FilesReporter::new(cfg.out.clone(), cfg.reports.clone(), progress);
    match runner::run(&cfg, &mut [&mut ktap, &mut lines, &mut files], progress) {
        Ok(report) => {
            if cfg.snapshots.mode == SnapshotMode::Review {
                offer_review(&report, &cfg.workspace, progress);
            }
            report.exit_code()
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS
        }
    }
}

/// `--module` and `--module-suite`: every module checked before any guest boots (first what
/// the file itself says, then its vermagic against every kernel of the run), copied into
/// `<out>/modules/`, its generic suite written there, and the run's suites and snapshot places
/// set. Every problem is returned, one line each.
fn user_modules(a: &ConformanceArgs, cfg: &mut RunConfig, progress: &Progress) -> Result<(), Vec<String>> {
    use crate::usermod;
    let one = |e: String| vec![e];
    let reserved: Vec<String> = crate::kmod::variants(&a.common.workspace.join("reference-kmod"))
        .map(|v| v.into_iter().map(|v| v.name).collect())
        .unwrap_or_default();
    // The files themselves first: no kernel is needed to refuse a file that is no module.
    usermod::check_modules(&a.user.modules, &[], &reserved)?;
    let mut kernels = Vec::new();
    for spec in &cfg.kernels {
        if a.user.modules.is_empty() {
            break;
        }
        let k = kernel::resolve(spec, &cfg.cache, progress)
            .map_err(|e| one(format!("kernel {spec}: {}", runner::chain_error(&e))))?;
        let (vermagic, from) = usermod::ko::kernel_vermagic(&k.modules_dir)
            .map_err(|e| one(format!("kernel {}: its vermagic: {e}", k.release)))?;
        kernels.push((k.release.clone(), vermagic, from));
    }
    let checked = usermod::check_modules(&a.user.modules, &kernels, &reserved)?;
    let dir = cfg.out.join("modules");
    std::fs::create_dir_all(&dir).map_err(|e| one(format!("creating {}: {e}", dir.display())))?;
    let modules = usermod::install(checked, &dir).map_err(one)?;
    let snap_root = a.user.module_snapshot_dir.clone().unwrap_or_else(|| cfg.cache.join("module-snapshots"));
    let settings = |sub: String| crate::snapshot::SnapshotSettings {
        dir: snap_root.join(sub),
        mode: a.snapshots,
        require: a.require_snapshots,
        write_pending: false,
        store_new: true,
    };
    let mut suites = Vec::new();
    if !modules.is_empty() {
        let path = dir.join("module.yaml");
        crate::fsutil::write_atomic(&path, usermod::generic_suite(&modules).as_bytes())
            .map_err(|e| one(format!("writing {}: {e}", path.display())))?;
        suites.push(path);
        for m in &modules {
            cfg.snapshot_overrides.insert(format!("{}/{}", usermod::SUITE, m.name()), settings(m.key()));
            progress.note(format!(
                "module {}: {} (vermagic {:?}, sha256 {}); {}",
                m.name(),
                m.source.display(),
                m.info.vermagic,
                &m.sha256[..12],
                match &m.info.declared {
                    usermod::Declared::Read { objects, .. } => format!(
                        "declares {} object(s), {} function(s) (read from the .ko)",
                        objects.len(),
                        objects.iter().map(|o| o.funcs.len()).sum::<usize>()
                    ),
                    usermod::Declared::Unknown(why) => format!(
                        "its objects and functions could not be read from the .ko ({why}): sysfs is only snapshotted"
                    ),
                }
            ));
        }
    }
    let set_hash = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for m in &modules {
            h.update(m.sha256.as_bytes());
        }
        format!("{:x}", h.finalize())[..12].to_string()
    };
    for f in &a.user.module_suites {
        let s = crate::suite::load_suite(f).map_err(|e| one(e.to_string()))?;
        cfg.snapshot_overrides.insert(s.name().to_string(), settings(format!("suite-{}-{set_hash}", s.name())));
        suites.push(f.clone());
    }
    // Without --suite only the module suites run; with it, those too.
    if a.suites.is_empty() {
        cfg.suites = suites;
    } else {
        cfg.suites.extend(suites);
    }
    cfg.user_modules = modules;
    Ok(())
}

fn report_merge(a: &MergeArgs, progress: &Progress) -> i32 {
    use crate::report::merge;
    let merged = (|| -> Result<merge::Merged, String> {
        let expected = if a.no_expect {
            None
        } else {
            let files = crate::suite::resolve_suite_args(&a.suites, &a.common.workspace.join("suites"))
                .map_err(|e| e.to_string())?;
            let mut exp = merge::Expected::from_suites(&files, &a.cases)?;
            let pins = a.common.pins().ok();
            for k in &a.kernels {
                match (k.as_str(), &pins) {
                    ("matrix", Some(p)) => exp.kernels.extend(p.matrix.iter().cloned()),
                    _ => exp.kernels.push(k.clone()),
                }
            }
            Some(exp)
        };
        let paths = merge::find_reports(&a.inputs).map_err(|e| e.to_string())?;
        let shards =
            paths.iter().map(|p| merge::Shard::load(p)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let mut m = merge::merge(&shards, expected.as_ref()).map_err(|e| e.to_string())?;
        progress.note(format!(
            "merged {} report(s): {} case(s) on {} kernel(s){}",
            shards.len(),
            m.report.runs.iter().map(|r| r.cases.len()).sum::<usize>(),
            m.report.runs.len(),
            if m.duplicates > 0 {
                format!(", {} reported twice with the same result", m.duplicates)
            } else {
                String::new()
            }
        ));
        m.report.coverage = runner::coverage(&m.report, &a.common.workspace, progress);
        Ok(m)
    })();
    let m = match merged {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_HARNESS;
        }
    };
    if !m.missing.is_empty() {
        eprintln!("error: {} case(s) no shard reported (missing shards?), reported as errors:", m.missing.len());
        for c in &m.missing {
            eprintln!("  missing {c}");
        }
    }
    let files = crate::report::ResultFiles {
        junit: a.reports.junit.clone(),
        kcidb: a.reports.kcidb.clone(),
        kcidb_url_base: a.reports.kcidb_url_base.clone(),
    };
    let written = crate::report::check_writable(&a.out, &files)
        .map_err(|e| e.to_string())
        .and_then(|()| crate::report::merge::copy_files(&m.files, &a.out).map_err(|e| e.to_string()))
        .and_then(|_| crate::report::write_all(&m.report, &a.out, &files).map_err(|e| crate::runner::chain_error(&e)));
    if let Err(e) = written {
        eprintln!("error: {e}");
        return EXIT_HARNESS;
    }
    if let Err(e) = crate::report::merge::write_ktap(&m.report, &mut std::io::stdout().lock()) {
        eprintln!("error: writing KTAP: {e}");
        return EXIT_HARNESS;
    }
    let s = &m.report.summary;
    progress.note(format!(
        "{} pass, {} fail, {} skip, {} error; results in {}",
        s.pass,
        s.fail,
        s.skip,
        s.error,
        a.out.display()
    ));
    m.report.exit_code()
}

fn bench_suite(
    kernels: &[String],
    suites: &[String],
    jobs: usize,
    rounds: usize,
    accel: Accel,
    common: &CommonArgs,
    progress: &Progress,
) -> Result<(), String> {
    if jobs == 0 || rounds == 0 {
        return Err("--jobs and --rounds must be at least 1".into());
    }
    let kernels = common.kernel_specs(kernels)?;
    let suites =
        crate::suite::resolve_suite_args(suites, &common.workspace.join("suites")).map_err(|e| e.to_string())?;
    let scratch = tempfile::Builder::new().prefix("klp-bench-suite-").tempdir().map_err(|e| e.to_string())?;
    let config = |jobs: usize, fresh_boot: bool, out: PathBuf| RunConfig {
        cases: Vec::new(),
        kernels: kernels.clone(),
        suites: suites.clone(),
        out,
        accel,
        cache: common.cache(),
        workspace: common.workspace.clone(),
        reports: crate::report::ResultFiles::default(),
        snapshots: SnapshotSettings {
            dir: common.workspace.join("suites/snapshots"),
            mode: SnapshotMode::Check,
            require: false,
            write_pending: false,
            store_new: false,
        },
        jobs,
        fresh_boot,
        shared_guest: false,
        mutate: false,
        mutants_only: None,
        mutant_sample: None,
        user_modules: Vec::new(),
        snapshot_overrides: Default::default(),
        upstream: false,
        kernel_mutants: Vec::new(),
    };
    let variants = crate::bench::suite_variants(jobs);
    let quiet = Progress::quiet();
    let mut results = crate::bench::SuiteBench::new(&variants);
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            progress.note(format!("round {}/{rounds}: {}", round + 1, v.label));
            let cfg = config(v.jobs, v.fresh_boot, scratch.path().join(format!("{i}-{round}")));
            let started = std::time::Instant::now();
            let mut files = crate::report::event::FilesReporter::new(cfg.out.clone(), cfg.reports.clone(), &quiet);
            let report = runner::run(&cfg, &mut [&mut files], &quiet).map_err(|e| e.to_string())?;
            let wall = started.elapsed();
            progress.note(format!("  {:.1} s: {:?}", wall.as_secs_f64(), report.summary));
            results.add(i, wall, &report);
        }
    }
    print!("{}", results.render());
    Ok(())
}

/// 0, 1 when something regressed against the baseline, [`EXIT_HARNESS`] on an error.
fn bench_exit(result: Result<usize, String>) -> i32 {
    match result {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS
        }
    }
}

/// `bench compare`: the number of regressions.
fn bench_compare(run: &Path, c: &CompareArgs) -> Result<usize, String> {
    use crate::bench::compare;
    if c.baselines.is_empty() {
        return Err("give at least one --baseline FILE".into());
    }
    let threshold = c.threshold()?;
    let baselines = compare::load(&c.baselines)?;
    let (_, report) = compare::load(&[run.to_path_buf()])?.remove(0);
    let cmp = compare::compare(&baselines, &report, threshold)?;
    print!("{}", cmp.render());
    Ok(cmp.regressions())
}

fn latency_load(a: &LatencyArgs) -> crate::bench::loaded::LoadSettings {
    crate::bench::loaded::LoadSettings { runs: a.load_runs, tasks: a.load_tasks, hold_ms: a.load_hold_ms }
}

fn bench_latency(a: &LatencyArgs, progress: &Progress) -> Result<usize, String> {
    use crate::bench::latency::{self, BenchReport, Settings, SettingsOut, State};
    // The baselines are read and their clock checked before any guest boots.
    let threshold = a.compare.threshold()?;
    let baselines = crate::bench::compare::load(&a.compare.baselines)?;
    crate::bench::compare::check_clocks(&baselines, a.clock)?;
    let settings = Settings {
        clock: a.clock,
        rounds: a.rounds,
        batches: a.batches,
        warmup: a.warmup,
        calls: a.calls,
        seed: a.seed,
        states: State::ALL.to_vec(),
        load: latency_load(a),
        trace_functions: a.trace_functions.clone(),
    };
    settings.check()?;
    let specs = a.common.kernel_specs(&a.kernels)?;
    let cache = a.common.cache();
    // Fail before any guest boots if the result cannot be written.
    std::fs::create_dir_all(&a.out).map_err(|e| format!("creating {}: {e}", a.out.display()))?;
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let agent = crate::image::agent_binary(&a.common.workspace, progress).map_err(|e| runner::chain_error(&e))?;
    let recipe = crate::image::GuestRecipe::from_workspace(&a.common.workspace).map_err(|e| e.to_string())?;
    let scratch = tempfile::Builder::new().prefix("klp-bench-latency-").tempdir().map_err(|e| e.to_string())?;
    let mut kernels = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut k = kernel::resolve(spec, &cache, progress).map_err(|e| runner::chain_error(&e))?;
        k.spec = spec.to_string();
        let set = crate::kmod::build_all(&k, &a.common.workspace.join("reference-kmod"), &cache, progress)
            .map_err(|e| runner::chain_error(&e))?;
        let (dir, logs) = (scratch.path().join(i.to_string()), a.out.join("logs").join(&k.release));
        let input =
            latency::KernelInput { kernel: &k, modules: &set.modules, agent: &agent, cache: &cache, recipe: &recipe };
        let r = latency::run_kernel(&input, &settings, &dir, &logs, progress)?;
        progress.note(format!("bench latency: {} done in {:.1} s", k.release, r.wall_s));
        kernels.push(r);
    }
    let report = BenchReport {
        schema: latency::SCHEMA.into(),
        benchmark: "latency".into(),
        started_at,
        clock: a.clock,
        unit: a.clock.unit().into(),
        settings: SettingsOut {
            rounds: a.rounds,
            batches: a.batches,
            warmup: a.warmup,
            calls: a.calls,
            seed: a.seed,
            load: Some(latency_load(a)),
        },
        kernels,
    };
    let path = a.out.join("bench.json");
    crate::fsutil::write_atomic(&path, latency::render_json(&report).as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let svg = a.out.join("latency.svg");
    crate::fsutil::write_atomic(&svg, crate::bench::plot::latency_svg(&report)?.as_bytes())
        .map_err(|e| format!("writing {}: {e}", svg.display()))?;
    let tsvg = a.out.join("transitions.svg");
    if report.kernels.iter().any(|k| k.loaded.is_some()) {
        crate::fsutil::write_atomic(&tsvg, crate::bench::plot::transitions_svg(&report)?.as_bytes())
            .map_err(|e| format!("writing {}: {e}", tsvg.display()))?;
    } else if tsvg.exists() {
        // A plot of an earlier run's loaded transitions must not pass for this run's.
        std::fs::remove_file(&tsvg).map_err(|e| format!("removing the stale {}: {e}", tsvg.display()))?;
    }
    print!("{}", latency::render_table(&report));
    let plots =
        if tsvg.exists() { format!("{} and {}", svg.display(), tsvg.display()) } else { svg.display().to_string() };
    progress.note(format!("bench latency: wrote {} and {plots}", path.display()));
    if baselines.is_empty() {
        return Ok(0);
    }
    let cmp = crate::bench::compare::compare(&baselines, &report, threshold)?;
    print!("{}", cmp.render());
    Ok(cmp.regressions())
}

fn suites_mutate(a: &MutateArgs, progress: &Progress) -> i32 {
    let prepared = (|| -> Result<(RunConfig, Vec<crate::suite::Suite>), String> {
        let kernels = a.common.kernel_specs(&a.kernels)?;
        let (suites, upstream) = select_suites(&a.suites, &a.common.workspace)?;
        if a.jobs == 0 {
            return Err("--jobs must be at least 1".into());
        }
        if a.sample == Some(0) {
            return Err("--sample must be at least 1 (1: every mutant)".into());
        }
        if upstream {
            return Err(
                "suites mutate derives mutants from YAML suites; the kernel's own selftests (upstream) have none"
                    .into(),
            );
        }
        let loaded = suites
            .iter()
            .map(|p| crate::suite::load_suite(p).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let kernel_mutants = if a.kernel_mutants || !a.kernel_mutant.is_empty() {
            crate::kernel_mutants::select(&a.kernel_mutant)?.iter().map(|m| m.id.to_string()).collect()
        } else {
            Vec::new()
        };
        let cfg = RunConfig {
            mutate: true,
            upstream: false,
            mutants_only: None,
            mutant_sample: a.sample.map(|every| crate::suite::mutate::Sample {
                every,
                seed: a.sample_seed.unwrap_or_else(days_since_epoch),
            }),
            user_modules: Vec::new(),
            snapshot_overrides: Default::default(),
            kernel_mutants,
            cases: a.cases.clone(),
            jobs: a.jobs,
            fresh_boot: false,
            shared_guest: a.shared_guest,
            kernels,
            suites,
            out: a.out.clone(),
            accel: a.accel,
            cache: a.common.cache(),
            workspace: a.common.workspace.clone(),
            reports: crate::report::ResultFiles::default(),
            // Mutants run without their snapshot steps; nothing is compared or written.
            snapshots: SnapshotSettings {
                dir: a.common.workspace.join("suites/snapshots"),
                mode: SnapshotMode::Check,
                require: false,
                write_pending: false,
                store_new: false,
            },
        };
        Ok((cfg, loaded))
    })();
    let (cfg, suites) = match prepared {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_HARNESS;
        }
    };
    if let Some(json) = &a.json {
        // Fail before any guest boots if the result cannot be written.
        if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("error: creating {}: {e}", dir.display());
                return EXIT_HARNESS;
            }
        }
    }
    if let Some(sm) = cfg.mutant_sample {
        progress.note(format!("suites mutate: a sample of about 1 in {} mutants, seed {}", sm.every, sm.seed));
    }
    let started = std::time::Instant::now();
    let mut lines = crate::report::event::ProgressReporter::new(progress, cfg.jobs > 1, false);
    let mut files = crate::report::event::FilesReporter::new(cfg.out.clone(), cfg.reports.clone(), progress);
    let report = match runner::run(&cfg, &mut [&mut lines, &mut files], progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_HARNESS;
        }
    };
    if !cfg.kernel_mutants.is_empty() {
        let picked = crate::kernel_mutants::select(&cfg.kernel_mutants).expect("validated above");
        let km = crate::kernel_mutants::build(&report, &picked);
        let guests = report.runs.iter().map(|r| r.cases.len()).sum::<usize>();
        print!("{}", km.render());
        progress.note(format!(
            "suites mutate --kernel-mutants: {:.0} s wall, {guests} guests; logs in {}",
            started.elapsed().as_secs_f64(),
            cfg.out.display()
        ));
        let code = km.exit_code();
        if let Some(json) = &a.json {
            let m = crate::mutation::MutationReport::of_kernel_mutants(km);
            if let Err(e) = crate::fsutil::write_atomic(json, m.to_json().as_bytes()) {
                eprintln!("error: writing {}: {e}", json.display());
                return EXIT_HARNESS;
            }
        }
        return code;
    }
    let mut m = crate::mutation::build(&report, &suites, cfg.mutant_sample);
    let mut guests = report.runs.iter().map(|r| r.cases.len()).sum::<usize>();
    let mut cfg = cfg;
    for round in 1..=a.reruns {
        let survivors = m.survivor_names();
        if survivors.is_empty() {
            break;
        }
        progress.note(format!("suites mutate: rerun {round}: {} surviving mutant(s)", survivors.len()));
        cfg.mutants_only = Some(survivors);
        cfg.out = a.out.join(format!("rerun-{round}"));
        let mut files = crate::report::event::FilesReporter::new(cfg.out.clone(), cfg.reports.clone(), progress);
        match runner::run(&cfg, &mut [&mut lines, &mut files], progress) {
            Ok(r) => {
                guests += r.runs.iter().map(|r| r.cases.len()).sum::<usize>();
                m.killed_on_rerun(&r, round);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_HARNESS;
            }
        }
    }
    print!("{}", m.render());
    progress.note(format!(
        "suites mutate: {:.0} s wall, {guests} guests; logs in {}",
        started.elapsed().as_secs_f64(),
        cfg.out.display()
    ));
    if let Some(json) = &a.json {
        if let Err(e) = crate::fsutil::write_atomic(json, m.to_json().as_bytes()) {
            eprintln!("error: writing {}: {e}", json.display());
            return EXIT_HARNESS;
        }
    }
    m.exit_code()
}

/// The UTC day number, the default seed of `--sample`.
fn days_since_epoch() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400)
}

fn suites_check(files: &[PathBuf], common: &CommonArgs) -> i32 {
    let files = if files.is_empty() {
        match crate::suite::resolve_suite_args(&[], &common.workspace.join("suites")) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_HARNESS;
            }
        }
    } else {
        files.to_vec()
    };
    let modules: Option<Vec<String>> = match crate::kmod::variants(&common.workspace.join("reference-kmod")) {
        Ok(v) => Some(v.into_iter().map(|v| v.name).collect()),
        Err(e) => {
            eprintln!("warning: module names not checked: {e}");
            None
        }
    };
    let mut problems = 0;
    let mut bad_files = 0;
    for f in &files {
        let found = crate::suite::check_suite_file(f, modules.as_deref());
        if !found.is_empty() {
            bad_files += 1;
        }
        for p in &found {
            println!("{p}");
        }
        problems += found.len();
    }
    if problems == 0 {
        println!("{} suite file(s): no problems", files.len());
        0
    } else {
        println!("{problems} problem(s) in {bad_files} of {} suite file(s)", files.len());
        EXIT_HARNESS
    }
}

fn snapshots_diff(kernels: &[String], dir: &std::path::Path, common: &CommonArgs) -> i32 {
    let releases = (|| -> Result<Vec<String>, String> {
        let specs = common.kernel_specs(kernels)?;
        if specs.len() != 2 {
            return Err(format!("snapshots diff takes exactly two kernels, got {}", specs.len()));
        }
        specs.iter().map(|s| s.snapshot_key(&common.cache()).map_err(|e| e.to_string())).collect()
    })();
    let releases = match releases {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_HARNESS;
        }
    };
    match crate::snapshot::diff::diff_releases(dir, &releases[0], &releases[1]) {
        Ok((text, differ)) => {
            print!("{text}");
            i32::from(differ)
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_HARNESS
        }
    }
}

fn snapshots_matrix(kernels: &[String], json: bool, dir: &std::path::Path, common: &CommonArgs) -> Result<(), String> {
    let specs = if kernels.is_empty() {
        // The default kernel first: it is the baseline every other column is compared with.
        let pins = common.pins()?;
        let mut names = vec![pins.default.as_str()];
        names.extend(pins.matrix.iter().map(String::as_str).filter(|n| *n != pins.default));
        names.iter().map(|n| KernelSpec::Pinned(pins.get(n).expect("validated").clone())).collect()
    } else {
        common.kernel_specs(kernels)?
    };
    let releases = specs
        .iter()
        .map(|s| s.snapshot_key(&common.cache()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<String> = specs.iter().map(ToString::to_string).collect();
    let m = crate::snapshot::matrix::build(dir, &releases, &labels)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&m).expect("the matrix serialises"));
    } else {
        print!("{}", m.render());
    }
    Ok(())
}

/// `--snapshots review`: hand the pending snapshots to `cargo insta review` when a person is
/// at the terminal and the tool is installed; otherwise say how.
fn offer_review(report: &crate::report::Report, workspace: &std::path::Path, progress: &Progress) {
    use crate::snapshot::SnapshotStatus;
    use std::io::IsTerminal;
    let pending = report
        .runs
        .iter()
        .flat_map(|r| &r.cases)
        .flat_map(|c| &c.snapshots)
        .filter(|s| matches!(s.status, SnapshotStatus::New | SnapshotStatus::Changed))
        .count();
    if pending == 0 {
        return;
    }
    let have_insta = crate::tools::find_tool("cargo-insta").is_some();
    if have_insta && std::io::stdin().is_terminal() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let _ = std::process::Command::new(cargo).current_dir(workspace).args(["insta", "review"]).status();
    } else {
        progress.note(format!(
            "{pending} snapshot(s) pending: review them with `cargo insta review` in {}{}",
            workspace.display(),
            if have_insta { "" } else { " (cargo install cargo-insta)" }
        ));
    }
}
