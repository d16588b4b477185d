"""nas-bench on CPU: every workload runs through the real seams, the table and JSON come out,
and user errors are one line.  Sizes are forced tiny with overrides every workload accepts."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from nas_cli.bench import main
from nas_cli.bench.measure import time_steps
from nas_cli.bench.workloads import ORDER

# keys shared by all workloads' configs (search_space.* differs between DARTS and NB201);
# one intra-op thread: on a shared, oversubscribed CPU two spinning OpenMP threads are ~5x slower
TINY = ["search.batch_size=8", "train.batch_size=8", "train.layers=3", "dataset.num_train=64",
        "dataset.num_test=16", "runtime.num_threads=1"]
TARGETS = {"pcdarts_search": 0.10, "gaea_pcdarts_search": 0.10, "eval_step": 0.025,
           "nb201_gaea_darts": 0.02, "nb201_gdas": 0.015}


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def all_workloads(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, dict]:
    """One in-process run of every workload (1 step, no warm-up), shared by the assertions below."""
    path = tmp_path_factory.mktemp("bench") / "out" / "bench.json"
    rc, out = _run(["--same-process", "--device", "cpu", "--steps", "1", "--warmup", "0", "--json", str(path),
                    *TINY])
    return rc, out, json.loads(path.read_text())


def test_all_workloads_table_and_json(all_workloads: tuple[int, str, dict]) -> None:
    rc, out, doc = all_workloads
    assert rc == 0 and doc["complete"] is True
    assert "nas-bench on cpu" in out and "median s" in out
    rows = doc["rows"]
    assert [r["workload"] for r in rows] == ORDER == list(TARGETS)
    for r in rows:
        assert r["workload"] in out
        assert r["error"] is None
        assert r["step_s_median"] > 0 and r["step_s_mean"] > 0 and len(r["step_times_s"]) == 1
        assert r["images_per_s"] == pytest.approx(r["images_per_step"] / r["step_s_median"])
        assert r["target_step_s"] == TARGETS[r["workload"]] and r["target_device"] == "H100"
        assert r["peak_mem_kind"] == "cpu_peak_rss_delta"
        assert r["precision"] == "fp32" and r["channels_last"] is False and r["fused"] is True
        assert r["cuda_graphs"] == "auto" and r["stepper"]
        assert r["device"] == "cpu" and r["dataset"] == "synthetic"
    by = {r["workload"]: r for r in rows}
    assert by["gaea_pcdarts_search"]["target_mem_gb"] == 10.0 and by["eval_step"]["target_mem_gb"] is None
    # overrides reached the built objects: weight + arch batch for searches, the eval net's size
    assert by["pcdarts_search"]["images_per_step"] == 16 and "b8+8" in by["nb201_gdas"]["sizes"]
    assert by["eval_step"]["images_per_step"] == 8 and "L=3" in by["eval_step"]["sizes"]
    assert by["eval_step"]["branch_streams"] is False  # what runtime.branch_streams=auto resolved to on CPU
    assert by["nb201_gaea_darts"]["method"] == "gaea_darts" and by["nb201_gdas"]["space"] == "nb201"
    assert doc["options"]["steps"] == 1 and doc["host"]["torch"]
    assert all(r["compile"] == "auto" and r["warmup_s"] >= 0 for r in rows)
    # every CPU row runs with the same settings: printed once under the table, not as a column
    assert "settings: fp32 NCHW fused graphs=auto bn=auto dw=auto pw=auto mix=auto compile=auto eager" in out


def test_json_written_atomically(all_workloads: tuple[int, str, dict], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    rc, _ = _run(["--same-process", "--device", "cpu", "--workloads", "nb201_gdas", "--steps", "1", "--warmup", "0",
                  "--json", str(path), *TINY])
    assert rc == 0 and [p.name for p in tmp_path.iterdir()] == ["b.json"]  # no temp file left behind


def test_compare_adds_eager_reference_and_speedup(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    rc, out = _run(["--same-process", "--device", "cpu", "--workloads", "nb201_gdas", "--steps", "1",
                    "--warmup", "0", "--compare", "--json", str(path), *TINY])
    assert rc == 0 and "speed-up" in out
    default, eager = json.loads(path.read_text())["rows"]
    assert (default["variant"], eager["variant"]) == ("default", "eager")
    assert eager["fused"] is False and eager["cuda_graphs"] == "false" and default["fused"] is True
    assert default["speedup_vs_eager"] == pytest.approx(eager["step_s_median"] / default["step_s_median"])


def test_subprocess_mode_and_comma_list(tmp_path: Path) -> None:
    """The default path: a fresh interpreter per workload; trailing overrides after --workloads."""
    path = tmp_path / "s.json"
    rc, out = _run(["--device", "cpu", "--steps", "1", "--warmup", "0", "--json", str(path),
                    "--workloads", "nb201_gdas", *TINY])
    assert rc == 0, out
    (row,) = json.loads(path.read_text())["rows"]
    assert row["workload"] == "nb201_gdas" and row["error"] is None and row["step_s_median"] > 0
    assert "search.batch_size=8" in row["overrides"]


@pytest.mark.parametrize("argv, needle", [
    (["--workloads", "nope"], "unknown benchmark workload 'nope'"),
    (["no_such.key=1"], "bad override"),
    (["dataset.num_train=abc"], "bad override"),
    (["runtime.precision=fp8"], "runtime.precision"),
    (["--steps", "0"], "--steps must be >= 1"),
    # device-dependent settings are refused before any workload runs, not as failed rows
    (["--workloads", "eval_step", "runtime.branch_streams=true"], "branch_streams=true is not possible here"),
    (["runtime.cuda_graphs=true"], "CUDA graphs need a CUDA device"),
])
def test_user_errors_are_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--same-process", "--device", "cpu", *argv])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_override_of_one_space_skips_the_other_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    """search_space.layers exists only in the DARTS space: with all workloads selected, the NB201
    ones are skipped with a notice; named explicitly, the override must apply (one-line error)."""
    from argparse import Namespace

    from nas_cli.bench.cli import build_specs

    args = Namespace(steps=1, warmup=0, workloads=None, overrides=["search_space.layers=3", *TINY],
                     compare=False, full=False, genotype="GAEA_PCDARTS_cifar10")
    names = [s.workload for s in build_specs(args, "cpu")]
    assert names == [w for w in ORDER if not w.startswith("nb201")]
    assert "skipping nb201_gdas" in capsys.readouterr().out
    rc = main(["--same-process", "--device", "cpu", "--workloads", "nb201_gdas", "search_space.layers=3"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "Could not override 'search_space.layers'" in err and len(err.splitlines()) == 1


def test_time_steps_excludes_warmup() -> None:
    import torch

    calls: list[int] = []
    timing, peak, kind = time_steps(lambda: calls.append(1), torch.device("cpu"), steps=3, warmup=2)
    assert len(calls) == 5 and len(timing.times) == 3
    assert timing.median >= 0 and kind == "cpu_peak_rss_delta" and (peak is None or peak >= 0)


def test_killed_run_keeps_the_finished_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON is rewritten after every workload: a run stopped later (a time limit, Ctrl-C) keeps
    what it measured, marked incomplete."""
    import nas_cli.bench.runner as runner

    done: list[str] = []

    def fake_run(spec: runner.RunSpec) -> dict:
        if done:
            raise KeyboardInterrupt  # killed while measuring the second workload
        done.append(spec.workload)
        return runner.error_row(spec, "stand-in row")

    monkeypatch.setattr(runner, "run_in_process", fake_run)
    path = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        main(["--same-process", "--device", "cpu", "--json", str(path), "--workloads", "nb201_gdas",
              "nb201_gaea_darts", *TINY])
    doc = json.loads(path.read_text())
    assert doc["complete"] is False and [r["workload"] for r in doc["rows"]] == ["nb201_gdas"]


def test_a_crashing_workload_reports_its_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A crash in the child (not a user error) ends with one informative line, the first lines of
    a multi-line message rather than its generic last line; the parent keeps the traceback in the row."""
    import subprocess

    import nas_cli.bench.runner as runner
    from nas_cli.bench import worker

    def crash(spec: runner.RunSpec) -> dict:
        raise RuntimeError("stride mismatch in the output of op X\n\nSee https://example/opcheck")

    spec = runner.RunSpec("nb201_gdas", "cpu", 1, 0, False, [], [], "default", "GAEA_PCDARTS_cifar10")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(__import__("dataclasses").asdict(spec)))
    monkeypatch.setattr(runner, "run_in_process", crash)
    assert worker.main([str(spec_path), str(tmp_path / "row.json")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    last = err.strip().splitlines()[-1]
    assert last == "error: RuntimeError: stride mismatch in the output of op X See https://example/opcheck"
    # the parent: that line becomes the table's error, the log is kept in the JSON row
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, None, err))
    row = runner.run_in_subprocess(spec)
    assert row["error"] == "RuntimeError: stride mismatch in the output of op X See https://example/opcheck"
    assert any("Traceback" in line for line in row["error_log"])


def test_settings_line_names_two_streams() -> None:
    """A row whose evaluation cells ran on two streams says so in the settings line under the table."""
    from nas_cli.bench.table import settings_text

    row = {"precision": "fp32", "channels_last": False, "fused": True, "cuda_graphs": "auto",
           "compile": "false", "stepper": "cuda_graph"}
    assert "streams=2" not in settings_text(row)
    assert "compile=false streams=2 cuda_graph" in settings_text({**row, "branch_streams": True})


def test_settings_line_names_the_compile_scope() -> None:
    """A compiled evaluation row names what was compiled (the whole network or per cell)."""
    from nas_cli.bench.table import settings_text

    row = {"precision": "fp32", "channels_last": True, "fused": True, "cuda_graphs": "auto",
           "compile": "auto", "stepper": "cuda_graph"}
    assert "compile=auto cuda_graph" in settings_text({**row, "compile_scope": None})
    assert "compile=auto/model cuda_graph" in settings_text({**row, "compile_scope": "model"})


def test_full_size_eval_step_takes_the_paper_runs_compile_scope() -> None:
    """The benchmark's synthetic set is smaller than CIFAR-10, so the full-size evaluation step names
    the scope compile_scope=auto gives the papers' 600-epoch retraining; a user override wins."""
    from nas_cli.bench.workloads import WORKLOADS, compose_workload
    from nas_cli.runtime.compile import MODEL_SCOPE_MIN_STEPS, resolve_compile_scope

    w = WORKLOADS.get("eval_step")
    cfg = compose_workload(w, "cpu", full=True)
    assert cfg.runtime.compile_scope == "model"
    assert resolve_compile_scope("auto", int(cfg.train.epochs) * (50_000 // int(cfg.train.batch_size))) == "model"
    assert int(cfg.train.epochs) * (50_000 // int(cfg.train.batch_size)) >= MODEL_SCOPE_MIN_STEPS
    assert compose_workload(w, "cpu", full=True, user=["runtime.compile_scope=cells"]).runtime.compile_scope == "cells"
    assert compose_workload(w, "cpu", full=False).runtime.compile_scope == "auto"


def test_the_profile_sums_device_time_per_kernel_family() -> None:
    """benchmarks/profile_step.py's families: Inductor kernels whose names mention convolution stay
    Inductor's, the project's Triton kernels are told apart from ATen's ``*_kernel`` templates, and the
    per-step sums divide by the profiled steps."""
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.profile_step import category_sums

    def ev(key: str, us: float, count: int) -> SimpleNamespace:
        return SimpleNamespace(key=key, self_device_time_total=us, count=count)

    got = category_sums([
        ev("triton_poi_fused_add_convolution_backward_mul_0", 4000.0, 8),
        ev("triton_red_fused_native_batch_norm_backward_1", 2000.0, 4),
        ev("_weight_kernel", 3000.0, 6),
        ev("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<x>", 1000.0, 2),
        ev("sm90_xmma_depthwise_convolution_wgrad_tiling_f32", 600.0, 2),
        ev("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_64x64_32x6_nt>", 800.0, 4),
        ev("sm90_xmma_dgrad_implicit_gemm_f32f32_tf32f32", 200.0, 2),
        ev("void at::native::reduce_kernel<128, 4>", 100.0, 2),
    ], steps=2)
    got = {name.split(" (")[0]: (round(ms, 6), count) for name, (ms, count) in got.items()}
    assert got == {"inductor pointwise": (2.0, 4.0), "inductor reduction": (1.0, 2.0),
                   "project Triton kernels": (1.5, 3.0), "optimizer": (0.5, 1.0), "cuDNN depthwise conv": (0.3, 1.0),
                   "gemm": (0.4, 2.0), "cuDNN conv dgrad": (0.1, 1.0), "other": (0.05, 1.0)}, got
