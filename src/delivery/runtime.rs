//! Starting delivery: one dispatcher task per configured subscription, registered in the
//! store at its start position, and the handle the admin API and `/metrics` use to see and
//! steer them.

use std::sync::Arc;

use indexmap::IndexMap;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::dispatcher::Dispatcher;
use super::retry::RetryPolicy;
use super::sink::Sink;
use super::stats::SubscriptionStats;
use crate::config::{StartAt, SubscriptionConfig};
use crate::model::{ChangeOp, event_type};
use crate::store::{Control, DeliveryStore, EventFilter, StoreError};

/// How long shutdown waits for dispatchers to finish their round.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One subscription as the API sees it.
pub struct SubscriptionHandle {
    /// `webhook`, `nats` or `postgres`.
    pub sink_kind: &'static str,
    pub filter: EventFilter,
    pub stats: Arc<SubscriptionStats>,
    control: watch::Sender<u64>,
}

/// What the API needs from running delivery.
#[derive(Clone)]
pub struct DeliveryHandle {
    pub store: Arc<dyn DeliveryStore>,
    pub subscriptions: Arc<IndexMap<String, SubscriptionHandle>>,
}

impl DeliveryHandle {
    /// Applies an operator action (audited as `actor`) and wakes the subscription's
    /// dispatcher so it reloads its position. `None` when there is no such subscription.
    pub async fn control(
        &self,
        name: &str,
        actor: &str,
        control: Control,
    ) -> Result<Option<u64>, StoreError> {
        let Some(sub) = self.subscriptions.get(name) else {
            return Ok(None);
        };
        let touched = self
            .store
            .control(name, actor, control, chrono::Utc::now().timestamp_millis())
            .await?;
        sub.control.send_modify(|generation| *generation += 1);
        Ok(Some(touched))
    }
}

/// A subscription ready to start: its config and its sink.
pub struct Planned {
    pub name: String,
    pub config: SubscriptionConfig,
    pub sink: Arc<dyn Sink>,
}

/// Running dispatchers.
pub struct DeliveryRuntime {
    pub handle: DeliveryHandle,
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
}

impl DeliveryRuntime {
    /// Registers every subscription (a new one at its configured start) and starts its
    /// dispatcher. `captured` lists the captured resources (for filters without resources);
    /// `committed` carries the outbox's last committed seq.
    pub async fn start(
        planned: Vec<Planned>,
        captured: &[String],
        store: Arc<dyn DeliveryStore>,
        committed: watch::Receiver<u64>,
    ) -> Result<DeliveryRuntime, StoreError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut handles = IndexMap::new();
        for plan in planned {
            let start = match plan.config.start {
                StartAt::Beginning => 0,
                StartAt::End => store.last_seq().await?,
            };
            let row = store.open_subscription(&plan.name, start).await?;
            let filter = filter_of(&plan.config, captured);
            let stats = Arc::new(SubscriptionStats::default());
            let (control_tx, control_rx) = watch::channel(0u64);
            tracing::info!(subscription = %plan.name, sink = plan.config.sink.kind(), cursor = row.cursor, state = row.state.as_str(), "subscription registered");
            let dispatcher = Dispatcher {
                name: plan.name.clone(),
                sink: plan.sink,
                store: Arc::clone(&store),
                filter: filter.clone(),
                batch_size: plan.config.batch_size,
                retry: RetryPolicy::new(&plan.config.retry),
                stats: Arc::clone(&stats),
                committed: committed.clone(),
                control: control_rx,
            };
            let span = tracing::info_span!("delivery", subscription = %plan.name);
            tasks.spawn(dispatcher.run(shutdown_rx.clone()).instrument(span));
            handles.insert(
                plan.name,
                SubscriptionHandle {
                    sink_kind: plan.config.sink.kind(),
                    filter,
                    stats,
                    control: control_tx,
                },
            );
        }
        Ok(DeliveryRuntime {
            handle: DeliveryHandle {
                store,
                subscriptions: Arc::new(handles),
            },
            tasks,
            shutdown,
        })
    }

    /// Drops every dispatcher where it stands, like a killed process would.
    #[cfg(test)]
    pub(crate) fn tasks_abort_for_test(mut self) {
        self.tasks.abort_all();
        self.tasks.detach_all();
    }

    /// Stops every dispatcher after its current round (bounded wait). Cursors are durable,
    /// so a round cut short is redelivered after restart.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!(
                "deliveries still in flight at shutdown; they are redelivered after restart"
            );
            self.tasks.abort_all();
        }
    }
}

/// The outbox filter of a subscription: its resources, and its ops as event types.
pub fn filter_of(config: &SubscriptionConfig, captured: &[String]) -> EventFilter {
    let resources = config.resources.clone();
    let types = if config.ops.is_empty() || config.ops.len() == ChangeOp::ALL.len() {
        Vec::new()
    } else {
        let names = if resources.is_empty() {
            captured
        } else {
            &resources[..]
        };
        names
            .iter()
            .flat_map(|r| config.ops.iter().map(move |op| event_type(r, *op)))
            .collect()
    };
    EventFilter { resources, types }
}
