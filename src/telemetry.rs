//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or
//! JSON lines. Messages carry ids (resource, source), never payloads or secrets.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `json` selects JSON lines for log shippers.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,odbc_api=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
