//! The auth service (ARCHITECTURE §4: registration, login).
//!
//! Built module by module; what is here is complete and tested on its own.
//!
//! # Layout
//! - [`password`]: argon2id hashing on a bounded blocking pool, the password policy, and the
//!   constant-cost check for unknown accounts.
#![forbid(unsafe_code)]

pub mod password;
