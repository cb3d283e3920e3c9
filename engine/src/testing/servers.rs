//! Real servers the tests start (a Kafka-protocol broker, etcd, an S3-compatible server): each
//! runs under a watchdog shell, in a process group of its own.
//!
//! # After a crash
//! - The test panics: dropping the [`WatchedServer`] kills the group (watchdog and server).
//! - The test process dies without running destructors (an abort, a `kill -9`): the watchdog
//!   sees its parent gone within a second and kills the server with `SIGKILL`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Runs `$2...` in the background and kills it once process `$1` (the test) has exited, or
/// ends when it ends.
const WATCHDOG: &str = r#"parent=$1; shift; "$@" & child=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
kill -9 "$child" 2>/dev/null; wait "$child""#;

/// A server process started for a test, killed with its watchdog on drop.
#[derive(Debug)]
pub struct WatchedServer {
    child: Option<Child>,
}

impl WatchedServer {
    /// The command that runs `program` under a watchdog named `name` (as `ps` shows it),
    /// tied to this process: add the server's arguments, environment and output, then
    /// [`spawn`](Self::spawn) it. Standard input is closed.
    pub fn command(name: &str, program: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(WATCHDOG)
            .arg(name)
            .arg(std::process::id().to_string())
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// Starts `command` (from [`command`](Self::command)) in a process group of its own.
    ///
    /// # Errors
    /// The shell could not be started.
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        let child = command.process_group(0).spawn()?;
        Ok(WatchedServer { child: Some(child) })
    }

    /// The watchdog's process id, which is also the group's.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server has ended (its watchdog ends with it): its exit status then.
    ///
    /// # Errors
    /// The status could not be read.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Kills the server and its watchdog (the whole group); again is a no-op.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `--` is required: without it procps kill 4.0 signals only the first digit's
            // group (`-12345` becomes pid -1: every process).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for WatchedServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn dropping_the_server_kills_its_whole_group() {
        let mut c = WatchedServer::command("weir-test-sleeper", Path::new("sleep"));
        c.arg("600");
        let server = WatchedServer::spawn(c).unwrap();
        let group = server.id().unwrap();
        assert!(alive(group));
        drop(server);
        // The group is gone: no process of it answers a signal once the killed ones are
        // reaped (the server was the watchdog's child: its new parent reaps it).
        let group_alive = || {
            Command::new("kill")
                .args(["-0", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while group_alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "a process of group {group} survived"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
