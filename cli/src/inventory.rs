//! Host lists from files: `-H FILE` (one host or alias per line, `#` comments) and Ansible
//! inventories (`--inventory FILE [--limit GROUP]`, INI or YAML), where `ansible_host`,
//! `ansible_port` and `ansible_user` become the target `user@host:port`. Every mistake names the
//! file and line.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use remora_client::ssh::{check_host_name, check_user_name, Target};
use yaml_rust2::{Yaml, YamlLoader};

/// A host-list file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}:{line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
}

/// The hosts of a `-H` file, in order.
pub fn host_file(path: &Path) -> Result<Vec<String>, InventoryError> {
    let text = read(path)?;
    let mut hosts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        check_target(entry).map_err(|problem| InventoryError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            problem,
        })?;
        hosts.push(entry.to_string());
    }
    Ok(hosts)
}

/// The targets of an Ansible inventory, all of them or those of `limit` (a group, with its
/// children, or one host).
pub fn ansible(path: &Path, limit: Option<&str>) -> Result<Vec<String>, InventoryError> {
    let text = read(path)?;
    let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
        || text.trim_start().starts_with("---");
    let inventory = if yaml {
        parse_yaml(&text).map_err(|(line, problem)| InventoryError::Line {
            path: path.to_path_buf(),
            line,
            problem,
        })?
    } else {
        parse_ini(&text).map_err(|(line, problem)| InventoryError::Line {
            path: path.to_path_buf(),
            line,
            problem,
        })?
    };
    let names = inventory.select(limit).map_err(|problem| InventoryError::File {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok(names.iter().map(|name| inventory.target(name)).collect())
}

fn read(path: &Path) -> Result<String, InventoryError> {
    std::fs::read_to_string(path).map_err(|cause| InventoryError::Read {
        path: path.to_path_buf(),
        cause,
    })
}

fn check_target(entry: &str) -> Result<(), String> {
    if entry.contains(char::is_whitespace) {
        return Err(format!("{entry:?} is not one host; give one host or alias per line"));
    }
    entry
        .parse::<Target>()
        .map(drop)
        .map_err(|err| format!("{entry:?} is not a host ({err})"))
}

/// How to reach one inventory host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct HostVars {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
}

/// Groups, their hosts and children, and each host's connection variables.
#[derive(Debug, Default)]
struct Inventory {
    /// Hosts in the order first seen.
    order: Vec<String>,
    vars: BTreeMap<String, HostVars>,
    groups: BTreeMap<String, Vec<String>>,
    children: BTreeMap<String, Vec<String>>,
}

impl Inventory {
    fn add_host(&mut self, group: &str, name: &str, vars: HostVars) {
        if !self.vars.contains_key(name) {
            self.order.push(name.to_string());
        }
        let known = self.vars.entry(name.to_string()).or_default();
        known.host = vars.host.or(known.host.take());
        known.port = vars.port.or(known.port);
        known.user = vars.user.or(known.user.take());
        let members = self.groups.entry(group.to_string()).or_default();
        if !members.iter().any(|m| m == name) {
            members.push(name.to_string());
        }
    }

    /// Hosts of `limit` (group with children, or a host), in inventory order; all without it.
    fn select(&self, limit: Option<&str>) -> Result<Vec<String>, String> {
        let Some(limit) = limit.filter(|l| *l != "all") else {
            return Ok(self.order.clone());
        };
        if !self.groups.contains_key(limit) && !self.children.contains_key(limit) {
            if self.vars.contains_key(limit) {
                return Ok(vec![limit.to_string()]);
            }
            let groups: Vec<&str> = self
                .groups
                .keys()
                .chain(self.children.keys())
                .map(String::as_str)
                .collect();
            return Err(format!(
                "no group or host named {limit:?}; the groups are: {}",
                groups
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut members = BTreeSet::new();
        let mut pending = vec![limit.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(group) = pending.pop() {
            if !seen.insert(group.clone()) {
                continue;
            }
            members.extend(self.groups.get(&group).into_iter().flatten().cloned());
            pending.extend(self.children.get(&group).into_iter().flatten().cloned());
        }
        Ok(self.order.iter().filter(|h| members.contains(*h)).cloned().collect())
    }

    /// `user@host:port`, from the host's variables (its name when it has none).
    fn target(&self, name: &str) -> String {
        let vars = self.vars.get(name).cloned().unwrap_or_default();
        let host = vars.host.unwrap_or_else(|| name.to_string());
        let host = match host.contains(':') && vars.port.is_some() {
            true => format!("[{host}]"),
            false => host,
        };
        let user = vars.user.map(|u| format!("{u}@")).unwrap_or_default();
        let port = vars.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{user}{host}{port}")
    }
}

/// INI inventories: `[group]` host lines with `key=value` variables, `[group:children]`;
/// `[group:vars]` sections are read past.
fn parse_ini(text: &str) -> Result<Inventory, (usize, String)> {
    let mut inventory = Inventory::default();
    let mut section = ("ungrouped".to_string(), "hosts");
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.split(['#', ';']).next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .strip_suffix(']')
                .ok_or((line_no, format!("{line:?} is not a [group] header")))?;
            section = match header.split_once(':') {
                Some((group, "children")) => (group.to_string(), "children"),
                Some((group, "vars")) => (group.to_string(), "vars"),
                Some((_, kind)) => return Err((line_no, format!("unknown section kind {kind:?}"))),
                None => (header.to_string(), "hosts"),
            };
            continue;
        }
        match section.1 {
            "vars" => {}
            "children" => inventory
                .children
                .entry(section.0.clone())
                .or_default()
                .push(line.to_string()),
            _ => {
                let mut words = line.split_whitespace();
                let name = words.next().unwrap_or_default();
                check_target(name).map_err(|p| (line_no, p))?;
                let mut vars = HostVars::default();
                for word in words {
                    let (key, value) = word
                        .split_once('=')
                        .ok_or((line_no, format!("{word:?} is not a key=value variable")))?;
                    set_var(&mut vars, key, value.trim_matches(['"', '\''])).map_err(|problem| (line_no, problem))?;
                }
                inventory.add_host(&section.0, name, vars);
            }
        }
    }
    Ok(inventory)
}

fn set_var(vars: &mut HostVars, key: &str, value: &str) -> Result<(), String> {
    match key {
        "ansible_host" | "ansible_ssh_host" => vars.host = Some(inventory_host(key, value)?),
        "ansible_user" | "ansible_ssh_user" => {
            check_user_name(value).map_err(|reason| format!("{key} {value:?}: {reason}"))?;
            vars.user = Some(value.to_string())
        }
        "ansible_port" | "ansible_ssh_port" => {
            vars.port = Some(
                value
                    .parse()
                    .map_err(|_| format!("{key} {value:?} is not a port number"))?,
            )
        }
        _ => {}
    }
    Ok(())
}

/// An `ansible_host` value: one host name or address, nothing a shell or the target syntax
/// would read as more (it reaches ProxyCommand's `%h`; inventories are shared files).
fn inventory_host(key: &str, value: &str) -> Result<String, String> {
    let refuse = |reason: String| format!("{key} {value:?}: {reason}");
    check_host_name(value).map_err(refuse)?;
    if value.contains('@') || value.contains('/') {
        return Err(refuse("it must be one host name or address".into()));
    }
    if value.contains(':') && value.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(refuse(
            "a ':' is only allowed in an IPv6 address; give the port as ansible_port".into(),
        ));
    }
    Ok(value.to_string())
}

/// YAML inventories: `all:` (or any top-level group) with `hosts:` (name → variables) and
/// `children:` (name → group), nested.
fn parse_yaml(text: &str) -> Result<Inventory, (usize, String)> {
    let documents = YamlLoader::load_from_str(text).map_err(|err| (err.marker().line(), err.info().to_string()))?;
    let mut inventory = Inventory::default();
    let Some(root) = documents.first() else {
        return Ok(inventory);
    };
    let Yaml::Hash(groups) = root else {
        return Err((1, "the inventory must map group names to groups".into()));
    };
    for (name, group) in groups {
        yaml_group(&mut inventory, &key_text(name)?, group)?;
    }
    Ok(inventory)
}

fn yaml_group(inventory: &mut Inventory, name: &str, group: &Yaml) -> Result<(), (usize, String)> {
    let Yaml::Hash(fields) = group else {
        return match group {
            Yaml::Null => Ok(()),
            _ => Err((1, format!("group {name:?} must be a mapping with hosts: and children:"))),
        };
    };
    if let Some(Yaml::Hash(hosts)) = fields.get(&Yaml::String("hosts".into())) {
        for (host, vars) in hosts {
            let host = key_text(host)?;
            check_target(&host).map_err(|p| (1, p))?;
            let mut parsed = HostVars::default();
            if let Yaml::Hash(vars) = vars {
                for (key, value) in vars {
                    let value = match value {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        _ => continue,
                    };
                    set_var(&mut parsed, &key_text(key)?, &value).map_err(|p| (1, format!("host {host:?}: {p}")))?;
                }
            }
            inventory.add_host(name, &host, parsed);
        }
    }
    if let Some(Yaml::Hash(children)) = fields.get(&Yaml::String("children".into())) {
        for (child, body) in children {
            let child = key_text(child)?;
            inventory
                .children
                .entry(name.to_string())
                .or_default()
                .push(child.clone());
            yaml_group(inventory, &child, body)?;
        }
    }
    Ok(())
}

fn key_text(key: &Yaml) -> Result<String, (usize, String)> {
    match key {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        other => Err((1, format!("{other:?} is not a name"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "web0\n[web]\nweb1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=deploy\nweb2\n\
                       [db]\ndb1 ansible_host=db.internal\n[prod:children]\nweb\ndb\n[prod:vars]\nx=1\n";

    #[test]
    fn ini_groups_children_and_connection_variables() {
        let inventory = parse_ini(INI).unwrap();
        let all = inventory.select(None).unwrap();
        assert_eq!(all, ["web0", "web1", "web2", "db1"]);
        assert_eq!(inventory.select(Some("web")).unwrap(), ["web1", "web2"]);
        assert_eq!(inventory.select(Some("prod")).unwrap(), ["web1", "web2", "db1"]);
        assert_eq!(inventory.target("web1"), "deploy@10.0.0.1:2222");
        assert_eq!(inventory.target("db1"), "db.internal");
        assert_eq!(inventory.target("web2"), "web2");
        let err = inventory.select(Some("nope")).unwrap_err();
        assert!(err.contains("db, prod, ungrouped, web"), "{err}");
    }

    #[test]
    fn shell_code_in_inventory_names_is_refused_with_its_line() {
        for line in [
            "web1 ansible_host='h$(id>x)'",
            "web1 ansible_host=-oProxyCommand=x",
            "web1 ansible_host=evil@h",
            "web1 ansible_host=h:22",
            "web1 ansible_user='u`id`'",
            "web1 ansible_user=-oX",
            "h$(id)",
        ] {
            let (line_no, problem) = parse_ini(&format!("[web]\nok\n{line}\n")).unwrap_err();
            assert_eq!(line_no, 3, "{line}: {problem}");
        }
        let yaml = "all:\n  hosts:\n    web1:\n      ansible_host: h$(id)\n";
        let (_, problem) = parse_yaml(yaml).unwrap_err();
        assert!(
            problem.contains("web1") && problem.contains("ansible_host"),
            "{problem}"
        );
        assert!(parse_ini("[web]\nweb1 ansible_host=fe80::1 ansible_user=ops\n").is_ok());
    }

    #[test]
    fn ini_mistakes_name_the_line() {
        let (line, problem) = parse_ini("[web]\nweb1\nweb2 ansible_port=x\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(problem.contains("not a port number"), "{problem}");
        assert_eq!(parse_ini("[web\n").unwrap_err().0, 1);
    }

    #[test]
    fn yaml_hosts_children_and_variables() {
        let text = "all:\n  hosts:\n    solo:\n  children:\n    web:\n      hosts:\n        web1:\n          ansible_host: 10.0.0.1\n          ansible_port: 2222\n        web2:\n";
        let inventory = parse_yaml(text).unwrap();
        assert_eq!(inventory.select(None).unwrap(), ["solo", "web1", "web2"]);
        assert_eq!(inventory.select(Some("web")).unwrap(), ["web1", "web2"]);
        assert_eq!(inventory.target("web1"), "10.0.0.1:2222");
        let (line, _) = parse_yaml("all:\n  hosts: [\n").unwrap_err();
        assert!(line >= 2, "the scanner's line: {line}");
    }

    #[test]
    fn host_files_skip_comments_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "# fleet\nweb1\n\nops@db1:2222  # primary\n").unwrap();
        assert_eq!(host_file(&path).unwrap(), ["web1", "ops@db1:2222"]);
        std::fs::write(&path, "web1\nweb 2\n").unwrap();
        let err = host_file(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: \"web 2\" is not one host; give one host or alias per line"),
            "{err}"
        );
    }
}
