//! Refusing to rebalance held-out data.
//!
//! Synthetic or removed rows in validation or test data make every score
//! measured on them meaningless: a model is then judged on rows it helped
//! invent, or on a test set cleaned of its hard cases. So `rebalance`
//! refuses to run when every path from its input back to a `split` stage
//! starts at that split's `test` or `valid` port.
//!
//! Where the check happens: the `Stage` trait sees only its parameters when
//! built and its tables when run, never which upstream ports feed it, so a
//! validation-time check needs a change in the pipeline core (a hook such as
//! `Stage::check_wiring(&[(upstream type, port)])` called by the planner;
//! proposed, not done here). At run time the executor records the resolved
//! wiring of every stage in `runs/<id>/run.json` before any stage starts;
//! this module reads it and walks upstream. When the record is missing (a
//! stage run outside gigo's executor, as in unit tests), the check is
//! skipped and the run log says so.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use gigo_pipeline::StageError;
use serde_json::Value;

/// Ports of `split` that hold data a model must never be fitted on.
const HELD_OUT: [&str; 2] = ["test", "valid"];

/// What the run record says about where this stage's rows come from.
#[derive(Debug, PartialEq, Eq)]
pub enum Upstream {
    /// No run record (or no entry for the stage): not checked.
    Unknown,
    /// The `split` ports (as `stage.port`) where the paths upstream reach a
    /// split (the walk stops at the first split of each path); empty when no
    /// split is upstream.
    Splits(BTreeSet<String>),
}

/// Reads the split ports upstream of `stage` from the run record in `run_dir`.
pub fn upstream_splits(run_dir: &Path, stage: &str) -> Upstream {
    let Ok(text) = std::fs::read_to_string(run_dir.join("run.json")) else {
        return Upstream::Unknown;
    };
    let Ok(record) = serde_json::from_str::<Value>(&text) else {
        return Upstream::Unknown;
    };
    let Some(stages) = record.pointer("/config/stages").and_then(Value::as_object) else {
        return Upstream::Unknown;
    };
    if !stages.contains_key(stage) {
        return Upstream::Unknown;
    }
    let sources = |id: &str| -> Vec<(String, String)> {
        stages
            .get(id)
            .and_then(|s| s.get("inputs"))
            .and_then(Value::as_object)
            .map(|ports| {
                ports
                    .values()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|r| r.split_once('.'))
                    .map(|(s, p)| (s.to_string(), p.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<String> = VecDeque::from([stage.to_string()]);
    while let Some(id) = queue.pop_front() {
        for (up, port) in sources(&id) {
            let is_split = stages
                .get(&up)
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                == Some("split");
            if is_split {
                found.insert(format!("{up}.{port}"));
            } else if seen.insert(up.clone()) {
                queue.push_back(up);
            }
        }
    }
    Upstream::Splits(found)
}

/// An error when every split port upstream is a held-out one.
pub fn refuse_held_out(upstream: &Upstream, stage: &str) -> Result<(), StageError> {
    let Upstream::Splits(ports) = upstream else {
        return Ok(());
    };
    let held_out = |p: &String| HELD_OUT.iter().any(|h| p.ends_with(&format!(".{h}")));
    if !ports.is_empty() && ports.iter().all(held_out) {
        let list: Vec<&str> = ports.iter().map(String::as_str).collect();
        return Err(StageError::data(format!(
            "stage `{stage}` rebalances rows that come only from {}: synthetic or removed rows \
             in validation or test data would make every score measured on them meaningless; \
             rebalance the training part instead (e.g. `inputs: {}`)",
            list.join(", "),
            list[0]
                .rsplit_once('.')
                .map_or("split.train".to_string(), |(s, _)| format!("{s}.train"))
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, stages: Value) {
        let r = serde_json::json!({"config": {"name": "t", "seed": 1, "stages": stages}});
        std::fs::write(dir.join("run.json"), r.to_string()).unwrap();
    }

    #[test]
    fn refuses_test_and_valid_ports_directly_or_through_other_stages() {
        let dir = tempfile::tempdir().unwrap();
        record(
            dir.path(),
            serde_json::json!({
                "data": {"type": "generate", "inputs": {}},
                "split": {"type": "split", "inputs": {"table": ["data.table"]}},
                "prof": {"type": "profile", "inputs": {"table": ["split.test"]}},
                "direct": {"type": "rebalance", "inputs": {"table": ["split.valid"]}},
                "through": {"type": "rebalance", "inputs": {"table": ["prof.table"]}},
                "train": {"type": "rebalance", "inputs": {"table": ["split.train"]}},
                "nosplit": {"type": "rebalance", "inputs": {"table": ["data.table"]}},
            }),
        );
        for id in ["direct", "through"] {
            let up = upstream_splits(dir.path(), id);
            let e = refuse_held_out(&up, id).unwrap_err().to_string();
            assert!(
                e.contains("meaningless") && e.contains("split.train"),
                "{e}"
            );
        }
        for id in ["train", "nosplit"] {
            let up = upstream_splits(dir.path(), id);
            assert!(refuse_held_out(&up, id).is_ok());
        }
        assert_eq!(
            upstream_splits(dir.path(), "train"),
            Upstream::Splits(["split.train".to_string()].into())
        );
        // no record: not checked
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(upstream_splits(empty.path(), "x"), Upstream::Unknown);
    }
}
