//! Everything the node keeps on disk: the data dir layout and identity, the
//! Raft log in redb, and snapshot files. redb is used nowhere else.

pub mod data_dir;
pub mod log_store;
mod log_writer;
pub mod snapshot_store;

pub use data_dir::{DataDir, DataDirError, NodeIdentity};
pub use log_store::LogStore;
pub use snapshot_store::{SnapshotStore, StoredSnapshot};
