//! Inline SVG charts: vertical bars (side by side or stacked) and lines over days, with a value
//! axis of round ticks and gridlines; horizontal bars for categories. Days that are only partly
//! synced are drawn hatched (and named so in the tables), never as a drop. Charts scale to the
//! page width (viewBox), so they read on a phone.

use std::fmt::Write as _;

use super::{Chart, Kind, Unit, escape};

/// Round ticks from 0 to at least `max`: 0, step, 2 step, ... with step 1, 2 or 5 x 10^k.
pub fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let steps = (max / step).ceil() as usize;
    (0..=steps.max(1)).map(|i| i as f64 * step).collect()
}

/// A value as the axis and tables show it.
pub fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Percent => format!("{:.2}%", v * 100.0),
        Unit::Count => group_thousands(v.round() as i64),
    }
}

/// `1234567` -> `1,234,567`.
pub fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Chart widths in SVG units: the desktop one, and the phone one (shown below 600 px), each
/// drawn at about one unit per pixel so that text stays readable.
pub const WIDE: f64 = 720.0;
pub const NARROW: f64 = 380.0;
const TOP: f64 = 16.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;

fn empty(out: &mut String, w: f64, h: f64) {
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"middle\" fill=\"#777\">no data synced for this chart</text></svg>",
        w / 2.0,
        h / 2.0
    );
}

fn open(out: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\">\
         <defs><pattern id=\"partial\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"6\" height=\"6\" fill=\"#fff\"/><rect width=\"3\" height=\"6\" fill=\"#bbb\"/></pattern></defs>",
        escape(title)
    );
}

/// Bars or lines over the chart's labels (days), `w` units wide.
pub fn over_days(chart: &Chart, w: f64) -> String {
    let (h, bottom) = (if w < WIDE { 240.0 } else { 300.0 }, 40.0);
    let mut out = String::new();
    open(&mut out, w, h, chart.title);
    if chart.labels.is_empty() {
        empty(&mut out, w, h);
        return out;
    }
    let stacked = matches!(chart.kind, Kind::StackedBars);
    let n = chart.labels.len();
    let peak = (0..n)
        .map(|i| {
            let values = chart.series.iter().map(|s| s.values[i]);
            if stacked { values.sum() } else { values.fold(0.0, f64::max) }
        })
        .fold(0.0, f64::max);
    let ticks = ticks(peak);
    let top_tick = ticks.last().copied().unwrap_or(1.0);
    let plot_h = h - bottom - TOP;
    let y = |v: f64| TOP + plot_h * (1.0 - v / top_tick);
    for t in &ticks {
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#444\">{label}</text>",
            y = y(*t),
            x2 = w - RIGHT,
            tx = LEFT - 6.0,
            ty = y(*t) + 4.0,
            label = format_value(*t, chart.unit)
        );
    }
    let group = (w - LEFT - RIGHT) / n as f64;
    // A few labels (month-day), counted from the last day, so they never overlap.
    let every = n.div_ceil(if w < WIDE { 4 } else { 8 }).max(1);
    for (i, label) in chart.labels.iter().enumerate() {
        let x0 = LEFT + i as f64 * group;
        if chart.partial.get(i).copied().unwrap_or(false) {
            let _ = write!(
                out,
                "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{group:.1}\" height=\"{plot_h:.1}\" fill=\"url(#partial)\" opacity=\"0.35\"><title>{} is partly synced</title></rect>",
                escape(label)
            );
        }
        if (n - 1 - i).is_multiple_of(every) {
            let text = label.get(5..).filter(|_| label.len() == 10).unwrap_or(label);
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{ly}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
                escape(text),
                x = x0 + group / 2.0,
                ly = h - bottom + 16.0
            );
        }
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{x2}\" y2=\"{b}\" stroke=\"#888\"/>",
        b = h - bottom,
        x2 = w - RIGHT
    );
    match chart.kind {
        Kind::Lines => {
            for s in &chart.series {
                let points: Vec<String> = s
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{:.1},{:.1}", LEFT + (i as f64 + 0.5) * group, y(*v)))
                    .collect();
                let _ = write!(
                    out,
                    "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" points=\"{}\"><title>{}</title></polyline>",
                    s.color,
                    points.join(" "),
                    escape(s.name)
                );
            }
        }
        Kind::Bars | Kind::StackedBars => {
            let width = if stacked { group * 0.7 } else { group * 0.8 / chart.series.len() as f64 };
            for i in 0..n {
                let mut base = 0.0;
                for (j, s) in chart.series.iter().enumerate() {
                    let v = s.values[i];
                    let (x, from) = if stacked {
                        (LEFT + i as f64 * group + group * 0.15, base)
                    } else {
                        (LEFT + i as f64 * group + group * 0.1 + j as f64 * width, 0.0)
                    };
                    let _ = write!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                        y(from + v),
                        y(from) - y(from + v),
                        s.color,
                        escape(&chart.labels[i]),
                        escape(s.name),
                        format_value(v, chart.unit)
                    );
                    base += v;
                }
            }
        }
        Kind::Horizontal => {}
    }
    out + "</svg>"
}

/// One horizontal bar per label (categories), the value written beside it, `w` units wide.
pub fn horizontal(chart: &Chart, w: f64) -> String {
    let row = 26.0;
    let h = TOP * 2.0 + row * chart.labels.len().max(3) as f64;
    let mut out = String::new();
    open(&mut out, w, h, chart.title);
    let Some(series) = chart.series.first().filter(|_| !chart.labels.is_empty()) else {
        empty(&mut out, w, h);
        return out;
    };
    let label_w = if w < WIDE { 120.0 } else { 200.0 };
    let peak = series.values.iter().copied().fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let span = w - label_w - 80.0;
    for (i, (label, v)) in chart.labels.iter().zip(&series.values).enumerate() {
        let y = TOP + i as f64 * row;
        let _ = write!(
            out,
            "<text x=\"{lx}\" y=\"{ty:.1}\" font-size=\"12\" text-anchor=\"end\" fill=\"#333\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh}\" fill=\"{}\"><title>{}: {}</title></rect>\
             <text x=\"{vx:.1}\" y=\"{ty:.1}\" font-size=\"12\" fill=\"#333\">{}</text>",
            escape(label),
            series.color,
            escape(label),
            format_value(*v, chart.unit),
            format_value(*v, chart.unit),
            lx = label_w - 8.0,
            ty = y + row * 0.62,
            bw = (span * v / peak).max(1.0),
            bh = row * 0.7,
            vx = label_w + (span * v / peak).max(1.0) + 6.0,
        );
    }
    out + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks are round, start at 0 and cover the largest value; numbers read as people write them.
    #[test]
    fn ticks_are_round_and_cover_the_peak() {
        assert_eq!(ticks(1_234.0), vec![0.0, 500.0, 1000.0, 1500.0]);
        assert_eq!(ticks(0.0), vec![0.0, 0.5, 1.0]);
        let small: Vec<i64> = ticks(0.031).iter().map(|t| (t * 1000.0).round() as i64).collect();
        assert_eq!(small, vec![0, 10, 20, 30, 40]);
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(12), "12");
        assert_eq!(format_value(0.01234, Unit::Percent), "1.23%");
    }
}
