//! Reading label columns whatever their Arrow type.

use arrow::array::{Array, ArrayRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use gigo_pipeline::StageError;

/// The label of every row as text (`null` for a missing label), so that
/// integer, string and boolean labels group the same way.
pub fn label_keys(col: &ArrayRef) -> Result<Vec<String>, StageError> {
    let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
    Ok((0..col.len())
        .map(|i| {
            if col.is_null(i) {
                "null".to_string()
            } else {
                fmt.value(i).to_string()
            }
        })
        .collect())
}
