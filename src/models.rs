//! The analyst models: plain dbt models in `models/postmark/` (usable as they are with
//! dbt-duckdb), which every DuckDB sync also creates as views beside the raw tables, rendered
//! for the sync's schema. The files use two pieces of dbt's Jinja only, `{{ source('postmark',
//! 'TABLE') }}` and `{{ var('postmark_schema', 'main') }}`, which [`render`] fills in.

/// One model: its view name (the file's name) and its SQL.
pub struct Model {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! model {
    ($name:literal) => {
        Model {
            name: $name,
            sql: include_str!(concat!("../models/postmark/", $name, ".sql")),
        }
    };
}

pub const MODELS: &[Model] = &[
    model!("postmark_deliverability_daily"),
    model!("postmark_message_engagement"),
    model!("postmark_bounce_reasons"),
    model!("postmark_client_mix"),
];

/// The dbt source declaration shipped beside the models.
pub const SOURCES_YML: &str = include_str!("../models/postmark/sources.yml");

/// The macro the models call to put an instant (a UTC `TIMESTAMP`) on its US-Eastern calendar
/// day, Postmark's. It needs no time zone database (the bundled DuckDB has no ICU): the US rule
/// since 2007, daylight time from 02:00 on March's second Sunday to 02:00 on November's first.
pub fn eastern_date_macro(schema: &str) -> String {
    format!(
        "CREATE OR REPLACE MACRO {schema}.eastern_date(ts) AS CAST(ts - CASE \
         WHEN ts >= make_timestamp(year(ts), 3, 8 + (7 - dayofweek(make_date(year(ts), 3, 1))) % 7, 7, 0, 0) \
         AND ts < make_timestamp(year(ts), 11, 1 + (7 - dayofweek(make_date(year(ts), 11, 1))) % 7, 6, 0, 0) \
         THEN INTERVAL 4 HOUR ELSE INTERVAL 5 HOUR END AS DATE)"
    )
}

/// The Jinja expressions of `sql`, in order.
fn expressions(sql: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + sql[at..].find("{{")?;
        let end = start + sql[start..].find("}}")? + 2;
        at = end;
        Some((start, end, sql[start + 2..end - 2].trim()))
    })
}

/// The quoted arguments of a call `name('a', 'b')`, if `expr` is one.
fn call_args<'a>(expr: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let inner = expr.strip_prefix(name)?.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|a| a.trim().strip_prefix('\'')?.strip_suffix('\'')).collect()
}

/// The raw tables `sql` reads.
pub fn sources(sql: &str) -> Vec<&str> {
    expressions(sql)
        .filter_map(|(_, _, e)| call_args(e, "source"))
        .filter_map(|args| args.get(1).copied())
        .collect()
}

/// `sql` with its Jinja filled in for `schema` (an identifier `config::keys::SCHEMA` checked).
pub fn render(sql: &str, schema: &str) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for (start, end, expr) in expressions(sql) {
        out.push_str(&sql[last..start]);
        match (call_args(expr, "source").as_deref(), call_args(expr, "var").as_deref()) {
            (Some(["postmark", table]), _) => out.push_str(&format!("{schema}.{}", crate::schema::quote_ident(table))),
            (_, Some(["postmark_schema", _])) => out.push_str(schema),
            _ => return Err(format!("unknown template expression {{{{ {expr} }}}}")),
        }
        last = end;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every model renders, reads declared sources only, and names no schema but the one given.
    #[test]
    fn models_render_for_a_schema() {
        for model in MODELS {
            let sql = render(model.sql, "shop").unwrap_or_else(|e| panic!("{}: {e}", model.name));
            assert!(!sql.contains("{{") && !sql.contains("main"), "{}: {sql}", model.name);
            assert!(sql.contains("shop.\"") && !sources(model.sql).is_empty(), "{}", model.name);
            for table in sources(model.sql) {
                assert!(
                    SOURCES_YML.contains(&format!("- name: {table}\n")),
                    "{} reads {table}, not in sources.yml",
                    model.name
                );
            }
        }
        assert_eq!(
            render("from {{ source('postmark', 'bounces') }} x {{ var('postmark_schema', 'main') }}.f()", "main"),
            Ok("from main.\"bounces\" x main.f()".to_string())
        );
        assert!(render("{{ ref('other') }}", "main").is_err());
    }
}
