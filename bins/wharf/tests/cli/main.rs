//! The `wharf` binary, run as a process the way an operator runs it.

mod dev;
mod dlq;
mod gateway;
mod helpers;
mod platform;
mod relay;
mod saga;
mod stack;
mod trading;
