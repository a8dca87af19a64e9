"""benchmarks/device_check.py --tiny: the GPU check's own code paths on CPU (tiny SD + tiny SDXL)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device_check.py"


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_measures_every_planned_row(device_check, tmp_path, capsys):
    # one shape and one batch keep this to about a minute on CI's CPU; SDXL's paths have tests/editing/test_sdxl.py
    assert device_check.main(["--tiny", "--out", str(tmp_path), "--budget-s", "1e9", "--shapes", "tiny-sd",
                              "--batch-sizes", "1"]) == 0
    doc = json.loads((tmp_path / "device_check.json").read_text())
    assert doc == json.loads(capsys.readouterr().out)
    planned = device_check.plan(["tiny-sd"], [1])
    assert [(r["shape"], r["dtype"], r["method"], r["batch"]) for r in doc["rows"]] == planned
    covered = {(r["shape"], r["dtype"], r["method"], r["batch"]) for r in doc["rows"]}
    for shape in ("tiny-sd",):
        for method in device_check.METHODS:
            for dtype in ("fp32", "bf16"):
                assert (shape, dtype, method, 1) in covered, (shape, dtype, method)
        assert doc["unet_gflop_per_row"][shape] > 0
    for row in doc["rows"]:
        assert "skipped" not in row and "error" not in row, row
        assert row["s_per_triplet"] > 0 and row["unet_tflops"] > 0
        if row["dtype"] == "bf16":
            assert 0 < row["recon_psnr_bf16_vs_fp32"] <= 200  # compared with the fp32 row of its method
        if row["method"] == "null-text":
            assert row["null_text_inner_steps"] >= 2  # at least one Adam step per denoising step


def test_budget_skips_rows_with_their_estimate(device_check, tmp_path):
    device_check.main(["--tiny", "--out", str(tmp_path), "--budget-s", "0", "--shapes", "tiny-sd", "--batch-sizes", "1"])
    rows = json.loads((tmp_path / "device_check.json").read_text())["rows"]
    assert rows and all("budget" in r["skipped"] and r["estimated_s"] > 0 for r in rows)
