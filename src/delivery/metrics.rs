//! Prometheus metrics of delivery, rendered per scrape from the subscriptions' status (the
//! counters live in the dispatchers, the backlog in the store). Metric names are defined
//! here and nowhere else.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::SubscriptionStatus;
use crate::store::SubscriptionState;

/// Events delivered (a `_total` suffix is added on exposition).
pub const DELIVERED: &str = "legacy_bridge_delivery_delivered";
/// Failed attempts rescheduled.
pub const RETRIED: &str = "legacy_bridge_delivery_retried";
/// Events moved to the dead letters.
pub const DEAD_LETTERED: &str = "legacy_bridge_delivery_dead_lettered";
/// Times an endpoint disabled its subscription (HTTP 410).
pub const DISABLED: &str = "legacy_bridge_delivery_disabled";
/// Outbox positions after the subscription's cursor.
pub const BEHIND: &str = "legacy_bridge_delivery_behind_events";
/// Events parked for a retry or behind their record.
pub const PARKED: &str = "legacy_bridge_delivery_parked_events";
/// Dead letters waiting for an operator.
pub const DEAD_LETTERS: &str = "legacy_bridge_delivery_dead_letters";
/// Age of the oldest undelivered event.
pub const OLDEST_AGE: &str = "legacy_bridge_delivery_oldest_undelivered_age_seconds";
/// 1 when the subscription delivers, 0 when paused or disabled.
pub const ACTIVE: &str = "legacy_bridge_delivery_active";
/// The outbox's last committed sequence number.
pub const OUTBOX_LAST_SEQ: &str = "legacy_bridge_outbox_last_seq";

/// The OpenMetrics text content type `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// Renders the metrics of every subscription and the outbox head.
pub fn render(statuses: &[SubscriptionStatus], last_seq: u64) -> String {
    let mut registry = Registry::default();
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Gauge>::default();
        registry.register(name, help, family.clone());
        family
    };
    let delivered = counter(
        &mut registry,
        DELIVERED,
        "Events delivered and acknowledged",
    );
    let retried = counter(&mut registry, RETRIED, "Failed attempts rescheduled");
    let dead = counter(
        &mut registry,
        DEAD_LETTERED,
        "Events moved to the dead letters",
    );
    let disabled = counter(
        &mut registry,
        DISABLED,
        "Times the endpoint disabled the subscription",
    );
    let behind = gauge(&mut registry, BEHIND, "Outbox positions after the cursor");
    let parked = gauge(
        &mut registry,
        PARKED,
        "Events parked for retry or behind their record",
    );
    let dead_letters = gauge(
        &mut registry,
        DEAD_LETTERS,
        "Dead letters waiting for an operator",
    );
    let active = gauge(
        &mut registry,
        ACTIVE,
        "1 when delivering, 0 when paused or disabled",
    );
    let age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register(
        OLDEST_AGE,
        "Age of the oldest undelivered event",
        age.clone(),
    );
    let head = Gauge::<i64>::default();
    registry.register(
        OUTBOX_LAST_SEQ,
        "Last committed outbox sequence number",
        head.clone(),
    );
    head.set(i64::try_from(last_seq).unwrap_or(i64::MAX));

    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for s in statuses {
        let labels: Labels = vec![
            ("subscription".into(), s.name.clone()),
            ("sink".into(), s.sink.clone()),
        ];
        delivered.get_or_create(&labels).inc_by(s.delivered);
        retried.get_or_create(&labels).inc_by(s.retried);
        dead.get_or_create(&labels).inc_by(s.dead_lettered);
        disabled.get_or_create(&labels).inc_by(s.disabled);
        behind.get_or_create(&labels).set(int(s.behind));
        parked.get_or_create(&labels).set(int(s.parked));
        dead_letters.get_or_create(&labels).set(int(s.dead_letters));
        active
            .get_or_create(&labels)
            .set(i64::from(s.state == SubscriptionState::Active));
        age.get_or_create(&labels)
            .set(s.oldest_undelivered_age_seconds);
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_and_gauges() {
        let status = SubscriptionStatus {
            name: "crm".into(),
            sink: "webhook".into(),
            state: SubscriptionState::Disabled,
            reason: None,
            cursor: 10,
            behind: 5,
            parked: 2,
            dead_letters: 1,
            oldest_undelivered_time: None,
            oldest_undelivered_age_seconds: 1.5,
            delivered: 7,
            retried: 3,
            dead_lettered: 1,
            disabled: 1,
            sink_ready: true,
            last_error: None,
            held_until: None,
            last_delivered_at: None,
        };
        let text = render(&[status], 15);
        for line in [
            r#"legacy_bridge_delivery_delivered_total{subscription="crm",sink="webhook"} 7"#,
            r#"legacy_bridge_delivery_retried_total{subscription="crm",sink="webhook"} 3"#,
            r#"legacy_bridge_delivery_behind_events{subscription="crm",sink="webhook"} 5"#,
            r#"legacy_bridge_delivery_active{subscription="crm",sink="webhook"} 0"#,
            r#"legacy_bridge_delivery_oldest_undelivered_age_seconds{subscription="crm",sink="webhook"} 1.5"#,
            "legacy_bridge_outbox_last_seq 15",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
