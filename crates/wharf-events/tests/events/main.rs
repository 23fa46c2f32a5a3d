//! Topology and the two direct publishers, against real NATS servers.

mod publishers;
mod topology;
