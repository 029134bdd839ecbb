//! The page: totals and the date range at the top, then each chart with its legend and the
//! table of its numbers. One column that fits a 414 px phone; wide tables scroll sideways.

use std::fmt::Write as _;
use std::path::Path;

use super::svg::{NARROW, WIDE, format_value, horizontal, over_days};
use super::{Chart, Kind, Totals, escape};

pub struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:16px auto;padding:0 12px;color:#222;max-width:960px}\
h1{font-size:1.5em;margin:8px 0}h2{font-size:1.15em;margin:28px 0 4px}p{margin:0 0 8px;color:#555}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:8px;margin:12px 0}\
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px}.card b{display:block;font-size:1.35em}\
.card span{color:#555;font-size:.85em}.legend span{display:inline-block;margin-right:14px;font-size:13px}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px;margin:6px 0 0;min-width:100%}\
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}\
th:first-child,td:first-child{text-align:left}svg{display:block;max-width:100%;height:auto}\
.narrow{display:none}@media (max-width:600px){.wide{display:none}.narrow{display:block}}";

fn table(out: &mut String, t: &Table) {
    out.push_str("<div class=\"scroll\"><table><thead><tr>");
    for h in &t.head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

/// A chart's numbers as a table: one row per label, one column per series.
fn chart_table(c: &Chart) -> Table {
    let mut head = vec![if matches!(c.kind, Kind::Horizontal) { "" } else { "day" }];
    head.extend(c.series.iter().map(|s| s.name));
    let rows = c
        .labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let name = if c.partial.get(i).copied().unwrap_or(false) {
                format!("{label} (partial)")
            } else {
                label.clone()
            };
            let mut row = vec![name];
            row.extend(c.series.iter().map(|s| format_value(s.values[i], c.unit)));
            row
        })
        .collect();
    Table { head, rows }
}

pub fn html(db: &Path, totals: &Totals, charts: &[Chart]) -> String {
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Postmark report</title>\
         <style>{STYLE}</style></head><body><h1>Postmark report</h1>"
    );
    let range = match (&totals.first_day, &totals.last_day) {
        (Some(a), Some(b)) => format!("US-Eastern days {a} to {b}"),
        _ => "no messages synced yet".to_string(),
    };
    let _ = write!(
        out,
        "<p id=\"range\">{}, from {}.</p><div class=\"cards\">",
        escape(&range),
        escape(&db.display().to_string())
    );
    for (name, value, rate) in &totals.figures {
        let _ = write!(
            out,
            "<div class=\"card\"><span>{}</span><b>{}</b><span>{}</span></div>",
            escape(name),
            escape(value),
            rate.as_deref().map(|r| format!("{r} of sent")).unwrap_or_default()
        );
    }
    out.push_str("</div>");
    for c in charts {
        let _ = write!(out, "<section><h2>{}</h2><p>{}</p><div class=\"legend\">", escape(c.title), escape(&c.note));
        for s in &c.series {
            let _ = write!(out, "<span><i style=\"background:{}\"></i>{}</span>", s.color, escape(s.name));
        }
        out.push_str("</div>");
        // Drawn twice, for a desktop and a phone; CSS shows one.
        let draw = |w: f64| {
            if matches!(c.kind, Kind::Horizontal) {
                horizontal(c, w)
            } else {
                over_days(c, w)
            }
        };
        let _ = write!(out, "<div class=\"wide\">{}</div><div class=\"narrow\">{}</div>", draw(WIDE), draw(NARROW));
        match &c.table {
            Some(t) => table(&mut out, t),
            None => table(&mut out, &chart_table(c)),
        }
        out.push_str("</section>");
    }
    out.push_str("</body></html>\n");
    out
}
