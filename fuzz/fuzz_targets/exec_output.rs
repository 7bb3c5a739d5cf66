//! Bytes as the Arrow IPC file an `exec` child wrote to one of its outputs,
//! read by the code the `exec` stage uses. Errors are expected; panics are
//! bugs.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn dir() -> &'static std::path::Path {
    static D: OnceLock<std::path::PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("gigo-fuzz-exec-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a scratch directory for the fuzz target");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("out.arrow");
    let mut f = std::fs::File::create(&path).expect("write the input file");
    f.write_all(data).expect("write the input file");
    drop(f);
    common::run(|| {
        if let Ok(table) = gigo_stages::exec::read_child_output(&path) {
            // What the stage does next with a table it accepted.
            let _ = table.num_rows();
            if let Ok(batch) = table.to_batch() {
                common::show_values(&batch);
            }
        }
    });
});
