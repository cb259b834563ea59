"""A throw-away ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts, a free port), optionally with
MLflow's basic-auth app: what the tests and the load benchmark track against, as a cluster's head does. Nothing
listens beyond the loopback interface."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ADMIN = "admin"


@dataclass(frozen=True)
class Server:
    uri: str
    folder: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(folder: Path, admin_password: str | None = None) -> Iterator[Server]:
    """Start the server in ``folder``, wait for ``/health``, yield it, stop it. With ``admin_password`` it runs the
    basic-auth app, whose admin ``ADMIN`` has that password (given through the server's environment)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    # no GenAI job runner: it starts seven processes (huey consumers) that tracking never uses, and stopping them
    # took most of the server's 5 s shutdown
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--serve-artifacts",
               "--artifacts-destination", str(folder / "artifacts")]
    if admin_password is not None:
        ini = folder / "basic_auth.ini"
        ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder / 'auth.db'}\n"
                       f"admin_username = {ADMIN}\nauthorization_function = "
                       "mlflow.server.auth:authenticate_request_basic_auth\n")
        env |= {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
        command += ["--app-name", "basic-auth"]
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield Server(uri, folder)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
