//! `klp-conform`: the harness's own command line (`cargo xtask` offers the same commands).

use clap::Parser;

#[derive(Parser)]
#[command(name = "klp-conform", version, about = "Conformance and benchmark harness for Linux kernel livepatching")]
struct Cli {
    #[command(subcommand)]
    command: klp_conform::cli::Command,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(klp_conform::cli::execute(cli.command));
}
