//! `remora`: parse the command line, hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    remora_cli::run(remora_cli::Cli::parse())
}
