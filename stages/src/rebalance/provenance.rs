//! Refusing to rebalance held-out data.
//!
//! Synthetic or removed rows in validation or test data make every score
//! measured on them meaningless: a model is then judged on rows it helped
//! invent, or on a test set cleaned of its hard cases. So `rebalance` is
//! refused, at validate time ([`Stage::check_wiring`]), when every path from
//! its input back to a `split` stage starts at that split's `test` or `valid`
//! port. Paths that meet no split (a table read from a file already split)
//! are not judged: gigo cannot know what such rows are.
//!
//! [`Stage::check_wiring`]: gigo_pipeline::Stage::check_wiring

use std::collections::BTreeSet;

use gigo_pipeline::{ParamProblem, Wiring};

/// Ports of `split` that hold data a model must never be fitted on.
const HELD_OUT: [&str; 2] = ["test", "valid"];

/// A problem when every split port upstream of the stage is a held-out one.
pub fn refuse_held_out(wiring: &Wiring) -> Vec<ParamProblem> {
    let ports: BTreeSet<(&str, &str)> = wiring
        .first_upstream(|e| e.type_name == "split")
        .into_iter()
        .map(|e| (e.stage, e.port))
        .collect();
    if ports.is_empty() || !ports.iter().all(|(_, port)| HELD_OUT.contains(port)) {
        return Vec::new();
    }
    let list: Vec<String> = ports.iter().map(|(s, p)| format!("{s}.{p}")).collect();
    let (split, _) = ports.first().copied().unwrap_or(("split", "train"));
    let mut p = ParamProblem::new(
        "inputs",
        format!(
            "this stage rebalances rows that come only from {}: synthetic or removed rows \
             in validation or test data would make every score measured on them meaningless",
            list.join(", ")
        ),
    );
    p.help = Some(format!(
        "rebalance the training part instead: `inputs: {split}.train`"
    ));
    vec![p]
}
