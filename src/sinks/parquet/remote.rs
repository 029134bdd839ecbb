//! Object storage under the Parquet destination (`s3://`, `gs://`, `az://`, `file://`), through
//! the `object_store` crate.
//!
//! Object stores have no rename, so the sink works on a local mirror (a temporary folder) of
//! the partitions a sync touches, as it does on a local folder, and publishes each flush:
//! 1. every new file is PUT under a name never used before (a rewritten file gets a new
//!    sequence number rather than replacing its old name, see `ParquetSink::fresh_names()`);
//!    a PUT is atomic, so no reader sees half a file;
//! 2. `_manifest.json`, the list of the files that make up the data, is PUT: this is the commit;
//! 3. `_state.json` is PUT, after the data it covers;
//! 4. the files the flush replaced are deleted.
//!
//! A reader that lists files through the manifest never sees a key twice. A reader that globs
//! the prefix can, between steps 1 and 4 (or, after a crash there, until the next sync), see an
//! older copy of re-read keys: such files are orphans, which the next sync deletes before it
//! publishes anything else.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::sinks::SinkError;

use super::STATE_FILE;
use super::aws_profile::{ProfileError, profile_settings};

pub const MANIFEST_FILE: &str = "_manifest.json";
/// Transfers at once while a partition is downloaded or a flush published.
const TRANSFERS: usize = 8;

/// The mirror's folder in TMPDIR: `postmark-elt-mirror-<pid>-<random>`.
const MIRROR_PREFIX: &str = "postmark-elt-mirror-";

/// The schemes `--path` may name, besides a local path.
pub const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "abfs", "abfss", "file"];

/// `_manifest.json`: the data files, relative to the prefix, that readers should read.
#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    files: BTreeSet<String>,
}

pub(super) struct Remote {
    /// The URL as given, for messages (credentials never come from it).
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Where the store's requests run; its worker thread drives them while `handle` blocks.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// Whether a manifest exists (the prefix was written by this destination).
    has_manifest: bool,
    /// The data files of the last manifest.
    live: BTreeSet<String>,
    /// Data files under the prefix that no manifest lists: left by a crash before its manifest,
    /// or replaced and not yet deleted. Deleted at the next publish.
    orphans: Vec<String>,
    state: Option<String>,
    /// Folders (relative to the prefix) copied into the mirror.
    fetched: HashSet<String>,
    mirror: tempfile::TempDir,
}

fn remote_err(url: &str, context: impl Into<String>) -> impl FnOnce(object_store::Error) -> SinkError + '_ {
    let context = context.into();
    move |source| SinkError::Remote {
        url: url.to_string(),
        context,
        source,
    }
}

/// A store for `url` with credentials from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) or,
/// for S3, a named profile ([`profile_settings`]).
fn store_for(url: &url::Url, text: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), SinkError> {
    use object_store::ObjectStoreScheme as Scheme;
    let bad = |reason: String| SinkError::BadUrl {
        path: text.to_string(),
        reason,
    };
    let (scheme, prefix) = Scheme::parse(url).map_err(|e| bad(e.to_string()))?;
    let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
        Scheme::AmazonS3 => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(text);
            let mut endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).ok();
            let read = |path: &Path| match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            };
            let profile =
                profile_settings(|var| std::env::var(var).ok(), read).map_err(|ProfileError { profile, reason }| SinkError::AwsProfile { profile, reason })?;
            if let Some(profile) = profile {
                if let Some((id, secret, token)) = profile.keys {
                    builder = builder.with_access_key_id(id).with_secret_access_key(secret);
                    if let Some(token) = token {
                        builder = builder.with_token(token);
                    }
                }
                if let Some(region) = profile.region {
                    builder = builder.with_region(region);
                }
                if let Some(url) = profile.endpoint {
                    builder = builder.with_endpoint(&url);
                    endpoint = Some(url);
                }
            }
            // An S3-compatible store on plain HTTP (MinIO, a test server) is named by its endpoint.
            if endpoint.is_some_and(|e| e.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            builder.build().map(|s| Arc::new(s) as _)
        }
        Scheme::GoogleCloudStorage => object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_url(text)
            .build()
            .map(|s| Arc::new(s) as _),
        Scheme::MicrosoftAzure => object_store::azure::MicrosoftAzureBuilder::from_env()
            .with_url(text)
            .build()
            .map(|s| Arc::new(s) as _),
        Scheme::Local => {
            // The folder itself is the root, so that the layout matches an S3 prefix.
            let dir = url.to_file_path().map_err(|()| bad("not a local path".to_string()))?;
            std::fs::create_dir_all(&dir).map_err(|source| SinkError::Io { path: dir.clone(), source })?;
            return object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map(|s| (Arc::new(s) as Arc<dyn ObjectStore>, ObjectPath::default()))
                .map_err(|e| bad(e.to_string()));
        }
        other => return Err(bad(format!("{other:?} is not supported; use s3://, gs://, az:// or file://"))),
    };
    Ok((built.map_err(|e| bad(e.to_string()))?, prefix))
}

impl Remote {
    /// Reads the manifest and the state under `url`, and lists what is there. Writes nothing.
    pub(super) fn open(text: &str) -> Result<Remote, SinkError> {
        let url = url::Url::parse(text).map_err(|e| SinkError::BadUrl {
            path: text.to_string(),
            reason: e.to_string(),
        })?;
        let (store, prefix) = store_for(&url, text)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(|source| SinkError::Io {
                path: PathBuf::from("<object storage runtime>"),
                source,
            })?;
        remove_dead_mirrors(&std::env::temp_dir());
        let mirror = tempfile::Builder::new()
            .prefix(&format!("{MIRROR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|source| SinkError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let mut remote = Remote {
            url: text.to_string(),
            store,
            prefix,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            has_manifest: false,
            live: BTreeSet::new(),
            orphans: Vec::new(),
            state: None,
            fetched: HashSet::new(),
            mirror,
        };
        let manifest = remote.get_text(MANIFEST_FILE)?;
        remote.state = remote.get_text(STATE_FILE)?;
        let listed = remote.list()?;
        match manifest {
            Some(text) => {
                let manifest: Manifest = serde_json::from_str(&text).map_err(|e| SinkError::Write {
                    dest: remote.url.clone(),
                    context: format!("reading {MANIFEST_FILE}"),
                    source: e.into(),
                })?;
                remote.has_manifest = true;
                remote.live = manifest.files;
            }
            // Files here that no manifest lists were not written by this destination (a local
            // folder copied up, another tool): deleting them as orphans would lose them.
            None if !listed.is_empty() => return Err(SinkError::NotOurs { url: remote.url.clone() }),
            None => {}
        }
        remote.orphans = listed.into_iter().filter(|f| !remote.live.contains(f)).collect();
        Ok(remote)
    }

    /// The local folder the sink writes in.
    pub(super) fn mirror(&self) -> &Path {
        self.mirror.path()
    }

    pub(super) fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// Runs `task` on this store's runtime, waiting on a thread of its own: the sink is opened
    /// from async code, where a runtime cannot block.
    fn block<T: Send>(&self, task: impl Future<Output = T> + Send) -> T {
        std::thread::scope(|scope| match scope.spawn(|| self.handle.block_on(task)).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    fn object(&self, relative: &str) -> ObjectPath {
        relative.split('/').fold(self.prefix.clone(), |path, part| path.join(part))
    }

    fn get_text(&self, relative: &str) -> Result<Option<String>, SinkError> {
        let location = self.object(relative);
        let got = self.block(async { self.store.get(&location).await?.bytes().await });
        match got {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote_err(&self.url, format!("reading {relative}"))(e)),
        }
    }

    /// The data files under the prefix, relative to it.
    fn list(&self) -> Result<Vec<String>, SinkError> {
        let listed: Vec<object_store::ObjectMeta> = self
            .block(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(remote_err(&self.url, "listing"))?;
        let prefix_parts = self.prefix.parts().count();
        Ok(listed
            .into_iter()
            .map(|meta| {
                meta.location
                    .parts()
                    .skip(prefix_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|relative| relative.ends_with(".parquet"))
            .collect())
    }

    /// Copies the manifest's files of `folder` (relative to the prefix) into the mirror, once.
    pub(super) fn fetch(&mut self, folder: &str) -> Result<(), SinkError> {
        if !self.fetched.insert(folder.to_string()) {
            return Ok(());
        }
        let this = &*self;
        let local = this.mirror.path().join(folder);
        std::fs::create_dir_all(&local).map_err(|source| SinkError::Io { path: local.clone(), source })?;
        let wanted = this.live.iter().filter(|f| in_folder(f, folder));
        let downloads = futures::stream::iter(wanted.map(|relative| {
            let (location, target) = (this.object(relative), this.mirror.path().join(relative));
            async move {
                let reading = || remote_err(&this.url, format!("reading {relative}"));
                let bytes = this.store.get(&location).await.map_err(reading())?.bytes().await.map_err(reading())?;
                std::fs::write(&target, &bytes).map_err(|source| SinkError::Io { path: target, source })
            }
        }))
        .buffer_unordered(TRANSFERS)
        .try_collect::<Vec<()>>();
        this.block(downloads)?;
        Ok(())
    }

    /// The data files in the mirror's fetched folders: what the data is after this flush.
    fn mirrored(&self) -> Result<BTreeSet<String>, SinkError> {
        let mut present = BTreeSet::new();
        for folder in &self.fetched {
            let local = self.mirror.path().join(folder);
            let io = |source| SinkError::Io { path: local.clone(), source };
            for entry in std::fs::read_dir(&local).map_err(io)? {
                let name = entry.map_err(io)?.file_name().to_string_lossy().into_owned();
                // Hidden names are files being written.
                if name.ends_with(".parquet") && !name.starts_with('.') {
                    present.insert(format!("{folder}/{name}"));
                }
            }
        }
        Ok(present)
    }

    /// Publishes the mirror's data files and then `state` (see the module's steps).
    pub(super) fn publish(&mut self, state: Option<&str>) -> Result<(), SinkError> {
        let present = self.mirrored()?;
        let this = &*self;
        let added: Vec<&String> = present.iter().filter(|f| !this.live.contains(*f)).collect();
        let replaced = this
            .live
            .iter()
            .filter(|f| this.fetched.iter().any(|d| in_folder(f, d)) && !present.contains(*f));
        let replaced: Vec<String> = replaced.cloned().collect();
        let live: BTreeSet<String> = this
            .live
            .iter()
            .filter(|f| !replaced.contains(f))
            .chain(added.iter().copied())
            .cloned()
            .collect();
        if !this.has_manifest {
            // First, so that a crash before the first commit leaves a prefix this destination
            // knows (data files without a manifest are refused as someone else's).
            this.put_text(MANIFEST_FILE, "{\"files\":[]}")?;
        }
        let uploads = futures::stream::iter(added.iter().map(|relative| {
            let (location, source) = (this.object(relative), this.mirror.path().join(relative));
            async move {
                let bytes = std::fs::read(&source).map_err(|e| SinkError::Io { path: source, source: e })?;
                let put = this.store.put(&location, PutPayload::from(bytes)).await;
                put.map(|_| ()).map_err(remote_err(&this.url, format!("writing {relative}")))
            }
        }))
        .buffer_unordered(TRANSFERS)
        .try_collect::<Vec<()>>();
        this.block(uploads)?;
        let manifest = serde_json::to_string_pretty(&Manifest { files: live.clone() }).map_err(|e| SinkError::Write {
            dest: this.url.clone(),
            context: format!("writing {MANIFEST_FILE}"),
            source: e.into(),
        })?;
        this.put_text(MANIFEST_FILE, &manifest)?;
        if let Some(state) = state {
            this.put_text(STATE_FILE, state)?;
        }
        // An orphan's name may have been reused by this flush's files: those stay.
        let gone: Vec<String> = replaced.into_iter().chain(this.orphans.iter().cloned()).filter(|f| !live.contains(f)).collect();
        self.has_manifest = true;
        self.orphans.clear();
        self.live = live;
        if let Some(state) = state {
            self.state = Some(state.to_string());
        }
        let this = &*self;
        let deletes = futures::stream::iter(gone.iter().map(|relative| {
            let location = this.object(relative);
            async move {
                match this.store.delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(remote_err(&this.url, format!("deleting {relative}"))(e)),
                }
            }
        }))
        .buffer_unordered(TRANSFERS)
        .try_collect::<Vec<()>>();
        this.block(deletes)?;
        Ok(())
    }

    fn put_text(&self, relative: &str, text: &str) -> Result<(), SinkError> {
        let location = self.object(relative);
        let payload = PutPayload::from(text.as_bytes().to_vec());
        self.block(self.store.put(&location, payload))
            .map(|_| ())
            .map_err(remote_err(&self.url, format!("writing {relative}")))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // The sink may be dropped in async code (a dry run), where a runtime cannot wait for
        // its threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether `file` lies directly in `folder` (both relative to the prefix).
fn in_folder(file: &str, folder: &str) -> bool {
    file.strip_prefix(folder)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.contains('/'))
}

/// Removes the mirrors that killed runs left in `tmp` (their process is gone); a running
/// sync's mirror stays.
fn remove_dead_mirrors(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(MIRROR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        let gone = pid
            .and_then(rustix::process::Pid::from_raw)
            .is_some_and(|pid| rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH));
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
