"""Throwaway MariaDB and PostgreSQL servers for tests of SPIRE's SQL datastore.

Why real servers: what a user is promised for `--datastore mysql://…` / `postgres://…` depends
on SPIRE's own migrations, drivers and error handling against a real database, so the tests
start one in a temp dir (data, unix socket, log) on a free 127.0.0.1 port and stop exactly
what they started.

Process handling is the maintained fixtures' code: ``pytest_mysql``'s ``MySQLExecutor``
(mariadbd-safe, shutdown through mariadb-admin) and ``pytest_postgresql``'s
``PostgreSQLExecutor`` (pg_ctl start -w / stop -m fast), both mirakuru executors that wait
for the port and stop only the processes they started. Hand-written here is only what
they cannot do:

- initialise the data dir the way these tests need: root/postgres trusted on the unix socket
  only, password logins over TCP (``--auth-host=scram-sha-256``), no anonymous MariaDB
  accounts; the executors' own initialisation trusts every login, so a wrong password
  would not fail (a test proves it does);
- run PostgreSQL as an unprivileged user when the tests run as root (CI does; pg_ctl
  refuses root and the executor has no setting for it);
- SQL through the database's own CLI (``mariadb``, ``psql``), which needs no Python driver
  and doubles as the oracle ("the table has 1 row"); databases, users and grants; the URL
  and DSN forms SPIRE and the installer take.

This keeps ``MariaDbServer`` / ``PostgresServer`` (the names users' tests import, and the
``mariadb_server`` / ``postgres_server`` fixtures of ``spire_fabric.testing.pytest_plugin``)
as they were. The binaries come from the distribution (`scripts/install-databases`); the
packaged system services are not used.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from spire_fabric._run import run
from spire_fabric.errors import SpireFabricError
from spire_fabric.testing._processes import free_port, short_tempdir

INSTALL_HINT = "run scripts/install-databases (as root) to install them"

# Server flags after the executor's own (datadir, socket, port, pid file, log): ours bind
# to loopback and trade durability for speed, since the data dir is thrown away.
_MARIADB_PARAMS = (
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=2",
    "--skip-performance-schema",
)
_POSTGRES_OPTIONS = (
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


_Server = TypeVar("_Server", bound="_DatabaseServer")


class DatabaseError(SpireFabricError, RuntimeError):
    """A test database server did not start, did not stop, or a SQL statement failed."""


class DatabaseBinariesError(DatabaseError):
    """The database server binaries are not installed."""


def _check_name(kind: str, name: str) -> str:
    # Names go into SQL text unquoted by a driver, so only plain identifiers are accepted.
    if not _NAME.match(name):
        raise DatabaseError(
            f"invalid {kind} name {name!r}: use letters, digits and '_' (max 63, no leading digit)"
        )
    return name


def _sql_string(value: str) -> str:
    """A SQL string literal; quotes doubled and backslashes doubled (MariaDB reads escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _which(name: str, *fallbacks: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class _DatabaseServer:
    r"""One database server that we started (through a mirakuru executor), with its log.

    Starting, waiting until it accepts connections and stopping exactly what was started
    are the maintained executor's job (``pytest_mysql``'s ``MySQLExecutor`` and
    ``pytest_postgresql``'s ``PostgreSQLExecutor``, both mirakuru ``TCPExecutor``\ s). What
    stays here is what they do not offer: a data dir initialised the way SPIRE's tests need
    (root reachable on the socket only, password logins over TCP), and SQL through the
    database's own CLI.
    """

    kind: str
    scheme: str
    workdir: Path
    log_path: Path
    port: int
    _executor: Any
    _spawn_kwargs: dict[str, Any]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self: _Server, timeout: float = 60.0) -> _Server:
        """Initialise the data dir on first start, run the server and wait until it answers."""
        if self.running:
            raise DatabaseError(f"{self.kind} is already running (pid {self.pid})")
        if not self._initialized():
            self._initialize()
        self._executor._timeout = timeout
        try:
            self._executor.start()
        except Exception as err:  # mirakuru's TimeoutExpired / ProcessExitedWithError, ...
            raise DatabaseError(
                f"{self.kind} did not accept connections on port {self.port}: {err}; "
                f"log {self.log_path}:\n{self.log_tail()}"
            ) from err
        self._after_first_start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server we started (the executor's clean shutdown), and only that one."""
        if not self.running:
            return
        self._executor._timeout = timeout
        try:
            self._executor.stop()
        except Exception as err:
            raise DatabaseError(f"{self.kind} did not stop: {err}") from err

    def remove(self) -> None:
        """Delete the data dir, socket and log (the server must be stopped)."""
        if self.running:
            raise DatabaseError(f"{self.kind} is still running (pid {self.pid}); stop it first")
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        """The database server's own pid (from its pid file), while it runs."""
        try:
            text = self._pid_file().read_text().split("\n", 1)[0].strip()
        except OSError:
            return None
        return int(text) if text.isdigit() and self.running else None

    @property
    def running(self) -> bool:
        return bool(self._executor.running())

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self: _Server) -> _Server:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- SQL through the database's own CLI ---------------------------------------------------

    def query(self, sql: str, database: str | None = None) -> list[list[str]]:
        """Run SQL as the superuser over the unix socket; rows as lists of text fields."""
        out = self.execute(sql, database)
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def execute(self, sql: str, database: str | None = None) -> str:
        """Run SQL as the superuser over the unix socket; the CLI's raw output."""
        argv = self._client_argv(sql, database)
        return run(argv, timeout=60, what=f"{self.kind}: SQL {sql!r}", error=DatabaseError).stdout

    def create_database(self, name: str) -> str:
        """Create an empty database (idempotent); returns its name."""
        raise NotImplementedError

    def create_user(
        self, name: str, password: str, *, databases: Iterable[str] | None = None
    ) -> str:
        """Create a login user with `password`; returns its name.

        `databases=None` gives the user every privilege (so a caller such as the installer
        can create its own databases); otherwise all privileges on just those databases.
        """
        raise NotImplementedError

    def url(self, database: str, user: str, password: str) -> str:
        """The URL form `spire_fabric.deploy up --datastore` accepts."""
        raise NotImplementedError

    def spire_datastore(self, database: str, user: str, password: str) -> tuple[str, str]:
        """`(database_type, connection_string)` for SPIRE's DataStore "sql" plugin."""
        raise NotImplementedError

    # -- per engine ---------------------------------------------------------------------------

    def _initialized(self) -> bool:
        raise NotImplementedError

    def _initialize(self) -> None:
        raise NotImplementedError

    def _pid_file(self) -> Path:
        raise NotImplementedError

    def _after_first_start(self) -> None:
        return None

    def _client_argv(self, sql: str, database: str | None) -> list[str]:
        raise NotImplementedError

    def _run_init(self, argv: Sequence[str], what: str) -> None:
        init_log = self.workdir / f"{what}.log"
        with open(init_log, "wb") as log:
            result = subprocess.run(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                timeout=180,
                **self._spawn_kwargs,
            )
        if result.returncode != 0:
            raise DatabaseError(
                f"{self.kind}: `{' '.join(argv)}` failed ({result.returncode}); "
                f"log {init_log}:\n{_tail(init_log)}"
            )


# ---------------------------------------------------------------------------------------------
# MariaDB


@dataclass(frozen=True)
class MariaDbBinaries:
    """Where the MariaDB programs are: the server, its launcher, initialiser and clients."""

    server: str
    install_db: str
    client: str
    safe: str
    admin: str


def find_mariadb() -> MariaDbBinaries:
    """The MariaDB server, data-dir initialiser and client, or an error saying how to get them."""
    found = {
        "mariadbd": _which("mariadbd", "/usr/sbin/mariadbd"),
        "mariadb-install-db": _which("mariadb-install-db", "/usr/bin/mariadb-install-db"),
        "mariadb": _which("mariadb", "/usr/bin/mariadb"),
        "mariadbd-safe": _which("mariadbd-safe", "/usr/bin/mariadbd-safe", "/usr/bin/mysqld_safe"),
        "mariadb-admin": _which("mariadb-admin", "/usr/bin/mariadb-admin", "/usr/bin/mysqladmin"),
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise DatabaseBinariesError(
            f"MariaDB binaries not found: {', '.join(missing)}; {INSTALL_HINT}"
        )
    paths = [path for path in found.values() if path is not None]
    return MariaDbBinaries(*paths)


class MariaDbServer(_DatabaseServer):
    """A MariaDB server on 127.0.0.1:<free port> with its data dir and socket in `workdir`.

    The superuser is `root` without password, reachable only over the unix socket in the
    temp dir; users made with `create_user` log in over TCP with a password, as SPIRE does.
    """

    kind = "mariadb"
    scheme = "mysql"

    def __init__(self, workdir: Path | None = None, *, port: int | None = None) -> None:
        from pytest_mysql.executor import MySQLExecutor

        self.binaries = find_mariadb()
        self.workdir = workdir or short_tempdir("sf-mariadb-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / "mariadb.log"
        self._fresh = True
        self._spawn_kwargs = {}
        # mariadbd refuses to run as root unless told so explicitly; elsewhere it runs as us.
        os_user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._user_args = ["--user=root"] if os.geteuid() == 0 else []
        self._executor = MySQLExecutor(
            mysqld_safe=Path(self.binaries.safe),
            mysqld=Path(self.binaries.server),
            admin_exec=self.binaries.admin,
            logfile_path=str(self.log_path),
            params=" ".join(_MARIADB_PARAMS),
            base_directory=self.workdir,
            user=os_user,
            host="127.0.0.1",
            port=self.port,
            install_db=self.binaries.install_db,
        )
        self.data_dir: Path = self._executor.datadir
        self.socket_path = Path(self._executor.unixsocket)

    def _initialized(self) -> bool:
        return (self.data_dir / "mysql").is_dir()

    def _pid_file(self) -> Path:
        return Path(self._executor.pidfile)

    def _initialize(self) -> None:
        # The executor's own initialisation leaves root on unix_socket authentication and
        # the anonymous accounts in place; SPIRE's tests want root without a password on
        # the socket (whatever our uid) and only the users they create.
        self._run_init(
            [
                self.binaries.install_db,
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *self._user_args,
            ],
            "mariadb-install-db",
        )
        self._executor._initialised = True
    def _after_first_start(self) -> None:
        if not self._fresh:
            return
        self._fresh = False
        # mariadb-install-db creates anonymous accounts; drop them so that only the users we
        # create can log in (an anonymous match would shadow a wrong-password failure).
        for user, host in self.query("SELECT User, Host FROM mysql.user WHERE User = ''"):
            self.execute(f"DROP USER {_sql_string(user)}@{_sql_string(host)}")

    def _client_argv(self, sql: str, database: str | None) -> list[str]:
        argv = [
            self.binaries.client,
            "--no-defaults",
            f"--socket={self.socket_path}",
            "--user=root",
            "--batch",
            "--skip-column-names",
            "--execute",
            sql,
        ]
        if database is not None:
            argv.append(_check_name("database", database))
        return argv

    def create_database(self, name: str) -> str:
        _check_name("database", name)
        self.execute(
            f"CREATE DATABASE IF NOT EXISTS `{name}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
        return name

    def create_user(
        self, name: str, password: str, *, databases: Iterable[str] | None = None
    ) -> str:
        _check_name("user", name)
        account = f"{_sql_string(name)}@'%'"
        statements = [
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_sql_string(password)}",
            f"ALTER USER {account} IDENTIFIED BY {_sql_string(password)}",
        ]
        if databases is None:
            statements.append(f"GRANT ALL PRIVILEGES ON *.* TO {account}")
        else:
            statements += [
                f"GRANT ALL PRIVILEGES ON `{_check_name('database', db)}`.* TO {account}"
                for db in databases
            ]
        self.execute("; ".join(statements))
        return name

    def grant(self, user: str, database: str) -> None:
        """All privileges on `database` for an existing user."""
        self.execute(
            f"GRANT ALL PRIVILEGES ON `{_check_name('database', database)}`.* "
            f"TO {_sql_string(_check_name('user', user))}@'%'"
        )

    def url(self, database: str, user: str, password: str) -> str:
        return (
            f"mysql://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    def spire_datastore(self, database: str, user: str, password: str) -> tuple[str, str]:
        # go-sql-driver/mysql DSN: the password is taken literally up to the last '@'.
        return ("mysql", f"{user}:{password}@tcp(127.0.0.1:{self.port})/{database}?parseTime=true")


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class PostgresBinaries:
    """Where the PostgreSQL programs are: the server's bindir and psql."""

    bindir: Path
    client: str

    @property
    def initdb(self) -> str:
        return str(self.bindir / "initdb")

    @property
    def pg_ctl(self) -> str:
        return str(self.bindir / "pg_ctl")

    @property
    def server(self) -> str:
        return str(self.bindir / "postgres")


def find_postgres() -> PostgresBinaries:
    """The PostgreSQL server bindir (initdb, postgres) and psql, or an error saying how."""
    bindir: Path | None = None
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(initdb).resolve().parent
    else:
        # Debian keeps the server binaries off PATH, one dir per major version: newest wins
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"),
            key=lambda p: (
                int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
            ),
        )
        if found:
            bindir = Path(found[-1]).parent
    client = _which("psql") or (str(bindir / "psql") if bindir else None)
    if bindir is None or not (bindir / "postgres").exists() or client is None:
        raise DatabaseBinariesError(
            f"PostgreSQL server binaries (initdb, postgres, psql) not found; {INSTALL_HINT}"
        )
    return PostgresBinaries(bindir, client)


class PostgresServer(_DatabaseServer):
    """A PostgreSQL server on 127.0.0.1:<free port> with its data dir and socket in `workdir`.

    PostgreSQL refuses to run as root, so when we are root the server (and initdb) run as the
    unprivileged `run_as` user (default `postgres`), which then owns `workdir`. The superuser
    `postgres` is trusted on the unix socket only; TCP logins need a password
    (scram-sha-256), so a wrong password really fails.
    """

    kind = "postgresql"
    scheme = "postgres"

    def __init__(
        self, workdir: Path | None = None, *, port: int | None = None, run_as: str = "postgres"
    ) -> None:
        self.binaries = find_postgres()
        self.workdir = workdir or short_tempdir("sf-pg-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir
        self.log_path = self.workdir / "postgres.log"
        self._spawn_kwargs = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(run_as)
            except KeyError as err:
                raise DatabaseError(
                    f"PostgreSQL refuses to run as root and there is no user {run_as!r} to run "
                    f"it as; {INSTALL_HINT} (it creates the 'postgres' user) or pass run_as="
                ) from err
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
            self.log_path.touch()
            os.chown(self.log_path, account.pw_uid, account.pw_gid)
            self._spawn_kwargs = {
                "user": account.pw_uid,
                "group": account.pw_gid,
                "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.workdir), "USER": run_as},
            }
        self._executor = _postgres_executor(self, run_as if os.geteuid() == 0 else None)

    @property
    def socket_path(self) -> Path:
        """The server's unix socket (the superuser's way in)."""
        return self.socket_dir / f".s.PGSQL.{self.port}"

    def _initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def _initialize(self) -> None:
        self._run_init(
            [
                self.binaries.initdb,
                "--pgdata",
                str(self.data_dir),
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        # The executor's own initdb trusts every login (or takes one password for all);
        # ours trusts the socket only and makes TCP logins prove their password.
        self._executor._directory_initialised = True

    def _client_argv(self, sql: str, database: str | None) -> list[str]:
        return [
            self.binaries.client,
            "--no-psqlrc",
            "--host", str(self.socket_dir),
            "--port", str(self.port),
            "--username", "postgres",
            "--dbname", _check_name("database", database) if database else "postgres",
            "--tuples-only",
            "--no-align",
            "--field-separator=\t",
            "--set", "ON_ERROR_STOP=1",
            "--command", sql,
        ]  # fmt: skip

    def create_database(self, name: str) -> str:
        _check_name("database", name)
        exists = self.query(f"SELECT 1 FROM pg_database WHERE datname = {_sql_string(name)}")
        if not exists:
            self.execute(f'CREATE DATABASE "{name}"')
        return name

    def create_user(
        self, name: str, password: str, *, databases: Iterable[str] | None = None
    ) -> str:
        _check_name("user", name)
        exists = self.query(f"SELECT 1 FROM pg_roles WHERE rolname = {_sql_string(name)}")
        verb = "ALTER" if exists else "CREATE"
        # psql sends the literal; PostgreSQL hashes it with scram-sha-256 (password_encryption)
        pw = password.replace("'", "''")
        if databases is None:
            self.execute(f"{verb} ROLE \"{name}\" LOGIN SUPERUSER PASSWORD '{pw}'")
        else:
            self.execute(f"{verb} ROLE \"{name}\" LOGIN PASSWORD '{pw}'")
            for database in databases:
                self.grant(name, database)
        return name

    def grant(self, user: str, database: str) -> None:
        """All privileges on `database` and its `public` schema for an existing user.

        Since PostgreSQL 15 only the owner may create tables in `public`, and SPIRE's
        migrations create tables there, so the schema grant is needed too.
        """
        _check_name("user", user)
        _check_name("database", database)
        self.execute(f'GRANT ALL PRIVILEGES ON DATABASE "{database}" TO "{user}"')
        self.execute(f'GRANT ALL ON SCHEMA public TO "{user}"', database)

    def url(self, database: str, user: str, password: str) -> str:
        return (
            f"postgres://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{database}?sslmode=disable"
        )

    def spire_datastore(self, database: str, user: str, password: str) -> tuple[str, str]:
        return ("postgres", self.url(database, user, password))


def _postgres_executor(server: PostgresServer, run_as: str | None) -> Any:
    """pytest-postgresql's executor (pg_ctl start -w / stop -m fast, mirakuru's wait for
    the port) on our data dir, socket dir, log and port.

    pg_ctl refuses to run as root, and the executor has no "run as" setting, so as root it
    is given a two-line wrapper that runs pg_ctl as ``run_as`` (setpriv, util-linux).
    """
    from pytest_postgresql.executors import PostgreSQLExecutor

    pg_ctl = server.binaries.pg_ctl
    if run_as is not None:
        wrapper = server.workdir / "pg_ctl"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec setpriv --reuid={run_as} --regid={run_as} --init-groups -- {pg_ctl} \"$@\"\n"
        )
        wrapper.chmod(0o755)
        pg_ctl = str(wrapper)
    return PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=server.port,
        datadir=str(server.data_dir),
        unixsocketdir=str(server.socket_dir),
        logfile=str(server.log_path),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        postgres_options=" ".join(_POSTGRES_OPTIONS),
    )


def stop_and_remove(server: _DatabaseServer) -> None:
    """Teardown helper: stop the server, then delete its temp dir."""
    server.stop()
    server.remove()
