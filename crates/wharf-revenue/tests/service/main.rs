//! The revenue service against real PostgreSQL and NATS: each test starts its own NATS process
//! and its own database, publishes trade events as trading's relay would, and talks gRPC to a
//! real server.

mod access;
mod faults;
mod harness;
mod ledger;
mod reports;
