//! Reading a [`Configuration`]: a TOML file, then the environment variables over it.

use super::sections::Configuration;
use crate::{Error, Result};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use std::path::Path;

/// Every environment variable of a configuration key, with the key it sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("WEIR_JOB_PARALLELISM", "job.parallelism"),
    ("WEIR_JOB_MAX_PARALLELISM", "job.max_parallelism"),
    ("WEIR_CHECKPOINT_STORAGE", "checkpoint.storage"),
    ("WEIR_CHECKPOINT_INTERVAL", "checkpoint.interval"),
    ("WEIR_CHECKPOINT_TIMEOUT", "checkpoint.timeout"),
    ("WEIR_CHECKPOINT_MIN_PAUSE", "checkpoint.min_pause"),
    ("WEIR_CHECKPOINT_RETAINED", "checkpoint.retained"),
    ("WEIR_CHECKPOINT_TOLERABLE_FAILED", "checkpoint.tolerable_failed"),
    ("WEIR_CHECKPOINT_REPLICA", "checkpoint.replica"),
    ("WEIR_STATE_BACKEND", "state.backend"),
    ("WEIR_STATE_DIR", "state.dir"),
    ("WEIR_STATE_CACHE_MB", "state.cache_mb"),
    ("WEIR_STATE_MEMTABLE_AT_BARRIER", "state.memtable_at_barrier"),
    ("WEIR_RESTART_STRATEGY", "restart.strategy"),
    ("WEIR_RESTART_MAX_ATTEMPTS", "restart.max_attempts"),
    ("WEIR_RESTART_DELAY", "restart.delay"),
    ("WEIR_RESTART_INITIAL_DELAY", "restart.initial_delay"),
    ("WEIR_RESTART_MAX_DELAY", "restart.max_delay"),
    ("WEIR_RESTART_MULTIPLIER", "restart.multiplier"),
    ("WEIR_RESTART_MAX_FAILURES", "restart.max_failures"),
    ("WEIR_RESTART_INTERVAL", "restart.interval"),
    ("WEIR_RESTART_JITTER", "restart.jitter"),
    ("WEIR_METRICS_ADDR", "metrics.address"),
    ("WEIR_STATUS_ADDR", "status.address"),
];

/// Prefixes of the sections whose keys have their own variables: a variable with one of them
/// that is not in [`ENV_KEYS`] is a mistake (a typo would otherwise be silently ignored).
const ENV_SECTIONS: &[&str] = &["WEIR_JOB_", "WEIR_CHECKPOINT_", "WEIR_STATE_", "WEIR_RESTART_"];

impl Configuration {
    /// The configuration in `file` (if any), with the environment's `WEIR_*` variables over it
    /// (see [`ENV_KEYS`]; the `[cluster]` section's variables are read where the deployment is
    /// decided, and win over the file there).
    ///
    /// # Errors
    /// `Config`, naming the key (and the file or variable it came from): a file that cannot be
    /// read or does not parse, an unknown key or variable, a value of the wrong type.
    pub fn load(file: Option<&Path>) -> Result<Configuration> {
        let vars: Vec<String> = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect();
        check_variables(vars.iter().map(String::as_str))?;
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::config(format!(
                    "the configuration file {} does not exist (or is not a file)",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::raw().filter_map(|var| {
            ENV_KEYS
                .iter()
                .find(|(name, _)| var.as_str().eq_ignore_ascii_case(name))
                .map(|(_, key)| (*key).into())
        });
        extract(figment.merge(env))
    }

    /// The configuration in TOML `text` alone (no environment), for tests and tools.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_toml(text: &str) -> Result<Configuration> {
        extract(Figment::new().merge(Toml::string(text)))
    }
}

fn extract(figment: Figment) -> Result<Configuration> {
    let config: Configuration = figment.extract().map_err(|e| {
        let all: Vec<String> = e.into_iter().map(|e| describe(&e)).collect();
        Error::config(format!("configuration: {}", all.join("; ")))
    })?;
    config.check()?;
    Ok(config)
}

/// One error of the configuration: the key, what is wrong, and where the value came from (the
/// file's path, or the variable's name).
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let from = match &e.metadata {
        Some(m) => match &m.source {
            Some(figment::Source::File(path)) => format!(" in {}", path.display()),
            _ if m.name.contains("environment") => ENV_KEYS
                .iter()
                .find(|(_, k)| k.eq_ignore_ascii_case(&key))
                .map(|(var, _)| format!(" in the environment variable {var}"))
                .unwrap_or_else(|| " in the environment".to_string()),
            _ => String::new(),
        },
        None => String::new(),
    };
    if key.is_empty() {
        format!("{}{from}", e.kind)
    } else {
        format!("key {key}: {}{from}", e.kind)
    }
}

/// Refuses a variable of a configured section that names no key.
fn check_variables<'a>(vars: impl Iterator<Item = &'a str>) -> Result<()> {
    for var in vars {
        let upper = var.to_ascii_uppercase();
        if ENV_SECTIONS.iter().any(|p| upper.starts_with(p)) && !ENV_KEYS.iter().any(|(name, _)| *name == upper) {
            let known: Vec<&str> = ENV_KEYS.iter().map(|(name, _)| *name).collect();
            return Err(Error::config(format!(
                "unknown configuration variable {var}: the variables of configuration keys are {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_in_a_section_variable_is_refused_naming_it() {
        let e = check_variables(["PATH", "WEIR_CHECKPOINT_INTERVALL", "WEIR_WORKERS"].into_iter()).unwrap_err();
        assert!(e.to_string().contains("WEIR_CHECKPOINT_INTERVALL"), "{e}");
        check_variables(["WEIR_CHECKPOINT_INTERVAL", "WEIR_WORKERS", "WEIR_LOG", "WEIR_STATE_DIR"].into_iter())
            .unwrap();
    }

    #[test]
    fn every_variable_names_a_key_of_the_file() {
        for (var, key) in ENV_KEYS {
            let (section, name) = key.split_once('.').unwrap();
            let value = match *key {
                "state.backend" => "\"memory\"".to_string(),
                "state.memtable_at_barrier" => "\"log\"".to_string(),
                "restart.strategy" => "\"none\"".to_string(),
                "metrics.address" | "status.address" => "\"127.0.0.1:1\"".to_string(),
                k if k.ends_with("storage") || k.ends_with("replica") || k.ends_with("dir") => "\"x\"".to_string(),
                k if k.ends_with("interval")
                    || k.ends_with("timeout")
                    || k.ends_with("pause")
                    || k.ends_with("delay") =>
                {
                    "\"1s\"".to_string()
                }
                k if k.ends_with("multiplier") || k.ends_with("jitter") => "0.5".to_string(),
                _ => "1".to_string(),
            };
            let parsed = Configuration::from_toml(&format!("[{section}]\n{name} = {value}\n"));
            // A strategy's keys without the strategy are refused by the check, not the parser.
            if let Err(e) = parsed {
                assert!(!e.to_string().contains("unknown field"), "{var}: {e}");
            }
        }
    }
}
