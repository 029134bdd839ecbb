//! Installing without a compiler: maturin (from PyPI) builds the wheel that carries the
//! binaries, pip installs it into a fresh venv, and the installed `postmark-elt` syncs; then
//! Meltano installs it from `pip_url` as the README's extractor block says and runs it into
//! target-jsonl twice, with a field deselected.
//!
//! The wheel is built in the dev profile from the shared target dir (a release build compiles
//! DuckDB's C++ once more: 25+ minutes); the release workflow builds release wheels.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed: {}", text(&out));
    out
}

/// The target dir the test binaries were built in (`<target>/debug/postmark-elt`), so that
/// maturin reuses the compiled DuckDB instead of building it again.
fn target_dir() -> PathBuf {
    Path::new(BIN).ancestors().nth(2).expect("target dir").to_path_buf()
}

fn build_wheel(python: &Path, out_dir: &Path) -> PathBuf {
    let maturin = python.with_file_name("maturin");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(&maturin);
    command
        .args(["build", "--profile", "dev", "--compatibility", "linux", "--manifest-path"])
        .arg(&manifest)
        .arg("--out")
        .arg(out_dir);
    // `cargo test` hands the tests its own variables (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...).
    // A cargo started with them sees variables that build scripts watch (ring's) changed, and
    // rebuilds them and all that follows, DuckDB's C++ included (observed: 25 minutes); so
    // maturin's cargo gets the environment of a user's shell.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME") || name == "LD_LIBRARY_PATH" || name == "RUST_RECURSION_COUNT" {
            command.env_remove(&key);
        }
    }
    run(command.env("CARGO_TARGET_DIR", target_dir()));
    let wheels: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .expect("wheel dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel: {wheels:?}");
    wheels[0].clone()
}

/// The README's Meltano extractor block (the YAML under "As a Meltano custom extractor"),
/// with `pip_url` pointing at `wheel`.
fn readme_extractor(wheel: &Path) -> String {
    let readme = include_str!("../README.md");
    let start = readme.find("      - name: tap-postmark").expect("the README's extractor block");
    let block = &readme[start..];
    let block = format!("{}\n", block[..block.find("```").expect("end of the block")].trim_end());
    assert!(block.contains("pip_url: postmark-elt\n"), "the README block installs from PyPI: {block}");
    block.replace("pip_url: postmark-elt\n", &format!("pip_url: {}\n", wheel.display()))
}

#[test]
fn wheel_installs_and_runs_under_meltano_from_pip_url() {
    let env = Env::new(yesterday_messages(900));
    env.fake.generate_events(4);
    let python = python_tool("meltano");
    let wheel = build_wheel(&python, &env.path("wheels"));

    // A fresh venv, no toolchain involved: pip installs the wheel's binaries.
    let venv = env.path("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "--no-index"]).arg(&wheel));
    let version = run(Command::new(venv.join("bin/postmark-elt")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("postmark-elt {}", env!("CARGO_PKG_VERSION"))
    );
    let spec = run(Command::new(venv.join("bin/source-postmark")).arg("spec"));
    assert!(String::from_utf8_lossy(&spec.stdout).starts_with(r#"{"type":"SPEC""#));
    let cfg = env.config(two_days_ago(), json!({}));
    run(Command::new(venv.join("bin/postmark-elt"))
        .arg("sync")
        .arg("--config")
        .arg(&cfg)
        .current_dir(env.dir.path()));
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!((rows, distinct, ids), (900, 900, env.truth()), "the installed binary synced every message once");

    // Meltano installs the extractor from the wheel, as the README's block says.
    let project = env.path("project");
    std::fs::create_dir_all(project.join("output")).expect("project dir");
    let meltano_yml = format!(
        "version: 1\ndefault_environment: dev\nproject_id: postmark-elt-test\nenvironments:\n  - name: dev\nplugins:\n  extractors:\n{}        config:\n          start_date: \"{}\"\n          base_url: {}\n          retry_initial_delay_ms: 5\n          settle_seconds: 0\n        select:\n          - messages_outbound.*\n          - \"!messages_outbound.to\"\n          - bounces.*\n  loaders:\n    - name: target-jsonl\n      namespace: target_jsonl\n      pip_url: target-jsonl==0.1.4\n      executable: target-jsonl\n      settings:\n        - {{name: destination_path}}\n      config:\n        destination_path: output\n",
        readme_extractor(&wheel),
        two_days_ago().format("%Y-%m-%d"),
        env.fake.base_url()
    );
    std::fs::write(project.join("meltano.yml"), meltano_yml).expect("meltano.yml");
    // Meltano writes the config it generates for each run with the umask's mode; under
    // `umask 077` (as the README advises) that is 0600, and the tap must not warn about it.
    let meltano = |args: &[&str]| {
        run(Command::new("sh")
            .arg("-c")
            .arg("umask 077 && exec \"$0\" \"$@\"")
            .arg(python.with_file_name("meltano"))
            .args(args)
            .current_dir(&project)
            .env("TAP_POSTMARK_SERVER_TOKEN", env.fake.token())
            .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false"))
    };
    meltano(&["install"]);
    let first = meltano(&["run", "tap-postmark", "target-jsonl"]);
    let log = text(&first);
    assert!(
        !log.contains("readable by other users"),
        "Meltano's generated config draws no permission warning: {log}"
    );
    // target-jsonl writes `<stream>-<timestamp>.jsonl` files.
    let lines = |stream: &str| -> Vec<Value> {
        let files = std::fs::read_dir(project.join("output")).expect("output dir");
        let names: Vec<PathBuf> = files
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{stream}-"))))
            .collect();
        names
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .expect("read output")
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("a JSON row"))
                    .collect::<Vec<Value>>()
            })
            .collect()
    };
    let messages = lines("messages_outbound");
    let ids: HashSet<String> = messages.iter().filter_map(|m| m["message_id"].as_str().map(String::from)).collect();
    assert_eq!((messages.len(), ids), (900, env.truth()), "every message once through Meltano");
    assert!(
        messages.iter().all(|m| m.get("to").is_none() && m.get("from").is_some()),
        "`!messages_outbound.to` left `to` out"
    );
    assert_eq!(lines("bounces").len(), env.fake.visible(0).bounces.len());
    assert!(lines("messages_opens").is_empty(), "streams not selected are not synced");

    // The second run continues from the state Meltano saved.
    env.fake.clear_requests();
    let second = meltano(&["run", "tap-postmark", "target-jsonl"]);
    assert!(text(&second).contains("Reading state from"), "{}", text(&second));
    let requests = env.fake.requests();
    let from = requests
        .iter()
        .find(|r| r.path == "/messages/outbound")
        .and_then(|r| r.param("fromdate").map(String::from))
        .expect("a messages request");
    // The bookmark (about now) less the overlap and the date-reading slack (2 h), in Eastern
    // wall-clock time as the API takes it: not start_date, two days back.
    let recent = (env.fake.now() - chrono::Duration::hours(3))
        .with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    assert!(from >= recent, "the second run starts at the bookmark, not start_date: {from} < {recent}");
}
