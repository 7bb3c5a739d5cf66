//! polars `DataFrame` → arrow-rs `RecordBatch`, through the Arrow C Data
//! Interface.
//!
//! polars keeps its own Arrow implementation (`polars-arrow`) and no longer
//! converts to arrow-rs itself. Both sides speak the C Data Interface, so each
//! column is exported by polars-arrow (`ffi::export_array_to_c`) and imported
//! by arrow-rs (`arrow::ffi::from_ffi`) without copying its buffers. This is
//! the crate's one `unsafe` module; keep it small.
//!
//! After import, types that downstream stages should not have to handle are
//! cast to plain ones: `Utf8View`/`LargeUtf8` → `Utf8`,
//! `BinaryView`/`LargeBinary` → `Binary`, `LargeList`/`ListView` → `List`,
//! recursively inside lists and structs.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, make_array};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use polars::prelude::{CompatLevel, DataFrame};

use crate::error::DatasetError;

// The two crates' C structs must be the same shape (both are `#[repr(C)]`
// transcriptions of the C Data Interface's `ArrowArray` / `ArrowSchema`).
const _: () = assert!(
    std::mem::size_of::<polars_arrow::ffi::ArrowArray>() == std::mem::size_of::<FFI_ArrowArray>()
);
const _: () = assert!(
    std::mem::align_of::<polars_arrow::ffi::ArrowArray>() == std::mem::align_of::<FFI_ArrowArray>()
);
const _: () = assert!(
    std::mem::size_of::<polars_arrow::ffi::ArrowSchema>() == std::mem::size_of::<FFI_ArrowSchema>()
);
const _: () = assert!(
    std::mem::align_of::<polars_arrow::ffi::ArrowSchema>()
        == std::mem::align_of::<FFI_ArrowSchema>()
);

/// Converts `df` into one arrow-rs record batch with plain types (see the
/// module documentation). Column names and order are kept; every field is
/// nullable.
pub fn dataframe_to_record_batch(df: &DataFrame) -> Result<RecordBatch, DatasetError> {
    let mut fields = Vec::with_capacity(df.width());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(df.width());
    for col in df.columns() {
        let name = col.name().to_string();
        // The C Data Interface carries names as C strings: polars-arrow's
        // exporter panics on a NUL byte (a CSV header of one `\0` has one).
        if name.contains('\0') {
            return Err(DatasetError::BadColumnName { name });
        }
        let polars_field = col.field().to_arrow(CompatLevel::newest());
        let polars_array = col.clone().rechunk_to_arrow(CompatLevel::newest());
        let array = import_column(polars_array, &polars_field).map_err(|source| {
            DatasetError::Internal {
                what: format!("column `{name}` from polars"),
                source,
            }
        })?;
        let array = plain_array(&name, array)?;
        fields.push(Field::new(name, array.data_type().clone(), true));
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let options = RecordBatchOptions::new().with_row_count(Some(df.height()));
    RecordBatch::try_new_with_options(schema, columns, &options).map_err(|source| {
        DatasetError::Internal {
            what: "building a record batch from polars".into(),
            source,
        }
    })
}

/// Moves one polars-arrow array into arrow-rs.
fn import_column(
    array: Box<dyn polars_arrow::array::Array>,
    field: &polars_arrow::datatypes::Field,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let mut c_array = polars_arrow::ffi::export_array_to_c(array);
    let mut c_schema = polars_arrow::ffi::export_field_to_c(field);
    // SAFETY: both structs are `#[repr(C)]` layouts of the C Data Interface's
    // `ArrowArray` and `ArrowSchema` (same size and alignment, checked at
    // compile time above), freshly filled in by polars-arrow's exporter.
    // `from_raw` *moves* each value out, leaving an empty struct (release
    // callback NULL) behind, so polars' `Drop` does nothing and arrow-rs
    // becomes the only owner that calls `release`.
    let (ffi_array, ffi_schema) = unsafe {
        (
            FFI_ArrowArray::from_raw(
                (&mut c_array as *mut polars_arrow::ffi::ArrowArray).cast::<FFI_ArrowArray>(),
            ),
            FFI_ArrowSchema::from_raw(
                (&mut c_schema as *mut polars_arrow::ffi::ArrowSchema).cast::<FFI_ArrowSchema>(),
            ),
        )
    };
    // SAFETY: `ffi_array` and `ffi_schema` describe the same array (exported
    // together just above) and follow the C Data Interface.
    let data = unsafe { from_ffi(ffi_array, &ffi_schema) }?;
    Ok(make_array(data))
}

/// `array` cast to its [`plain_type`] (itself when already plain).
pub fn plain_array(name: &str, array: ArrayRef) -> Result<ArrayRef, DatasetError> {
    let plain = plain_type(array.data_type());
    if &plain == array.data_type() {
        return Ok(array);
    }
    arrow::compute::cast(&array, &plain).map_err(|source| DatasetError::Internal {
        what: format!("column `{name}`: casting {} to {plain}", array.data_type()),
        source,
    })
}

/// `batch` with every column cast to its [`plain_type`], every field
/// nullable and without metadata (as a polars frame converts), for batches
/// read by arrow-rs itself.
pub fn plain_batch(batch: &RecordBatch) -> Result<RecordBatch, DatasetError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let array = plain_array(field.name(), array.clone())?;
        fields.push(Field::new(field.name(), array.data_type().clone(), true));
        columns.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).map_err(
        |source| DatasetError::Internal {
            what: "building a record batch".into(),
            source,
        },
    )
}

/// The plain type that `data_type` is cast to (itself when already plain).
pub fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => DataType::List(Arc::new(plain_field(f))),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(plain_field(f)), *n),
        DataType::Struct(fields) => DataType::Struct(Fields::from(
            fields.iter().map(|f| plain_field(f)).collect::<Vec<_>>(),
        )),
        DataType::Dictionary(_, value) => plain_type(value),
        other => other.clone(),
    }
}

fn plain_field(field: &Field) -> Field {
    field.clone().with_data_type(plain_type(field.data_type()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray};
    use polars::df;

    fn sample() -> DataFrame {
        df!(
            "i" => [Some(1i64), None, Some(-3), Some(i64::MAX)],
            "f" => [Some(1.5f64), Some(f64::NAN), None, Some(-0.0)],
            "s" => [Some("a"), None, Some(""), Some("a string longer than twelve bytes")],
        )
        .unwrap()
    }

    #[test]
    fn a_nul_byte_in_a_column_name_is_a_data_error() {
        let df = df!("a\0b" => [1i64, 2]).unwrap();
        match dataframe_to_record_batch(&df) {
            Err(e @ DatasetError::BadColumnName { .. }) => {
                assert_eq!(e.to_string(), r#"column name "a\0b" contains a NUL byte"#)
            }
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_keeps_values_nulls_and_nan() {
        let df = sample();
        let batch = dataframe_to_record_batch(&df).unwrap();
        assert_eq!(batch.num_rows(), 4);
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["i", "f", "s"]);
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);

        let i = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(
            i.iter().collect::<Vec<_>>(),
            vec![Some(1), None, Some(-3), Some(i64::MAX)]
        );
        let f = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(f.value(0), 1.5);
        assert!(
            f.is_valid(1) && f.value(1).is_nan(),
            "NaN is a value, not a null"
        );
        assert!(f.is_null(2));
        assert!(f.value(3) == 0.0 && f.value(3).is_sign_negative());
        let s = batch
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![
                Some("a"),
                None,
                Some(""),
                Some("a string longer than twelve bytes")
            ]
        );

        // And back: the arrow-rs values equal polars' own.
        let polars_f = df.column("f").unwrap().f64().unwrap();
        let back: Vec<Option<f64>> = (0..polars_f.len()).map(|k| polars_f.get(k)).collect();
        for (k, v) in back.iter().enumerate() {
            match v {
                None => assert!(f.is_null(k)),
                Some(x) if x.is_nan() => assert!(f.value(k).is_nan()),
                Some(x) => assert_eq!(*x, f.value(k)),
            }
        }
    }

    #[test]
    fn numeric_buffers_are_shared_not_copied() {
        let df = sample();
        let polars_ptr = df
            .column("f")
            .unwrap()
            .f64()
            .unwrap()
            .downcast_iter()
            .next()
            .unwrap()
            .values()
            .as_ptr();
        let batch = dataframe_to_record_batch(&df).unwrap();
        let f = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(f.values().as_ptr(), polars_ptr);
    }

    #[test]
    fn several_chunks_and_empty_frames_convert() {
        let mut a = sample();
        a.vstack_mut(&sample()).unwrap();
        let batch = dataframe_to_record_batch(&a).unwrap();
        assert_eq!(batch.num_rows(), 8);

        let empty = sample().head(Some(0));
        let batch = dataframe_to_record_batch(&empty).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.num_columns(), 3);

        let no_columns = DataFrame::new(5, vec![]).unwrap();
        let batch = dataframe_to_record_batch(&no_columns).unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (5, 0));
    }

    #[test]
    fn nested_large_types_become_plain() {
        let t = DataType::LargeList(Arc::new(Field::new("item", DataType::Utf8View, true)));
        assert_eq!(
            plain_type(&t),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
    }
}
