"""The SLURM launcher preset (conf/hydra/launcher/slurm.yaml) and the submitit rank layout.

The plugin (hydra-submitit-launcher) is optional: the file-level checks always run,
composition and the submitit environment only where the plugin is installed.
"""

from __future__ import annotations

import os

import pytest
import yaml

from conftest import ROOT, make_cfg
from nas_cli.runtime import distributed as dist

SLURM_YAML = ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml"


def test_slurm_preset_has_the_keys_a_user_sets() -> None:
    conf = yaml.safe_load(SLURM_YAML.read_text())
    assert conf["defaults"] == ["submitit_slurm"]
    for key in ("partition", "gpus_per_node", "tasks_per_node", "timeout_min", "max_num_timeout", "nodes"):
        assert key in conf, key
    assert conf["timeout_min"] > 0 and conf["gpus_per_node"] >= 1
    assert conf["max_num_timeout"] > 0  # timed-out jobs are requeued ...
    assert make_cfg().resume == "auto"  # ... and a requeued job continues from its checkpoint


def test_slurm_preset_composes_with_the_plugin() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException
    from hydra.utils import get_class

    import nas_cli.cli  # noqa: F401

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                 "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4"])
        launcher = cfg.hydra.launcher
        assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 4, 4)
        assert launcher.timeout_min == 1440 and launcher.max_num_timeout == 20
        # self-resume: submitit requeues a preempted/timed-out job through the launcher's checkpoint()
        assert callable(getattr(get_class(launcher._target_), "checkpoint", None))
        assert cfg.resume == "auto"
        with pytest.raises(ConfigCompositionException):  # the plugin's schema validates the preset's keys
            compose(config_name="config", overrides=["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=many"],
                    return_hydra_config=True)


_WORLD_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def test_multi_task_submitit_job_is_data_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    for key in _WORLD_VARS:
        monkeypatch.delenv(key, raising=False)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    # a shell inside `salloc -n 4` is one process: it must not wait for peers
    assert dist.env_world() == dist.DistContext()
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    try:
        assert dist.env_world() == dist.DistContext(rank=3, world_size=4, local_rank=1)
        assert os.environ["MASTER_ADDR"] == "gpu07" and int(os.environ["MASTER_PORT"]) > 0
    finally:
        for key in _WORLD_VARS:  # export() wrote them to os.environ directly, past monkeypatch
            os.environ.pop(key, None)
