//! The one error type of configuration: it always names the file, the key path and the reason,
//! so an operator can fix the file without reading our code.

use std::fmt;
use std::path::PathBuf;

/// A configuration problem that stops start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path inside the file, e.g. `resources.inventory.fields.on_hand.column`;
    /// empty when the problem concerns the whole file.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `key` in `file`.
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}
