"""runtime.depthwise / runtime.pointwise: the Triton conv kernels compute F.conv2d's function.

On CPU the kernels run under Triton's interpreter, in a fresh process (``tests/depthwise_worker.py``:
Triton picks interpreter or GPU compilation at import).  Tolerances: relative to the largest value,
fp32 kernels against an fp64 ``F.conv2d`` agree to ~2e-7 in practice; asserted 2e-6 for the
kernels, 1e-5 for a whole supernet's loss and gradients (native vs Triton, both fp32).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nas_cli.errors import ConfigError
from nas_cli.spaces import depthwise as dw
from nas_cli.spaces import triton_support as ts
from nas_cli.spaces.darts_eval import NetworkCIFAR
from nas_cli.spaces.genotypes import get_genotype
from tests.conftest import OpCount

ROOT = Path(__file__).resolve().parents[1]
needs_triton = pytest.mark.skipif(ts.triton is None, reason="Triton is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def run_worker(check: str, tmp_path: Path, device: str = "cpu", timeout: float = 600) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    dest = tmp_path / f"{check}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "depthwise_worker.py"), check, str(dest), device],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(dest.read_text())


def assert_kernels(r: dict[str, Any]) -> None:
    assert len(r["cases"]) == 16
    for name, errs in r["cases"].items():
        assert max(errs) < 2e-6, (name, errs)
    assert r["slices"] > 1 and r["sliced_weight_grad"] < 2e-6
    assert r["grads_computed_for_input_only"] == ["_grad_input"]
    assert r["grads_computed_when_asking_input"] == ["_grad_input"]
    assert r["grads_computed_when_asking_weight"] == ["_grad_weight"]
    assert r["grads_computed_when_asking_both"] == ["_grad_input", "_grad_weight"]
    assert r["grads_computed_by_backward"] == ["_grad_input", "_grad_weight"]
    assert r["supported"] == {"channels_last": False, "float64": False, "nonsquare_stride": False}
    assert r["fallback_error"] == 0.0
    routed = r["channels_last"]
    nchw = ["_grad_input", "_grad_weight"]  # the NCHW kernels' backward (their forward is not counted)
    expected = {"dilated 16x16": ("nhwc", ["nhwc_gather", "nhwc_gather", "nhwc_grad_weight"]),
                "plain 8x8": ("nhwc_wgrad", ["nhwc_grad_weight"]),  # cuDNN forward and input gradient
                "strided 16->8": ("cudnn", []), "plain 16x16": ("cudnn", []), "strided dilated 16->8": ("nchw", nchw)}
    assert {name: (case["route"], case["kernel_calls"]) for name, case in routed.items()} == expected
    assert r["forced"] == {"cudnn": ["cudnn", "cudnn"], "nchw": ["nchw", "nchw"],  # stride 1, stride 2
                           "nhwc": ["nhwc", "cudnn"], "nhwc_wgrad": ["nhwc_wgrad", "cudnn"]}
    for name, case in routed.items():
        assert case["out_channels_last"] and case["op_output_contiguous"] and case["error"] < 2e-6, (name, case)


def assert_pointwise(r: dict[str, Any]) -> None:
    assert len(r["cases"]) == 6
    for name, errs in r["cases"].items():
        assert max(errs) < 2e-6, (name, errs)
    assert r["slices"] > 1  # the 32x32 case split its weight gradient
    assert r["grads_computed_when_asking_input"] == ["_grad_input"]
    assert r["grads_computed_when_asking_weight"] == ["_grad_weight"]
    assert r["supported_33_channels"] is False


def assert_mixing(r: dict[str, Any]) -> None:
    assert len(r["cases"]) == 4
    for name, errs in r["cases"].items():
        assert max(errs) < 2e-6, (name, errs)
    assert len(r["pool"]) == 5
    for name, errs in r["pool"].items():
        assert max(errs) < 2e-6, (name, errs)
    assert r["pool_ops"] == [[1, 1, 0]] * 5  # the pool's own kernel per direction, nothing else
    assert len(r["source_inputs"]) == 5 * 7
    for name, (err, grad_err, skip_is_x, ops, r_layout) in r["source_inputs"].items():
        # ReLU / pool values and the summed input gradient against fp64 PyTorch ops; the skip row is x
        # itself; one kernel per direction and no separate ReLU, pool, gradient additions or layout
        # copies (also with relu(x) channels_last, whose gradient arrives channels_last)
        assert err < 2e-6 and grad_err < 2e-6 and skip_is_x and ops == [1, 1, 0], (name, r["source_inputs"][name])
        assert r_layout, name
    # NCHW-contiguous float32/16 only, and only while ENABLED
    assert r["source_inputs_supported"] == [True, False, False, False]
    assert len(r["operand_cases"]) == 3
    for name, errs in r["operand_cases"].items():
        assert max(errs) < 2e-6, (name, errs)
    assert len(r["bias_cases"]) == 3
    for name, errs in r["bias_cases"].items():
        # the output, then the gradients of m, the bias, each operand and acc
        assert len(errs) >= 4 and max(errs) < 2e-6, (name, errs)
    # ((gradient of each operand), coefficient gradient, bias gradient) computed: only what the pass asks for
    assert r["grads_when_asking_operand"] == [[True, False, False], False, False]
    assert r["grads_when_asking_coefficients"] == [[False, False, False], True, False]
    assert r["grads_when_asking_both"] == [[True, False, False], True, False]
    assert r["grads_when_asking_second operand"] == [[False, True, False], False, False]
    assert r["grads_when_asking_bias"] == [[False, False, False], False, True]
    assert r["supported_65_rows"] is False and r["native_when_unsupported"] == 0.0
    assert len(r["merge_cases"]) == 3 * 2
    for name, (same_value, same_grads, ops, layout, contiguous_grads, *other_layout) in r["merge_cases"].items():
        assert same_value and same_grads and ops == [0, 2] and layout, (name, r["merge_cases"][name])
        assert contiguous_grads and other_layout in ([], [True]), (name, r["merge_cases"][name])
    assert sum(len(case) == 6 for case in r["merge_cases"].values()) == 2  # a=6: both layouts of the gradient
    # conv_merge.UNMERGE_KERNEL off: the same gradients as strided views (what autograd then copies)
    assert r["unmerge_off"] == [True, [False, False]]
    assert r["merge_ops_when_disabled"] == 2  # conv_merge.ENABLED off: the PyTorch ops
    # the selected conv op's weight (conv_merge.select_3x3): one kernel, the PyTorch ops' bits, both layouts
    assert len(r["select_cases"]) == 3 * 2
    for name, case in r["select_cases"].items():
        assert case == [True, True, True, 1, True, True, True], (name, case)
    assert r["supported_four_operands"] is False


def assert_maxpool(r: dict[str, Any]) -> None:
    assert len(r["cases"]) == 6
    for name, (same_output, grad_err, same_receivers) in r["cases"].items():
        assert same_output and grad_err < 2e-6 and same_receivers, (name, r["cases"][name])
    assert r["supported_dilated"] is False
    assert r["kernel_calls"] == 6  # every case ran the kernels, not F.max_pool2d
    assert r["zero_fills"] == 0  # the indices output's gradient is not materialised
    assert r["native_when_disabled"] and r["kernel_calls_when_disabled"] == 0  # maxpool.ENABLED off


def assert_batchnorm(r: dict[str, Any]) -> None:
    assert len(r["cases"]) == 9
    for name, errs in r["cases"].items():
        assert max(errs) < 2e-6, (name, errs)
    # channels_last input: the NHWC kernels, an NCHW output and a channels_last input gradient
    assert r["nhwc_layouts"] == {k: [1, True, True] for k in ("6x5x7x7", "3x70x5x7", "4x20x33x2", "2x8x16x16",
                                                              "1x4x32x32")}
    # each sample's pixels in equal parts where they divide (4 SMs under the interpreter: about 32 programs)
    assert r["nhwc_pixel_splits"] == [1, 1, 1, 1, 1, 1, 2, 2, 8, 8], r["nhwc_pixel_splits"]
    assert r["supported_strided"] is False and r["supported_float64"] is False
    assert r["stat_update_ops"] == [1, 0]  # one multi-tensor lerp, no per-estimate ops


def assert_nb201(r: dict[str, Any]) -> None:
    for kind in ("mixture", "masked"):
        assert r[f"{kind}_triton_cells"] == r[f"{kind}_native_cells"] == 3
        assert r[f"{kind}_triton_pools"] == r[f"{kind}_native_pools"] > 0
        assert r[f"{kind}_loss"] < 1e-5 and r[f"{kind}_grads"] < 1e-5, (kind, r)
        # the destination-major mixing output makes every node contiguous, so each of the 3 cells' 3
        # sources takes the source-input kernels (ReLU, skip and pool), and no pool runs on its own
        assert r[f"{kind}_triton_source_inputs"] == [9, 9], (kind, r)
        # ... and each source's BN behind its merged conv runs the NHWC kernels (the conv in channels_last)
        assert r[f"{kind}_triton_nhwc_bns"] == 9 and r[f"{kind}_native_nhwc_bns"] == 0, (kind, r)
        assert r[f"{kind}_triton_contiguous_pool_inputs"] == [0, 0], (kind, r)
        assert r[f"{kind}_native_source_inputs"] == [0, 0]
        assert r[f"{kind}_native_contiguous_pool_inputs"][1] == 9  # the native path pools on its own
        assert r[f"{kind}_triton_bns"] == r[f"{kind}_native_bns"] > 0
        # each of the 3 cells' 3 sources concatenates its conv, skip and pool rows only for the matmuls,
        # and pads and concatenates its conv weights only without the merge kernel (the masked training
        # forward's selected conv weight: pads only)
        assert r[f"{kind}_native_forward_cats"] - r[f"{kind}_triton_forward_cats"] == 3 * 3 * (3 if kind == "mixture" else 2), (kind, r)
        # the masked training forward builds each source's selected conv weight with one kernel
        assert r[f"{kind}_triton_select_kernels"] == (9 if kind == "masked" else 0), (kind, r)
        assert r[f"{kind}_native_select_kernels"] == 0, (kind, r)
        # the BN kernels' statistics outputs take no gradient, and none is zero-filled for them (the
        # native path's fills are elsewhere; before, each Triton BN added three)
        assert r[f"{kind}_triton_backward_zero_fills"] == r[f"{kind}_native_backward_zero_fills"] <= 1, (kind, r)
        assert r[f"{kind}_running_stats"] < 1e-5 and r[f"{kind}_running_stats_moved"] > 0, (kind, r)
        kept_native, kept_triton = r[f"{kind}_running_stats_kept"]
        assert kept_native == kept_triton, (kind, r)  # the same statistics left alone by both
    assert r["masked_running_stats_kept"][0] > 0  # the unselected ops' BNs saw no batch
    for key in ("subset_skip_connect+nor_conv_3x3+nor_conv_1x1", "subset_skip_connect+avg_pool_3x3"):
        loss_err, grad_err, calls = r[key]
        # no pool (ReLU only) or no conv (pool only): still one source-input call per source, same results
        assert loss_err < 1e-5 and grad_err < 1e-5 and calls == 9, (key, r[key])


def assert_supernet(r: dict[str, Any], bn_triton: bool = True) -> None:
    assert r["supernet_triton_convs"] == r["supernet_native_convs"] > 0
    assert r["supernet_triton_pointwise"] == r["supernet_native_pointwise"] > 0
    assert r["supernet_triton_mixing"] == r["supernet_native_mixing"] > 0
    assert r["supernet_triton_max_pools"] > 0  # max_pool_3x3 edges and the bypass's 2x2 pools
    if bn_triton:  # runtime.batchnorm=triton in the Triton run
        assert r["supernet_triton_bns"] == r["supernet_native_bns"] > 0
    assert r["eval_triton_convs"] == r["eval_native_convs"] > 0
    assert r["eval_state_dict_unchanged"]
    for key in ("supernet_loss", "supernet_grads", "eval_loss", "eval_grads"):
        assert r[key] < 1e-5, (key, r[key])


@needs_triton
def test_kernels_match_conv2d_interpreted(tmp_path: Path) -> None:
    assert_kernels(run_worker("kernels", tmp_path))


def assert_nhwc(r: dict[str, Any]) -> None:
    # 16 geometries (2 too small for the unpadded dilated 5x5, span 9) + the 3x3 ones with native gather
    assert len(r["cases"]) == 14 + 8 and sum("native gather" in name for name in r["cases"]) == 8
    for name, (y, gx, gw, layout_ok) in r["cases"].items():
        assert max(y, gx, gw) < 2e-6 and layout_ok == 1.0, (name, y, gx, gw, layout_ok)
    assert r["supported"] == {"nchw": False, "stride2": False}
    for direct in ("True", "False"):  # both finishing forms of the weight gradient (3x8x8 rows: several slices)
        assert r["finish"][direct][0] < 2e-6 and r["finish"][direct][1:] == [1.0, [36, 1, 5, 5]], r["finish"]
    assert r["module_cudnn"]["calls"] == []
    assert r["module_nhwc"]["calls"] == ["_gather", "_gather", "_grad_weight"]
    assert r["module_nhwc_wgrad"]["calls"] == ["_grad_weight"]
    for key in ("module_cudnn", "module_nhwc", "module_nhwc_wgrad"):
        assert r[key]["error"] < 2e-6 and r[key]["channels_last"], (key, r[key])


def test_the_nhwc_weight_grad_is_finished_without_a_copy() -> None:
    """The per-slice, per-position sums become the (C, 1, k, k) gradient in two sums, the second written
    through the weight's transposed view (the profile showed two sums and a copy per weight kernel; the
    copy is gone); the form behind the switch gives the same values."""
    from nas_cli.spaces import depthwise_nhwc as nh

    part = torch.randn(7, 9, 5, 6, dtype=torch.float32)  # (slices, k*k taps, W, C)
    ref = part.double().sum((0, 2)).t().reshape(6, 1, 3, 3)
    default = nh.DIRECT_LAYOUT
    expected = {True: {"aten.sum.dim_IntList": 1, "aten.sum.IntList_out": 1},
                False: {"aten.sum.dim_IntList": 2, "aten.clone.default": 1}}
    for direct in (True, False):
        nh.DIRECT_LAYOUT = direct
        try:
            with OpCount() as ops:
                grad = nh._finish_weight_grad(part, 3, torch.float32)
        finally:
            nh.DIRECT_LAYOUT = default
        assert grad.shape == (6, 1, 3, 3) and grad.is_contiguous()
        assert torch.allclose(grad.double(), ref, rtol=0, atol=1e-5)
        ops.ops.pop("aten.empty.memory_format", None)  # the output's allocation launches no kernel
        assert ops.ops == expected[direct], (direct, ops.ops)
    assert nh._finish_weight_grad(part, 3, torch.bfloat16).dtype == torch.bfloat16


@needs_triton
def test_nhwc_kernels_match_conv2d_interpreted(tmp_path: Path) -> None:
    assert_nhwc(run_worker("nhwc", tmp_path))


@needs_triton
@needs_cuda
def test_nhwc_kernels_match_conv2d_cuda(tmp_path: Path) -> None:
    assert_nhwc(run_worker("nhwc", tmp_path, device="cuda"))


def assert_bf16(r: dict[str, Any], device: str) -> None:
    assert len(r["nchw"]) == 8 and len(r["nhwc"]) == 8
    # The kernels' bf16 output and input gradient: one bf16 ulp of the largest value (2**-7 = 7.8e-3).
    # What PyTorch's own conv computes (the strided forward, the forward and input gradient of the
    # native gather) rounds the weight to bf16 as well, as F.conv2d does under autocast: twice that.
    # The fp32 weight gradient of bf16 products: fp32 accuracy. Dtypes as F.conv2d under autocast
    # returns them (the weight's gradient in its own dtype).
    for name, (ey, egx, egw, dtypes) in (*r["nchw"].items(), *r["nhwc"].items()):
        native_y, native_gx = " s2" in name or "native" in name, "native" in name
        assert ey < (1.6e-2 if native_y else 8e-3) and egx < (1.6e-2 if native_gx else 8e-3), (name, ey, egx)
        assert egw < 2e-6 and dtypes == 1.0, (name, egw, dtypes)
    # the routes of an fp32 conv, then of a bf16 one (a bf16 input; on CUDA also fp32 under bf16
    # autocast): in bf16 cuDNN keeps every undilated conv (spaces/depthwise.py SMALL_PLANE)
    fp32_routes = {"dilated 16x16": "nhwc", "plain 8x8": "nhwc_wgrad", "strided 16->8": "cudnn",
                   "plain 16x16": "cudnn", "strided dilated 16->8": "nchw"}
    bf16_routes = {**fp32_routes, "plain 8x8": "cudnn"}
    per_dtype = 3 if device == "cuda" else 2
    assert r["routes"] == {n: [fp32_routes[n], *[bf16_routes[n]] * (per_dtype - 1)] for n in fp32_routes}
    if device == "cuda":
        assert len(r["module"]) == 10  # stride 1: four routes each; stride 2: cudnn and nchw
        for name, (ey, egx, egw, cl) in r["module"].items():
            # cuDNN's routes also round the weight to bf16 (autocast) and may return its gradient rounded
            assert ey < 1.6e-2 and egx < 1.6e-2 and egw < 8e-3 and cl == 1.0, (name, ey, egx, egw)


@needs_triton
def test_kernels_take_bf16_inputs_interpreted(tmp_path: Path) -> None:
    assert_bf16(run_worker("bf16", tmp_path), "cpu")


@needs_cuda
@needs_triton
def test_kernels_take_bf16_inputs_cuda(tmp_path: Path) -> None:
    assert_bf16(run_worker("bf16", tmp_path, device="cuda"), "cuda")


@needs_triton
def test_pointwise_kernels_match_conv2d_interpreted(tmp_path: Path) -> None:
    assert_pointwise(run_worker("pointwise", tmp_path))


def assert_dense1x1(r: dict[str, Any], tol: float = 2e-6) -> None:
    assert len(r["cases"]) == 4
    for name, case in r["cases"].items():
        assert max(case["errors"]) < tol and case["channels_last"] == [True, True], (name, case)
    assert max(case["slices"] for case in r["cases"].values()) > 1  # a weight gradient over several row slices
    assert r["grads_computed_when_asking_input"] == ["_grad_input"]
    assert r["grads_computed_when_asking_weight"] == ["_grad_weight"]
    assert r["supported"] == {"nchw": False, "float64": False}
    assert r["module_error"] < tol and r["module_kernel_calls"] == 1 and r["module_kernel_calls_after_nchw"] == 1


@needs_triton
def test_dense1x1_kernels_match_conv2d_interpreted(tmp_path: Path) -> None:
    assert_dense1x1(run_worker("dense1x1", tmp_path))


@needs_triton
@needs_cuda
def test_dense1x1_kernels_match_conv2d_cuda(tmp_path: Path) -> None:
    """On a GPU the products are TF32 where cuDNN may use it (as the convs they replace): ~1e-3."""
    assert_dense1x1(run_worker("dense1x1", tmp_path, device="cuda"), tol=5e-3)


@needs_triton
def test_mixing_and_pool_kernels_match_reference_interpreted(tmp_path: Path) -> None:
    assert_mixing(run_worker("mixing", tmp_path))


@needs_triton
def test_maxpool_kernels_match_max_pool2d_interpreted(tmp_path: Path) -> None:
    assert_maxpool(run_worker("maxpool", tmp_path))


@needs_triton
@needs_cuda
def test_maxpool_kernels_match_max_pool2d_cuda(tmp_path: Path) -> None:
    assert_maxpool(run_worker("maxpool", tmp_path, device="cuda"))


@needs_triton
def test_batchnorm_kernels_match_batch_norm_interpreted(tmp_path: Path) -> None:
    assert_batchnorm(run_worker("batchnorm", tmp_path))


@needs_triton
@needs_cuda
def test_batchnorm_kernels_match_batch_norm_cuda(tmp_path: Path) -> None:
    assert_batchnorm(run_worker("batchnorm", tmp_path, device="cuda"))


@needs_triton
def test_nb201_supernet_with_triton_kernels_matches_native_interpreted(tmp_path: Path) -> None:
    assert_nb201(run_worker("nb201", tmp_path))


@needs_triton
@needs_cuda
def test_mixing_and_pool_kernels_match_reference_cuda(tmp_path: Path) -> None:
    assert_mixing(run_worker("mixing", tmp_path, device="cuda"))


@needs_triton
@needs_cuda
def test_nb201_supernet_with_triton_kernels_matches_native_cuda(tmp_path: Path) -> None:
    assert_nb201(run_worker("nb201", tmp_path, device="cuda"))


@needs_triton
def test_supernet_and_eval_network_match_native_interpreted(tmp_path: Path) -> None:
    assert_supernet(run_worker("supernet", tmp_path), bn_triton=False)  # Triton BN: the nb201 check


@needs_triton
def test_search_config_selects_the_kernels(tmp_path: Path) -> None:
    r = run_worker("wiring", tmp_path)
    assert r["native_impls"] == ["native"] and r["triton_impls"] == ["triton"]
    assert r["native_pointwise_impls"] == ["native"] and r["triton_pointwise_impls"] == ["triton"]
    assert r["native_mixing_impls"] == ["native"] and r["triton_mixing_impls"] == ["triton"]


def assert_opcheck(r: dict[str, Any]) -> None:
    # 6 depthwise cases, 5 NHWC depthwise cases (forward and input gradient also with native gather),
    # 3 pointwise ops, the Triton 1x1 weight gradient, 9 weighted-sum cases (3 with rows in three operands,
    # 3 with a bias), the merged NB201 conv weight and its gradient's split, the selected conv weight and
    # its gradient (NCHW and channels_last each), 2 average-pool ops, 6
    # source-input cases (ReLU/skip/pool of an NB201 source, forward and backward, 2 with the ReLU
    # channels_last), 2 max-pool ops, 4 batch-norm ops (NCHW and channels_last input), 3 dense 1x1 NHWC ops
    assert len(r) == 49, sorted(r)
    for name, result in r.items():
        assert result == {"test_schema": "SUCCESS", "test_faketensor": "SUCCESS",
                          "test_aot_dispatch_dynamic": "SUCCESS"}, (name, result)


@needs_triton
def test_custom_ops_pass_opcheck_interpreted(tmp_path: Path) -> None:
    assert_opcheck(run_worker("opcheck", tmp_path))


@needs_triton
@needs_cuda
def test_custom_ops_pass_opcheck_cuda(tmp_path: Path) -> None:
    assert_opcheck(run_worker("opcheck", tmp_path, device="cuda"))


@needs_triton
@pytest.mark.slow
def test_search_steps_match_native_interpreted(tmp_path: Path) -> None:
    r = run_worker("search", tmp_path)
    assert r["native_moved"] > 1e-3  # the steps move the architecture ...
    assert r["arch"] < 1e-4 * r["native_moved"] / 1e-3 and r["arch"] < 1e-5  # ... the same way


@needs_triton
@needs_cuda
def test_kernels_match_conv2d_cuda(tmp_path: Path) -> None:
    torch.backends.cudnn.allow_tf32 = False
    assert_kernels(run_worker("kernels", tmp_path, device="cuda"))


@needs_triton
@needs_cuda
def test_pointwise_kernels_match_conv2d_cuda(tmp_path: Path) -> None:
    assert_pointwise(run_worker("pointwise", tmp_path, device="cuda"))


@needs_triton
@needs_cuda
def test_supernet_and_eval_network_match_native_cuda(tmp_path: Path) -> None:
    assert_supernet(run_worker("supernet", tmp_path, device="cuda"))


@needs_triton
@needs_cuda
def test_search_steps_match_native_cuda(tmp_path: Path) -> None:
    r = run_worker("search", tmp_path, device="cuda")
    assert r["triton_impls"] == ["triton"] and r["native_moved"] > 1e-3 and r["arch"] < 1e-4


def test_resolve() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert ts.resolve_kernel_impl("native", cuda, "runtime.depthwise") == "native"
    assert ts.resolve_kernel_impl("auto", cuda, "runtime.depthwise", replayed=False) == "native"  # eager: host-bound
    if not ts.interpreted():
        assert ts.resolve_kernel_impl("auto", cpu, "runtime.depthwise") == "native"
        with pytest.raises(ConfigError, match="runtime.depthwise=triton is not possible here"):
            ts.resolve_kernel_impl("triton", cpu, "runtime.depthwise")
    if ts.triton is not None:
        assert ts.resolve_kernel_impl("AUTO", cuda, "runtime.depthwise", replayed=True) == "triton"
        # bf16: native unless the caller timed the kernels in bf16 (the evaluation network did)
        assert ts.resolve_kernel_impl("auto", cuda, "runtime.depthwise", replayed=True, precision="bf16") == "native"
        assert ts.resolve_kernel_impl("auto", cuda, "runtime.depthwise", replayed=True, precision="bf16",
                                      measured=("fp32", "bf16")) == "triton"
        assert ts.resolve_kernel_impl("auto", cuda, "runtime.depthwise", replayed=False, precision="bf16",
                                      measured=("fp32", "bf16")) == "native"
        assert ts.resolve_kernel_impl("triton", cuda, "runtime.depthwise", replayed=False, precision="bf16") == "triton"
    with pytest.raises(ConfigError, match="runtime.depthwise must be one of"):
        ts.resolve_kernel_impl("cudnn", cpu, "runtime.depthwise")
    with pytest.raises(ConfigError, match="runtime.pointwise must be one of"):
        ts.resolve_kernel_impl("matmul", cpu, "runtime.pointwise")


def test_cli_rejects_unknown_value(tiny_cfg: Any) -> None:
    from nas_cli.config import validate

    with pytest.raises(ConfigError, match="runtime.depthwise must be auto, native or triton"):
        validate(tiny_cfg("runtime.depthwise=fast"))
    with pytest.raises(ConfigError, match="runtime.pointwise must be auto, native or triton"):
        validate(tiny_cfg("runtime.pointwise=fast"))
    with pytest.raises(ConfigError, match="runtime.mixing must be auto, native or triton"):
        validate(tiny_cfg("runtime.mixing=bmm"))


def test_mixing_impl_reaches_both_fused_cells_and_native_is_the_batched_matmul() -> None:
    """``use_mixing_impl`` sets every fused cell (DARTS and NB201); ``native`` is exactly the batched
    matmul the cells used before (bit-for-bit), and ``triton`` where the kernels cannot run (CPU
    without the interpreter) falls back to it."""
    from nas_cli.spaces import mixing as mx
    from nas_cli.spaces.base import RelaxationSpec
    from nas_cli.spaces.darts import DartsSpace
    from nas_cli.spaces.nb201 import NB201Space

    torch.manual_seed(0)
    darts = DartsSpace({"init_channels": 4, "layers": 2}).build_supernet(10, 3, RelaxationSpec(), fused=True)
    nb201 = NB201Space({"init_channels": 4, "cells_per_stage": 1}).build_supernet(10, 3, RelaxationSpec(), fused=True)
    assert mx.use_mixing_impl(darts, "native") == 2 and mx.use_mixing_impl(nb201, "native") == 3
    with pytest.raises(ConfigError, match="mixing implementation must be native or triton"):
        mx.use_mixing_impl(nb201, "bmm")
    m, o, acc = torch.randn(2, 5), torch.randn(3, 5, 40), torch.randn(3, 2, 40)
    ref = torch.baddbmm(acc, m.expand(3, -1, -1), o)
    torch.testing.assert_close(mx.mix_rows(m, o, acc, "native"), ref, rtol=0, atol=0)
    if not ts.interpreted():
        torch.testing.assert_close(mx.mix_rows(m, o, acc, "triton"), ref, rtol=0, atol=0)


def test_use_depthwise_impl_switches_only_depthwise_convs() -> None:
    torch.manual_seed(0)
    net = NetworkCIFAR(8, 10, 5, genotype=get_genotype("GAEA_PCDARTS_cifar10"))
    x = torch.randn(2, 3, 8, 8)
    net.eval()
    before, y0 = dict(net.state_dict()), net(x)[0]
    expected = sum(1 for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
    assert expected > 0
    assert dw.use_depthwise_impl(net, "native") == expected
    switched = [m for m in net.modules() if isinstance(m, dw.DepthwiseConv2d)]
    assert len(switched) == expected and all(m.groups == m.in_channels for m in switched)
    assert not any(isinstance(m, dw.DepthwiseConv2d) for m in net.stem.modules())  # dense stem conv
    assert list(net.state_dict()) == list(before)
    torch.testing.assert_close(net(x)[0], y0, rtol=0, atol=0)  # native: the very same kernels
    with pytest.raises(ConfigError):
        dw.use_depthwise_impl(net, "cudnn")
    from nas_cli.spaces.pointwise import use_pointwise_impl

    assert use_pointwise_impl(net, "triton") == 0  # the evaluation network's 1x1 convs are dense
    with pytest.raises(ConfigError):
        use_pointwise_impl(net, "matmul")
