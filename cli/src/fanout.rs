//! Many hosts at once: `web1,web2,db1` is contacted concurrently, one connection each; a host
//! that fails is reported on stderr and does not stop the others. [`fan_out`] is the one place
//! the verbs do this.

use std::future::Future;

use remora_client::ClientError;

use crate::{values::HostList, EXIT_CONNECTION};

/// What the hosts answered, and the exit status their failures call for.
pub struct Gathered<T> {
    /// `(host, value)` for every host that succeeded, in the order the hosts were given.
    pub answers: Vec<(String, T)>,
    /// 0 when no host failed, 255 when one could not be reached (like ssh), 1 otherwise.
    pub status: u8,
}

impl<T> Gathered<T> {
    /// No host answered: the verb prints nothing on stdout, so a failure never looks like an
    /// empty answer.
    pub fn all_failed(&self) -> bool {
        self.answers.is_empty() && self.status != 0
    }
}

/// Runs `work` for every host concurrently, reports each failed host's error on stderr, and
/// gathers the successes in host order.
pub async fn fan_out<T, F, Fut>(hosts: &HostList, work: F) -> Gathered<T>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let runs = hosts.0.iter().map(|host| {
        let run = work(host.clone());
        async move { (host.clone(), run.await) }
    });
    let mut gathered = Gathered {
        answers: Vec::new(),
        status: 0,
    };
    for (host, result) in futures::future::join_all(runs).await {
        match result {
            Ok(value) => gathered.answers.push((host, value)),
            Err(err) => {
                eprintln!("remora: {}", host_message(&host, &err));
                gathered.status = gathered.status.max(failure_status(&err));
            }
        }
    }
    gathered
}

/// `host: error`, naming the host once: the library's errors often name it already.
fn host_message(host: &str, err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    match text.strip_prefix(host).and_then(|rest| rest.strip_prefix(": ")) {
        Some(_) => text,
        None => format!("{host}: {text}"),
    }
}

/// 255 for a host that could not be reached, 1 for any other failure.
fn failure_status(err: &anyhow::Error) -> u8 {
    let unreachable = err
        .downcast_ref::<ClientError>()
        .is_some_and(ClientError::is_connection_failure);
    if unreachable {
        EXIT_CONNECTION
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_named_once() {
        let named = anyhow::anyhow!("web1: session \"x\" is broken");
        assert_eq!(host_message("web1", &named), "web1: session \"x\" is broken");
        let bare = anyhow::anyhow!("no such file");
        assert_eq!(host_message("web1", &bare), "web1: no such file");
    }

    #[tokio::test]
    async fn failures_are_gathered_apart_from_answers() {
        let hosts = HostList::parse("a,b,c").unwrap();
        let gathered = fan_out(&hosts, |host| async move {
            match host.as_str() {
                "b" => Err(anyhow::anyhow!("refused")),
                _ => Ok(host.len()),
            }
        })
        .await;
        assert_eq!(gathered.answers, [("a".to_string(), 1), ("c".to_string(), 1)]);
        assert_eq!(gathered.status, 1);
        assert!(!gathered.all_failed());

        let none = fan_out(&hosts, |_| async { Err::<(), _>(anyhow::anyhow!("refused")) }).await;
        assert!(none.all_failed());
    }
}
