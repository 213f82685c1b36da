//! A job's place in the workflow, as data: its options (label, dependencies, retries) and how far
//! it got, in memory and in the stored form. The rules that move it are `workflow.rs`'s.

use remora_wire::{Dependency, DependencyKind, JobOptions, UnixMillis};
use serde::{Deserialize, Serialize};

/// A job's place in the workflow, beside its state.
#[derive(Debug, Clone, Default)]
pub struct Workflow {
    pub options: JobOptions,
    /// Attempts started so far.
    pub attempts: u32,
    /// Set while the job waits to be run again after a failed attempt.
    pub retry_at: Option<UnixMillis>,
    /// Why the job ended as it did, when its exit code does not say (Skipped).
    pub reason: Option<String>,
}

/// The stored and handed-over form of [`Workflow`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredWorkflow {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    after: Vec<(u64, bool)>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    retry_delay_ms: u64,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    retry_at: Option<UnixMillis>,
    #[serde(default)]
    reason: Option<String>,
}

impl From<&Workflow> for StoredWorkflow {
    fn from(w: &Workflow) -> Self {
        Self {
            label: w.options.label.clone(),
            after: w
                .options
                .after
                .iter()
                .map(|d| (d.job, d.kind == DependencyKind::Succeeded))
                .collect(),
            retries: w.options.retries,
            retry_delay_ms: w.options.retry_delay_ms,
            attempts: w.attempts,
            retry_at: w.retry_at,
            reason: w.reason.clone(),
        }
    }
}

impl From<StoredWorkflow> for Workflow {
    fn from(s: StoredWorkflow) -> Self {
        let kind = |ok: bool| match ok {
            true => DependencyKind::Succeeded,
            false => DependencyKind::Ended,
        };
        Self {
            options: JobOptions {
                label: s.label,
                after: s
                    .after
                    .into_iter()
                    .map(|(job, ok)| Dependency { job, kind: kind(ok) })
                    .collect(),
                retries: s.retries,
                retry_delay_ms: s.retry_delay_ms,
            },
            attempts: s.attempts,
            retry_at: s.retry_at,
            reason: s.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_keeps_everything() {
        let workflow = Workflow {
            options: JobOptions {
                label: Some("nightly".into()),
                after: vec![
                    Dependency {
                        job: 1,
                        kind: DependencyKind::Succeeded,
                    },
                    Dependency {
                        job: 2,
                        kind: DependencyKind::Ended,
                    },
                ],
                retries: 3,
                retry_delay_ms: 500,
            },
            attempts: 2,
            retry_at: Some(9),
            reason: Some("why".into()),
        };
        let stored: StoredWorkflow = (&workflow).into();
        let bytes = rmp_serde::to_vec_named(&stored).unwrap();
        let back: Workflow = rmp_serde::from_slice::<StoredWorkflow>(&bytes).unwrap().into();
        assert_eq!(back.options, workflow.options);
        assert_eq!(
            (back.attempts, back.retry_at, back.reason),
            (2, Some(9), Some("why".into()))
        );
    }
}
