//! Layers the dev set does not exercise: small `.keras` models built here, run through the
//! library, and checked against computations written independently in these files.

#![allow(clippy::type_complexity)]

#[path = "../common/mod.rs"]
mod common;
mod conv;
mod core;
mod ops;
mod recurrent;
mod support;
