//! Many hosts at once: `web1,web2,db1` is contacted concurrently, one connection each; a host
//! that fails is reported and does not stop the others.

use std::future::Future;

use anyhow::bail;

use remora_client::ClientError;

/// One host's outcome.
pub struct HostResult<T> {
    pub host: String,
    pub result: anyhow::Result<T>,
}

/// Splits a comma-separated host list, refusing empty entries.
pub fn split_hosts(spec: &str) -> anyhow::Result<Vec<String>> {
    let mut hosts: Vec<String> = Vec::new();
    for host in spec.split(',').map(str::trim) {
        if host.is_empty() {
            bail!("empty host in {spec:?}; separate hosts with commas, like web1,web2");
        }
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
    }
    Ok(hosts)
}

/// Runs `work` for every host concurrently and collects the outcomes in host order.
pub async fn on_each<T, F, Fut>(hosts: &[String], work: F) -> Vec<HostResult<T>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let runs = hosts.iter().map(|host| {
        let run = work(host.clone());
        async move {
            HostResult {
                host: host.clone(),
                result: run.await,
            }
        }
    });
    futures::future::join_all(runs).await
}

/// Prints each failed host's error; returns 0 when none failed, 255 when a host could not be
/// reached (like ssh), 1 otherwise.
pub fn report_failures<T>(results: &[HostResult<T>]) -> u8 {
    let mut status = 0;
    for failed in results.iter().filter(|r| r.result.is_err()) {
        let err = failed.result.as_ref().err().expect("filtered on errors");
        eprintln!("remora: {}: {err:#}", failed.host);
        let unreachable = err
            .downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_connection_failure);
        status = if unreachable { 255 } else { status.max(1) };
    }
    status
}

/// The successful results, in host order.
pub fn successes<T>(results: Vec<HostResult<T>>) -> Vec<(String, T)> {
    results
        .into_iter()
        .filter_map(|r| Some((r.host, r.result.ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_split_trim_and_dedupe() {
        assert_eq!(split_hosts("web1, web2,web1").unwrap(), ["web1", "web2"]);
        assert_eq!(split_hosts("solo").unwrap(), ["solo"]);
        assert!(split_hosts("web1,,web2").is_err());
    }
}
