//! Charts as inline SVG, written by hand: grouped bars, histograms and line
//! charts. Every string from a section goes through [`esc`], in text and in
//! attributes alike; numbers are formatted here, never taken as text.

use super::format::cut;
use std::fmt::Write;

use gigo_pipeline::summary::Series;

use super::format::{MISSING, general, int};
use super::html::esc;

/// Colour-blind-safe series colours (Okabe & Ito).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#999933", "#000000",
];

/// Most categories a bar chart draws; the rest are counted in a note.
pub const MAX_BAR_LABELS: usize = 60;
/// Most series a chart draws.
pub const MAX_SERIES: usize = 12;
/// Most bins a histogram draws; more are merged.
pub const MAX_BINS: usize = 200;
/// Most points a line draws; longer series are thinned evenly.
pub const MAX_POINTS: usize = 1000;
/// Longest label drawn in full; longer ones are cut (the tooltip has all).
const LABEL_CHARS: usize = 24;

const WIDTH: f64 = 640.0;

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn open(out: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(title)
    );
}

fn legend(out: &mut String, names: &[&str], y: f64, x0: f64) {
    let mut x = x0;
    for (i, name) in names.iter().enumerate() {
        let label = cut(name, 20);
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" class="lg">{}</text>"#,
            y - 9.0,
            colour(i),
            x + 16.0,
            y,
            esc(&label)
        );
        x += 24.0 + 6.5 * label.chars().count() as f64;
        if x > WIDTH - 60.0 {
            break;
        }
    }
}

/// Grouped horizontal bars: one group per label, one bar per series. Returns
/// the SVG and how many labels were left out.
pub fn bars(title: &str, labels: &[String], series: &[Series]) -> (String, usize) {
    let n = labels.len().min(MAX_BAR_LABELS);
    let series = &series[..series.len().min(MAX_SERIES)];
    let s = series.len().max(1);
    let bar_h = if s == 1 {
        16.0
    } else {
        (30.0 / s as f64).clamp(6.0, 12.0)
    };
    let group_h = bar_h * s as f64 + 8.0;
    let top = if series.len() > 1 { 24.0 } else { 6.0 };
    let (label_w, value_w) = (170.0, 80.0);
    let plot_w = WIDTH - label_w - value_w - 8.0;
    let h = top + group_h * n as f64 + 8.0;
    let finite = series
        .iter()
        .flat_map(|s| s.values.iter().take(n))
        .filter_map(|v| v.filter(|x| x.is_finite()));
    let (mut lo, mut hi) = finite.fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if hi == lo {
        hi = lo + 1.0;
        lo = lo.min(0.0);
    }
    let x = |v: f64| label_w + (v - lo) / (hi - lo) * plot_w;
    let mut out = String::new();
    open(&mut out, WIDTH, h, title);
    if series.len() > 1 {
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        legend(&mut out, &names, 14.0, label_w);
    }
    let _ = write!(
        out,
        r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" class="axis"/>"#,
        x(0.0),
        top - 2.0,
        h - 6.0
    );
    for (i, label) in labels.iter().take(n).enumerate() {
        let gy = top + group_h * i as f64;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="lb"><title>{}</title>{}</text>"#,
            label_w - 6.0,
            gy + group_h / 2.0 + 3.0,
            esc(label),
            esc(&cut(label, LABEL_CHARS))
        );
        for (j, ser) in series.iter().enumerate() {
            let y = gy + 4.0 + bar_h * j as f64;
            let v = ser
                .values
                .get(i)
                .copied()
                .flatten()
                .filter(|v| v.is_finite());
            let shown = v.map_or_else(|| MISSING.to_string(), general);
            if let Some(v) = v.filter(|v| *v != 0.0) {
                let (a, b) = (x(0.0).min(x(v)), x(0.0).max(x(v)));
                let _ = write!(
                    out,
                    r#"<rect x="{a:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    (b - a).max(0.8),
                    bar_h - 1.0,
                    colour(j),
                    esc(&format!("{label} · {}", ser.name)),
                    shown
                );
            }
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" class="val">{}</text>"#,
                label_w + plot_w + 6.0,
                y + bar_h - 3.0,
                esc(&shown)
            );
        }
    }
    out.push_str("</svg>");
    (out, labels.len() - n)
}

/// Merges adjacent bins so that at most [`MAX_BINS`] remain.
fn merge_bins(edges: &[f64], counts: &[u64]) -> (Vec<f64>, Vec<u64>) {
    if counts.len() <= MAX_BINS {
        return (edges.to_vec(), counts.to_vec());
    }
    let k = counts.len().div_ceil(MAX_BINS);
    let mut e = Vec::new();
    let mut c = Vec::new();
    for (i, chunk) in counts.chunks(k).enumerate() {
        e.push(edges[i * k]);
        c.push(chunk.iter().sum());
    }
    e.push(edges[counts.len()]);
    (e, c)
}

/// A histogram: `counts[i]` rows in `[edges[i], edges[i+1])`. Returns `None`
/// when the edges do not match the counts.
pub fn histogram(title: &str, edges: &[f64], counts: &[u64]) -> Option<String> {
    if counts.is_empty() || edges.len() != counts.len() + 1 {
        return None;
    }
    let (edges, counts) = merge_bins(edges, counts);
    let (left, right, top, bottom) = (64.0, 12.0, 10.0, 28.0);
    let h = 190.0;
    let plot_w = WIDTH - left - right;
    let plot_h = h - top - bottom;
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = plot_w / counts.len() as f64;
    let mut out = String::new();
    open(&mut out, WIDTH, h, title);
    for (i, c) in counts.iter().enumerate() {
        let bh = *c as f64 / max * plot_h;
        let _ = write!(
            out,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"><title>[{}, {}): {}</title></rect>"#,
            left + bw * i as f64 + 0.3,
            top + plot_h - bh,
            (bw - 0.6).max(0.4),
            bh,
            colour(0),
            general(edges[i]),
            general(edges[i + 1]),
            int(*c as f64)
        );
    }
    axes(&mut out, left, top, plot_w, plot_h);
    // y: 0 and the largest count; x: first, middle and last edge.
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tk">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" class="tk">0</text>"#,
        left - 4.0,
        top + 8.0,
        int(max),
        left - 4.0,
        top + plot_h
    );
    let n = edges.len() - 1;
    for (i, anchor) in [(0, "start"), (n / 2, "middle"), (n, "end")] {
        if i == n / 2 && (n < 2) {
            continue;
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" class="tk">{}</text>"#,
            left + bw * i as f64,
            top + plot_h + 16.0,
            general(edges[i])
        );
    }
    out.push_str("</svg>");
    Some(out)
}

fn axes(out: &mut String, left: f64, top: f64, w: f64, h: f64) {
    let _ = write!(
        out,
        r#"<path d="M{left:.1} {top:.1} V{:.1} H{:.1}" class="axis" fill="none"/>"#,
        top + h,
        left + w
    );
}

/// About `n` round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil();
    (0..50)
        .map(|k| (first + k as f64) * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .map(|t| if t.abs() < step * 1e-9 { 0.0 } else { t })
        .collect()
}

/// Indices to draw for a series of `len` points: all, or evenly thinned to
/// [`MAX_POINTS`] keeping the last.
fn thin(len: usize) -> Vec<usize> {
    if len <= MAX_POINTS {
        return (0..len).collect();
    }
    let stride = len.div_ceil(MAX_POINTS);
    let mut idx: Vec<usize> = (0..len).step_by(stride).collect();
    if idx.last() != Some(&(len - 1)) {
        idx.push(len - 1);
    }
    idx
}

/// Curves over a shared x axis, with a legend; `log_y` draws y on a log10
/// scale (values ≤ 0 become gaps). Null and non-finite values are gaps.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    x: &[f64],
    series: &[Series],
    log_y: bool,
) -> Option<String> {
    let series = &series[..series.len().min(MAX_SERIES)];
    let ty = |v: f64| {
        if log_y {
            (v > 0.0).then(|| v.log10())
        } else {
            Some(v)
        }
    };
    let point = |i: usize, s: &Series| -> Option<(f64, f64)> {
        let xv = *x.get(i)?;
        let yv = s.values.get(i).copied().flatten()?;
        if !xv.is_finite() || !yv.is_finite() {
            return None;
        }
        Some((xv, ty(yv)?))
    };
    let idx = thin(x.len());
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| idx.iter().filter_map(move |&i| point(i, s)))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let (mut x0, mut x1, mut y0, mut y1) = pts.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(px, py)| (a.min(px), b.max(px), c.min(py), d.max(py)),
    );
    if x1 == x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if y1 == y0 {
        let pad = if y0 == 0.0 { 0.5 } else { y0.abs() * 0.1 };
        y0 -= pad;
        y1 += pad;
    }
    if log_y {
        y0 = y0.floor();
        y1 = y1.ceil();
    }
    let legend_h = if series.len() > 1 { 20.0 } else { 0.0 };
    let (left, right, top, bottom) = (70.0, 14.0, 10.0 + legend_h, 40.0);
    let h = 260.0 + legend_h;
    let (pw, ph) = (WIDTH - left - right, h - top - bottom);
    let sx = |v: f64| left + (v - x0) / (x1 - x0) * pw;
    let sy = |v: f64| top + ph - (v - y0) / (y1 - y0) * ph;
    let mut out = String::new();
    open(&mut out, WIDTH, h, title);
    if series.len() > 1 {
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        legend(&mut out, &names, 14.0, left);
    }
    // Grid and ticks.
    let yt: Vec<f64> = if log_y {
        let decades = (y1 - y0).round() as i64;
        let step = ((decades as f64) / 6.0).ceil().max(1.0) as i64;
        (0..=decades)
            .step_by(step as usize)
            .map(|d| y0 + d as f64)
            .collect()
    } else {
        ticks(y0, y1, 5)
    };
    for t in yt {
        let label = if log_y {
            general(10f64.powf(t))
        } else {
            general(t)
        };
        let (x2, y, tx) = (left + pw, sy(t), left - 4.0);
        let _ = write!(
            out,
            r#"<line x1="{left:.1}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{tx:.1}" y="{:.1}" text-anchor="end" class="tk">{label}</text>"#,
            y + 3.0,
        );
    }
    for t in ticks(x0, x1, 6) {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tk">{}</text>"#,
            sx(t),
            top + ph + 14.0,
            general(t)
        );
    }
    axes(&mut out, left, top, pw, ph);
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="ax">{}</text>"#,
        left + pw / 2.0,
        h - 6.0,
        esc(&cut(x_label, 60))
    );
    let _ = write!(
        out,
        r#"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="ax">{}{}</text>"#,
        top + ph / 2.0,
        esc(&cut(y_label, 40)),
        if log_y { " (log)" } else { "" }
    );
    for (j, s) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        let mut drawn = Vec::new();
        for &i in &idx {
            match point(i, s) {
                Some((px, py)) => {
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1} ",
                        if pen_down { "L" } else { "M" },
                        sx(px),
                        sy(py)
                    );
                    pen_down = true;
                    drawn.push((px, py));
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.8"><title>{}</title></path>"#,
            d.trim_end(),
            colour(j),
            esc(&s.name)
        );
        // Dots make short series (and isolated points) visible.
        if drawn.len() <= 40 {
            for (px, py) in drawn {
                let _ = write!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                    sx(px),
                    sy(py),
                    colour(j)
                );
            }
        }
    }
    out.push_str("</svg>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser(name: &str, v: &[Option<f64>]) -> Series {
        Series {
            name: name.into(),
            values: v.to_vec(),
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!(
            t.iter()
                .zip([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
                .all(|(a, b)| (a - b).abs() < 1e-12)
        );
        assert_eq!(ticks(3.0, 47.0, 5), vec![10.0, 20.0, 30.0, 40.0]);
        assert_eq!(ticks(1.0, 1.0, 5), vec![1.0]);
    }

    #[test]
    fn histograms_check_edges_and_merge_many_bins() {
        assert!(histogram("h", &[0.0, 1.0], &[1, 2]).is_none());
        let edges: Vec<f64> = (0..=1000).map(f64::from).collect();
        let counts = vec![1u64; 1000];
        let svg = histogram("h", &edges, &counts).unwrap();
        assert_eq!(svg.matches("<rect").count(), 200);
        assert!(svg.contains("[0, 5): 5"), "merged bins keep their totals");
    }

    #[test]
    fn bars_cap_labels_and_draw_missing_values_as_dashes() {
        let labels: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let values: Vec<Option<f64>> = (0..100).map(|i| Some(i as f64)).collect();
        let (svg, left) = bars("b", &labels, &[ser("n", &values)]);
        assert_eq!(left, 40);
        assert_eq!(
            svg.matches("<rect").count(),
            MAX_BAR_LABELS - 1,
            "zero has no bar"
        );
        let (svg, _) = bars(
            "b",
            &["a".into(), "b".into()],
            &[
                ser("x", &[Some(-1.0), None]),
                ser("y", &[Some(f64::NAN), Some(2.0)]),
            ],
        );
        assert_eq!(svg.matches(MISSING).count(), 2);
        assert!(
            svg.contains(">x<") && svg.contains(">y<"),
            "a legend for several series"
        );
    }

    #[test]
    fn lines_skip_gaps_thin_long_series_and_use_log_y() {
        let x: Vec<f64> = (0..5000).map(f64::from).collect();
        let v: Vec<Option<f64>> = x.iter().map(|i| Some(10f64.powf(-i / 1000.0))).collect();
        let svg = lines("l", "step", "norm", &x, &[ser("a", &v)], true).unwrap();
        let path = svg.split("<path d=\"").nth(2).unwrap();
        assert!(path.matches('L').count() <= MAX_POINTS, "thinned");
        assert!(svg.contains(">1e-5<"), "{svg}");
        let svg = lines(
            "l",
            "x",
            "y",
            &[0.0, 1.0, 2.0, 3.0],
            &[
                ser("a", &[Some(1.0), None, Some(f64::INFINITY), Some(2.0)]),
                ser("b", &[Some(0.5); 4]),
            ],
            false,
        )
        .unwrap();
        // Series a is two separate points: two moves, no line between them.
        let a = svg.split("stroke=\"#0072B2\"").next().unwrap();
        let d = a.rsplit("<path d=\"").next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(
            lines("l", "x", "y", &[0.0], &[ser("a", &[Some(-1.0)])], true).is_none(),
            "nothing to draw on log y"
        );
    }
}
