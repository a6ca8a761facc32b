"""`ieum serve` as a user runs it: a real process with its embedded PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import httpx
import pytest
import websockets
from websockets import Subprotocol

from hub import processes
from hub.core import cores
from hub.embedded import broker, postgres
from hub.embedded.ports import free_port

pytestmark = pytest.mark.slow

IEUM = str(Path(sys.executable).parent / "ieum")
SEOUL_QUERY = '{ districts(province: "서울특별시") { code name } }'


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


class Hub:
    """One `ieum serve` process on a data directory, with its output collected."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("IEUM_DATABASE_URL", "IEUM_KAFKA_BOOTSTRAP")
        } | {"IEUM_DATA_DIR": str(data_dir), "IEUM_PORT": str(self.port), **(env or {})}
        self.output: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [IEUM, "serve", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(60):
            self.process.kill()
            self.process.wait()
            self.reader.join(10)
            assert self.process.stdout
            self.process.stdout.close()  # left open, it would warn in whichever test ran next
            raise AssertionError("ieum serve did not start:\n" + "".join(self.output))

    def _read(self) -> None:
        assert self.process.stdout
        for line in self.process.stdout:
            self.output.append(line)
            if "Press Ctrl-C to stop." in line:
                self.ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> tuple[int, int]:
        """The embedded broker's and PostgreSQL's process ids."""
        state = json.loads((self.data_dir / "hub.json").read_text())
        pg = postgres.running_pid(self.data_dir / "postgres")
        assert pg is not None
        return state["broker_pid"], pg

    def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(30)
        self.reader.join(10)
        assert self.process.stdout
        if not self.reader.is_alive():  # a child left behind would keep the pipe open
            self.process.stdout.close()
        return code

    def workers(self) -> list[int]:
        """Process ids of the extra HTTP workers (IEUM_WORKERS) this hub started."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().split(")")[-1].split()[1])
                command = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if parent == self.process.pid and b"spawn_main" in command:
                found.append(int(stat.parent.name))
        return found

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [IEUM, *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = Hub(tmp_path_factory.mktemp("serve") / "data")
    yield running
    if running.process.poll() is None:
        running.stop(signal.SIGINT)


def test_serves_seoul_districts_with_no_configuration(hub: Hub) -> None:
    response = httpx.post(f"{hub.url}/graphql", json={"query": SEOUL_QUERY}, timeout=10)
    assert len(response.json()["data"]["districts"]) == 25
    banner = "".join(hub.output)
    assert f"http://127.0.0.1:{hub.port}/graphql" in banner
    assert "embedded PostgreSQL 18" in banner
    assert "embedded Tansu" in banner
    assert str(hub.data_dir) in banner


def test_with_no_configuration_one_process_per_core_answers(hub: Hub) -> None:
    """The banner comes once every process serves: fresh connections, which the kernel
    spreads over the processes, are all answered at once."""
    banner = "".join(hub.output)
    assert f"Processes {cores.available()} answering HTTP, one per core" in banner
    assert len(hub.workers()) == cores.available() - 1
    for _ in range(20):
        response = httpx.post(f"{hub.url}/graphql", json={"query": SEOUL_QUERY}, timeout=10)
        assert len(response.json()["data"]["districts"]) == 25


def test_demo_partner_credentials_in_the_banner_work(hub: Hub) -> None:
    banner = "".join(hub.output)
    line = next(line for line in banner.splitlines() if "partner client demo-partner" in line)
    secret = line.split("demo-partner / ")[1].split()[0]
    token = httpx.post(
        f"{hub.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "sensors:read"},
        auth=("demo-partner", secret),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    viewer = httpx.post(
        f"{hub.url}/graphql",
        json={"query": "{ viewer { clientId } }"},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    assert viewer.json() == {"data": {"viewer": {"clientId": "demo-partner"}}}


def test_the_banners_sign_in_link_starts_the_citizen_flow(hub: Hub) -> None:
    banner = "".join(hub.output)
    link = f"http://127.0.0.1:{hub.port}/demo/sign-in"
    assert link in banner
    started = httpx.get(link, timeout=10)
    assert started.status_code == 303
    assert started.headers["location"].startswith("/oauth/authorize?")
    assert "client_id=demo-app" in started.headers["location"]


async def test_a_websocket_message_over_the_body_limit_closes_the_socket(hub: Hub) -> None:
    """uvicorn's own cap is 16 MiB a message; the hub's is the request body limit."""
    url = f"ws://127.0.0.1:{hub.port}/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        huge = {"query": "{ __typename }", "variables": {"pad": "x" * (1024 * 1024 + 1)}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": huge}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def test_no_demo_loads_no_demo_data(tmp_path: Path) -> None:
    bare = Hub(tmp_path / "data", "--no-demo")
    try:
        assert "demo-partner" not in "".join(bare.output)
        listed = json.loads(bare.run("clients", "list", "--json").stdout)
        assert listed == []
    finally:
        assert bare.stop(signal.SIGINT) == 0


def test_second_serve_on_the_same_data_dir_is_refused(hub: Hub) -> None:
    second = hub.run("serve", "--port", str(free_port()))
    assert second.returncode == 1
    assert f"`ieum serve` (pid {hub.process.pid}) is already running" in second.stderr
    assert hub.process.poll() is None


def test_migrate_runs_beside_the_hub_on_its_database(hub: Hub) -> None:
    status = hub.run("migrate", "--status")
    assert status.returncode == 0, status.stderr
    assert "0001_platform.sql" in status.stdout
    assert "applied" in status.stdout
    assert hub.run("migrate").stdout.strip() == "the database is up to date"


def test_schema_print_runs_beside_the_hub(hub: Hub) -> None:
    printed = hub.run("schema", "print", "--subgraph", "platform")
    assert 'type District @key(fields: "code")' in printed.stdout


def test_ctrl_c_stops_everything_and_keeps_the_data(hub: Hub) -> None:
    broker_pid, pg_pid = hub.pids()
    assert alive(broker_pid) and alive(pg_pid)
    assert hub.stop(signal.SIGINT) == 0
    assert not alive(broker_pid)
    assert not alive(pg_pid)
    assert (hub.data_dir / "postgres" / "PG_VERSION").exists()
    assert not (hub.data_dir / "hub.json").exists()


def test_sigterm_after_restart_stops_everything(hub: Hub) -> None:
    again = Hub(hub.data_dir)
    broker_pid, pg_pid = again.pids()
    response = httpx.post(f"{again.url}/graphql", json={"query": SEOUL_QUERY}, timeout=10)
    assert len(response.json()["data"]["districts"]) == 25
    assert "platform.districts.loaded" not in "".join(again.output)  # kept from the first run
    assert again.stop(signal.SIGTERM) == 0
    assert not alive(broker_pid) and not alive(pg_pid)


def test_servers_orphaned_by_a_killed_hub_are_stopped_on_next_start(hub: Hub) -> None:
    killed = Hub(hub.data_dir)
    broker_pid, pg_pid = killed.pids()
    killed.stop(signal.SIGKILL)
    assert alive(broker_pid) and alive(pg_pid)  # orphans, until the next start

    fresh = Hub(hub.data_dir)
    try:
        assert not alive(broker_pid) and not alive(pg_pid)
        response = httpx.post(f"{fresh.url}/graphql", json={"query": SEOUL_QUERY}, timeout=10)
        assert len(response.json()["data"]["districts"]) == 25
    finally:
        assert fresh.stop(signal.SIGINT) == 0


def test_unknown_subgraph_is_refused(hub: Hub) -> None:
    result = hub.run("serve", "--subgraph", "nonsense")
    assert result.returncode == 2
    assert "unknown subgraph 'nonsense'" in result.stderr


def test_invalid_setting_fails_at_start_naming_it(hub: Hub) -> None:
    env = hub.env | {"IEUM_PORT": "eighty"}
    result = subprocess.run(
        [IEUM, "serve"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "IEUM_PORT" in result.stderr


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (refused: the point of the test)


def test_a_hub_that_would_issue_tokens_over_plain_http_refuses_to_start(hub: Hub) -> None:
    """Listening on all interfaces without an https public URL: OAuth would fail on every
    request, so `ieum serve` says so before starting anything."""
    result = hub.run("serve", "--host", ALL_INTERFACES, "--port", str(free_port()))
    assert result.returncode == 2
    assert "IEUM_PUBLIC_URL" in result.stderr and "https://" in result.stderr


def test_new_connections_are_spread_over_the_processes_sockets() -> None:
    """One shared socket let whichever process woke first accept a whole burst."""
    sockets = processes.listening_sockets("127.0.0.1", 0, 2)
    port = sockets[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        accepted = []
        for sock in sockets:
            sock.settimeout(0.5)
            count = 0
            with contextlib.suppress(TimeoutError):
                while True:
                    sock.accept()[0].close()
                    count += 1
            accepted.append(count)
        assert sum(accepted) == 40
        assert min(accepted) > 0  # all 40 on one socket: 2 chances in 2**40
    finally:
        for sock in [*clients, *sockets]:
            sock.close()


@pytest.fixture(scope="module")
def own_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory for tests that start hubs of their own settings."""
    return tmp_path_factory.mktemp("workers") / "data"


def _districts(url: str, timeout: float) -> int:
    """Seoul's districts, asked on a new connection."""
    response = httpx.post(f"{url}/graphql", json={"query": SEOUL_QUERY}, timeout=timeout)
    return len(response.json()["data"]["districts"])


def test_workers_answer_on_the_port_and_stop_with_the_hub(own_dir: Path) -> None:
    served = Hub(own_dir, "--no-demo", env={"IEUM_WORKERS": "2"})
    try:
        deadline = time.monotonic() + 60
        while len(served.workers()) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        (worker,) = served.workers()
        httpx.get(f"{served.url}/healthz", timeout=10)
        # With the first process stopped, only the worker can answer. Each process has a
        # socket of its own on the port and the kernel picks one per new connection, so
        # some connections wait for the stopped process: 40 new ones at once, and the
        # first three answers are the worker's (the rest are answered after SIGCONT).
        served.process.send_signal(signal.SIGSTOP)
        pool = ThreadPoolExecutor(max_workers=40)
        try:
            asked = [pool.submit(_districts, served.url, 60) for _ in range(40)]
            answered = []
            for done in as_completed(asked, timeout=60):
                answered.append(done.result())
                if len(answered) == 3:
                    break
            assert answered == [25, 25, 25]
        finally:
            served.process.send_signal(signal.SIGCONT)
            pool.shutdown(wait=True)
    finally:
        assert served.stop(signal.SIGINT) == 0
    assert not alive(worker)


def test_a_process_that_dies_is_replaced_and_the_port_keeps_answering(own_dir: Path) -> None:
    served = Hub(own_dir, "--no-demo", env={"IEUM_WORKERS": "2"})
    try:
        assert "Processes 2 answering HTTP (IEUM_WORKERS=2)" in "".join(served.output)
        (worker,) = served.workers()
        os.kill(worker, signal.SIGKILL)  # as the OOM killer would
        deadline = time.monotonic() + 60
        while served.workers() in ([], [worker]) and time.monotonic() < deadline:
            time.sleep(0.2)
        (replacement,) = served.workers()
        assert replacement != worker and served.process.poll() is None
        # The replacement binds its socket once its app is built: no connection waits.
        for _ in range(40):
            response = httpx.post(f"{served.url}/graphql", json={"query": SEOUL_QUERY}, timeout=5)
            assert len(response.json()["data"]["districts"]) == 25
        assert "serve.http_process_exited" in "".join(served.output)
    finally:
        assert served.stop(signal.SIGINT) == 0
    assert not alive(replacement)


def test_a_second_hub_on_a_port_in_use_is_refused_with_several_processes(
    own_dir: Path, tmp_path: Path
) -> None:
    """With SO_REUSEPORT alone it would join the first hub's port and take a share of
    its connections."""
    first = Hub(own_dir, "--no-demo", env={"IEUM_WORKERS": "2"})
    try:
        other = subprocess.run(
            [IEUM, "serve", "--no-demo"],
            env=first.env | {"IEUM_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert other.returncode == 1, other.stdout
        assert "serve.cannot_listen" in other.stderr
        assert "Address already in use" in other.stderr
        assert first.process.poll() is None
    finally:
        assert first.stop(signal.SIGINT) == 0


def test_workers_of_a_killed_hub_stop_by_themselves(own_dir: Path) -> None:
    killed = Hub(own_dir, "--no-demo", env={"IEUM_WORKERS": "2"})
    deadline = time.monotonic() + 60
    while not killed.workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    (worker,) = killed.workers()
    broker_pid, _ = killed.pids()
    killed.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(worker)
    # The orphaned servers, stopped as the next start would stop them (that start is
    # test_servers_orphaned_by_a_killed_hub_are_stopped_on_next_start's).
    broker.stop_orphan(broker_pid)
    postgres.stop_orphan(own_dir / "postgres")


def established(port: int, pid: int) -> int:
    """TCP connections to `port` that process `pid` holds open (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED
                    inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held += str(fd.readlink()) in inodes
    return held


async def keep_asking(port: int, until: float) -> None:
    """One client on one keep-alive connection, which it opens again whenever a response
    says `Connection: close`, as HTTP clients do."""
    body = json.dumps({"query": SEOUL_QUERY}).encode()
    request = (
        b"POST /graphql HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            answer = json.loads(await reader.readexactly(length))
            assert len(answer["data"]["districts"]) == 25
            if b"connection: close" in head:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")
async def test_keep_alive_connections_even_out_over_the_processes(own_dir: Path) -> None:
    """The kernel hashes each new connection to a process; keep-alive connections then
    stay, so 40 of them rarely split 20/20 (one time in eight). The processes ask their
    excess to reconnect until they hold even shares."""
    served = Hub(own_dir, "--no-demo", env={"IEUM_WORKERS": "2"})
    try:
        (worker,) = served.workers()
        clients = [
            asyncio.create_task(keep_asking(served.port, time.monotonic() + 60)) for _ in range(40)
        ]
        split = (0, 0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            split = (established(served.port, served.process.pid), established(served.port, worker))
            if split == (20, 20):
                break
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        assert split == (20, 20)
    finally:
        assert served.stop(signal.SIGINT) == 0
