//! Mergeable sketches for one pass over record batches: a quantile sketch and
//! a distinct-count sketch. Both are built per chunk of rows in parallel and
//! merged; both are exact on small inputs and deterministic (no random coin:
//! same data, same chunking, same result).
//!
//! Why not a crate: the DDSketch crates give value-relative error, which is
//! useless for offset data (years, timestamps: 0.5% of 2020 is 10 years), and
//! the t-digest crates expose no CDF, which histograms and the KS / PSI drift
//! tests need. A merge-and-reduce compactor (the deterministic core of KLL)
//! is rank-accurate whatever the scale and has both quantiles and a CDF.

/// Items a level holds before it is compacted into the next one.
const LEVEL_CAPACITY: usize = 512;

/// A quantile sketch with rank error independent of the values' scale.
///
/// Level `h` holds values of weight `2^h`. When a level outgrows
/// [`LEVEL_CAPACITY`] it is sorted and every other item (alternating the
/// offset per level, so errors cancel) moves up with double weight. Exact
/// while fewer than `LEVEL_CAPACITY` values have been added. Rank error after
/// `n` values is at most about `log2(n / capacity) / capacity` of `n`
/// (about 1.5% of n at n = 10M); in practice far smaller.
#[derive(Debug, Clone, Default)]
pub struct QuantileSketch {
    levels: Vec<Vec<f64>>,
    toggles: Vec<bool>,
    count: u64,
}

impl QuantileSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        QuantileSketch::default()
    }

    /// Values added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds a finite value (callers count NaN and infinities themselves).
    pub fn add(&mut self, x: f64) {
        if self.levels.is_empty() {
            self.levels.push(Vec::with_capacity(LEVEL_CAPACITY));
            self.toggles.push(false);
        }
        self.levels[0].push(x);
        self.count += 1;
        if self.levels[0].len() >= 2 * LEVEL_CAPACITY {
            self.compact_from(0);
        }
    }

    /// A sketch of `sorted` (finite values, ascending), built in one pass
    /// instead of a compaction per [`LEVEL_CAPACITY`] values: the values are
    /// cut into consecutive blocks of `2^h` (the smallest `h` that leaves
    /// fewer than twice the capacity), and each block's middle value stands
    /// for it with weight `2^h`; the values left over form blocks of the
    /// binary digits of their count. The weights sum to the count exactly,
    /// and the rank of any value is off by less than one block (`2^h`), at
    /// most what a stream of [`QuantileSketch::add`] would give. Exact (every
    /// value kept) below twice the capacity.
    pub fn from_sorted(sorted: &[f64]) -> Self {
        let n = sorted.len();
        let mut h = 0;
        while (n >> h) >= 2 * LEVEL_CAPACITY {
            h += 1;
        }
        let mut levels = vec![Vec::new(); h + 1];
        let block = 1usize << h;
        let full = (n >> h) << h;
        levels[h] = sorted[..full]
            .chunks_exact(block)
            .map(|b| b[block / 2])
            .collect();
        let mut at = full;
        for l in (0..h).rev() {
            let size = 1usize << l;
            if (n - full) & size != 0 {
                levels[l].push(sorted[at + size / 2]);
                at += size;
            }
        }
        QuantileSketch {
            toggles: vec![false; levels.len()],
            levels,
            count: n as u64,
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &QuantileSketch) {
        while self.levels.len() < other.levels.len() {
            self.levels.push(Vec::new());
            self.toggles.push(false);
        }
        for (mine, theirs) in self.levels.iter_mut().zip(&other.levels) {
            mine.extend_from_slice(theirs);
        }
        self.count += other.count;
        for h in 0..self.levels.len() {
            if self.levels[h].len() >= 2 * LEVEL_CAPACITY {
                self.compact_from(h);
            }
        }
    }

    fn compact_from(&mut self, mut h: usize) {
        while h < self.levels.len() && self.levels[h].len() >= 2 * LEVEL_CAPACITY {
            let mut items = std::mem::take(&mut self.levels[h]);
            items.sort_unstable_by(f64::total_cmp);
            // An odd item out stays at this level, keeping the weight exact.
            let keep = if items.len() % 2 == 1 {
                items.pop()
            } else {
                None
            };
            let offset = usize::from(self.toggles[h]);
            self.toggles[h] = !self.toggles[h];
            let promoted: Vec<f64> = items.iter().skip(offset).step_by(2).copied().collect();
            self.levels[h].extend(keep);
            if h + 1 == self.levels.len() {
                self.levels.push(Vec::new());
                self.toggles.push(false);
            }
            self.levels[h + 1].extend(promoted);
            h += 1;
        }
    }

    /// Every retained (value, weight), sorted by value.
    fn weighted(&self) -> Vec<(f64, u64)> {
        let mut all: Vec<(f64, u64)> = self
            .levels
            .iter()
            .enumerate()
            .flat_map(|(h, items)| items.iter().map(move |&x| (x, 1u64 << h)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        all
    }

    /// The `q`-quantiles (`q` in [0, 1]) by the "lower" rule: the smallest
    /// value whose cumulative weight reaches `q · (n - 1) + 1`. `None` when
    /// empty.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let all = self.weighted();
        let total: u64 = all.iter().map(|p| p.1).sum();
        qs.iter()
            .map(|&q| {
                if total == 0 {
                    return None;
                }
                let target = q.clamp(0.0, 1.0) * (total - 1) as f64 + 1.0;
                let mut acc = 0u64;
                for &(x, w) in &all {
                    acc += w;
                    if acc as f64 >= target - 1e-9 {
                        return Some(x);
                    }
                }
                all.last().map(|p| p.0)
            })
            .collect()
    }

    /// Fraction of values `<= x` at each of `xs` (sorted or not).
    pub fn cdf(&self, xs: &[f64]) -> Vec<f64> {
        let all = self.weighted();
        let total: u64 = all.iter().map(|p| p.1).sum();
        let mut cum = Vec::with_capacity(all.len());
        let mut acc = 0u64;
        for &(_, w) in &all {
            acc += w;
            cum.push(acc);
        }
        xs.iter()
            .map(|&x| {
                if total == 0 {
                    return 0.0;
                }
                let idx = all.partition_point(|p| p.0 <= x);
                if idx == 0 {
                    0.0
                } else {
                    cum[idx - 1] as f64 / total as f64
                }
            })
            .collect()
    }

    /// Counts in the bins `[edges[i], edges[i+1])` (the last bin closed),
    /// scaled so they sum to the number of values added.
    pub fn histogram(&self, edges: &[f64]) -> Vec<u64> {
        if edges.len() < 2 {
            return Vec::new();
        }
        let all = self.weighted();
        let mut counts = vec![0u64; edges.len() - 1];
        let last = counts.len() - 1;
        for (x, w) in all {
            let bin = edges[1..].partition_point(|&e| e <= x).min(last);
            if x >= edges[0] {
                counts[bin] += w;
            }
        }
        counts
    }
}

/// Hashes kept by the distinct-count sketch; below this many distinct values
/// the count is exact.
const KMV_CAPACITY: usize = 4096;

/// A distinct-count sketch ("k minimum values"): keeps the smallest hashes.
/// Exact below [`KMV_CAPACITY`] distinct values; beyond, the estimate
/// `(k - 1) / (k-th smallest hash as a fraction of 2^64)` has a relative
/// standard error of about `1 / sqrt(k)` = 1.6%.
#[derive(Debug, Clone, Default)]
pub struct DistinctSketch {
    /// The smallest distinct hashes seen, ascending, at most `KMV_CAPACITY`.
    hashes: Vec<u64>,
}

impl DistinctSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        DistinctSketch::default()
    }

    /// A sketch of a batch of value hashes (use a well-mixed hash). Bulk
    /// building is what the profiler does per chunk: one sort instead of an
    /// ordered-set insert per value.
    pub fn from_hashes(hashes: Vec<u64>) -> Self {
        DistinctSketch::from_hashes_below(hashes, u64::MAX)
    }

    /// [`DistinctSketch::from_hashes`] of the hashes at most `bound` (the
    /// [`DistinctSketch::bound`] of the sketch this one will merge into).
    pub fn from_hashes_below(mut hashes: Vec<u64>, bound: u64) -> Self {
        hashes.retain(|&h| h <= bound);
        hashes.sort_unstable();
        hashes.dedup();
        hashes.truncate(KMV_CAPACITY);
        DistinctSketch { hashes }
    }

    /// A sketch of hashes known to be distinct (hashes of distinct values
    /// through a bijective mix such as [`mix64`]): the smallest are selected,
    /// and only those sorted.
    pub fn from_distinct_hashes(hashes: Vec<u64>) -> Self {
        DistinctSketch::from_distinct_hashes_below(hashes, u64::MAX)
    }

    /// [`DistinctSketch::from_distinct_hashes`] of the hashes at most `bound`.
    pub fn from_distinct_hashes_below(mut hashes: Vec<u64>, bound: u64) -> Self {
        hashes.retain(|&h| h <= bound);
        if hashes.len() > KMV_CAPACITY {
            hashes.select_nth_unstable(KMV_CAPACITY);
            hashes.truncate(KMV_CAPACITY);
        }
        hashes.sort_unstable();
        DistinctSketch { hashes }
    }

    /// A hash that no hash this sketch will ever keep exceeds, however much
    /// is merged into it: its largest when it is full, else `u64::MAX`.
    /// Dropping larger hashes before building a sketch that is merged into
    /// this one changes nothing.
    pub fn bound(&self) -> u64 {
        match self.hashes.len() {
            KMV_CAPACITY => self.hashes[KMV_CAPACITY - 1],
            _ => u64::MAX,
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &DistinctSketch) {
        let mut merged = Vec::with_capacity(self.hashes.len() + other.hashes.len());
        let (mut a, mut b) = (
            self.hashes.iter().peekable(),
            other.hashes.iter().peekable(),
        );
        while merged.len() < KMV_CAPACITY {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(&&x), Some(&&y)) if x > y => b.next(),
                (Some(_), Some(_)) => {
                    b.next();
                    a.next()
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            match next {
                Some(&h) => merged.push(h),
                None => break,
            }
        }
        self.hashes = merged;
    }

    /// Whether the count is exact.
    pub fn is_exact(&self) -> bool {
        self.hashes.len() < KMV_CAPACITY
    }

    /// The (estimated) number of distinct values.
    pub fn estimate(&self) -> u64 {
        if self.is_exact() {
            return self.hashes.len() as u64;
        }
        let kth = *self.hashes.last().expect("full sketch") as f64 / u64::MAX as f64;
        ((KMV_CAPACITY - 1) as f64 / kth).round() as u64
    }
}

/// A fast, well-mixed 64-bit hash of a 64-bit word (SplitMix64's finaliser).
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit hash of bytes (FNV-1a, then mixed).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let target = q * (sorted.len() - 1) as f64 + 1.0;
        sorted[(target.ceil() as usize).max(1) - 1]
    }

    #[test]
    fn small_inputs_are_exact() {
        let mut s = QuantileSketch::new();
        for x in [5.0, 1.0, 3.0, 2.0, 4.0] {
            s.add(x);
        }
        assert_eq!(
            s.quantiles(&[0.0, 0.5, 1.0]),
            vec![Some(1.0), Some(3.0), Some(5.0)]
        );
        assert_eq!(s.cdf(&[0.0, 2.0, 2.5, 5.0]), vec![0.0, 0.4, 0.4, 1.0]);
        assert_eq!(s.histogram(&[1.0, 3.0, 5.0]), vec![2, 3]);
        assert_eq!(QuantileSketch::new().quantiles(&[0.5]), vec![None]);
    }

    #[test]
    fn a_sorted_chunk_keeps_its_count_and_every_rank_within_one_block() {
        for n in [0usize, 1, 1023, 2047, 2048, 16_384, 16_385, 50_001] {
            let sorted: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 100.0).collect();
            let s = QuantileSketch::from_sorted(&sorted);
            assert_eq!(s.count(), n as u64);
            let total: u64 = s.weighted().iter().map(|p| p.1).sum();
            assert_eq!(total, n as u64, "n = {n}");
            let block = (n / (2 * LEVEL_CAPACITY)).next_power_of_two().max(1) as f64;
            // Below twice the capacity every value is kept: exact.
            if n < 2 * LEVEL_CAPACITY {
                assert_eq!(s.weighted().len(), n);
            }
            let probes: Vec<f64> = (0..n).step_by(97).map(|i| sorted[i]).collect();
            for (x, got) in probes.iter().zip(s.cdf(&probes)) {
                let exact = sorted.partition_point(|v| v <= x) as f64;
                assert!(
                    (got * n as f64 - exact).abs() <= block,
                    "n = {n}, x = {x}: {} vs {exact}",
                    got * n as f64
                );
            }
        }
    }

    #[test]
    fn distinct_hashes_select_what_a_full_sort_keeps() {
        let hashes: Vec<u64> = (0..20_000u64).map(mix64).collect();
        let a = DistinctSketch::from_distinct_hashes(hashes.clone());
        let b = DistinctSketch::from_hashes(hashes);
        assert_eq!(a.hashes, b.hashes);
        let few: Vec<u64> = (0..10u64).map(mix64).collect();
        assert_eq!(
            DistinctSketch::from_distinct_hashes(few.clone()).hashes,
            DistinctSketch::from_hashes(few).hashes
        );
    }

    #[test]
    fn rank_error_is_small_on_a_large_offset_stream() {
        // Years: a relative-error sketch would be off by a decade here.
        let n = 200_000;
        let values: Vec<f64> = (0..n)
            .map(|i| 1990.0 + (mix64(i) % 30_000) as f64 / 1000.0)
            .collect();
        let mut chunks: Vec<QuantileSketch> = values
            .chunks(7_000)
            .map(|c| {
                let mut s = QuantileSketch::new();
                c.iter().for_each(|&x| s.add(x));
                s
            })
            .collect();
        let mut s = chunks.remove(0);
        for c in &chunks {
            s.merge(c);
        }
        assert_eq!(s.count(), n);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
            let got = s.quantiles(&[q])[0].unwrap();
            let rank = sorted.partition_point(|&x| x <= got) as f64 / n as f64;
            assert!((rank - q).abs() < 0.01, "q {q}: got {got} at rank {rank}");
        }
        let hist = s.histogram(&[1990.0, 2000.0, 2010.0, 2020.0]);
        assert_eq!(hist.iter().sum::<u64>(), n);
        for h in hist {
            assert!((h as f64 / n as f64 - 1.0 / 3.0).abs() < 0.01);
        }
    }

    proptest! {
        #[test]
        fn weights_always_sum_to_the_count(xs in proptest::collection::vec(-1e6f64..1e6, 0..5000), split in 0usize..5000) {
            let split = split.min(xs.len());
            let (a, b) = xs.split_at(split);
            let mut sa = QuantileSketch::new();
            a.iter().for_each(|&x| sa.add(x));
            let mut sb = QuantileSketch::new();
            b.iter().for_each(|&x| sb.add(x));
            sa.merge(&sb);
            prop_assert_eq!(sa.count(), xs.len() as u64);
            let total: u64 = sa.weighted().iter().map(|p| p.1).sum();
            prop_assert_eq!(total, xs.len() as u64);
            if !xs.is_empty() {
                let mut sorted = xs.clone();
                sorted.sort_by(f64::total_cmp);
                if xs.len() < LEVEL_CAPACITY {
                    prop_assert_eq!(sa.quantiles(&[0.0])[0], Some(sorted[0]));
                    prop_assert_eq!(sa.quantiles(&[0.5])[0], Some(exact_quantile(&sorted, 0.5)));
                }
            }
        }
    }

    #[test]
    fn distinct_counts_are_exact_when_small_and_close_when_large() {
        let d = DistinctSketch::from_hashes((0..1000u64).map(|i| mix64(i % 300)).collect());
        assert!(d.is_exact());
        assert_eq!(d.estimate(), 300);
        let mut parts: Vec<DistinctSketch> = (0..4)
            .map(|p| {
                DistinctSketch::from_hashes(
                    (0..100_000u64).map(|i| mix64(p * 50_000 + i)).collect(),
                )
            })
            .collect();
        let mut all = parts.remove(0);
        for p in &parts {
            all.merge(p);
        }
        // 250,000 distinct values (the parts overlap by half).
        let est = all.estimate() as f64;
        assert!(!all.is_exact());
        assert!((est / 250_000.0 - 1.0).abs() < 0.06, "estimate {est}");
        // Repeated values: 5000 distinct values, each 4 times, is 5000.
        let repeated =
            DistinctSketch::from_hashes((0..20_000u64).map(|i| mix64(i % 5000)).collect());
        assert!(!repeated.is_exact());
        let est = repeated.estimate() as f64;
        assert!((est / 5000.0 - 1.0).abs() < 0.06, "estimate {est}");
    }
}
