//! The auth service against real PostgreSQL, Redis and NATS: each test starts its own NATS and
//! Redis processes and its own database, and talks gRPC to a real server.

mod attacks;
mod faults;
mod harness;
mod limits;
mod login;
mod register;
