//! `cargo xtask …`: the project's entry points. `conformance`, `kmod` and `kernel` are the
//! harness's own commands; `test` runs the project's tests the way CI does.

#![forbid(unsafe_code)]

use std::process::Command;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "klp-conform tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    #[command(flatten)]
    Harness(klp_conform::cli::Command),
    /// Run the test suite (unit and VM integration tests) with cargo-nextest, nextest profile
    /// `xtask`: every test but the conformance cases of klp-conform-suites.
    Test {
        /// Also the slow tests (ignored by default): building a kernel from Debian's
        /// linux-source-6.1 with images/kernel-config.fragment and running the lifecycle suite
        /// on it (~10 minutes on two cores).
        #[arg(long)]
        slow: bool,
        /// Extra arguments for `cargo nextest run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Task::Harness(cmd) => klp_conform::cli::execute(cmd),
        Task::Test { slow, args } => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // The `xtask` profile (.config/nextest.toml) leaves out the conformance cases of
            // klp-conform-suites (one test per case × kernel, each booting a guest).
            let profile: &[&str] = if args.iter().any(|a| a == "-P" || a.starts_with("--profile")) {
                &[]
            } else {
                &["--profile", "xtask"]
            };
            let status = Command::new(cargo)
                .current_dir(klp_conform::cli::default_workspace())
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .args(profile)
                .args(slow.then_some("--run-ignored=all"))
                .args(&args)
                .status();
            match status {
                Ok(s) => s.code().unwrap_or(klp_conform::cli::EXIT_HARNESS),
                Err(e) => {
                    eprintln!("error: cannot run cargo nextest ({e}); install it with `cargo install cargo-nextest`");
                    klp_conform::cli::EXIT_HARNESS
                }
            }
        }
    };
    std::process::exit(code);
}
