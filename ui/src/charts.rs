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
    .into_any()
}

/// One bar of a histogram: its bucket's slot, its height of the chart's
/// `max`, and its colour and tooltip.
struct Bar {
    slot: usize,
    value: f64,
    fill: &'static str,
    opacity: f64,
    tip: String,
}

/// Bars over duration buckets (lower, upper bounds in ns), with a y grid
/// labelled by `grid_label` and a legend.
fn bucket_chart(
    title: &str,
    bounds: &[(i64, i64)],
    bars: Vec<Bar>,
    max: f64,
    grid_label: impl Fn(f64) -> String + 'static,
    legend: AnyView,
) -> AnyView {
    let width = (W - LEFT - 8.0) / bounds.len().max(1) as f64;
    let bars = bars
        .into_iter()
        .map(|bar| {
            let (x, y) = (LEFT + bar.slot as f64 * width, y_of(bar.value, max));
            view! {
                <rect x=f(x + 1.0) y=f(y) width=f((width - 2.0).max(1.0)) height=f(H - BOTTOM - y)
                    fill=bar.fill fill-opacity=format!("{}", bar.opacity)>
                    <title>{bar.tip}</title>
                </rect>
            }
        })
        .collect_view();
    let labels = (!bounds.is_empty()).then(|| {
        let lower = |i: usize| format::duration(bounds[i].0);
        x_labels(W, [lower(0), lower(bounds.len() / 2), lower(bounds.len() - 1)])
    });
    let grid = y_grid(max, W, grid_label);
    view! {
        <div class="panel chart">
            <h2>{title.to_owned()}</h2>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title.to_owned()>
                {grid}
                {bars}
                {labels}
            </svg>
            <div class="legend">{legend}</div>
        </div>
    }
    .into_any()
}

/// Histogram bars: (lower bound ns, upper bound ns, count).
pub(crate) fn histogram(title: &str, buckets: Vec<(i64, i64, i64)>) -> impl IntoView + use<> {
    let max = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(slot, (lower, upper, count))| Bar {
            slot,
            value: *count as f64,
            fill: "var(--accent)",
            opacity: 1.0,
            tip: format!("{} – {}: {count}", format::duration(*lower), format::duration(*upper)),
        })
        .collect();
    let bounds: Vec<(i64, i64)> = buckets.iter().map(|b| (b.0, b.1)).collect();
    let label = move |v: f64| if max < 8.0 { format!("{v:.1}") } else { format!("{v:.0}") };
    let legend = view! { <span>"spans per duration bucket (log scale)"</span> }.into_any();
    bucket_chart(title, &bounds, bars, max, label, legend)
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
    let percent = |count: i64, total: i64| 100.0 * count as f64 / total.max(1) as f64;
    let colours = ["hsl(210, 70%, 50%)", "hsl(20, 85%, 52%)"];
    let bars: Vec<Bar> = buckets
        .iter()
        .enumerate()
        .flat_map(|(slot, &(lower, upper, a, b))| {
            [(a, totals.0, colours[0], first), (b, totals.1, colours[1], second)].map(|(count, total, fill, side)| {
                let value = percent(count, total);
                let (lower, upper) = (format::duration(lower), format::duration(upper));
                let tip = format!("{side}: {lower} – {upper}: {count} ({value:.1}%)");
                Bar { slot, value, fill, opacity: 0.55, tip }
            })
        })
        .collect();
    let max = bars.iter().map(|b| b.value).fold(f64::MIN_POSITIVE, f64::max);
    let bounds: Vec<(i64, i64)> = buckets.iter().map(|b| (b.0, b.1)).collect();
    let legend = view! {
        <span><span class="swatch" style=format!("background:{}", colours[0])></span>{first.to_owned()}</span>
        <span><span class="swatch" style=format!("background:{}", colours[1])></span>{second.to_owned()}</span>
        <span>"share of each version's requests per duration bucket (log scale)"</span>
    }
    .into_any();
    bucket_chart(title, &bounds, bars, max, |v| format!("{v:.0}%"), legend)
}
