//! The daemon's sessions, in creation order, findable by name or instance id.
//!
//! Invariant: names are unique among live sessions; a removed session is cancelled (its runspace
//! and streams stop) at the moment it leaves the registry.

use remora_unix::LockRecover;
use std::sync::{Arc, Mutex, MutexGuard};

use remora_wire::SessionRef;
use uuid::Uuid;
use wildmatch::WildMatch;

use crate::session::Session;

/// All live sessions of this user.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<Vec<Arc<Session>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Session>>> {
        self.sessions.lock_or_recover()
    }

    /// Adds a session unless its name is taken; on refusal returns the holder of the name.
    pub fn insert(&self, session: Arc<Session>) -> Result<(), Arc<Session>> {
        let mut sessions = self.lock();
        if let Some(existing) = sessions.iter().find(|s| s.name == session.name) {
            return Err(existing.clone());
        }
        sessions.push(session);
        Ok(())
    }

    /// The session a reference names.
    pub fn find(&self, reference: &SessionRef) -> Option<Arc<Session>> {
        let sessions = self.lock();
        let found = match reference {
            SessionRef::Name(name) => sessions.iter().find(|s| &s.name == name),
            SessionRef::Id(id) => sessions.iter().find(|s| &s.id == id),
        };
        found.cloned()
    }

    /// Sessions whose name matches `glob` (all when `None`).
    pub fn list(&self, glob: Option<&str>) -> Vec<Arc<Session>> {
        let pattern = glob.map(WildMatch::new);
        let sessions = self.lock();
        sessions
            .iter()
            .filter(|s| pattern.as_ref().is_none_or(|p| p.matches(&s.name)))
            .cloned()
            .collect()
    }

    /// Sessions matching any of the name globs or ids.
    pub fn matching(&self, globs: &[String], ids: &[Uuid]) -> Vec<Arc<Session>> {
        let patterns: Vec<WildMatch> = globs.iter().map(|g| WildMatch::new(g)).collect();
        let sessions = self.lock();
        sessions
            .iter()
            .filter(|s| ids.contains(&s.id) || patterns.iter().any(|p| p.matches(&s.name)))
            .cloned()
            .collect()
    }

    /// Removes a session and cancels it.
    pub fn remove(&self, id: Uuid) -> Option<Arc<Session>> {
        let mut sessions = self.lock();
        let index = sessions.iter().position(|s| s.id == id)?;
        let session = sessions.remove(index);
        session.closed.cancel();
        Some(session)
    }

    /// Removes and cancels every session (daemon shutdown).
    pub fn clear(&self) -> Vec<Arc<Session>> {
        let drained: Vec<Arc<Session>> = self.lock().drain(..).collect();
        for session in &drained {
            session.closed.cancel();
        }
        drained
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
