//! q13's bounded side input: a table of `key → value` rows that every bid is joined with by
//! `auction % rows`. Flink's suite reads it from a CSV file written by its side-input generator
//! (`key,value` lines, `i,i` for `i` in `0..10,000`); here it is either that table generated in
//! memory or read from such a file.
//!
//! # Checkpointing
//! The table is part of the job's definition, not of its state: every subtask holds it whole,
//! and a restored job reads it again from the same file (or generates it again).

use std::path::Path;

/// Rows of Flink's generated side input.
pub const FLINK_SIDE_INPUT_ROWS: u64 = 10_000;

/// The side-input table: the value of key `k` is `values[k]`, for keys `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideInput {
    values: Vec<String>,
}

impl SideInput {
    /// Flink's generated table: `rows` rows `i,i`.
    pub fn generated(rows: u64) -> Self {
        SideInput {
            values: (0..rows).map(|i| i.to_string()).collect(),
        }
    }

    /// Reads a CSV file of `key,value` lines (keys `0..n`, each once, in any order), as
    /// Flink's side-input generator writes them.
    ///
    /// # Errors
    /// A message naming the file and line when it cannot be read, a line is not `key,value`
    /// with an unsigned integer key, a key repeats, or the keys are not `0..n`.
    pub fn from_csv_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the side input {}: {e}", path.display()))?;
        Self::from_csv(&text).map_err(|e| format!("side input {}: {e}", path.display()))
    }

    /// Parses `key,value` lines; see [`from_csv_file`](Self::from_csv_file).
    ///
    /// # Errors
    /// As [`from_csv_file`](Self::from_csv_file).
    pub fn from_csv(text: &str) -> Result<Self, String> {
        let mut rows: Vec<Option<String>> = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected key,value, got {line:?}", n + 1))?;
            let key: usize = key
                .trim()
                .parse()
                .map_err(|_| format!("line {}: key {key:?} is not an unsigned integer", n + 1))?;
            if key >= rows.len() {
                rows.resize(key + 1, None);
            }
            if rows[key].replace(value.to_string()).is_some() {
                return Err(format!("line {}: key {key} appears twice", n + 1));
            }
        }
        if rows.is_empty() {
            return Err("no rows".into());
        }
        let values = rows
            .into_iter()
            .enumerate()
            .map(|(k, v)| v.ok_or_else(|| format!("key {k} is missing (keys must be 0..n)")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SideInput { values })
    }

    /// Number of rows.
    pub fn len(&self) -> u64 {
        self.values.len() as u64
    }

    /// Whether the table has no rows (never, for a table built by this type).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of key `key`, if the table has it.
    pub fn get(&self, key: u64) -> Option<&str> {
        self.values.get(usize::try_from(key).ok()?).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flinks_file_and_names_bad_lines() {
        let t = SideInput::from_csv("1,one\n0,zero\n").unwrap();
        assert_eq!(
            (t.len(), t.get(0), t.get(1), t.get(2)),
            (2, Some("zero"), Some("one"), None)
        );
        assert_eq!(SideInput::from_csv("0,0\n1,1\n").unwrap(), SideInput::generated(2));
        assert!(SideInput::from_csv("0,a\n0,b")
            .unwrap_err()
            .contains("line 2: key 0 appears twice"));
        assert!(SideInput::from_csv("x,a").unwrap_err().contains("line 1: key \"x\""));
        assert!(SideInput::from_csv("0,a\n2,b")
            .unwrap_err()
            .contains("key 1 is missing"));
        assert!(SideInput::from_csv("0;a").unwrap_err().contains("expected key,value"));
    }
}
