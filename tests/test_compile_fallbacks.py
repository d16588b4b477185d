"""Compilation failures that ``runtime.compile=auto`` suppresses are reported, not silent.

With ``auto`` a failed compilation must not stop a run, so Dynamo's errors are suppressed and the failing
function runs eagerly.  The run must say so (console line, ``summary.json``) and so must ``nas-bench`` (the
row, the settings line): a benchmark that silently times a partly eager network misleads."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nas_cli.bench.cli import main as bench_main
from nas_cli.bench.table import settings_text
from nas_cli.runtime import compile as rc
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages import train_eval as te
from nas_cli.stages.train_eval import EvalJob, train_eval_network
from tests.conftest import TINY, make_cfg

FAILING = "nas_cli_test_failing_backend"


@torch._dynamo.register_backend(name=FAILING)
def _failing_backend(gm: torch.fx.GraphModule, example_inputs: list) -> None:
    raise RuntimeError("no kernels for this graph (test backend)")


@pytest.fixture(autouse=True)
def _restore_dynamo(monkeypatch: pytest.MonkeyPatch):
    """compile_module sets suppress_errors process-wide under ``auto``: restore it after each test."""
    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", torch._dynamo.config.suppress_errors)
    rc.take_fallbacks()
    yield
    torch._dynamo.reset()
    rc.take_fallbacks()


def test_the_log_keeps_dynamos_header_and_the_errors_first_lines() -> None:
    log = rc.FallbackLog()
    try:
        raise RuntimeError("backend='inductor' raised:\nRuntimeError: A leaf node was passed\n\n"
                           "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace")
    except RuntimeError:
        record = logging.LogRecord(rc.DYNAMO_FRAME_LOGGER, logging.WARNING, __file__, 1,
                                   "WON'T CONVERT forward /x/cell.py line 80 \ndue to: \nTraceback ...", None,
                                   sys.exc_info())
    assert log.filter(record) is False  # kept here, not printed
    assert log.filter(record) is False  # the same failure again (another step): kept once
    other = logging.LogRecord(rc.DYNAMO_FRAME_LOGGER, logging.WARNING, __file__, 1, "Raw profile at x", None, None)
    assert log.filter(other) is True  # Dynamo's other warnings print as before
    assert log.entries == ["forward /x/cell.py line 80: backend='inductor' raised: "
                           "RuntimeError: A leaf node was passed"]
    assert rc.fallback_text(["f a.py line 1: boom"]) == "torch.compile failed on f a.py line 1: boom"
    assert rc.fallback_text(["f: boom", "g: boom", "h: boom"]).endswith("f: boom and 2 more function(s)")


def test_a_suppressed_failure_runs_eagerly_and_is_collected(capfd: pytest.CaptureFixture[str]) -> None:
    """A real Dynamo failure (a backend that raises) under ``auto``: the module still computes eagerly,
    :func:`take_fallbacks` names the function and the error, once, and Dynamo's report (a traceback of
    ~150 lines per failed function) is kept for a file instead of going to stderr."""
    lin = nn.Linear(3, 2)
    cfg = make_cfg(["experiment=demo", "runtime.compile=auto", f"runtime.compile_backend={FAILING}"])
    rc.compile_module(lin, cfg.runtime, scope="model")
    x = torch.randn(4, 3)
    assert torch.allclose(lin(x), x @ lin.weight.t() + lin.bias)
    entries = rc.take_fallbacks()
    assert len(entries) == 1 and "forward" in entries[0] and "no kernels for this graph" in entries[0]
    assert rc.take_fallbacks() == []
    err = capfd.readouterr().err
    assert "WON'T CONVERT" not in err and "Traceback" not in err
    report = rc.fallback_tracebacks(entries)
    assert report.startswith("WON'T CONVERT") and "Traceback (most recent call last)" in report
    assert "no kernels for this graph" in report


def test_the_trainer_reports_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    """The evaluation trainer under ``auto`` (made to compile on CPU) with a failing backend: the run
    completes eagerly, prints one line for the failures (and no traceback), records each of them in
    summary.json and Dynamo's reports in compile_fallbacks.log."""
    monkeypatch.setattr(te, "compile_enabled", lambda *a, **k: True)
    cfg = make_cfg([*TINY, "train.epochs=1", "train.batch_size=32", "train.init_channels=4", "train.layers=3",
                    "runtime.compile=auto", f"runtime.compile_backend={FAILING}", "runtime.compile_scope=model"])
    summary = train_eval_network(cfg, EvalJob("darts_v2", get_genotype("darts_v2"), 0, 0.0, True), tmp_path)
    assert summary["status"] == "complete"
    failed = summary["execution"]["compile_fallbacks"]
    assert failed and all("no kernels for this graph" in f for f in failed)
    captured = capfd.readouterr()
    out = " ".join(captured.out.split())  # rich wraps at the console width, anywhere in the line
    assert "torch.compile failed on" in out and "runs eagerly" in out and te.FALLBACK_LOG in out
    assert "WON'T CONVERT" not in captured.err and "Traceback" not in captured.err
    log = (tmp_path / te.FALLBACK_LOG).read_text()
    assert log.count("WON'T CONVERT") == len(failed) and "no kernels for this graph" in log


def test_the_bench_settings_line_flags_fallbacks() -> None:
    row = {"precision": "fp32", "channels_last": True, "fused": True, "cuda_graphs": "auto", "stepper": "cuda_graph",
           "compile": "auto", "compile_scope": "cells"}
    assert "EAGER-FALLBACKS" not in settings_text({**row, "compile_fallbacks": []})
    assert "EAGER-FALLBACKS=2 " in settings_text({**row, "compile_fallbacks": ["a", "b"]})


def test_nas_bench_flags_a_row_timed_with_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``nas-bench`` (in-process) with a failing backend under ``auto``: the row records the failure, the
    settings line counts the failed functions and a line names the first; the time is then the eager one."""
    monkeypatch.setattr(te, "compile_enabled", lambda *a, **k: True)
    path = tmp_path / "bench.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = bench_main(["--same-process", "--device", "cpu", "--steps", "1", "--warmup", "1", "--workloads", "eval_step",
                   "--json", str(path), "runtime.num_threads=1", "train.init_channels=4", "train.layers=3",
                   "runtime.compile=auto", f"runtime.compile_backend={FAILING}", "runtime.compile_scope=model"])
    assert code == 0
    row = json.loads(path.read_text())["rows"][0]
    failed = row["compile_fallbacks"]  # the whole forward, then each function Dynamo tried inside it
    assert failed and all("no kernels for this graph" in f for f in failed)
    text = " ".join(out.getvalue().split())
    assert f"EAGER-FALLBACKS={len(failed)}" in text and "torch.compile failed on" in text
