//! Logs of the example programs: Weir's `tracing` events on stderr, filtered and formatted from
//! the environment.
//!
//! - `WEIR_LOG` (or `RUST_LOG` when `WEIR_LOG` is unset): an
//!   [`EnvFilter`](tracing_subscriber::EnvFilter) directive such as `info`,
//!   `weir_engine=debug` or `warn,weir_engine::runtime=info`. Without either, the program's
//!   default applies (see [`init`]).
//! - `WEIR_LOG_FORMAT`: `text` (the default, one human-readable line per event) or `json` (one
//!   JSON object per line, with every field of the event, for a log pipeline).
//!
//! The engine's recovery moments are single events with their facts as fields, and an `event`
//! field that names them: `restore` (attempt, checkpoint, source records), `failure` (attempt,
//! error, whether it restarts), `recovered` (RTO in ms, records replayed) and `fallback` (a
//! restore from an older checkpoint than the newest complete one).

use tracing_subscriber::EnvFilter;

/// The log line format, from `WEIR_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    ///
    /// # Errors
    /// Any other value, with the accepted ones.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("WEIR_LOG_FORMAT={other:?}: expected \"text\" or \"json\""),
        }
    }
}

/// The filter directive from `WEIR_LOG`, else `RUST_LOG`, else `default`.
fn directive(var: impl Fn(&str) -> Option<String>, default: &str) -> String {
    var("WEIR_LOG")
        .or_else(|| var("RUST_LOG"))
        .unwrap_or_else(|| default.to_string())
}

/// Installs the process's log subscriber from `WEIR_LOG`/`RUST_LOG` and `WEIR_LOG_FORMAT`, with
/// `default` as the filter when neither variable is set (for example `"warn"`). A subscriber
/// installed earlier (a test harness's) stays.
///
/// # Errors
/// An invalid filter directive or format, naming the variable.
pub fn init(default: &str) -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let directive = directive(var, default);
    let filter = EnvFilter::try_new(&directive)
        .map_err(|e| anyhow::anyhow!("WEIR_LOG/RUST_LOG={directive:?} is not a valid log filter: {e}"))?;
    let format = match var("WEIR_LOG_FORMAT") {
        Some(v) => LogFormat::parse(&v)?,
        None => LogFormat::Text,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed: that one stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weir_log_wins_over_rust_log_and_the_default_applies_last() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(
            directive(env(&[("WEIR_LOG", "info"), ("RUST_LOG", "debug")]), "warn"),
            "info"
        );
        assert_eq!(directive(env(&[("RUST_LOG", "debug")]), "warn"), "debug");
        assert_eq!(directive(env(&[]), "warn"), "warn");
    }

    #[test]
    fn an_unknown_format_is_refused_naming_the_choices() {
        assert_eq!(LogFormat::parse("json").unwrap(), LogFormat::Json);
        let e = LogFormat::parse("yaml").unwrap_err().to_string();
        assert!(e.contains("WEIR_LOG_FORMAT") && e.contains("\"json\""), "{e}");
    }
}
