"""Console entry points.

``nas-search`` is a Hydra 1.3 application: config groups compose one run
(``nas-search method=gaea_pcdarts dataset=cifar10``), ``-m`` sweeps, and
``experiment=...`` adds presets.  User errors (bad values, missing data,
diverged training) end with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nas_cli.config import register_configs
from nas_cli.errors import UserError
from nas_cli.runtime.console import error_line

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUPS = {
    "search_space": "cell search space and supernet size",
    "method": "NAS method = relaxation + optimizer + objective + paper hyperparameters",
    "optimizer": "architecture optimizer (weights always use SGD: search.*)",
    "objective": "how weight and architecture updates interleave",
    "dataset": "data source (synthetic is embedded; cifar10/100 read the official pickles)",
    "stage": "pipeline stage to run",
    "experiment": "presets (optional): experiment=demo",
}


def _options(group: str) -> list[str]:
    d = CONF_DIR / group
    # nested presets are selected by their path: experiment=paper/darts_cifar10_gaea_pcdarts
    return sorted(p.relative_to(d).with_suffix("").as_posix() for p in d.rglob("*.yaml")) if d.is_dir() else []


def help_text() -> str:
    lines = [
        "nas-search: gradient-based weight-sharing NAS (GAEA, DARTS, PC-DARTS) as one Hydra app.",
        "",
        "Usage: nas-search [group=option ...] [key=value ...] [-m for sweeps] [--cfg job] [--help]",
        "",
        "Config groups (choose one option each):",
    ]
    for group, what in GROUPS.items():
        lines.append(f"  {group:<13} {what}")
        lines.append(f"  {'':<13} options: {', '.join(_options(group)) or '-'}")
    lines += [
        "",
        "Examples:",
        "  nas-search method=gaea_pcdarts                     # GAEA PC-DARTS on the default dataset",
        "  nas-search experiment=demo method=darts            # a short demo search (CPU, minutes)",
        "  nas-search method=gaea_darts objective=single_level dataset=cifar10 dataset.root=~/data",
        "  nas-search -m seed=0,1,2,3                         # four seeds (multirun)",
        "  nas-search method=pcdarts --cfg job                # print the composed config",
        "",
        "Outputs go to hydra.run.dir (default outputs/<stage>/<method>-<space>-<dataset>/seed<seed>);",
        "rerunning the same command resumes from its checkpoint (resume=false starts over).",
        "",
        "Composed config (override any key with key=value):",
        "$CONFIG",
    ]
    return "\n".join(lines)


def _suffix(tag: str) -> str:
    return f"-{tag}" if tag else ""


def _register() -> None:
    register_configs()
    if not OmegaConf.has_resolver("nas_suffix"):
        OmegaConf.register_new_resolver("nas_suffix", _suffix)
    ConfigStore.instance().store(group="hydra/help", name="nas_help",
                                 node={"app_name": "nas-search", "header": "", "footer": "",
                                       "template": help_text()})


def _run(cfg: DictConfig) -> None:
    from nas_cli.stages import STAGES

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        STAGES.get(cfg.stage.name)(cfg, out_dir)
    except UserError as exc:
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error_line(f"interrupted; the last finished epoch is checkpointed in {out_dir}: "
                   "run the same command again to resume")
        sys.exit(130)


_register()
search_app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(_run)


def rank_overrides(env: Mapping[str, str]) -> list[str]:
    """Extra Hydra overrides for a non-zero rank of a ``torchrun`` job.

    Every rank runs the same command in the same run directory; only rank 0 writes nas_cli's
    files, and Hydra's own (``.hydra/``, the job log) must not be written by every rank either."""
    try:
        rank = int(env.get("RANK", "0"))
    except ValueError:
        rank = 0
    return ["hydra.output_subdir=null", "hydra/job_logging=none"] if rank > 0 else []


def search_main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.argv += rank_overrides(os.environ)
    search_app()


if __name__ == "__main__":
    search_main()
