//! The classes of a label column: label value -> class index, in one
//! documented order, shared by every stage that reads labels.
//!
//! A label's value is its text as Arrow displays it, so integer, string and
//! boolean labels group the same way. Classes are sorted numerically when
//! every value is a number, else as text (cleanlab's and scikit-learn's
//! order for sorted labels); numbers that display differently but compare
//! equal ("1", "1.0") keep their text order.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Int64Array};
//! use gigo_ml::classes::Classes;
//! let col: ArrayRef = Arc::new(Int64Array::from(vec![Some(10), Some(9), None, Some(10)]));
//! let (classes, index) = Classes::of(&col).unwrap();
//! assert_eq!(classes.names(), ["9", "10"]);
//! assert_eq!(index, [Some(1), Some(0), None, Some(1)]);
//! ```

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::MlError;

/// The classes of a label column, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classes {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

/// The label of every row as text (`None` for a missing label).
pub fn label_keys(col: &ArrayRef) -> Result<Vec<Option<String>>, MlError> {
    let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
    Ok((0..col.len())
        .map(|i| (!col.is_null(i)).then(|| fmt.value(i).to_string()))
        .collect())
}

impl Classes {
    /// The classes of the labels `keys` (missing ones ignored), in order.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Classes {
        let mut names: Vec<String> = keys.into_iter().map(str::to_string).collect();
        names.sort();
        names.dedup();
        let numeric: Option<Vec<f64>> = names.iter().map(|n| n.parse::<f64>().ok()).collect();
        if let Some(v) = numeric {
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            names = order.into_iter().map(|i| names[i].clone()).collect();
        }
        Classes::from_names(names)
    }

    /// Classes in a given order (a fitted model's).
    pub fn from_names(names: Vec<String>) -> Classes {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        Classes { names, index }
    }

    /// The classes of a label column and each row's class (`None`: missing).
    pub fn of(col: &ArrayRef) -> Result<(Classes, Vec<Option<u32>>), MlError> {
        let keys = label_keys(col)?;
        let classes = Classes::from_keys(keys.iter().flatten().map(String::as_str));
        let index = classes.encode_keys(&keys);
        Ok((classes, index))
    }

    /// Each row's class in `col` (`None`: missing, or a value that is not
    /// one of the classes).
    pub fn encode(&self, col: &ArrayRef) -> Result<Vec<Option<u32>>, MlError> {
        Ok(self.encode_keys(&label_keys(col)?))
    }

    /// Each key's class (`None`: missing or not a class).
    pub fn encode_keys(&self, keys: &[Option<String>]) -> Vec<Option<u32>> {
        keys.iter()
            .map(|k| k.as_deref().and_then(|k| self.index_of(k)))
            .collect()
    }

    /// The index of class `name`.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The class names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use std::sync::Arc;

    #[test]
    fn text_sorts_as_text_and_numbers_as_numbers() {
        let col: ArrayRef = Arc::new(StringArray::from(vec!["b", "a", "c", "a"]));
        let (c, idx) = Classes::of(&col).unwrap();
        assert_eq!(c.names(), ["a", "b", "c"]);
        assert_eq!(idx, [Some(1), Some(0), Some(2), Some(0)]);
        let col: ArrayRef = Arc::new(StringArray::from(vec!["10", "9", "-1", "1.0", "1"]));
        let (c, _) = Classes::of(&col).unwrap();
        assert_eq!(c.names(), ["-1", "1", "1.0", "9", "10"]);
        let other: ArrayRef = Arc::new(StringArray::from(vec![Some("9"), Some("7"), None]));
        assert_eq!(c.encode(&other).unwrap(), [Some(3), None, None]);
    }
}
