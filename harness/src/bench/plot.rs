//! `latency.svg` next to `bench.json`: per state, one bar per kernel — the per-call cost over
//! the untraced twin (the `median` of bench.json), with whiskers over the range of the round
//! medians (zero wide under icount). Drawn with `plotters`' SVG backend (no fonts needed: the
//! SVG's text is left to the viewer).

use plotters::prelude::*;

use super::latency::{BenchReport, State, TransitionKind};

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 560;

/// The SVG document.
pub fn latency_svg(r: &BenchReport) -> Result<String, String> {
    let states: Vec<State> =
        State::ALL.into_iter().filter(|s| r.kernels.iter().any(|k| k.states.iter().any(|x| x.state == *s))).collect();
    let n_kernels = r.kernels.len().max(1);
    // Per kernel and state: (median, lowest and highest round median).
    let bars: Vec<Vec<Option<(f64, f64, f64)>>> = r
        .kernels
        .iter()
        .map(|k| {
            states
                .iter()
                .map(|st| {
                    k.states.iter().find(|x| x.state == *st).map(|s| {
                        let lo = s.round_medians.iter().copied().fold(s.median, f64::min);
                        let hi = s.round_medians.iter().copied().fold(s.median, f64::max);
                        (s.median, lo, hi)
                    })
                })
                .collect()
        })
        .collect();
    let top = bars.iter().flatten().flatten().map(|b| b.2).fold(1.0, f64::max) * 1.12;
    let bottom = bars.iter().flatten().flatten().map(|b| b.1).fold(0.0, f64::min);
    let mut svg = String::new();
    {
        let e = |e: DrawingAreaErrorKind<std::io::Error>| format!("drawing latency.svg: {e}");
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("livepatch handler latency per call, clock {} ({})", r.clock, r.unit), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..states.len() as f64, bottom..top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(format!("{} over the untraced twin", r.unit))
            .draw()
            .map_err(e)?;
        // State names under the middle of each group.
        chart
            .draw_series(states.iter().enumerate().map(|(i, st)| {
                EmptyElement::at((i as f64 + 0.5, bottom))
                    + Text::new(st.name().to_string(), (-(st.name().len() as i32) * 7 / 2, 8), ("sans-serif", 14))
            }))
            .map_err(e)?;
        let slot = 0.8 / n_kernels as f64;
        for (ki, k) in r.kernels.iter().enumerate() {
            let color = Palette99::pick(ki).to_rgba();
            let x0 = |i: usize| i as f64 + 0.1 + ki as f64 * slot;
            chart
                .draw_series(bars[ki].iter().enumerate().filter_map(|(i, b)| {
                    b.map(|(m, ..)| Rectangle::new([(x0(i), 0.0), (x0(i) + slot * 0.9, m)], color.filled()))
                }))
                .map_err(e)?
                .label(format!("{} ({})", k.spec, k.release))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart
                .draw_series(bars[ki].iter().enumerate().filter_map(|(i, b)| {
                    b.filter(|(_, lo, hi)| hi > lo).map(|(m, lo, hi)| {
                        ErrorBar::new_vertical(x0(i) + slot * 0.45, lo, m, hi, BLACK.stroke_width(1), 4)
                    })
                }))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// `transitions.svg`: per kernel, the distribution of the loaded transition times (guest ms,
/// from the kernel log; the poll's where the log lacks one): one dot per run, enable and disable
/// side by side, a bar at each median.
pub fn transitions_svg(r: &BenchReport) -> Result<String, String> {
    let kinds = [(TransitionKind::Enable, "enable", BLUE), (TransitionKind::Disable, "disable", RED)];
    let values = |ki: usize, kind: TransitionKind| -> Vec<f64> {
        r.kernels[ki]
            .loaded
            .as_ref()
            .map(|l| l.of_kind(kind).map(|x| x.log_ms.unwrap_or(x.poll_ms)).collect())
            .unwrap_or_default()
    };
    let top =
        (0..r.kernels.len()).flat_map(|ki| kinds.iter().flat_map(move |k| values(ki, k.0))).fold(1.0, f64::max) * 1.15;
    let hold = r.kernels.iter().find_map(|k| k.loaded.as_ref()).map(|l| (l.tasks, l.hold_ms));
    let mut svg = String::new();
    {
        let e = |e: DrawingAreaErrorKind<std::io::Error>| format!("drawing transitions.svg: {e}");
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let caption = match hold {
            Some((t, h)) => format!("livepatch transition time, {t} tasks asleep in the patched function for {h} ms"),
            None => "livepatch transition time under load".into(),
        };
        let n = r.kernels.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("guest ms, request to complete (kernel log)")
            .draw()
            .map_err(e)?;
        chart
            .draw_series(r.kernels.iter().enumerate().map(|(i, k)| {
                let name = format!("{} ({})", k.spec, k.release);
                let w = name.len() as i32 * 7 / 2;
                EmptyElement::at((i as f64 + 0.5, 0.0)) + Text::new(name, (-w, 8), ("sans-serif", 14))
            }))
            .map_err(e)?;
        for (j, (kind, label, color)) in kinds.into_iter().enumerate() {
            let x = move |ki: usize, run: usize, of: usize| {
                ki as f64 + 0.3 + 0.4 * j as f64 + (run as f64 / of.max(1) as f64 - 0.5) * 0.12
            };
            let dots: Vec<(f64, f64)> = (0..r.kernels.len())
                .flat_map(|ki| {
                    let v = values(ki, kind);
                    let of = v.len();
                    v.into_iter().enumerate().map(move |(i, y)| (x(ki, i, of), y)).collect::<Vec<_>>()
                })
                .collect();
            chart
                .draw_series(dots.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
            chart
                .draw_series((0..r.kernels.len()).filter_map(|ki| {
                    let m = super::stats::median(&values(ki, kind))?;
                    let c = ki as f64 + 0.3 + 0.4 * j as f64;
                    Some(PathElement::new(vec![(c - 0.12, m), (c + 0.12, m)], color.stroke_width(2)))
                }))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::latency::{fixture, Clock};

    #[test]
    fn every_state_and_kernel_is_drawn() {
        let k = |spec: &str, patched: u64| {
            fixture::kernel(Clock::Icount, spec, &format!("{spec}.0-1-amd64"), patched, vec![])
        };
        let r = fixture::report(Clock::Icount, vec![k("6.1", 8500), k("6.12", 8700)]);
        let svg = latency_svg(&r).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        for s in ["unpatched", "patched", "6.1 (6.1.0-1-amd64)", "6.12 (6.12.0-1-amd64)", "instructions/call"] {
            assert!(svg.contains(s), "{s} missing");
        }
        // Two kernels × two states, the legend's two swatches and the background.
        assert!(svg.matches("<rect").count() >= 6, "{svg}");
    }

    #[test]
    fn every_loaded_run_is_a_dot() {
        use crate::bench::latency::TransitionKind;
        use crate::bench::loaded::{LoadedResult, LoadedRun};
        let mut k = fixture::kernel(Clock::Icount, "6.1", "6.1.0-1-amd64", 8500, vec![]);
        let run = |kind, ms| LoadedRun {
            kind,
            poll_ms: ms,
            log_ms: Some(ms),
            released_ms: None,
            retries: Some(2),
            fake_signals: false,
            host_ms: 1.0,
        };
        k.loaded = Some(LoadedResult {
            tasks: 4,
            hold_ms: 2000,
            dyndbg: None,
            wall_s: 1.0,
            runs: vec![
                run(TransitionKind::Enable, 2000.0),
                run(TransitionKind::Disable, 2100.0),
                run(TransitionKind::Enable, 2050.0),
            ],
            guest: None,
        });
        let svg = transitions_svg(&fixture::report(Clock::Icount, vec![k])).unwrap();
        assert!(svg.contains("6.1 (6.1.0-1-amd64)") && svg.contains("4 tasks") && svg.contains("2000 ms"), "{svg}");
        // Three runs, the legend's two.
        assert!(svg.matches("<circle").count() >= 5, "{svg}");
    }
}
