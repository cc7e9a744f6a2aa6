//! The log database's layout: its tables and what a record must provide to
//! be stored in them. Both the reading side ([`super::log_db`]) and the
//! writer thread ([`super::log_writer`]) use it; it uses neither.

use std::io;

use redb::TableDefinition;

/// Records by index, each as [`LogRecord::encode`] wrote it.
pub(super) const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small named values the owner of the log keeps beside it (a vote, a
/// commit marker, the last purged position), as opaque bytes.
pub(super) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What the log stores: records at increasing indexes, each knowing how to
/// encode itself. Storage knows nothing else about them.
pub trait LogRecord: Clone + Send + Sync + 'static {
    /// Identifies a record among those that ever sat at its index (a
    /// truncated record and its replacement have different ids).
    type Id: Copy + PartialEq + Send + Sync + 'static;

    /// Its position in the log.
    fn index(&self) -> u64;

    /// Its identity.
    fn id(&self) -> Self::Id;

    /// Its bytes on disk.
    fn encode(&self) -> io::Result<Vec<u8>>;

    /// Read back what [`LogRecord::encode`] wrote.
    fn decode(bytes: &[u8]) -> io::Result<Self>;
}

/// redb's errors as I/O errors, which is what callers of a log expect.
pub(super) fn io_error(error: impl Into<redb::Error>) -> io::Error {
    io::Error::other(error.into())
}
