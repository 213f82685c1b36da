//! `remora install HOST [--agent PATH] [--json]`: copy remora-agent to `~/.local/bin` on a host
//! (see [`remora_client::install`]) and print the optional sshd_config line.

use anyhow::Context;

use remora_client::{
    install::{default_agent_binary, install_agent},
    visible, visible_lines,
};

use crate::args::{Cli, InstallArgs};

pub async fn run(cli: &Cli, args: &InstallArgs) -> anyhow::Result<u8> {
    let agent = match &args.agent {
        Some(path) => path.clone(),
        None => default_agent_binary()
            .context("no remora-agent next to remora or on PATH; pass the one to install with --agent PATH")?,
    };
    let installed = install_agent(&args.host, &cli.ssh_options(), &agent).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&installed)?);
        return Ok(0);
    }
    println!(
        "installed {} at {} on {} ({} bytes, sha256 {})",
        visible(&installed.version),
        visible(&installed.path),
        installed.host,
        installed.bytes,
        installed.sha256
    );
    if !installed.daemon.is_empty() {
        println!("{}", visible_lines(&installed.daemon));
    }
    println!("remora now finds it there by itself. To make it a subsystem, an admin can add to sshd_config:");
    println!("    {}", visible(&installed.subsystem_line));
    Ok(0)
}
