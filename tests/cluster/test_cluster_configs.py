"""The files in cluster/: the launcher config passes Ray's own schema, KubeRay files have what KubeRay
needs, and every entrypoint, search space and path they name exists in this repository."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
CLUSTER = REPO / "cluster"


def _launcher() -> dict:
    return yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())


def test_aws_config_passes_rays_schema_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _launcher()
    validate_config(prepare_config(copy.deepcopy(config)))
    broken = copy.deepcopy(config)
    broken["available_node_types"]["ray.worker.gpu"]["max_workers"] = "four"
    with pytest.raises(Exception, match="is not of type 'integer'"):  # the validation really checks
        validate_config(prepare_config(broken))


def test_aws_config_gpu_workers_token_auth_private_dashboard() -> None:
    config = _launcher()
    gpu = config["available_node_types"]["ray.worker.gpu"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert "gpu" in config["docker"]["image"] and any("tensorflow" in c for c in config["setup_commands"])
    assert any("pip install" in c and "/home/ray/exifray" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert config["file_mounts"]["/home/ray/exifray"] == "." and "/home/ray/.ray/auth_token" in config["file_mounts"]


def _kuberay(name: str) -> dict:
    return yaml.safe_load((CLUSTER / "kuberay" / name).read_text())


def _check_cluster_spec(spec: dict) -> None:
    assert spec["authOptions"] == {"mode": "token"} and spec["rayVersion"].startswith("2.")
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head["template"]["spec"]["containers"][0]["image"]
    gpu = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu and gpu[0]["maxReplicas"] >= 1
    limits = gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1


def test_kuberay_cluster_and_job_have_the_required_fields() -> None:
    cluster = _kuberay("raycluster.yaml")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster" and cluster["metadata"]["name"]
    _check_cluster_spec(cluster["spec"])
    job = _kuberay("rayjob-sweep.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    _check_cluster_spec(job["spec"]["rayClusterSpec"])
    assert isinstance(yaml.safe_load(job["spec"]["runtimeEnvYAML"]), dict)
    assert "--storage-path s3://" in job["spec"]["entrypoint"]


def test_every_entrypoint_and_file_named_exists() -> None:
    job = _kuberay("rayjob-sweep.yaml")
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[0] == "python" and (REPO / words[1]).is_file()
    space = words[words.index("--space") + 1]
    assert (REPO / space).is_file()
    texts = [p.read_text() for p in [*CLUSTER.rglob("*.yaml"), CLUSTER / "README.md", CLUSTER / "Dockerfile"]]
    pattern = r"(?<![\w/])(jobs/[a-z_]+\.(?:py|yaml)|search_spaces/[a-z_]+\.yaml|(?:tests/)?cluster/[\w/.-]+)"
    named = set(re.findall(pattern, "\n".join(texts)))
    assert named and all((REPO / path).exists() for path in named), sorted(p for p in named if not (REPO / p).exists())
    assert "tests/cluster/test_node_loss.py" in named
    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert runtime_env["working_dir"] == "." and ".venv/" in runtime_env["excludes"]
