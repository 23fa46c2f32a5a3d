//! The registry of services `wharf dev` and `wharf migrate` know about.
//!
//! Each service crate contributes its schema migrations and registers its gRPC services here;
//! this is the one place to touch when a service is added.

use wharf_runtime::GrpcServer;
use wharf_runtime::db::SchemaMigrations;

/// Every service's schema and migrations, in the order `wharf migrate` applies them.
pub fn schemas() -> Vec<SchemaMigrations> {
    Vec::new()
}

/// Registers every implemented service on `server`.
pub fn register(server: &mut GrpcServer) {
    server.add_service(wharf_runtime::echo::Echo::server());
}
