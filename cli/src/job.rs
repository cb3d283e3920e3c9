//! Talking to a running job's status server over HTTP. The answers are read as
//! `serde_json::Value`: the CLI depends on the JSON API (documented in `docs/operations.md`),
//! not on the engine's Rust types, so that it builds without the engine.

use crate::CliError;
use serde_json::Value;
use std::time::Duration;

/// How long a read (`GET`) may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a savepoint or a stop may take: the job answers once the checkpoint is complete.
const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// The base URL of a job's status server: `http://host:port` from `http://host:port[/]` or
/// `host:port`.
pub(crate) fn base_url(given: &str) -> Result<String, CliError> {
    let given = given.trim().trim_end_matches('/');
    let url = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{given}")
    };
    if !url.starts_with("http://") {
        return Err(CliError::NotFound(format!(
            "{given} is not a job's status address: use http://HOST:PORT"
        )));
    }
    if url.len() <= "http://".len() {
        return Err(CliError::NotFound("the job's status address is empty".into()));
    }
    Ok(url)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// `GET base + path`, as JSON.
pub(crate) fn get(base: &str, path: &str) -> Result<Value, CliError> {
    let url = format!("{base}{path}");
    let answer = agent(READ_TIMEOUT).get(&url).call();
    read(&url, answer)
}

/// `POST base + path` with `body`, as JSON.
pub(crate) fn post(base: &str, path: &str, body: &str) -> Result<Value, CliError> {
    let url = format!("{base}{path}");
    let answer = agent(ACTION_TIMEOUT).post(&url).send(body);
    read(&url, answer)
}

fn read(url: &str, answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, CliError> {
    let mut response = answer.map_err(|e| {
        CliError::Failed(format!(
            "cannot reach the job at {url}: {e} (is the job running with a status address?)"
        ))
    })?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| CliError::Failed(format!("reading the answer of {url}: {e}")))?;
    let value: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        return value.ok_or_else(|| {
            CliError::Failed(format!(
                "{url} answered something that is not a Weir job's JSON: {}",
                text.chars().take(200).collect::<String>()
            ))
        });
    }
    let message = value
        .as_ref()
        .and_then(|v| v["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(200).collect());
    let message = format!("the job answered {status}: {message}");
    Err(if status.is_client_error() {
        CliError::NotFound(message)
    } else {
        CliError::Failed(message)
    })
}

/// `value` as indented JSON, with a final newline.
pub(crate) fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_addresses() {
        assert_eq!(base_url("127.0.0.1:8081").unwrap(), "http://127.0.0.1:8081");
        assert_eq!(base_url("http://host:1/").unwrap(), "http://host:1");
        assert!(base_url("https://host:1").is_err());
        assert!(base_url("  ").is_err());
    }
}
