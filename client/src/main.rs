//! `remora`: parse the command line, hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    remora_client::cli::run(remora_client::cli::Cli::parse())
}
