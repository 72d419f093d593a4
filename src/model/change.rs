//! Change events: what capture appends to the outbox and what every sink receives, as
//! CloudEvents 1.0 JSON. Event type names are built here and nowhere else.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Created,
    Updated,
    Deleted,
    /// The record's current state, emitted by an initial load or a resync: consumers upsert.
    Snapshot,
}

impl ChangeOp {
    /// The spelling used in event types and `data.op`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Created => "created",
            ChangeOp::Updated => "updated",
            ChangeOp::Deleted => "deleted",
            ChangeOp::Snapshot => "snapshot",
        }
    }

    /// Every op, for documentation and `types=` validation.
    pub const ALL: [ChangeOp; 4] = [
        ChangeOp::Created,
        ChangeOp::Updated,
        ChangeOp::Deleted,
        ChangeOp::Snapshot,
    ];
}

/// Which pass of capture found the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOrigin {
    /// The first load of a resource.
    Initial,
    /// The resource's strategy (cursor, snapshot-diff, changelog, mssql-change-tracking,
    /// export).
    Capture,
    /// A periodic reconciliation pass: the strategy missed it (typically a delete).
    Reconciliation,
    /// An operator-requested re-snapshot.
    Resync,
}

impl ChangeOrigin {
    /// The spelling used in `data.origin` and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOrigin::Initial => "initial",
            ChangeOrigin::Capture => "capture",
            ChangeOrigin::Reconciliation => "reconciliation",
            ChangeOrigin::Resync => "resync",
        }
    }
}

/// The CloudEvents `type` of a change: `inventory.updated`.
pub fn event_type(resource: &str, op: ChangeOp) -> String {
    format!("{resource}.{}", op.as_str())
}

/// The CloudEvents batch media type served by `/v1/changes`.
pub const CLOUDEVENTS_BATCH_JSON: &str = "application/cloudevents-batch+json";

/// A change ready to be appended to the outbox; the outbox gives it its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Deterministic: the same change detected twice gets the same id.
    pub id: String,
    pub resource: String,
    /// CloudEvents `source`, a URI reference naming the legacy source and resource.
    pub source: String,
    /// CloudEvents `type`, see [`event_type`].
    pub event_type: String,
    /// The record key, as in the resource's item URL (`A1001/MAIN`).
    pub subject: String,
    /// When the change happened, as far as the source tells (else when it was found).
    pub time: DateTime<Utc>,
    /// `op`, `origin`, `key`, `before`, `after`, `changed`, `position`.
    pub data: serde_json::Value,
}

/// An event as stored in the outbox, with its gap-free position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: NewEvent,
}

impl StoredEvent {
    /// The CloudEvents 1.0 JSON form; the outbox position travels as the `sequence`
    /// extension attribute (a string, per the CloudEvents sequence extension).
    pub fn to_cloudevent(&self) -> serde_json::Value {
        let e = &self.event;
        serde_json::json!({
            "specversion": "1.0",
            "id": e.id,
            "source": e.source,
            "type": e.event_type,
            "subject": e.subject,
            "time": e.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            "datacontenttype": "application/json",
            "sequence": self.seq.to_string(),
            "data": e.data,
        })
    }

    /// The bytes of [`StoredEvent::to_cloudevent`] serialized, written straight from the event
    /// (no intermediate `Value`, no copy of `data`): what a sink sends, built once per event.
    pub fn cloudevent_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let e = &self.event;
        let shape = CloudEventRef {
            specversion: "1.0",
            id: &e.id,
            source: &e.source,
            event_type: &e.event_type,
            subject: &e.subject,
            time: e.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            datacontenttype: "application/json",
            sequence: self.seq,
            data: &e.data,
        };
        let mut out = Vec::with_capacity(1024);
        serde_json::to_writer(&mut out, &shape)?;
        Ok(out)
    }
}

/// [`StoredEvent::to_cloudevent`]'s attributes in the same order, borrowed from the event.
#[derive(Serialize)]
struct CloudEventRef<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    #[serde(serialize_with = "as_string")]
    sequence: u64,
    data: &'a serde_json::Value,
}

/// The CloudEvents sequence extension is a string.
fn as_string<S: serde::Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevent_has_the_required_attributes() {
        let stored = StoredEvent {
            seq: 7,
            event: NewEvent {
                id: "abc".into(),
                resource: "inventory".into(),
                source: "/sources/pos/inventory".into(),
                event_type: event_type("inventory", ChangeOp::Updated),
                subject: "A1001/MAIN".into(),
                time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                data: serde_json::json!({"op": "updated"}),
            },
        };
        let ce = stored.to_cloudevent();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], "inventory.updated");
        assert_eq!(ce["sequence"], "7");
        assert_eq!(ce["time"], "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn cloudevent_json_is_the_cloudevent_serialized() {
        let stored = StoredEvent {
            seq: 18_446_744_073_709_551_615,
            event: NewEvent {
                id: "e\"1".into(),
                resource: "inventory".into(),
                source: "/sources/pos/inventory".into(),
                event_type: event_type("inventory", ChangeOp::Deleted),
                subject: "A1001/MAIN".into(),
                time: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
                data: serde_json::json!({"op": "deleted", "before": {"qty": 3, "name": "é"}}),
            },
        };
        let expected = serde_json::to_vec(&stored.to_cloudevent()).unwrap();
        assert_eq!(stored.cloudevent_json().unwrap(), expected);
    }
}
