//! Topology, the two direct publishers and the consumer's after-commit hook, against real NATS
//! servers (and the stack's PostgreSQL for the consumer).

mod after_commit;
mod publishers;
mod topology;
