//! Rolling windows in O(1) per point with no numerical drift, and a sorted window for order statistics.
//!
//! # Why blocks instead of add/remove
//!
//! Incremental add/remove sums drift (a removed spike leaves rounding residue in every later
//! window) and make each value depend on the whole history, so a restart from a carried tail
//! would not reproduce a one-call run bit for bit. Here every segment is cut into blocks of `n`
//! points aligned on the position inside the segment (0, n, 2n, ...). A window of n points ending
//! at t is either one whole block, or a suffix of the previous block merged with a prefix of the
//! current one. Prefix aggregates are built forward, suffix aggregates backward, each over at most
//! n points, so
//! - every value depends only on the window's points and on the block alignment (no drift, and a
//!   continuation that knows the segment position reproduces a one-call run exactly);
//! - the value at t only ever reads points at or before t (the previous block is complete);
//! - each point is pushed twice and each window is one merge: O(1) amortised.
//!
//! A window shorter than n (segment start) is a prefix of the segment's first block.
//! Missing points are NaN and are skipped, as pandas' `rolling` skips NaN: a window's count is its
//! number of non-NaN points.

/// A run of consecutive points, built by pushing them in order (forward or backward).
pub(crate) trait WindowAgg: Copy {
    type Item: Copy;
    type Window;
    /// Read-only data shared by all windows (e.g. a reciprocal table).
    type Context;
    const EMPTY: Self;
    fn push(&mut self, item: Self::Item);
    /// The window made of this run alone.
    fn single(&self, ctx: &Self::Context) -> Self::Window;
    /// The window made of `earlier` (a suffix of the previous block) followed by `later`.
    fn merge(ctx: &Self::Context, earlier: &Self, later: &Self) -> Self::Window;
}

/// Maximal runs of consecutive bars in one segment, in working-array coordinates.
#[derive(Debug, Clone)]
pub(crate) struct Segments {
    /// Half-open `(start, end)` ranges, in order, covering the working arrays.
    pub ranges: Vec<(usize, usize)>,
    /// Position inside its segment of the first working point (non-zero when continuing a carry).
    pub first_origin: u64,
}

impl Segments {
    /// `(start, end, origin)` of each segment, origin being the in-segment position of `start`.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, u64)> + '_ {
        self.ranges
            .iter()
            .enumerate()
            .map(|(k, &(s, e))| (s, e, if k == 0 { self.first_origin } else { 0 }))
    }
}

/// Calls `emit(t, window)` for every point t with the aggregate of the (at most) `n` points of t's
/// segment ending at t. `item(i)` reads point i.
pub(crate) fn rolling<A: WindowAgg>(
    segments: &Segments,
    n: usize,
    ctx: &A::Context,
    item: impl Fn(usize) -> A::Item,
    mut emit: impl FnMut(usize, A::Window),
) {
    debug_assert!(n >= 1);
    let mut suffix = vec![A::EMPTY; n];
    for (start, end, origin) in segments.iter() {
        // A segment continued from a carry starts mid-block: its first block is missing its head.
        // Windows ending in that block lack points before the carried tail, but those are exactly
        // the tail's own outputs, which the caller discards.
        let mut offset = (origin % n as u64) as usize;
        let mut block_start = start;
        let mut have_previous_block = false;
        while block_start < end {
            let block_end = end.min(block_start + (n - offset));
            let mut prefix = A::EMPTY;
            for (i, off) in (block_start..block_end).zip(offset..) {
                prefix.push(item(i));
                let window = if off == n - 1 || !have_previous_block {
                    prefix.single(ctx)
                } else {
                    A::merge(ctx, &suffix[off + 1], &prefix)
                };
                emit(i, window);
            }
            if block_end < end {
                let mut acc = A::EMPTY;
                for i in (block_start..block_end).rev() {
                    acc.push(item(i));
                    suffix[offset + (i - block_start)] = acc;
                }
                have_previous_block = true;
            }
            block_start = block_end;
            offset = 0;
        }
    }
}

/// Count and sum of the non-NaN points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SumAgg {
    count: u32,
    sum: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SumWindow {
    pub count: u32,
    pub sum: f64,
}

impl WindowAgg for SumAgg {
    type Item = f64;
    type Window = SumWindow;
    type Context = ();
    const EMPTY: Self = SumAgg { count: 0, sum: 0.0 };

    #[inline(always)]
    fn push(&mut self, x: f64) {
        if !x.is_nan() {
            self.count += 1;
            self.sum += x;
        }
    }

    #[inline(always)]
    fn single(&self, _: &()) -> SumWindow {
        SumWindow {
            count: self.count,
            sum: self.sum,
        }
    }

    #[inline(always)]
    fn merge(_: &(), earlier: &Self, later: &Self) -> SumWindow {
        SumWindow {
            count: earlier.count + later.count,
            sum: earlier.sum + later.sum,
        }
    }
}

/// Sums of two columns over the points where both are non-NaN (VWAP numerator and denominator
/// must cover the same bars).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairSumAgg {
    count: u32,
    a: f64,
    b: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PairSumWindow {
    pub count: u32,
    pub a: f64,
    pub b: f64,
}

impl WindowAgg for PairSumAgg {
    type Item = (f64, f64);
    type Window = PairSumWindow;
    type Context = ();
    const EMPTY: Self = PairSumAgg {
        count: 0,
        a: 0.0,
        b: 0.0,
    };

    #[inline(always)]
    fn push(&mut self, (a, b): (f64, f64)) {
        if !a.is_nan() && !b.is_nan() {
            self.count += 1;
            self.a += a;
            self.b += b;
        }
    }

    #[inline(always)]
    fn single(&self, _: &()) -> PairSumWindow {
        PairSumWindow {
            count: self.count,
            a: self.a,
            b: self.b,
        }
    }

    #[inline(always)]
    fn merge(_: &(), earlier: &Self, later: &Self) -> PairSumWindow {
        PairSumWindow {
            count: earlier.count + later.count,
            a: earlier.a + later.a,
            b: earlier.b + later.b,
        }
    }
}

/// First and second moments of the non-NaN points, as sums of deviations from an anchor (the
/// first point pushed), plus min and max.
///
/// Deviations from a point of the run keep `s2 - s1²/k` well conditioned (relative error about
/// k·ε, since no point is further than √(M2) from the mean); two runs merge with Chan et al.'s
/// pairwise update. min == max detects a flat window exactly, whose M2 is then exactly 0 instead
/// of rounding noise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MomentAgg {
    count: u32,
    anchor: f64,
    s1: f64,
    s2: f64,
    min: f64,
    max: f64,
}

/// Count, mean, sum of squared deviations from the mean (M2) and sample variance of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MomentWindow {
    pub count: u32,
    pub mean: f64,
    pub m2: f64,
    /// M2 / (count − 1), NaN below two points.
    pub variance: f64,
}

impl MomentWindow {
    pub const EMPTY: Self = MomentWindow {
        count: 0,
        mean: f64::NAN,
        m2: f64::NAN,
        variance: f64::NAN,
    };
}

/// 1/k for every count a window can hold, so the hot loop multiplies instead of dividing.
/// `inv[0]` is 0 and `inv[1]` is used as 1/(2 − 1); a variance needs two points, so the
/// count − 1 lookup of a one-point window is replaced by NaN.
pub(crate) struct Reciprocals(Vec<f64>);

impl Reciprocals {
    pub fn up_to(n: usize) -> Self {
        Reciprocals(
            (0..=n)
                .map(|k| if k == 0 { 0.0 } else { 1.0 / k as f64 })
                .collect(),
        )
    }

    #[inline(always)]
    fn of(&self, k: u32) -> f64 {
        self.0[k as usize]
    }

    #[inline(always)]
    fn variance(&self, count: u32, m2: f64) -> f64 {
        if count >= 2 {
            m2 * self.of(count - 1)
        } else {
            f64::NAN
        }
    }
}

impl MomentAgg {
    #[inline(always)]
    fn mean_offset_and_m2(&self, inv: &Reciprocals) -> (f64, f64) {
        let offset = self.s1 * inv.of(self.count);
        (offset, self.s2 - self.s1 * offset)
    }
}

impl WindowAgg for MomentAgg {
    type Item = f64;
    type Window = MomentWindow;
    type Context = Reciprocals;
    const EMPTY: Self = MomentAgg {
        count: 0,
        anchor: 0.0,
        s1: 0.0,
        s2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    #[inline(always)]
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        if self.count == 0 {
            self.anchor = x;
        }
        let d = x - self.anchor;
        self.count += 1;
        self.s1 += d;
        self.s2 += d * d;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    #[inline(always)]
    fn single(&self, inv: &Reciprocals) -> MomentWindow {
        let count = self.count;
        if count == 0 {
            return MomentWindow::EMPTY;
        }
        if self.min == self.max {
            return MomentWindow {
                count,
                mean: self.min,
                m2: 0.0,
                variance: inv.variance(count, 0.0),
            };
        }
        let (offset, m2) = self.mean_offset_and_m2(inv);
        let m2 = m2.max(0.0);
        MomentWindow {
            count,
            mean: self.anchor + offset,
            m2,
            variance: inv.variance(count, m2),
        }
    }

    #[inline(always)]
    fn merge(inv: &Reciprocals, a: &Self, b: &Self) -> MomentWindow {
        if a.count == 0 {
            return b.single(inv);
        }
        if b.count == 0 {
            return a.single(inv);
        }
        let count = a.count + b.count;
        let (min, max) = (a.min.min(b.min), a.max.max(b.max));
        if min == max {
            return MomentWindow {
                count,
                mean: min,
                m2: 0.0,
                variance: inv.variance(count, 0.0),
            };
        }
        let (ka, kb, inv_k) = (a.count as f64, b.count as f64, inv.of(count));
        let (offset_a, m2_a) = a.mean_offset_and_m2(inv);
        let (offset_b, m2_b) = b.mean_offset_and_m2(inv);
        // Difference of the two means without forming either mean: anchors are data points, so
        // their difference is exact or nearly so.
        let delta = (b.anchor - a.anchor) + (offset_b - offset_a);
        let m2 = (m2_a + m2_b + delta * delta * (ka * kb * inv_k)).max(0.0);
        let mean = (a.anchor + offset_a) + delta * (kb * inv_k);
        MomentWindow {
            count,
            mean,
            m2,
            variance: inv.variance(count, m2),
        }
    }
}

/// Sums of one block's points from each offset to the block's end, as deviations from the block's last
/// point (the anchor). Index `k` covers offsets `k..n`; index `n` is the empty run.
struct AnchoredSuffix {
    anchor: f64,
    s1: Vec<f64>,
    s2: Vec<f64>,
    /// The suffix from offset `k` is NaN-free (and has all its points) exactly when `k >= clean_from`.
    clean_from: usize,
}

impl AnchoredSuffix {
    fn new(n: usize) -> Self {
        AnchoredSuffix {
            anchor: f64::NAN,
            s1: vec![0.0; n + 1],
            s2: vec![0.0; n + 1],
            clean_from: n,
        }
    }

    fn is_clean(&self, offset: usize) -> bool {
        offset >= self.clean_from
    }

    /// Fills the suffixes of a block whose offsets `first_offset..n` sit at `x[start..]`; offsets below
    /// `first_offset` (a segment continued mid-block) have no points and count as not clean.
    fn fill(&mut self, x: &[f64], start: usize, first_offset: usize, n: usize) {
        let anchor = x[start + (n - 1 - first_offset)];
        self.anchor = anchor;
        self.clean_from = first_offset;
        let (mut s1, mut s2) = (0.0, 0.0);
        for off in (first_offset..n).rev() {
            let v = x[start + (off - first_offset)];
            let d = v - anchor;
            s1 += d;
            s2 += d * d;
            self.s1[off] = s1;
            self.s2[off] = s2;
            if v.is_nan() && self.clean_from <= off {
                self.clean_from = off + 1;
            }
        }
    }
}

/// Sample variance of `n` NaN-free points from their sums of deviations from one of them. One formula
/// for every loop, so a value never depends on which loop computed it.
///
/// A flat window gives exactly 0 with no special case: the anchor is one of its points, so every
/// deviation, both sums and the result are exactly 0.
#[derive(Clone, Copy)]
struct AnchoredVariance {
    inv_n: f64,
    inv_n_minus_1: f64,
}

impl AnchoredVariance {
    #[inline(always)]
    fn of(self, s1: f64, s2: f64) -> f64 {
        let offset = s1 * self.inv_n;
        (s2 - s1 * offset).max(0.0) * self.inv_n_minus_1
    }
}

fn has_nan(values: &[f64]) -> bool {
    // A fold rather than `any`: no early exit, so it compiles to a vector compare.
    values.iter().fold(false, |seen, v| seen | v.is_nan())
}

/// Rolling sample variance: the values `rolling::<MomentAgg>` gives (same blocks, windows and NaN rule,
/// NaN below `min_count` points), computed faster where a window holds no NaN. That is the vol_cc hot path.
/// `finish` maps each variance on its way out (`f64::sqrt` for a standard deviation).
///
/// A window that straddles two blocks is the previous block's suffix plus the current block's prefix.
/// Both are summed as plain deviations from one anchor, the previous block's last point, so a window
/// costs two additions and the variance formula instead of MomentAgg's Chan merge of two anchored runs.
/// - The anchor is a point of every such window, so MomentAgg's conditioning argument still holds.
/// - Each value still depends only on its window's points and the block alignment, so a carried
///   continuation stays bit-exact.
/// - Windows with a NaN, and the first block of a segment, take the MomentAgg path.
pub(crate) fn rolling_variance(
    segments: &Segments,
    n: usize,
    min_count: u32,
    inv: &Reciprocals,
    x: &[f64],
    out: &mut [f64],
    finish: impl Fn(f64) -> f64 + Copy,
) {
    let emit = |t: usize, w: MomentWindow, out: &mut [f64]| {
        out[t] = finish(if w.count >= min_count {
            w.variance
        } else {
            f64::NAN
        });
    };
    if n < 2 || (n as u32) < min_count {
        rolling::<MomentAgg>(segments, n, inv, |i| x[i], |t, w| emit(t, w, out));
        return;
    }
    let variance = AnchoredVariance {
        inv_n: inv.of(n as u32),
        inv_n_minus_1: inv.of(n as u32 - 1),
    };
    let mut previous = AnchoredSuffix::new(n);
    let mut current = AnchoredSuffix::new(n);
    let mut generic_suffix = vec![MomentAgg::EMPTY; n + 1];
    let mut clean_blocks = CleanBlocks {
        variance,
        window_s2: vec![0.0; n],
        wide_vectors: has_wide_vectors(),
    };
    for (start, end, origin) in segments.iter() {
        let first_offset = (origin % n as u64) as usize;
        // The segment's first block: windows are prefixes, counts grow from 1.
        let first_end = end.min(start + (n - first_offset));
        let mut prefix = MomentAgg::EMPTY;
        for (i, &v) in x.iter().enumerate().take(first_end).skip(start) {
            prefix.push(v);
            emit(i, prefix.single(inv), out);
        }
        if first_end == end {
            continue;
        }
        previous.fill(x, start, first_offset, n);
        let (mut prev_start, mut prev_first_offset) = (start, first_offset);
        let mut block_start = first_end;
        while block_start < end {
            let block_end = end.min(block_start + n);
            let block = &x[block_start..block_end];
            if block.len() == n && previous.is_clean(1) && !has_nan(block) {
                // The common case: a whole NaN-free block after a NaN-free suffix.
                clean_blocks.run(
                    &previous,
                    &mut current,
                    block,
                    &mut out[block_start..block_end],
                    finish,
                );
                std::mem::swap(&mut previous, &mut current);
                (prev_start, prev_first_offset) = (block_start, 0);
                block_start = block_end;
                continue;
            }
            let straddling = block.len().min(n - 1);
            let anchor = previous.anchor;
            // The previous block's MomentAgg suffixes, for the windows that hold a NaN.
            let mut acc = MomentAgg::EMPTY;
            for off in (prev_first_offset..n).rev() {
                acc.push(x[prev_start + (off - prev_first_offset)]);
                generic_suffix[off] = acc;
            }
            let (mut p1, mut p2, mut clean) = (0.0, 0.0, true);
            let mut generic_prefix = MomentAgg::EMPTY;
            for (j, &v) in block.iter().enumerate().take(straddling) {
                let d = v - anchor;
                p1 += d;
                p2 += d * d;
                clean &= !v.is_nan();
                generic_prefix.push(v);
                if clean && previous.is_clean(j + 1) {
                    out[block_start + j] =
                        finish(variance.of(previous.s1[j + 1] + p1, previous.s2[j + 1] + p2));
                } else {
                    emit(
                        block_start + j,
                        MomentAgg::merge(inv, &generic_suffix[j + 1], &generic_prefix),
                        out,
                    );
                }
            }
            if block.len() == n {
                // A whole block is its own last window, and the next block's previous block.
                current.fill(x, block_start, 0, n);
                let last = block_end - 1;
                if current.is_clean(0) {
                    out[last] = finish(variance.of(current.s1[0], current.s2[0]));
                } else {
                    let mut whole = MomentAgg::EMPTY;
                    block.iter().for_each(|&v| whole.push(v));
                    emit(last, whole.single(inv), out);
                }
                std::mem::swap(&mut previous, &mut current);
            }
            (prev_start, prev_first_offset) = (block_start, 0);
            block_start = block_end;
        }
    }
}

/// Whether this CPU runs 256-bit vectors (AVX2): checked once per call, not per block.
fn has_wide_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The windows ending in a whole NaN-free block that follows a NaN-free suffix: the common case.
struct CleanBlocks {
    variance: AnchoredVariance,
    /// Each window's sum of squared deviations, waiting for the vectorised formula pass.
    window_s2: Vec<f64>,
    wide_vectors: bool,
}

impl CleanBlocks {
    /// Writes the windows ending in `block` to `out` and the block's own suffixes to `current`.
    ///
    /// The same code is compiled a second time for AVX2, so on CPUs that have it the formula pass runs
    /// four windows per instruction while the wheel stays baseline x86-64 (measured 317 → 396 M values/s).
    /// The values are bit-identical: AVX2 adds lanes, not a different rounding, and Rust never fuses a
    /// multiply and an add on its own.
    #[inline(always)]
    fn run(
        &mut self,
        previous: &AnchoredSuffix,
        current: &mut AnchoredSuffix,
        block: &[f64],
        out: &mut [f64],
        finish: impl Fn(f64) -> f64 + Copy,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.wide_vectors {
            #[target_feature(enable = "avx2")]
            fn run_avx2(
                blocks: &mut CleanBlocks,
                previous: &AnchoredSuffix,
                current: &mut AnchoredSuffix,
                block: &[f64],
                out: &mut [f64],
                finish: impl Fn(f64) -> f64 + Copy,
            ) {
                blocks.run_portable(previous, current, block, out, finish)
            }
            // SAFETY: `wide_vectors` is set only when `has_wide_vectors` found AVX2 on this CPU.
            #[allow(unsafe_code)]
            unsafe {
                run_avx2(self, previous, current, block, out, finish)
            };
            return;
        }
        self.run_portable(previous, current, block, out, finish)
    }

    /// The same sums, in the same order, as the general loop and `AnchoredSuffix::fill`, so a value
    /// does not depend on which path computed it.
    /// - One loop runs the forward prefix and the backward suffix together: four independent addition
    ///   chains instead of two passes of two, which lets the out-of-order core hide the add latency.
    /// - The variance formula and `finish` run afterwards, in a loop with no carried dependency, which
    ///   the compiler vectorises.
    #[inline(always)]
    fn run_portable(
        &mut self,
        previous: &AnchoredSuffix,
        current: &mut AnchoredSuffix,
        block: &[f64],
        out: &mut [f64],
        finish: impl Fn(f64) -> f64 + Copy,
    ) {
        let n = block.len();
        let (prev_s1, prev_s2) = (&previous.s1[1..n], &previous.s2[1..n]);
        let (cur_s1, cur_s2) = (&mut current.s1[..n], &mut current.s2[..n]);
        let (window_s1, window_s2) = (&mut out[..n], &mut self.window_s2[..n]);
        let (prev_anchor, anchor) = (previous.anchor, block[n - 1]);
        let (mut p1, mut p2, mut q1, mut q2) = (0.0, 0.0, 0.0, 0.0);
        for j in 0..n - 1 {
            let d = block[j] - prev_anchor;
            p1 += d;
            p2 += d * d;
            window_s1[j] = prev_s1[j] + p1;
            window_s2[j] = prev_s2[j] + p2;
            let k = n - 1 - j;
            let e = block[k] - anchor;
            q1 += e;
            q2 += e * e;
            cur_s1[k] = q1;
            cur_s2[k] = q2;
        }
        let e = block[0] - anchor;
        q1 += e;
        q2 += e * e;
        cur_s1[0] = q1;
        cur_s2[0] = q2;
        // The block's last window is the whole block.
        window_s1[n - 1] = q1;
        window_s2[n - 1] = q2;
        let variance = self.variance;
        window_s1
            .iter_mut()
            .zip(window_s2.iter())
            .for_each(|(s1, &s2)| *s1 = finish(variance.of(*s1, s2)));
        current.anchor = anchor;
        current.clean_from = 0;
    }
}

/// The non-NaN values of a sliding window, kept sorted: binary-search insert and remove, O(w)
/// memmove, which for w in the tens is a few nanoseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedWindow {
    sorted: Vec<f64>,
}

impl SortedWindow {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            sorted: Vec::with_capacity(capacity),
        }
    }

    pub fn clear(&mut self) {
        self.sorted.clear();
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Adds `x` unless it is NaN.
    pub fn insert(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(at, x);
    }

    /// Removes one copy of `x` (a value inserted earlier), unless it is NaN.
    pub fn remove(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        debug_assert!(at < self.sorted.len() && self.sorted[at].total_cmp(&x).is_eq());
        if at < self.sorted.len() {
            self.sorted.remove(at);
        }
    }

    /// Median (mean of the two middle values for an even count), NaN when empty.
    pub fn median(&self) -> f64 {
        median_of_sorted(&self.sorted)
    }

    /// Median absolute deviation from `center` (unscaled), NaN when empty.
    ///
    /// The deviations below and above `center` are each sorted already (reversed on the left),
    /// so the middle order statistics come from a merge walk instead of a sort.
    pub fn median_abs_deviation(&self, center: f64) -> f64 {
        let v = &self.sorted;
        let k = v.len();
        if k == 0 {
            return f64::NAN;
        }
        // Deviations grow leftwards from `left` and rightwards from `right`: merge-walk to the middle.
        let split = v.partition_point(|&x| x < center);
        let (mut left, mut right) = (split, split);
        let (mut lower, mut upper) = (f64::NAN, f64::NAN);
        for step in 0..=k / 2 {
            let take_left = left > 0 && (right == k || center - v[left - 1] <= v[right] - center);
            let deviation = if take_left {
                left -= 1;
                (v[left] - center).abs()
            } else {
                right += 1;
                (v[right - 1] - center).abs()
            };
            if step == (k - 1) / 2 {
                lower = deviation;
            }
            upper = deviation;
        }
        if k % 2 == 1 {
            lower
        } else {
            (lower + upper) * 0.5
        }
    }
}

pub(crate) fn median_of_sorted(v: &[f64]) -> f64 {
    let k = v.len();
    match k {
        0 => f64::NAN,
        _ if k % 2 == 1 => v[k / 2],
        _ => (v[k / 2 - 1] + v[k / 2]) * 0.5,
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops read like the definitions they check
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one_segment(len: usize) -> Segments {
        Segments {
            ranges: vec![(0, len)],
            first_origin: 0,
        }
    }

    fn naive_window(x: &[f64], t: usize, n: usize) -> Vec<f64> {
        x[(t + 1).saturating_sub(n)..=t]
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect()
    }

    fn naive_moments(w: &[f64]) -> (usize, f64, f64) {
        let k = w.len();
        let mean = w.iter().sum::<f64>() / k as f64;
        let m2 = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
        (k, mean, m2)
    }

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-12 * (scale + a.abs().max(b.abs()))
    }

    proptest! {
        #[test]
        fn moments_match_two_pass(
            x in prop::collection::vec(prop_oneof![4 => -1e3f64..1e3, 1 => Just(f64::NAN), 1 => Just(7.0)], 0..200),
            n in 1usize..40,
        ) {
            let mut got = vec![MomentWindow::EMPTY; x.len()];
            rolling::<MomentAgg>(&one_segment(x.len()), n, &Reciprocals::up_to(n), |i| x[i], |t, w| got[t] = w);
            for t in 0..x.len() {
                let w = naive_window(&x, t, n);
                prop_assert_eq!(got[t].count as usize, w.len());
                if w.is_empty() { continue; }
                let (_, mean, m2) = naive_moments(&w);
                let spread = w.iter().map(|v| v.abs()).fold(0.0, f64::max);
                prop_assert!(close(got[t].mean, mean, spread), "t={} mean {} vs {}", t, got[t].mean, mean);
                prop_assert!(close(got[t].m2, m2, spread * spread * w.len() as f64), "t={} m2 {} vs {}", t, got[t].m2, m2);
            }
        }

        #[test]
        fn fast_variance_matches_moment_windows(
            x in prop::collection::vec(prop_oneof![6 => -1e-2f64..1e-2, 1 => Just(f64::NAN), 2 => Just(1e-3), 1 => Just(5.0)], 0..300),
            n in 1usize..20,
            m in 1u32..20,
            cuts in prop::collection::vec(0usize..300, 0..4),
            origin in 0u64..40,
        ) {
            let m = m.min(n as u32);
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c < x.len()).collect();
            bounds.extend([0, x.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let segs = Segments { ranges: bounds.windows(2).map(|w| (w[0], w[1])).collect(), first_origin: origin };
            let inv = Reciprocals::up_to(n);
            let mut want = vec![f64::NAN; x.len()];
            rolling::<MomentAgg>(&segs, n, &inv, |i| x[i], |t, w| want[t] = if w.count >= m { w.variance } else { f64::NAN });
            let mut got = vec![f64::NAN; x.len()];
            rolling_variance(&segs, n, m, &inv, &x, &mut got, |v| v);
            // A segment continued mid-block (origin) computes its first block's merged windows from missing
            // points; those are the carried tail's outputs, which the caller discards.
            let first_kept = segs.ranges.first().map_or(0, |&(s, _)| s + n);
            for t in 0..x.len() {
                if origin % n as u64 != 0 && t < first_kept.min(segs.ranges[0].1) { continue; }
                prop_assert_eq!(got[t].is_nan(), want[t].is_nan(), "t={} got {} want {}", t, got[t], want[t]);
                if want[t] == 0.0 { prop_assert_eq!(got[t], 0.0, "t={}: a flat window must be exactly 0", t); }
                let scale = naive_window(&x, t, n).iter().map(|v| v * v).fold(0.0, f64::max);
                prop_assert!(want[t].is_nan() || close(got[t], want[t], scale), "t={} got {} want {}", t, got[t], want[t]);
            }
        }

        #[test]
        fn clean_block_paths_agree_bit_for_bit(
            values in prop::collection::vec(prop_oneof![6 => -1e-2f64..1e-2, 1 => Just(1e-3), 1 => Just(5.0)], 4..120),
            n in 2usize..60,
        ) {
            // The AVX2 copy and the baseline copy of the clean-block loop must give the same bits; on a CPU
            // without AVX2 both runs take the baseline path and the test still checks it against itself.
            let n = n.min(values.len() / 2);
            let (first, block) = (&values[..n], &values[n..2 * n]);
            let mut previous = AnchoredSuffix::new(n);
            previous.fill(first, 0, 0, n);
            let inv = Reciprocals::up_to(n);
            let variance = AnchoredVariance { inv_n: inv.of(n as u32), inv_n_minus_1: inv.of(n as u32 - 1) };
            let run = |wide_vectors: bool| {
                let mut blocks = CleanBlocks { variance, window_s2: vec![0.0; n], wide_vectors: wide_vectors && has_wide_vectors() };
                let mut current = AnchoredSuffix::new(n);
                let mut out = vec![0.0; n];
                blocks.run(&previous, &mut current, block, &mut out, f64::sqrt);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (bits(&out), bits(&current.s1), bits(&current.s2), current.anchor.to_bits())
            };
            prop_assert_eq!(run(true), run(false));
        }

        #[test]
        fn sums_match_naive(x in prop::collection::vec(prop_oneof![3 => -1e3f64..1e3, 1 => Just(f64::NAN)], 0..150), n in 1usize..40) {
            let mut got = vec![SumWindow { count: 0, sum: 0.0 }; x.len()];
            rolling::<SumAgg>(&one_segment(x.len()), n, &(), |i| x[i], |t, w| got[t] = w);
            for t in 0..x.len() {
                let w = naive_window(&x, t, n);
                prop_assert_eq!(got[t].count as usize, w.len());
                prop_assert!(close(got[t].sum, w.iter().sum(), 1e3 * n as f64));
            }
        }

        #[test]
        fn median_and_mad_match_sorting(x in prop::collection::vec(prop_oneof![-50i32..50, Just(0)], 1..60)) {
            let values: Vec<f64> = x.iter().map(|&v| v as f64 / 8.0).collect();
            let mut window = SortedWindow::default();
            for &v in &values { window.insert(v); }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let med = median_of_sorted(&sorted);
            let mut dev: Vec<f64> = sorted.iter().map(|v| (v - med).abs()).collect();
            dev.sort_by(f64::total_cmp);
            prop_assert_eq!(window.median(), med);
            prop_assert_eq!(window.median_abs_deviation(med), median_of_sorted(&dev));
            for &v in &values { window.remove(v); }
            prop_assert_eq!(window.len(), 0);
        }
    }

    #[test]
    fn flat_window_has_exactly_zero_m2_and_exact_mean() {
        let x = [0.1 + 0.2; 50];
        let mut got = Vec::new();
        rolling::<MomentAgg>(
            &one_segment(x.len()),
            7,
            &Reciprocals::up_to(7),
            |i| x[i],
            |_, w| got.push(w),
        );
        assert!(got.iter().all(|w| w.m2 == 0.0 && w.mean == 0.1 + 0.2));
    }

    #[test]
    fn segments_restart_windows() {
        let x = [1.0, 2.0, 3.0, 10.0, 20.0];
        let segs = Segments {
            ranges: vec![(0, 3), (3, 5)],
            first_origin: 0,
        };
        let mut got = [SumWindow { count: 0, sum: 0.0 }; 5];
        rolling::<SumAgg>(&segs, 4, &(), |i| x[i], |t, w| got[t] = w);
        let sums: Vec<f64> = got.iter().map(|w| w.sum).collect();
        assert_eq!(sums, [1.0, 3.0, 6.0, 10.0, 30.0]);
    }
}
