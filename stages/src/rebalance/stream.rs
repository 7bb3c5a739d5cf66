//! The methods whose decisions need the labels of every row but the
//! features of few or none: they read their input in batches and write
//! their output batch by batch, whatever its size.
//!
//! - weighting (`balanced`, `effective_number`, `class_weights`): a pass
//!   for the class counts, a pass that adds the weight column;
//! - `random_under`: a pass for the classes, the draw, a pass that routes
//!   each row to the output or to `removed`;
//! - `random_over` and `smote`: a pass for the classes (and for `smote` the
//!   feature means that stand in for missing values), a pass that gathers
//!   the rows the new rows are made from (`smote`: every row of each class
//!   it grows, for the neighbour search within the class; `random_over`:
//!   the rows drawn), then the input rows are written as they are read and
//!   the new rows after them;
//! - `borderline_smote` and `adasyn`: a pass for the classes and the
//!   feature means, a pass for the feature columns of every row (their
//!   search weighs each row by the other classes among its neighbours and
//!   decides every new row), a pass that gathers the rows the new rows are
//!   made from and move towards, then as `smote`;
//! - `tomek`, `enn` and `near_miss`: a pass for the classes, a pass that
//!   gathers the feature columns of every row (not the other columns) for
//!   the neighbour search, then a pass that routes each row to the output
//!   or to `removed`, as `random_under` does;
//! - `smote_tomek` and `smote_enn`: `smote`, then the features of every
//!   input row and every new row for the cleaning search, then every row,
//!   input and new, routed to the output or to `removed`.
//!
//! The decisions are those of the in-memory algorithms run on the same
//! rows: the class of every row is read in order, the samplers draw from
//! the same per-class generators, and the gathered rows keep their order,
//! so that positions among them map to input rows one to one and in order
//! (ties in a neighbour search break the same way). The tests run the
//! stage on tables in memory and stored, at batches of 7 rows, and compare
//! every byte.
//!
//! Memory: 8 bytes a row for the classes (each row's class and each class's
//! rows; `random_under` 33, with each removed row's position and reason),
//! plus the rows gathered (2.5 times their size: their features as
//! columns and as the neighbour search's matrix) and 20 bytes per new row
//! (how it is made), checked against the budget before the rows are
//! gathered. The new rows
//! are made a batch (`--batch-rows`) at a time into a file in the scratch
//! directory (each new row depends on its own start row, neighbour and gap
//! only), and copied after the input rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{Field, Schema};
use gigo_pipeline::{
    Bytes, Role, Source, StageContext, StageError, StageOutput, StoredTable, Table, role_of,
};

use super::data::{
    ClassLabels, Classes, FeatureMeans, Features, Removals, RemovedRows, Rows, check_removed_rows,
    empty_removed, input_batch, null_columns, output_schema, removed_schema, synthetic_batch,
    synthetic_rows,
};
use super::report::ClassLine;
use super::strategy::{Kind, Named, Strategy, targets};
use super::{
    Accounting, Family, Method, Note, Rebalance, existing_weights_note, smote, undersample, weights,
};

/// What gathered rows take as a multiple of their size: their features as
/// f64 columns and as the f32 matrix of the neighbour search.
pub(super) const GATHERED_FACTOR: f64 = 2.5;

/// Bytes kept per input row: its class and its place in its class (8);
/// `random_under` also each removed row's position and reason (24) and
/// every row's verdict (1).
pub(super) fn bytes_per_row(method: Method) -> f64 {
    match method {
        Method::RandomUnder
        | Method::Tomek
        | Method::Enn
        | Method::NearMiss
        | Method::SmoteTomek
        | Method::SmoteEnn => 33.0,
        _ => 8.0,
    }
}

impl Rebalance {
    pub(super) fn rebalance_batches(
        &self,
        source: &Source,
        ctx: &StageContext,
    ) -> Result<StageOutput, StageError> {
        let p = &self.params;
        let method = p.method;
        let schema = source.schema().clone();
        let field = Classes::label_field(&schema)?;
        let n = source.num_rows();
        if n > u32::MAX as usize {
            return Err(StageError::data(format!(
                "rebalance handles up to {} rows, the input has {n}",
                u32::MAX
            )));
        }
        // every method that interpolates new rows imputes the means of all rows
        let smotes = matches!(method.family(), Family::Over | Family::Combined)
            && method != Method::RandomOver;
        let mut means = smotes.then(|| FeatureMeans::new(&schema));
        let labels = source.batches(ctx.batch_rows)?.map(|b| {
            let b = b?;
            if let Some(m) = means.as_mut() {
                m.add(&b)?;
            }
            Ok(b.column(field).clone())
        });
        let classes = Classes::read(&schema, field, n, labels)?;
        let before = classes.counts();
        let names = classes.names.clone();
        let mut notes: Vec<Note> = Vec::new();

        if let Some(w) = self.class_weights(&before, &names)? {
            let column = p.weight_column.as_deref().unwrap_or("sample_weight");
            // The output schema, from no rows; then each batch as it comes.
            let empty = Rows::of(&Table::empty(schema.clone()))?;
            let (shape, old) = weights::apply(&empty, &[], &w, column)?;
            let mut writer = ctx.table_writer("table", shape.schema().clone())?;
            let mut start = 0usize;
            for b in source.batches(ctx.batch_rows)? {
                let rows = Rows::of(&Table::from_batch(b?))?;
                let of_row = &classes.of_row[start..start + rows.n];
                start += rows.n;
                for b in weights::apply(&rows, of_row, &w, column)?.0.batches() {
                    writer.write(b)?;
                }
            }
            if let Some(old) = old {
                notes.push(existing_weights_note(&old));
            }
            let lines = weight_lines(&names, &before, &w);
            return Ok(StageOutput::new()
                .with("table", writer.finish()?)
                .with("removed", empty_removed(shape.schema(), RemovedRows::Full))
                .with_summary(super::report::summary(
                    &ctx.stage_id,
                    method.name(),
                    &lines,
                    &notes,
                )));
        }

        let mode = self.removed_mode();
        check_removed_rows(&schema, mode)?;
        let kind = method.strategy_kind().unwrap_or(Kind::Over);
        let strategy = p.strategy.clone().unwrap_or(Strategy::Named(Named::Auto));
        let t = targets(&strategy, kind, &before, &names, p.classes.as_deref())?;
        if method == Method::SmoteNc {
            // its feature columns are checked whether or not a class grows
            self.nc_features(&Rows::of(&Table::empty(schema.clone()))?)?;
        }
        let mut acc = Accounting::new(names.len());

        let synthetic = if matches!(method.family(), Family::Over | Family::Combined) {
            self.grow(source, ctx, &classes, &t, means.as_ref(), &mut notes)?
        } else {
            None
        };
        if let Some(g) = &synthetic {
            for &c in &g.class {
                acc.added[c as usize] += 1;
            }
        }
        let nulls = synthetic.as_ref().map(|g| g.nulls.as_slice());
        let (out_schema, add_flag) = output_schema(&schema, nulls);
        let created = acc.added.iter().sum::<usize>();
        // The combined methods clean every class of the grown rows: the
        // input's, then the new ones.
        let grown = synthetic
            .as_ref()
            .filter(|_| method.family() == Family::Combined);
        let classes = match grown {
            Some(g) => with_new_rows(classes, &g.class),
            None => classes,
        };
        let removal = match method {
            Method::RandomUnder => undersample::random_under(ctx, &classes, &t),
            Method::Tomek | Method::Enn | Method::NearMiss => {
                let f = features_of_every_row(source, None, ctx, method, &classes)?;
                self.cleaned(&classes, &f, &t, &mut notes)?
            }
            Method::SmoteTomek | Method::SmoteEnn => {
                let new_rows = grown.map(|g| &g.rows);
                let f = features_of_every_row(source, new_rows, ctx, method, &classes)?;
                let all = vec![true; names.len()];
                if method == Method::SmoteTomek {
                    undersample::tomek(&classes, &f, &all)
                } else {
                    undersample::enn(&classes, &f, &all, p.n(), p.kind_sel.unwrap_or_default())
                }
            }
            _ => Vec::new(),
        };
        acc.count_removed(&removal, &classes, &names);
        let total = classes.of_row.len();
        drop(classes);
        let removals = Removals::new(total, &removal)?;
        drop(removal);
        let gone_schema = removed_schema(&out_schema, mode);
        let mut kept = ctx.table_writer("table", out_schema.clone())?;
        let mut gone = ctx.table_writer("removed", gone_schema.clone())?;
        let mut start = 0usize;
        for b in source.batches(ctx.batch_rows)? {
            let b = input_batch(&b?, &out_schema, add_flag)?;
            let (k, g) = removals.cut(&b, start, mode, &gone_schema)?;
            start += b.num_rows();
            kept.write(&k)?;
            if let Some(g) = g {
                gone.write(&g)?;
            }
        }
        if let Some(g) = synthetic {
            for b in g.rows.batches(ctx.batch_rows)? {
                let arrays = b?.columns().to_vec();
                let b = synthetic_rows(arrays, &out_schema, add_flag)?;
                if method.family() != Family::Combined {
                    kept.write(&b)?; // nothing cleans them
                    continue;
                }
                let (k, g) = removals.cut(&b, start, mode, &gone_schema)?;
                start += b.num_rows();
                kept.write(&k)?;
                if let Some(g) = g {
                    gone.write(&g)?;
                }
            }
        }
        let lines = acc.lines(&names, &before);
        let mut out = StageOutput::new()
            .with("table", kept.finish()?)
            .with("removed", gone.finish()?)
            .with_summary(super::report::summary(
                &ctx.stage_id,
                method.name(),
                &lines,
                &notes,
            ));
        if created > 0 {
            let reason = match method.family() {
                Family::Combined => "smote",
                _ => method.name(),
            };
            out = out.created(reason, created);
        }
        Ok(out)
    }

    /// The over-samplers' new rows (with their classes), made from
    /// the rows gathered in one more pass; `None` when no class grows.
    fn grow(
        &self,
        source: &Source,
        ctx: &StageContext,
        classes: &Classes,
        t: &[Option<usize>],
        means: Option<&FeatureMeans>,
        notes: &mut Vec<Note>,
    ) -> Result<Option<Grown>, StageError> {
        let counts = classes.counts();
        let grown: Vec<usize> = (0..counts.len())
            .filter(|&c| t[c].is_some_and(|t| t > counts[c]))
            .collect();
        if grown.is_empty() {
            return Ok(None);
        }
        let new_rows: usize = grown.iter().map(|&c| t[c].unwrap_or(0) - counts[c]).sum();
        // What is drawn from: random_over the rows it copies, smote every row
        // of each class it grows. Borderline-SMOTE and ADASYN decide from a
        // search among the features of every row, then need the rows each
        // new row is made from and moves towards.
        let method = self.params.method;
        let drawn = match method {
            Method::RandomOver => Some(smote::random_over(ctx, classes, t)),
            Method::BorderlineSmote | Method::Adasyn => {
                let f = features_of_every_row(source, None, ctx, method, classes)?;
                Some(self.by_danger(ctx, classes, &f, t, notes)?)
            }
            _ => None,
        };
        let mut held: Vec<u32> = match &drawn {
            Some(s) => s.base.iter().chain(&s.neighbour).copied().collect(),
            None => grown
                .iter()
                .flat_map(|&c| classes.members[c].iter().copied())
                .collect(),
        };
        // each class's first row: its label value, for the new rows
        held.extend(classes.members.iter().filter_map(|m| m.first().copied()));
        held.sort_unstable();
        held.dedup();
        let row_bytes = source.memory_bytes() as f64 / source.num_rows().max(1) as f64;
        // The gathered rows, their features as f64 columns and as the f32
        // matrix of the neighbour search (2.5 times the rows), how each new
        // row is made, a batch of new rows; on top of what the stage keeps
        // per input row and for its batches in flight.
        let kept = gigo_pipeline::budget::STREAM_FIXED
            + (bytes_per_row(self.params.method) * classes.of_row.len() as f64) as u64;
        let need = (held.len() as f64 * GATHERED_FACTOR * row_bytes) as u64
            + (new_rows * DECISION_BYTES) as u64
            + (ctx.batch_rows as f64 * 2.0 * row_bytes) as u64;
        let budget = ctx.memory_budget;
        if need + kept > budget {
            return Err(StageError::data(format!(
                "`{}` holds the {} rows it makes new rows from (and how to make the {new_rows} \
                 new rows): about {}, and {} for the classes of every row and the batches in \
                 flight, more than the memory budget ({}): raise `--memory`, or grow fewer rows \
                 (`strategy`, `classes`)",
                self.params.method.name(),
                held.len(),
                Bytes(need),
                Bytes(kept),
                Bytes(budget)
            )));
        }
        let rows = gather(source, ctx.batch_rows, &held)?;
        // The gathered rows' classes: positions among them, in order.
        let mut members = vec![Vec::new(); classes.names.len()];
        let mut of_row = Vec::with_capacity(held.len());
        for (i, &g) in held.iter().enumerate() {
            let c = classes.of_row[g as usize];
            of_row.push(c);
            members[c as usize].push(i as u32);
        }
        let local = Classes {
            field: classes.field,
            names: classes.names.clone(),
            of_row,
            members,
        };
        let labels = ClassLabels::of(&rows, &local)?;
        let (synthetic, features) = match drawn {
            Some(mut s) => {
                for b in s.base.iter_mut().chain(s.neighbour.iter_mut()) {
                    *b = held
                        .binary_search(b)
                        .map_err(|_| StageError::internal("a drawn row was not gathered"))?
                        as u32;
                }
                let features = if s.copies {
                    None
                } else {
                    let mut f = Features::load(&rows, method.name(), None)?;
                    if let Some(m) = means {
                        m.apply(&mut f);
                    }
                    Some(f)
                };
                (s, features)
            }
            None => {
                let mut f = if method == Method::SmoteNc {
                    self.nc_features(&rows)?
                } else {
                    Features::load(&rows, method.name(), None)?
                };
                if let Some(m) = means {
                    m.apply(&mut f);
                }
                // Only the grown classes are complete among the gathered rows.
                let only: Vec<Option<usize>> = (0..t.len())
                    .map(|c| if grown.contains(&c) { t[c] } else { None })
                    .collect();
                let k = self.params.k();
                let s = if method == Method::SmoteNc {
                    // the neighbours, and the categorical values they
                    // vote for, are within the class
                    smote::smote_nc(ctx, &local, &f, &only, k, notes)?
                } else {
                    smote::smote(ctx, &local, &f, &only, k, notes)?
                };
                (s, Some(f))
            }
        };
        // The new rows, a chunk at a time, into a file of the input's
        // columns (all nullable: which hold nulls is known at the end).
        let fields: Vec<Field> = source
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let file_schema = Arc::new(Schema::new_with_metadata(
            fields,
            source.schema().metadata().clone(),
        ));
        let mut file = ctx.table_writer("synthetic", file_schema.clone())?;
        let mut nulls = vec![false; file_schema.fields().len()];
        let at_once = ctx.batch_rows.max(1);
        for at in (0..synthetic.len()).step_by(at_once) {
            let part = synthetic.chunk(at, at_once);
            let cols = synthetic_batch(&rows, &labels, features.as_ref(), part)?;
            for (seen, has) in nulls.iter_mut().zip(null_columns(&cols)) {
                *seen |= has;
            }
            let arrays: Vec<ArrayRef> = cols.into_iter().map(|(_, a)| a).collect();
            file.write(&RecordBatch::try_new(file_schema.clone(), arrays)?)?;
        }
        Ok(Some(Grown {
            rows: file.finish()?,
            nulls,
            class: synthetic.class,
        }))
    }
}

/// Bytes of the decision behind one new row: its class, start row,
/// neighbour and gap.
const DECISION_BYTES: usize = 20;

/// The new rows of an over-sampler, made before the input rows are copied.
struct Grown {
    /// Written to the scratch directory, the input's columns.
    rows: StoredTable,
    /// Which columns hold nulls (the output's schema says so).
    nulls: Vec<bool>,
    /// Each new row's class.
    class: Vec<u32>,
}

/// The features of every row, for a neighbour search among all of them
/// (`tomek`, `enn`, `near_miss`): one pass reads the feature columns only,
/// after a check that they fit the budget ([`GATHERED_FACTOR`] times their
/// size, beside the classes of every row and the batches in flight). The
/// rows are joined into one batch, as a table in memory is, so that the
/// features (and the means that stand in for missing values) are those of
/// the whole-table algorithm.
fn features_of_every_row(
    source: &Source,
    new_rows: Option<&StoredTable>,
    ctx: &StageContext,
    method: Method,
    classes: &Classes,
) -> Result<Features, StageError> {
    let schema = source.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| role_of(schema.field(i)) == Role::Feature)
        .collect();
    if keep.is_empty() {
        // the error of the whole-table algorithm, naming what is missing
        return Features::load(
            &Rows::of(&Table::empty(schema.clone()))?,
            method.name(),
            None,
        );
    }
    let n = classes.of_row.len();
    let row_bytes: usize = keep
        .iter()
        .map(|&i| schema.field(i).data_type().primitive_width().unwrap_or(16))
        .sum();
    let need = (n as f64 * row_bytes as f64 * GATHERED_FACTOR) as u64;
    let kept = gigo_pipeline::budget::STREAM_FIXED
        + (bytes_per_row(method) * classes.of_row.len() as f64) as u64;
    if need + kept > ctx.memory_budget {
        return Err(StageError::data(format!(
            "`{}` searches neighbours among the features of every row: the {n} rows' {} \
             feature columns take about {}, and {} for the classes of every row and the \
             batches in flight, more than the memory budget ({}): raise `--memory`, or give \
             the stage fewer rows",
            method.name(),
            keep.len(),
            Bytes(need),
            Bytes(kept),
            Bytes(ctx.memory_budget)
        )));
    }
    // nullable: the new rows may hold nulls where the input's do not
    let projected = schema.project(&keep)?;
    let fields: Vec<Field> = projected
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let projected = Arc::new(Schema::new_with_metadata(
        fields,
        projected.metadata().clone(),
    ));
    let new = match new_rows {
        Some(t) => Some(t.batches(ctx.batch_rows)?),
        None => None,
    };
    let batches = source
        .batches(ctx.batch_rows)?
        .chain(new.into_iter().flatten())
        .map(|b| {
            let columns = b?.project(&keep)?.columns().to_vec();
            Ok(RecordBatch::try_new(projected.clone(), columns)?)
        })
        .collect::<Result<Vec<RecordBatch>, StageError>>()?;
    let one = concat_batches(&projected, &batches)?;
    drop(batches);
    Features::load(&Rows::of(&Table::from_batch(one))?, method.name(), None)
}

/// `classes` with rows of the classes `new` (new rows) after the input's.
fn with_new_rows(mut classes: Classes, new: &[u32]) -> Classes {
    for &c in new {
        let at = classes.of_row.len() as u32;
        classes.of_row.push(c);
        classes.members[c as usize].push(at);
    }
    classes
}

/// The rows `held` (ascending input positions) in one pass, in order.
fn gather(source: &Source, batch_rows: usize, held: &[u32]) -> Result<Rows, StageError> {
    let mut out: Vec<RecordBatch> = Vec::new();
    let mut start = 0usize;
    let mut at = 0usize;
    for b in source.batches(batch_rows)? {
        let b = b?;
        let end = start + b.num_rows();
        let from = at;
        while at < held.len() && (held[at] as usize) < end {
            at += 1;
        }
        if at > from {
            let idx = UInt32Array::from(
                held[from..at]
                    .iter()
                    .map(|&g| g - start as u32)
                    .collect::<Vec<_>>(),
            );
            let cols = b
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(RecordBatch::try_new(b.schema(), cols)?);
        }
        start = end;
    }
    Rows::of(&Table::new(source.schema().clone(), out)?)
}

/// The report's lines of a weighting method.
pub(super) fn weight_lines(names: &[String], before: &[usize], w: &[f64]) -> Vec<ClassLine> {
    names
        .iter()
        .enumerate()
        .map(|(c, name)| ClassLine {
            name: name.clone(),
            before: before[c],
            added: 0,
            removed: BTreeMap::new(),
            after: before[c],
            weight: Some(w[c]),
        })
        .collect()
}
