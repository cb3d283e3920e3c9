//! A bounded source of the lines of text files; a split is one file, its offset the byte
//! position of the next line.

use super::{AssignedSplit, ReadStatus, Source, SourceReader, SplitId, SplitPosition, SubtaskInfo};
use crate::data::Record;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

/// Reads every line (without its line ending) of the given files; a directory stands for the
/// regular files in it, sorted by name.
#[derive(Debug, Clone)]
pub struct FileLinesSource {
    paths: Vec<PathBuf>,
}

impl FileLinesSource {
    /// Lines of `path` (a file, or a directory of files).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileLinesSource {
            paths: vec![path.into()],
        }
    }

    /// Lines of several files or directories.
    pub fn many(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        FileLinesSource {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }
}

impl Source for FileLinesSource {
    type Out = String;

    fn splits(&self) -> Result<Vec<SplitId>> {
        let mut files = Vec::new();
        for p in &self.paths {
            let meta = std::fs::metadata(p)
                .map_err(|e| Error::config(format!("file source: cannot read {}: {e}", p.display())))?;
            if meta.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| Error::io(format!("listing {}", p.display()), e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                entries.sort();
                files.extend(entries);
            } else {
                files.push(p.clone());
            }
        }
        Ok(files.into_iter().map(|p| p.to_string_lossy().into_owned()).collect())
    }

    fn create_reader(
        &self,
        splits: Vec<AssignedSplit>,
        _subtask: SubtaskInfo,
    ) -> Result<Box<dyn SourceReader<String>>> {
        Ok(Box::new(LinesReader {
            splits: splits.into_iter().map(|s| (s.id, s.offset.unwrap_or(0))).collect(),
            current: 0,
            open: None,
            line: String::new(),
        }))
    }
}

struct LinesReader {
    splits: Vec<(SplitId, u64)>,
    current: usize,
    open: Option<BufReader<File>>,
    line: String,
}

impl SourceReader<String> for LinesReader {
    fn poll(&mut self, out: &mut Vec<Record<String>>, max: usize) -> Result<ReadStatus> {
        let mut n = 0;
        while n < max {
            if self.current >= self.splits.len() {
                return Ok(ReadStatus::Finished);
            }
            let (path, offset) = &mut self.splits[self.current];
            if self.open.is_none() {
                let mut f = File::open(&*path).map_err(|e| Error::io(format!("opening {path}"), e))?;
                f.seek(SeekFrom::Start(*offset))
                    .map_err(|e| Error::io(format!("seeking {path}"), e))?;
                self.open = Some(BufReader::new(f));
            }
            self.line.clear();
            let r = self.open.as_mut().expect("opened above");
            let read = r
                .read_line(&mut self.line)
                .map_err(|e| Error::io(format!("reading {path}"), e))?;
            if read == 0 {
                self.open = None;
                self.current += 1;
                continue;
            }
            *offset += read as u64;
            let line = self.line.trim_end_matches(['\n', '\r']).to_string();
            out.push(Record::new(line));
            n += 1;
        }
        Ok(ReadStatus::More)
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits
            .iter()
            .map(|(id, off)| SplitPosition {
                split: id.clone(),
                offset: *off,
                event_time: None,
                state: None,
            })
            .collect()
    }
}
