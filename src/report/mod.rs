//! `postmark-elt report`: one self-contained HTML page (inline SVG and CSS; no script, no
//! network) from a synced DuckDB file, built on the analyst models the sync creates: totals and
//! rates for the date range at the top, then sends, rates and bounces per US-Eastern day, the
//! message streams, the bounce reasons and the client mix, each chart with its table.

mod page;
mod svg;

use std::path::Path;

use duckdb::Connection;

use crate::sinks::SinkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    /// A share, shown as a percentage.
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bars,
    StackedBars,
    Lines,
    /// One bar per category.
    Horizontal,
}

pub struct Series {
    pub name: &'static str,
    pub color: &'static str,
    pub values: Vec<f64>,
}

pub struct Chart {
    pub title: &'static str,
    pub note: String,
    pub kind: Kind,
    pub unit: Unit,
    pub labels: Vec<String>,
    /// Per label: the day is only partly synced.
    pub partial: Vec<bool>,
    pub series: Vec<Series>,
    /// The table under the chart, when it shows more than the chart's own numbers.
    pub table: Option<page::Table>,
}

const BLUE: &str = "#2f6fde";
const RED: &str = "#e4572e";
const TEAL: &str = "#17a398";
const YELLOW: &str = "#f3a712";
const PURPLE: &str = "#7b5ea7";

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fail(path: &Path, context: &str, e: impl Into<crate::sinks::BoxError>) -> SinkError {
    SinkError::Write {
        dest: format!("DuckDB database {}", path.display()),
        context: context.to_string(),
        source: e.into(),
    }
}

/// Rows of `(label, numbers...)`; a missing model gives no rows (its streams were not synced).
fn rows(conn: &Connection, path: &Path, sql: &str, width: usize) -> Result<Vec<(String, Vec<f64>)>, SinkError> {
    let mut stmt = match conn.prepare(sql) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("does not exist") => return Ok(Vec::new()),
        Err(e) => return Err(fail(path, "preparing a report query", e)),
    };
    let mapped = stmt
        .query_map([], |r| {
            let label: Option<String> = r.get(0)?;
            let values = (1..=width)
                .map(|i| r.get::<_, Option<f64>>(i).map(|v| v.unwrap_or(0.0)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((label.unwrap_or_else(|| "(none)".to_string()), values))
        })
        .map_err(|e| fail(path, "running a report query", e))?;
    mapped.collect::<Result<_, _>>().map_err(|e| fail(path, "reading a report query", e))
}

fn chart(title: &'static str, note: String, kind: Kind, unit: Unit, data: &[(String, Vec<f64>)], series: &[(&'static str, &'static str, usize)]) -> Chart {
    Chart {
        title,
        note,
        kind,
        unit,
        labels: data.iter().map(|(l, _)| l.clone()).collect(),
        partial: vec![false; data.len()],
        series: series
            .iter()
            .map(|(name, color, i)| Series {
                name,
                color,
                values: data.iter().map(|(_, v)| v[*i]).collect(),
            })
            .collect(),
        table: None,
    }
}

/// The totals at the top of the page.
pub struct Totals {
    pub first_day: Option<String>,
    pub last_day: Option<String>,
    pub figures: Vec<(&'static str, String, Option<String>)>,
}

const DAILY: &str = "SELECT day::VARCHAR, sum(sent), sum(bounced), sum(hard_bounces), sum(soft_bounces), sum(spam_complaints), \
     sum(unique_opens), sum(unique_clicks), sum(messages) FROM postmark_deliverability_daily GROUP BY day ORDER BY day";

/// Which days are only partly synced: the last when it is still going on (Postmark's day, in
/// New York), the first when its earliest message came more than an hour after its midnight
/// (the sync's `start_date` cut into it).
fn partial_days(conn: &Connection, days: &[String]) -> Vec<bool> {
    use chrono_tz::America::New_York;
    let today = chrono::Utc::now().with_timezone(&New_York).date_naive().to_string();
    let earliest: Option<i64> = conn
        .query_row("SELECT epoch_us(min(received_at)) FROM messages_outbound", [], |r| r.get(0))
        .ok()
        .flatten();
    let one_am = chrono::NaiveTime::from_hms_opt(1, 0, 0).unwrap_or_default();
    let first_late = earliest
        .and_then(chrono::DateTime::from_timestamp_micros)
        .is_some_and(|t| t.with_timezone(&New_York).time() > one_am);
    days.iter()
        .enumerate()
        .map(|(i, d)| (i == 0 && first_late) || (i + 1 == days.len() && *d >= today))
        .collect()
}

/// Renders the report of the database `args` names as one HTML page.
pub fn render(args: &crate::cli::ReadArgs) -> Result<String, SinkError> {
    let db = args.path.as_path();
    let conn = crate::sinks::duckdb::read_only(db, &args.schema, args.lock_timeout())?;
    let daily = rows(&conn, db, DAILY, 8)?;
    let days: Vec<String> = daily.iter().map(|(d, _)| d.clone()).collect();
    let partial = partial_days(&conn, &days);
    let sum = |i: usize| daily.iter().map(|(_, v)| v[i]).sum::<f64>();
    let rate = |n: f64, of: f64| (of > 0.0).then(|| svg::format_value(n / of, Unit::Percent));
    let sent = sum(0);
    let totals = Totals {
        first_day: days.first().cloned(),
        last_day: days.last().cloned(),
        figures: vec![
            ("Messages", svg::group_thousands(sum(7) as i64), None),
            ("Sent (recipients)", svg::group_thousands(sent as i64), None),
            ("Bounced", svg::group_thousands(sum(1) as i64), rate(sum(1), sent)),
            ("Spam complaints", svg::group_thousands(sum(4) as i64), rate(sum(4), sent)),
            ("Unique opens", svg::group_thousands(sum(5) as i64), rate(sum(5), sent)),
            ("Unique clicks", svg::group_thousands(sum(6) as i64), rate(sum(6), sent)),
        ],
    };
    let rates: Vec<(String, Vec<f64>)> = daily
        .iter()
        .map(|(d, v)| {
            let of = |n: f64| if v[0] > 0.0 { n / v[0] } else { 0.0 };
            (d.clone(), vec![of(v[1]), of(v[4]), of(v[5]), of(v[6])])
        })
        .collect();
    let streams = rows(
        &conn,
        db,
        "SELECT coalesce(message_stream, '(none)'), sum(sent), sum(bounced) / nullif(sum(sent), 0), sum(spam_complaints) / nullif(sum(sent), 0), \
         sum(unique_opens) / nullif(sum(sent), 0), sum(unique_clicks) / nullif(sum(sent), 0) FROM postmark_deliverability_daily GROUP BY ALL ORDER BY 2 DESC",
        5,
    )?;
    let reasons = rows(
        &conn,
        db,
        "SELECT coalesce(type, 'unknown'), sum(bounces) FROM postmark_bounce_reasons GROUP BY ALL ORDER BY 2 DESC LIMIT 12",
        1,
    )?;
    let platforms = rows(
        &conn,
        db,
        "SELECT coalesce(platform, 'Unknown'), sum(events) FROM postmark_client_mix WHERE event = 'open' GROUP BY ALL ORDER BY 2 DESC",
        1,
    )?;
    let clients = rows(
        &conn,
        db,
        "SELECT coalesce(client_family, 'Unknown'), sum(events) FROM postmark_client_mix WHERE event = 'open' GROUP BY ALL ORDER BY 2 DESC LIMIT 10",
        1,
    )?;
    let stream_table = page::Table {
        head: vec!["message stream", "sent", "bounce rate", "spam rate", "open rate", "click rate"],
        rows: streams
            .iter()
            .map(|(s, v)| {
                let mut row = vec![s.clone(), svg::group_thousands(v[0] as i64)];
                row.extend(v[1..].iter().map(|r| svg::format_value(*r, Unit::Percent)));
                row
            })
            .collect(),
    };
    let with_partial = |mut c: Chart| {
        c.partial = partial.clone();
        c
    };
    let day_note = "US-Eastern send days (Postmark's calendar), all message streams; hatched days are only partly synced.";
    let charts = vec![
        with_partial(chart(
            "Sent per day",
            format!("{day_note} One per recipient."),
            Kind::Bars,
            Unit::Count,
            &daily,
            &[("sent", BLUE, 0)],
        )),
        with_partial(chart(
            "Rates per day",
            format!("{day_note} The bounces, complaints, opens and clicks of each day's mail, over its sent."),
            Kind::Lines,
            Unit::Percent,
            &rates,
            &[
                ("bounce rate", RED, 0),
                ("spam rate", PURPLE, 1),
                ("open rate", TEAL, 2),
                ("click rate", YELLOW, 3),
            ],
        )),
        with_partial(chart(
            "Bounces per day",
            format!("{day_note} Spam complaints apart from bounces."),
            Kind::StackedBars,
            Unit::Count,
            &daily,
            &[("hard", RED, 2), ("soft", YELLOW, 3), ("spam complaints", PURPLE, 4)],
        )),
        Chart {
            table: Some(stream_table),
            ..chart(
                "Sent per message stream",
                "The whole date range; rates in the table.".to_string(),
                Kind::Horizontal,
                Unit::Count,
                &streams,
                &[("sent", BLUE, 0)],
            )
        },
        chart(
            "Bounce reasons",
            "Bounces in the date range, by type.".to_string(),
            Kind::Horizontal,
            Unit::Count,
            &reasons,
            &[("bounces", RED, 0)],
        ),
        chart(
            "Opens by platform",
            "Opens in the date range.".to_string(),
            Kind::Horizontal,
            Unit::Count,
            &platforms,
            &[("opens", TEAL, 0)],
        ),
        chart(
            "Opens by email client",
            "The ten most used.".to_string(),
            Kind::Horizontal,
            Unit::Count,
            &clients,
            &[("opens", BLUE, 0)],
        ),
    ];
    Ok(page::html(db, &totals, &charts))
}
