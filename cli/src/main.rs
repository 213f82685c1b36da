//! `remora`: parse the command line, hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    keep_freed_heap();
    let args = remora_cli::scp_spelling(std::env::args_os().collect());
    remora_cli::run(remora_cli::Cli::parse_from(args))
}

/// A bulk stream allocates and frees a packet buffer for every 32 KiB, with up to the channel
/// window (8 MiB) in flight. glibc's defaults hand freed heap back to the kernel as soon as
/// 128 KiB sit free at its top, so the next burst faults every page in again: a third of the
/// client's time in a stream, on and off from run to run. Keep up to 32 MiB of freed heap,
/// and serve large frames from the heap rather than a fresh mapping each.
fn keep_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 32 << 20);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
