//! Wall-clock time as the protocol carries it.

use std::time::{SystemTime, UNIX_EPOCH};

use remora_wire::UnixMillis;

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as UnixMillis)
}

/// A protocol timestamp as RFC 3339 UTC, for messages.
pub(crate) fn format_millis(millis: UnixMillis) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_seconds(time).to_string()
}
