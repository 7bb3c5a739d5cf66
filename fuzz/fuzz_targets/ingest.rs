//! Bytes as a data file read by the `ingest` stage, through `Stage::run`
//! exactly as a pipeline runs it. The first byte picks the format (CSV, TSV,
//! JSON lines, Parquet, Arrow IPC); the rest is the file. Errors are
//! expected; panics are bugs, except those gigo catches around polars.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use gigo_pipeline::{Artifact, Inputs, NoProgress, Registry, Stage, StageContext};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const FILES: [&str; 5] = ["in.csv", "in.tsv", "in.jsonl", "in.parquet", "in.arrow"];

struct Target {
    dir: PathBuf,
    stages: Vec<Box<dyn Stage>>,
}

fn target() -> &'static Target {
    static T: OnceLock<Target> = OnceLock::new();
    T.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gigo-fuzz-ingest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory for the fuzz target");
        let mut registry = Registry::new();
        gigo_datasets::ingest::register(&mut registry);
        let ingest = registry.get("ingest").expect("ingest is registered");
        let stages = FILES
            .iter()
            .map(|f| {
                ingest
                    .build(&serde_json::json!({ "path": f }))
                    .unwrap_or_else(|_| panic!("ingest builds for {f}"))
            })
            .collect();
        Target { dir, stages }
    })
}

fn write(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).expect("write the input file");
    f.write_all(data).expect("write the input file");
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, file)) = data.split_first() else {
        return;
    };
    let t = target();
    let which = choice as usize % FILES.len();
    write(&t.dir.join(FILES[which]), file);
    let ctx = StageContext::new(
        "ingest",
        1,
        t.dir.join("scratch"),
        t.dir.clone(),
        t.dir.join("run"),
        Arc::new(NoProgress),
    );
    common::run(|| {
        if let Ok(out) = t.stages[which].run(&Inputs::default(), &ctx)
            && let Some(Artifact::Table(table)) = out.ports.get("table")
            && let Ok(batch) = table.to_batch()
        {
            common::show_values(&batch);
        }
    });
});
