//! Moving whole files between the local disk and an object store, with their CRC-32C.
//!
//! Files up to [`MULTIPART_THRESHOLD`] go up in one PUT; larger ones as a multipart upload
//! of [`PART_SIZE`] parts, a few in flight at a time. A failed multipart upload is aborted
//! (its parts are not left billed in the bucket). Downloads stream to a temporary file next
//! to the destination, verify size and checksum, and only then take the destination's name:
//! a destination that exists is complete and verified.

use crate::errors::{read_error, write_error};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_engine::{Error, Result};

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The size of one part of a multipart upload.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Uploads local file `local` to `dest`; returns its size and CRC-32C.
pub(crate) async fn upload_file(
    store: Arc<dyn ObjectStore>,
    url: String,
    local: PathBuf,
    dest: ObjectPath,
) -> Result<(u64, u32)> {
    let io = |e| Error::io(format!("reading {} for upload", local.display()), e);
    let mut file = tokio::fs::File::open(&local).await.map_err(io)?;
    let len = file.metadata().await.map_err(io)?.len();
    if len <= MULTIPART_THRESHOLD {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf).await.map_err(io)?;
        let crc = crc32c::crc32c(&buf);
        let size = buf.len() as u64;
        put(&store, &url, &dest, Bytes::from(buf), PutMode::Overwrite).await?;
        return Ok((size, crc));
    }
    let upload = store
        .put_multipart(&dest)
        .await
        .map_err(|e| write_error(&url, &format!("starting the upload of {dest}"), e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let (mut size, mut crc) = (0u64, 0u32);
    let mut buf = vec![0u8; PART_SIZE];
    let outcome: Result<()> = async {
        loop {
            let n = read_full(&mut file, &mut buf).await.map_err(io)?;
            if n == 0 {
                return Ok(());
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            size += n as u64;
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| write_error(&url, &format!("uploading a part of {dest}"), e))?;
            writer.write(&buf[..n]);
        }
    }
    .await;
    match outcome {
        Ok(()) => {
            writer
                .finish()
                .await
                .map_err(|e| write_error(&url, &format!("completing the upload of {dest}"), e))?;
            Ok((size, crc))
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(object = %dest, error = %abort, "could not abort a failed multipart upload");
            }
            Err(e)
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Puts `bytes` under `dest` with `mode`; the raw object store error on failure.
pub(crate) async fn put_raw(
    store: &Arc<dyn ObjectStore>,
    dest: &ObjectPath,
    bytes: Bytes,
    mode: PutMode,
) -> std::result::Result<object_store::PutResult, object_store::Error> {
    let opts = PutOptions {
        mode,
        ..Default::default()
    };
    store.put_opts(dest, PutPayload::from(bytes), opts).await
}

/// Puts `bytes` under `dest` with `mode`.
pub(crate) async fn put(
    store: &Arc<dyn ObjectStore>,
    url: &str,
    dest: &ObjectPath,
    bytes: Bytes,
    mode: PutMode,
) -> Result<()> {
    put_raw(store, dest, bytes, mode)
        .await
        .map(|_| ())
        .map_err(|e| write_error(url, &format!("writing {dest}"), e))
}

/// Downloads `src` to local `dest`, verifying `size` and `crc`.
///
/// # Errors
/// `Checkpoint` when the object is missing or its size or checksum differ; `External` when
/// it could not be read or written locally.
pub(crate) async fn download_file(
    store: Arc<dyn ObjectStore>,
    url: String,
    src: ObjectPath,
    key: String,
    dest: PathBuf,
    expected: (u64, u32),
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let tmp = temp_name(&dest);
    let io = |e| Error::io(format!("writing {}", tmp.display()), e);
    let got = store.get(&src).await.map_err(|e| read_error(&url, &key, e))?;
    let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
    let (mut size, mut crc) = (0u64, 0u32);
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| read_error(&url, &key, e))?;
        crc = crc32c::crc32c_append(crc, &chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    drop(out);
    if (size, crc) != expected {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(corrupt(&key, size, crc, expected));
    }
    tokio::fs::rename(&tmp, &dest)
        .await
        .map_err(|e| Error::io(format!("renaming {} to {}", tmp.display(), dest.display()), e))
}

/// Reads `src` whole, verifying `size` and `crc`.
pub(crate) async fn read_verified(
    store: Arc<dyn ObjectStore>,
    url: String,
    src: ObjectPath,
    key: String,
    expected: (u64, u32),
) -> Result<Vec<u8>> {
    let got = store.get(&src).await.map_err(|e| read_error(&url, &key, e))?;
    let bytes = got.bytes().await.map_err(|e| read_error(&url, &key, e))?;
    let actual = (bytes.len() as u64, crc32c::crc32c(&bytes));
    if actual != expected {
        return Err(corrupt(&key, actual.0, actual.1, expected));
    }
    Ok(bytes.to_vec())
}

fn corrupt(key: &str, size: u64, crc: u32, expected: (u64, u32)) -> Error {
    Error::checkpoint(format!(
        "checkpoint file {key} is corrupt: size {size} crc {crc:08x}, expected size {} crc {:08x}",
        expected.0, expected.1
    ))
}

fn temp_name(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".part-{}", std::process::id()));
    dest.with_file_name(name)
}
