import sys, torch
sys.path.insert(0, ".")
from tests.conftest import TINY, make_cfg
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages.train_eval import EvalJob, EvalTrainer
from nas_cli.stages.search import build_run
from nas_cli.stages.stepper import build_search_stepper
from nas_cli.objectives import Batch
import tempfile, pathlib
base = ["experiment=demo", "runtime.device=cuda", "dataset.num_train=256", "dataset.image_size=16",
        "train.init_channels=8", "train.layers=5", "train.batch_size=32", "train.drop_path=0.0", "train.auxiliary_weight=0.4"]
for mode in ("true", "false"):
    cfg = make_cfg([*base, f"runtime.cuda_graphs={mode}"])
    tr = EvalTrainer(cfg, EvalJob("g", get_genotype("darts_v2"), 0), pathlib.Path(tempfile.mkdtemp()))
    tr.begin_epoch(0)
    ls = []
    for x, y in tr.stream.epoch():
        loss, c, n = tr.train_step(x, y)
        ls.append(round(float(loss), 5))
    print("eval", mode, ls, flush=True)
for method in ("darts", "gaea_pcdarts"):
    for mode in ("true", "false"):
        cfg = make_cfg([*TINY, "runtime.device=cuda", "objective.warmup_epochs=0", f"method={method}", f"runtime.cuda_graphs={mode}"])
        run = build_run(cfg, pathlib.Path(tempfile.mkdtemp()))
        st = build_search_stepper(run)
        run.model.train()
        ls = []
        for x, y in run.train_stream.epoch():
            out = st(Batch(x, y), lambda: Batch(*run.arch_stream.sample()), True)
            ls.append(round(float(out.loss), 5))
        print(method, mode, st.name, ls, {k: round(float(v.abs().sum()), 6) for k, v in run.arch.raw.items()}, flush=True)
