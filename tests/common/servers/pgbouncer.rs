//! A private PgBouncer in transaction mode in front of a private PostgreSQL server,
//! with fewer server connections than the tests' pools have clients: the strictest
//! pooler (1.18 knows no prepared statement at all in that mode). It listens on a unix
//! socket in a temporary directory and stops with the process. Skipped with a printed
//! reason when PgBouncer is missing, unless `AGHANIM_REQUIRE_PGBOUNCER=1` (CI).

// The benchmarks include this folder and start no pooler.
#![allow(dead_code)]

use super::{postgres_server::PostgresServer, reaper, skipped};

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Server connections per database: fewer than any test pool's clients.
pub const SERVER_CONNECTIONS: u32 = 3;
const PORT: u16 = 6432;

pub struct PgBouncer {
    dir: PathBuf,
    /// Killed once the process exits (the shared one lives in a static).
    _process: Child,
}

impl PgBouncer {
    /// The PgBouncer this process shares, in front of the shared PostgreSQL server.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<PgBouncer>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start(PostgresServer::shared()?))
            .as_ref()
    }

    fn start(server: &PostgresServer) -> Option<Self> {
        let required = std::env::var("AGHANIM_REQUIRE_PGBOUNCER").is_ok_and(|value| value == "1");
        let Some(bin) = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|bin| bin.exists())
        else {
            assert!(
                !required,
                "AGHANIM_REQUIRE_PGBOUNCER=1 but no pgbouncer was found"
            );
            skipped::skipped(
                "PgBouncer",
                "no pgbouncer was found (apt-get install pgbouncer)",
            );
            return None;
        };
        let dir =
            std::env::temp_dir().join(format!("aghanim-webhook-pgbouncer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let config = format!(
            "[databases]\n\
             * = host={socket} port=5432 user=postgres\n\
             [pgbouncer]\n\
             listen_addr =\n\
             listen_port = {PORT}\n\
             unix_socket_dir = {dir}\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {SERVER_CONNECTIONS}\n\
             max_client_conn = 1000\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n",
            socket = server.socket_dir().display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).expect("config");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("users");
        // PgBouncer refuses to run as root.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        let mut command = if root {
            let _ = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status();
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&bin);
            command
        } else {
            Command::new(&bin)
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        reaper::after_exit(&format!(
            "kill {pid} 2>/dev/null; pkill -f '{dir}/pgbouncer.ini'; rm -rf '{dir}'",
            pid = child.id(),
            dir = dir.display()
        ));
        let socket = dir.join(format!(".s.PGSQL.{PORT}"));
        let started = Instant::now();
        while !socket.exists() {
            let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen within 10 s; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self {
            dir,
            _process: child,
        })
    }

    /// A URL for sqlx to `database` through the pooler, with sqlx's statement cache off,
    /// as sqlx advises behind a transaction pooler.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}&port={PORT}&statement-cache-capacity=0",
            self.dir.display()
        )
    }
}
