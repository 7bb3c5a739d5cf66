//! Reading label-like columns (labels, ids, grouping columns) whatever their
//! Arrow type.

use arrow::array::ArrayRef;
use gigo_pipeline::StageError;

/// The value of every row as text (`None` where it is missing), so that
/// integer, string and boolean values group the same way, as
/// [`gigo_ml::classes`] groups labels into classes.
pub fn label_keys(col: &ArrayRef) -> Result<Vec<Option<String>>, StageError> {
    gigo_ml::classes::label_keys(col).map_err(crate::error::from_ml)
}
