//! A dense, row-major `f32` matrix: the one shape every algorithm in this
//! crate consumes (kNN, classifiers, confident learning's probabilities).

use serde::{Deserialize, Serialize};

/// A dense row-major matrix of `f32`: element `(i, j)` is `data[i * cols + j]`.
///
/// # Example
/// ```
/// use gigo_ml::matrix::Matrix;
/// let m = Matrix::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
/// assert_eq!(m.select_rows(&[1, 1]).data, vec![4.0, 5.0, 6.0, 4.0, 5.0, 6.0]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// The elements, row after row (`rows * cols` of them).
    pub data: Vec<f32>,
}

impl Matrix {
    /// A matrix over `data` (row-major).
    ///
    /// # Panics
    /// If `data.len() != rows * cols`: that is a programming error, never a
    /// data error.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        assert_eq!(
            data.len(),
            rows * cols,
            "Matrix::new: {rows}x{cols} needs {} elements, got {}",
            rows * cols,
            data.len()
        );
        Matrix { rows, cols, data }
    }

    /// A `rows x cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Row `i` as a slice of `cols` elements.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// The rows at `idx`, in that order (repeats allowed).
    pub fn select_rows(&self, idx: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            rows: idx.len(),
            cols: self.cols,
            data,
        }
    }

    /// An iterator over the rows.
    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        // `chunks_exact(0)` panics; a matrix without columns has empty rows.
        (0..self.rows).map(move |i| self.row(i))
    }

    /// Whether every element is finite (no NaN, no infinity).
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_selection() {
        let m = Matrix::new(3, 2, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.row(2), &[4.0, 5.0]);
        assert_eq!(m.get(1, 1), 3.0);
        let s = m.select_rows(&[2, 0]);
        assert_eq!((s.rows, s.cols), (2, 2));
        assert_eq!(s.data, vec![4.0, 5.0, 0.0, 1.0]);
        assert_eq!(m.iter_rows().count(), 3);
        let z = Matrix::zeros(2, 0);
        assert_eq!(z.iter_rows().map(|r| r.len()).sum::<usize>(), 0);
    }

    #[test]
    #[should_panic(expected = "needs 6 elements")]
    fn new_checks_the_shape() {
        let _ = Matrix::new(2, 3, vec![0.0; 5]);
    }
}
