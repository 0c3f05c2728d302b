//! A private, throwaway `redis-server` for the tests: a temporary directory, a unix
//! socket, no TCP port, no persistence. Skipped with a printed reason when the binary
//! is missing, unless `AGHANIM_REQUIRE_REDIS=1` (CI) makes that a failure.

use super::{reaper, skipped};

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// A new server, or `None` (with the reason printed) when none can run here.
    pub fn start() -> Option<Self> {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let required = std::env::var("AGHANIM_REQUIRE_REDIS").is_ok_and(|value| value == "1");
        if Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                !required,
                "AGHANIM_REQUIRE_REDIS=1 but {binary} cannot be run"
            );
            skipped::skipped(
                "Redis",
                &format!("{binary} is not on PATH (apt-get install redis-server)"),
            );
            return None;
        }
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aghanim-webhook-redis-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut server = Self { child: None, dir };
        server.spawn(&binary);
        Some(server)
    }

    /// The server this process shares between its tests, each under a key prefix of
    /// its own ([`prefix`]); tests that kill or restart it start their own.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<RedisServer>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let server = Self::start()?;
                let pid = server.child.as_ref().map_or(0, Child::id);
                reaper::after_exit(&format!("kill {pid}; rm -rf '{}'", server.dir.display()));
                Some(server)
            })
            .as_ref()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    fn spawn(&mut self, binary: &str) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(binary)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(self.socket()) else {
            return false;
        };
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Kills the server at once, as a crash would; every record is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty server on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        self.spawn(&binary);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three private `redis-server --cluster-enabled yes` nodes on free loopback ports,
/// joined by `redis-cli --cluster create` (no replicas), every slot covered. Skipped
/// with a printed reason when the binaries are missing, unless `AGHANIM_REQUIRE_REDIS=1`.
pub struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl RedisCluster {
    /// The cluster this process shares between its tests, each under a key prefix of
    /// its own ([`prefix`]).
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<RedisCluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let cluster = Self::start()?;
                let pids: Vec<String> = cluster
                    .nodes
                    .iter()
                    .map(|node| node.id().to_string())
                    .collect();
                reaper::after_exit(&format!(
                    "kill {}; rm -rf '{}'",
                    pids.join(" "),
                    cluster.dir.display()
                ));
                Some(cluster)
            })
            .as_ref()
    }

    pub fn start() -> Option<Self> {
        let required = std::env::var("AGHANIM_REQUIRE_REDIS").is_ok_and(|value| value == "1");
        let missing = ["redis-server", "redis-cli"].into_iter().find(|binary| {
            Command::new(binary)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_err()
        });
        if let Some(binary) = missing {
            assert!(
                !required,
                "AGHANIM_REQUIRE_REDIS=1 but {binary} cannot be run"
            );
            skipped::skipped(
                "Redis Cluster",
                &format!("{binary} is not on PATH (apt-get install redis-server)"),
            );
            return None;
        }
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aghanim-webhook-redis-cluster-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut cluster = Self {
            nodes: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = free_cluster_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(format!("nodes-{port}.conf"))
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            cluster.wait_for(port, "PING", "+PONG");
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        for &port in &cluster.ports {
            cluster.wait_for(port, "CLUSTER INFO", "cluster_state:ok");
        }
        Some(cluster)
    }

    /// `redis://127.0.0.1:<port>` for each node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    fn wait_for(&self, port: u16, command: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(command.split(' '))
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                .unwrap_or_default();
            if reply.contains(expected.trim_start_matches('+')) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {port} never answered {command} with {expected}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free on 127.0.0.1 whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    use std::net::TcpListener;
    loop {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(address) = listener.local_addr() else {
            continue;
        };
        let port = address.port();
        if port < 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A key prefix no other test of this process uses, for a store on a shared server.
pub fn prefix() -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    format!("aghanim:test{}:", SERIAL.fetch_add(1, Ordering::Relaxed))
}
