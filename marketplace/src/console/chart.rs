//! Charts as data: the figures a chart shows (computed from the GMV API's own rows, so the
//! two cannot disagree) and the geometry of an SVG bar chart drawn from them. Templates only
//! place what is computed here.

use std::collections::BTreeMap;

use crate::billing::gmv::{self, Gmv, take_rate};
use crate::error::MarketError;

/// One period's figures in one currency, summed over the GMV rows' groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodFigures {
    pub period: String,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    pub net_revenue_minor: i64,
    /// Net revenue over GMV in basis points, half up, over the sums (not an average of rates).
    pub take_rate_bp: i64,
    pub charges: i64,
}

/// The figures by period for each currency, periods in time order: what the operator and
/// partner charts plot and the table beside each chart lists. Every period between a
/// currency's first and last is there, those without charges as zeros, so bars stand at
/// their place in time rather than evenly over the periods that happen to have sales.
pub fn by_currency(gmv: &Gmv) -> Result<BTreeMap<String, Vec<PeriodFigures>>, MarketError> {
    // Keyed by period start, so periods sort by time whatever their labels.
    let mut sums: BTreeMap<String, BTreeMap<i64, PeriodFigures>> = BTreeMap::new();
    for row in &gmv.rows {
        let sum = sums.entry(row.currency.to_string()).or_default().entry(row.period_start).or_insert_with(|| {
            PeriodFigures {
                period: row.period.clone(),
                gmv_minor: 0,
                refunds_minor: 0,
                net_revenue_minor: 0,
                take_rate_bp: 0,
                charges: 0,
            }
        });
        sum.gmv_minor += row.gmv_minor;
        sum.refunds_minor += row.refunds_minor;
        sum.net_revenue_minor += row.net_revenue_minor;
        sum.charges += row.charges;
    }
    for periods in sums.values_mut() {
        let (Some(&first), Some(&last)) = (periods.keys().next(), periods.keys().next_back()) else { continue };
        let mut start = first;
        while start < last {
            periods.entry(start).or_insert_with(|| PeriodFigures {
                period: gmv::label(start),
                gmv_minor: 0,
                refunds_minor: 0,
                net_revenue_minor: 0,
                take_rate_bp: 0,
                charges: 0,
            });
            start = gmv::period_end(start, gmv.interval)?;
        }
    }
    sums.into_iter()
        .map(|(currency, periods)| {
            let figures = periods
                .into_values()
                .map(|mut figures| {
                    figures.take_rate_bp = take_rate(figures.net_revenue_minor, figures.gmv_minor)?;
                    Ok(figures)
                })
                .collect::<Result<_, MarketError>>()?;
            Ok((currency, figures))
        })
        .collect()
}

/// A bar chart laid out in a `WIDTH` × `HEIGHT` viewBox.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// The y of the zero line.
    pub baseline: i64,
    pub width: i64,
    pub height: i64,
    pub plot_left: i64,
    pub plot_right: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub label: String,
    pub value: String,
    /// Whether the axis label is written (at most about 12 along the axis).
    pub labelled: bool,
    pub label_x: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub y: i64,
    pub text: String,
}

pub const WIDTH: i64 = 720;
pub const HEIGHT: i64 = 240;
const LEFT: i64 = 96;
const RIGHT: i64 = 12;
const TOP: i64 = 12;
const BOTTOM: i64 = 36;

/// Bars for `(label, value)` points, with `format` writing values (ticks and tooltips).
/// Negative values hang below the zero line; an empty series has no bars.
pub fn bars(title: &str, points: &[(String, i64)], format: impl Fn(i64) -> String) -> BarChart {
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(0);
    let min = points.iter().map(|(_, v)| *v).min().unwrap_or(0).min(0);
    let top = nice_ceiling(max);
    let bottom = nice_ceiling(min.saturating_neg()).saturating_neg();
    // In i128: the extremes of i64 amounts neither overflow nor panic.
    let span = (i128::from(top) - i128::from(bottom)).max(1);
    let plot_height = HEIGHT - TOP - BOTTOM;
    let y_of = |value: i64| TOP + ((i128::from(top) - i128::from(value)) * i128::from(plot_height) / span) as i64;
    let baseline = y_of(0);
    let plot_width = WIDTH - LEFT - RIGHT;
    let count = points.len().max(1) as i64;
    let slot = plot_width / count;
    let bar_width = (slot * 7 / 10).clamp(1, 48);
    let label_every = points.len().div_ceil(12).max(1) as i64;
    let bars = points
        .iter()
        .enumerate()
        .map(|(index, (label, value))| {
            let index = index as i64;
            let y = y_of(*value);
            let x = LEFT + index * slot + (slot - bar_width) / 2;
            Bar {
                x,
                y: y.min(baseline),
                width: bar_width,
                height: (y - baseline).abs(),
                label: label.clone(),
                value: format(*value),
                labelled: index % label_every == 0,
                label_x: x + bar_width / 2,
            }
        })
        .collect();
    let ticks = [top, top / 2, 0, bottom / 2, bottom]
        .into_iter()
        .filter(|value| *value >= bottom)
        .fold(Vec::<i64>::new(), |mut kept, value| {
            if !kept.contains(&value) {
                kept.push(value);
            }
            kept
        })
        .into_iter()
        .map(|value| Tick { y: y_of(value), text: format(value) })
        .collect();
    BarChart {
        title: title.to_string(),
        bars,
        ticks,
        baseline,
        width: WIDTH,
        height: HEIGHT,
        plot_left: LEFT,
        plot_right: WIDTH - RIGHT,
    }
}

#[derive(askama::Template)]
#[template(path = "chart.html")]
struct Svg<'a> {
    chart: &'a BarChart,
}

/// The chart as the SVG figure the pages embed.
pub fn svg(chart: &BarChart) -> Result<String, askama::Error> {
    askama::Template::render(&Svg { chart })
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (0 for 0).
fn nice_ceiling(value: i64) -> i64 {
    if value <= 0 {
        return 0;
    }
    let mut scale = 1i64;
    loop {
        for step in [1, 2, 5] {
            let candidate = step * scale;
            if candidate >= value {
                return candidate;
            }
        }
        scale = match scale.checked_mul(10) {
            Some(next) => next,
            None => return value,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::gmv::{GmvRow, GroupBy, Interval};

    fn row(period: &str, start: i64, currency: &str, group: &str, gmv: i64, refunds: i64, net: i64) -> GmvRow {
        GmvRow {
            period: period.into(),
            period_start: start,
            period_end: start + 1,
            currency: currency.parse().unwrap(),
            group: group.into(),
            gmv_minor: gmv,
            refunds_minor: refunds,
            net_revenue_minor: net,
            take_rate_bp: if gmv == 0 { 0 } else { net * 10_000 / gmv },
            charges: 1,
        }
    }

    #[test]
    fn figures_sum_the_groups_of_each_period_and_never_mix_currencies() {
        let gmv = Gmv {
            interval: Interval::Month,
            by: GroupBy::Plugin,
            from: 0,
            to: 10,
            rows: vec![
                row("2026-02", 2, "USD", "acme/a", 10_000, 0, 1_500),
                row("2026-01", 1, "USD", "acme/a", 5_000, 500, 700),
                row("2026-01", 1, "USD", "acme/b", 3_000, 0, 450),
                row("2026-01", 1, "EUR", "acme/a", 999, 0, 0),
            ],
        };
        let figures = by_currency(&gmv).unwrap();
        assert_eq!(figures.keys().collect::<Vec<_>>(), ["EUR", "USD"]);
        assert_eq!(
            figures["USD"],
            vec![
                PeriodFigures {
                    period: "2026-01".into(),
                    gmv_minor: 8_000,
                    refunds_minor: 500,
                    net_revenue_minor: 1_150,
                    take_rate_bp: 1_438,
                    charges: 2
                },
                PeriodFigures {
                    period: "2026-02".into(),
                    gmv_minor: 10_000,
                    refunds_minor: 0,
                    net_revenue_minor: 1_500,
                    take_rate_bp: 1_500,
                    charges: 1
                },
            ]
        );
        assert_eq!(figures["EUR"][0].gmv_minor, 999);
    }

    #[test]
    fn periods_without_charges_stand_in_their_place_as_zeros() {
        const DAY: i64 = 86_400_000;
        let day = 20_000 * DAY;
        let gmv = Gmv {
            interval: Interval::Day,
            by: GroupBy::Currency,
            from: day,
            to: day + 10 * DAY,
            rows: vec![
                row("2024-10-07", day + 3 * DAY, "USD", "USD", 700, 0, 70),
                row("2024-10-04", day, "USD", "USD", 500, 0, 50),
                row("2024-10-05", day + DAY, "EUR", "EUR", 100, 0, 10),
            ],
        };
        let figures = by_currency(&gmv).unwrap();
        let usd: Vec<(&str, i64)> = figures["USD"].iter().map(|f| (f.period.as_str(), f.gmv_minor)).collect();
        assert_eq!(usd, [("2024-10-04", 500), ("2024-10-05", 0), ("2024-10-06", 0), ("2024-10-07", 700)]);
        assert_eq!(figures["EUR"].len(), 1, "one period: nothing to fill");
    }

    #[test]
    fn bars_are_scaled_to_a_round_top_and_hang_below_zero_when_negative() {
        let points = vec![("a".to_string(), 40), ("b".to_string(), 100), ("c".to_string(), -50)];
        let chart = bars("t", &points, |v| v.to_string());
        // Top 100, bottom -50: 150 units over 192 px.
        assert_eq!(chart.baseline, TOP + 128);
        assert_eq!(chart.bars[1].y, TOP);
        assert_eq!(chart.bars[1].height, 128);
        assert_eq!(chart.bars[0].height, 52);
        assert_eq!(chart.bars[2].y, chart.baseline);
        assert_eq!(chart.bars[2].height, 64);
        assert_eq!(chart.ticks.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), ["100", "50", "0", "-25", "-50"]);
        assert!(chart.bars.iter().all(|b| b.x >= LEFT && b.x + b.width <= WIDTH - RIGHT));
    }

    #[test]
    fn a_year_of_days_labels_about_a_dozen_and_an_empty_series_draws_nothing() {
        let points: Vec<(String, i64)> = (0..365).map(|d| (format!("d{d}"), d)).collect();
        let chart = bars("t", &points, |v| v.to_string());
        assert_eq!(chart.bars.len(), 365);
        assert_eq!(chart.bars.iter().filter(|b| b.labelled).count(), 12);
        let extremes = bars("t", &[("max".to_string(), i64::MAX), ("min".to_string(), i64::MIN)], |v| v.to_string());
        assert_eq!(extremes.bars[0].y, TOP);
        assert_eq!(extremes.bars[1].y + extremes.bars[1].height, HEIGHT - BOTTOM);
        let empty = bars("t", &[], |v| v.to_string());
        assert!(empty.bars.is_empty());
        assert_eq!(empty.ticks.len(), 1);
        let drawn = svg(&chart).unwrap();
        assert_eq!(drawn.matches("<rect ").count(), 365);
        assert!(drawn.contains("<title>d364: 364</title>"), "{drawn}");
        assert_eq!(nice_ceiling(101), 200);
        assert_eq!(nice_ceiling(5_000), 5_000);
        assert_eq!(nice_ceiling(5_001), 10_000);
    }
}
