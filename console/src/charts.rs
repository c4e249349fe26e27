//! Charts drawn on the server as inline SVG: no chart library, no request for assets, and they
//! render with JavaScript off. Colours come from the stylesheet's variables (`.chart` rules in
//! `style.css`), so the same markup reads in the light and the dark theme. Every bucket carries a
//! `<title>`, which browsers show as a tooltip.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// Evenly spaced time buckets: `count` of `step` seconds from `start` (Unix seconds, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAxis {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

impl TimeAxis {
    pub fn time(&self, index: usize) -> i64 {
        self.start + self.step * index as i64
    }

    /// The bucket `time` falls in, if it is on the axis.
    pub fn index_of(&self, time: i64) -> Option<usize> {
        if self.step <= 0 || time < self.start {
            return None;
        }
        let index = ((time - self.start) / self.step) as usize;
        (index < self.count).then_some(index)
    }
}

/// One value per bucket of `axis`: buckets without a point count zero (stores return only
/// buckets that had requests); points off the axis are left out.
pub fn fill_buckets(axis: &TimeAxis, points: &[(i64, f64)]) -> Vec<f64> {
    let mut values = vec![0.0; axis.count];
    for &(time, value) in points {
        if let Some(i) = axis.index_of(time) {
            values[i] += value;
        }
    }
    values
}

/// How values are written on axes and in tooltips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Millis,
    Bytes,
}

impl Unit {
    /// Exact enough for a tooltip or a table cell.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Count => group_thousands(value.round() as u64),
            Unit::Millis if value >= 1000.0 => format!("{:.2} s", value / 1000.0),
            Unit::Millis if value >= 10.0 => format!("{value:.0} ms"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::Bytes => format_bytes(value),
        }
    }

    /// Short, for axis ticks.
    fn tick(self, value: f64) -> String {
        match self {
            Unit::Count if value >= 1_000_000.0 => format!("{}M", trim(value / 1_000_000.0)),
            Unit::Count if value >= 1_000.0 => format!("{}k", trim(value / 1_000.0)),
            Unit::Count => trim(value),
            Unit::Millis if value >= 1000.0 => format!("{} s", trim(value / 1000.0)),
            Unit::Millis => format!("{} ms", trim(value)),
            Unit::Bytes => format_bytes(value),
        }
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `1234567` → `1,234,567`.
pub fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary multiples, as people read transfer sizes.
pub fn format_bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = value.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{} {}", trim((value * 10.0).round() / 10.0), UNITS[unit])
    }
}

/// The top of the value axis and the distance between grid lines: a round number (1, 2 or 5
/// times a power of ten) so ticks read as 0, 50, 100 rather than 0, 37, 74. Never zero, so an
/// all-zero chart still has an axis.
pub fn nice_scale(max: f64) -> (f64, f64) {
    const TICKS: f64 = 4.0;
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 0.25);
    }
    let rough = max / TICKS;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// Counts come in whole requests: an axis of 0 to 4 beats ticks of 0.25 for a quiet range.
fn floor_for(unit: Unit, max: f64) -> f64 {
    match unit {
        Unit::Count => max.max(4.0),
        _ => max,
    }
}

/// Escapes text for SVG/HTML content and attribute values: names in charts are user input.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

fn utc(time: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(time, 0)
}

/// A bucket's start as a tooltip shows it.
pub fn bucket_label(axis: &TimeAxis, time: i64) -> String {
    let Some(t) = utc(time) else {
        return time.to_string();
    };
    if axis.step >= 86_400 {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

fn tick_label(axis: &TimeAxis, time: i64) -> String {
    let Some(t) = utc(time) else {
        return String::new();
    };
    let span = axis.step * axis.count as i64;
    if axis.step >= 86_400 {
        t.format("%b %d").to_string()
    } else if span > 86_400 {
        t.format("%m-%d %H:%M").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// One line of a chart; `class` picks its colour (`s1` … `s5` in the stylesheet).
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub class: &'static str,
    pub values: Vec<f64>,
}

// The drawing area, in viewBox units. The SVG keeps this aspect ratio and scales to its
// container's width, so text scales evenly; about the width of a half-page column, so 11-unit
// labels stay near 11 px.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn open_svg(out: &mut String, title: &str, description: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><title>{t}</title><desc>{d}</desc>"#,
        t = escape(title),
        d = escape(description),
    );
}

/// Horizontal grid lines with the value axis's labels.
fn value_axis(out: &mut String, top: f64, step: f64, unit: Unit) {
    let mut value = 0.0;
    while value <= top + step / 2.0 {
        let y = TOP + plot_height() * (1.0 - value / top);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            label = escape(&unit.tick(value)),
        );
        value += step;
    }
}

/// A legend beside a chart, in HTML so it wraps and reads as text.
fn legend(lines: &[(String, &'static str)]) -> String {
    let mut out = String::from(r#"<ul class="legend">"#);
    for (name, class) in lines {
        let _ = write!(
            out,
            r#"<li><span class="swatch {class}" aria-hidden="true"></span>{}</li>"#,
            escape(name)
        );
    }
    out.push_str("</ul>");
    out
}

/// A line chart over time: one path per line (filled below when `area`), a point marker per
/// bucket when there are few, and one hover target per bucket whose `<title>` lists every
/// line's value. Returns the markup of a `<figure class="chart">`.
pub fn line_chart(title: &str, axis: &TimeAxis, lines: &[Line], unit: Unit, area: bool) -> String {
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0, f64::max);
    let (top, step) = nice_scale(floor_for(unit, max));
    let slot = plot_width() / axis.count.max(1) as f64;
    let x = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y = |v: f64| TOP + plot_height() * (1.0 - (v / top).clamp(0.0, 1.0));

    let mut svg = String::new();
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    open_svg(
        &mut svg,
        title,
        &format!(
            "{} over {} buckets: {}",
            title,
            axis.count,
            names.join(", ")
        ),
    );
    value_axis(&mut svg, top, step, unit);
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" x2="{x2}" y1="{y0}" y2="{y0}"/>"#,
        x2 = WIDTH - RIGHT,
        y0 = TOP + plot_height(),
    );
    // About five time labels, whatever the number of buckets.
    let every = axis.count.div_ceil(5).max(1);
    for i in (0..axis.count).step_by(every) {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(i),
            HEIGHT - 8.0,
            escape(&tick_label(axis, axis.time(i)))
        );
    }
    for line in lines {
        let count = line.values.len().min(axis.count);
        if count == 0 {
            continue;
        }
        let mut path = String::new();
        for (i, v) in line.values.iter().take(count).enumerate() {
            let _ = write!(
                path,
                "{}{:.1},{:.1}",
                if i == 0 { 'M' } else { 'L' },
                x(i),
                y(*v)
            );
        }
        if area {
            let _ = write!(
                svg,
                r#"<path class="area {c}" d="{path}L{:.1},{b:.1}L{:.1},{b:.1}Z"/>"#,
                x(count - 1),
                x(0),
                c = line.class,
                b = TOP + plot_height(),
            );
        }
        let _ = write!(svg, r#"<path class="line {}" d="{path}"/>"#, line.class);
        // Markers make single points and sparse series visible; dense ones read as a line.
        if count <= 48 {
            for (i, v) in line.values.iter().take(count).enumerate() {
                let _ = write!(
                    svg,
                    r#"<circle class="dot {}" cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                    line.class,
                    x(i),
                    y(*v)
                );
            }
        }
    }
    for i in 0..axis.count {
        let mut tip = bucket_label(axis, axis.time(i));
        for line in lines {
            let value = line.values.get(i).copied().unwrap_or(0.0);
            let _ = write!(tip, "\n{}: {}", line.name, unit.format(value));
        }
        let _ = write!(
            svg,
            r#"<rect class="hit" x="{:.1}" y="{TOP}" width="{:.1}" height="{}"><title>{}</title></rect>"#,
            LEFT + slot * i as f64,
            slot,
            plot_height(),
            escape(&tip)
        );
    }
    svg.push_str("</svg>");
    let legend_items: Vec<(String, &'static str)> =
        lines.iter().map(|l| (l.name.clone(), l.class)).collect();
    format!(
        r#"<figure class="chart"><figcaption>{}</figcaption>{svg}{}</figure>"#,
        escape(title),
        legend(&legend_items)
    )
}

/// One bar; `href` makes it a link (a drill-down that works without JavaScript).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// `b-ok`, `b-warn`, `b-bad`, `s1` …
    pub class: &'static str,
    pub href: Option<String>,
    /// The tooltip; the label and value when empty.
    pub tip: String,
}

/// Vertical bars with their labels under them (every few when there are many).
pub fn bar_chart(title: &str, bars: &[Bar], unit: Unit) -> String {
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let (top, step) = nice_scale(floor_for(unit, max));
    let slot = plot_width() / bars.len().max(1) as f64;
    let width = (slot * 0.7).min(48.0);
    let mut svg = String::new();
    open_svg(&mut svg, title, &format!("{title}: {} bars", bars.len()));
    value_axis(&mut svg, top, step, unit);
    let every = bars.len().div_ceil(12).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let height = plot_height() * (bar.value / top).clamp(0.0, 1.0);
        let cx = LEFT + slot * (i as f64 + 0.5);
        let tip = if bar.tip.is_empty() {
            format!("{}: {}", bar.label, unit.format(bar.value))
        } else {
            bar.tip.clone()
        };
        let rect = format!(
            r#"<rect class="bar {}" x="{:.1}" y="{:.1}" width="{width:.1}" height="{height:.1}"><title>{}</title></rect>"#,
            bar.class,
            cx - width / 2.0,
            TOP + plot_height() - height,
            escape(&tip)
        );
        match &bar.href {
            Some(href) => {
                let _ = write!(svg, r#"<a href="{}">{rect}</a>"#, escape(href));
            }
            None => svg.push_str(&rect),
        }
        if i.is_multiple_of(every) {
            let _ = write!(
                svg,
                r#"<text class="tick" x="{cx:.1}" y="{}" text-anchor="middle">{}</text>"#,
                HEIGHT - 8.0,
                escape(&bar.label)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" x2="{x2}" y1="{y0}" y2="{y0}"/></svg>"#,
        x2 = WIDTH - RIGHT,
        y0 = TOP + plot_height(),
    );
    format!(
        r#"<figure class="chart"><figcaption>{}</figcaption>{svg}</figure>"#,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(count: usize) -> TimeAxis {
        TimeAxis {
            start: 1_764_000_000,
            step: 60,
            count,
        }
    }

    #[test]
    fn gaps_between_buckets_count_zero() {
        let a = axis(5);
        let values = fill_buckets(&a, &[(a.time(1), 3.0), (a.time(4), 7.0)]);
        assert_eq!(values, vec![0.0, 3.0, 0.0, 0.0, 7.0]);
    }

    #[test]
    fn points_off_the_axis_are_left_out_and_repeats_add_up() {
        let a = axis(3);
        let values = fill_buckets(
            &a,
            &[
                (a.start - 60, 9.0),
                (a.time(3), 9.0),
                (a.time(2), 1.0),
                (a.time(2) + 30, 2.0),
            ],
        );
        assert_eq!(values, vec![0.0, 0.0, 3.0]);
    }

    #[test]
    fn scales_are_round_and_cover_the_maximum() {
        assert_eq!(nice_scale(0.0), (1.0, 0.25));
        assert_eq!(nice_scale(f64::NAN), (1.0, 0.25));
        assert_eq!(nice_scale(7.0), (8.0, 2.0));
        assert_eq!(nice_scale(100.0), (100.0, 50.0));
        let (top, step) = nice_scale(1234.0);
        assert!(top >= 1234.0 && step == 500.0, "{top} {step}");
        let (top, step) = nice_scale(0.3);
        assert!(top >= 0.3 && (step - 0.1).abs() < 1e-9, "{top} {step}");
    }

    #[test]
    fn an_empty_chart_still_has_axes_and_no_lines() {
        let svg = line_chart("Requests", &axis(0), &[], Unit::Count, true);
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
        assert!(svg.contains("class=\"grid\""), "{svg}");
        assert!(!svg.contains("class=\"line"), "{svg}");
        let empty_line = Line {
            name: "requests".into(),
            class: "s1",
            values: vec![],
        };
        let svg = line_chart("Requests", &axis(0), &[empty_line], Unit::Count, false);
        assert!(!svg.contains("<path"), "{svg}");
    }

    #[test]
    fn one_point_is_drawn_in_the_middle_with_a_marker_and_a_tooltip() {
        let a = axis(1);
        let line = Line {
            name: "requests".into(),
            class: "s1",
            values: vec![5.0],
        };
        let svg = line_chart("Requests", &a, &[line], Unit::Count, false);
        // The single bucket spans the plot, so its centre is the plot's centre.
        let centre = LEFT + plot_width() / 2.0;
        assert!(svg.contains(&format!("cx=\"{centre:.1}\"")), "{svg}");
        assert!(
            svg.contains("<title>2025-11-24 16:00 UTC\nrequests: 5</title>"),
            "{svg}"
        );
        assert!(svg.contains("class=\"legend\"") && svg.contains(">requests</li>"));
    }

    #[test]
    fn values_are_scaled_to_the_rounded_top() {
        let a = axis(2);
        let line = Line {
            name: "n".into(),
            class: "s1",
            values: vec![0.0, 8.0],
        };
        let svg = line_chart("N", &a, &[line], Unit::Count, false);
        // max 8 → top 8: the first point sits on the baseline, the second at the top.
        let baseline = TOP + plot_height();
        assert!(svg.contains(&format!(",{baseline:.1}L")), "{svg}");
        assert!(svg.contains(&format!(",{TOP:.1}\"")), "{svg}");
        assert!(svg.contains(">8</text>"), "{svg}");
    }

    #[test]
    fn names_are_escaped() {
        let bars = [Bar {
            label: "<script>".into(),
            value: 1.0,
            class: "s1",
            href: Some("/traffic?a=1&b=\"2\"".into()),
            tip: String::new(),
        }];
        let svg = bar_chart("Status <codes>", &bars, Unit::Count);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;") && svg.contains("a=1&amp;b=&quot;2&quot;"));
    }

    #[test]
    fn bars_are_proportional() {
        let bars: Vec<Bar> = [10.0, 5.0]
            .iter()
            .map(|v| Bar {
                label: v.to_string(),
                value: *v,
                class: "b-ok",
                href: None,
                tip: String::new(),
            })
            .collect();
        let svg = bar_chart("S", &bars, Unit::Count);
        let full = plot_height();
        assert!(svg.contains(&format!("height=\"{full:.1}\"")), "{svg}");
        assert!(
            svg.contains(&format!("height=\"{:.1}\"", full / 2.0)),
            "{svg}"
        );
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(Unit::Count.format(1_234_567.0), "1,234,567");
        assert_eq!(Unit::Millis.format(2.345), "2.3 ms");
        assert_eq!(Unit::Millis.format(1500.0), "1.50 s");
        assert_eq!(Unit::Bytes.format(512.0), "512 B");
        assert_eq!(Unit::Bytes.format(1536.0), "1.5 KiB");
        assert_eq!(Unit::Count.tick(2500.0), "2.5k");
    }
}
