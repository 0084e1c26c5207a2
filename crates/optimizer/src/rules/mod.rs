//! Rewrite rules. Each is a named function from an e-class to the equivalent terms it can
//! build there; [`FnRule`] turns it into an egg `Rewrite`. A term whose types do not infer, or
//! whose type differs from the class's, is refused.

mod algebra;
mod fold;
mod fusion;
mod layout;
mod rule;

pub use rule::{add_build, Build, FindFn, FnRule, MAX_NODES_IN_ITERATION};

use crate::egraph::{TensorAnalysis, TensorLang};
use egg::Rewrite;

/// Every rule, in the order the pipeline offers them to the runner.
pub fn all() -> Vec<FnRule> {
    let mut v = Vec::new();
    v.extend(algebra::RULES);
    v.extend(layout::RULES);
    v.extend(fold::RULES);
    v.extend(fusion::RULES);
    v
}

/// The egg rewrites of the named rules (all rules when `names` is empty).
pub fn rewrites(names: &[&str]) -> Vec<Rewrite<TensorLang, TensorAnalysis>> {
    all()
        .into_iter()
        .filter(|r| names.is_empty() || names.contains(&r.name))
        .filter_map(|r| Rewrite::new(r.name, r, r).ok())
        .collect()
}
