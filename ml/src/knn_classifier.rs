//! k-nearest-neighbour classifier: the (optionally weighted) label vote of
//! the `k` nearest training rows, by exact euclidean distance ([`crate::knn`]).

use serde::{Deserialize, Serialize};

use crate::classifier::{Classifier, check_fit_inputs, save, uniform};
use crate::error::MlError;
use crate::knn::knn;
use crate::matrix::Matrix;

/// Catalogue name.
pub const NAME: &str = "knn";

/// Hyper-parameters of [`KnnClassifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// k-nearest-neighbour vote (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnnClassifier {
    params: KnnParams,
    fitted: Option<Fitted>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fitted {
    x: Matrix,
    y: Vec<u32>,
    weights: Vec<f32>,
    n_classes: usize,
}

impl KnnClassifier {
    /// An unfitted model; checks the parameters.
    pub fn new(params: KnnParams) -> Result<KnnClassifier, MlError> {
        if params.k == 0 {
            return Err(MlError::param("k", "must be at least 1"));
        }
        Ok(KnnClassifier {
            params,
            fitted: None,
        })
    }

    /// Reads a model written by [`Classifier::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<KnnClassifier, MlError> {
        let saved: crate::classifier::Saved<KnnClassifier> = serde_json::from_slice(bytes)?;
        KnnClassifier::new(saved.state.params.clone())?;
        Ok(saved.state)
    }
}

impl Classifier for KnnClassifier {
    fn fit(
        &mut self,
        x: &Matrix,
        y: &[u32],
        n_classes: usize,
        sample_weight: Option<&[f32]>,
    ) -> Result<(), MlError> {
        check_fit_inputs(x, y, n_classes, sample_weight)?;
        self.fitted = Some(Fitted {
            x: x.clone(),
            y: y.to_vec(),
            weights: sample_weight.map_or_else(|| vec![1.0; x.rows], <[f32]>::to_vec),
            n_classes,
        });
        Ok(())
    }

    fn predict_proba(&self, x: &Matrix) -> Matrix {
        let Some(f) = &self.fitted else {
            return uniform(x.rows, 2);
        };
        if x.cols != f.x.cols {
            return uniform(x.rows, f.n_classes);
        }
        let k = f.n_classes;
        let nn = knn(&f.x, x, self.params.k);
        let mut out = Matrix::zeros(x.rows, k);
        for i in 0..x.rows {
            let row = out.row_mut(i);
            let mut total = 0.0f64;
            let mut votes = vec![0.0f64; k];
            let (idx, dist) = nn.of(i);
            let exact = self.params.distance_weighted && dist.first() == Some(&0.0);
            for (&j, &d) in idx.iter().zip(dist) {
                let mut w = f.weights[j as usize] as f64;
                if self.params.distance_weighted {
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

    fn n_features(&self) -> Option<usize> {
        self.fitted.as_ref().map(|f| f.x.cols)
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn to_bytes(&self) -> Result<Vec<u8>, MlError> {
        save(NAME, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_of_the_nearest_rows() {
        let x = Matrix::new(5, 1, vec![0.0, 0.1, 0.2, 5.0, 5.1]);
        let y = [0, 0, 1, 1, 1];
        let mut m = KnnClassifier::new(KnnParams {
            k: 3,
            distance_weighted: false,
        })
        .unwrap();
        m.fit(&x, &y, 2, None).unwrap();
        let p = m.predict_proba(&Matrix::new(2, 1, vec![0.05, 4.0]));
        assert_eq!(p.row(0), &[2.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(p.row(1), &[0.0, 1.0]);
        // weights shift the vote
        m.fit(&x, &y, 2, Some(&[1.0, 1.0, 4.0, 1.0, 1.0])).unwrap();
        let p = m.predict_proba(&Matrix::new(1, 1, vec![0.05]));
        assert_eq!(p.row(0), &[2.0 / 6.0, 4.0 / 6.0]);
        let back = crate::classifier::load(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.predict_proba(&x), m.predict_proba(&x));
    }

    #[test]
    fn distance_weighting_favours_the_closest_rows() {
        let x = Matrix::new(3, 1, vec![0.0, 1.0, 3.0]);
        let mut m = KnnClassifier::new(KnnParams {
            k: 3,
            distance_weighted: true,
        })
        .unwrap();
        m.fit(&x, &[0, 1, 1], 2, None).unwrap();
        // at 0.5: weights 2, 2, 0.4 -> class 0 gets 2 / 4.4
        let p = m.predict_proba(&Matrix::new(1, 1, vec![0.5]));
        assert!((p.row(0)[0] - (2.0 / 4.4) as f32).abs() < 1e-6);
        // an exact match takes the whole vote
        let p = m.predict_proba(&Matrix::new(1, 1, vec![3.0]));
        assert_eq!(p.row(0), &[0.0, 1.0]);
    }
}
