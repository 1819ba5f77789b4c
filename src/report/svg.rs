//! Hand-written SVG for the HTML reports: escaping, compact numbers, linear
//! and log scales, "nice" ticks and axes. The plots are rectangles, circles,
//! polylines and text, so a charting crate would add weight and no clarity.

use std::fmt::Write as _;

/// Escape text for HTML and SVG (content and attribute values).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with one decimal, without a trailing `.0` (keeps pages small).
pub(crate) fn n(x: f64) -> String {
    if !x.is_finite() {
        return "0".into();
    }
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// A duration for people: `850 ms`, `4.21 s`, `-`.
pub(crate) fn fmt_ms(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(x) if !x.is_finite() => "-".into(),
        Some(x) if x.abs() < 1000.0 => format!("{x:.0} ms"),
        Some(x) if x.abs() < 100_000.0 => format!("{:.2} s", x / 1000.0),
        Some(x) => format!("{:.0} s", x / 1000.0),
    }
}

/// A linear map from a domain to a pixel range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linear {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Linear {
    pub fn new((d0, d1): (f64, f64), (r0, r1): (f64, f64)) -> Self {
        let d1 = if (d1 - d0).abs() < f64::EPSILON {
            d0 + 1.0
        } else {
            d1
        };
        Linear { d0, d1, r0, r1 }
    }
    pub fn at(&self, x: f64) -> f64 {
        self.r0 + (x - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
    /// Like [`Linear::at`], clamped to the pixel range.
    pub fn clamped(&self, x: f64) -> f64 {
        let (lo, hi) = if self.r0 <= self.r1 {
            (self.r0, self.r1)
        } else {
            (self.r1, self.r0)
        };
        self.at(x).clamp(lo, hi)
    }
    pub fn domain(&self) -> (f64, f64) {
        (self.d0, self.d1)
    }
}

/// A log10 map (for latencies spanning 1 ms to many seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Log {
    lin: Linear,
}

impl Log {
    pub fn new((d0, d1): (f64, f64), range: (f64, f64)) -> Self {
        let d0 = d0.max(1e-3);
        let d1 = d1.max(d0 * 10.0);
        Log {
            lin: Linear::new((d0.log10(), d1.log10()), range),
        }
    }
    pub fn clamped(&self, x: f64) -> f64 {
        self.lin.clamped(x.max(1e-6).log10())
    }
    /// Powers of ten inside the domain.
    pub fn ticks(&self) -> Vec<f64> {
        let (a, b) = self.lin.domain();
        (a.ceil() as i32..=b.floor() as i32)
            .map(|e| 10f64.powi(e))
            .collect()
    }
}

/// 1, 2 or 5 times a power of ten, so that `span` holds about `target` steps.
pub(crate) fn nice_step(span: f64, target: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Tick positions from `d0` to `d1` on a nice step.
pub(crate) fn ticks(d0: f64, d1: f64, target: usize) -> Vec<f64> {
    let step = nice_step(d1 - d0, target);
    let mut t = (d0 / step).ceil() * step;
    let mut out = Vec::new();
    while t <= d1 + step * 1e-9 && out.len() < 1000 {
        out.push(t);
        t += step;
    }
    out
}

/// A tick label for a time in ms, shown in seconds.
fn secs_label(ms: f64, step_ms: f64) -> String {
    if step_ms >= 1000.0 {
        format!("{:.0}s", ms / 1000.0)
    } else if step_ms >= 100.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// A horizontal time axis at `y` with vertical grid lines from `grid_top`.
pub(crate) fn time_axis(out: &mut String, x: &Linear, y: f64, grid_top: f64) {
    let (d0, d1) = x.domain();
    let step = nice_step(d1 - d0, 10);
    let _ = write!(out, r#"<g class="axis">"#);
    for t in ticks(d0, d1, 10) {
        let px = n(x.at(t));
        let _ = write!(
            out,
            r#"<line x1="{px}" x2="{px}" y1="{}" y2="{}" class="grid"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"#,
            n(grid_top),
            n(y),
            n(y + 12.0),
            secs_label(t, step)
        );
    }
    let _ = write!(out, "</g>");
}

/// A vertical value axis with labels at `ticks`, gridlines across to `x1`.
pub(crate) fn value_axis(
    out: &mut String,
    ticks: &[(f64, String)],
    x0: f64,
    x1: f64,
    unit: &str,
    unit_y: f64,
) {
    let _ = write!(out, r#"<g class="axis">"#);
    for (py, label) in ticks {
        let _ = write!(
            out,
            r#"<line x1="{}" x2="{}" y1="{py}" y2="{py}" class="grid"/><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            n(x0),
            n(x1),
            n(x0 - 4.0),
            n(py + 3.5),
            esc(label),
            py = n(*py),
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end" class="unit">{}</text></g>"#,
        n(x0 - 4.0),
        n(unit_y),
        esc(unit)
    );
}

/// A compact label for a millisecond value on a value axis.
pub(crate) fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}s", n(v / 1000.0))
    } else if v >= 1.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact() {
        assert_eq!(n(12.0), "12");
        assert_eq!(n(12.04), "12");
        assert_eq!(n(12.06), "12.1");
        assert_eq!(n(f64::NAN), "0");
        assert_eq!(fmt_ms(Some(850.2)), "850 ms");
        assert_eq!(fmt_ms(Some(4210.0)), "4.21 s");
        assert_eq!(fmt_ms(None), "-");
    }

    #[test]
    fn nice_ticks() {
        assert_eq!(nice_step(20_000.0, 10), 2000.0);
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(ticks(0.0, 0.0, 5).len() <= 1);
        let l = Log::new((1.0, 5000.0), (100.0, 0.0));
        assert_eq!(l.ticks(), vec![1.0, 10.0, 100.0, 1000.0]);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
