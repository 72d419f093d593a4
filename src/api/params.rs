//! Parsing list query strings: `limit`, `cursor`, `sort=a,-b`, and filters `field=v`
//! (equality; repeat for IN) and `field[gt|gte|lt|lte]=v`. Every parameter must be known and
//! every filtered or sorted field declared so in the adapter; anything else is a 400 naming it.

use super::error::ApiError;
use crate::model::Value;
use crate::resource::Resource;
use crate::source::CompareOp;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page a client may ask for; bounds the legacy query and the response size.
pub const MAX_LIMIT: u64 = 500;

/// One filter term.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: String,
    pub op: CompareOp,
    pub value: Value,
}

/// A parsed list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListParams {
    pub limit: u64,
    pub cursor: Option<String>,
    /// Requested sort fields with `descending`, before the key is appended.
    pub sort: Vec<(String, bool)>,
    pub filters: Vec<Filter>,
}

/// Parses the raw query string of `GET /v1/{resource}`.
pub fn parse_list(resource: &Resource, raw: Option<&str>) -> Result<ListParams, ApiError> {
    let mut params = ListParams {
        limit: DEFAULT_LIMIT,
        cursor: None,
        sort: Vec::new(),
        filters: Vec::new(),
    };
    let mut seen_limit = false;
    let mut seen_sort = false;
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "limit" => {
                if std::mem::replace(&mut seen_limit, true) {
                    return Err(ApiError::param("limit", "given more than once"));
                }
                params.limit = match value.parse::<u64>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => {
                        return Err(ApiError::param(
                            "limit",
                            format!("must be an integer from 1 to {MAX_LIMIT}"),
                        ));
                    }
                };
            }
            "cursor" => {
                if params.cursor.replace(value.into_owned()).is_some() {
                    return Err(ApiError::param("cursor", "given more than once"));
                }
            }
            "sort" => {
                if std::mem::replace(&mut seen_sort, true) {
                    return Err(ApiError::param(
                        "sort",
                        "given more than once; use sort=a,-b",
                    ));
                }
                params.sort = parse_sort(resource, &value)?;
            }
            other => params.filters.push(parse_filter(resource, other, &value)?),
        }
    }
    Ok(params)
}

fn parse_sort(resource: &Resource, value: &str) -> Result<Vec<(String, bool)>, ApiError> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for term in value.split(',') {
        let (name, desc) = match term.strip_prefix('-') {
            Some(n) => (n, true),
            None => (term, false),
        };
        let sortable = resource.schema.fields.get(name).is_some_and(|f| f.sortable);
        if !sortable {
            return Err(ApiError::param(
                "sort",
                format!(
                    "`{name}` is not a sortable field; sortable fields: {}",
                    listing(resource, |f| f.sortable)
                ),
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(ApiError::param("sort", format!("`{name}` appears twice")));
        }
        out.push((name.to_owned(), desc));
    }
    Ok(out)
}

fn parse_filter(resource: &Resource, param: &str, value: &str) -> Result<Filter, ApiError> {
    let (name, op) = match param.split_once('[') {
        Some((name, rest)) => {
            let op = match rest {
                "gt]" => CompareOp::Gt,
                "gte]" => CompareOp::Ge,
                "lt]" => CompareOp::Lt,
                "lte]" => CompareOp::Le,
                "eq]" => CompareOp::Eq,
                _ => {
                    return Err(ApiError::param(
                        param,
                        "unknown operator; use [eq], [gt], [gte], [lt] or [lte]",
                    ));
                }
            };
            (name, op)
        }
        None => (param, CompareOp::Eq),
    };
    let Some(field) = resource.schema.fields.get(name) else {
        return Err(ApiError::param(
            param,
            format!(
                "unknown query parameter `{param}`; known: limit, cursor, sort{}",
                listing_prefixed(resource)
            ),
        ));
    };
    if !field.filterable {
        return Err(ApiError::param(
            param,
            format!(
                "field `{name}` cannot be filtered; filterable fields: {}",
                listing(resource, |f| f.filterable)
            ),
        ));
    }
    let value = Value::parse(field.ty, value).map_err(|e| ApiError::param(param, e.to_string()))?;
    Ok(Filter {
        field: name.to_owned(),
        op,
        value,
    })
}

fn listing(resource: &Resource, pick: impl Fn(&crate::model::FieldSchema) -> bool) -> String {
    let names: Vec<_> = resource
        .schema
        .fields
        .iter()
        .filter(|(_, f)| pick(f))
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

fn listing_prefixed(resource: &Resource) -> String {
    let l = listing(resource, |f| f.filterable);
    if l == "(none)" {
        String::new()
    } else {
        format!(", {l}")
    }
}

/// Entries an operator list (quarantine, dead letters, audit log) returns unless `limit`
/// says otherwise.
pub const ADMIN_DEFAULT_LIMIT: usize = 100;
/// At most this many entries per operator list request.
pub const ADMIN_MAX_LIMIT: usize = 1_000;

/// The `limit` of an operator list: the default when absent, else 1 to [`ADMIN_MAX_LIMIT`].
pub fn admin_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(ADMIN_DEFAULT_LIMIT);
    if (1..=ADMIN_MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::param(
            "limit",
            format!("must be between 1 and {ADMIN_MAX_LIMIT}"),
        ))
    }
}
