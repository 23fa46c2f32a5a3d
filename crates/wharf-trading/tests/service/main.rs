//! The trading service against real PostgreSQL and NATS, through gRPC.

mod harness;
mod orders;
mod reconcile;
