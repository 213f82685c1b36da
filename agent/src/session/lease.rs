//! An attachment as a value: the stream that holds it detaches by dropping it, on every way
//! out (end of stream, error, cancellation, a panicking task).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{ConnId, Session};

/// A client's hold on a session, from `Session::attach`.
#[derive(Debug)]
pub struct Attachment {
    session: Arc<Session>,
    conn: ConnId,
    token: CancellationToken,
}

impl Attachment {
    pub(super) fn new(session: Arc<Session>, conn: ConnId, token: CancellationToken) -> Self {
        Self { session, conn, token }
    }

    /// Cancelled when another client takes the session over or it is disconnected by force.
    pub fn lost(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.session.detach(self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_settings;

    #[test]
    fn dropping_the_attachment_detaches_and_starts_the_idle_clock() {
        let session = Arc::new(Session::new("s".into(), false, test_settings()));
        let first = session.attach(1, "a", None, false).unwrap();
        let second = session.attach(1, "a", None, false).unwrap();
        assert!(session.expires_at().is_none());
        drop(first);
        assert!(
            session.expires_at().is_none(),
            "the connection's other stream still holds it"
        );
        assert!(session.attach(2, "b", None, false).is_err(), "still busy");
        drop(second);
        assert!(session.expires_at().is_some());
        assert!(session.attach(2, "b", None, false).is_ok(), "free again");
    }

    #[test]
    fn an_attachment_lost_to_a_takeover_does_not_detach_the_new_holder() {
        let session = Arc::new(Session::new("s".into(), false, test_settings()));
        let old = session.attach(1, "a", None, false).unwrap();
        let new = session.attach(2, "b", None, true).unwrap();
        assert!(old.lost().is_cancelled());
        drop(old);
        assert!(session.expires_at().is_none(), "b still holds the session");
        drop(new);
        assert!(session.expires_at().is_some());
    }
}
