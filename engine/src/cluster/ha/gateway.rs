//! etcd's v3 API over its JSON gateway (`POST /v3/...` on the client port, which every etcd
//! from 3.4 serves): one short HTTP/1.1 request per call on a plain TCP connection, with
//! timeouts. Keys and values travel base64-encoded, 64-bit numbers as decimal strings.
//!
//! A small client of our own instead of a gRPC crate: it needs nothing but `std` and
//! `serde_json`, which keeps the build (and the RocksDB build it would otherwise change) as it
//! is.

use crate::{Error, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One etcd cluster, by its client endpoints.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// `host:port` of each endpoint.
    endpoints: Vec<String>,
    /// The endpoint that answered last (tried first).
    preferred: AtomicUsize,
}

/// A key's value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    pub(crate) value: String,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
}

/// A comparison of a transaction.
#[derive(Debug, Clone)]
pub(crate) enum Compare {
    /// The key's creation revision equals this (0: the key does not exist).
    Created(String, i64),
    /// The key's last modification revision equals this (0: the key does not exist).
    Modified(String, i64),
}

impl Gateway {
    /// A gateway to `endpoints` (`http://host:port` or `host:port`).
    pub(crate) fn new(endpoints: &[String]) -> Self {
        Gateway {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_start_matches("http://").trim_end_matches('/').to_string())
                .collect(),
            preferred: AtomicUsize::new(0),
        }
    }

    /// `POST path` with `body`, trying each endpoint from the one that answered last; the
    /// JSON answer.
    fn post(&self, path: &str, body: &Value, timeout: Duration) -> std::result::Result<Value, String> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..n {
            let k = (first + i) % n;
            match post_to(&self.endpoints[k], path, body, timeout) {
                Ok(v) => {
                    self.preferred.store(k, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{}: {e}", self.endpoints[k])),
            }
        }
        Err(errors.join("; "))
    }

    fn call(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        self.post(path, body, timeout)
            .map_err(|e| Error::external(true, format!("etcd {path}: {e}")))
    }

    /// Checks that etcd answers.
    pub(crate) fn status(&self, timeout: Duration) -> std::result::Result<(), String> {
        self.post("/v3/maintenance/status", &json!({}), timeout).map(|_| ())
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str, timeout: Duration) -> Result<Option<Kv>> {
        let v = self.call("/v3/kv/range", &json!({ "key": b64(key.as_bytes()) }), timeout)?;
        let Some(kv) = v["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        Ok(Some(Kv {
            value: String::from_utf8_lossy(&unb64(kv["value"].as_str().unwrap_or(""))).into_owned(),
            create_revision: int(&kv["create_revision"]),
            mod_revision: int(&kv["mod_revision"]),
        }))
    }

    /// Puts `puts` (key, value, lease: 0 for none) if every comparison holds; whether it did,
    /// and the store's revision after the transaction.
    pub(crate) fn txn(
        &self,
        when: &[Compare],
        puts: &[(String, String, i64)],
        timeout: Duration,
    ) -> Result<(bool, i64)> {
        let compare: Vec<Value> = when
            .iter()
            .map(|c| match c {
                Compare::Created(k, rev) => json!({
                    "key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": rev.to_string()
                }),
                Compare::Modified(k, rev) => json!({
                    "key": b64(k.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()
                }),
            })
            .collect();
        let success: Vec<Value> = puts
            .iter()
            .map(|(k, v, lease)| {
                json!({ "request_put": {
                    "key": b64(k.as_bytes()), "value": b64(v.as_bytes()), "lease": lease.to_string()
                }})
            })
            .collect();
        let v = self.call(
            "/v3/kv/txn",
            &json!({ "compare": compare, "success": success }),
            timeout,
        )?;
        Ok((v["succeeded"].as_bool().unwrap_or(false), int(&v["header"]["revision"])))
    }

    /// Grants a lease of `ttl_s` seconds: its id and granted TTL.
    pub(crate) fn grant(&self, ttl_s: i64, timeout: Duration) -> Result<(i64, i64)> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl_s.to_string() }), timeout)?;
        if let Some(e) = v["error"].as_str().filter(|e| !e.is_empty()) {
            return Err(Error::external(true, format!("etcd refused a lease: {e}")));
        }
        Ok((int(&v["ID"]), int(&v["TTL"])))
    }

    /// Renews lease `id`: the TTL left (0: the lease is gone).
    pub(crate) fn keep_alive(&self, id: i64, timeout: Duration) -> Result<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }), timeout)?;
        match v.get("result") {
            Some(r) => Ok(int(&r["TTL"])),
            None => Err(Error::external(true, format!("etcd did not renew lease {id}: {v}"))),
        }
    }

    /// Revokes lease `id` (its keys go with it).
    pub(crate) fn revoke(&self, id: i64, timeout: Duration) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }), timeout)
            .map(|_| ())
    }
}

/// A 64-bit number the gateway writes as a string (or leaves out when 0).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn post_to(endpoint: &str, path: &str, body: &Value, timeout: Duration) -> std::result::Result<Value, String> {
    let addr = endpoint
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "does not resolve".to_string())?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "no HTTP answer".to_string())?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head}"))?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload)?;
    }
    let text = String::from_utf8_lossy(&payload);
    if status != 200 {
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    // A streaming call answers one JSON object per message; the first is ours.
    let first = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .next()
        .ok_or_else(|| "an empty answer".to_string())?;
    first.map_err(|e| format!("an answer that is not JSON ({e}): {text}"))
}

/// The body of a chunked HTTP answer.
fn dechunk(mut raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| "a broken chunked answer".to_string())?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a broken chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 || raw.len() < size {
            out.extend_from_slice(&raw[..size.min(raw.len())]);
            return Ok(out);
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn b64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); invalid characters are skipped.
fn unb64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "/weir/jobs/wordcount/leader",
        ] {
            assert_eq!(unb64(&b64(s.as_bytes())), s.as_bytes(), "{s}");
        }
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(unb64("Zm8"), b"fo");
    }

    #[test]
    fn chunked_answers_and_numbers_as_strings() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&json!(7)), 7);
        assert_eq!(int(&Value::Null), 0);
    }
}
