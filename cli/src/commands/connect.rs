//! `remora connect HOST[,HOST…] --name N [--force] [--idle-timeout D] [--notify]`: attach and follow live
//! output (Connect-PSSession). Ctrl-C detaches; the remote commands keep running.

use remora_wire::Receive;

use super::receive::receive_on_hosts;
use crate::{
    args::{Cli, ConnectArgs},
    values::IdleTimeout,
};

pub async fn run(cli: &Cli, args: &ConnectArgs) -> anyhow::Result<u8> {
    let request = Receive {
        force: args.force,
        idle_timeout_secs: args.idle_timeout.map(IdleTimeout::secs),
        ..Receive::follow_all(args.session.reference())
    };
    let name = args.session.label();
    let hosts = cli.fleet.resolve(&args.host)?;
    eprintln!("remora: attached to {name} on {hosts}; Ctrl-C detaches, commands keep running");
    tokio::select! {
        status = receive_on_hosts(cli, &hosts, request, args.notify) => status,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nremora: detached from {name}; reattach with `remora connect {hosts} --name {name}`");
            Ok(0)
        }
    }
}
