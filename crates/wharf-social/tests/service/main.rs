//! The social service against real PostgreSQL and NATS: each test starts its own NATS process
//! and its own database, publishes registrations and trades as auth's and trading's relays
//! would, and talks gRPC to a real server.

mod achievements;
mod feed;
mod harness;
mod isolation;
mod rpc;
mod saga;
