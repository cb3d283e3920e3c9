//! The `[cluster]` section as the deployment variables it stands for: the cluster reads its
//! settings from `WEIR_*` variables ([`cluster::config`](crate::cluster::config)), and a file's
//! `[cluster]` keys fill in the variables the environment does not set.

use super::sections::Configuration;
use std::collections::BTreeMap;
use std::time::Duration;

impl Configuration {
    /// The `[cluster]` keys that are set, by the name of their variable (`WEIR_WORKERS`, ...).
    pub fn cluster_vars(&self) -> BTreeMap<String, String> {
        let c = &self.cluster;
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string());
        [
            ("WEIR_ROLE", c.role.clone()),
            ("WEIR_WORKERS", c.workers.map(|n| n.to_string())),
            ("WEIR_MASTER", c.master.clone()),
            ("WEIR_WORKER_ID", c.worker_id.map(|n| n.to_string())),
            ("WEIR_SLOTS", c.slots.map(|n| n.to_string())),
            ("WEIR_DATA_ADDR", c.data_addr.clone()),
            ("WEIR_ADVERTISE_HOST", c.advertise_host.clone()),
            ("WEIR_HEARTBEAT_MS", ms(c.heartbeat)),
            ("WEIR_HEARTBEAT_TIMEOUT_MS", ms(c.heartbeat_timeout)),
            ("WEIR_MASTER_WAIT_MS", ms(c.master_wait)),
            ("WEIR_WORKER_WAIT_MS", ms(c.worker_wait)),
            ("WEIR_ETCD_ENDPOINTS", c.etcd_endpoints.as_ref().map(|e| e.join(","))),
            ("WEIR_HA_LEASE_MS", ms(c.ha_lease)),
            ("WEIR_MASTERS", c.masters.map(|n| n.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_keys_become_the_variables_the_cluster_reads() {
        let c = Configuration::from_toml(
            "[cluster]\nworkers = 3\nheartbeat = \"500ms\"\netcd_endpoints = [\"a:2379\", \"b:2379\"]\n",
        )
        .unwrap();
        let vars = c.cluster_vars();
        assert_eq!(vars.get("WEIR_WORKERS").map(String::as_str), Some("3"));
        assert_eq!(vars.get("WEIR_HEARTBEAT_MS").map(String::as_str), Some("500"));
        assert_eq!(
            vars.get("WEIR_ETCD_ENDPOINTS").map(String::as_str),
            Some("a:2379,b:2379")
        );
        assert_eq!(vars.len(), 3);
    }
}
