//! Everything the node keeps on disk, knowing nothing of what it stores:
//! the data dir layout and identity, a durable log of records in redb (with
//! its group-commit writer thread), and the newest snapshot file. redb is
//! used nowhere else.

pub mod data_dir;
pub mod log_db;
mod log_tables;
mod log_writer;
pub mod snapshot_file;

pub use data_dir::{DataDir, DataDirError, NodeIdentity};
pub use log_db::{LogDb, LogOpenError, LogRelease};
pub use log_tables::LogRecord;
pub use log_writer::AppendDone;
pub use snapshot_file::{Saved, SnapshotFile};
