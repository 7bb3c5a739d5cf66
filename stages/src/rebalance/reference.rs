//! The whole-table algorithms: every method but weighting on the input
//! held in memory, the reference that the streamed methods (see
//! [`super::stream`]) are tested against, byte for byte. The stage itself
//! always streams.

use gigo_pipeline::memory::release_before;
use gigo_pipeline::{StageContext, StageError, StageOutput, Table};

use super::data::{
    ClassLabels, Classes, Features, Rows, assemble, check_removed_rows, synthetic_batch,
};
use super::strategy::{Kind, Named, Strategy, targets};
use super::{Accounting, Family, Method, Rebalance, report, smote, undersample};

impl Rebalance {
    /// Every method but weighting on the input held whole.
    /// the streamed methods are tested against, byte for byte (see
    /// [`stream`]); the stage itself always streams.
    pub(super) fn rebalance(
        &self,
        table: &Table,
        ctx: &StageContext,
    ) -> Result<StageOutput, StageError> {
        let p = &self.params;
        let method = p.method;
        let rows = Rows::of(table)?;
        let classes = Classes::load(&rows)?;
        let before = classes.counts();
        let names = classes.names.clone();
        let mut notes = Vec::new();

        let mode = self.removed_mode();
        check_removed_rows(&rows.schema, mode)?;
        let kind = method.strategy_kind().unwrap_or(Kind::Over);
        let strategy = p.strategy.clone().unwrap_or(Strategy::Named(Named::Auto));
        let t = targets(&strategy, kind, &before, &names, p.classes.as_deref())?;
        let mut acc = Accounting::new(names.len());

        let (outcome, created) = match method.family() {
            Family::Over | Family::Combined => {
                let features = match method {
                    Method::RandomOver => None,
                    Method::SmoteNc => Some(self.nc_features(&rows)?),
                    _ => Some(Features::load(&rows, method.name(), None)?),
                };
                let synthetic = match (method, &features) {
                    (Method::RandomOver, _) => smote::random_over(ctx, &classes, &t),
                    (Method::BorderlineSmote | Method::Adasyn, Some(f)) => {
                        self.by_danger(ctx, &classes, f, &t, &mut notes)?
                    }
                    (Method::SmoteNc, Some(f)) => {
                        smote::smote_nc(ctx, &classes, f, &t, p.k(), &mut notes)?
                    }
                    (_, Some(f)) => smote::smote(ctx, &classes, f, &t, p.k(), &mut notes)?,
                    (_, None) => return Err(StageError::internal("features not loaded")),
                };
                for &c in &synthetic.class {
                    acc.added[c as usize] += 1;
                }
                let created = synthetic.len();
                // Only the class labels are needed from here: free the
                // per-row class index before the new columns take memory.
                let labels = ClassLabels::of(&rows, &classes)?;
                drop(classes);
                // The neighbour search's memory is free: give it back before
                // the new columns take theirs (see `gigo_pipeline::memory`).
                release_before(rows.bytes(synthetic.len()));
                let cols = if !synthetic.is_empty() {
                    Some(synthetic_batch(
                        &rows,
                        &labels,
                        features.as_ref(),
                        synthetic,
                    )?)
                } else {
                    None
                };
                drop(features);
                let grown = assemble(&rows, cols, &[], mode)?;
                if method.family() == Family::Over {
                    (grown, created)
                } else {
                    // Clean every class of the grown table, synthetic rows too.
                    let table2 = grown.table;
                    let rows2 = Rows::of(&table2)?;
                    let classes2 = Classes::load(&rows2)?;
                    let f2 = Features::load(&rows2, method.name(), None)?;
                    let all = vec![true; classes2.names.len()];
                    let removal = if method == Method::SmoteTomek {
                        undersample::tomek(&classes2, &f2, &all)
                    } else {
                        undersample::enn(
                            &classes2,
                            &f2,
                            &all,
                            p.n(),
                            p.kind_sel.unwrap_or_default(),
                        )
                    };
                    drop(f2);
                    release_before(rows2.bytes(rows2.n));
                    acc.count_removed(&removal, &classes2, &names);
                    (assemble(&rows2, None, &removal, mode)?, created)
                }
            }
            Family::Under | Family::Clean => {
                let f = match method {
                    Method::RandomUnder => None,
                    _ => Some(Features::load(&rows, method.name(), None)?),
                };
                let removal = match (method, &f) {
                    (Method::RandomUnder, _) => undersample::random_under(ctx, &classes, &t),
                    (_, None) => return Err(StageError::internal("features not loaded")),
                    (_, Some(f)) => self.cleaned(&classes, f, &t, &mut notes)?,
                };
                acc.count_removed(&removal, &classes, &names);
                release_before(rows.bytes(rows.n));
                (assemble(&rows, None, &removal, mode)?, 0)
            }
            Family::Weight => return Err(StageError::internal("weighting streams (see `stream`)")),
        };

        let lines = acc.lines(&names, &before);
        let mut out = StageOutput::new()
            .with("table", outcome.table)
            .with("removed", outcome.removed)
            .with_summary(report::summary(
                &ctx.stage_id,
                method.name(),
                &lines,
                &notes,
            ));
        if created > 0 {
            let reason = match method {
                Method::SmoteTomek | Method::SmoteEnn => "smote",
                m => m.name(),
            };
            out = out.created(reason, created);
        }
        Ok(out)
    }
}
