//! [`ObjectStoreStorage`]: checkpoint storage in an object store bucket, under a prefix.
//!
//! The layout is the local directory's (see `weir_engine::checkpoint::storage`), as keys:
//!
//! ```text
//! <prefix>/_job                      the job identity record
//! <prefix>/_owner                    the owner record (epoch), replaced by compare-and-swap
//! <prefix>/chk-<id>/_reservation     created only if absent when id is reserved
//! <prefix>/chk-<id>/_metadata        created only if absent: the checkpoint is complete
//! <prefix>/chk-<id>/<op>/<subtask>/  files private to the checkpoint
//! <prefix>/shared/<op>/<subtask>/    RocksDB SST files shared by several checkpoints
//! ```
//!
//! # Completion without rename
//! Object stores have no rename. A checkpoint becomes complete by one create-only PUT of its
//! `_metadata` (`If-None-Match: *`), issued after every file it references was stored (each
//! PUT is durable when it returns). After a crash the metadata is either absent (the
//! checkpoint never completed, its files are garbage retention removes) or complete. A retried
//! metadata PUT whose first attempt did succeed finds the object there and compares the bytes:
//! equal is success.
//!
//! # Ownership
//! There is no lock that dies with a process on an object store. [`acquire`] replaces the
//! `_owner` record by compare-and-swap (`If-Match` on its ETag) with the next epoch: a new
//! owner fences the previous one, whose next publication fails its [`verify_lease`] check.
//! Two processes racing to acquire cannot both win. Run one master per job (or several with
//! the etcd-based high availability, which decides the owner before storage is touched).
//!
//! [`acquire`]: CheckpointStorage::acquire
//! [`verify_lease`]: CheckpointStorage::verify_lease

use crate::bridge::run;
use crate::errors::{credentials, decode_json, is_conflict, optional, read_error, write_error};
use crate::location::Location;
use crate::transfer::{download_file, put, put_raw, read_verified, upload_file};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, UpdateVersion};
use std::path::Path;
use std::sync::Arc;
use weir_engine::checkpoint::metadata::StoredFile;
use weir_engine::checkpoint::storage::{JOB_IDENTITY_FILE, METADATA_FILE, OWNER_FILE, RESERVATION_FILE};
use weir_engine::checkpoint::CheckpointStorage;
use weir_engine::message::CheckpointId;
use weir_engine::ownership::{
    check_fence, held_by_another, next_epoch, reservation_taken, OwnerInfo, OwnerLease, OwnerRecord,
};
use weir_engine::{Error, Result};

/// Attempts to win the owner record's compare-and-swap before giving up.
const ACQUIRE_ATTEMPTS: usize = 5;

/// Checkpoint storage under a prefix of an object store bucket.
#[derive(Debug, Clone)]
pub struct ObjectStoreStorage {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    /// The key prefix (empty for the bucket's root).
    prefix: String,
}

impl ObjectStoreStorage {
    /// Storage at `location` (an object location) through `store`, the bucket's client.
    pub fn new(store: Arc<dyn ObjectStore>, location: &Location) -> Result<Self> {
        let Location::Object { prefix, .. } = location else {
            return Err(Error::internal("ObjectStoreStorage::new called with a local directory"));
        };
        Ok(ObjectStoreStorage {
            store,
            url: location.to_string(),
            prefix: prefix.clone(),
        })
    }

    /// The object path of `key` (relative to the prefix).
    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// `key` relative to the prefix, for an object path listed under it.
    fn relative(&self, path: &ObjectPath) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&self.prefix)
                .map(|s| s.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        }
    }

    fn resource(&self) -> String {
        format!("checkpoint storage {}", self.url)
    }

    /// Reads the owner record and its version; `None` when there is none.
    fn read_owner(&self) -> Result<Option<(OwnerRecord, UpdateVersion)>> {
        let (store, path, url) = (self.store.clone(), self.path(OWNER_FILE), self.url.clone());
        let got = run(async move {
            let r = optional(store.get(&path).await).map_err(|e| read_error(&url, OWNER_FILE, e))?;
            match r {
                None => Ok(None),
                Some(got) => {
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    let bytes = got.bytes().await.map_err(|e| read_error(&url, OWNER_FILE, e))?;
                    Ok(Some((bytes, version)))
                }
            }
        })?;
        got.map(|(bytes, version)| Ok((decode_json(&self.url, "owner record", &bytes)?, version)))
            .transpose()
    }

    /// Reads `key` whole, `None` when absent.
    fn read_optional(&self, key: &'static str) -> Result<Option<Vec<u8>>> {
        let (store, path, url) = (self.store.clone(), self.path(key), self.url.clone());
        run(async move {
            match optional(store.get(&path).await).map_err(|e| read_error(&url, key, e))? {
                None => Ok(None),
                Some(got) => Ok(Some(got.bytes().await.map_err(|e| read_error(&url, key, e))?.to_vec())),
            }
        })
    }

    /// Deletes every object under `prefix` (relative).
    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.delete_under(Some(self.path(prefix)), format!("deleting {prefix}"))
            .map(|_| ())
    }

    /// Lists the objects under `path` (the bucket's root for `None`) and deletes them; an
    /// object already gone counts as deleted. Returns how many were listed.
    fn delete_under(&self, path: Option<ObjectPath>, what: String) -> Result<usize> {
        let (store, url) = (self.store.clone(), self.url.clone());
        run(async move {
            let listed: Vec<ObjectPath> = store
                .list(path.as_ref())
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .map_err(|e| write_error(&url, &what, e))?;
            let n = listed.len();
            let paths = futures::stream::iter(listed.into_iter().map(Ok)).boxed();
            store
                .delete_stream(paths)
                .try_collect::<Vec<_>>()
                .await
                .map(|_| n)
                .or_else(|e| match e {
                    object_store::Error::NotFound { .. } => Ok(n),
                    e => Err(e),
                })
                .map_err(|e| write_error(&url, &what, e))
        })
    }
}

impl ObjectStoreStorage {
    /// Deletes every object under the prefix: checkpoints, shared files, the identity and
    /// owner records. What a disaster-recovery drill does to the site it destroys. Requests a
    /// killed process sent just before it died may still land after a first pass, so passes
    /// repeat (up to ten, 100 ms apart) until the prefix lists empty.
    ///
    /// # Errors
    /// `External` when the store cannot be listed or an object cannot be deleted, or still
    /// holds objects after the last pass.
    pub fn delete_everything(&self) -> Result<()> {
        let root = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        for pass in 0..10 {
            if pass > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if self.delete_under(root.clone(), "deleting everything".into())? == 0 {
                return Ok(());
            }
        }
        Err(weir_engine::Error::external(
            true,
            format!(
                "{} still holds objects after ten passes of deleting everything",
                self.url
            ),
        ))
    }
}

impl CheckpointStorage for ObjectStoreStorage {
    fn describe(&self) -> String {
        self.url.clone()
    }

    /// Lists the prefix and writes and deletes a probe object: a missing bucket, rejected
    /// credentials or an unreachable endpoint show here, before the job starts.
    fn validate(&self) -> Result<()> {
        let (store, url) = (self.store.clone(), self.url.clone());
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let probe = self.path(&format!(".weir-probe-{}", std::process::id()));
        run(async move {
            let explain = |e: object_store::Error, doing: &str| match e {
                object_store::Error::NotFound { .. } => Error::config(format!(
                    "checkpoint storage {url}: the bucket does not exist ({doing} failed)"
                ))
                .with_source(e),
                object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                    credentials(&url, e)
                }
                e => {
                    let text = e.to_string();
                    if text.contains("NoSuchBucket") {
                        Error::config(format!("checkpoint storage {url}: the bucket does not exist")).with_source(e)
                    } else if text.contains("InvalidAccessKeyId") || text.contains("SignatureDoesNotMatch") {
                        credentials(&url, e)
                    } else {
                        Error::config(format!("checkpoint storage {url} cannot be used ({doing} failed): {e}"))
                            .with_source(e)
                    }
                }
            };
            store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(|e| explain(e, "listing"))?;
            store
                .put(&probe, Bytes::from_static(b"probe").into())
                .await
                .map_err(|e| explain(e, "writing a probe object"))?;
            store
                .delete(&probe)
                .await
                .map_err(|e| explain(e, "deleting a probe object"))?;
            Ok(())
        })
    }

    fn acquire(&self, owner: &OwnerInfo) -> Result<OwnerLease> {
        for _ in 0..ACQUIRE_ATTEMPTS {
            let current = self.read_owner()?;
            let record = OwnerRecord {
                epoch: next_epoch(current.as_ref().map(|(r, _)| r)),
                owner: owner.clone(),
            };
            let mode = match &current {
                Some((_, version)) => PutMode::Update(version.clone()),
                None => PutMode::Create,
            };
            let bytes = serde_json::to_vec_pretty(&record)
                .map_err(|e| Error::internal("encoding the owner record").with_source(e))?;
            let (store, path, url) = (self.store.clone(), self.path(OWNER_FILE), self.url.clone());
            let won = run(async move {
                match put_raw(&store, &path, Bytes::from(bytes), mode).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_conflict(&e) => Ok(false),
                    Err(e) => Err(write_error(&url, "writing the owner record", e)),
                }
            })?;
            if won {
                if let Some((previous, _)) = current {
                    tracing::info!(storage = %self.url, epoch = record.epoch, previous = %previous,
                        "took ownership of the checkpoint storage, fencing the previous owner");
                } else {
                    tracing::info!(storage = %self.url, epoch = record.epoch, "took ownership of the checkpoint storage");
                }
                return Ok(OwnerLease::new(record.epoch, record.owner));
            }
        }
        let holder = self.read_owner()?.map(|(r, _)| r);
        Err(held_by_another(&self.resource(), holder.as_ref()))
    }

    fn verify_lease(&self, lease: &OwnerLease) -> Result<()> {
        let recorded = self.read_owner()?.map(|(r, _)| r);
        check_fence(&self.resource(), recorded.as_ref(), lease)
    }

    fn reserve(&self, id: CheckpointId, lease: &OwnerLease) -> Result<()> {
        let key = format!("chk-{id}/{RESERVATION_FILE}");
        let bytes = serde_json::to_vec(lease.record())
            .map_err(|e| Error::internal("encoding a checkpoint reservation").with_source(e))?;
        let (store, path, url) = (self.store.clone(), self.path(&key), self.url.clone());
        let expected = bytes.clone();
        let taken = run(async move {
            match put_raw(&store, &path, Bytes::from(bytes), PutMode::Create).await {
                Ok(_) => Ok(None),
                Err(e) if is_conflict(&e) => {
                    // A retried PUT whose first attempt succeeded finds its own reservation.
                    let existing = store
                        .get(&path)
                        .await
                        .map_err(|e| read_error(&url, "a reservation", e))?;
                    let existing = existing
                        .bytes()
                        .await
                        .map_err(|e| read_error(&url, "a reservation", e))?;
                    Ok((existing.as_ref() != expected.as_slice()).then(|| existing.to_vec()))
                }
                Err(e) => Err(write_error(&url, &format!("reserving checkpoint {id}"), e)),
            }
        })?;
        match taken {
            None => Ok(()),
            Some(by) => {
                let by = serde_json::from_slice::<OwnerRecord>(&by).ok();
                Err(reservation_taken(&self.resource(), id, by.as_ref(), lease))
            }
        }
    }

    fn put_file(&self, local: &Path, key: &str, name: &str) -> Result<StoredFile> {
        let (store, url, dest) = (self.store.clone(), self.url.clone(), self.path(key));
        let (size, crc32c) = run(upload_file(store, url, local.to_path_buf(), dest))?;
        Ok(StoredFile {
            name: name.to_string(),
            key: key.to_string(),
            size,
            crc32c,
        })
    }

    fn put_bytes(&self, key: &str, name: &str, bytes: &[u8]) -> Result<StoredFile> {
        let stored = StoredFile {
            name: name.to_string(),
            key: key.to_string(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        };
        let (store, url, dest) = (self.store.clone(), self.url.clone(), self.path(key));
        let bytes = Bytes::copy_from_slice(bytes);
        run(async move { put(&store, &url, &dest, bytes, PutMode::Overwrite).await })?;
        Ok(stored)
    }

    fn read_verified(&self, file: &StoredFile) -> Result<Vec<u8>> {
        let (store, url, src) = (self.store.clone(), self.url.clone(), self.path(&file.key));
        run(read_verified(
            store,
            url,
            src,
            file.key.clone(),
            (file.size, file.crc32c),
        ))
    }

    fn fetch_verified(&self, file: &StoredFile, dest: &Path) -> Result<()> {
        let (store, url, src) = (self.store.clone(), self.url.clone(), self.path(&file.key));
        run(download_file(
            store,
            url,
            src,
            file.key.clone(),
            dest.to_path_buf(),
            (file.size, file.crc32c),
        ))
    }

    fn write_metadata(&self, id: CheckpointId, bytes: &[u8]) -> Result<()> {
        let key = format!("chk-{id}/{METADATA_FILE}");
        let (store, url, path) = (self.store.clone(), self.url.clone(), self.path(&key));
        let bytes = Bytes::copy_from_slice(bytes);
        run(async move {
            match put_raw(&store, &path, bytes.clone(), PutMode::Create).await {
                Ok(_) => Ok(()),
                Err(e) if is_conflict(&e) => {
                    // Our own earlier attempt may have succeeded before its answer was lost.
                    let existing = store.get(&path).await.map_err(|e| read_error(&url, &key, e))?;
                    let existing = existing.bytes().await.map_err(|e| read_error(&url, &key, e))?;
                    if existing == bytes {
                        Ok(())
                    } else {
                        Err(Error::config(format!(
                            "checkpoint storage {url}: checkpoint {id} was already published by another writer"
                        )))
                    }
                }
                Err(e) => Err(write_error(
                    &url,
                    &format!("publishing the metadata of checkpoint {id}"),
                    e,
                )),
            }
        })
    }

    fn read_metadata(&self, id: CheckpointId) -> Result<Vec<u8>> {
        let key = format!("chk-{id}/{METADATA_FILE}");
        let (store, url, path) = (self.store.clone(), self.url.clone(), self.path(&key));
        run(async move {
            let got = store.get(&path).await.map_err(|e| read_error(&url, &key, e))?;
            Ok(got.bytes().await.map_err(|e| read_error(&url, &key, e))?.to_vec())
        })
    }

    fn list(&self) -> Result<Vec<(CheckpointId, bool)>> {
        let (store, url) = (self.store.clone(), self.url.clone());
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let this = self.clone();
        run(async move {
            let listing = store.list_with_delimiter(prefix.as_ref()).await.map_err(|e| {
                Error::external(true, format!("could not list checkpoint storage {url}")).with_source(e)
            })?;
            let mut out = Vec::new();
            for dir in listing.common_prefixes {
                let name = this.relative(&dir);
                let Some(id) = name.strip_prefix("chk-").and_then(|s| s.parse::<CheckpointId>().ok()) else {
                    continue;
                };
                let meta = this.path(&format!("chk-{id}/{METADATA_FILE}"));
                let complete = optional(store.head(&meta).await)
                    .map_err(|e| {
                        Error::external(true, format!("could not check whether {meta} exists in {url}")).with_source(e)
                    })?
                    .is_some();
                out.push((id, complete));
            }
            out.sort();
            Ok(out)
        })
    }

    fn read_identity(&self) -> Result<Option<Vec<u8>>> {
        self.read_optional(JOB_IDENTITY_FILE)
    }

    fn write_identity(&self, bytes: &[u8]) -> Result<()> {
        let (store, url, path) = (self.store.clone(), self.url.clone(), self.path(JOB_IDENTITY_FILE));
        let bytes = Bytes::copy_from_slice(bytes);
        run(async move { put(&store, &url, &path, bytes, PutMode::Overwrite).await })
    }

    fn delete_checkpoint(&self, id: CheckpointId) -> Result<()> {
        // The metadata first: a half-deleted checkpoint must never look complete.
        self.delete(&format!("chk-{id}/{METADATA_FILE}"))?;
        self.delete_prefix(&format!("chk-{id}"))
    }

    fn list_shared(&self) -> Result<Vec<String>> {
        let (store, url, path) = (self.store.clone(), self.url.clone(), self.path("shared"));
        let listed: Vec<ObjectPath> = run(async move {
            store
                .list(Some(&path))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .map_err(|e| Error::external(true, format!("could not list the shared files of {url}")).with_source(e))
        })?;
        let mut out: Vec<String> = listed.iter().map(|p| self.relative(p)).collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let (store, url, path) = (self.store.clone(), self.url.clone(), self.path(key));
        let what = format!("deleting {key}");
        run(async move {
            optional(store.delete(&path).await)
                .map(|_| ())
                .map_err(|e| write_error(&url, &what, e))
        })
    }
}
