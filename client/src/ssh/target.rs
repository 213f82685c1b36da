//! `[user@]host[:port]` as typed on the command line, in a `-H` file or an inventory. Parsing
//! refuses anything ssh would read differently (spaces, a leading `-`, a bad port) instead of
//! guessing, and names that would run as shell code where ssh_config's %-tokens put them into a
//! ProxyCommand (`%h`, `%n`, `%r`): the rules of OpenSSH 9.6 (`ssh_valid_hostname`,
//! `ssh_valid_ruser`). Host lists and inventories are often shared files, so a name in them is
//! untrusted input; ssh_config itself is the user's own and its literal values are not checked.

use std::str::FromStr;

use super::SshError;

/// `[user@]host[:port]` as typed on the command line (host may be an ssh_config alias; IPv6 in
/// brackets `[::1]:22`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Target {
    /// The user before `@`, if any.
    pub user: Option<String>,
    /// A host name, an address, or an ssh_config alias (without IPv6 brackets).
    pub host: String,
    /// The port after `:`, if any.
    pub port: Option<u16>,
}

impl FromStr for Target {
    type Err = SshError;

    fn from_str(text: &str) -> Result<Self, SshError> {
        let bad = |reason: &str| SshError::BadTarget {
            target: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it is empty or contains spaces"));
        }
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
            Some(_) => return Err(bad("the user before '@' is empty")),
            None => (None, text),
        };
        let (host, port) = split_port(rest).map_err(|reason| bad(&reason))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        check_host_name(&host).map_err(|reason| bad(&reason))?;
        if let Some(user) = &user {
            check_user_name(user).map_err(|reason| bad(&reason))?;
        }
        Ok(Target { user, host, port })
    }
}

/// Serialized as typed, and parsed (so checked) again when read.
impl TryFrom<String> for Target {
    type Error = SshError;

    fn try_from(text: String) -> Result<Self, SshError> {
        text.parse()
    }
}

impl From<Target> for String {
    fn from(target: Target) -> String {
        target.to_string()
    }
}

impl std::fmt::Display for Target {
    /// The target as it would be typed back: `user@host:port`, IPv6 in brackets with a port.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match self.port {
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Characters OpenSSH 9.6 refuses in a host name that can reach a %-token (its
/// `ssh_valid_hostname`): quotes, `$`, `\\`, command separators, redirections, groupings.
const HOST_METACHARACTERS: &str = "'`\"$\\;&<>|(){},";
/// Characters OpenSSH 9.6 refuses in a user name that can reach a %-token (`ssh_valid_ruser`).
const USER_METACHARACTERS: &str = "'`\";&<>|(){}";

/// Refuses a host name that a shell would read as more than a name: one starting with `-`, or
/// holding a shell metacharacter, a space or a control character.
pub fn check_host_name(host: &str) -> Result<(), String> {
    if host.starts_with('-') {
        return Err("a host cannot start with '-'".into());
    }
    match host.chars().find(|c| HOST_METACHARACTERS.contains(*c) || c.is_whitespace() || c.is_control()) {
        Some(c) => Err(format!(
            "the host name holds {c:?}, which a shell would run or split; host names may not hold any of {HOST_METACHARACTERS} \
             (put an unusual name in ssh_config as a literal HostName, which is trusted)"
        )),
        None => Ok(()),
    }
}

/// Refuses a user name that a shell would read as more than a name: one starting with `-`,
/// holding a shell metacharacter or a control character, a `-` after a space, or a trailing `\\`.
pub fn check_user_name(user: &str) -> Result<(), String> {
    if user.starts_with('-') {
        return Err("a user name cannot start with '-'".into());
    }
    if let Some(c) = user
        .chars()
        .find(|c| USER_METACHARACTERS.contains(*c) || c.is_control())
    {
        return Err(format!(
            "the user name holds {c:?}, which a shell would run; user names may not hold any of {USER_METACHARACTERS}"
        ));
    }
    if user.contains(" -") || user.contains("\t-") {
        return Err("the user name holds a '-' after a space, which a command would read as an option".into());
    }
    if user.ends_with('\\') {
        return Err("the user name ends in '\\', which a shell would join to what follows".into());
    }
    Ok(())
}

/// Splits `host:port` or `[v6]:port`; a bare IPv6 address has no port.
fn split_port(text: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']' after an IPv6 address")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host.to_string(), Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => Err(format!("unexpected {after:?} after ']'")),
        };
    }
    match text.split_once(':') {
        Some((host, port)) if !port.contains(':') => Ok((host.to_string(), Some(parse_port(port)?))),
        Some(_) if is_ipv6(text) => Ok((text.to_string(), None)),
        Some(_) => Err("several ':' but not an IPv6 address; write IPv6 with a port as [addr]:port".into()),
        None => Ok((text.to_string(), None)),
    }
}

/// An IPv6 address, optionally with a `%zone`.
fn is_ipv6(text: &str) -> bool {
    let address = text.split_once('%').map_or(text, |(address, _zone)| address);
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {text:?} is not a number from 1 to 65535")),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Target {
        text.parse().unwrap()
    }

    #[test]
    fn parses_the_ssh_forms() {
        assert_eq!(
            target("web01"),
            Target {
                user: None,
                host: "web01".into(),
                port: None
            }
        );
        assert_eq!(
            target("ada@web01:2222"),
            Target {
                user: Some("ada".into()),
                host: "web01".into(),
                port: Some(2222)
            }
        );
        assert_eq!(target("[::1]:22").host, "::1");
        assert_eq!(target("::1").port, None);
        assert_eq!(target("me@[fe80::1]").host, "fe80::1");
        assert_eq!(target("fe80::1%eth0").host, "fe80::1%eth0");
        assert_eq!(target("a@b@host").user.as_deref(), Some("a@b"));
    }

    #[test]
    fn names_ssh_accepts_still_parse() {
        for text in [
            "web-01.example.com",
            "ada.lovelace@db_1",
            "DOMAIN\\ada@host",
            "u+x@10.0.0.1:22",
        ] {
            assert!(text.parse::<Target>().is_ok(), "{text}");
        }
    }

    #[test]
    fn shell_code_in_a_name_is_named_in_the_refusal() {
        let err = "h$(id>x)".parse::<Target>().unwrap_err().to_string();
        assert!(err.contains("'$'") && err.contains("h$(id>x)"), "{err}");
        let err = "a -oProxyCommand@host".parse::<Target>().unwrap_err().to_string();
        assert!(err.contains("contains spaces"), "{err}");
        assert!(check_user_name("a -o").is_err());
    }

    #[test]
    fn prints_back_as_typed() {
        for text in ["web01", "ada@web01:2222", "[::1]:22", "me@fe80::1"] {
            assert_eq!(target(text).to_string(), text);
        }
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:x",
            "@host",
            "a b",
            "-oProxyCommand=x",
            "[::1",
            "[::1]x",
            "host:",
            "web01:22:33",
            "h$(id>x)",
            "h`id`",
            "h;id",
            "a|b",
            "h'x",
            "h\"x",
            "h\\x",
            "h&x",
            "h<x",
            "h(x)",
            "h{x}",
            "$(id)@host",
            "u;id@host",
            "-u@host",
            "u\\@host",
        ] {
            let err = bad.parse::<Target>().unwrap_err();
            assert!(err.to_string().contains("[user@]host[:port]"), "{bad}: {err}");
        }
    }
}
