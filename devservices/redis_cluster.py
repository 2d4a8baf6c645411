"""A private Redis Cluster for tests: three primaries and one replica each, on loopback.

Six ``redis-server`` processes in cluster mode, each on two free ports of 127.0.0.1 (clients
and the cluster bus), without persistence. Primary ``i`` serves the ``i``-th third of the hash
slots and node ``3 + i`` replicates it. The nodes fail over by themselves: a primary that
answers no ping for :attr:`RedisClusterServer.node_timeout` milliseconds is replaced by its
replica. :meth:`RedisClusterServer.kill_node` SIGKILLs one node, :meth:`wait_for_failover`
waits until a replica took its slots over, and :meth:`start_node` brings the node back (it
rejoins as a replica of its successor and copies the data back from it).

A test sets the cluster up afresh with :meth:`RedisClusterServer.start` (restarts the nodes
that are down and waits until every slot is served) and :meth:`RedisClusterServer.flushall`.
``IMMORTUS_TEST_REDIS_CLUSTER_URL`` (a ``redis+cluster://`` URL) runs the tests against a
cluster you already have instead: its data is wiped between tests, and the failover tests,
which kill nodes, fail with :class:`~devservices.server.ManagedServerRequiredError`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import redis
from redis.cluster import RedisCluster

from devservices.net import HOST, free_port
from devservices.processes import tail, wait_until
from devservices.server import Server, ServiceError, install_hint

#: How many primaries the cluster has; each has one replica.
PRIMARIES: Final = 3
#: The number of hash slots of every Redis Cluster.
SLOTS: Final = 16384


@dataclass
class ClusterNode:
    """One ``redis-server`` of the cluster: its ports, directory and process."""

    port: int
    bus_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as the cluster names the node."""
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is up."""
        return self.process is not None and self.process.poll() is None

    @property
    def log(self) -> Path:
        """The node's log file."""
        return self.directory / "redis.log"

    def client(self, *, timeout: float = 2.0) -> redis.Redis:
        """A plain client of this node alone (follows no redirection)."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )


class RedisClusterServer(Server):
    """A private three-primary Redis Cluster with a replica per primary; see the module doc.

    ``node_timeout`` is Redis's ``cluster-node-timeout`` in milliseconds: how long a primary
    may be silent before its replica takes over. Too short a value makes a loaded machine fail
    over healthy primaries; the default leaves room for that.
    """

    env_var = "IMMORTUS_TEST_REDIS_CLUSTER_URL"
    name = "Redis Cluster"

    def __init__(self, *, startup_timeout: float = 30.0, node_timeout: int = 3000) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout
        self.node_timeout = node_timeout
        self._base: Path | None = None
        self.nodes: list[ClusterNode] = []

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:PORT`` of the first node (any node finds the others)."""
        if self.external_url is not None:
            return self.external_url
        return f"redis+cluster://{self.nodes[0].address}" if self.nodes else ""

    @property
    def running(self) -> bool:
        """Whether every node is up (always True for an external cluster)."""
        if not self.managed:
            return True
        return bool(self.nodes) and all(node.running for node in self.nodes)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the six nodes and join them into one cluster, or restart the nodes that are down.

        Raises:
            ServiceError: redis-server is missing, or the cluster did not come up in time.
        """
        self._require_managed("start")
        if self.nodes:
            for node in self.nodes:
                if not node.running:
                    self.start_node(node)
            self.wait_until_healthy()
            return
        self._base = Path(tempfile.mkdtemp(prefix="immortus-redis-cluster-"))
        for index in range(2 * PRIMARIES):
            directory = self._base / f"node{index}"
            directory.mkdir()
            node = ClusterNode(port=free_port(), bus_port=free_port(), directory=directory)
            self.nodes.append(node)
            self.start_node(node)
        self._form()
        self.wait_until_healthy()

    def _form(self) -> None:
        """Give each primary a third of the slots, meet every node, attach the replicas."""
        first = self.nodes[0]
        for index, primary in enumerate(self.nodes[:PRIMARIES]):
            low = index * SLOTS // PRIMARIES
            high = (index + 1) * SLOTS // PRIMARIES - 1
            with primary.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        with first.client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", HOST, node.port, node.bus_port)
        ids = [self.node_id(node) for node in self.nodes[:PRIMARIES]]

        def everyone_met() -> bool:
            with first.client() as client:
                known = str(client.execute_command("CLUSTER", "NODES")).count("\n")
            return known >= len(self.nodes)

        if not wait_until(everyone_met, self.startup_timeout, interval=0.1):
            raise ServiceError(f"the cluster nodes did not meet within {self.startup_timeout}s")
        for primary_id, replica in zip(ids, self.nodes[PRIMARIES:], strict=True):

            def replicated(replica: ClusterNode = replica, primary_id: str = primary_id) -> bool:
                with replica.client() as client:
                    try:
                        client.execute_command("CLUSTER", "REPLICATE", primary_id)
                    except redis.ResponseError:  # the replica has not heard of it yet
                        return False
                return True

            if not wait_until(replicated, self.startup_timeout, interval=0.1):
                raise ServiceError(f"node {replica.address} could not replicate {primary_id}")

    def start_node(self, node: ClusterNode) -> None:
        """Start (or restart) one node on its ports; it keeps its cluster configuration file.

        Raises:
            ServiceError: redis-server is missing or the node did not answer PING in time.
        """
        self._require_managed("start a node of")
        if node.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError(f"redis-server is not installed: {install_hint('redis-server')}")
        args = [
            binary,
            "--bind", HOST,
            "--port", str(node.port),
            "--cluster-enabled", "yes",
            "--cluster-port", str(node.bus_port),
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout),
            "--cluster-replica-validity-factor", "0",  # any replica may take over
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(node.directory),
            "--logfile", str(node.log),
        ]  # fmt: skip
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_until(lambda: not node.running or _pings(node), self.startup_timeout)
        if not _up(node):
            self._end(node, kill=True)
            raise ServiceError(
                f"redis-server did not answer PING on {node.address} within "
                f"{self.startup_timeout:.0f}s; its log ({node.log}) ends with:\n{tail(node.log)}"
            )

    def wait_until_healthy(self) -> None:
        """Wait until every running node sees every slot served and every node connected.

        Raises:
            ServiceError: the cluster did not settle within the startup timeout.
        """
        if not wait_until(self._healthy, self.startup_timeout, interval=0.1):
            states = "\n".join(f"{node.address}: {self._state(node)}" for node in self.nodes)
            raise ServiceError(
                f"the cluster did not settle within {self.startup_timeout}s:\n{states}"
            )

    def _healthy(self) -> bool:
        for node in self.nodes:
            if not node.running:
                return False
            try:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    nodes = str(client.execute_command("CLUSTER", "NODES"))
                    link = client.info("replication").get("master_link_status", "up")
            except redis.RedisError:
                return False
            rows = [row.split() for row in nodes.splitlines() if row.strip()]
            if "cluster_state:ok" not in str(info) or len(rows) != len(self.nodes) or link != "up":
                return False
            for row in rows:
                flags = row[2].split(",")
                if {"fail", "fail?", "handshake", "noaddr"} & set(flags) or row[7] != "connected":
                    return False
        return True

    def _state(self, node: ClusterNode) -> str:
        try:
            with node.client() as client:
                return str(client.execute_command("CLUSTER", "NODES"))
        except redis.RedisError as exc:
            return f"unreachable ({exc})"

    def node_id(self, node: ClusterNode) -> str:
        """The cluster's id of ``node`` (it must be running)."""
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID"))

    def primary_for(self, key: str) -> ClusterNode:
        """The node that serves ``key``'s slot now, as a running node sees the cluster.

        Raises:
            ServiceError: no running node names a primary for the slot.
        """
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                ranges = client.execute_command("CLUSTER", "SLOTS")
            for low, high, primary, *_ in ranges:
                if int(low) <= slot <= int(high):
                    return self._node_at(int(primary[1]))
        raise ServiceError(f"no running node names a primary for {key!r}")

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        """The running nodes that replicate ``primary``."""
        primary_id = self.node_id(primary)
        found = []
        for node in self.nodes:
            if node is primary or not node.running:
                continue
            with node.client() as client:
                line = str(client.execute_command("CLUSTER", "NODES"))
            mine = next(row for row in line.splitlines() if "myself" in row)
            if mine.split()[3] == primary_id:
                found.append(node)
        return found

    def _node_at(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def kill_node(self, node: ClusterNode) -> None:
        """SIGKILL one node, as a crash would; :meth:`start_node` brings it back."""
        self._require_managed("kill a node of")
        self._end(node, kill=True)

    def wait_for_failover(self, old: ClusterNode, key: str) -> ClusterNode:
        """Wait until a node other than ``old`` serves ``key``'s slot; return that node.

        Raises:
            ServiceError: no replica took over within the startup timeout.
        """
        found: list[ClusterNode] = []

        def taken_over() -> bool:
            try:
                primary = self.primary_for(key)
            except (redis.RedisError, ServiceError):
                return False
            if primary is old or not primary.running:
                return False
            with primary.client() as client:
                role = client.execute_command("ROLE")
            found[:] = [primary]
            return str(role[0]) == "master"

        if not wait_until(taken_over, self.startup_timeout, interval=0.1):
            raise ServiceError(
                f"no replica took over {key!r} from {old.address} within {self.startup_timeout}s"
            )
        return found[0]

    def flushall(self) -> None:
        """Empty every primary (the replicas follow), of this cluster or the external one."""
        plain = self.url.replace("redis+cluster://", "redis://", 1).replace(
            "rediss+cluster://", "rediss://", 1
        )
        with RedisCluster.from_url(plain, socket_timeout=5) as client:
            client.flushall(target_nodes=RedisCluster.PRIMARIES)

    def stop(self) -> None:
        """Shut every node down with SIGTERM; start() brings them back."""
        self._require_managed("stop")
        for node in self.nodes:
            self._end(node, kill=False)

    def kill(self) -> None:
        """SIGKILL every node; start() brings them back (empty)."""
        self._require_managed("kill")
        for node in self.nodes:
            self._end(node, kill=True)

    @staticmethod
    def _end(node: ClusterNode, *, kill: bool) -> None:
        process, node.process = node.process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _remove_files(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None


def _up(node: ClusterNode) -> bool:
    """Whether the node's process runs and answers PING (False as soon as it exited)."""
    return node.running and _pings(node)


def _pings(node: ClusterNode) -> bool:
    try:
        with node.client(timeout=1.0) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False
