"""Settings that cannot work across Ray nodes, found before any trial starts.

On a cluster of more than one node every trial's workers, checkpoints and MLflow writes may land on any node, so
Ray's storage path and a SQLite tracking store must be the same folder on every node (a shared mount), or a URI
(``s3://``, ``http://``). Whether a folder is shared cannot be read from its path: the driver writes a marker file
there and asks one task pinned to each node whether it sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dasvit.config import ConfigError
from dasvit.platform.tracking import sqlite_path

NodeCheck = Callable[[Path], list[str]]  # a marker file -> the nodes that do not see it


@ray.remote(num_cpus=0)
def _sees(path: str) -> bool:
    return Path(path).exists()


def _alive() -> list[dict]:
    return [node for node in ray.nodes() if node["Alive"]]


def nodes_blind_to(marker: Path) -> list[str]:
    """The alive nodes (by address) on which ``marker`` does not exist."""
    nodes = _alive()
    checks = [_sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
              .remote(str(marker)) for node in nodes]
    return [node["NodeManagerAddress"] for node, seen in zip(nodes, ray.get(checks, timeout=120)) if not seen]


def alive_nodes() -> int:
    return len(_alive())


def check_shared(storage_path: str, tracking_uri: str, nodes: int, blind_to: NodeCheck = nodes_blind_to) -> None:
    """``ConfigError`` naming ``--storage-path`` or ``--tracking-uri`` when a cluster of ``nodes`` nodes has a node
    that does not see that folder."""
    if nodes < 2:
        return
    folders = []
    if "://" not in storage_path:
        folders.append(("--storage-path", storage_path, Path(storage_path)))
    database = sqlite_path(tracking_uri)
    if database is not None:
        folders.append(("--tracking-uri", tracking_uri, database.parent))
    for setting, value, folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f".dasvit-shared-{uuid.uuid4().hex}"
        marker.touch()
        try:
            blind = blind_to(marker)
        finally:
            marker.unlink()
        if blind:
            raise ConfigError(
                f"{setting} {value!r} is a folder that node(s) {', '.join(blind)} of this {nodes}-node Ray cluster "
                "cannot see: give a folder mounted on every node (NFS), or a URI (s3://, gs:// for the storage; "
                "http://host:port of an MLflow server for tracking)")
