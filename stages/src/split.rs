//! `split`: stratified, seeded train / valid / test split.

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use gigo_pipeline::{
    Inputs, Memory, ParamProblem, PortSpec, Registry, Stage, StageContext, StageError, StageOutput,
    Table,
};
use rand::seq::SliceRandom;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::labels::label_keys;

/// Parameters of `split`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitParams {
    /// Fraction of rows for the `test` port.
    #[serde(default = "default_test")]
    pub test_fraction: f64,
    /// Fraction of rows for the `valid` port (0 leaves it empty).
    #[serde(default = "default_valid")]
    pub valid_fraction: f64,
    /// Keep class proportions equal across the three parts (needs a label column).
    #[serde(default = "default_true")]
    pub stratify: bool,
    /// A split that the data already has: rows whose `column` has one of
    /// `values` (as text) are the test rows, and `test_fraction` is not used;
    /// `valid_fraction` of the other rows go to `valid`. E.g. Adult's
    /// `{column: split, values: [test]}`.
    #[serde(default)]
    pub test_by: Option<TestBy>,
}

/// Test rows chosen by a column's values.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestBy {
    /// The column.
    pub column: String,
    /// Its values that mark a test row.
    pub values: Vec<String>,
}

fn default_test() -> f64 {
    0.2
}
fn default_valid() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

impl SplitParams {
    fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let mut p = Vec::new();
        for (name, v) in [
            ("test_fraction", self.test_fraction),
            ("valid_fraction", self.valid_fraction),
        ] {
            if !(0.0..1.0).contains(&v) {
                p.push(ParamProblem::new(
                    name,
                    format!("must be in [0, 1), got {v}"),
                ));
            }
        }
        if let Some(t) = &self.test_by
            && t.values.is_empty()
        {
            p.push(ParamProblem::new(
                "test_by.values",
                "needs at least one value",
            ));
        }
        if self.test_by.is_none() && self.test_fraction + self.valid_fraction >= 1.0 {
            p.push(ParamProblem::new(
                "test_fraction",
                format!(
                    "test_fraction + valid_fraction must be below 1 (got {}), or nothing is left to train on",
                    self.test_fraction + self.valid_fraction
                ),
            ));
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// The `split` stage.
pub struct Split {
    params: SplitParams,
}

/// Registers `split`.
pub fn register(registry: &mut Registry) {
    registry.register::<SplitParams, _>(
        "split",
        "Splits a table into train, valid and test parts, stratified by the label \
         (each class is split in the same proportions) and seeded. Rows keep their \
         original order within each part. Streams: two passes in batches.",
        |params| {
            params.check()?;
            Ok(Box::new(Split { params }))
        },
    );
}

/// How many of `n` rows go to test and valid, rounding to the nearest row.
fn part_sizes(n: usize, test: f64, valid: f64) -> (usize, usize) {
    let t = ((n as f64) * test).round() as usize;
    let v = ((n as f64) * valid).round() as usize;
    let t = t.min(n);
    (t, v.min(n - t))
}

impl Stage for Split {
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table("table", "the rows to split")]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table("train", "training rows"),
            PortSpec::table("valid", "validation rows"),
            PortSpec::table("test", "test rows"),
        ]
    }

    fn memory(&self) -> Memory {
        // Per row: its index in a class group (4 bytes), a test index when
        // `test_by` marks it (4), its part (1).
        Memory::Streams {
            per_row: 9.0,
            fixed: gigo_pipeline::budget::STREAM_FIXED,
        }
    }

    /// Two passes in batches: the label (and `test_by`) column decides each
    /// row's part, then the rows go to the three parts' files in order.
    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let table = inputs.source("table")?;
        let schema = table.schema().clone();
        let n = table.num_rows();
        let test_by = match &self.params.test_by {
            None => None,
            Some(by) => Some((
                by,
                schema.index_of(&by.column).map_err(|_| {
                    StageError::data(format!(
                        "test_by.column `{}` is not a column of the table",
                        by.column
                    ))
                })?,
            )),
        };
        let label = if self.params.stratify {
            let label = Table::empty(schema.clone())
                .label_column()
                .map_err(|e| StageError::data(format!("{e}; or set `stratify: false`")))?;
            Some(
                schema
                    .index_of(&label)
                    .map_err(|_| StageError::internal("label column vanished"))?,
            )
        } else {
            None
        };
        // Rows the data itself marks as test; groups of the other rows'
        // indices: one per class when stratifying, else one. (A missing
        // label is a group of its own.)
        let mut test: Vec<u32> = Vec::new();
        let mut groups: BTreeMap<Option<String>, Vec<u32>> = BTreeMap::new();
        let mut at = 0u32;
        for batch in table.batches(ctx.batch_rows)? {
            let batch = batch?;
            let rows = batch.num_rows();
            let mut is_test = vec![false; rows];
            if let Some((by, c)) = test_by {
                for (i, key) in label_keys(batch.column(c))?.into_iter().enumerate() {
                    if key.is_some_and(|k| by.values.contains(&k)) {
                        is_test[i] = true;
                        test.push(at + i as u32);
                    }
                }
            }
            match label {
                Some(l) => {
                    for (i, key) in label_keys(batch.column(l))?.into_iter().enumerate() {
                        if !is_test[i] {
                            groups.entry(key).or_default().push(at + i as u32);
                        }
                    }
                }
                None => groups
                    .entry(None)
                    .or_default()
                    .extend((0..rows).filter(|&i| !is_test[i]).map(|i| at + i as u32)),
            }
            at += rows as u32;
        }
        let test_fraction = match test_by {
            None => self.params.test_fraction,
            Some((by, _)) if test.is_empty() => {
                return Err(StageError::data(format!(
                    "no row has `{}` in {:?}: the test part would be empty",
                    by.column, by.values
                )));
            }
            Some(_) => 0.0,
        };
        let mut rng = ctx.rng();
        // Each row's part: 0 train, 1 valid, 2 test.
        let mut part = vec![0u8; n];
        for &i in &test {
            part[i as usize] = 2;
        }
        for idx in groups.values_mut() {
            idx.shuffle(&mut rng);
            let (t, v) = part_sizes(idx.len(), test_fraction, self.params.valid_fraction);
            idx[..t].iter().for_each(|&i| part[i as usize] = 2);
            idx[t..t + v].iter().for_each(|&i| part[i as usize] = 1);
        }
        drop(test);
        const PARTS: [&str; 3] = ["train", "valid", "test"];
        let mut writers = PARTS
            .iter()
            .map(|name| ctx.table_writer(name, schema.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut at = 0usize;
        for batch in table.batches(ctx.batch_rows)? {
            let batch = batch?;
            let rows = batch.num_rows();
            for (p, writer) in writers.iter_mut().enumerate() {
                let idx: Vec<u32> = (0..rows as u32)
                    .filter(|&i| part[at + i as usize] == p as u8)
                    .collect();
                if idx.is_empty() {
                    continue;
                }
                let indices = UInt32Array::from(idx);
                let cols: Vec<ArrayRef> = batch
                    .columns()
                    .iter()
                    .map(|c| take(c.as_ref(), &indices, None))
                    .collect::<Result<_, _>>()?;
                writer.write(&arrow::array::RecordBatch::try_new(schema.clone(), cols)?)?;
            }
            at += rows;
        }
        let mut counts = serde_json::Map::new();
        let mut out = StageOutput::new();
        for (name, writer) in PARTS.iter().zip(writers) {
            let part = writer.finish()?;
            counts.insert(name.to_string(), part.num_rows().into());
            out = out.with(name, part);
        }
        let by_class: serde_json::Map<String, serde_json::Value> = groups
            .iter()
            .map(|(k, v)| {
                // unstratified: one group, ""; stratified: missing labels, "null"
                let name = match k {
                    Some(k) => k.clone(),
                    None if self.params.stratify => "null".into(),
                    None => String::new(),
                };
                (name, v.len().into())
            })
            .collect();
        Ok(out.with_summary(serde_json::json!({
            "rows": counts,
            "stratified": self.params.stratify,
            "class_counts": by_class,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ctx, labelled_table};
    use arrow::array::Int64Array;
    use proptest::prelude::*;

    /// The parts' files live in the returned directory.
    fn run_split(
        n: usize,
        classes: i64,
        seed: u64,
        test: f64,
        valid: f64,
    ) -> (StageOutput, tempfile::TempDir) {
        let t = labelled_table(n, classes);
        let mut inputs = Inputs::default();
        inputs.push("table", t.into());
        let dir = tempfile::tempdir().unwrap();
        let stage = Split {
            params: SplitParams {
                test_fraction: test,
                valid_fraction: valid,
                stratify: true,
                test_by: None,
            },
        };
        let out = stage.run(&inputs, &ctx("split", seed, dir.path())).unwrap();
        (out, dir)
    }

    fn ids(out: &StageOutput, port: &str) -> Vec<i64> {
        match out.ports[port].source() {
            Some(t) => {
                let b = t.load(1 << 16).unwrap().to_batch().unwrap();
                let c = b
                    .column_by_name("id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                c.values().to_vec()
            }
            _ => panic!("not a table"),
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let (a, _da) = run_split(200, 3, 1, 0.2, 0.1);
        let (b, _db) = run_split(200, 3, 1, 0.2, 0.1);
        let (c, _dc) = run_split(200, 3, 2, 0.2, 0.1);
        assert_eq!(ids(&a, "test"), ids(&b, "test"));
        assert_ne!(ids(&a, "test"), ids(&c, "test"));
    }

    #[test]
    fn params_are_checked_all_at_once() {
        let p = SplitParams {
            test_fraction: 1.5,
            valid_fraction: -0.1,
            stratify: true,
            test_by: None,
        };
        let errs = p.check().unwrap_err();
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0].path, vec!["test_fraction"]);
    }

    #[test]
    fn test_rows_can_come_from_a_column() {
        let mut inputs = Inputs::default();
        inputs.push("table", labelled_table(90, 3).into());
        let dir = tempfile::tempdir().unwrap();
        let stage = Split {
            params: SplitParams {
                test_fraction: 0.2,
                valid_fraction: 0.1,
                stratify: true,
                test_by: Some(TestBy {
                    column: "label".into(),
                    values: vec!["0".into()],
                }),
            },
        };
        let out = stage.run(&inputs, &ctx("split", 1, dir.path())).unwrap();
        let test = ids(&out, "test");
        assert_eq!(test, (0..90).filter(|i| i % 3 == 0).collect::<Vec<_>>());
        // 10% of each remaining class (30 rows each) is valid
        assert_eq!(ids(&out, "valid").len(), 6);
        assert_eq!(ids(&out, "train").len(), 54);
        let bad = Split {
            params: SplitParams {
                test_by: Some(TestBy {
                    column: "label".into(),
                    values: vec!["7".into()],
                }),
                ..stage.params.clone()
            },
        };
        let e = bad
            .run(&inputs, &ctx("split", 1, dir.path()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("would be empty"), "{e}");
    }

    proptest! {
        // Every row lands in exactly one part, and each class is split in proportion.
        #[test]
        fn parts_partition_rows_and_keep_proportions(n in 10usize..300, classes in 1i64..5, seed in 0u64..1000) {
            let (out, _dir) = run_split(n, classes, seed, 0.2, 0.1);
            let mut all: Vec<i64> = ["train", "valid", "test"].iter().flat_map(|p| ids(&out, p)).collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..n as i64).collect::<Vec<_>>());
            for c in 0..classes {
                let in_class = |id: &i64| id % classes == c;
                let nc = (0..n as i64).filter(in_class).count();
                let tc = ids(&out, "test").iter().filter(|i| in_class(i)).count();
                prop_assert_eq!(tc, ((nc as f64) * 0.2).round() as usize);
            }
        }
    }
}
