//! The run's memory budget: how much a stage may hold, checked before it
//! starts, so that a stage too large for the machine fails with its name,
//! what it needs and the budget, never by an out-of-memory kill.
//!
//! The budget is `--memory` on the command line, else `memory:` in the
//! pipeline file, else three quarters of the machine's physical memory.
//! What a stage needs follows from how it reads ([`Memory`]): a stage that
//! holds its inputs whole needs them (as loaded) plus its working memory; a
//! stage that streams needs a fixed amount plus any per-row state.
//!
//! The budget is the run's, not each stage's: stages that run at once
//! (`--jobs`) share it through a [`Ledger`]. Each sets aside what it may
//! take ([`crate::Stage::reserve`]: at least what it needs, more when it
//! holds more because the budget allows), and a stage whose share does not
//! fit beside those of the stages running waits for them to finish. What a
//! stage decides from the budget (to hold or to stream, the size of a
//! sample) is decided from the run's whole budget, never from what the
//! other stages left, so that outputs do not depend on `--jobs` or timing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Condvar, Mutex};

/// What a stage that streams its inputs needs whatever the rows: a few
/// batches in flight and a Parquet writer's row group (see
/// [`crate::stream::WRITE_ROWS`]).
pub const STREAM_FIXED: u64 = 64 << 20;

/// How a stage uses memory, for the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Memory {
    /// Holds its input tables whole, loaded before it starts, and works on
    /// them with about `factor` times their size more (copies, matrices).
    Whole {
        /// Working memory as a multiple of the inputs' size.
        factor: f64,
    },
    /// Reads its inputs in batches ([`crate::Inputs::source`]): about
    /// `fixed` bytes, plus `per_row` bytes for each row of its main inputs.
    Streams {
        /// Bytes per input row kept across batches (flags, hashes).
        per_row: f64,
        /// Bytes whatever the rows (batches in flight, buffers, samples).
        fixed: u64,
    },
}

impl Memory {
    /// The default: inputs whole, and as much again to work.
    pub const WHOLE: Memory = Memory::Whole { factor: 1.0 };

    /// A stage that streams and keeps nothing per row.
    pub const STREAMS: Memory = Memory::Streams {
        per_row: 0.0,
        fixed: STREAM_FIXED,
    };

    /// About how many bytes a run of the stage needs, given its inputs'
    /// in-memory sizes and main input rows.
    pub fn need(self, input_bytes: u64, rows: usize) -> Need {
        match self {
            Memory::Whole { factor } => Need {
                bytes: input_bytes.saturating_add((input_bytes as f64 * factor) as u64),
                why: format!(
                    "it holds its inputs whole ({}) and works on them",
                    Bytes(input_bytes)
                ),
            },
            Memory::Streams { per_row, fixed } => {
                let state = (per_row * rows as f64) as u64;
                Need {
                    bytes: fixed.saturating_add(state),
                    why: if state > 0 {
                        format!(
                            "it reads its inputs in batches and keeps {} for their {rows} rows",
                            Bytes(state)
                        )
                    } else {
                        "it reads its inputs in batches".to_string()
                    },
                }
            }
        }
    }
}

/// What a stage needs, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// Bytes.
    pub bytes: u64,
    /// In words, for the error.
    pub why: String,
}

/// A number of bytes, shown as people read them (`1.5 GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= 1e9 {
            write!(f, "{:.1} GB", b / 1e9)
        } else if b >= 1e6 {
            write!(f, "{:.0} MB", b / 1e6)
        } else if b >= 1e3 {
            write!(f, "{:.0} kB", b / 1e3)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// Parses a budget: a positive size as [`crate::cache::parse_size`] reads
/// it (`2GB`, `512 MiB`, `1.5g`; powers of 1000 or, with `i`, of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    match crate::cache::parse_size(text)? {
        0 => Err(format!("`{text}` is not a positive size")),
        bytes => Ok(bytes),
    }
}

/// The budget when neither `--memory` nor `memory:` sets one: three
/// quarters of the physical memory (Linux `/proc/meminfo`), else 4 GB.
pub fn default_budget() -> u64 {
    physical_memory().map_or(4_000_000_000, |m| m / 4 * 3)
}

fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The shares of the budget set aside by the stages running.
#[derive(Debug)]
pub struct Ledger {
    budget: u64,
    held: Mutex<BTreeMap<String, u64>>,
    freed: Condvar,
}

/// A share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Share<'a> {
    ledger: &'a Ledger,
    who: String,
    /// Bytes set aside.
    pub bytes: u64,
}

impl Ledger {
    /// A ledger for a run's `budget`, nothing set aside.
    pub fn new(budget: u64) -> Ledger {
        Ledger {
            budget,
            held: Mutex::new(BTreeMap::new()),
            freed: Condvar::new(),
        }
    }

    /// Sets `bytes` (at most the budget) aside for `who`, once they fit
    /// beside the shares held; until then it waits, and calls `waiting`
    /// once with the shares it waits on. A share larger than the budget is
    /// cut to the budget: it then waits until nothing else runs.
    pub fn reserve(
        &self,
        who: &str,
        bytes: u64,
        waiting: impl FnOnce(&BTreeMap<String, u64>),
    ) -> Share<'_> {
        let bytes = bytes.min(self.budget);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut waiting = Some(waiting);
        while held.values().sum::<u64>().saturating_add(bytes) > self.budget {
            if let Some(f) = waiting.take() {
                f(&held);
            }
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held.entry(who.to_string()).or_default() += bytes;
        Share {
            ledger: self,
            who: who.to_string(),
            bytes,
        }
    }

    /// The bytes set aside now.
    pub fn reserved(&self) -> u64 {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.values().sum()
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut held = self.ledger.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = held.get_mut(&self.who) {
            *b = b.saturating_sub(self.bytes);
            if *b == 0 {
                held.remove(&self.who);
            }
        }
        drop(held);
        self.ledger.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_that_do_not_fit_together_wait_for_each_other() {
        let ledger = Ledger::new(100);
        let a = ledger.reserve("a", 60, |_| panic!("nothing to wait for"));
        assert_eq!(ledger.reserved(), 60);
        // 40 fit beside a's 60; a larger share is cut to the budget
        let b = ledger.reserve("b", 40, |_| panic!("it fits"));
        assert_eq!(ledger.reserved(), 100);
        drop(b);
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let c = s.spawn(|| {
                let c = ledger.reserve("c", 1_000, |on| {
                    assert_eq!(on.keys().collect::<Vec<_>>(), ["a"]);
                    waited.store(true, std::sync::atomic::Ordering::SeqCst);
                });
                c.bytes
            });
            while !waited.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::yield_now();
            }
            // c waits on a until a gives its share back
            assert_eq!(ledger.reserved(), 60);
            drop(a);
            assert_eq!(c.join().unwrap(), 100);
        });
        assert_eq!(ledger.reserved(), 0);
    }

    #[test]
    fn sizes_parse_in_both_kinds_of_unit_and_nonsense_is_refused() {
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("2 GX").unwrap_err().contains("unknown unit"));
        assert!(parse_size("0").is_err());
        assert_eq!(Bytes(1_500_000_000).to_string(), "1.5 GB");
        assert_eq!(Bytes(2_400_000).to_string(), "2 MB");
    }

    #[test]
    fn a_whole_stage_needs_its_inputs_and_a_streaming_one_its_state() {
        let whole = Memory::WHOLE.need(1_000, 10);
        assert_eq!(whole.bytes, 2_000);
        let streams = Memory::Streams {
            per_row: 0.25,
            fixed: 100,
        }
        .need(u64::MAX, 1_000);
        assert_eq!(streams.bytes, 350);
        assert!(streams.why.contains("1000 rows"), "{}", streams.why);
        assert!(default_budget() > 0);
    }
}
