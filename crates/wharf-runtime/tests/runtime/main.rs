//! Integration tests of the runtime against real servers: a real tonic server on port 0, a real
//! PostgreSQL (the stack's, or `DATABASE_URL`) with a fresh database per test.

mod config;
mod db;
mod helpers;
mod server;
