//! k-nearest-neighbour classifier: the (optionally weighted) label vote of
//! the `k` nearest training rows, by exact euclidean distance ([`crate::knn`]).

use serde::{Deserialize, Serialize};

use crate::catalogue::{Classic, ClassicModel, Fit, TrainSet};
use crate::error::MlError;
use crate::knn::knn;
use crate::matrix::Matrix;

/// Catalogue name.
pub const NAME: &str = "knn";

/// Hyper-parameters of [`KnnClassifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KnnParams {
    /// Neighbours per vote. Default 10.
    pub k: usize,
    /// Weigh each neighbour's vote by `1 / distance` (an exact match takes
    /// the whole vote), as scikit-learn's `weights="distance"`. Default
    /// false (every neighbour counts the same).
    pub distance_weighted: bool,
}

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams {
            k: 10,
            distance_weighted: false,
        }
    }
}

/// A fitted k-nearest-neighbour vote (see the module docs): the training
/// rows themselves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnnClassifier {
    x: Matrix,
    y: Vec<u32>,
    weights: Vec<f32>,
    n_classes: usize,
}

impl Fit for KnnParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "k-nearest-neighbour vote on the encoded features";
    type Fitted = Classic<KnnClassifier>;

    fn check(&self) -> Result<(), MlError> {
        if self.k == 0 {
            return Err(MlError::param("k", "must be at least 1"));
        }
        Ok(())
    }

    fn fit(&self, data: &TrainSet, _seed: u64) -> Result<Classic<KnnClassifier>, MlError> {
        self.check()?;
        data.check()?;
        Ok(Classic::new(
            self.clone(),
            data.x.cols,
            data.n_classes,
            KnnClassifier {
                x: data.x.clone(),
                y: data.y.to_vec(),
                weights: data
                    .weights
                    .map_or_else(|| vec![1.0; data.x.rows], <[f32]>::to_vec),
                n_classes: data.n_classes,
            },
        ))
    }
}

impl ClassicModel for KnnClassifier {
    type Params = KnnParams;

    fn predict(&self, params: &KnnParams, x: &Matrix) -> Matrix {
        let f = self;
        let k = f.n_classes;
        let nn = knn(&f.x, x, params.k);
        let mut out = Matrix::zeros(x.rows, k);
        for i in 0..x.rows {
            let row = out.row_mut(i);
            let mut total = 0.0f64;
            let mut votes = vec![0.0f64; k];
            let (idx, dist) = nn.of(i);
            let exact = params.distance_weighted && dist.first() == Some(&0.0);
            for (&j, &d) in idx.iter().zip(dist) {
                let mut w = f.weights[j as usize] as f64;
                if params.distance_weighted {
                    // exact matches share the vote; otherwise 1 / distance
                    w *= if exact {
                        (d == 0.0) as u8 as f64
                    } else {
                        1.0 / d as f64
                    };
                }
                votes[f.y[j as usize] as usize] += w;
                total += w;
            }
            for (o, v) in row.iter_mut().zip(&votes) {
                *o = if total > 0.0 {
                    (v / total) as f32
                } else {
                    1.0 / k as f32
                };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::FittedModel;

    #[test]
    fn votes_of_the_nearest_rows() {
        let x = Matrix::new(5, 1, vec![0.0, 0.1, 0.2, 5.0, 5.1]);
        let y = [0, 0, 1, 1, 1];
        let params = KnnParams {
            k: 3,
            distance_weighted: false,
        };
        let m = params.fit(&TrainSet::new(&x, &y, 2), 0).unwrap();
        let p = m
            .predict_proba(&Matrix::new(2, 1, vec![0.05, 4.0]))
            .unwrap();
        assert_eq!(p.row(0), &[2.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(p.row(1), &[0.0, 1.0]);
        // weights shift the vote
        let w = [1.0, 1.0, 4.0, 1.0, 1.0];
        let m = params
            .fit(&TrainSet::new(&x, &y, 2).weighted(Some(&w)), 0)
            .unwrap();
        let p = m.predict_proba(&Matrix::new(1, 1, vec![0.05])).unwrap();
        assert_eq!(p.row(0), &[2.0 / 6.0, 4.0 / 6.0]);
        crate::catalogue::assert_round_trips(&m, &x);
    }

    #[test]
    fn distance_weighting_favours_the_closest_rows() {
        let x = Matrix::new(3, 1, vec![0.0, 1.0, 3.0]);
        let m = KnnParams {
            k: 3,
            distance_weighted: true,
        }
        .fit(&TrainSet::new(&x, &[0, 1, 1], 2), 0)
        .unwrap();
        // at 0.5: weights 2, 2, 0.4 -> class 0 gets 2 / 4.4
        let p = m.predict_proba(&Matrix::new(1, 1, vec![0.5])).unwrap();
        assert!((p.row(0)[0] - (2.0 / 4.4) as f32).abs() < 1e-6);
        // an exact match takes the whole vote
        let p = m.predict_proba(&Matrix::new(1, 1, vec![3.0])).unwrap();
        assert_eq!(p.row(0), &[0.0, 1.0]);
    }
}
