//! Whether a binary can take this daemon over: it must be a `remora-agent` that reads the
//! snapshot format this program writes. Asked by running it (`NEW handover-check`), so a binary
//! that is broken, for another machine, or too old fails here, before anything is stopped.

use std::{path::Path, process::Stdio, time::Duration};

use crate::error::{AgentError, Result};

/// The snapshot format this program writes.
pub(crate) const FORMAT: u32 = 1;
/// Snapshot formats this program reads (`resume.rs`).
const READS: &[u32] = &[1];
/// How long the new binary has to answer.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// `remora-agent handover-check`: the line a daemon handing over reads.
pub(crate) fn print_formats() {
    let formats: Vec<String> = READS.iter().map(u32::to_string).collect();
    println!(
        "remora-agent {} reads handover formats {}",
        env!("CARGO_PKG_VERSION"),
        formats.join(",")
    );
}

/// Runs `binary handover-check`; returns the new binary's version when it reads [`FORMAT`].
pub(super) async fn check_binary(binary: &Path) -> Result<String> {
    let refused = |reason: String| AgentError::HandoverRefused {
        binary: binary.to_path_buf(),
        reason,
    };
    let run = tokio::process::Command::new(binary)
        .arg("handover-check")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(refused(format!("it does not run ({err})"))),
        Err(_) => {
            return Err(refused(format!(
                "it did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )))
        }
    };
    let answer = String::from_utf8_lossy(&output.stdout);
    match (output.status.success(), parse(&answer)) {
        (true, Some((version, formats))) if formats.contains(&FORMAT) => Ok(version),
        (true, Some((version, _))) => Err(refused(format!(
            "remora-agent {version} cannot read this daemon's handover format {FORMAT}; stop the daemon instead (its sessions come back Broken) or install a version that can"
        ))),
        _ => Err(refused(format!(
            "it is not a remora-agent that can take a daemon over (`handover-check` said {:?}, {})",
            answer.trim(),
            output.status
        ))),
    }
}

/// `remora-agent 0.2.0 reads handover formats 1,2` → version and formats.
fn parse(answer: &str) -> Option<(String, Vec<u32>)> {
    let rest = answer.trim().strip_prefix("remora-agent ")?;
    let (version, formats) = rest.split_once(" reads handover formats ")?;
    let formats = formats
        .split(',')
        .map(|f| f.trim().parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    Some((version.to_string(), formats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_line_names_version_and_formats() {
        assert_eq!(
            parse("remora-agent 0.2.0 reads handover formats 1,2\n"),
            Some(("0.2.0".into(), vec![1, 2]))
        );
        assert_eq!(parse("bash: handover-check: not found"), None);
        assert_eq!(parse("remora-agent 0.2.0 reads handover formats x"), None);
    }

    #[tokio::test]
    async fn a_binary_that_is_not_an_agent_is_refused_with_the_reason() {
        let err = check_binary(Path::new("/bin/true")).await.unwrap_err().to_string();
        assert!(err.contains("not a remora-agent"), "{err}");
        let err = check_binary(Path::new("/nonexistent/remora-agent"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not run"), "{err}");
    }
}
