//! Turning `[subscriptions]` into sinks ready to start: one sink per subscription, built
//! from its config without I/O (connecting happens in the sink's `startup`, retried by the
//! dispatcher, so a sink that is down does not stop the service from starting).

use std::sync::Arc;

use indexmap::IndexMap;

use super::nats::NatsSink;
use super::postgres::PostgresSink;
use super::runtime::Planned;
use super::sink::{Sink, SinkError};
use super::webhook::WebhookSink;
use crate::config::{LoadedConfig, SinkConfig};
use crate::resource::Resource;

/// Every configured subscription with its sink; fails with the subscription's name when a
/// sink's config cannot be used (an unreadable CA file, say).
pub fn plan(
    config: &LoadedConfig,
    resources: &IndexMap<String, Arc<Resource>>,
) -> Result<Vec<Planned>, (String, SinkError)> {
    let mut planned = Vec::new();
    for (name, sub) in &config.deployment.subscriptions {
        let sink: Arc<dyn Sink> = match &sub.sink {
            SinkConfig::Webhook(c) => {
                Arc::new(WebhookSink::new(name, c).map_err(|e| (name.clone(), e))?)
            }
            SinkConfig::Nats(c) => Arc::new(NatsSink::new(name, c)),
            SinkConfig::Postgres(c) => {
                // The replica gets a table per resource it receives.
                let wanted = resources
                    .iter()
                    .filter(|(r, _)| sub.resources.is_empty() || sub.resources.contains(r))
                    .map(|(_, resource)| Arc::clone(resource))
                    .collect();
                Arc::new(PostgresSink::new(name, c, wanted))
            }
        };
        planned.push(Planned {
            name: name.clone(),
            config: sub.clone(),
            sink,
        });
    }
    Ok(planned)
}
