//! Sample tables for tests (gigo's and custom stages'): tiny, built in code.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, DictionaryArray, DurationSecondArray, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray, Time64MicrosecondArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type};

/// Four rows with one column of each kind a Parquet, IPC or JSON file can
/// hold beyond plain numbers and text, each with a null in row 2 (`label`
/// aside, an Int64 label 0, 1, 0, 1):
///
/// `price` Decimal128(10, 2), `day` Date32, `seen` Timestamp(µs), `seen_utc`
/// Timestamp(ms, UTC), `wait` Duration(s), `at` Time64(µs), `tags`
/// List<Int64>, `point` Struct{x: Int64, name: Utf8}, `colour`
/// Dictionary<Int32, Utf8>, `points` List<Struct{x: Int64, name: Utf8}>.
pub fn every_type_batch() -> RecordBatch {
    let point_fields = Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]);
    let point = |xs: Vec<Option<i64>>, names: Vec<Option<&str>>| {
        StructArray::new(
            point_fields.clone(),
            vec![
                Arc::new(Int64Array::from(xs)) as ArrayRef,
                Arc::new(StringArray::from(names)),
            ],
            None,
        )
    };
    let points_struct = point(
        vec![Some(1), Some(2), Some(3), Some(4), Some(5)],
        vec![Some("a"), Some("b"), None, Some("d"), Some("e")],
    );
    let points = ListArray::new(
        Arc::new(Field::new(
            "item",
            DataType::Struct(point_fields.clone()),
            true,
        )),
        arrow::buffer::OffsetBuffer::from_lengths([2, 0, 0, 3]),
        Arc::new(points_struct),
        Some(vec![true, true, false, true].into()),
    );
    let with_null_at_2 = |s: StructArray| {
        let (f, c, _) = s.into_parts();
        StructArray::new(f, c, Some(vec![true, true, false, true].into()))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![Some(1999), Some(-5), None, Some(123_456)])
                    .with_precision_and_scale(10, 2)
                    .expect("valid decimal"),
            ),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                Some(19_000),
                Some(19_001),
                None,
                Some(20_000),
            ])),
        ),
        (
            "seen",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_700_000_000_000_000),
                Some(1_700_000_001_000_000),
                None,
                Some(1_600_000_000_000_000),
            ])),
        ),
        (
            "seen_utc",
            Arc::new(
                TimestampMillisecondArray::from(vec![
                    Some(1_700_000_000_000),
                    Some(1_700_000_000_500),
                    None,
                    Some(1_700_000_002_000),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "wait",
            Arc::new(DurationSecondArray::from(vec![
                Some(60),
                Some(3600),
                None,
                Some(5),
            ])),
        ),
        (
            "at",
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(1_000_000),
                Some(3_600_000_000),
                None,
                Some(0),
            ])),
        ),
        (
            "tags",
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                Some(vec![Some(1), Some(2)]),
                Some(vec![]),
                None,
                Some(vec![Some(3), None, Some(4)]),
            ])),
        ),
        (
            "point",
            Arc::new(with_null_at_2(point(
                vec![Some(1), Some(2), Some(0), None],
                vec![Some("p"), None, Some("q"), Some("r")],
            ))),
        ),
        (
            "colour",
            Arc::new(
                vec![Some("red"), Some("blue"), None, Some("red")]
                    .into_iter()
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
        ),
        ("points", Arc::new(points)),
        ("label", Arc::new(Int64Array::from(vec![0, 1, 0, 1]))),
    ];
    RecordBatch::try_from_iter(columns).expect("a valid sample batch")
}
