//! The outbox and its relay against real PostgreSQL and NATS: each test proves one guarantee
//! of "nothing committed is lost, nothing is applied twice".

mod batching;
mod faults;
mod helpers;
mod ordering;
mod publishing;
mod waking;
