//! What every target shares: a panic hook that tells a panic gigo catches on
//! purpose (polars readers, behind `catch_unwind`) from one that escapes.
//!
//! libfuzzer-sys installs a hook that aborts on *every* panic, before any
//! `catch_unwind` can see it. That would report panics gigo already turns
//! into errors, so the targets replace it: the hook only remembers the
//! message, and [`run`] aborts when a panic reaches the target itself.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once};

static HOOK: Once = Once::new();
static LAST: Mutex<String> = Mutex::new(String::new());
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn install_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            // Each place that panics is printed once, so a run's log lists
            // the panics gigo caught without drowning in them.
            if let Ok(mut seen) = SEEN.lock()
                && seen.insert(at.clone())
            {
                eprintln!("gigo-fuzz: panic at {at}: {msg}");
            }
            if let Ok(mut last) = LAST.lock() {
                *last = format!("{at}: {msg}");
            }
        }));
    });
}

/// Runs one input; a panic that gets out of `f` aborts, so libFuzzer
/// records the input as a crash.
pub fn run(f: impl FnOnce()) {
    install_hook();
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        let last = LAST.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!("gigo-fuzz: uncaught panic: {last}");
        std::process::abort();
    }
}

/// Formats the first rows of every column, as `export` and `report` do with
/// a table: a value an array cannot show is an error, never a panic.
#[allow(dead_code)] // `validate` has no table to show
pub fn show_values(batch: &arrow::array::RecordBatch) {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    for column in batch.columns() {
        if let Ok(f) = ArrayFormatter::try_new(column.as_ref(), &options) {
            for row in 0..column.len().min(64) {
                let _ = f.value(row).try_to_string();
            }
        }
    }
}
