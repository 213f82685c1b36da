//! `remora config HOST [--json]`: the SSH settings remora would use for a host, like `ssh -G`,
//! after ssh_config and the command line's `-F -i -p -l -o -J`. Connects nowhere.

use remora_client::ssh::{self, Target};

use crate::args::{Cli, ConfigArgs};

pub fn run(cli: &Cli, args: &ConfigArgs) -> anyhow::Result<u8> {
    let target: Target = args.host.parse()?;
    let settings = ssh::resolve(&target, &cli.ssh_options())?;
    let lines = settings.describe();
    if args.json {
        let mut object = serde_json::Map::new();
        for (key, value) in lines {
            match object.get_mut(key) {
                // Repeated keys (identityfile) become arrays.
                Some(serde_json::Value::Array(values)) => values.push(value.into()),
                Some(single) => *single = serde_json::Value::Array(vec![single.take(), value.into()]),
                None => {
                    object.insert(key.to_string(), value.into());
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&object)?);
    } else {
        for (key, value) in lines {
            println!("{key} {value}");
        }
    }
    Ok(0)
}
