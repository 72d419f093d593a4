//! The OpenAPI 3.1 document, built with utoipa from the loaded adapters: one schema component
//! and two paths per resource, every parameter and error response listed, and the API-key
//! security schemes. Static endpoints come from their `#[utoipa::path]` annotations; the change
//! feed, stream and `/admin/capture` appear only when some resource is captured.

use utoipa::OpenApi as _;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, Ref, RefOr, Required, header::HeaderBuilder,
};

use super::admin::{CaptureOverview, OutboxStatus, ResyncAccepted};
use super::changes::{ChangeData, CloudEvent};
use super::files::{
    ApproveAccepted, ApproveRequest, FileResourceStatus, FilesOverview, QuarantineList,
};
use super::health::{CaptureReadiness, Health, Readiness, SourceReadiness};
use super::params::{DEFAULT_LIMIT, MAX_LIMIT};
use super::problem::{PROBLEM_JSON, Problem};
use super::resources::item_path;
use super::subscriptions::{
    ActionDone, AuditPage, DeadLetterPage, PauseRequest, ReplayRequest, RewindRequest,
    SubscriptionsOverview,
};
use crate::auth::{ADMIN_READ, ADMIN_WRITE, read_scope};
use crate::capture::{
    AppliedExport, CaptureState, ExportFile, ExportState, ExportStatus, HeldExport, RejectedExport,
    ResourceCaptureStatus, ScanProgress,
};
use crate::delivery::SubscriptionStatus;
use crate::model::{FieldSchema, FieldType, ResourceSchema};
use crate::resource::Resource;
use crate::source::files::mirror::QuarantinedRow;
use crate::store::{AuditEntry, DeadLetter, SubscriptionState};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(super::health::healthz, super::health::readyz),
    components(schemas(Problem, Health, Readiness, SourceReadiness, CaptureReadiness, CaptureState)),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "resources", description = "Legacy data as versioned resources")
    )
)]
struct StaticApi;

/// The change endpoints, documented only when some resource is captured.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::changes::feed,
        super::changes::stream,
        super::admin::capture,
        super::admin::resync
    ),
    components(schemas(
        CloudEvent,
        ChangeData,
        CaptureOverview,
        OutboxStatus,
        ResyncAccepted,
        ResourceCaptureStatus,
        ScanProgress
    )),
    tags(
        (name = "changes", description = "Change events captured from the legacy system, as CloudEvents"),
        (name = "admin", description = "Operator endpoints; need the `admin:read` (status) or `admin:write` (actions) scope")
    )
)]
struct CaptureApi;

/// The export-folder endpoints, documented only when some resource reads a files source.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(super::files::status, super::files::approve, super::files::quarantine),
    components(schemas(
        FilesOverview,
        FileResourceStatus,
        ExportStatus,
        ExportState,
        ExportFile,
        AppliedExport,
        HeldExport,
        RejectedExport,
        ApproveRequest,
        ApproveAccepted,
        QuarantineList,
        QuarantinedRow
    ))
)]
struct FilesApi;

/// The delivery endpoints, documented only when subscriptions are configured.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::subscriptions::overview,
        super::subscriptions::dead_letters,
        super::subscriptions::replay,
        super::subscriptions::replay_one,
        super::subscriptions::pause,
        super::subscriptions::resume,
        super::subscriptions::rewind,
        super::subscriptions::audit,
        super::subscriptions::prometheus
    ),
    components(schemas(
        SubscriptionsOverview,
        SubscriptionStatus,
        SubscriptionState,
        DeadLetterPage,
        DeadLetter,
        ReplayRequest,
        PauseRequest,
        RewindRequest,
        ActionDone,
        AuditPage,
        AuditEntry
    ))
)]
struct DeliveryApi;

/// Which optional endpoint groups the document describes, besides resources and health.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Resources with a `capture` section: the change feed, stream and `/admin/capture`
    /// appear when there is one.
    pub captured: Vec<String>,
    /// Some resource reads export files: `/admin/files`.
    pub files: bool,
    /// Subscriptions are configured: `/admin/subscriptions`, `/admin/audit`, `/metrics`.
    pub delivery: bool,
}

/// Builds the whole document for a set of bound resources and the optional groups `extras`
/// names.
pub fn build<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
    extras: &Extras,
    auth_enabled: bool,
) -> OpenApi {
    let mut doc = StaticApi::openapi();
    doc.info = InfoBuilder::new()
        .title("legacy-bridge API")
        .version("1.0.0")
        .description(Some(
            "Products, inventory, prices and custom resources read live from a legacy system. \
             Lists use keyset pagination: follow `next` (or pass `next_cursor` as `cursor`) until \
             it is null. Decimals are exact and sent as strings; timestamps are RFC 3339 with \
             offset. Errors are `application/problem+json` (RFC 9457).",
        ))
        .build();
    let mut components = doc.components.take().unwrap_or_default();
    for r in resources {
        let schema = &r.schema;
        components
            .schemas
            .insert(schema.component.clone(), RefOr::T(record_schema(schema)));
        components.schemas.insert(
            format!("{}Page", schema.component),
            RefOr::T(page_schema(schema)),
        );
        doc.paths.paths.insert(
            format!("/v1/{}", schema.name),
            PathItem::new(HttpMethod::Get, list_operation(schema, auth_enabled)),
        );
        doc.paths.paths.insert(
            item_path(r),
            PathItem::new(HttpMethod::Get, get_operation(schema, auth_enabled)),
        );
    }
    if auth_enabled {
        components.security_schemes.insert(
            "bearer".into(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!("API key as a bearer token. {SCOPES_DOC}")))
                    .build(),
            ),
        );
        components.security_schemes.insert(
            "api_key".into(),
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                &format!("API key in a header. {SCOPES_DOC}"),
            ))),
        );
    }
    doc.components = Some(ComponentsBuilder::from(components).build());
    if !extras.captured.is_empty() {
        add_capture_api(&mut doc, extras, auth_enabled);
    }
    doc
}

/// How scopes work, for the security scheme descriptions.
const SCOPES_DOC: &str = "Scopes: `<resource>:read` reads one resource and its change events; \
    `*:read` reads every resource; `admin:read` reads `/admin` and `admin:write` runs operator \
    actions (resync, export approval, dead-letter replay, pause, resume, rewind); neither is granted by `*:read`.";

/// Adds the change feed, the stream and `/admin/capture`, with their security: the change
/// routes accept the read scope of any captured resource, `/admin` only `admin:read`.
fn add_capture_api(doc: &mut OpenApi, extras: &Extras, auth: bool) {
    doc.merge(CaptureApi::openapi());
    if extras.files {
        doc.merge(FilesApi::openapi());
    }
    if extras.delivery {
        doc.merge(DeliveryApi::openapi());
    }
    let change_scopes: Vec<String> = extras.captured.iter().map(|r| read_scope(r)).collect();
    let admin_scopes = vec![ADMIN_READ.to_owned()];
    let admin_write_scopes = vec![ADMIN_WRITE.to_owned()];
    for (path, scopes) in [
        ("/v1/changes", &change_scopes),
        ("/v1/changes/stream", &change_scopes),
        ("/admin/capture", &admin_scopes),
        ("/admin/capture/{resource}/resync", &admin_write_scopes),
        ("/admin/files", &admin_scopes),
        ("/admin/files/{resource}/approve", &admin_write_scopes),
        ("/admin/files/{resource}/quarantine", &admin_scopes),
        ("/admin/subscriptions", &admin_scopes),
        ("/admin/subscriptions/{name}/dead-letters", &admin_scopes),
        (
            "/admin/subscriptions/{name}/dead-letters/replay",
            &admin_write_scopes,
        ),
        (
            "/admin/subscriptions/{name}/dead-letters/{seq}/replay",
            &admin_write_scopes,
        ),
        ("/admin/subscriptions/{name}/pause", &admin_write_scopes),
        ("/admin/subscriptions/{name}/resume", &admin_write_scopes),
        ("/admin/subscriptions/{name}/rewind", &admin_write_scopes),
        ("/admin/audit", &admin_scopes),
        ("/metrics", &admin_scopes),
    ] {
        let Some(op) = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|p| p.get.as_mut().or(p.post.as_mut()))
        else {
            continue;
        };
        if auth {
            // Alternatives: any one of these scopes is enough.
            let mut requirements = Vec::new();
            for scope in scopes {
                requirements.push(SecurityRequirement::new("bearer", [scope.clone()]));
                requirements.push(SecurityRequirement::new("api_key", [scope.clone()]));
            }
            op.security = Some(requirements);
        } else {
            op.responses.responses.remove("401");
            op.responses.responses.remove("403");
        }
    }
}

fn field_schema(f: &FieldSchema) -> Schema {
    let (ty, format, example): (Type, Option<SchemaFormat>, Option<serde_json::Value>) = match f.ty
    {
        FieldType::String => (Type::String, None, None),
        FieldType::Integer => (
            Type::Integer,
            Some(SchemaFormat::KnownFormat(KnownFormat::Int64)),
            None,
        ),
        FieldType::Decimal => (
            Type::String,
            Some(SchemaFormat::Custom("decimal".into())),
            Some(serde_json::json!("12.9900")),
        ),
        FieldType::Boolean => (Type::Boolean, None, None),
        FieldType::Date => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::Date)),
            None,
        ),
        FieldType::Time => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::Time)),
            None,
        ),
        FieldType::Timestamp => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
            Some(serde_json::json!("2024-03-01T10:15:00+01:00")),
        ),
        FieldType::Binary => (Type::String, None, None),
    };
    let schema_type = if f.nullable {
        SchemaType::from_iter([ty, Type::Null])
    } else {
        SchemaType::new(ty)
    };
    let mut b = ObjectBuilder::new()
        .schema_type(schema_type)
        .format(format)
        .description(f.description.clone());
    if f.ty == FieldType::Binary {
        b = b.content_encoding("base64");
    }
    if let Some(e) = example {
        b = b.examples([e]);
    }
    Schema::Object(b.build())
}

fn record_schema(s: &ResourceSchema) -> Schema {
    let mut b = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Object))
        .description(s.description.clone());
    for (name, f) in &s.fields {
        b = b.property(name, field_schema(f)).required(name);
    }
    Schema::Object(b.build())
}

fn page_schema(s: &ResourceSchema) -> Schema {
    let nullable_string = |d: &str| {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .description(Some(d))
    };
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .property(
                "data",
                ArrayBuilder::new().items(Ref::from_schema_name(&s.component)),
            )
            .required("data")
            .property(
                "next",
                nullable_string("Relative URL of the next page; null on the last page."),
            )
            .required("next")
            .property(
                "next_cursor",
                nullable_string("Opaque cursor for the next page; null on the last page."),
            )
            .required("next_cursor")
            .build(),
    )
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn ok_response(component: &str, description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(component)))
                    .build(),
            )
            .header(
                "ETag",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(SchemaType::new(Type::String)))
                    .description(Some(
                        "Strong validator of the body; send it back as If-None-Match",
                    ))
                    .build(),
            )
            .build(),
    )
}

fn common_responses(auth: bool) -> ResponsesBuilder {
    let mut r = ResponsesBuilder::new()
        .response(
            "304",
            RefOr::T(
                ResponseBuilder::new()
                    .description("Not modified (If-None-Match matched)")
                    .build(),
            ),
        )
        .response(
            "400",
            problem_response("Invalid parameter; `parameter` names it"),
        );
    if auth {
        r = r
            .response("401", problem_response("Missing or unknown API key"))
            .response(
                "403",
                problem_response("The API key lacks the resource's read scope"),
            );
    }
    r.response(
        "502",
        problem_response(
            "The legacy system rejected the query or returned data that does not fit the mapping",
        ),
    )
    .response(
        "503",
        problem_response("Legacy system unavailable, slow or busy; honour Retry-After"),
    )
}

fn security(s: &ResourceSchema, auth: bool) -> Vec<SecurityRequirement> {
    if !auth {
        return Vec::new();
    }
    let scope = format!("{}:read", s.name);
    vec![
        SecurityRequirement::new("bearer", [scope.clone()]),
        SecurityRequirement::new("api_key", [scope]),
    ]
}

fn if_none_match() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("If-None-Match")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some("ETag of a copy the client holds; 304 when unchanged"))
        .schema(Some(
            ObjectBuilder::new().schema_type(SchemaType::new(Type::String)),
        ))
        .build()
}

fn list_operation(s: &ResourceSchema, auth: bool) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .tag("resources")
        .operation_id(Some(format!("list_{}", s.name)))
        .summary(Some(format!("List {}", s.name)))
        .description(s.description.clone())
        .parameter(
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .description(Some(format!("Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).")))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::new(Type::Integer))
                        .minimum(Some(1))
                        .maximum(Some(MAX_LIMIT as i64))
                        .default(Some(serde_json::json!(DEFAULT_LIMIT))),
                ))
                .build(),
        )
        .parameter(
            ParameterBuilder::new()
                .name("cursor")
                .parameter_in(ParameterIn::Query)
                .description(Some("Opaque cursor from `next_cursor` of the previous page; only valid with the same sort and filters."))
                .schema(Some(ObjectBuilder::new().schema_type(SchemaType::new(Type::String))))
                .build(),
        );
    let sortable: Vec<_> = s
        .fields
        .iter()
        .filter(|(_, f)| f.sortable)
        .map(|(n, _)| n.clone())
        .collect();
    if !sortable.is_empty() {
        op = op.parameter(
            ParameterBuilder::new()
                .name("sort")
                .parameter_in(ParameterIn::Query)
                .description(Some(format!(
                    "Comma-separated fields, `-` for descending; the key is always appended. Sortable: {}.",
                    sortable.join(", ")
                )))
                .schema(Some(ObjectBuilder::new().schema_type(SchemaType::new(Type::String))))
                .build(),
        );
    }
    for (name, f) in s.fields.iter().filter(|(_, f)| f.filterable) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .description(Some(format!(
                    "Equals; repeat the parameter to match any of several values ({}).",
                    f.ty
                )))
                .schema(Some(filter_value_schema(f)))
                .build(),
        );
        if !matches!(f.ty, FieldType::Boolean) {
            for (suffix, word) in [
                ("gt", "Greater than"),
                ("gte", "At least"),
                ("lt", "Less than"),
                ("lte", "At most"),
            ] {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(format!("{name}[{suffix}]"))
                        .parameter_in(ParameterIn::Query)
                        .description(Some(format!("{word} ({}).", f.ty)))
                        .schema(Some(filter_value_schema(f)))
                        .build(),
                );
            }
        }
    }
    op = op
        .parameter(if_none_match())
        .responses(
            common_responses(auth)
                .response(
                    "200",
                    ok_response(&format!("{}Page", s.component), "One page of records"),
                )
                .build(),
        )
        .securities(Some(security(s, auth)));
    op.build()
}

fn filter_value_schema(f: &FieldSchema) -> Schema {
    field_schema(&FieldSchema {
        nullable: false,
        description: None,
        ..f.clone()
    })
}

fn get_operation(s: &ResourceSchema, auth: bool) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .tag("resources")
        .operation_id(Some(format!("get_{}", s.name)))
        .summary(Some(format!("Get one of {} by key", s.name)));
    for (name, f) in s.key_fields() {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(format!("Key field `{name}`.")))
                .schema(Some(filter_value_schema(f)))
                .build(),
        );
    }
    op.parameter(if_none_match())
        .responses(
            common_responses(auth)
                .response("200", ok_response(&s.component, "The record"))
                .response("404", problem_response("No record has this key"))
                .build(),
        )
        .securities(Some(security(s, auth)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(captured: &[&str], auth: bool) -> serde_json::Value {
        let captured: Vec<String> = captured.iter().map(|s| s.to_string()).collect();
        let extras = Extras {
            captured,
            ..Extras::default()
        };
        serde_json::to_value(build(std::iter::empty(), &extras, auth)).unwrap()
    }

    #[test]
    fn change_endpoints_only_when_something_is_captured() {
        let none = doc(&[], true);
        for path in ["/v1/changes", "/v1/changes/stream", "/admin/capture"] {
            assert!(none["paths"][path].is_null(), "{path} without capture");
        }
        assert!(none["components"]["schemas"]["CloudEvent"].is_null());
        let some = doc(&["inventory", "prices"], true);
        for path in ["/v1/changes", "/v1/changes/stream", "/admin/capture"] {
            let op = &some["paths"][path]["get"];
            for status in ["200", "400", "401", "403", "404", "503"] {
                if path == "/admin/capture" && status == "400" {
                    continue;
                }
                assert!(op["responses"][status].is_object(), "{path} {status}");
            }
        }
        let feed = &some["paths"]["/v1/changes"]["get"];
        assert!(
            feed["responses"]["200"]["content"]["application/cloudevents-batch+json"].is_object()
        );
        assert!(feed["responses"]["200"]["headers"]["Next-After"].is_object());
        let params: Vec<&str> = feed["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, ["after", "limit", "types", "wait"]);
    }

    #[test]
    fn change_schemas_document_the_event() {
        let d = doc(&["inventory"], false);
        let schemas = &d["components"]["schemas"];
        let ops = schemas["ChangeData"]["properties"]["op"]["enum"].clone();
        let expected: Vec<&str> = crate::model::ChangeOp::ALL
            .iter()
            .map(|o| o.as_str())
            .collect();
        assert_eq!(ops, serde_json::json!(expected));
        for field in [
            "op", "origin", "key", "before", "after", "changed", "position",
        ] {
            assert!(
                schemas["ChangeData"]["properties"][field].is_object(),
                "{field}"
            );
        }
        assert_eq!(
            schemas["CloudEvent"]["properties"]["data"]["$ref"],
            "#/components/schemas/ChangeData"
        );
        assert!(schemas["ResourceCaptureStatus"]["properties"]["state"].is_object());
        assert!(schemas["CaptureOverview"].is_object());
    }

    #[test]
    fn change_security_lists_each_read_scope_and_admin_needs_admin_read() {
        let d = doc(&["inventory", "prices"], true);
        let feed = serde_json::to_string(&d["paths"]["/v1/changes"]["get"]["security"]).unwrap();
        assert!(
            feed.contains("inventory:read") && feed.contains("prices:read"),
            "{feed}"
        );
        assert_eq!(
            d["paths"]["/admin/capture"]["get"]["security"],
            serde_json::json!([{"bearer": ["admin:read"]}, {"api_key": ["admin:read"]}])
        );
        let scheme = d["components"]["securitySchemes"]["bearer"]["description"]
            .as_str()
            .unwrap();
        assert!(scheme.contains("admin:read"), "{scheme}");
        // Without auth: no security, no 401/403.
        let open = doc(&["inventory"], false);
        let feed = &open["paths"]["/v1/changes"]["get"];
        assert!(feed["security"].is_null());
        assert!(feed["responses"]["401"].is_null());
        assert!(feed["responses"]["403"].is_null());
    }
}
