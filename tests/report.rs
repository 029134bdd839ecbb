//! `postmark-elt report`, rendered by headless Chromium (a Debian package scripts/test.sh
//! installs) as a person would open it.

mod common;

use common::*;
use serde_json::json;

/// Runs headless Chromium on `page` with `args` (a screenshot or `--dump-dom`), its stdout.
fn chromium(env: &Env, page: &std::path::Path, args: &[String]) -> Vec<u8> {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed for this test: apt-get install chromium (scripts/test.sh does)");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", env.path("chromium").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed");
    out.stdout
}

/// Pixels of a PNG screenshot (RGB or RGBA) and its channel count.
fn pixels(shot: &std::path::Path) -> (Vec<u8>, usize, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (buf, info.color_type.samples(), info.width)
}

/// `report` writes one self-contained HTML page that Chromium renders: the totals, the date
/// range and each chart's table are in the page's text with the fake's figures, partial days
/// are named, and screenshots at desktop and phone width hold every chart colour.
#[test]
fn report_renders_in_chromium() {
    let env = Env::new(yesterday_messages(2_000));
    env.fake.generate_events(2);
    // Mail of today: a day still going on, which the report marks partial.
    let now = chrono::Utc::now();
    env.fake
        .add_messages(fake_postmark::generate::between(9, "outbound", now - chrono::Duration::minutes(2), now, 20));
    let cfg = env.config(two_days_ago(), json!({}));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let out = env.run(&["report", "--out", "report.html"]);
    assert_ok(&out);
    let page = env.path("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg").count(), 14, "seven charts, each drawn for a desktop and a phone");
    assert_eq!(html.matches("<table>").count(), 7, "a table under each chart");
    for outside in ["<script", "src=", "href=", "<link"] {
        assert!(!html.contains(outside), "the page must be self-contained: {outside}");
    }
    assert!(!html.contains("no data synced"), "a chart is empty");

    let truth = env.fake.visible(0);
    let sent: usize = truth.messages.iter().map(|m| m.to.len()).sum();
    let group = |n: usize| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let dom = String::from_utf8_lossy(&chromium(&env, &page, &["--dump-dom".to_string()])).into_owned();
    let eastern = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&chrono_tz::America::New_York).date_naive().to_string();
    let today = eastern(chrono::Utc::now());
    let last_day = truth.messages.iter().map(|m| eastern(m.received_at)).max().unwrap_or_default();
    assert!(dom.contains(&format!("<b>{}</b>", group(sent))), "the total sent ({sent}) is on the page");
    assert!(
        dom.contains(&format!("<b>{}</b>", group(truth.messages.len()))),
        "the message count is on the page"
    );
    assert!(
        dom.contains("US-Eastern days ") && dom.contains(&format!("to {last_day}")),
        "the date range is on the page"
    );
    // Unless the test runs in the first two minutes of a New York day, that mail is of today.
    assert_eq!(
        dom.contains(&format!("{last_day} (partial)")),
        last_day == today,
        "only a day still going on is partial"
    );
    assert!(dom.contains("% of sent") && dom.contains("bounce rate"), "rates stand next to counts");
    assert!(dom.contains(&format!("<td>outbound</td><td>{}</td>", group(sent))), "the message-stream table");

    for (width, height) in [(1000, 4200), (414, 5200)] {
        let shot = env.path(&format!("report-{width}.png"));
        chromium(
            &env,
            &page,
            &[format!("--window-size={width},{height}"), format!("--screenshot={}", shot.display())],
        );
        let (buf, channels, got_width) = pixels(&shot);
        assert_eq!(got_width, width);
        let count = |rgb: [u8; 3]| {
            buf.chunks(channels)
                .filter(|p| p[0].abs_diff(rgb[0]) < 8 && p[1].abs_diff(rgb[1]) < 8 && p[2].abs_diff(rgb[2]) < 8)
                .count()
        };
        let ink = buf.chunks(channels).filter(|p| p[0] < 200 || p[1] < 200 || p[2] < 200).count();
        assert!(ink > buf.len() / channels / 50, "the {width} px screenshot is nearly blank");
        for (name, rgb) in [("blue", [0x2f, 0x6f, 0xde]), ("red", [0xe4, 0x57, 0x2e]), ("teal", [0x17, 0xa3, 0x98])] {
            assert!(count(rgb) > 200, "the {width} px screenshot has almost no {name} chart pixels");
        }
    }
}
