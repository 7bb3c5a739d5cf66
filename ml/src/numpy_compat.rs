//! Bit-for-bit emulation of the few NumPy primitives whose rounding or tie
//! order decides cleanlab's results, so that [`crate::confident`] flags the
//! same rows as cleanlab, not merely "equally valid" ones.
//!
//! - [`pairwise_sum`]: `np.sum` / `np.mean` of `float64` (pairwise
//!   summation, blocks of 8 lanes). Thresholds and calibrated counts depend
//!   on its last bit.
//! - [`argsort`]: `np.argsort(x)` with the default `kind="quicksort"` on
//!   `float64`, as NumPy 2.x runs it on x86-64 CPUs with AVX-512 (the
//!   x86-simd-sort key-value quicksort: median-of-8 pivots, vectorised
//!   partitions, bitonic networks for up to 256 elements, libstdc++'s
//!   `std::sort` when the recursion budget runs out, and an early exit for
//!   sorted input). The *order of equal values* is what matters: cleanlab
//!   cuts "the n lowest" out of arrays full of ties (probabilities of
//!   exactly 0 or 1), and which tied rows are flagged is whatever that sort
//!   leaves first. On other CPUs NumPy itself orders ties differently.
//!
//! Checked against NumPy 2.4.6 on thousands of random tie-heavy arrays
//! (`ml/tests/numpy_argsort.rs` keeps a fingerprint of such a run).

/// `np.add.reduce` of a contiguous `float64` array: the identity 0 plus
/// NumPy's pairwise sum (8 accumulators, blocks of at most 128).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    0.0 + pairwise(a)
}

fn pairwise(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise(&a[..n2]) + pairwise(&a[n2..])
    }
}

/// [`pairwise_sum`] of `n` values that arrive one at a time, bit for bit:
/// NumPy's split points depend only on `n`, so the sum is built along the
/// same tree, holding one block of at most 128 values and one partial sum
/// per level (`O(log n)`).
#[derive(Debug, Clone)]
pub struct PairwiseSum {
    n: usize,
    pushed: usize,
    /// Open inner nodes, innermost last: the length of the right half still
    /// to come, and the left half's sum once it is known.
    open: Vec<(usize, Option<f64>)>,
    leaf: Vec<f64>,
    leaf_len: usize,
    total: Option<f64>,
}

impl PairwiseSum {
    /// A sum of exactly `n` values.
    pub fn new(n: usize) -> PairwiseSum {
        let mut s = PairwiseSum {
            n,
            pushed: 0,
            open: Vec::new(),
            leaf: Vec::with_capacity(128),
            leaf_len: 0,
            total: (n == 0).then_some(0.0),
        };
        s.descend(n);
        s
    }

    /// Opens the nodes down to the first block of a span of `len` values.
    fn descend(&mut self, mut len: usize) {
        while len > 128 {
            let mut n2 = len / 2;
            n2 -= n2 % 8;
            self.open.push((len - n2, None));
            len = n2;
        }
        self.leaf_len = len;
    }

    /// The next value; more than `n` is a bug of the caller.
    pub fn push(&mut self, x: f64) {
        assert!(
            self.pushed < self.n,
            "PairwiseSum: more than {} values",
            self.n
        );
        self.pushed += 1;
        self.leaf.push(x);
        if self.leaf.len() < self.leaf_len {
            return;
        }
        let mut s = pairwise(&self.leaf);
        self.leaf.clear();
        loop {
            match self.open.last_mut() {
                None => {
                    self.total = Some(s);
                    return;
                }
                Some((right, left @ None)) => {
                    *left = Some(s);
                    let right = *right;
                    self.descend(right);
                    return;
                }
                Some((_, Some(left))) => {
                    s += *left;
                    self.open.pop();
                }
            }
        }
    }

    /// The sum, once all `n` values are in.
    pub fn finish(&self) -> Option<f64> {
        self.total.map(|t| 0.0 + t)
    }
}

/// `np.mean` of a contiguous `float64` array (NaN for an empty one).
pub fn mean(a: &[f64]) -> f64 {
    pairwise_sum(a) / a.len() as f64
}

/// The permutation `np.argsort(values)` returns (see the module docs).
/// Values containing NaN are ordered with NaN last, ties by index (NumPy
/// uses `std::sort` there; the callers in this crate never pass NaN).
pub fn argsort(values: &[f64]) -> Vec<usize> {
    let n = values.len();
    let mut arg: Vec<usize> = (0..n).collect();
    if n <= 1 {
        return arg;
    }
    if values.iter().any(|v| v.is_nan()) {
        arg.sort_by(|&a, &b| {
            let (x, y) = (values[a], values[b]);
            x.is_nan()
                .cmp(&y.is_nan())
                .then(x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal))
                .then(a.cmp(&b))
        });
        return arg;
    }
    // early exit for already sorted input: the identity permutation
    if values.windows(2).all(|w| w[0] <= w[1]) {
        return arg;
    }
    let max_iters = 2 * n.ilog2() as usize;
    quicksort(values, &mut arg, 0, n - 1, max_iters);
    arg
}

/// `argsort_` of x86-simd-sort on `[left, right]` (inclusive).
fn quicksort(arr: &[f64], arg: &mut [usize], left: usize, right: usize, max_iters: usize) {
    if max_iters == 0 {
        std_sort(arr, &mut arg[left..=right]);
        return;
    }
    if right + 1 - left <= 256 {
        network_sort(arr, &mut arg[left..=right]);
        return;
    }
    let pivot = pivot_of(arr, arg, left, right);
    let (pivot_index, smallest, biggest) = partition_unrolled(arr, arg, left, right + 1, pivot);
    if pivot != smallest {
        quicksort(arr, arg, left, pivot_index - 1, max_iters - 1);
    }
    if pivot != biggest {
        quicksort(arr, arg, pivot_index, right, max_iters - 1);
    }
}

/// Median of 8 samples (`right` inclusive, at least 256 elements).
fn pivot_of(arr: &[f64], arg: &[usize], left: usize, right: usize) -> f64 {
    let size = (right - left) / 8;
    let mut s: [f64; 8] = std::array::from_fn(|j| arr[arg[left + (j + 1) * size]]);
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    s[4]
}

const LANES: usize = 8;

/// The vectorised partition of `[left, right)` around `pivot`: returns the
/// first index of the `>= pivot` part, and the smallest and biggest value seen.
fn partition_unrolled(
    arr: &[f64],
    arg: &mut [usize],
    left: usize,
    right: usize,
    pivot: f64,
) -> (usize, f64, f64) {
    let unroll = if right - left <= 8 * 4 * LANES { 1 } else { 4 };
    partition(arr, arg, left, right, pivot, unroll)
}

/// One register of 8 (index) lanes: the `< pivot` lanes are compress-stored
/// at `l_store`, the others at the end of `[.., right)`; returns how many
/// were `>= pivot`.
fn partition_vec(
    arr: &[f64],
    arg: &mut [usize],
    l_store: usize,
    right: usize,
    lanes: &[usize; LANES],
    pivot: f64,
    seen: &mut (f64, f64),
) -> usize {
    let mut lo = 0;
    let ge = lanes.iter().filter(|&&i| arr[i] >= pivot).count();
    let mut hi = right - ge;
    for &i in lanes {
        let v = arr[i];
        seen.0 = seen.0.min(v);
        seen.1 = seen.1.max(v);
        if v >= pivot {
            arg[hi] = i;
            hi += 1;
        } else {
            arg[l_store + lo] = i;
            lo += 1;
        }
    }
    ge
}

fn load(arg: &[usize], at: usize) -> [usize; LANES] {
    std::array::from_fn(|l| arg[at + l])
}

fn partition(
    arr: &[f64],
    arg: &mut [usize],
    mut left: usize,
    mut right: usize,
    pivot: f64,
    unroll: usize,
) -> (usize, f64, f64) {
    let width = unroll * LANES;
    let mut seen = (f64::INFINITY, f64::NEG_INFINITY);
    for _ in 0..(right - left) % width {
        let v = arr[arg[left]];
        seen.0 = seen.0.min(v);
        seen.1 = seen.1.max(v);
        if v >= pivot {
            right -= 1;
            arg.swap(left, right);
        } else {
            left += 1;
        }
    }
    if left == right {
        return (left, seen.0, seen.1);
    }
    if unroll == 1 && right - left == LANES {
        let lanes = load(arg, left);
        let ge = partition_vec(arr, arg, left, left + LANES, &lanes, pivot, &mut seen);
        return (left + LANES - ge, seen.0, seen.1);
    }
    // the first and last `width` values are partitioned at the end
    let first: Vec<[usize; LANES]> = (0..unroll).map(|ii| load(arg, left + LANES * ii)).collect();
    let last: Vec<[usize; LANES]> = (0..unroll)
        .map(|ii| load(arg, right - LANES * (unroll - ii)))
        .collect();
    // signed: it may step below 0 after the last store, as the C++
    // (unsigned, wrapping) version's does
    let mut r_store = right as isize - LANES as isize;
    let mut l_store = left;
    left += width;
    right -= width;
    while right != left {
        // load from the side with less room stored so far
        let base = if (r_store + LANES as isize) - (right as isize) < (left - l_store) as isize {
            right -= width;
            right
        } else {
            left += width;
            left - width
        };
        let chunk: Vec<[usize; LANES]> =
            (0..unroll).map(|ii| load(arg, base + LANES * ii)).collect();
        for lanes in &chunk {
            let end = (r_store + LANES as isize) as usize;
            let ge = partition_vec(arr, arg, l_store, end, lanes, pivot, &mut seen);
            l_store += LANES - ge;
            r_store -= ge as isize;
        }
    }
    for lanes in first.iter().chain(&last) {
        let end = (r_store + LANES as isize) as usize;
        let ge = partition_vec(arr, arg, l_store, end, lanes, pivot, &mut seen);
        l_store += LANES - ge;
        r_store -= ge as isize;
    }
    (l_store, seen.0, seen.1)
}

/// A register of keys and their indices.
#[derive(Clone, Copy)]
struct Reg {
    k: [f64; LANES],
    i: [usize; LANES],
}

impl Reg {
    fn permute(&self, f: impl Fn(usize) -> usize) -> Reg {
        Reg {
            k: std::array::from_fn(|l| self.k[f(l)]),
            i: std::array::from_fn(|l| self.i[f(l)]),
        }
    }

    fn reverse(&self) -> Reg {
        self.permute(|l| LANES - 1 - l)
    }

    /// `cmp_merge`: lanes whose bit is set in `mask` take the max, the
    /// others the min; a lane keeps its own index when its key is the result.
    fn cmp_merge(&self, other: &Reg, mask: u8) -> Reg {
        let mut out = *self;
        for l in 0..LANES {
            let (a, b) = (self.k[l], other.k[l]);
            let t = if mask >> l & 1 == 1 {
                a.max(b)
            } else {
                a.min(b)
            };
            out.k[l] = t;
            out.i[l] = if t == a { self.i[l] } else { other.i[l] };
        }
        out
    }

    fn merge_with(&self, f: impl Fn(usize) -> usize, mask: u8) -> Reg {
        self.cmp_merge(&self.permute(f), mask)
    }

    /// Sorts one register (`sort_zmm_64bit`).
    fn sort(&self) -> Reg {
        let swap1 = |l: usize| l ^ 1;
        let rev_halves = |l: usize| if l < 4 { 3 - l } else { 11 - l };
        let rev = |l: usize| LANES - 1 - l;
        let swap2 = |l: usize| l ^ 2;
        self.merge_with(swap1, 0xAA)
            .merge_with(rev_halves, 0xCC)
            .merge_with(swap1, 0xAA)
            .merge_with(rev, 0xF0)
            .merge_with(swap2, 0xCC)
            .merge_with(swap1, 0xAA)
    }

    /// Sorts a bitonic register (`bitonic_merge_zmm_64bit`).
    fn bitonic_merge(&self) -> Reg {
        self.merge_with(|l| l ^ 4, 0xF0)
            .merge_with(|l| l ^ 2, 0xCC)
            .merge_with(|l| l ^ 1, 0xAA)
    }
}

/// Compare-exchange of two registers lane by lane (`COEX`).
fn coex(regs: &mut [Reg], a: usize, b: usize) {
    let (x, y) = (regs[a], regs[b]);
    for l in 0..LANES {
        let (k1, k2) = (x.k[l], y.k[l]);
        let lo = k1.min(k2);
        let hi = k1.max(k2);
        let keep = lo == k1;
        regs[a].k[l] = lo;
        regs[b].k[l] = hi;
        regs[a].i[l] = if keep { x.i[l] } else { y.i[l] };
        regs[b].i[l] = if keep { y.i[l] } else { x.i[l] };
    }
}

fn bitonic_merge_n(regs: &mut [Reg]) {
    let n = regs.len();
    for i in 0..n / 2 {
        let j = n - i - 1;
        regs[j] = regs[j].reverse();
        coex(regs, i, j);
        regs[j] = regs[j].reverse();
    }
    let mut num = n / 2;
    while num >= 2 {
        for j in (0..n).step_by(num) {
            for i in 0..num / 2 {
                coex(regs, i + j, i + j + num / 2);
            }
        }
        num /= 2;
    }
    for r in regs.iter_mut() {
        *r = r.bitonic_merge();
    }
}

/// `argsort_n<.., 256>`: at most 256 indices sorted by a bitonic network
/// over registers padded with (+inf, max index).
fn network_sort(arr: &[f64], arg: &mut [usize]) {
    let n = arg.len();
    let mut num_vecs = 32;
    while num_vecs > 1 && n * 2 <= num_vecs * LANES {
        num_vecs /= 2;
    }
    let mut regs: Vec<Reg> = (0..num_vecs)
        .map(|v| {
            let mut r = Reg {
                k: [f64::INFINITY; LANES],
                i: [usize::MAX; LANES],
            };
            for l in 0..LANES {
                if let Some(&idx) = arg.get(v * LANES + l) {
                    r.i[l] = idx;
                    r.k[l] = arr[idx];
                }
            }
            r.sort()
        })
        .collect();
    let mut per = 2;
    while per <= num_vecs {
        for chunk in regs.chunks_mut(per) {
            bitonic_merge_n(chunk);
        }
        per *= 2;
    }
    for (p, slot) in arg.iter_mut().enumerate() {
        *slot = regs[p / LANES].i[p % LANES];
    }
}

/// libstdc++'s `std::sort` (introsort, threshold 16, median-of-3, heapsort
/// at the depth limit, final insertion sort) on indices by value.
fn std_sort(arr: &[f64], arg: &mut [usize]) {
    let n = arg.len();
    if n == 0 {
        return;
    }
    let lt = |a: usize, b: usize| arr[a] < arr[b];
    introsort_loop(arr, arg, 0, n, 2 * n.ilog2() as usize);
    if n > 16 {
        insertion_sort(arr, arg, 0, 16);
        for i in 16..n {
            unguarded_linear_insert(&lt, arg, i);
        }
    } else {
        insertion_sort(arr, arg, 0, n);
    }
}

fn introsort_loop(arr: &[f64], arg: &mut [usize], first: usize, mut last: usize, mut depth: usize) {
    let lt = |a: usize, b: usize| arr[a] < arr[b];
    while last - first > 16 {
        if depth == 0 {
            heapsort(&lt, &mut arg[first..last]);
            return;
        }
        depth -= 1;
        let mid = first + (last - first) / 2;
        // move the median of (first+1, mid, last-1) to first
        let (a, b, c) = (first + 1, mid, last - 1);
        let s = if lt(arg[a], arg[b]) {
            if lt(arg[b], arg[c]) {
                b
            } else if lt(arg[a], arg[c]) {
                c
            } else {
                a
            }
        } else if lt(arg[a], arg[c]) {
            a
        } else if lt(arg[b], arg[c]) {
            c
        } else {
            b
        };
        arg.swap(first, s);
        // unguarded partition of (first, last) around arg[first]
        let (mut f, mut l) = (first + 1, last);
        let cut = loop {
            while lt(arg[f], arg[first]) {
                f += 1;
            }
            l -= 1;
            while lt(arg[first], arg[l]) {
                l -= 1;
            }
            if f >= l {
                break f;
            }
            arg.swap(f, l);
            f += 1;
        };
        introsort_loop(arr, arg, cut, last, depth);
        last = cut;
    }
}

fn unguarded_linear_insert(lt: &impl Fn(usize, usize) -> bool, arg: &mut [usize], mut i: usize) {
    let val = arg[i];
    while lt(val, arg[i - 1]) {
        arg[i] = arg[i - 1];
        i -= 1;
    }
    arg[i] = val;
}

fn insertion_sort(arr: &[f64], arg: &mut [usize], first: usize, last: usize) {
    let lt = |a: usize, b: usize| arr[a] < arr[b];
    for i in first + 1..last {
        if lt(arg[i], arg[first]) {
            let val = arg[i];
            arg.copy_within(first..i, first + 1);
            arg[first] = val;
        } else {
            unguarded_linear_insert(&lt, arg, i);
        }
    }
}

fn adjust_heap(
    lt: &impl Fn(usize, usize) -> bool,
    h: &mut [usize],
    mut hole: usize,
    len: usize,
    value: usize,
) {
    let top = hole;
    let mut second = hole;
    while second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if lt(h[second], h[second - 1]) {
            second -= 1;
        }
        h[hole] = h[second];
        hole = second;
    }
    if len.is_multiple_of(2) && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        h[hole] = h[second - 1];
        hole = second - 1;
    }
    // push_heap
    while hole > top {
        let parent = (hole - 1) / 2;
        if !lt(h[parent], value) {
            break;
        }
        h[hole] = h[parent];
        hole = parent;
    }
    h[hole] = value;
}

fn heapsort(lt: &impl Fn(usize, usize) -> bool, h: &mut [usize]) {
    let len = h.len();
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            adjust_heap(lt, h, parent, len, h[parent]);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        let value = h[last];
        h[last] = h[0];
        adjust_heap(lt, h, 0, last, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sum_fed_one_value_at_a_time_is_numpys_bit_for_bit() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // values of very different sizes, so that the order of the
            // additions shows in the last bits
            (x >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((x % 9) as i32 - 4)
        };
        for n in (0..700).chain([1023, 1024, 1025, 100_003]) {
            let v: Vec<f64> = (0..n).map(|_| next()).collect();
            let mut s = PairwiseSum::new(n);
            for (i, &a) in v.iter().enumerate() {
                assert_eq!(s.finish(), None, "unfinished at {i} of {n}");
                s.push(a);
            }
            assert_eq!(
                s.finish().map(f64::to_bits),
                Some(pairwise_sum(&v).to_bits()),
                "n = {n}"
            );
        }
    }

    fn is_sorting_permutation(v: &[f64], p: &[usize]) -> bool {
        let mut seen = vec![false; v.len()];
        p.iter().all(|&i| !std::mem::replace(&mut seen[i], true))
            && p.windows(2).all(|w| v[w[0]] <= v[w[1]])
    }

    #[test]
    fn pairwise_sum_matches_numpy_rounding() {
        // 0.1 * 10 summed left to right is 0.9999999999999999; numpy's
        // 8-lane blocks give exactly 1.0
        assert_eq!(pairwise_sum(&[0.1; 10]), 1.0);
        let seq: f64 = [0.1f64; 10].iter().sum();
        assert_ne!(seq, 1.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 4.0]), 7.0 / 3.0);
    }

    #[test]
    fn argsort_sorts_every_path() {
        let mut s = 7u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        for n in [0, 1, 2, 7, 8, 9, 63, 64, 65, 255, 256, 257, 300, 1000, 5000] {
            for distinct in [1u64, 2, 3, 50, 1 << 30] {
                let v: Vec<f64> = (0..n).map(|_| (next() % distinct) as f64).collect();
                let p = argsort(&v);
                assert!(is_sorting_permutation(&v, &p), "n={n} distinct={distinct}");
            }
        }
        // NaN goes last
        let p = argsort(&[f64::NAN, 1.0, 0.0]);
        assert_eq!(p, vec![2, 1, 0]);
    }

    #[test]
    fn heapsort_and_introsort_sort() {
        let v: Vec<f64> = (0..500).map(|i| ((i * 7919) % 13) as f64).collect();
        let mut a: Vec<usize> = (0..500).collect();
        std_sort(&v, &mut a);
        assert!(is_sorting_permutation(&v, &a));
        let lt = |x: usize, y: usize| v[x] < v[y];
        let mut h: Vec<usize> = (0..500).collect();
        heapsort(&lt, &mut h);
        assert!(is_sorting_permutation(&v, &h));
    }
}
