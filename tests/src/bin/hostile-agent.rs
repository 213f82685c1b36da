//! `hostile-agent --dir DIR`: the hostile host of the end-to-end tests, run by sshd as the
//! `remora` subsystem (see `remora_testkit::hostile_agent`).

use std::path::PathBuf;

use anyhow::Context;
use remora_testkit::hostile_agent::{serve, World};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = match (args.next(), args.next()) {
        (Some(flag), Some(dir)) if flag == "--dir" => PathBuf::from(dir),
        _ => anyhow::bail!("usage: hostile-agent --dir DIR"),
    };
    let world = World { dir };
    serve(&world, tokio::io::stdin(), tokio::io::stdout())
        .await
        .context("hostile-agent")
}
