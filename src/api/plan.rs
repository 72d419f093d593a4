//! Turning a parsed list request into a source query: filters become bound predicates, the
//! sort is completed with the key (a total order), and a cursor becomes the keyset condition
//! "strictly after the last row served" in that order.

use super::cursor::{self, CursorError};
use super::error::ApiError;
use super::params::ListParams;
use crate::model::Value;
use crate::resource::{BoundField, Resource};
use crate::source::{CompareOp, OrderBy, Param, Predicate, SelectQuery};

/// A query ready to run, and what is needed to build the next cursor from its rows.
#[derive(Debug)]
pub struct ListPlan {
    pub query: SelectQuery,
    /// Indices (into the resource's fields) of the total sort order, for the next cursor.
    pub sort_fields: Vec<usize>,
    pub fingerprint: String,
    pub limit: u64,
}

/// Builds the source query for a list request.
pub fn plan_list(resource: &Resource, params: &ListParams) -> Result<ListPlan, ApiError> {
    let index = |name: &str| resource.fields.iter().position(|f| f.name == name);
    // Total order: the requested sort, then the key fields not already in it.
    let mut order: Vec<(usize, bool)> = Vec::new();
    for (name, desc) in &params.sort {
        if let Some(i) = index(name) {
            order.push((i, *desc));
        }
    }
    for k in &resource.schema.key {
        if let Some(i) = index(k)
            && !order.iter().any(|(j, _)| *j == i)
        {
            order.push((i, false));
        }
    }
    let mut filter = filter_predicates(resource, params);
    let mut fp_parts = vec![resource.schema.name.clone()];
    fp_parts.extend(
        order
            .iter()
            .map(|(i, d)| format!("{}{}", if *d { "-" } else { "" }, resource.fields[*i].name)),
    );
    fp_parts.extend(
        params
            .filters
            .iter()
            .map(|f| format!("{}{:?}{}", f.field, f.op, f.value.to_json())),
    );
    let fingerprint = cursor::fingerprint(&fp_parts);
    if let Some(c) = &params.cursor {
        let raw = cursor::decode(c, &fingerprint, order.len()).map_err(|e| match e {
            CursorError::Malformed | CursorError::WrongQuery => {
                ApiError::param("cursor", e.to_string())
            }
        })?;
        let mut values = Vec::with_capacity(raw.len());
        for ((i, _), json) in order.iter().zip(&raw) {
            let f = &resource.fields[*i];
            let v = Value::from_json(f.decode_type(), json)
                .map_err(|_| ApiError::param("cursor", "cursor is malformed"))?;
            if v == Value::Null {
                return Err(ApiError::param("cursor", "cursor is malformed"));
            }
            values.push(v);
        }
        filter.push(keyset(resource, &order, values));
    }
    let query = SelectQuery {
        relation: resource.relation.clone(),
        columns: resource.select_columns(),
        filter,
        order_by: order
            .iter()
            .map(|(i, desc)| OrderBy {
                column: resource.fields[*i].column.clone(),
                descending: *desc,
                binary: false,
            })
            .collect(),
        limit: Some(params.limit + 1),
    };
    Ok(ListPlan {
        query,
        sort_fields: order.iter().map(|(i, _)| *i).collect(),
        fingerprint,
        limit: params.limit,
    })
}

/// Filters as predicates; repeated equality filters on one field become IN.
fn filter_predicates(resource: &Resource, params: &ListParams) -> Vec<Predicate> {
    let mut out = Vec::new();
    let mut eq_fields: Vec<&str> = Vec::new();
    for f in &params.filters {
        let Some(field) = resource.field(&f.field) else {
            continue;
        };
        if f.op == CompareOp::Eq {
            if eq_fields.contains(&f.field.as_str()) {
                continue;
            }
            eq_fields.push(&f.field);
            let values: Vec<Param> = params
                .filters
                .iter()
                .filter(|g| g.field == f.field && g.op == CompareOp::Eq)
                .flat_map(|g| field.to_params(&g.value))
                .collect();
            out.push(equality(field, values));
        } else if let Some(param) = field.to_params(&f.value).into_iter().next() {
            out.push(Predicate::Compare {
                column: field.column.clone(),
                op: f.op,
                param,
            });
        }
    }
    out
}

fn equality(field: &BoundField, mut values: Vec<Param>) -> Predicate {
    if values.len() == 1 {
        Predicate::Compare {
            column: field.column.clone(),
            op: CompareOp::Eq,
            param: values.remove(0),
        }
    } else {
        Predicate::In {
            column: field.column.clone(),
            params: values,
        }
    }
}

/// Rows after the cursor's values in the list's order.
fn keyset(resource: &Resource, order: &[(usize, bool)], values: Vec<Value>) -> Predicate {
    let columns: Vec<_> = order
        .iter()
        .map(|(i, desc)| {
            let f = &resource.fields[*i];
            (f.column.clone(), f.sql_type, *desc)
        })
        .collect();
    Predicate::keyset_after(&columns, &values)
}

/// Builds the query for one record by its key values (already parsed).
pub fn plan_get(resource: &Resource, key: &[Value]) -> SelectQuery {
    let filter = resource
        .key_fields()
        .into_iter()
        .zip(key)
        .map(|(f, v)| equality(f, f.to_params(v)))
        .collect();
    SelectQuery {
        relation: resource.relation.clone(),
        columns: resource.select_columns(),
        filter,
        order_by: Vec::new(),
        limit: Some(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::parse_list;
    use crate::config::Trim;
    use crate::model::{FieldSchema, FieldType, ResourceSchema};
    use crate::resource::Transform;
    use crate::source::{Dialect, DialectKind, Relation, SqlType};

    fn inventory() -> Resource {
        let mk = |name: &str, column: &str, ty, sql_type, filter, sort| {
            (
                BoundField {
                    name: name.into(),
                    column: column.into(),
                    ty,
                    sql_type,
                    transform: Transform {
                        trim: Trim::End,
                        scale: None,
                        timezone: chrono_tz::UTC,
                        true_values: None,
                        false_values: None,
                    },
                },
                FieldSchema {
                    ty,
                    nullable: false,
                    description: None,
                    filterable: filter,
                    sortable: sort,
                },
            )
        };
        let parts = [
            mk(
                "sku",
                "ITEM_CODE",
                FieldType::String,
                SqlType::Char { len: Some(10) },
                true,
                true,
            ),
            mk(
                "location",
                "STORE_NO",
                FieldType::String,
                SqlType::Char { len: Some(4) },
                true,
                true,
            ),
            mk(
                "on_hand",
                "QTY",
                FieldType::Decimal,
                SqlType::Decimal {
                    precision: 12,
                    scale: 3,
                },
                true,
                true,
            ),
        ];
        Resource {
            schema: ResourceSchema {
                name: "inventory".into(),
                component: "InventoryLevel".into(),
                description: None,
                key: vec!["sku".into(), "location".into()],
                fields: parts
                    .iter()
                    .map(|(b, s)| (b.name.clone(), s.clone()))
                    .collect(),
            },
            source: "pos".into(),
            relation: Relation::Table {
                schema: None,
                name: "STOCK_LEVEL".into(),
            },
            fields: parts.into_iter().map(|(b, _)| b).collect(),
        }
    }

    #[test]
    fn request_values_never_reach_sql_text() {
        let r = inventory();
        let evil = "sku=%27%3B%20DROP%20TABLE%20x%3B--&on_hand%5Bgte%5D=5";
        let params = parse_list(&r, Some(evil)).unwrap();
        let plan = plan_list(&r, &params).unwrap();
        let (sql, binds) = Dialect::of(DialectKind::Sqlite).render(&plan.query);
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(binds.len(), 2);
        assert_eq!(binds[0].value, Value::Text("'; DROP TABLE x;--".into()));
    }

    #[test]
    fn sort_is_completed_with_the_key_and_cursor_continues_it() {
        let r = inventory();
        let params = parse_list(&r, Some("sort=-on_hand&limit=2")).unwrap();
        let plan = plan_list(&r, &params).unwrap();
        let (sql, _) = Dialect::of(DialectKind::Postgres).render(&plan.query);
        assert!(
            sql.ends_with(r#"ORDER BY "QTY" DESC, "ITEM_CODE" ASC, "STORE_NO" ASC LIMIT 3"#),
            "{sql}"
        );
        let c = cursor::encode(
            &plan.fingerprint,
            vec![
                serde_json::json!("5.000"),
                serde_json::json!("A1"),
                serde_json::json!("S01"),
            ],
        );
        let next = parse_list(&r, Some(&format!("sort=-on_hand&limit=2&cursor={c}"))).unwrap();
        let plan = plan_list(&r, &next).unwrap();
        let (sql, binds) = Dialect::of(DialectKind::Postgres).render(&plan.query);
        assert!(sql.contains(r#"(("QTY" < ?) OR ("QTY" = ? AND "ITEM_CODE" > ?) OR ("QTY" = ? AND "ITEM_CODE" = ? AND "STORE_NO" > ?))"#), "{sql}");
        assert_eq!(binds.len(), 6);
        // The same cursor with another sort is refused.
        let other = parse_list(&r, Some(&format!("sort=on_hand&cursor={c}"))).unwrap();
        assert!(plan_list(&r, &other).is_err());
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        let r = inventory();
        let cases = [
            ("colour=red", "colour"),
            ("limit=501", "limit"),
            ("limit=0", "limit"),
            ("sort=nope", "sort"),
            ("on_hand[between]=1", "on_hand[between]"),
            ("on_hand=abc", "on_hand"),
        ];
        for (q, param) in cases {
            match parse_list(&r, Some(q)) {
                Err(ApiError::InvalidParameter { parameter, .. }) => {
                    assert_eq!(parameter, param, "{q}")
                }
                other => panic!("{q}: {other:?}"),
            }
        }
        let p = parse_list(&r, Some("cursor=%%%")).unwrap();
        assert!(matches!(
            plan_list(&r, &p),
            Err(ApiError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn repeated_equality_becomes_in() {
        let r = inventory();
        let p = parse_list(&r, Some("location=S01&location=S02")).unwrap();
        let plan = plan_list(&r, &p).unwrap();
        let (sql, binds) = Dialect::of(DialectKind::Sqlite).render(&plan.query);
        assert!(sql.contains(r#""STORE_NO" IN (?, ?)"#), "{sql}");
        assert_eq!(binds.len(), 2);
    }
}
