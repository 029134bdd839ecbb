//! `postmark-elt report`: a self-contained HTML page of charts from a synced DuckDB file, for
//! people who would rather look than query. Charts are inline SVG: no script, no network.

use std::fmt::Write as _;
use std::path::Path;

use duckdb::Connection;

use crate::sinks::SinkError;

/// One chart: a title, a unit, and labelled series of values.
struct Chart {
    title: &'static str,
    note: &'static str,
    labels: Vec<String>,
    series: Vec<(&'static str, &'static str, Vec<f64>)>,
}

const COLORS: [&str; 4] = ["#2f6fde", "#e4572e", "#17a398", "#f3a712"];

fn fail(path: &Path, context: &str, e: impl Into<crate::sinks::BoxError>) -> SinkError {
    SinkError::Write {
        dest: format!("DuckDB database {}", path.display()),
        context: context.to_string(),
        source: e.into(),
    }
}

/// Rows of `(label, values...)`; an absent table gives no rows (that stream was not synced).
fn rows(conn: &Connection, path: &Path, sql: &str, width: usize) -> Result<Vec<(String, Vec<f64>)>, SinkError> {
    let mut stmt = match conn.prepare(sql) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("does not exist") => return Ok(Vec::new()),
        Err(e) => return Err(fail(path, "preparing a report query", e)),
    };
    let mapped = stmt
        .query_map([], |r| {
            let label: String = r.get(0)?;
            let mut values = Vec::with_capacity(width);
            for i in 1..=width {
                values.push(r.get::<_, Option<f64>>(i)?.unwrap_or(0.0));
            }
            Ok((label, values))
        })
        .map_err(|e| fail(path, "running a report query", e))?;
    mapped.collect::<Result<_, _>>().map_err(|e| fail(path, "reading a report query", e))
}

fn chart(
    conn: &Connection,
    path: &Path,
    title: &'static str,
    note: &'static str,
    names: &[(&'static str, &'static str)],
    sql: &str,
) -> Result<Chart, SinkError> {
    let data = rows(conn, path, sql, names.len())?;
    let labels = data.iter().map(|(l, _)| l.clone()).collect();
    let series = names
        .iter()
        .enumerate()
        .map(|(i, (name, color))| (*name, *color, data.iter().map(|(_, v)| v[i]).collect()))
        .collect();
    Ok(Chart { title, note, labels, series })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Grouped vertical bars, one group per label.
fn svg(chart: &Chart) -> String {
    let (w, h, left, bottom, top) = (900.0, 320.0, 60.0, 70.0, 20.0);
    let max = chart.series.iter().flat_map(|(_, _, v)| v.iter().copied()).fold(0.0_f64, f64::max).max(1.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        escape(chart.title)
    );
    let plot_h = h - bottom - top;
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{w}\" y2=\"{}\" stroke=\"#999\"/>",
        h - bottom,
        h - bottom
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{max:.0}</text>",
        left - 6.0,
        top + 4.0
    );
    if chart.labels.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"middle\" fill=\"#777\">no data synced for this chart</text>",
            w / 2.0,
            h / 2.0
        );
        return out + "</svg>";
    }
    let group = (w - left) / chart.labels.len() as f64;
    let bar = (group * 0.8 / chart.series.len() as f64).max(1.0);
    for (i, label) in chart.labels.iter().enumerate() {
        let x0 = left + i as f64 * group + group * 0.1;
        for (j, (name, color, values)) in chart.series.iter().enumerate() {
            let v = values[i];
            let bh = plot_h * v / max;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} {}: {v:.0}</title></rect>",
                x0 + j as f64 * bar,
                h - bottom - bh,
                bar,
                bh,
                escape(label),
                escape(name)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" transform=\"rotate(-40 {:.1} {:.1})\" text-anchor=\"end\">{}</text>",
            x0 + group * 0.4,
            h - bottom + 14.0,
            x0 + group * 0.4,
            h - bottom + 14.0,
            escape(label)
        );
    }
    out + "</svg>"
}

/// Renders the report of the database at `db` as one HTML page.
pub fn render(args: &crate::cli::ReadArgs) -> Result<String, SinkError> {
    let db = args.path.as_path();
    let conn = crate::sinks::duckdb::read_only(db, &args.schema, args.lock_timeout())?;
    let charts = [
        chart(
            &conn,
            db,
            "Deliverability funnel per day",
            "US-Eastern days, all message streams: sent, bounced, opened (unique), clicked (unique links).",
            &[("sent", COLORS[0]), ("bounced", COLORS[1]), ("opened", COLORS[2]), ("clicked", COLORS[3])],
            "SELECT date::VARCHAR, sum(sent)::DOUBLE, sum(bounced)::DOUBLE, sum(unique_opens)::DOUBLE, sum(unique_links_clicked)::DOUBLE \
             FROM stats_outbound_overview GROUP BY date ORDER BY date",
        )?,
        chart(
            &conn,
            db,
            "Bounce types",
            "Bounces in the retention period, by type.",
            &[("bounces", COLORS[1])],
            "SELECT coalesce(type, 'unknown'), count(*)::DOUBLE FROM bounces GROUP BY ALL ORDER BY 2 DESC LIMIT 12",
        )?,
        chart(
            &conn,
            db,
            "Opens by platform",
            "From the daily stats.",
            &[("opens", COLORS[2])],
            "SELECT p, v::DOUBLE FROM (SELECT sum(desktop) AS \"Desktop\", sum(mobile) AS \"Mobile\", sum(web_mail) AS \"WebMail\", sum(\"unknown\") AS \"Unknown\" FROM stats_outbound_platforms) UNPIVOT (v FOR p IN (\"Desktop\", \"Mobile\", \"WebMail\", \"Unknown\"))",
        )?,
        chart(
            &conn,
            db,
            "Opens by email client",
            "From the daily stats, the ten most used.",
            &[("opens", COLORS[0])],
            "SELECT name, sum(count)::DOUBLE FROM stats_outbound_clients GROUP BY name ORDER BY 2 DESC LIMIT 10",
        )?,
    ];
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Postmark report</title>\
         <style>body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:960px}h2{margin:28px 0 4px}\
         p{margin:0 0 8px;color:#555}.legend span{display:inline-block;margin-right:14px;font-size:13px}\
         .legend i{display:inline-block;width:10px;height:10px;margin-right:4px}</style></head><body>",
    );
    let _ = write!(html, "<h1>Postmark report</h1><p>From {}.</p>", escape(&db.display().to_string()));
    for c in &charts {
        let _ = write!(html, "<section><h2>{}</h2><p>{}</p><div class=\"legend\">", escape(c.title), escape(c.note));
        for (name, color, _) in &c.series {
            let _ = write!(html, "<span><i style=\"background:{color}\"></i>{}</span>", escape(name));
        }
        html.push_str("</div>");
        html.push_str(&svg(c));
        html.push_str("</section>");
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
