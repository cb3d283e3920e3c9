//! The arguments of one peer run: `key=value` pairs with the names and defaults of
//! `PaymentSumJob.java`, plus Weir's own (`state_cache_mb`, `memtable_at_barrier`, `work`).

use std::collections::BTreeMap;

/// Names and defaults.
const DEFAULTS: &[(&str, &str)] = &[
    ("events", "20000000"),
    ("keys", "100000"),
    ("pad", "0"),
    ("parallelism", "2"),
    ("checkpointing", "true"),
    ("interval_ms", "1000"),
    // rocksdb | memory (Flink's "hashmap" is accepted for the memory backend)
    ("backend", "rocksdb"),
    ("fail_at", "-1"),
    ("verify", "false"),
    ("sample_ms", "50"),
    ("launch_ms", "0"),
    ("timeline", ""),
    ("stop_after_catchup_ms", "0"),
    ("tag", "run"),
    // Weir only: the write-back state cache of each RocksDB store, MiB (empty: the default)
    ("state_cache_mb", ""),
    // Weir only: what a RocksDB snapshot does with the memtable, flush or log (empty: the default)
    ("memtable_at_barrier", ""),
    // Weir only: batches in flight per channel (empty: the default)
    ("channel_capacity", ""),
    // Weir only: where state and checkpoints go (fresh directories per run)
    ("work", "/tmp/weir-peer"),
];

/// Parsed arguments.
#[derive(Debug, Clone)]
pub struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    /// Parses `key=value` arguments over the defaults.
    ///
    /// # Errors
    /// An unknown key or an argument without `=`.
    pub fn parse(argv: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut values: BTreeMap<String, String> =
            DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for a in argv {
            let Some((k, v)) = a.split_once('=') else {
                anyhow::bail!("argument {a:?} is not key=value");
            };
            if !values.contains_key(k) {
                let known: Vec<&str> = DEFAULTS.iter().map(|(k, _)| *k).collect();
                anyhow::bail!("unknown argument {k:?}; known: {}", known.join(", "));
            }
            values.insert(k.to_string(), v.to_string());
        }
        Ok(Args { values })
    }

    /// The raw value of `key`.
    pub fn str(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    /// `key` as a number.
    ///
    /// # Errors
    /// When the value does not parse.
    pub fn num<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.str(key)
            .parse()
            .map_err(|e| anyhow::anyhow!("argument {key}={:?}: {e}", self.str(key)))
    }

    /// `key` as a boolean (`true` / `false`).
    ///
    /// # Errors
    /// When the value is neither.
    pub fn flag(&self, key: &str) -> anyhow::Result<bool> {
        match self.str(key) {
            "true" => Ok(true),
            "false" => Ok(false),
            v => anyhow::bail!("argument {key}={v:?}: expected true or false"),
        }
    }
}
