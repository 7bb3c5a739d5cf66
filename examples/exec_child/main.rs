//! A small child program for the `exec` stage (protocol gigo-exec v1), used by
//! gigo's tests and as a template for stages in other languages.
//!
//! Mode (first argument):
//! - `add-column`: copies `table` to the output and adds `x_sum`, the row sum
//!   of the feature columns (nulls count as 0);
//! - `crash`: writes to stderr and exits with status 3;
//! - `garbage`: exits 0 after writing bytes that are not Arrow IPC;
//! - `sleep`: sleeps for 30 s (for timeouts), then exits 0.
//!
//! With `GIGO_TEST_PAUSE_FILE` set, `add-column` first creates that file and
//! then waits 30 s: the tests kill gigo during that pause.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;

fn fail(msg: &str) -> ! {
    eprintln!("exec_child: {msg}");
    std::process::exit(2);
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let request_path =
        std::env::var("GIGO_EXEC_REQUEST").unwrap_or_else(|_| fail("GIGO_EXEC_REQUEST is not set"));
    let request: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&request_path)
            .unwrap_or_else(|e| fail(&format!("reading the request: {e}"))),
    )
    .unwrap_or_else(|e| fail(&format!("request is not JSON: {e}")));
    if request["version"] != 1 {
        fail("unsupported protocol version");
    }
    let output = request["outputs"]["table"]
        .as_str()
        .unwrap_or_else(|| fail("no output `table`"))
        .to_string();
    match mode.as_str() {
        "crash" => {
            eprintln!("exec_child: something went badly wrong");
            std::process::exit(3);
        }
        "garbage" => {
            fs::write(&output, b"this is not arrow").unwrap_or_else(|e| fail(&e.to_string()));
            return;
        }
        "sleep" => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        "add-column" => {}
        other => fail(&format!("unknown mode `{other}`")),
    }
    if let Ok(pause) = std::env::var("GIGO_TEST_PAUSE_FILE") {
        let _ = fs::write(&pause, b"paused");
        std::thread::sleep(Duration::from_secs(30));
    }
    let input = request["inputs"]["table"]
        .as_str()
        .unwrap_or_else(|| fail("no input `table`"));
    let file = fs::File::open(input).unwrap_or_else(|e| fail(&e.to_string()));
    let reader = FileReader::try_new(file, None).unwrap_or_else(|e| fail(&e.to_string()));
    let schema = reader.schema();
    let features: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.metadata().get("gigo:role").map(String::as_str) == Some("feature")
                && f.data_type() == &DataType::Float64
        })
        .map(|(i, _)| i)
        .collect();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    // A column the child adds: no role, so gigo keeps it as `other`.
    fields.push(Field::new("x_sum", DataType::Float64, false));
    let out_schema = Arc::new(Schema::new(fields));
    let out = fs::File::create(&output).unwrap_or_else(|e| fail(&e.to_string()));
    let mut writer = FileWriter::try_new(out, &out_schema).unwrap_or_else(|e| fail(&e.to_string()));
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| fail(&e.to_string()));
        let sums: Float64Array = (0..batch.num_rows())
            .map(|r| {
                features
                    .iter()
                    .filter_map(|&c| batch.column(c).as_any().downcast_ref::<Float64Array>())
                    .map(|a| if a.is_null(r) { 0.0 } else { a.value(r) })
                    .sum::<f64>()
            })
            .collect();
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols.push(Arc::new(sums));
        let b =
            RecordBatch::try_new(out_schema.clone(), cols).unwrap_or_else(|e| fail(&e.to_string()));
        writer.write(&b).unwrap_or_else(|e| fail(&e.to_string()));
    }
    writer.finish().unwrap_or_else(|e| fail(&e.to_string()));
    let summary = request["summary"]
        .as_str()
        .unwrap_or_else(|| fail("no summary path"));
    fs::write(summary, br#"{"added": "x_sum"}"#).unwrap_or_else(|e| fail(&e.to_string()));
}
