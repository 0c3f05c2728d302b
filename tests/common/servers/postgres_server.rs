//! A private, throwaway PostgreSQL server for the tests: `initdb` into a temporary
//! directory (as the unprivileged `postgres` user when the tests run as root, since
//! initdb refuses root), `fsync=off`, listening only on a unix socket in that directory;
//! stopped and removed on drop. Skipped with a printed reason when PostgreSQL is
//! missing, unless `AGHANIM_REQUIRE_POSTGRES=1` (CI) makes that a failure.

use super::{reaper, skipped};

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

pub struct PostgresServer {
    dir: PathBuf,
    bin: PathBuf,
    /// The user the server runs as, when the tests run as root.
    user: Option<&'static str>,
}

impl PostgresServer {
    /// A new server, or `None` (with the reason printed) when none can run here.
    pub fn start() -> Option<Self> {
        let required = std::env::var("AGHANIM_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        let Some(bin) = binaries() else {
            assert!(
                !required,
                "AGHANIM_REQUIRE_POSTGRES=1 but no initdb and pg_ctl were found"
            );
            skipped::skipped(
                "PostgreSQL",
                "no initdb and pg_ctl were found (apt-get install postgresql)",
            );
            return None;
        };
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aghanim-webhook-postgres-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let root = output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
        let user = root.then_some("postgres");
        if let Some(user) = user {
            run("chown", &[user, path(&dir)]);
        }
        let server = Self { dir, bin, user };
        server.pg(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.start_server();
        Some(server)
    }

    /// The server this process shares between its tests, each in a database of its
    /// own ([`database`](Self::database)); tests that stop it start their own.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<PostgresServer>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let server = Self::start()?;
                let stop = server.command_line(
                    "pg_ctl",
                    &["-D", &server.data(), "-m", "immediate", "-w", "stop"],
                );
                reaper::after_exit(&format!("{stop}; rm -rf '{}'", server.dir.display()));
                Some(server)
            })
            .as_ref()
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The name of a new, empty database on this server.
    pub fn database_name(&self) -> String {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let name = format!("test_{}", SERIAL.fetch_add(1, Ordering::Relaxed));
        let socket = self.dir.display().to_string();
        self.pg("createdb", &["-h", &socket, "-U", "postgres", &name]);
        name
    }

    /// A URL for sqlx: the `postgres` database over the unix socket.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// A new, empty database on this server; its URL.
    pub fn database(&self) -> String {
        let name = self.database_name();
        self.url_of(&name)
    }

    /// A URL for sqlx: `database` over the unix socket.
    pub fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}",
            self.dir.display()
        )
    }

    /// Stops the server at once, as a crash would.
    pub fn stop_immediate(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts it again after [`stop_immediate`](Self::stop_immediate).
    pub fn start_server(&self) {
        // fsync=off only matters if the machine crashes; commits still reach the
        // operating system, so an immediate stop (a crash of PostgreSQL alone) loses
        // none of them, as in production.
        // pg_stat_statements, for tests that count what the store sends.
        let options = format!(
            "-c fsync=off -c listen_addresses='' -k {} -c max_connections=400 \
             -c shared_preload_libraries=pg_stat_statements",
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs, as the server's user; panics if it fails.
    fn pg(&self, program: &str, args: &[&str]) {
        let status = self.command(program, args).status();
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        assert!(
            status.is_ok_and(|status| status.success()),
            "{program} {args:?} failed; server log:\n{log}"
        );
    }

    /// The shell command that runs one of PostgreSQL's programs as the server's user.
    fn command_line(&self, program: &str, args: &[&str]) -> String {
        let program = self.bin.join(program).display().to_string();
        let user = self
            .user
            .map_or_else(String::new, |user| format!("runuser -u {user} -- "));
        format!(
            "{user}{program} {}",
            args.iter()
                .map(|arg| format!("'{arg}'"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }

    /// One of PostgreSQL's programs, run as the server's user, its output discarded.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut command = match self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data();
        let stop = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = self.command("pg_ctl", &stop).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").exists() && dir.join("pg_ctl").exists();
    if let Some(dir) = output("pg_config", &["--bindir"]) {
        let dir = PathBuf::from(dir.trim());
        if has_both(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status();
    assert!(
        status.is_ok_and(|status| status.success()),
        "{program} {args:?} failed"
    );
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
