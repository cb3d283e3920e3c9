//! Two calls of RocksDB's C API that the `rocksdb` crate (0.25) does not wrap, as safe
//! functions over its [`DB`]:
//!
//! - [`live_files`]: the SST files of a database with their level, key range and sequence
//!   numbers (the crate's `DB::live_files` leaves out the sequence numbers, which say in which
//!   order files of one database that hold the same keys must be ingested elsewhere);
//! - [`ingest_db_files`]: ingests SST files written by *another* RocksDB database, hard-linked
//!   and with their sequence numbers kept (`IngestExternalFileOptions::allow_db_generated_files`,
//!   RocksDB ≥ 9.x). The crate only ingests files written by `SstFileWriter`, so moving a range
//!   of one database into another meant rewriting it record by record.
//!
//! This is the only crate of the workspace with `unsafe`: each block calls one C function with
//! pointers that live for the call.

use librocksdb_sys as ffi;
use rocksdb::{AsRawPtr, DB};
use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An error RocksDB returned, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestError(pub String);

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IngestError {}

/// One live SST file of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSst {
    /// The file name, relative to the database directory (`000123.sst`).
    pub name: String,
    /// Its level in the LSM tree (0 = newest).
    pub level: i32,
    /// The smallest user key, range deletions included.
    pub smallest_key: Vec<u8>,
    /// The largest user key, range deletions included.
    pub largest_key: Vec<u8>,
    /// The smallest sequence number of an entry.
    pub smallest_seqno: u64,
    /// The largest sequence number of an entry.
    pub largest_seqno: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// The live SST files of `db`'s default column family.
pub fn live_files(db: &DB) -> Vec<LiveSst> {
    // SAFETY: `db` is open for the whole call; the list is destroyed below and its strings are
    // copied out before that.
    unsafe {
        let raw: *mut ffi::rocksdb_t = db.as_raw_ptr();
        let files = ffi::rocksdb_livefiles(raw);
        if files.is_null() {
            return Vec::new();
        }
        let n = ffi::rocksdb_livefiles_count(files);
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let name = CStr::from_ptr(ffi::rocksdb_livefiles_name(files, i))
                .to_string_lossy()
                .trim_start_matches('/')
                .to_string();
            out.push(LiveSst {
                name,
                level: ffi::rocksdb_livefiles_level(files, i),
                smallest_key: key(files, i, ffi::rocksdb_livefiles_smallestkey),
                largest_key: key(files, i, ffi::rocksdb_livefiles_largestkey),
                smallest_seqno: ffi::rocksdb_livefiles_smallest_seqno(files, i),
                largest_seqno: ffi::rocksdb_livefiles_largest_seqno(files, i),
                size: ffi::rocksdb_livefiles_size(files, i) as u64,
            });
        }
        ffi::rocksdb_livefiles_destroy(files);
        out
    }
}

type KeyFn = unsafe extern "C" fn(*const ffi::rocksdb_livefiles_t, c_int, *mut usize) -> *const c_char;

/// Copies key `i` of `files` out with `get`.
///
/// # Safety
/// `files` must be a live list with more than `i` entries.
unsafe fn key(files: *const ffi::rocksdb_livefiles_t, i: c_int, get: KeyFn) -> Vec<u8> {
    let mut len = 0usize;
    // SAFETY: the caller passes a live list and an index in range; the key stays valid until
    // the list is destroyed, after this copy.
    unsafe {
        let p = get(files, i, &mut len);
        if p.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
    }
}

/// Ingests `files`, SST files written by another RocksDB database, into `db`: each is
/// hard-linked into `db`'s directory (copied when linking fails) and keeps its sequence
/// numbers, and `files` are left in place.
///
/// RocksDB's conditions: no file's key range (range deletions included) may overlap data
/// already in `db` (memtable or files), else nothing is ingested and an error is returned;
/// when files overlap each other, those holding older versions of a key come first (lower
/// levels first, and within level 0 the older file first). All files are ingested or none.
///
/// # Errors
/// RocksDB's message when it refuses or fails.
pub fn ingest_db_files(db: &DB, files: &[PathBuf]) -> Result<(), IngestError> {
    let paths: Vec<CString> = files.iter().map(|p| path_cstring(p)).collect::<Result<_, _>>()?;
    let ptrs: Vec<*const c_char> = paths.iter().map(|p| p.as_ptr()).collect();
    // SAFETY: the options are created and destroyed here; `paths` outlives the call; `db` is
    // open; the error string RocksDB allocates is copied and freed.
    unsafe {
        let opts = ffi::rocksdb_ingestexternalfileoptions_create();
        ffi::rocksdb_ingestexternalfileoptions_set_link_files(opts, 1);
        ffi::rocksdb_ingestexternalfileoptions_set_move_files(opts, 0);
        ffi::rocksdb_ingestexternalfileoptions_set_allow_db_generated_files(opts, 1);
        // Sequence numbers are kept, so none can be assigned for snapshots or an overlap.
        ffi::rocksdb_ingestexternalfileoptions_set_snapshot_consistency(opts, 0);
        ffi::rocksdb_ingestexternalfileoptions_set_allow_blocking_flush(opts, 0);
        let mut err: *mut c_char = std::ptr::null_mut();
        let raw: *mut ffi::rocksdb_t = db.as_raw_ptr();
        ffi::rocksdb_ingest_external_file(raw, ptrs.as_ptr(), ptrs.len(), opts, &mut err);
        ffi::rocksdb_ingestexternalfileoptions_destroy(opts);
        if err.is_null() {
            Ok(())
        } else {
            let message = CStr::from_ptr(err).to_string_lossy().into_owned();
            ffi::rocksdb_free(err.cast());
            Err(IngestError(message))
        }
    }
}

fn path_cstring(p: &Path) -> Result<CString, IngestError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| IngestError(format!("{} holds a NUL byte", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::{Options, WriteBatch};

    fn open(dir: &Path) -> DB {
        let mut o = Options::default();
        o.create_if_missing(true);
        DB::open(&o, dir).unwrap()
    }

    #[test]
    fn files_of_another_database_come_in_with_their_sequence_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let src = open(&tmp.path().join("src"));
        for i in 0..100u32 {
            src.put([b"b", &i.to_be_bytes()[..]].concat(), b"old").unwrap();
        }
        src.flush().unwrap();
        src.compact_range::<&[u8], &[u8]>(None, None);
        for i in 0..50u32 {
            src.put([b"b", &i.to_be_bytes()[..]].concat(), b"new").unwrap();
        }
        let mut batch = WriteBatch::default();
        batch.delete([b"b", &7u32.to_be_bytes()[..]].concat());
        src.write(batch).unwrap();
        src.flush().unwrap();
        let mut files = live_files(&src);
        assert!(files.len() >= 2, "{files:?}");
        assert!(files
            .iter()
            .all(|f| f.name.ends_with(".sst") && f.largest_seqno >= f.smallest_seqno));
        // Older versions first: the deepest level first, then by sequence number.
        files.sort_by_key(|f| (std::cmp::Reverse(f.level), f.largest_seqno));
        let paths: Vec<PathBuf> = files.iter().map(|f| tmp.path().join("src").join(&f.name)).collect();

        let dst = open(&tmp.path().join("dst"));
        dst.put(b"a", b"mine").unwrap();
        dst.flush().unwrap();
        ingest_db_files(&dst, &paths).unwrap();
        assert!(paths.iter().all(|p| p.exists()), "the source files stay");
        assert_eq!(dst.get(b"a").unwrap().as_deref(), Some(&b"mine"[..]));
        let get = |i: u32| dst.get([b"b", &i.to_be_bytes()[..]].concat()).unwrap();
        assert_eq!(get(3).as_deref(), Some(&b"new"[..]));
        assert_eq!(get(7), None, "the delete is newer than the put");
        assert_eq!(get(70).as_deref(), Some(&b"old"[..]));
        // Writes after the ingest are newer than everything ingested.
        dst.put([b"b", &70u32.to_be_bytes()[..]].concat(), b"later").unwrap();
        dst.flush().unwrap();
        dst.compact_range::<&[u8], &[u8]>(None, None);
        assert_eq!(get(70).as_deref(), Some(&b"later"[..]));
        assert_eq!(get(3).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn files_overlapping_data_of_the_database_are_refused_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let src = open(&tmp.path().join("src"));
        src.put(b"k1", b"theirs").unwrap();
        src.put(b"k3", b"theirs").unwrap();
        src.flush().unwrap();
        let paths: Vec<PathBuf> = live_files(&src)
            .iter()
            .map(|f| tmp.path().join("src").join(&f.name))
            .collect();
        let dst = open(&tmp.path().join("dst"));
        dst.put(b"k2", b"mine").unwrap();
        dst.flush().unwrap();
        let e = ingest_db_files(&dst, &paths).expect_err("k1..k3 overlaps k2");
        assert!(e.0.contains("overlap"), "{e}");
        assert_eq!(dst.get(b"k1").unwrap(), None);
    }
}
