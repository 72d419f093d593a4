//! Store failures, split by what the caller should do: retry later, or stop and get an
//! operator.

/// Why the state store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (a running `serve`, say) holds the store; names the lock file.
    #[error("state store {path} is in use by another legacy-bridge process")]
    Locked { path: String },
    /// The file or its directory cannot be opened or created.
    #[error("cannot open state store {path}: {reason}")]
    Open { path: String, reason: String },
    /// The file was written by a newer legacy-bridge (schema version ahead of ours).
    #[error("state store {path} has schema version {found}; this build knows up to {known}")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    /// A transient failure (busy database, full disk); the capture cycle is retried.
    #[error("state store: {0}")]
    Io(String),
    /// Stored data that does not decode; needs an operator.
    #[error("state store holds invalid data: {0}")]
    Corrupt(String),
    /// A commit the schema refuses (a record that is not JSON, a number out of range): a bug
    /// in the caller, so retrying cannot help. Nothing of the commit was written.
    #[error("state store refused the commit: {0}")]
    Rejected(String),
    /// A read after a position whose following events retention already removed: the reader
    /// missed them and must start over (resync) from `oldest` or later.
    #[error("events after {after} are no longer kept; the oldest kept is {oldest}")]
    Expired { after: u64, oldest: u64 },
    /// A commit on a store opened for inspection only.
    #[error("state store {path} is open read-only")]
    ReadOnly { path: String },
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Io(_))
    }
}
