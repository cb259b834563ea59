"""Opt-in: the real cluster-launcher cycle against a head on 127.0.0.1, as a user runs it on on-prem machines:
``ray up cluster/local.yaml`` -> ``ray submit ... experiments/sweep.py`` (which uploads only that one file) ->
``ray down``.

It needs sshd on 127.0.0.1 accepting key login for the current user, and rsync (the launcher copies with it).
It appends (then removes) one line that activates this test's Python environment to ``~/.bashrc``, so run it on
a disposable machine or account:

    DASVIT_E2E_CLUSTER=1 pytest tests/test_cluster_e2e.py      # key: $DASVIT_E2E_SSH_KEY or ~/.ssh/id_ed25519

The generated config differs from ``cluster/local.yaml`` only where a one-machine test must: the head is this
machine, the project is not copied and pip-installed again (this environment already has it), and Ray is
started from this environment.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dasvit.platform import tracking

REPO = Path(__file__).resolve().parents[1]
KEY = Path(os.environ.get("DASVIT_E2E_SSH_KEY", "~/.ssh/id_ed25519")).expanduser()
pytestmark = pytest.mark.skipif(not os.environ.get("DASVIT_E2E_CLUSTER"),
                                reason="opt-in: set DASVIT_E2E_CLUSTER=1 (needs sshd on 127.0.0.1)")


def one_machine_config(activate: str) -> dict:
    config = yaml.safe_load((REPO / "cluster" / "local.yaml").read_text())
    config["cluster_name"] = "dasvit-e2e"
    config["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(KEY)}
    config["file_mounts"] = {}
    config["setup_commands"] = [f"grep -qxF '{activate}' ~/.bashrc || echo '{activate}' >> ~/.bashrc"]
    config["head_start_ray_commands"] = [
        f"{activate} && ray stop",
        f"{activate} && ray start --head --port=6379 --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1"
        " --autoscaling-config=~/ray_bootstrap_config.yaml",
    ]
    return config


def ray(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(Path(sys.executable).parent / "ray"), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"ray {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_ray_up_submit_down_runs_the_unchanged_sweep_script(tmp_path):
    activate = f". {Path(sys.executable).parent / 'activate'}"
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(one_machine_config(activate)))
    workdir = tmp_path / "work"
    workdir.mkdir()
    try:
        ray("up", "-y", "--no-config-cache", str(config))
        submitted = ray("submit", str(config), str(REPO / "experiments" / "sweep.py"), "--",
                        "--config", str(REPO / "experiments" / "configs" / "tiny.yaml"), "--workdir", str(workdir),
                        "--name", "e2e", "--experiment", "e2e", "--top-k", "0")
        assert "results:" in submitted.stdout + submitted.stderr
    finally:
        ray("down", "-y", str(config))
        bashrc = Path("~/.bashrc").expanduser()
        if bashrc.exists():
            bashrc.write_text("".join(line for line in bashrc.read_text().splitlines(True) if line.strip() != activate))
    client = tracking.client_for(tracking.default_tracking_uri(workdir))
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert sum(r.data.tags.get(tracking.KIND_TAG) == "search" for r in runs) == 2
    assert "RUNNING" not in {r.info.status for r in runs}
    assert (workdir / "ray_results" / "e2e-results.csv").is_file()
