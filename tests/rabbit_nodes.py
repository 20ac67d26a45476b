"""Private RabbitMQ nodes (one, or a cluster) for tests that stop, kill or alarm a broker.

Each `RabbitCluster` owns a temp dir (HOME, Erlang cookie, data, logs, config), its own epmd and a
block of ports reserved across processes, so concurrent test runs on one machine never meet, and
the broker at AMQP_URL is never touched. Recipe and pitfalls: shared/rabbitmq-cluster.md.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.rabbit_host import BLOCK, PortBlock, Watchdog, our_pids, remove

# Not /usr/sbin/rabbitmq*: Debian's wrappers switch to the rabbitmq user and its HOME, hence to
# the system node's cookie.
RMQ_BIN = Path(os.environ.get("RABBITMQ_BIN_DIR", "/usr/lib/rabbitmq/bin"))
EPMD = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
CTL_PORTS = 11  # a cluster's block: epmd, 11 ports for the CLI, then AMQP + distribution per node
PREFIX = "od-rabbit-"
MEMORY_LIMIT = 400 * 2**20  # absolute watermark per node: 3 test nodes can't overcommit the host


def installed() -> bool:
    """True if Debian's rabbitmq-server (and Erlang's epmd) are on this machine."""
    return (RMQ_BIN / "rabbitmq-server").exists() and Path(EPMD).exists()


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds; used only where no process or event can be awaited."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout} s")
        time.sleep(0.02)


class RabbitNode:
    """One private node; stop() and kill() act on this node's own beam process only."""

    def __init__(self, cluster: RabbitCluster, letter: str, amqp_port: int, dist_port: int):
        self.cluster = cluster
        self.name = f"rabbit-{letter}@localhost"
        self.port = amqp_port
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
        self.dir = cluster.base / letter
        self.pid_file = self.dir / "rabbit.pid"
        self._dist_port = dist_port
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RabbitNode({self.name} {self.url})"

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {
            **self.cluster.env,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            # distribution on loopback only; never start an epmd of its own (the cluster owns one)
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
            ),
        }

    def write_files(self) -> None:
        """The node's dirs and config: loopback listener, small absolute memory watermark."""
        (self.dir / "mnesia").mkdir(parents=True)
        (self.dir / "log").mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            "log.console = false\n"
            "log.file.level = info\n"
            f"vm_memory_high_watermark.absolute = {self.cluster.memory_limit}\n"
            "disk_free_limit.absolute = 50MB\n"
            # a smaller Ra WAL keeps quorum queues' memory low (default 512 MB)
            "raft.wal_max_size_bytes = 64000000\n"
        )

    def pid(self) -> int | None:
        """The OS pid of this node's beam.smp, found by its own pid-file path in its environment."""
        marker = f"RABBITMQ_PID_FILE={self.pid_file}"
        for pid in our_pids(marker):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp":
                    return pid
        return None

    def launch(self) -> None:
        """Start booting this node in the background; `wait_ready()` awaits it."""
        if self.pid() is not None:
            raise RuntimeError(f"{self.name} is already running")
        # a stale pid file (after kill) would make `rabbitmqctl wait` return at once
        self.pid_file.unlink(missing_ok=True)
        with (self.dir / "stdout.log").open("ab") as log:
            self._process = subprocess.Popen(
                [str(RMQ_BIN / "rabbitmq-server")],
                cwd=self.dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in pytest's terminal must not reach the node
            )

    def wait_ready(self, timeout: float = 120) -> None:
        """Return once the node runs RabbitMQ (`rabbitmqctl wait`); fail fast if it died."""
        assert self._process is not None, "launch() first"
        waiter = subprocess.Popen(
            self._ctl_argv("-q", "wait", "--timeout", str(int(timeout)), str(self.pid_file)),
            env=self.cluster.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        while True:
            try:
                _, err = waiter.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if self._process.poll() is not None:
                    waiter.kill()
                    waiter.communicate()
                    tail = self.log_tail()
                    raise RuntimeError(f"{self.name} exited while booting:\n{tail}") from None
        if waiter.returncode != 0:
            raise RuntimeError(f"{self.name} did not boot: {err.decode()}\n{self.log_tail()}")

    def start(self, timeout: float = 120) -> None:
        """Boot the node (again) and return once it accepts connections."""
        self.launch()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 60) -> None:
        """Graceful stop; returns once the OS process is gone."""
        if self.pid() is not None:
            try:
                # with the pid file, `stop` returns only after the process has exited
                self.ctl("-q", "stop", str(self.pid_file), timeout=timeout)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL this node's beam (a crash); returns once the process is gone."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        # the rabbitmq-server shell waits for its beam child, so its exit means the beam is reaped
        if self._process is not None:
            self._process.wait(timeout=60)
            self._process = None
        _until(lambda: self.pid() is None, 30, f"{self.name} still running")

    def _ctl_argv(self, *args: str) -> list[str]:
        return [str(RMQ_BIN / "rabbitmqctl"), "-n", self.name, *args]

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """Run rabbitmqctl against this node; its stdout (raises CalledProcessError on failure)."""
        try:
            result = subprocess.run(
                self._ctl_argv(*args),
                env=self.cluster.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            exc.add_note(f"rabbitmqctl {' '.join(args)} on {self.name}: {exc.stderr.strip()}")
            raise
        return result.stdout

    def log_tail(self, lines: int = 30) -> str:
        """The end of the node's console output and log, for a failure message."""
        text = []
        for path in [self.dir / "stdout.log", *sorted((self.dir / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)


class RabbitCluster:
    """`size` private nodes sharing one epmd and cookie; nodes[1:] join nodes[0]."""

    def __init__(self, size: int = 3, memory_limit: int = MEMORY_LIMIT) -> None:
        assert 1 <= size <= (BLOCK - 1 - CTL_PORTS) // 2
        self.size = size
        self.memory_limit = memory_limit
        self.base = Path(tempfile.mkdtemp(prefix=PREFIX))
        self._watchdog = Watchdog(self.base)
        self.ports = PortBlock()
        first = self.ports.first
        self.epmd_port = first
        ctl_min = first + 1
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.base),  # the cookie, for the nodes and for rabbitmqctl alike
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_CTL_DIST_PORT_MIN": str(ctl_min),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(ctl_min + CTL_PORTS - 1),
            "RABBITMQ_CTL_ERL_ARGS": "-start_epmd false",
        }
        node0 = first + 1 + CTL_PORTS
        self.nodes = [
            RabbitNode(self, "abcdefghij"[i], node0 + 2 * i, node0 + 2 * i + 1) for i in range(size)
        ]
        self._epmd: subprocess.Popen[bytes] | None = None

    @property
    def urls(self) -> list[str]:
        """One AMQP URL per node, in node order."""
        return [node.url for node in self.nodes]

    def launch(self) -> None:
        """Write files, start epmd and begin booting every node (returns at once)."""
        (self.base / "owner").write_text(str(os.getpid()))
        (self.base / "rabbitmq-env.conf").write_text("")
        cookie = self.base / ".erlang.cookie"
        cookie.write_text(f"od-bridge-test-{random.getrandbits(64):016x}")
        cookie.chmod(0o400)
        self._epmd = subprocess.Popen(
            [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _until(self._epmd_up, 10, "epmd did not listen")
        for node in self.nodes:
            node.write_files()
            node.launch()

    def _epmd_up(self) -> bool:
        assert self._epmd is not None
        if self._epmd.poll() is not None:
            raise RuntimeError(f"epmd on port {self.epmd_port} exited")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.epmd_port)) == 0

    def start(self, timeout: float = 180) -> None:
        """Boot every node and form the cluster; returns once all `size` nodes are online."""
        try:
            if self._epmd is None:
                self.launch()
            for node in self.nodes:
                node.wait_ready(timeout)
            for node in self.nodes[1:]:  # one at a time: parallel joins can race in Mnesia
                node.ctl("-q", "stop_app")
                node.ctl("-q", "reset")
                node.ctl("-q", "join_cluster", self.nodes[0].name)
                node.ctl("-q", "start_app")
            if self.size > 1:
                self.nodes[0].ctl("-q", "await_online_nodes", str(self.size), "--timeout", "120")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Remove the cluster: nodes, epmd, dir. Leaves no process and no file behind."""
        for node in self.nodes:  # SIGKILL: the data is thrown away, a graceful stop costs ~3 s/node
            with contextlib.suppress(Exception):
                node.kill()
        if self._epmd is not None:
            self._epmd.terminate()
            self._epmd.wait(timeout=10)
            self._epmd = None
        leftovers = remove(self.base)  # anything still ours: never leave a process behind
        self.ports.release()
        self._watchdog.release()
        if leftovers or self.base.exists():
            raise RuntimeError(f"private RabbitMQ left processes {leftovers} or {self.base}")

    def __enter__(self) -> RabbitCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
