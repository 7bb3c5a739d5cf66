//! Stratified k-fold cross-validation that returns out-of-sample class
//! probabilities for every row (what confident learning needs).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::catalogue::{Estimator, TrainSet};
use crate::error::MlError;
use crate::matrix::Matrix;

/// The fold (in `0..folds`) of each row: every class is shuffled (seeded)
/// and dealt round-robin, continuing where the previous class stopped, so
/// folds differ in size by at most one row and in each class's count by at
/// most one. Same seed, same folds.
pub fn stratified_folds(
    y: &[u32],
    n_classes: usize,
    folds: usize,
    seed: u64,
) -> Result<Vec<usize>, MlError> {
    if folds < 2 {
        return Err(MlError::param(
            "folds",
            format!("must be at least 2, got {folds}"),
        ));
    }
    if folds > y.len() {
        return Err(MlError::param(
            "folds",
            format!("{folds} folds need at least {folds} rows, got {}", y.len()),
        ));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &l) in y.iter().enumerate() {
        let l = l as usize;
        if l >= n_classes {
            return Err(MlError::data(format!(
                "label {l} of row {i} is not one of {n_classes} classes"
            )));
        }
        by_class[l].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0; y.len()];
    let mut next = 0;
    for rows in &mut by_class {
        rows.shuffle(&mut rng);
        for &i in rows.iter() {
            fold_of[i] = next;
            next = (next + 1) % folds;
        }
    }
    Ok(fold_of)
}

/// Out-of-sample probabilities from `folds`-fold stratified cross-validation
/// of any catalogue model: each row is predicted by the model fitted on the
/// other folds. Folds are fitted in parallel; `seed` deals the folds and
/// seeds every fit.
pub fn cross_val_predict_proba(
    model: &dyn Estimator,
    data: &TrainSet,
    folds: usize,
    seed: u64,
) -> Result<Matrix, MlError> {
    let (x, y, n_classes, sample_weight) = (data.x, data.y, data.n_classes, data.weights);
    if y.len() != x.rows {
        return Err(MlError::data(format!(
            "{} labels for {} rows of features",
            y.len(),
            x.rows
        )));
    }
    let fold_of = stratified_folds(y, n_classes, folds, seed)?;
    let results: Vec<Result<(Vec<usize>, Matrix), MlError>> = (0..folds)
        .into_par_iter()
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..x.rows).partition(|&i| fold_of[i] == f);
            let xt = x.select_rows(&train);
            let yt: Vec<u32> = train.iter().map(|&i| y[i]).collect();
            let wt: Option<Vec<f32>> = sample_weight.map(|w| train.iter().map(|&i| w[i]).collect());
            let fitted = model.fit_boxed(
                &TrainSet::new(&xt, &yt, n_classes).weighted(wt.as_deref()),
                seed,
            )?;
            let p = fitted.predict_proba(&x.select_rows(&test))?;
            if p.cols != n_classes || p.rows != test.len() {
                return Err(MlError::Internal(format!(
                    "{} returned {}x{} probabilities for {} rows and {n_classes} classes",
                    model.name(),
                    p.rows,
                    p.cols,
                    test.len()
                )));
            }
            Ok((test, p))
        })
        .collect();
    let mut out = Matrix::zeros(x.rows, n_classes);
    for r in results {
        let (test, p) = r?;
        for (j, &i) in test.iter().enumerate() {
            out.row_mut(i).copy_from_slice(p.row(j));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logistic::LogisticParams;

    #[test]
    fn folds_are_stratified_balanced_and_seeded() {
        let y: Vec<u32> = (0..103).map(|i| if i % 10 < 7 { 0 } else { 1 }).collect();
        let f = stratified_folds(&y, 2, 5, 42).unwrap();
        for fold in 0..5 {
            let size = f.iter().filter(|&&g| g == fold).count();
            assert!((20..=21).contains(&size), "{size}");
            let ones = (0..y.len()).filter(|&i| f[i] == fold && y[i] == 1).count();
            assert!((6..=7).contains(&ones), "{ones}");
        }
        assert_eq!(f, stratified_folds(&y, 2, 5, 42).unwrap());
        assert_ne!(f, stratified_folds(&y, 2, 5, 43).unwrap());
        assert!(stratified_folds(&y, 2, 1, 0).is_err());
        assert!(stratified_folds(&y[..3], 2, 5, 0).is_err());
    }

    #[test]
    fn out_of_sample_probabilities_cover_every_row() {
        // a row's own label must not leak into its prediction: a lone
        // outlier labelled 1 inside the class-0 region is predicted as 0
        let mut data = Vec::new();
        let mut y = Vec::new();
        for i in 0..60 {
            data.push(if i < 30 {
                i as f32 * 0.01
            } else {
                3.0 + i as f32 * 0.01
            });
            y.push(if i < 30 { 0 } else { 1 });
        }
        y[5] = 1;
        let x = Matrix::new(60, 1, data);
        let model = LogisticParams::default();
        let data = TrainSet::new(&x, &y, 2);
        let p = cross_val_predict_proba(&model, &data, 5, 0).unwrap();
        assert_eq!((p.rows, p.cols), (60, 2));
        assert!(p.row(5)[0] > 0.5, "{:?}", p.row(5));
        let again = cross_val_predict_proba(&model, &data, 5, 0).unwrap();
        assert_eq!(p, again);
    }
}
