//! placeholder (registry modules under construction)
pub mod id;
pub mod manifest;
pub mod resolve;
pub mod signature;
