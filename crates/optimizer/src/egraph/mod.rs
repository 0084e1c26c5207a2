//! The e-graph: language, analysis, conversion to and from [`ir::Graph`], cost and extraction.

mod analysis;
pub mod convert;
pub mod cost;
pub mod extract;
mod lang;

pub use analysis::{class_type, ClassData, TensorAnalysis, TensorEGraph};
pub use lang::TensorLang;
