//! Which upstream serves a call, and how the gateway may treat it — read from the contracts.
//!
//! Every service of package `wharf.<name>.v1` is routed to upstream `<name>` (the gateway's
//! own package excepted). A method is *public* when it carries `(wharf.options.v1.public)`
//! (register, login, refresh, key discovery) and *idempotent* when its `idempotency_level` is
//! `IDEMPOTENT` or `NO_SIDE_EFFECTS`: only those are ever retried.

use std::collections::HashMap;
use std::sync::Arc;

use prost_reflect::{DescriptorPool, Value};

/// The gateway's own package, served locally.
const OWN_PACKAGE: &str = "wharf.gateway.v1";

/// How one method is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub upstream: Arc<str>,
    pub public: bool,
    pub idempotent: bool,
    /// The request is a stream; it is forwarded as it comes and never retried.
    pub client_streaming: bool,
}

/// Every routable method, by HTTP/2 path (`/wharf.auth.v1.AuthService/Login`).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: HashMap<String, Route>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the descriptor set does not decode: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    #[error("the option wharf.options.v1.public is missing from the descriptor set")]
    MissingOption,
}

impl RouteTable {
    /// Routes of every contract in `wharf_proto`'s descriptor set.
    pub fn from_contracts() -> Result<Self, RouteError> {
        Self::from_descriptor_set(wharf_proto::FILE_DESCRIPTOR_SET)
    }

    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, RouteError> {
        let pool = DescriptorPool::decode(bytes)?;
        let public = pool
            .get_extension_by_name("wharf.options.v1.public")
            .ok_or(RouteError::MissingOption)?;
        let mut routes = HashMap::new();
        for service in pool.services() {
            let package = service.package_name();
            let Some(name) = package
                .strip_prefix("wharf.")
                .and_then(|rest| rest.strip_suffix(".v1"))
            else {
                continue;
            };
            if package == OWN_PACKAGE {
                continue;
            }
            let upstream: Arc<str> = Arc::from(name);
            for method in service.methods() {
                let options = method.options();
                let is_public = options.has_extension(&public)
                    && options.get_extension(&public).as_bool() == Some(true);
                // 0 IDEMPOTENCY_UNKNOWN, 1 NO_SIDE_EFFECTS, 2 IDEMPOTENT.
                let level = options
                    .get_field_by_name("idempotency_level")
                    .and_then(|value| match value.as_ref() {
                        Value::EnumNumber(n) => Some(*n),
                        _ => None,
                    })
                    .unwrap_or(0);
                routes.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    Route {
                        upstream: Arc::clone(&upstream),
                        public: is_public,
                        idempotent: level == 1 || level == 2,
                        client_streaming: method.is_client_streaming(),
                    },
                );
            }
        }
        Ok(Self { routes })
    }

    pub fn get(&self, path: &str) -> Option<&Route> {
        self.routes.get(path)
    }

    /// The upstream names the contracts use (`auth`, `trading`, ...).
    pub fn upstreams(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.routes.values().map(|r| &*r.upstream).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// Fully qualified names of the services routed to `upstream`, for health reports.
    pub fn services_of<'a>(&'a self, upstream: &'a str) -> impl Iterator<Item = String> + 'a {
        let mut names: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, route)| &*route.upstream == upstream)
            .filter_map(|(path, _)| {
                path.trim_start_matches('/')
                    .split_once('/')
                    .map(|(service, _)| service.to_owned())
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_say_what_is_public_and_idempotent() {
        let table = RouteTable::from_contracts().unwrap();
        let route = |path: &str| table.get(path).unwrap_or_else(|| panic!("{path}")).clone();
        let login = route("/wharf.auth.v1.AuthService/Login");
        assert!(login.public && !login.idempotent);
        assert_eq!(&*login.upstream, "auth");
        let refresh = route("/wharf.auth.v1.AuthService/Refresh");
        assert!(
            refresh.public && !refresh.idempotent,
            "a refresh rotates: never retried"
        );
        let jwks = route("/wharf.auth.v1.AuthService/GetJwks");
        assert!(jwks.public && jwks.idempotent);
        let whoami = route("/wharf.auth.v1.AuthService/WhoAmI");
        assert!(!whoami.public && whoami.idempotent);
        let order = route("/wharf.trading.v1.TradingService/PlaceOrder");
        assert!(
            !order.public && order.idempotent,
            "orders carry a required idempotency key"
        );
        assert_eq!(&*order.upstream, "trading");
        let follow = route("/wharf.social.v1.SocialService/Follow");
        assert!(!follow.public && !follow.idempotent);
        assert!(
            table
                .get("/wharf.gateway.v1.Notifications/Subscribe")
                .is_none()
        );
        assert!(table.get("/wharf.auth.v1.AuthService/Nope").is_none());
        let upstreams: Vec<&str> = table.upstreams().collect();
        assert_eq!(upstreams, ["auth", "echo", "revenue", "social", "trading"]);
        let auth: Vec<String> = table.services_of("auth").collect();
        assert_eq!(auth, ["wharf.auth.v1.AuthService"]);
    }
}
