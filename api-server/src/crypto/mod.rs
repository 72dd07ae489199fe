//! The barrier: everything that touches key material.

pub mod barrier;
pub mod cursor;
pub mod master_key;
pub mod signing;
pub mod token;

pub use barrier::{Barrier, BarrierError};
pub use master_key::MasterKey;
