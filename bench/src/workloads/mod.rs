//! One module per workload of the benchmark; each returns its rows of the results table.

pub mod ansible;
pub mod fanout;
pub mod fleet;
pub mod reattach;
pub mod reconnect;
pub mod replay;
pub mod roundtrip;
pub mod scale;
pub mod stream;
pub mod terminal;
pub mod transfer;
pub mod warm;
