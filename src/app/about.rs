//! `postmark-elt --about [--format json|markdown]`: what singer-sdk taps print, so Meltano's hub
//! tooling and people alike can see the connector's capabilities and settings.

use serde_json::json;

use crate::cli::AboutFormat;
use crate::config::keys::KEYS;

const NAME: &str = "postmark-elt";
const DESCRIPTION: &str = "Postmark (transactional email) into DuckDB, Parquet, Singer or Airbyte: complete, typed, incremental.";
/// The Singer capabilities of the tap invocation (`postmark-elt --config C ...`).
pub const CAPABILITIES: &[&str] = &["catalog", "discover", "state", "about"];

pub fn render(format: AboutFormat) -> String {
    match format {
        AboutFormat::Json => {
            let about = json!({
                "name": NAME,
                "description": DESCRIPTION,
                "version": env!("CARGO_PKG_VERSION"),
                "sdk_version": null,
                "capabilities": CAPABILITIES,
                "settings": crate::config::spec(),
            });
            format!("{}\n", serde_json::to_string_pretty(&about).unwrap_or_default())
        }
        AboutFormat::Markdown => markdown(),
    }
}

fn markdown() -> String {
    let mut out = format!(
        "# `{NAME}`\n\n{DESCRIPTION}\n\nVersion {}; written in Rust, not with the Singer SDK.\n\n## Capabilities\n\n",
        env!("CARGO_PKG_VERSION")
    );
    for capability in CAPABILITIES {
        out.push_str(&format!("* `{capability}`\n"));
    }
    out.push_str("\n## Settings\n\n| Setting | Required | Default | Description |\n|:--------|:--------:|:-------:|:------------|\n");
    for key in KEYS {
        let default = key.default_text();
        let default = if default.is_empty() { "None".to_string() } else { default };
        out.push_str(&format!(
            "| {} | {} | {default} | {} |\n",
            key.name,
            if key.required { "True" } else { "False" },
            key.description.replace('|', "\\|")
        ));
    }
    out.push_str("\nA full list of supported settings and capabilities is available by running: `postmark-elt --about`\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON form carries singer-sdk's keys and every setting; the Markdown form lists every
    /// setting once.
    #[test]
    fn about_lists_capabilities_and_every_setting() {
        let about: serde_json::Value = serde_json::from_str(&render(AboutFormat::Json)).expect("json");
        assert_eq!(about["name"], NAME);
        assert_eq!(about["capabilities"], json!(CAPABILITIES));
        assert_eq!(about["settings"]["properties"].as_object().map(|p| p.len()), Some(KEYS.len()));
        let markdown = render(AboutFormat::Markdown);
        for key in KEYS {
            assert_eq!(markdown.matches(&format!("\n| {} |", key.name)).count(), 1, "{}", key.name);
        }
        assert!(markdown.contains("| start_date | True |"), "{markdown}");
    }
}
