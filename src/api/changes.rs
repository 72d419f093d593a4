//! The pull side of change capture: `GET /v1/changes` pages through the outbox as a
//! CloudEvents batch (long-polling when asked), and `GET /v1/changes/stream` follows it as
//! Server-Sent Events. Both serve only events of resources the API key may read, and both
//! wait on the capture's `committed` signal instead of polling the store.
//!
//! Both routes are mounted outside the router's request timeout (see [`super::router`]): a
//! long-poll may wait up to [`MAX_WAIT_SECS`] whatever `server.request_timeout_ms` says, and a
//! stream lasts as long as its client. Each request holds at most one page of events.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

use super::AppState;
use super::error::ApiError;
use crate::auth::{Auth, AuthError, read_scope};
use crate::capture::CaptureHandle;
use crate::model::{CLOUDEVENTS_BATCH_JSON, ChangeOp, StoredEvent, event_type};
use crate::store::{EventFilter, EventPage, Store, StoreError};

/// Events per feed page when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest feed page a client may ask for; bounds the store read and the response size.
pub const MAX_LIMIT: usize = 1000;
/// Longest long-poll, in seconds. Not tied to `server.request_timeout_ms`: the change routes
/// are exempt from the request timeout.
pub const MAX_WAIT_SECS: u64 = 60;
/// Events the SSE stream reads per store page: the most one stream buffers, however slow its
/// client. The next page is read only when this one has been handed to the connection.
pub const STREAM_PAGE: usize = 500;
/// How often an idle SSE stream sends a comment, so proxies do not close it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Response header carrying the `after` of the next read.
pub const NEXT_AFTER: HeaderName = HeaderName::from_static("next-after");

/// Parameters `GET /v1/changes` accepts.
const FEED_PARAMS: &[&str] = &["after", "limit", "types", "wait"];
/// Parameters `GET /v1/changes/stream` accepts (plus the `Last-Event-ID` header).
const STREAM_PARAMS: &[&str] = &["after", "types"];

/// The change routes; mounted by [`super::router`] outside the request timeout.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/changes", get(feed))
        .route("/v1/changes/stream", get(stream))
}

/// One term of `types=`: an exact type (`inventory.updated`) or every op of a resource
/// (`inventory.*`, `op` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSelector {
    pub resource: String,
    pub op: Option<ChangeOp>,
}

impl TypeSelector {
    /// Parses one term, checking the resource is captured and the op exists.
    fn parse(text: &str, captured: &[String]) -> Result<Self, ApiError> {
        let Some((resource, op)) = text.split_once('.') else {
            return Err(ApiError::param(
                "types",
                format!(
                    "`{text}` is neither an event type (`inventory.updated`) nor a resource wildcard (`inventory.*`)"
                ),
            ));
        };
        if !captured.iter().any(|c| c == resource) {
            return Err(ApiError::param(
                "types",
                format!(
                    "`{text}`: no captured resource `{resource}`; captured resources: {}",
                    listing(captured.iter().map(String::as_str))
                ),
            ));
        }
        let op = if op == "*" {
            None
        } else {
            let found = ChangeOp::ALL.into_iter().find(|o| o.as_str() == op);
            Some(found.ok_or_else(|| {
                ApiError::param(
                    "types",
                    format!(
                        "`{text}`: unknown op `{op}`; ops: {}, or `*` for all",
                        listing(ChangeOp::ALL.iter().map(|o| o.as_str()))
                    ),
                )
            })?)
        };
        Ok(Self {
            resource: resource.to_owned(),
            op,
        })
    }

    /// The exact CloudEvents types this term selects.
    fn event_types(&self) -> Vec<String> {
        match self.op {
            Some(op) => vec![event_type(&self.resource, op)],
            None => ChangeOp::ALL
                .iter()
                .map(|op| event_type(&self.resource, *op))
                .collect(),
        }
    }
}

impl fmt::Display for TypeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.op.map_or("*", ChangeOp::as_str);
        write!(f, "{}.{op}", self.resource)
    }
}

/// A parsed change-feed or stream query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesQuery {
    /// Outbox sequence number to read after (0: from the start).
    pub after: u64,
    pub limit: usize,
    /// `None` when `types` is absent (every type the key may read).
    pub types: Option<Vec<TypeSelector>>,
    /// Long-poll seconds; 0 answers at once.
    pub wait: u64,
}

/// Parses a query string, accepting only the parameters in `known`, each at most once.
/// `captured` is the list of captured resources `types` may name.
pub fn parse_query(
    raw: Option<&str>,
    known: &[&str],
    captured: &[String],
) -> Result<ChangesQuery, ApiError> {
    let mut after = None;
    let mut limit = None;
    let mut types = None;
    let mut wait = None;
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let name = name.as_ref();
        if !known.contains(&name) {
            return Err(ApiError::param(
                name,
                format!(
                    "unknown query parameter `{name}`; known: {}",
                    known.join(", ")
                ),
            ));
        }
        match name {
            "after" => set_once(
                &mut after,
                name,
                value.parse::<u64>().map_err(|_| {
                    ApiError::param(
                        name,
                        "must be a non-negative integer: the outbox sequence number to read after",
                    )
                })?,
            )?,
            "limit" => set_once(
                &mut limit,
                name,
                int_in(name, &value, 1, MAX_LIMIT as u64)? as usize,
            )?,
            "wait" => set_once(&mut wait, name, int_in(name, &value, 0, MAX_WAIT_SECS)?)?,
            _ => set_once(&mut types, name, parse_types(&value, captured)?)?,
        }
    }
    Ok(ChangesQuery {
        after: after.unwrap_or(0),
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        types,
        wait: wait.unwrap_or(0),
    })
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), ApiError> {
    if slot.replace(value).is_some() {
        return Err(ApiError::param(name, "given more than once"));
    }
    Ok(())
}

fn int_in(name: &str, value: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::param(
            name,
            format!("must be an integer from {min} to {max}"),
        )),
    }
}

/// Parses `types=a.created,b.*`: terms are trimmed, duplicates dropped, empty terms refused.
fn parse_types(value: &str, captured: &[String]) -> Result<Vec<TypeSelector>, ApiError> {
    let mut out: Vec<TypeSelector> = Vec::new();
    for term in value.split(',').map(str::trim) {
        if term.is_empty() {
            return Err(ApiError::param(
                "types",
                "empty type; list types like `inventory.updated,prices.*`, or leave `types` out for every type",
            ));
        }
        let selector = TypeSelector::parse(term, captured)?;
        if !out.contains(&selector) {
            out.push(selector);
        }
    }
    Ok(out)
}

fn listing<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<_> = items.collect();
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}

/// The capture behind the change routes; 404 when the deployment captures nothing.
pub fn capture_of(state: &AppState) -> Result<&CaptureHandle, ApiError> {
    state
        .capture
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("change capture is not configured on this server".into()))
}

/// The captured resources, in configuration order (every resource the capture registered on
/// its status board).
fn captured_resources(capture: &CaptureHandle) -> Vec<String> {
    capture
        .status
        .snapshot()
        .into_iter()
        .map(|s| s.resource)
        .collect()
}

/// The captured resources the request's key may read: 401 without a known key, 403 when it
/// reads none of them. Without auth every captured resource is readable.
fn readable_resources(
    auth: &Auth,
    headers: &HeaderMap,
    captured: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for resource in captured {
        match auth.authorize(headers, &read_scope(resource)) {
            Ok(_) => out.push(resource.clone()),
            Err(AuthError::Unauthenticated) => return Err(ApiError::Unauthorized),
            Err(AuthError::MissingScope(_)) => {}
        }
    }
    if out.is_empty() && auth.enabled() {
        return Err(ApiError::NoReadableResource);
    }
    Ok(out)
}

/// The store filter for a request: the named types (403 when one belongs to a resource the
/// key may not read), or else every readable resource. `restrict` is false without auth, where
/// an unfiltered read is allowed.
fn event_filter(
    types: Option<&[TypeSelector]>,
    readable: &[String],
    restrict: bool,
) -> Result<EventFilter, ApiError> {
    let Some(selectors) = types else {
        return Ok(EventFilter {
            resources: if restrict {
                readable.to_vec()
            } else {
                Vec::new()
            },
            types: Vec::new(),
        });
    };
    let mut resources: Vec<String> = Vec::new();
    let mut types: Vec<String> = Vec::new();
    for s in selectors {
        if !readable.contains(&s.resource) {
            return Err(ApiError::Forbidden(read_scope(&s.resource)));
        }
        if !resources.contains(&s.resource) {
            resources.push(s.resource.clone());
        }
        for t in s.event_types() {
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    // The types alone select the events; the resources they name let the store walk its
    // per-resource index instead of scanning every event.
    Ok(EventFilter { resources, types })
}

/// The next page of the feed link: same limit, types and wait, starting at `next_after`.
fn next_link(query: &ChangesQuery, next_after: u64) -> String {
    let mut link = format!("/v1/changes?after={next_after}&limit={}", query.limit);
    if let Some(types) = &query.types {
        // Terms are validated resource names and op names: nothing to percent-encode.
        let joined: Vec<String> = types.iter().map(ToString::to_string).collect();
        link.push_str("&types=");
        link.push_str(&joined.join(","));
    }
    if query.wait > 0 {
        link.push_str(&format!("&wait={}", query.wait));
    }
    link
}

/// Reads a page after `after`; when it is empty and `wait` is not zero, waits on `committed`
/// for a sequence number beyond what was read, then reads again, until the wait is over.
/// Holds no lock across an await and never polls the store on a timer.
async fn read_waiting(
    capture: &CaptureHandle,
    filter: &EventFilter,
    mut after: u64,
    limit: usize,
    wait: Duration,
) -> Result<EventPage, StoreError> {
    let mut committed = capture.committed.clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Everything up to `seen` was committed before this read began, so the read saw it.
        let seen = *committed.borrow();
        let page = capture.store.events(after, limit, filter).await?;
        if !page.events.is_empty() || wait.is_zero() {
            return Ok(page);
        }
        after = page.next_after;
        let beyond = after.max(seen);
        let woken = tokio::time::timeout_at(deadline, async {
            committed.wait_for(|&seq| seq > beyond).await.map(|_| ())
        })
        .await;
        match woken {
            Ok(Ok(())) => continue,
            // Wait over, or capture stopped (the sender is gone): answer what we have.
            Ok(Err(_)) | Err(_) => {
                return Ok(EventPage {
                    events: Vec::new(),
                    next_after: after,
                });
            }
        }
    }
}

/// Outbox change events, as a CloudEvents JSON batch.
///
/// Events come in outbox order (`sequence`), only for resources the API key may read. Read
/// the next page with the `after` in `Next-After` (or follow `Link`): with `types`, it points
/// past the events that were skipped, so a filtered reader never re-scans them. With `wait`,
/// an empty page waits up to that many seconds for a new event before answering `[]`; this
/// endpoint is not subject to the server's request timeout.
#[utoipa::path(get, path = "/v1/changes", tag = "changes", operation_id = "list_changes",
    params(
        ("after" = Option<u64>, Query, minimum = 0,
            description = "Outbox sequence number to read after; 0 (the default) reads from the start. Use `Next-After` of the previous page."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "Most events in the page, 1 to 1000 (default 100)."),
        ("types" = Option<String>, Query, example = "inventory.updated,prices.*",
            description = "Comma-separated CloudEvents types (`inventory.updated`) or resource wildcards (`inventory.*`). Ops: created, updated, deleted, snapshot. Default: every type the key may read."),
        ("wait" = Option<u32>, Query, minimum = 0, maximum = 60,
            description = "Seconds to long-poll when no event is available, 0 to 60 (default 0: answer at once).")
    ),
    responses(
        (status = 200, description = "A page of events, possibly empty", content_type = "application/cloudevents-batch+json", body = [CloudEvent],
            headers(
                ("Next-After" = u64, description = "The `after` of the next read"),
                ("Link" = String, description = "`rel=\"next\"`: the next page with the same `limit`, `types` and `wait`")
            )),
        (status = 400, description = "Invalid or unknown parameter; `parameter` names it", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key reads no captured resource, or `types` names one it may not read", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "Change capture is not configured", content_type = "application/problem+json", body = super::Problem),
        (status = 410, description = "Retention removed events after this position (`[state] outbox_retention_hours`): re-read the resources, then continue from the position the problem names", content_type = "application/problem+json", body = super::Problem),
        (status = 500, description = "The change store failed", content_type = "application/problem+json", body = super::Problem),
        (status = 503, description = "The change store is busy, or too many clients wait for changes (`server.max_change_waiters`); honour Retry-After", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn feed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let capture = capture_of(&state)?;
    let captured = captured_resources(capture);
    let readable = readable_resources(&state.auth, &headers, &captured)?;
    let query = parse_query(raw.as_deref(), FEED_PARAMS, &captured)?;
    let filter = event_filter(query.types.as_deref(), &readable, state.auth.enabled())?;
    // Only waiting reads hold server state for long; they count against the limit.
    let _permit = if query.wait > 0 {
        Some(waiter_permit(&state)?)
    } else {
        None
    };
    let page = read_waiting(
        capture,
        &filter,
        query.after,
        query.limit,
        Duration::from_secs(query.wait),
    )
    .await?;
    let body: Vec<serde_json::Value> = page.events.iter().map(StoredEvent::to_cloudevent).collect();
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CLOUDEVENTS_BATCH_JSON),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(NEXT_AFTER, HeaderValue::from(page.next_after));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "<{}>; rel=\"next\"",
        next_link(&query, page.next_after)
    )) {
        h.insert(header::LINK, v);
    }
    Ok(resp)
}

/// Outbox change events as they are committed, as Server-Sent Events.
///
/// Each event has `id: <sequence>`, `event: <CloudEvents type>` and `data: <the CloudEvent
/// JSON on one line>`. Reconnect with `Last-Event-ID` (it takes precedence over `after`) to
/// resume without loss or duplicate. An idle stream sends a comment every 15 s. The stream is
/// not subject to the server's request timeout; it ends when the server stops capturing, and
/// clients should then reconnect.
#[utoipa::path(get, path = "/v1/changes/stream", tag = "changes", operation_id = "stream_changes",
    params(
        ("after" = Option<u64>, Query, minimum = 0,
            description = "Outbox sequence number to start after (default 0: from the start)."),
        ("types" = Option<String>, Query, example = "inventory.*",
            description = "Comma-separated CloudEvents types (`inventory.updated`) or resource wildcards (`inventory.*`). Default: every type the key may read."),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false,
            description = "The `id` of the last event received; the stream resumes after it. Takes precedence over `after`.")
    ),
    responses(
        (status = 200, description = "An endless stream of events; each `data` is one CloudEvent", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid or unknown parameter; `parameter` names it", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key reads no captured resource, or `types` names one it may not read", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "Change capture is not configured", content_type = "application/problem+json", body = super::Problem),
        (status = 410, description = "Retention removed events after this position (`[state] outbox_retention_hours`): re-read the resources, then continue from the position the problem names", content_type = "application/problem+json", body = super::Problem),
        (status = 500, description = "The change store failed", content_type = "application/problem+json", body = super::Problem),
        (status = 503, description = "The change store is busy, or too many clients wait for changes (`server.max_change_waiters`); honour Retry-After", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let capture = capture_of(&state)?;
    let captured = captured_resources(capture);
    let readable = readable_resources(&state.auth, &headers, &captured)?;
    let query = parse_query(raw.as_deref(), STREAM_PARAMS, &captured)?;
    let after = last_event_id(&headers)?.unwrap_or(query.after);
    let filter = event_filter(query.types.as_deref(), &readable, state.auth.enabled())?;
    let permit = waiter_permit(&state)?;
    // The first page is read before answering, so a failing store is a problem response
    // rather than a stream that ends at once.
    let first = capture.store.events(after, STREAM_PAGE, &filter).await?;
    let follow = Follow {
        store: Arc::clone(&capture.store),
        committed: capture.committed.clone(),
        filter,
        after: first.next_after,
        pending: first.events.into(),
        _permit: permit,
    };
    let mut resp = Sse::new(follow.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Tells nginx-style proxies not to buffer the stream.
    resp.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(resp)
}

/// The `Last-Event-ID` header as a sequence number; absent or empty is `None`.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::param(
            "Last-Event-ID",
            "must be the `id` of an event of this stream (a non-negative integer)",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|_| invalid())
}

/// One SSE client's position in the outbox and the page it has not yet been sent.
struct Follow {
    store: Arc<dyn Store>,
    committed: watch::Receiver<u64>,
    filter: EventFilter,
    /// Where the next store read starts.
    after: u64,
    /// Events read but not yet handed to the connection (at most [`STREAM_PAGE`]).
    pending: VecDeque<StoredEvent>,
    /// Held while the stream is open; see `server.max_change_waiters`.
    _permit: OwnedSemaphorePermit,
}

/// A place among the clients waiting on changes, or 503 when all are taken.
fn waiter_permit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    Arc::clone(&state.change_waiters)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyWaiters)
}

impl Follow {
    /// A pulled stream: the next page is read only when the connection has taken the last
    /// event of the previous one, so a slow client slows its stream instead of filling memory.
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut follow| async move {
            let event = follow.next().await?;
            Some((Ok(sse_event(&event)), follow))
        })
    }

    /// The next event; `None` ends the stream (capture stopped, or the store failed: the
    /// client reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let seen = *self.committed.borrow();
            match self
                .store
                .events(self.after, STREAM_PAGE, &self.filter)
                .await
            {
                Ok(page) => {
                    self.after = page.next_after;
                    if !page.events.is_empty() {
                        self.pending = page.events.into();
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, after = self.after, "change stream ends: store read failed");
                    return None;
                }
            }
            let beyond = self.after.max(seen);
            if self.committed.wait_for(|&seq| seq > beyond).await.is_err() {
                tracing::debug!(after = self.after, "change stream ends: capture stopped");
                return None;
            }
        }
    }
}

/// `id: <seq>`, `event: <type>`, `data: <CloudEvent JSON>`.
fn sse_event(stored: &StoredEvent) -> Event {
    let mut event = Event::default()
        .id(stored.seq.to_string())
        .data(stored.to_cloudevent().to_string());
    let ty = &stored.event.event_type;
    // Types are `resource.op`; a line break would end the field, so such a type is left out.
    if !ty.contains(['\n', '\r']) {
        event = event.event(ty);
    }
    event
}

/// The CloudEvents 1.0 JSON form of a change event, for the OpenAPI document (the wire form is
/// built by [`StoredEvent::to_cloudevent`]). Never instantiated.
pub enum CloudEvent {}

/// The `data` of a change event, for the OpenAPI document. Never instantiated.
pub enum ChangeData {}

/// `data.origin` values: which capture pass found the change (`model::ChangeOrigin`).
const ORIGINS: [&str; 4] = ["initial", "capture", "reconciliation", "resync"];

fn string_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .description(Some(description))
}

fn record_or_null(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(description))
}

impl utoipa::PartialSchema for CloudEvent {
    fn schema() -> RefOr<Schema> {
        let mut b = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .description(Some(
                "A change event (CloudEvents 1.0, structured JSON). `id` is deterministic: the \
                 same change always has the same id, so consumers can drop redeliveries.",
            ));
        let attributes: [(&str, ObjectBuilder); 8] = [
            (
                "specversion",
                string_schema("CloudEvents version").enum_values(Some(["1.0"])),
            ),
            (
                "id",
                string_schema("Deterministic event id: the same change has the same id"),
            ),
            (
                "source",
                string_schema("URI reference of the legacy source and resource"),
            ),
            (
                "type",
                string_schema("`<resource>.<op>`")
                    .examples([serde_json::json!("inventory.updated")]),
            ),
            (
                "subject",
                string_schema("The record key as in the resource's item URL")
                    .examples([serde_json::json!("A1001/MAIN")]),
            ),
            (
                "time",
                string_schema("When the change happened, as far as the source tells")
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            ),
            (
                "datacontenttype",
                string_schema("Media type of `data`").enum_values(Some(["application/json"])),
            ),
            (
                "sequence",
                string_schema(
                    "Outbox position (CloudEvents sequence extension), a decimal integer as a \
                     string; the SSE `id` and the feed's `after`",
                )
                .examples([serde_json::json!("42")]),
            ),
        ];
        for (name, schema) in attributes {
            b = b.property(name, schema).required(name);
        }
        b = b
            .property("data", Ref::from_schema_name("ChangeData"))
            .required("data");
        RefOr::T(Schema::Object(b.build()))
    }
}

impl utoipa::ToSchema for CloudEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CloudEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            ChangeData::name().into_owned(),
            <ChangeData as utoipa::PartialSchema>::schema(),
        ));
    }
}

impl utoipa::PartialSchema for ChangeData {
    fn schema() -> RefOr<Schema> {
        let ops: Vec<&str> = ChangeOp::ALL.iter().map(|o| o.as_str()).collect();
        let b = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .description(Some("What changed"))
            .property(
                "op",
                string_schema(
                    "`created`, `updated`, `deleted`, or `snapshot` (the record's current state \
                     from an initial load or resync: upsert it)",
                )
                .enum_values(Some(ops)),
            )
            .required("op")
            .property(
                "origin",
                string_schema("Which capture pass found the change").enum_values(Some(ORIGINS)),
            )
            .required("origin")
            .property(
                "key",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::Object))
                    .description(Some("The key fields of the record")),
            )
            .required("key")
            .property(
                "before",
                record_or_null("The record as last emitted; null when unknown or created"),
            )
            .required("before")
            .property(
                "after",
                record_or_null("The record now (resource schema); null for deletes"),
            )
            .required("after")
            .property(
                "changed",
                ArrayBuilder::new()
                    .items(string_schema("Field name"))
                    .description(Some(
                        "Fields whose value differs from `before`; every field for creations, \
                         none for deletes and snapshots",
                    )),
            )
            .required("changed")
            .property(
                "position",
                ObjectBuilder::new().description(Some(
                    "Where in the source the change was seen (cursor value, log id, pass); \
                     strategy-specific",
                )),
            )
            .required("position");
        RefOr::T(Schema::Object(b.build()))
    }
}

impl utoipa::ToSchema for ChangeData {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ChangeData")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeOrigin;

    fn captured() -> Vec<String> {
        vec!["inventory".into(), "prices".into()]
    }

    fn feed(raw: &str) -> Result<ChangesQuery, ApiError> {
        parse_query(Some(raw), FEED_PARAMS, &captured())
    }

    fn bad(raw: &str) -> (String, String) {
        match feed(raw) {
            Err(ApiError::InvalidParameter { parameter, detail }) => (parameter, detail),
            other => panic!("{raw}: expected a 400, got {other:?}"),
        }
    }

    fn sel(resource: &str, op: Option<ChangeOp>) -> TypeSelector {
        TypeSelector {
            resource: resource.into(),
            op,
        }
    }

    #[test]
    fn defaults_when_absent() {
        for raw in [None, Some("")] {
            let q = parse_query(raw, FEED_PARAMS, &captured()).unwrap();
            assert_eq!(
                q,
                ChangesQuery {
                    after: 0,
                    limit: DEFAULT_LIMIT,
                    types: None,
                    wait: 0
                }
            );
        }
    }

    #[test]
    fn parses_every_parameter() {
        let q = feed("after=41&limit=1000&wait=60&types=inventory.updated,%20prices.*").unwrap();
        assert_eq!(q.after, 41);
        assert_eq!(q.limit, 1000);
        assert_eq!(q.wait, 60);
        assert_eq!(
            q.types,
            Some(vec![
                sel("inventory", Some(ChangeOp::Updated)),
                sel("prices", None)
            ])
        );
    }

    #[test]
    fn rejects_out_of_range_and_malformed_numbers() {
        for (raw, param) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("wait=61", "wait"),
            ("wait=-1", "wait"),
            ("wait=1.5", "wait"),
            ("after=-1", "after"),
            ("after=", "after"),
            ("after=99999999999999999999999", "after"),
        ] {
            assert_eq!(bad(raw).0, param, "{raw}");
        }
        assert!(bad("limit=1001").1.contains("from 1 to 1000"));
        assert!(bad("wait=61").1.contains("from 0 to 60"));
    }

    #[test]
    fn rejects_unknown_and_repeated_parameters() {
        let (p, d) = bad("colour=red");
        assert_eq!(p, "colour");
        assert!(d.contains("known: after, limit, types, wait"), "{d}");
        assert_eq!(bad("after=1&after=2").0, "after");
        assert_eq!(bad("types=prices.*&types=inventory.*").0, "types");
        // The stream takes no `limit` or `wait`.
        let err = parse_query(Some("limit=5"), STREAM_PARAMS, &captured()).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidParameter { ref parameter, .. } if parameter == "limit")
        );
    }

    #[test]
    fn type_filters_name_the_unknown_resource_or_op() {
        let (p, d) = bad("types=stock.updated");
        assert_eq!(p, "types");
        assert!(d.contains("no captured resource `stock`"), "{d}");
        assert!(d.contains("inventory, prices"), "{d}");
        let d = bad("types=inventory.changed").1;
        assert!(d.contains("unknown op `changed`"), "{d}");
        assert!(d.contains("created, updated, deleted, snapshot"), "{d}");
        assert!(bad("types=inventory").1.contains("neither an event type"));
        assert!(bad("types=").1.contains("empty type"));
        assert!(bad("types=inventory.*,,prices.*").1.contains("empty type"));
        // The op part is exact: no partial wildcards, no case folding.
        assert!(bad("types=inventory.up*").1.contains("unknown op"));
        assert!(
            bad("types=Inventory.updated")
                .1
                .contains("no captured resource")
        );
    }

    #[test]
    fn duplicate_terms_collapse() {
        let q = feed("types=prices.*,prices.*,prices.created").unwrap();
        assert_eq!(
            q.types,
            Some(vec![
                sel("prices", None),
                sel("prices", Some(ChangeOp::Created))
            ])
        );
    }

    #[test]
    fn wildcards_expand_to_every_op_and_merge_with_exact_types() {
        let selectors = [sel("prices", Some(ChangeOp::Created)), sel("prices", None)];
        let f = event_filter(Some(&selectors), &captured(), true).unwrap();
        assert_eq!(f.resources, ["prices"]);
        assert_eq!(
            f.types,
            [
                "prices.created",
                "prices.updated",
                "prices.deleted",
                "prices.snapshot"
            ]
        );
    }

    #[test]
    fn filters_restrict_to_readable_resources() {
        let readable = vec!["inventory".to_owned()];
        // No types: every readable resource, and only those when auth is on.
        let f = event_filter(None, &readable, true).unwrap();
        assert_eq!(f.resources, ["inventory"]);
        assert!(f.types.is_empty());
        let f = event_filter(None, &captured(), false).unwrap();
        assert_eq!(f, EventFilter::default());
        // Naming a type of an unreadable resource is forbidden, even among readable ones.
        let selectors = [
            sel("inventory", None),
            sel("prices", Some(ChangeOp::Updated)),
        ];
        match event_filter(Some(&selectors), &readable, true) {
            Err(ApiError::Forbidden(scope)) => assert_eq!(scope, "prices:read"),
            other => panic!("expected 403, got {other:?}"),
        }
        let f = event_filter(Some(&selectors[..1]), &readable, true).unwrap();
        assert_eq!(f.types.len(), ChangeOp::ALL.len());
    }

    #[test]
    fn next_link_keeps_limit_types_and_wait() {
        let q = feed("types=inventory.updated,prices.*&limit=7&wait=5&after=3").unwrap();
        assert_eq!(
            next_link(&q, 12),
            "/v1/changes?after=12&limit=7&types=inventory.updated,prices.*&wait=5"
        );
        let q = feed("").unwrap();
        assert_eq!(next_link(&q, 0), "/v1/changes?after=0&limit=100");
    }

    #[test]
    fn last_event_id_header() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h).unwrap(), None);
        h.insert("last-event-id", HeaderValue::from_static(" 17 "));
        assert_eq!(last_event_id(&h).unwrap(), Some(17));
        h.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(last_event_id(&h).unwrap(), None);
        h.insert("last-event-id", HeaderValue::from_static("abc"));
        assert!(matches!(
            last_event_id(&h),
            Err(ApiError::InvalidParameter { ref parameter, .. }) if parameter == "Last-Event-ID"
        ));
    }

    /// Does not compile when an origin is added: add it to [`ORIGINS`] too.
    fn _every_origin_is_documented(origin: ChangeOrigin) {
        match origin {
            ChangeOrigin::Initial
            | ChangeOrigin::Capture
            | ChangeOrigin::Reconciliation
            | ChangeOrigin::Resync => {}
        }
    }

    #[test]
    fn documented_origins_are_the_serialized_ones() {
        for origin in [
            ChangeOrigin::Initial,
            ChangeOrigin::Capture,
            ChangeOrigin::Reconciliation,
            ChangeOrigin::Resync,
        ] {
            let text = serde_json::to_value(origin).unwrap();
            assert!(ORIGINS.contains(&text.as_str().unwrap()), "{text}");
        }
    }
}
