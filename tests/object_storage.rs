//! Parquet on object storage: the real binary writes `s3://` to moto's S3 server (started here
//! on 127.0.0.1, installed from PyPI by scripts/python-tools.sh), is killed mid-sync, runs
//! again, and pyarrow's S3 filesystem reads the result as a user would.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use chrono_tz::America::New_York;
use common::{Env, assert_ok, eastern_days_ago, python_tool, run_python, text};
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

/// moto's S3 server on a free port, stopped when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start(python: &Path) -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's S3 server");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "moto's S3 server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// What the connector and the readers are given: the standard AWS variables.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }
}

impl S3Server {
    /// Whether `key` exists in the bucket `lake` (asked with the object_store crate).
    fn has(&self, key: &str) -> bool {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("lake")
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .build()
            .expect("an S3 client");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(store.head(&object_store::path::Path::from(key))).is_ok()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The binary with the S3 server's variables, and its own TMPDIR (`<test dir>/tmp`) for the
/// local mirror.
fn command(env: &Env, s3: &S3Server, args: &[&str]) -> Command {
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let mut cmd = env.command(args);
    cmd.env("TMPDIR", &tmp);
    for (k, v) in s3.env() {
        cmd.env(k, v);
    }
    cmd
}

/// Reads `s3://lake/pm` with pyarrow's S3 filesystem: the message ids of the files the
/// manifest lists, those of every file a glob finds, the open events' ids, and the state.
const READ: &str = r#"
import json, os, sys
import pyarrow.dataset as ds, pyarrow.fs as pafs
endpoint = os.environ["AWS_ENDPOINT_URL"]
s3 = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                       endpoint_override=endpoint.split("://")[1], scheme="http")
with s3.open_input_stream("lake/pm/_manifest.json") as f:
    manifest = json.loads(f.read())["files"]
def ids(files, column):
    if not files:
        return []
    table = ds.dataset(files, filesystem=s3, format="parquet", partitioning="hive").to_table(columns=[column])
    return table.column(column).to_pylist()
messages = ["lake/pm/" + f for f in manifest if f.startswith("messages_outbound/")]
opens = ["lake/pm/" + f for f in manifest if f.startswith("messages_opens/")]
globbed = [i.path for i in s3.get_file_info(pafs.FileSelector("lake/pm/messages_outbound", recursive=True))
           if i.path.endswith(".parquet")]
try:
    with s3.open_input_stream("lake/pm/_state.json") as f:
        state = json.loads(f.read())
except OSError:
    state = None
print(json.dumps({"manifest": ids(messages, "message_id"), "glob": ids(globbed, "message_id"),
                  "opens": len(ids(opens, "message_id")), "files": manifest, "state": state}))
"#;

fn read_back(pyarrow: &Path, env: &Env, s3: &S3Server) -> Value {
    let out = Command::new(pyarrow)
        .args(["-c", READ])
        .envs(s3.env())
        .current_dir(env.dir.path())
        .output()
        .expect("run python");
    assert!(out.status.success(), "pyarrow could not read s3://lake/pm: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("reader's JSON")
}

/// Killed twice mid-sync (SIGKILL), then completed, then run again: pyarrow reads every
/// message once through the manifest and through a plain glob, the opens are all there, the
/// state sits beside the data, and nothing was written locally.
#[test]
fn s3_killed_then_resumed_exactly_once() {
    let moto = python_tool("moto");
    let pyarrow = python_tool("pyarrow");
    let s3 = S3Server::start(&moto);
    let bucket = "import boto3, os, sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                  aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='lake')";
    run_python(&moto, Path::new("."), bucket, &[&s3.endpoint]);

    let today = Utc::now().with_timezone(&New_York).date_naive();
    // Above the sink's 50,000-row flush, so that a run publishes before it ends.
    let messages = (1..=3)
        .flat_map(|d| generate::day(d as u64, "outbound", today - ChronoDuration::days(d), 20_000))
        .collect();
    let config = FakeConfig {
        latency: Duration::from_millis(15),
        ..FakeConfig::default()
    };
    let env = Env::with_config(config, messages);
    env.fake.generate_events(3);
    let cfg = env.config(eastern_days_ago(4), json!({"message_streams": ["outbound"], "max_concurrency": 2}));
    let args = ["sync", "--config", cfg.to_str().unwrap(), "--dest", "parquet", "--path", "s3://lake/pm"];

    // Killed once its first flush is published (the state is there), then 40 requests into
    // the next run; after each kill, a reader of the manifest sees each key at most once.
    let ready: [&dyn Fn() -> bool; 2] = [&|| s3.has("pm/_state.json"), &|| env.fake.requests().len() >= 40];
    for (run, ready) in ready.into_iter().enumerate() {
        env.fake.clear_requests();
        let mut child = command(&env, &s3, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        let killed = common::kill_when(&mut child, 120_000, ready);
        assert!(killed, "the sync ended before it could be killed");
        assert!(run > 0 || s3.has("pm/_state.json"), "the first run was killed before it published a flush");
        if s3.has("pm/_manifest.json") {
            let partial = read_back(&pyarrow, &env, &s3);
            let ids: Vec<String> = serde_json::from_value(partial["manifest"].clone()).unwrap();
            let unique: HashSet<String> = ids.iter().cloned().collect();
            assert_eq!(ids.len(), unique.len(), "a key twice through the manifest after a kill");
            assert!(unique.is_subset(&env.truth()));
        }
    }
    let out = command(&env, &s3, &args).output().expect("run");
    assert_ok(&out);
    let first = read_back(&pyarrow, &env, &s3);
    let through_manifest: Vec<String> = serde_json::from_value(first["manifest"].clone()).unwrap();
    let unique: HashSet<String> = through_manifest.iter().cloned().collect();
    assert_eq!(through_manifest.len(), unique.len(), "a key twice through the manifest");
    assert_eq!(unique, env.truth(), "messages missing or extra");
    let globbed: Vec<String> = serde_json::from_value(first["glob"].clone()).unwrap();
    assert_eq!(globbed.len(), unique.len(), "a glob reader sees orphans or duplicates after a completed sync");
    assert_eq!(first["opens"].as_u64(), Some(env.fake.visible(0).opens.len() as u64));
    assert!(first["state"]["bookmarks"]["messages_outbound"].is_object(), "{}", first["state"]);
    assert!(!env.path("s3:").exists(), "a local folder named s3: was written");
    // The killed runs' mirrors were removed by the next run, the last run's by itself.
    let left: Vec<_> = std::fs::read_dir(env.path("tmp")).expect("tmp dir").collect();
    assert!(left.is_empty(), "mirrors left in TMPDIR: {left:?}");

    // Incremental: the lookback re-reads recent mail; nothing is doubled, and the files
    // replaced by re-read keys are gone.
    let out = command(&env, &s3, &args).output().expect("run");
    assert_ok(&out);
    let second = read_back(&pyarrow, &env, &s3);
    let again: Vec<String> = serde_json::from_value(second["manifest"].clone()).unwrap();
    assert_eq!(again.len(), unique.len());
    let globbed: Vec<String> = serde_json::from_value(second["glob"].clone()).unwrap();
    assert_eq!(globbed.len(), unique.len());
}

/// `--dry-run` against an object store reads the stored state and writes nothing; a prefix
/// holding Parquet files that no manifest lists is refused (exit 3) and left as it is.
#[test]
fn s3_dry_run_writes_nothing_and_foreign_files_are_refused() {
    let moto = python_tool("moto");
    let s3 = S3Server::start(&moto);
    let setup = "import boto3, sys; c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id='testing', aws_secret_access_key='testing'); c.create_bucket(Bucket='lake'); \
                 c.put_object(Bucket='lake', Key='copied/messages_outbound/date=2026-11-01/part-000001.parquet', Body=b'PAR1')";
    run_python(&moto, Path::new("."), setup, &[&s3.endpoint]);
    let env = Env::new(common::yesterday_messages(20));
    let cfg = env.config(common::two_days_ago(), json!({}));
    let dry = command(
        &env,
        &s3,
        &[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--dest",
            "parquet",
            "--path",
            "s3://lake/new",
            "--dry-run",
        ],
    )
    .output()
    .expect("run");
    assert_ok(&dry);
    let listing = "import boto3, sys; c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                   aws_access_key_id='testing', aws_secret_access_key='testing'); \
                   print(sorted(o['Key'] for o in c.list_objects_v2(Bucket='lake').get('Contents', [])))";
    let keys = run_python(&moto, Path::new("."), listing, &[&s3.endpoint]);
    assert_eq!(
        keys.trim(),
        "['copied/messages_outbound/date=2026-11-01/part-000001.parquet']",
        "a dry run wrote objects"
    );
    let out = command(
        &env,
        &s3,
        &["sync", "--config", cfg.to_str().unwrap(), "--dest", "parquet", "--path", "s3://lake/copied"],
    )
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("s3://lake/copied holds Parquet files but no _manifest.json"), "{stderr}");
    let keys = run_python(&moto, Path::new("."), listing, &[&s3.endpoint]);
    assert_eq!(
        keys.trim(),
        "['copied/messages_outbound/date=2026-11-01/part-000001.parquet']",
        "the foreign file was touched"
    );
}

/// A named AWS profile, as `aws configure` writes it, is all a sync needs: keys from
/// `~/.aws/credentials`, region and endpoint from `~/.aws/config`, no `AWS_*` key variable set
/// (object_store alone would try instance credentials and fail here). A profile that is not
/// there, or that gets its keys through SSO, fails with exit 3 naming the fix, writing nothing.
#[test]
fn s3_through_a_named_profile() {
    let moto = python_tool("moto");
    let s3 = S3Server::start(&moto);
    let bucket = "import boto3, sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                  aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='lake')";
    run_python(&moto, Path::new("."), bucket, &[&s3.endpoint]);
    let env = Env::new(common::yesterday_messages(30));
    let aws = env.path(".aws");
    std::fs::create_dir_all(&aws).expect("~/.aws");
    std::fs::write(
        aws.join("credentials"),
        "[lake]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .expect("credentials");
    let config = format!(
        "[profile lake]\nregion = us-east-1\nendpoint_url = {}\n\n[profile corp]\nsso_session = corp\n",
        s3.endpoint
    );
    std::fs::write(aws.join("config"), config).expect("config");
    let cfg = env.config(common::two_days_ago(), json!({"message_streams": ["outbound"]}));
    let run = |profile: &str, prefix: &str| {
        let url = format!("s3://lake/{prefix}");
        let mut cmd = env.command(&[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--streams",
            "messages_outbound",
            "--dest",
            "parquet",
            "--path",
            &url,
        ]);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", env.dir.path())
            .env("TMPDIR", env.dir.path())
            .env("AWS_PROFILE", profile)
            .env_remove("AWS_CONFIG_FILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE");
        cmd.output().expect("run")
    };
    let out = run("lake", "viaprofile");
    assert_ok(&out);
    assert!(
        s3.has("viaprofile/_manifest.json") && s3.has("viaprofile/_state.json"),
        "nothing published through the profile"
    );
    let listing = "import boto3, sys; c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                   aws_access_key_id='testing', aws_secret_access_key='testing'); \
                   print(len([o for o in c.list_objects_v2(Bucket='lake', Prefix='viaprofile/messages_outbound/').get('Contents', [])]))";
    assert_ne!(run_python(&moto, Path::new("."), listing, &[&s3.endpoint]).trim(), "0", "no data files");
    for (profile, says) in [
        ("nope", "AWS profile `nope` not found in"),
        ("corp", "AWS profile `corp` gets its keys through `sso_session`"),
    ] {
        let out = run(profile, profile);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!s3.has(&format!("{profile}/_manifest.json")), "written although the profile was refused");
    }
}
