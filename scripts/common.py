"""Helpers shared by the load, attack and soak scripts: build and start the example
server, sign bodies with Aghanim's recipe, read a process's memory."""
import glob
import hashlib
import hmac
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "scripts-secret"


def signature(body: bytes, timestamp: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_head(body: bytes, extra: str = "", length: int = None, secret: str = SECRET) -> bytes:
    """Request line and headers for `body`, signed now; `length` overrides content-length."""
    now = int(time.time())
    length = len(body) if length is None else length
    framing = f"content-length: {length}\r\n" if length >= 0 else "transfer-encoding: chunked\r\n"
    return (
        "POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"x-aghanim-signature-timestamp: {now}\r\n"
        f"x-aghanim-signature: {signature(body, now, secret)}\r\n{framing}{extra}\r\n"
    ).encode()


def target_dir(manifest_dir: pathlib.Path = ROOT) -> pathlib.Path:
    """Where cargo builds the package in `manifest_dir`: `target/`, or `CARGO_TARGET_DIR`
    and the like, as cargo itself says."""
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=manifest_dir, check=True, capture_output=True, text=True).stdout
    return pathlib.Path(json.loads(metadata)["target_directory"])


def build_example(name: str) -> pathlib.Path:
    subprocess.run(["cargo", "build", "-q", "--release", "--example", name], cwd=ROOT, check=True)
    return target_dir() / "release" / "examples" / name


def start(binary: pathlib.Path, port: int, *args: str, env: dict = None,
          stdout: str = None) -> subprocess.Popen:
    """Starts `binary` on `port` and waits until it accepts; its output goes to the file
    `stdout`, or nowhere."""
    environment = dict(os.environ, PORT=str(port), AGHANIM_WEBHOOK_SECRET=SECRET, **(env or {}))
    output = open(stdout, "wb") if stdout else subprocess.DEVNULL
    process = subprocess.Popen([str(binary), *args], env=environment, stdout=output,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    if stdout:
        output.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{binary.name} exited with {process.returncode}")
            time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{binary.name} did not start on port {port}")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def memory_mib(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of `pid`, in MiB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


class Postgres:
    """A private PostgreSQL in `directory`: initdb as the `postgres` user when running
    as root (initdb refuses root), fsync off, a unix socket only."""

    def __init__(self, directory: str, options: str = ""):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not bins:
            raise RuntimeError("no PostgreSQL: apt-get install postgresql")
        self.bin = bins[-1]
        self.dir = directory
        self.data = os.path.join(directory, "data")
        self.options = options
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            subprocess.run(["chown", self.user, directory], check=True)
        self.pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def pg(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bin, program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self.pg("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w",
                "-o", f"-c fsync=off -c listen_addresses='' -k {self.dir} {self.options}", "start")

    def restart_immediate(self) -> None:
        self.pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        self.start()

    def stop(self) -> None:
        self.pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def sql(self, statement: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [os.path.join(self.bin, "psql"), "-h", self.dir, "-U", "postgres", "-d", database,
             "-At", "-c", statement],
            check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@localhost/{database}?host={self.dir}"

    def gems(self) -> int:
        return int(self.sql("SELECT coalesce(sum(quantity), 0) FROM inventory "
                            "WHERE player_id = 'testplayer' AND sku = 'gems'"))


class PgBouncer:
    """A private PgBouncer in transaction mode in front of `postgres` (a `Postgres`),
    with `server_connections` server connections: the strictest pooler (1.18 has no
    prepared statements in that mode), configured as sqlx users configure it."""

    def __init__(self, directory: str, postgres: "Postgres", server_connections: int = 4):
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(binary):
            raise RuntimeError("no PgBouncer: apt-get install pgbouncer")
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = 6432
        with open(os.path.join(directory, "pgbouncer.ini"), "w") as config:
            config.write(
                "[databases]\n"
                f"* = host={postgres.dir} port=5432 user=postgres\n"
                "[pgbouncer]\n"
                "listen_addr =\n"
                f"listen_port = {self.port}\n"
                f"unix_socket_dir = {directory}\n"
                "auth_type = trust\n"
                f"auth_file = {directory}/users.txt\n"
                "pool_mode = transaction\n"
                f"default_pool_size = {server_connections}\n"
                "max_client_conn = 2000\n"
                "ignore_startup_parameters = extra_float_digits\n"
                f"logfile = {directory}/pgbouncer.log\n")
        with open(os.path.join(directory, "users.txt"), "w") as users:
            users.write('"postgres" ""\n')
        command = [binary, os.path.join(directory, "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root.
            subprocess.run(["chown", "-R", "postgres", directory], check=True)
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        socket = os.path.join(directory, f".s.PGSQL.{self.port}")
        deadline = time.monotonic() + 10
        while not os.path.exists(socket):
            if time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not start: " + open(
                    os.path.join(directory, "pgbouncer.log")).read())
            time.sleep(0.05)

    def url(self, database: str = "postgres") -> str:
        return (f"postgres://postgres@localhost/{database}?host={self.dir}&port={self.port}"
                "&statement-cache-capacity=0")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
