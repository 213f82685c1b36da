//! `remora`: parse the command line, hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = remora_cli::scp_spelling(std::env::args_os().collect());
    remora_cli::run(remora_cli::Cli::parse_from(args))
}
