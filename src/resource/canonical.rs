//! The fixed v1 schemas of the canonical resources `products`, `inventory` and `prices`.
//! A storefront written against them works with any legacy system an adapter maps; custom
//! resources get a schema derived from their mapping instead.

use crate::config::ResourceDef;
use crate::model::FieldType;

/// One field of a canonical schema.
pub struct CanonicalField {
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    pub description: &'static str,
}

/// A canonical resource's fixed v1 shape.
pub struct Canonical {
    pub name: &'static str,
    pub component: &'static str,
    pub description: &'static str,
    pub key: &'static [&'static str],
    pub fields: &'static [CanonicalField],
}

const fn field(
    name: &'static str,
    ty: FieldType,
    required: bool,
    description: &'static str,
) -> CanonicalField {
    CanonicalField {
        name,
        ty,
        required,
        description,
    }
}

/// `products`: the item master.
pub const PRODUCTS: Canonical = Canonical {
    name: "products",
    component: "Product",
    description: "A sellable item from the legacy item master.",
    key: &["sku"],
    fields: &[
        field(
            "sku",
            FieldType::String,
            true,
            "Stock keeping unit; the legacy item code.",
        ),
        field(
            "name",
            FieldType::String,
            true,
            "Short name as printed on receipts.",
        ),
        field("description", FieldType::String, false, "Long description."),
        field(
            "category",
            FieldType::String,
            false,
            "Department or category code.",
        ),
        field(
            "unit",
            FieldType::String,
            false,
            "Unit of measure, e.g. `PCE`, `KG`.",
        ),
        field("barcode", FieldType::String, false, "EAN/UPC barcode."),
        field(
            "active",
            FieldType::Boolean,
            true,
            "Whether the item may be sold.",
        ),
        field(
            "updated_at",
            FieldType::Timestamp,
            false,
            "Last change in the legacy system.",
        ),
    ],
};

/// `inventory`: stock per SKU and location.
pub const INVENTORY: Canonical = Canonical {
    name: "inventory",
    component: "InventoryLevel",
    description: "Stock of one SKU at one location.",
    key: &["sku", "location"],
    fields: &[
        field("sku", FieldType::String, true, "Stock keeping unit."),
        field(
            "location",
            FieldType::String,
            true,
            "Store or warehouse code.",
        ),
        field(
            "on_hand",
            FieldType::Decimal,
            true,
            "Quantity physically on hand (exact decimal as string).",
        ),
        field(
            "reserved",
            FieldType::Decimal,
            false,
            "Quantity reserved for open orders.",
        ),
        field(
            "updated_at",
            FieldType::Timestamp,
            false,
            "Last change in the legacy system.",
        ),
    ],
};

/// `prices`: a SKU's price in one price list.
pub const PRICES: Canonical = Canonical {
    name: "prices",
    component: "Price",
    description: "The price of one SKU in one price list.",
    key: &["sku", "price_list"],
    fields: &[
        field("sku", FieldType::String, true, "Stock keeping unit."),
        field(
            "price_list",
            FieldType::String,
            true,
            "Price list code, e.g. `RETAIL`.",
        ),
        field(
            "currency",
            FieldType::String,
            true,
            "ISO 4217 currency code.",
        ),
        field(
            "amount",
            FieldType::Decimal,
            true,
            "Price (exact decimal as string).",
        ),
        field(
            "valid_from",
            FieldType::Timestamp,
            false,
            "When this price takes effect.",
        ),
        field(
            "updated_at",
            FieldType::Timestamp,
            false,
            "Last change in the legacy system.",
        ),
    ],
};

/// All canonical resources.
pub const ALL: [&Canonical; 3] = [&PRODUCTS, &INVENTORY, &PRICES];

/// The canonical schema reserved for `name`, if any.
pub fn lookup(name: &str) -> Option<&'static Canonical> {
    ALL.iter().copied().find(|c| c.name == name)
}

/// Checks that an adapter's mapping of a canonical resource fits the fixed schema. Returns the
/// key path (relative to the resource) and the reason on failure.
pub fn check(name: &str, def: &ResourceDef) -> Result<(), (String, String)> {
    let Some(canonical) = lookup(name) else {
        return Ok(());
    };
    let key = def.key.fields();
    if key != canonical.key {
        return Err((
            "key".into(),
            format!(
                "the canonical `{name}` resource is keyed by [{}]",
                canonical.key.join(", ")
            ),
        ));
    }
    for (fname, f) in &def.fields {
        let Some(cf) = canonical.fields.iter().find(|c| c.name == fname) else {
            let names: Vec<_> = canonical.fields.iter().map(|c| c.name).collect();
            return Err((
                format!("fields.{fname}"),
                format!(
                    "the canonical `{name}` schema has no field `{fname}` (fields: {}); map extra columns in a custom resource",
                    names.join(", ")
                ),
            ));
        };
        if cf.ty != f.ty {
            return Err((
                format!("fields.{fname}.type"),
                format!("must be `{}` in the canonical `{name}` schema", cf.ty),
            ));
        }
    }
    if let Some(missing) = canonical
        .fields
        .iter()
        .find(|c| c.required && !def.fields.contains_key(c.name))
    {
        return Err((
            "fields".into(),
            format!(
                "the canonical `{name}` schema requires field `{}`",
                missing.name
            ),
        ));
    }
    Ok(())
}
