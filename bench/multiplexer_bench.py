"""Would a connection multiplexer (RDS Proxy) help connvault? Measured with pgbouncer in transaction pooling mode,
a stand-in that multiplexes at transaction boundaries and, unlike RDS Proxy, never pins a session.

Everything runs on loopback against an embedded PostgreSQL migrated with connvault's schema: the authorizer's
hot statement (``connvault_find_api_key``) is timed directly and through pgbouncer, as a named prepared
statement (what ``FastReads`` uses: one round trip) and as an unnamed one (what a pin-free driver mode would
send), plus the cost of opening a connection as connvault does (login, ``SET ROLE``, ``SET statement_timeout``).
Then what transaction pooling does to connvault's session state when several clients share few server
connections: named statements that are not there, and ``SET ROLE`` that does not follow the client.

Floor: the named prepared statement on a direct warm connection, measured in the same run; every time is
printed as a ratio to it. Loopback hides the network round trip that dominates in AWS (a proxy is one more
hop), so read the ratios and the counts, not the absolute microseconds.

Needs Debian's pgbouncer (``apt-get install pgbouncer``; ``make bench-multiplexer`` installs it).
Run: ``.venv/bin/python bench/multiplexer_bench.py [--iterations 2000] [--clients 8]``
"""

from __future__ import annotations

import argparse
import contextlib
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
import pg8000.dbapi  # noqa: E402 - after the path is set
import pg8000.native  # noqa: E402
from timing import per_call_us  # noqa: E402 - bench/timing.py, beside this script

from connvault.db.target import DatabaseTarget, session_setup, sqlstate  # noqa: E402
from connvault.migrations import migrate  # noqa: E402

APP_ROLE = "connvault_app"
HOT = "SELECT tenant_id, secret_sha256, revoked_at FROM connvault_find_api_key(:key_id)"
HOT_DBAPI = "SELECT tenant_id, secret_sha256, revoked_at FROM connvault_find_api_key(%s)"
BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def servers(workdir: Path, pool_size: int) -> Iterator[tuple[int, int]]:
    """PostgreSQL on a loopback port and pgbouncer (transaction pooling) in front of it: (postgres, pgbouncer)."""
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(str(workdir / "pg"), cleanup_mode="stop")
    user = server.system_user or "postgres"
    pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=user)
    pg_port, bouncer_port = free_port(), free_port()
    sockets = workdir / "sock"
    sockets.mkdir()
    shutil.chown(sockets, user)
    log = workdir / "pg" / "bench.log"
    options = ["-o", f"-h 127.0.0.1 -p {pg_port} -k {sockets} -c max_connections=200"]
    pg_ctl(["-w", *options, "-l", str(log), "start"], pgdata=server.pgdata, user=user)
    config = workdir / "pgbouncer.ini"
    (workdir / "users.txt").write_text('"postgres" ""\n')
    config.write_text(
        f"[databases]\npostgres = host=127.0.0.1 port={pg_port} dbname=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {bouncer_port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\npool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 500\nserver_reset_query =\n"
        f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
    )
    shutil.chown(workdir, user)
    for path in workdir.iterdir():
        shutil.chown(path, user)
    bouncer = subprocess.Popen(
        [PGBOUNCER, "-u", pwd.getpwnam(user).pw_name, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", bouncer_port), timeout=0.1):
                break
            time.sleep(0.05)
        yield pg_port, bouncer_port
    finally:
        bouncer.terminate()
        try:
            bouncer.wait(30)
        except subprocess.TimeoutExpired:
            bouncer.kill()
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=user)


def target(port: int) -> DatabaseTarget:
    # A generous connect timeout: the machine this runs on may be shared and loaded.
    return DatabaseTarget(
        user="postgres", password=None, database="postgres", host="127.0.0.1", port=port, connect_timeout=60
    )


def connvault_connection(port: int) -> pg8000.native.Connection:
    """A connection as connvault opens one: login, then the session setup (SET ROLE, statement_timeout)."""
    return target(port).connect(role=APP_ROLE, statement_timeout_ms=10_000)


def timings(pg_port: int, bouncer_port: int, iterations: int, rounds: int = 7) -> dict[str, float]:
    """Per-call microseconds of each way, rounds interleaved (A, B, C, A, B, C …) so that load from elsewhere
    on a shared machine falls on all of them alike; the median round of each."""
    opened: list[Any] = []
    cases: dict[str, tuple[Callable[[], Any], int]] = {}
    for where, port in (("direct", pg_port), ("pgbouncer", bouncer_port)):
        native = connvault_connection(port)
        opened.append(native)
        if where == "direct":
            statement = native.prepare(HOT)
            cases["direct, named prepared (FastReads today)"] = (lambda s=statement: s.run(key_id="cvk_x"), iterations)
        cases[f"{where}, unnamed extended protocol"] = (lambda n=native: n.run(HOT, key_id="cvk_x"), iterations)
        dbapi = pg8000.dbapi.connect(**target(port).pg8000_kwargs())
        dbapi.autocommit = True
        opened.append(dbapi)
        cursor = dbapi.cursor()
        cases[f"{where}, DB-API cursor (SQLAlchemy's path)"] = (
            lambda c=cursor: c.execute(HOT_DBAPI, ("cvk_x",)) or c.fetchall(),
            iterations,
        )
        cases[f"{where}, open a connection + session setup"] = (
            lambda p=port: connvault_connection(p).close(),
            max(10, iterations // 50),
        )
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (call, count) in cases.items():
            samples[name].append(per_call_us(call, count, rounds=1))
    for connection in opened:
        connection.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def shared_session_state(bouncer_port: int, clients: int, rounds: int) -> tuple[int, Counter[str], int]:
    """Clients set up their sessions as connvault does (half of them ``SET ROLE``, as the app; half never change
    role), prepare a named statement once per connection as ``FastReads`` does, then read concurrently through
    transaction pooling.

    Returns (reads answered under another client's role, named-statement failures by SQLSTATE, reads)."""
    wrong_role = total = 0
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(index: int) -> None:
        nonlocal wrong_role, total
        connection = pg8000.native.Connection(**target(bouncer_port).pg8000_kwargs())
        expected = APP_ROLE if index % 2 == 0 else "postgres"
        for statement in session_setup(APP_ROLE if index % 2 == 0 else None, 10_000):
            connection.run(statement)
        start.wait()
        named = None
        for _ in range(rounds):
            try:
                if named is None:
                    named = connection.prepare("SELECT current_user")
                role = named.run()[0][0]
            except pg8000.exceptions.DatabaseError as failed:
                # 26000: prepared on another server connection; 42P05: another client's statement holds the name
                with lock:
                    failures[sqlstate(failed) or "?"] += 1
                named = None
                role = connection.run("SELECT current_user")[0][0]
            with lock:
                total += 1
                wrong_role += role != expected
        with contextlib.suppress(pg8000.exceptions.Error):
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong_role, failures, total


def server_connections(pg_port: int, bouncer_port: int, clients: int) -> tuple[int, int]:
    """Server backends used by ``clients`` open client connections, directly and through pgbouncer."""
    counts = []
    for port in (pg_port, bouncer_port):
        held = [pg8000.native.Connection(**target(port).pg8000_kwargs()) for _ in range(clients)]
        for connection in held:
            connection.run("SELECT 1")
        observer = pg8000.native.Connection(**target(pg_port).pg8000_kwargs())
        counts.append(int(observer.run(BACKENDS)[0][0]))
        observer.close()
        for connection in held:
            connection.close()
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pool-size", type=int, default=2)
    args = parser.parse_args()
    if not Path(PGBOUNCER).exists():
        sys.exit("pgbouncer is not installed: apt-get install pgbouncer (or make bench-multiplexer)")
    workdir = Path(tempfile.mkdtemp(prefix="connvault-mux-"))
    try:
        with servers(workdir, args.pool_size) as (pg_port, bouncer_port):
            migrate(target(pg_port))
            found = timings(pg_port, bouncer_port, args.iterations)
            floor = found["direct, named prepared (FastReads today)"]
            rounds = f"{args.iterations} iterations, median of 7 interleaved rounds"
            print(f"hot read and connection open, loopback, {rounds}")
            for name, micros in found.items():
                print(f"  {name:<46} {micros:9.1f} us  {micros / floor:6.2f}x floor")
            wrong, failures, total = shared_session_state(bouncer_port, args.clients, 200)
            print(
                f"\n{args.clients} clients through transaction pooling ({args.pool_size} server connections), "
                f"sessions set up as connvault does:"
            )
            print(f"  reads answered under another client's role: {wrong} of {total} ({100 * wrong / total:.0f}%)")
            print(f"  named prepared statements failing: {sum(failures.values())} of {total} {dict(failures)}")
            direct, pooled = server_connections(pg_port, bouncer_port, 50)
            print(f"\nserver connections for 50 open clients: direct {direct}, through pgbouncer {pooled}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
