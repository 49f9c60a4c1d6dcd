//! SVG charts drawn on the server: a scatter plot of traces, line charts
//! of series over time, and histogram bars. Fixed view boxes scale with
//! the page; axes carry units.

use leptos::prelude::*;

use crate::format;

/// View box of the charts in a row of three, and of the full-width scatter plot.
const W: f64 = 420.0;
const H: f64 = 190.0;
const SCATTER_W: f64 = 1200.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// Where `value` of `0..=max` falls on the plot's y range.
fn y_of(value: f64, max: f64) -> f64 {
    H - BOTTOM - (value / max.max(f64::MIN_POSITIVE)) * (H - BOTTOM - TOP)
}

fn x_of(t: i64, start: i64, end: i64, w: f64) -> f64 {
    LEFT + (t - start) as f64 / (end - start).max(1) as f64 * (w - LEFT - 8.0)
}

/// Horizontal grid lines at quarters of `max`, labelled on the left.
fn y_grid(max: f64, w: f64, label: impl Fn(f64) -> String) -> impl IntoView {
    (0..=4)
        .map(|i| {
            let value = max * i as f64 / 4.0;
            let y = f(y_of(value, max));
            view! {
                <line class="grid" x1=f(LEFT) x2=f(w - 8.0) y1=y.clone() y2=y.clone() />
                <text x=f(LEFT - 6.0) y=y text-anchor="end" dominant-baseline="middle">{label(value)}</text>
            }
        })
        .collect_view()
}

/// Labels under the plot at its start, middle and end.
fn x_labels(w: f64, labels: [String; 3]) -> impl IntoView {
    let xs = [LEFT, (LEFT + w - 8.0) / 2.0, w - 8.0];
    let anchors = ["start", "middle", "end"];
    labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| view! { <text x=f(xs[i]) y=f(H - 6.0) text-anchor=anchors[i]>{label}</text> })
        .collect_view()
}

/// The time frame: y grid, y axis, and times under the window's ends and middle.
fn frame(start: i64, end: i64, max: f64, w: f64, label: impl Fn(f64) -> String) -> impl IntoView {
    view! {
        {y_grid(max, w, label)}
        <line class="axis" x1=f(LEFT) x2=f(LEFT) y1=f(TOP) y2=f(H - BOTTOM) />
        {x_labels(w, [start, start + (end - start) / 2, end].map(format::clock))}
    }
}

/// One trace in the search scatter plot.
pub(crate) struct Dot {
    pub(crate) start_ns: i64,
    pub(crate) duration_ns: i64,
    pub(crate) href: String,
    pub(crate) title: String,
    pub(crate) error: bool,
}

/// Trace durations over start time; each dot links to its trace.
pub(crate) fn scatter(dots: Vec<Dot>, start: i64, end: i64) -> impl IntoView {
    let max = dots.iter().map(|d| d.duration_ns).max().unwrap_or(1).max(1) as f64 * 1.1;
    let circles = dots
        .into_iter()
        .map(|d| {
            let fill = if d.error { "var(--error)" } else { "var(--accent)" };
            view! {
                <a href=d.href>
                    <circle cx=f(x_of(d.start_ns, start, end, SCATTER_W)) cy=f(y_of(d.duration_ns as f64, max)) r="4.5"
                        fill=fill fill-opacity="0.7">
                        <title>{d.title}</title>
                    </circle>
                </a>
            }
        })
        .collect_view();
    view! {
        <svg class="scatter" viewBox=format!("0 0 {SCATTER_W} {H}") role="img" aria-label="Trace durations over time">
            {frame(start, end, max, SCATTER_W, |v| format::duration(v as i64))}
            {circles}
        </svg>
    }
}

/// A series for a line chart.
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) colour: String,
    /// (time, value) with gaps where there is no value.
    pub(crate) points: Vec<(i64, Option<f64>)>,
}

/// Lines over time with a legend; `unit` labels the y axis, which reaches
/// at least `floor` (so a flat zero line reads as zero, not as noise).
pub(crate) fn line_chart(
    title: &str,
    lines: Vec<Line>,
    (start, end): (i64, i64),
    floor: f64,
    unit: fn(f64) -> String,
) -> impl IntoView {
    let max = (lines.iter().flat_map(|l| l.points.iter().filter_map(|p| p.1)).fold(0.0, f64::max) * 1.1).max(floor);
    let legend = lines
        .iter()
        .map(|l| {
            let style = format!("background:{}", l.colour);
            view! { <span class="chip"><span class="dot" style=style></span>{l.label.clone()}</span> }
        })
        .collect_view();
    let paths = lines
        .into_iter()
        .map(|l| {
            // A gap (no spans in a step) breaks the line; dots show lone points.
            let mut d = String::new();
            let mut pen_down = false;
            let mut dots = Vec::new();
            for (t, v) in &l.points {
                match v {
                    Some(v) => {
                        let (x, y) = (f(x_of(*t, start, end, W)), f(y_of(*v, max)));
                        d.push_str(&format!("{}{x},{y} ", if pen_down { "L" } else { "M" }));
                        dots.push(view! { <circle cx=x cy=y r="1.8" fill=l.colour.clone() /> });
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            view! { <path d=d fill="none" stroke=l.colour.clone() stroke-width="1.6" />{dots} }
        })
        .collect_view();
    view! {
        <div class="panel chart">
            <h2>{title.to_owned()}</h2>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title.to_owned()>
                {frame(start, end, max, W, unit)}
                {paths}
            </svg>
            <div class="legend">{legend}</div>
        </div>
    }
}

/// Histogram bars: (lower bound ns, upper bound ns, count).
pub(crate) fn histogram(title: &str, buckets: Vec<(i64, i64, i64)>) -> impl IntoView {
    let max = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let width = (W - LEFT - 8.0) / buckets.len().max(1) as f64;
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, (lower, upper, count))| {
            let x = LEFT + i as f64 * width;
            let y = y_of(*count as f64, max);
            let tip = format!("{} – {}: {count}", format::duration(*lower), format::duration(*upper));
            view! {
                <rect x=f(x + 1.0) y=f(y) width=f((width - 2.0).max(1.0)) height=f(H - BOTTOM - y) fill="var(--accent)">
                    <title>{tip}</title>
                </rect>
            }
        })
        .collect_view();
    let labels = (!buckets.is_empty()).then(|| {
        let lower = |i: usize| format::duration(buckets[i].0);
        x_labels(W, [lower(0), lower(buckets.len() / 2), lower(buckets.len() - 1)])
    });
    let grid = y_grid(max, W, move |v| if max < 8.0 { format!("{v:.1}") } else { format!("{v:.0}") });
    view! {
        <div class="panel chart">
            <h2>{title.to_owned()}</h2>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title.to_owned()>
                {grid}
                {bars}
                {labels}
            </svg>
            <div class="legend"><span>"spans per duration bucket (log scale)"</span></div>
        </div>
    }
}

/// Two distributions over the same buckets, overlaid: each bar is the
/// share of its side's spans, so sides of different sizes compare.
/// Buckets: (lower bound ns, upper bound ns, first count, second count).
pub(crate) fn paired_histogram(
    title: &str,
    buckets: Vec<(i64, i64, i64, i64)>,
    (first, second): (&str, &str),
) -> impl IntoView + use<> {
    let totals = buckets.iter().fold((0, 0), |(a, b), x| (a + x.2, b + x.3));
    let share = |count: i64, total: i64| count as f64 / total.max(1) as f64;
    let max = buckets
        .iter()
        .map(|b| share(b.2, totals.0).max(share(b.3, totals.1)))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let width = (W - LEFT - 8.0) / buckets.len().max(1) as f64;
    let colours = ["hsl(210, 70%, 50%)", "hsl(20, 85%, 52%)"];
    let bars = buckets
        .iter()
        .enumerate()
        .flat_map(|(i, &(lower, upper, a, b))| {
            let x = LEFT + i as f64 * width;
            [(a, totals.0, colours[0], first), (b, totals.1, colours[1], second)].map(|(count, total, colour, side)| {
                let y = y_of(share(count, total), max);
                let tip = format!(
                    "{side}: {} – {}: {count} ({:.1}%)",
                    format::duration(lower),
                    format::duration(upper),
                    100.0 * share(count, total)
                );
                view! {
                    <rect x=f(x + 1.0) y=f(y) width=f((width - 2.0).max(1.0)) height=f(H - BOTTOM - y) fill=colour fill-opacity="0.55">
                        <title>{tip}</title>
                    </rect>
                }
            })
        })
        .collect_view();
    let labels = (!buckets.is_empty()).then(|| {
        let lower = |i: usize| format::duration(buckets[i].0);
        x_labels(W, [lower(0), lower(buckets.len() / 2), lower(buckets.len() - 1)])
    });
    let grid = y_grid(max * 100.0, W, |v| format!("{v:.0}%"));
    view! {
        <div class="panel chart">
            <h2>{title.to_owned()}</h2>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title.to_owned()>
                {grid}
                {bars}
                {labels}
            </svg>
            <div class="legend">
                <span><span class="swatch" style=format!("background:{}", colours[0])></span>{first.to_owned()}</span>
                <span><span class="swatch" style=format!("background:{}", colours[1])></span>{second.to_owned()}</span>
                <span>"share of each version's requests per duration bucket (log scale)"</span>
            </div>
        </div>
    }
}
