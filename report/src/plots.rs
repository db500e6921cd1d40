//! Charts as data ([`Chart`]) and their drawing with plotters, to SVG (inlined in
//! report.html) and PNG (for sharing). Line charts carry one line per stack; bar charts one
//! group per stack, with 95% intervals as whiskers.

use plotters::{coord::Shift, prelude::*};

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How an axis is scaled and labelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Linear,
    Log,
    /// HdrHistogram's percentile axis: x = 1/(1-q) on a log scale, labelled as percentiles.
    Nines,
}

/// One bar: a value and, with two or more repetitions, its 95% interval.
#[derive(Debug, Clone)]
pub struct Bar {
    pub name: String,
    pub value: f64,
    pub ci95: Option<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub enum Chart {
    Lines {
        title: String,
        x_desc: String,
        y_desc: String,
        x_axis: Axis,
        y_axis: Axis,
        series: Vec<Series>,
        /// Vertical lines at these x values: events on a timeline.
        markers: Vec<f64>,
    },
    /// Groups of bars (one group per stack) drawn nested, largest behind, on a log axis
    /// when `log` is set.
    Bars {
        title: String,
        y_desc: String,
        log: bool,
        groups: Vec<(String, Vec<Bar>)>,
    },
}

impl Chart {
    fn title(&self) -> &str {
        match self {
            Chart::Lines { title, .. } | Chart::Bars { title, .. } => title,
        }
    }
}

const SIZE: (u32, u32) = (600, 360);

fn color(i: usize) -> RGBColor {
    let p = Palette99::pick(i).to_rgba();
    RGBColor(p.0, p.1, p.2)
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Span of the values, padded; on log axes strictly positive.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if lo > hi {
        return (1.0, 10.0);
    }
    if log {
        lo /= 1.5;
        hi *= 1.5;
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-9);
        lo = (lo - pad)
            .min(0.0)
            .max(if lo >= 0.0 { 0.0 } else { lo - pad });
        hi += pad;
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

fn nines_label(x: f64) -> String {
    let pct = (1.0 - 1.0 / x) * 100.0;
    let s = format!("{pct:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn value_label(v: f64) -> String {
    let short = |x: f64| {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if v.abs() >= 1e6 {
        format!("{}M", short(v / 1e6))
    } else if v.abs() >= 1e3 {
        format!("{}k", short(v / 1e3))
    } else {
        short(v)
    }
}

/// A chart builder with the caption and the label areas every chart shares.
fn builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    chart: &Chart,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(root);
    b.caption(chart.title(), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    b
}

/// The series legend every chart draws, top left.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), String> {
    let Chart::Lines {
        x_desc,
        y_desc,
        x_axis,
        y_axis,
        series,
        markers,
        ..
    } = chart
    else {
        return Err("not a line chart".into());
    };
    let xlog = *x_axis != Axis::Linear;
    let ylog = *y_axis != Axis::Linear;
    let (x0, x1) = range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        xlog,
    );
    let (y0, y1) = range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        ylog,
    );
    let (x0, x1) = if *x_axis == Axis::Nines {
        (1.0, x1.max(100.0))
    } else {
        (x0, x1)
    };
    let mut b = builder(root, chart);
    let x_fmt = |x: &f64| match x_axis {
        Axis::Nines => nines_label(*x),
        _ => value_label(*x),
    };
    let y_fmt = |y: &f64| value_label(*y);
    macro_rules! finish {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc(x_desc.as_str())
                .y_desc(y_desc.as_str())
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .draw()
                .map_err(err)?;
            for &m in markers.iter().filter(|m| (x0..=x1).contains(*m)) {
                c.draw_series(std::iter::once(PathElement::new(
                    vec![(m, y0), (m, y1)],
                    RGBColor(230, 120, 0).mix(0.8).stroke_width(1),
                )))
                .map_err(err)?;
            }
            for (i, s) in series.iter().enumerate() {
                let col = color(i);
                c.draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    col.stroke_width(2),
                ))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
            }
            legend(&mut c)?;
        }};
    }
    match (xlog, ylog) {
        (true, true) => finish!(b
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(err)?),
        (true, false) => finish!(b
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(err)?),
        (false, true) => finish!(b
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(err)?),
        (false, false) => finish!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?),
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), String> {
    let Chart::Bars {
        y_desc,
        log,
        groups,
        ..
    } = chart
    else {
        return Err("not a bar chart".into());
    };
    let all = groups.iter().flat_map(|(_, bars)| {
        bars.iter()
            .flat_map(|b| [Some(b.value), b.ci95.map(|c| c.0), b.ci95.map(|c| c.1)])
            .flatten()
    });
    let (mut y0, y1) = range(all, *log);
    if !*log {
        y0 = 0.0;
    }
    let n = groups.len().max(1);
    let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
    let x_fmt = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    let y_fmt = |y: &f64| value_label(*y);
    macro_rules! finish {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .disable_x_mesh()
                .y_desc(y_desc.as_str())
                .x_labels(n)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .draw()
                .map_err(err)?;
            let kinds: Vec<String> = groups
                .first()
                .map(|(_, b)| b.iter().map(|b| b.name.clone()).collect())
                .unwrap_or_default();
            // Largest first, so every bar stays visible in front of the bigger ones.
            for (k, kind) in kinds.iter().enumerate().rev() {
                let col = color(k);
                let rects = groups.iter().enumerate().filter_map(|(i, (_, bars))| {
                    let b = bars.get(k)?;
                    let mut r = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), y0),
                            (SegmentValue::Exact(i + 1), b.value.max(y0)),
                        ],
                        col.mix(0.75).filled(),
                    );
                    r.set_margin(0, 0, 14 + 6 * k as u32, 14 + 6 * k as u32);
                    Some(r)
                });
                c.draw_series(rects)
                    .map_err(err)?
                    .label(kind.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.filled())
                    });
                let whiskers = groups.iter().enumerate().filter_map(|(i, (_, bars))| {
                    let b = bars.get(k)?;
                    let (lo, hi) = b.ci95?;
                    Some(ErrorBar::new_vertical(
                        SegmentValue::CenterOf(i),
                        lo.max(y0),
                        b.value.max(y0),
                        hi,
                        BLACK.stroke_width(1),
                        8,
                    ))
                });
                c.draw_series(whiskers).map_err(err)?;
            }
            legend(&mut c)?;
        }};
    }
    let mut b = builder(root, chart);
    if *log {
        finish!(b
            .build_cartesian_2d((0..n).into_segmented(), (y0..y1).log_scale())
            .map_err(err)?);
    } else {
        finish!(b
            .build_cartesian_2d((0..n).into_segmented(), y0..y1)
            .map_err(err)?);
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    match chart {
        Chart::Lines { .. } => draw_lines(&root, chart)?,
        Chart::Bars { .. } => draw_bars(&root, chart)?,
    }
    root.present().map_err(err)
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> Result<String, String> {
    let mut s = String::new();
    draw(
        SVGBackend::with_string(&mut s, SIZE).into_drawing_area(),
        chart,
    )?;
    Ok(s)
}

/// The chart as a PNG file.
pub fn png(chart: &Chart, path: &std::path::Path) -> Result<(), String> {
    draw(BitMapBackend::new(path, SIZE).into_drawing_area(), chart)
}

/// Font files tried for chart text, in order (Debian/Ubuntu `fonts-dejavu-core`).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for chart text (plotters lays text out with it, in SVG and PNG alike).
/// Done once per process; the error names the package to install.
pub fn init_fonts() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        for f in FONTS {
            if let Ok(bytes) = std::fs::read(f) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{f} is not a usable font"));
            }
        }
        Err(format!(
            "no font for chart text (looked for {}); install one with: apt-get install fonts-dejavu-core",
            FONTS.join(", ")
        ))
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_labels_are_short() {
        assert_eq!(value_label(0.7000000000000001), "0.7");
        assert_eq!(value_label(2500.0), "2.5k");
        assert_eq!(value_label(3_000_000.0), "3M");
        assert_eq!(value_label(150.0), "150");
    }

    #[test]
    fn nines_axis_labels_read_as_percentiles() {
        assert_eq!(nines_label(1.0), "0%");
        assert_eq!(nines_label(10.0), "90%");
        assert_eq!(nines_label(1000.0), "99.9%");
    }

    #[test]
    fn charts_render_to_svg_with_every_series_named() {
        init_fonts().expect("a font (fonts-dejavu-core)");
        let lines = Chart::Lines {
            title: "vote latency".into(),
            x_desc: "percentile".into(),
            y_desc: "µs".into(),
            x_axis: Axis::Nines,
            markers: vec![],
            y_axis: Axis::Log,
            series: vec![
                Series {
                    name: "quic-tls".into(),
                    points: vec![(1.0, 100.0), (10.0, 150.0), (1000.0, 900.0)],
                },
                Series {
                    name: "quic-tls+wg-inproc".into(),
                    points: vec![(1.0, 120.0), (10.0, 180.0), (1000.0, 1500.0)],
                },
            ],
        };
        let s = svg(&lines).expect("renders");
        assert!(
            s.starts_with("<svg") && s.contains("quic-tls+wg-inproc"),
            "{}",
            &s[..200]
        );
        let bars = Chart::Bars {
            title: "latency".into(),
            y_desc: "µs".into(),
            log: true,
            groups: vec![(
                "quic-tls".into(),
                vec![
                    Bar {
                        name: "p50".into(),
                        value: 150.0,
                        ci95: Some((140.0, 160.0)),
                    },
                    Bar {
                        name: "p99".into(),
                        value: 8000.0,
                        ci95: None,
                    },
                ],
            )],
        };
        let s = svg(&bars).expect("renders");
        assert!(s.contains("p99") && s.contains("quic-tls"));
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("b.png");
        png(&bars, &p).expect("png");
        assert!(std::fs::metadata(&p).expect("written").len() > 1000);
    }
}
