//! Bytes as a pipeline file, down the path `gigo validate` takes: parse the
//! YAML, build the plan with every built-in stage type, render the
//! diagnostics against the source. Errors are expected; panics are bugs.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use gigo_pipeline::{Registry, config, plan};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(gigo::builtin_registry)
}

fuzz_target!(|data: &[u8]| {
    // `gigo validate` reads the file with `read_to_string`: not UTF-8 is an
    // I/O error before any parsing.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    common::run(|| {
        let registry = registry();
        let file: Arc<str> = Arc::from("fuzz.yaml");
        let diags = match config::parse_str(source, file, PathBuf::from("."), &[]) {
            Err(d) => d,
            Ok(spec) => match plan::build_plan(&spec, registry) {
                Ok(_) => return,
                Err(d) => d,
            },
        };
        for d in &diags {
            let _ = d.render(Some(source));
        }
    });
});
