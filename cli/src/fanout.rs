//! Many hosts at once: `web1,web2,db1` is contacted concurrently, at most `--throttle` at a
//! time, one connection each; a host that fails is reported on stderr and does not stop the
//! others. On a terminal a progress line shows done / failed / running, and the failures come
//! as a summary at the end. [`fan_out`] is the one place the verbs do this.

use std::future::Future;

use futures::StreamExt;
use remora_client::ClientError;

use crate::{args::Cli, fleet::Progress, values::HostList, EXIT_CONNECTION};

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

/// Runs `work` for every host, at most `--throttle` at once, reports each failed host's error on
/// stderr, and gathers the successes in host order.
pub async fn fan_out<T, F, Fut>(cli: &Cli, hosts: &HostList, work: F) -> Gathered<T>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    fan_out_at(hosts, cli.fleet.throttle, work).await
}

/// [`fan_out`] with at most `throttle` hosts at once instead of `--throttle`.
pub async fn fan_out_at<T, F, Fut>(hosts: &HostList, throttle: usize, work: F) -> Gathered<T>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let total = hosts.0.len();
    let mut progress = Progress::start(total);
    let runs = hosts.0.iter().enumerate().map(|(index, host)| {
        let run = work(host.clone());
        async move { (index, host.clone(), run.await) }
    });
    let mut finished = futures::stream::iter(runs).buffer_unordered(throttle.max(1));
    let mut results = Vec::with_capacity(total);
    let mut failures = Vec::new();
    while let Some((index, host, result)) = finished.next().await {
        if let Err(err) = &result {
            let message = host_message(&host, err);
            match progress.shown() {
                true => failures.push(message),
                false => eprintln!("remora: {message}"),
            }
        }
        let running = (total - results.len() - 1).min(throttle);
        progress.done(result.is_err(), running);
        results.push((index, host, result));
    }
    progress.finish(&failures);
    results.sort_by_key(|(index, ..)| *index);
    let mut gathered = Gathered {
        answers: Vec::new(),
        status: 0,
    };
    for (_, host, result) in results {
        match result {
            Ok(value) => gathered.answers.push((host, value)),
            Err(err) => gathered.status = gathered.status.max(failure_status(&err)),
        }
    }
    gathered
}

/// `host: error`, naming the host once: the library's errors often name it already.
fn host_message(host: &str, err: &anyhow::Error) -> String {
    // An error may quote the host's own words (a refusal, a name): shown, never obeyed.
    let text = remora_client::visible_lines(&format!("{err:#}")).into_owned();
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

    fn cli(args: &[&str]) -> Cli {
        <Cli as clap::Parser>::parse_from(["remora"].iter().chain(args))
    }

    #[tokio::test]
    async fn failures_are_gathered_apart_from_answers() {
        let cli = cli(&["ls"]);
        let hosts = HostList::parse("a,b,c").unwrap();
        let gathered = fan_out(&cli, &hosts, |host| async move {
            match host.as_str() {
                "b" => Err(anyhow::anyhow!("refused")),
                _ => Ok(host.len()),
            }
        })
        .await;
        assert_eq!(gathered.answers, [("a".to_string(), 1), ("c".to_string(), 1)]);
        assert_eq!(gathered.status, 1);
        assert!(!gathered.all_failed());

        let none = fan_out(&cli, &hosts, |_| async { Err::<(), _>(anyhow::anyhow!("refused")) }).await;
        assert!(none.all_failed());
    }

    #[tokio::test]
    async fn no_more_than_the_throttle_run_at_once_and_answers_keep_host_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cli = cli(&["--throttle", "3", "ls"]);
        let hosts = HostList((0..20).map(|i| format!("h{i}")).collect());
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let gathered = fan_out(&cli, &hosts, |host| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(host)
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 3);
        let order: Vec<String> = gathered.answers.into_iter().map(|(host, _)| host).collect();
        assert_eq!(order, hosts.0);
    }
}
