"""The cluster files, checked offline: ``ray_cluster.yaml`` against Ray's own schema and rules
(``prepare_config`` + ``validate_config``, no cloud credentials), with broken copies proving the
check can fail, and ``deploy/kuberay-rayjob.yaml`` for its structure (there is no KubeRay
validator here). Both must run the project's Ray version on Python 3.11, keep trials off the
head, install the project and write to shared storage.
"""

from __future__ import annotations

import copy
import re
import shlex

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from study.space import ROOT

CLUSTER = ROOT / "ray_cluster.yaml"
RAYJOB = ROOT / "deploy" / "kuberay-rayjob.yaml"
IMAGE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d+)(?P<gpu>-gpu)?$")


def _cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def _validate(cfg: dict) -> dict:
    """Ray's offline check: fill in the provider's defaults, then the schema and the rules."""
    cfg = prepare_config(copy.deepcopy(cfg))
    validate_config(cfg)
    return cfg


def _project_python() -> str:
    """The lowest Python the project supports, as Ray's image tag writes it (py311)."""
    text = (ROOT / "pyproject.toml").read_text()
    major, minor = re.search(r'requires-python = ">=(\d+)\.(\d+)"', text).groups()
    return f"{major}{minor}"


def _check_image(image: str) -> None:
    m = IMAGE.match(image)
    assert m, f"{image!r} is not a rayproject/ray:<version>-py<NN>[-gpu] image"
    assert m["ray"] == ray.__version__, (
        f"cluster Ray {m['ray']} != installed Ray {ray.__version__}: the driver's and the "
        f"cluster's Ray versions must match")
    assert m["py"] == _project_python() == "311"


# --- ray_cluster.yaml ----------------------------------------------------------------------------


def test_cluster_yaml_passes_rays_offline_validation():
    cfg = _validate(_cluster())
    assert cfg["provider"]["type"] == "aws"
    assert cfg["head_node_type"] in cfg["available_node_types"]


@pytest.mark.parametrize("mutate, error", [
    (lambda c: c.__setitem__("setup_comands", c.pop("setup_commands")),
     r"Additional properties are not allowed \('setup_comands' was unexpected\)"),
    (lambda c: c["available_node_types"]["gpu_worker"].__setitem__("resources", {"GPU": 0.5}),
     r"0\.5 is not of type 'integer'"),
    (lambda c: c.__setitem__("head_node_type", "head_gpu"),
     r"`head_node_type` must be one of `available_node_types`"),
    (lambda c: c["available_node_types"]["gpu_worker"].__setitem__("min_workers", 99),
     r"smaller than the sum of `min_workers`"),
    (lambda c: c["available_node_types"]["gpu_worker"].__setitem__(
        "node_confg", c["available_node_types"]["gpu_worker"].pop("node_config")),
     r"'node_config' is a required property"),
    (lambda c: c.pop("provider"), r"provider"),
], ids=["typo_key", "fractional_gpu", "unknown_head_type", "min_above_max", "typo_node_config",
        "no_provider"])
def test_validation_catches_broken_copies(mutate, error):
    cfg = _cluster()
    mutate(cfg)
    with pytest.raises(Exception, match=error):  # jsonschema.ValidationError, ValueError, KeyError
        _validate(cfg)


def test_head_runs_no_trials_and_workers_have_gpus():
    cfg = _cluster()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "trials must stay off the head"
    assert "GPU" not in head["resources"] and not head.get("max_workers")
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert len(workers) == 1
    (worker,) = workers
    assert worker["node_config"]["InstanceType"].startswith(("g4dn", "g5", "g6", "p3", "p4", "p5"))
    assert worker.get("min_workers", 0) == 0 and worker["max_workers"] >= 1
    assert worker["max_workers"] <= cfg["max_workers"]


def test_spot_market_is_on_and_the_file_says_how_to_switch_it_off():
    cfg = _cluster()
    worker = cfg["available_node_types"]["gpu_worker"]["node_config"]
    assert worker["InstanceMarketOptions"] == {"MarketType": "spot"}
    text = CLUSTER.read_text()
    assert "Spot off" in text and "InstanceMarketOptions" in text
    on_demand = _cluster()
    del on_demand["available_node_types"]["gpu_worker"]["node_config"]["InstanceMarketOptions"]
    _validate(on_demand)


def test_cluster_installs_the_project_on_every_node():
    cfg = _cluster()
    assert cfg["file_mounts"] == {"/home/ray/project": "."}
    assert "pip install -q -e /home/ray/project" in cfg["setup_commands"]
    assert any("/home/ray/project" in c and ".pth" in c for c in cfg["setup_commands"]), (
        "workers must import the study package, which the editable install does not expose")
    excluded = " ".join(cfg["rsync_exclude"])
    assert ".venv" in excluded and "results" in excluded and ".git" in excluded
    assert ".gitignore" in cfg.get("rsync_filter", [])


def test_cluster_runs_the_projects_ray_version_on_python_311():
    cfg = _cluster()
    _check_image(cfg["docker"]["image"])
    assert cfg["docker"]["image"].endswith("-gpu")


def test_cluster_file_documents_shared_storage_and_the_job_command():
    text = CLUSTER.read_text()
    assert "--storage s3://" in text, "more than one node needs shared storage (s3:// or NFS)"
    assert "ray up ray_cluster.yaml" in text and "ray down ray_cluster.yaml" in text
    assert re.search(r"ray job submit .*study/run\.py", text.replace("\\\n", " "))
    assert "--address auto" in text


# --- deploy/kuberay-rayjob.yaml ------------------------------------------------------------------


def _rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_runs_the_study_driver_against_the_cluster_it_creates():
    job = _rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "study/run.py"]
    assert argv[argv.index("--address") + 1] == "auto"
    assert argv[argv.index("--storage") + 1].startswith("s3://")
    assert argv[argv.index("--space") + 1] == "rotation_ablation"
    assert (ROOT / "searchspaces" / "rotation_ablation.yaml").is_file()
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"].endswith(".zip"), "the driver needs the project's files"


def test_rayjob_has_a_cpu_head_without_trials_and_a_gpu_worker_group():
    cluster = _rayjob()["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "trials must stay off the head"
    assert not any("nvidia.com/gpu" in c["resources"].get("limits", {})
                   for c in _containers(head))
    (gpu,) = cluster["workerGroupSpecs"]
    limits = [c["resources"]["limits"] for c in _containers(gpu)]
    assert all(int(lim["nvidia.com/gpu"]) >= 1 for lim in limits)
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]


def test_rayjob_uses_the_same_ray_image_as_the_cluster_yaml():
    cluster = _rayjob()["spec"]["rayClusterSpec"]
    images = {c["image"] for c in _containers(cluster["headGroupSpec"])}
    images |= {c["image"] for g in cluster["workerGroupSpecs"] for c in _containers(g)}
    assert images == {_cluster()["docker"]["image"]}
    for image in images:
        _check_image(image)
    assert cluster["rayVersion"] == ray.__version__
