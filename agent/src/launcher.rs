//! Reaching the user's daemon from a subsystem or server process, starting it when absent.

use tokio::net::UnixStream;

use crate::{paths::StatePaths, Result};

/// Connects to the daemon in protocol mode (the socket then carries remora frames),
/// starting the daemon first if it is not running.
pub async fn connect_daemon(paths: &StatePaths) -> Result<UnixStream> {
    let _ = paths;
    todo!("written by the daemon work")
}
