//! API keys: clients send a key, the config holds only its SHA-256, and each key carries
//! scopes. Comparison is constant-time over every configured key.
//!
//! Scopes: `inventory:read` reads one resource (its records and its change events);
//! `*:read` reads every resource; [`ADMIN_READ`] (`admin:read`) reads the operator endpoints
//! under `/admin` and [`ADMIN_WRITE`] (`admin:write`) runs operator actions such as a resync.
//! `*:read` does **not** grant `admin:read`: a key handed to a storefront to
//! read every resource must not also see capture checkpoints and errors, so admin access is
//! always named explicitly.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, AuthMode};

/// The scope of the operator endpoints (`/admin/...`); never granted by a `*:` wildcard.
pub const ADMIN_READ: &str = "admin:read";

/// The scope of operator actions (`POST /admin/...`, e.g. a resync, which appends events
/// every consumer receives); never granted by a wildcard nor by [`ADMIN_READ`].
pub const ADMIN_WRITE: &str = "admin:write";

/// The scope that reads one resource and its change events: `inventory:read`.
pub fn read_scope(resource: &str) -> String {
    format!("{resource}:read")
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's configured name (safe to log), or `anonymous` without auth.
    pub name: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No key, or a key we do not know.
    Unauthenticated,
    /// A known key without the scope; carries the scope.
    MissingScope(String),
}

struct Key {
    name: String,
    hash: [u8; 32],
    scopes: Vec<String>,
}

/// The configured keys, ready to check requests.
pub struct Auth {
    mode: AuthMode,
    keys: Vec<Key>,
}

impl Auth {
    /// Builds the checker from validated config (hashes are 64 hex characters).
    pub fn new(config: &AuthConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .filter_map(|k| {
                let bytes = hex::decode(&k.sha256).ok()?;
                Some(Key {
                    name: k.name.clone(),
                    hash: bytes.try_into().ok()?,
                    scopes: k.scopes.clone(),
                })
            })
            .collect();
        Self {
            mode: config.mode,
            keys,
        }
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.mode == AuthMode::ApiKeys
    }

    /// Checks the request's key for `scope` (e.g. `inventory:read`). A `*:read` scope grants
    /// every `<resource>:read` but not [`ADMIN_READ`].
    pub fn authorize(&self, headers: &HeaderMap, scope: &str) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal {
                name: "anonymous".into(),
            });
        }
        let presented = presented_key(headers).ok_or(AuthError::Unauthenticated)?;
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Key> = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthError::Unauthenticated)?;
        let (target, access) = scope.split_once(':').unwrap_or((scope, ""));
        let wildcard_applies = target != "admin";
        let granted = key.scopes.iter().any(|s| {
            s == scope
                || (wildcard_applies
                    && s.split_once(':')
                        .is_some_and(|(r, a)| r == "*" && a == access))
        });
        if granted {
            Ok(Principal {
                name: key.name.clone(),
            })
        } else {
            Err(AuthError::MissingScope(scope.to_owned()))
        }
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A new random key (`lb_` + 40 hex characters) and the SHA-256 hex to put in the config.
pub fn generate_key() -> (String, String) {
    let bytes: [u8; 20] = rand::random();
    let key = format!("lb_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    (key, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn auth(scopes: &[&str]) -> (Auth, String) {
        let (key, hash) = generate_key();
        let cfg = AuthConfig {
            mode: AuthMode::ApiKeys,
            keys: vec![ApiKeyConfig {
                name: "shop".into(),
                sha256: hash,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            }],
        };
        (Auth::new(&cfg), key)
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn checks_key_and_scope() {
        let (a, key) = auth(&["inventory:read"]);
        let bearer = headers("authorization", &format!("Bearer {key}"));
        assert_eq!(a.authorize(&bearer, "inventory:read").unwrap().name, "shop");
        assert_eq!(
            a.authorize(&bearer, "prices:read"),
            Err(AuthError::MissingScope("prices:read".into()))
        );
        let x = headers("x-api-key", &key);
        assert!(a.authorize(&x, "inventory:read").is_ok());
        let wrong = headers("x-api-key", "lb_nope");
        assert_eq!(
            a.authorize(&wrong, "inventory:read"),
            Err(AuthError::Unauthenticated)
        );
        assert_eq!(
            a.authorize(&HeaderMap::new(), "inventory:read"),
            Err(AuthError::Unauthenticated)
        );
    }

    #[test]
    fn wildcard_scope_grants_every_resource() {
        let (a, key) = auth(&["*:read"]);
        let h = headers("x-api-key", &key);
        assert!(a.authorize(&h, "prices:read").is_ok());
    }

    #[test]
    fn wildcard_scope_does_not_grant_admin() {
        let (a, key) = auth(&["*:read"]);
        let h = headers("x-api-key", &key);
        assert_eq!(
            a.authorize(&h, ADMIN_READ),
            Err(AuthError::MissingScope("admin:read".into()))
        );
        let (a, key) = auth(&["admin:read"]);
        let h = headers("x-api-key", &key);
        assert!(a.authorize(&h, ADMIN_READ).is_ok());
        assert!(a.authorize(&h, "prices:read").is_err());
    }
}
