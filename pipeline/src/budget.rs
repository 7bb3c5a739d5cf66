//! The run's memory budget: how much a stage may hold, checked before it
//! starts, so that a stage too large for the machine fails with its name,
//! what it needs and the budget, never by an out-of-memory kill.
//!
//! The budget is `--memory` on the command line, else `memory:` in the
//! pipeline file, else three quarters of the machine's physical memory.
//! What a stage needs follows from how it reads ([`Memory`]): a stage that
//! holds its inputs whole needs them (as loaded) plus its working memory; a
//! stage that streams needs a fixed amount plus any per-row state.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
