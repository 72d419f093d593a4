//! `GET /v1/{resource}` and `GET /v1/{resource}/{key...}`: authorize, plan, fetch from the
//! source, map rows to records, and answer JSON with a strong ETag (304 on `If-None-Match`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::params::parse_list;
use super::plan::{plan_get, plan_list};
use super::{AppState, cursor};
use crate::auth::read_scope;
use crate::model::Value;
use crate::resource::Resource;
use crate::source::{Row, SelectQuery};

/// Adds the list and get routes of one resource.
pub fn routes(app: Router<Arc<AppState>>, resource: Arc<Resource>) -> Router<Arc<AppState>> {
    let list_path = format!("/v1/{}", resource.schema.name);
    let key_path = item_path(&resource);
    let r1 = Arc::clone(&resource);
    let r2 = resource;
    app.route(
        &list_path,
        get(
            move |state: State<Arc<AppState>>, headers: HeaderMap, query: RawQuery| {
                list(state, r1, headers, query)
            },
        ),
    )
    .route(
        &key_path,
        get(
            move |state: State<Arc<AppState>>,
                  headers: HeaderMap,
                  path: Path<Vec<(String, String)>>| {
                get_one(state, r2, headers, path)
            },
        ),
    )
}

/// `/v1/inventory/{sku}/{location}`: one path segment per key field.
pub fn item_path(resource: &Resource) -> String {
    let mut p = format!("/v1/{}", resource.schema.name);
    for k in &resource.schema.key {
        p.push_str(&format!("/{{{k}}}"));
    }
    p
}

fn authorize(state: &AppState, headers: &HeaderMap, resource: &Resource) -> Result<(), ApiError> {
    state
        .auth
        .authorize(headers, &read_scope(&resource.schema.name))?;
    Ok(())
}

async fn fetch(
    state: &AppState,
    resource: &Resource,
    query: SelectQuery,
) -> Result<Vec<Row>, ApiError> {
    let source = state
        .sources
        .get(&resource.source)
        .ok_or_else(|| ApiError::NotFound(format!("source `{}` is not loaded", resource.source)))?;
    source.fetch(query).await.map_err(|error| ApiError::Source {
        source_name: resource.source.clone(),
        error,
    })
}

fn to_record_json(resource: &Resource, row: Row) -> Result<serde_json::Value, ApiError> {
    let record = resource.record(row).map_err(|error| ApiError::Mapping {
        resource: resource.schema.name.clone(),
        error,
    })?;
    Ok(serde_json::Value::Object(
        record.into_iter().map(|(k, v)| (k, v.to_json())).collect(),
    ))
}

async fn list(
    State(state): State<Arc<AppState>>,
    resource: Arc<Resource>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &resource)?;
    let params = parse_list(&resource, raw.as_deref())?;
    let plan = plan_list(&resource, &params)?;
    let mut rows = fetch(&state, &resource, plan.query).await?;
    let has_more = rows.len() as u64 > plan.limit;
    rows.truncate(usize::try_from(plan.limit).unwrap_or(usize::MAX));
    let next_cursor = match rows.last() {
        Some(last) if has_more => Some(cursor::encode(
            &plan.fingerprint,
            plan.sort_fields
                .iter()
                .map(|i| last[*i].to_json())
                .collect(),
        )),
        _ => None,
    };
    let data = rows
        .into_iter()
        .map(|row| to_record_json(&resource, row))
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor
        .as_ref()
        .map(|c| next_link(&resource.schema.name, raw.as_deref(), c));
    let body = json!({ "data": data, "next": next, "next_cursor": next_cursor });
    let mut resp = with_etag(&headers, &body);
    if let Some(link) = next
        && let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\""))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    Ok(resp)
}

async fn get_one(
    State(state): State<Arc<AppState>>,
    resource: Arc<Resource>,
    headers: HeaderMap,
    Path(segments): Path<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &resource)?;
    let mut key = Vec::with_capacity(segments.len());
    for (name, text) in &segments {
        let field = resource
            .schema
            .fields
            .get(name)
            .ok_or_else(|| ApiError::param(name, "unknown key field"))?;
        let value =
            Value::parse(field.ty, text).map_err(|e| ApiError::param(name, e.to_string()))?;
        key.push(value);
    }
    let rows = fetch(&state, &resource, plan_get(&resource, &key)).await?;
    if rows.len() > 1 {
        tracing::warn!(resource = %resource.schema.name, "key matches several legacy rows; serving the first");
    }
    let Some(row) = rows.into_iter().next() else {
        return Err(ApiError::NotFound(format!(
            "no {} with this key",
            resource.schema.name
        )));
    };
    let body = to_record_json(&resource, row)?;
    Ok(with_etag(&headers, &body))
}

fn next_link(name: &str, raw: Option<&str>, cursor: &str) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "cursor" {
            ser.append_pair(&k, &v);
        }
    }
    ser.append_pair("cursor", cursor);
    format!("/v1/{name}?{}", ser.finish())
}

/// Serializes `body` with a strong ETag over its bytes; 304 when the client has it already.
fn with_etag(request: &HeaderMap, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]));
    let matches = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response()
    };
    resp.headers_mut().insert(header::ETAG, etag_value);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    resp
}
