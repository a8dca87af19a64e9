"""Issue 19: a wrong model, adapter or vocabulary, and Ctrl-C, each end in one clear line (no traceback without
--debug), before any batch is processed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cirsynth.cli import main
from cirsynth.data import TripletDataset
from tests.synth.conftest import _photo

FAST = ["--inversion", "negative-prompt", "--num_steps", "3", "--progress", "false", "--no-filter"]
MADE_UP = "cirsynth-test-nobody/no-such-model-7f3a9"  # never downloaded: HF_HUB_OFFLINE is set


def _inputs(root, n):
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        _photo(500 + i).save(root / f"im{i:02d}.png")
        rows.append({"image": f"im{i:02d}.png", "caption": "a red car on a street"})
    p = root / "list.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _one_error_line(err: str) -> str:
    """The single ``cirsynth:`` line of stderr; fails on a traceback or a second cirsynth line."""
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.startswith("cirsynth:")]
    assert len(lines) == 1, err
    return lines[0]


def _refused(tmp_path, capsys, extra, editor):
    images = _inputs(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    rc = main(["synthesize", "--images", str(images), "--out", str(out), "--editor", editor, *FAST, *extra])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("cirsynth: error: ")
    assert not out.exists()  # refused before any batch (the output folder is made just before the first one)
    return line


def test_hub_id_offline_is_one_line_saying_what_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = _refused(tmp_path, capsys, [], MADE_UP)
    assert f"--editor {MADE_UP}" in line and "HF_HUB_OFFLINE" in line
    assert "--editor DIR" in line and "--editor world" in line


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images = _inputs(tmp_path / "imgs", 1)
    rc = main(["synthesize", "--images", str(images), "--out", str(tmp_path / "out"), "--editor", MADE_UP, *FAST,
               "--debug"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("cirsynth: error: --editor")


def test_missing_adapter_folder_is_named(tmp_path, capsys, tiny_models):
    missing = tmp_path / "runs" / "lora"
    line = _refused(tmp_path, capsys, ["--perturber", "llm", "--perturber_model", "smollm2", "--adapter", str(missing)],
                    tiny_models["sd"])
    assert f"--adapter {missing}: no such folder" in line and "train-perturber" in line


def test_adapter_folder_without_adapter_config(tmp_path, capsys, tiny_models):
    empty = tmp_path / "lora"
    empty.mkdir()
    line = _refused(tmp_path, capsys, ["--perturber", "llm", "--perturber_model", "smollm2", "--adapter", str(empty)],
                    tiny_models["sd"])
    assert "no adapter_config.json" in line


def test_misspelled_vocabulary_names_the_world_keyword(tmp_path, capsys, tiny_models):
    line = _refused(tmp_path, capsys, ["--vocabulary", "wrld"], tiny_models["sd"])
    assert "--vocabulary wrld: no such file" in line and "did you mean --vocabulary world?" in line


def test_perturb_checks_its_adapter_and_vocabulary_the_same_way(tmp_path, capsys):
    src = tmp_path / "caps.txt"
    src.write_text("a red car on a street\n")
    assert main(["perturb", str(src), str(tmp_path / "e.jsonl"), "--vocab", "wrld"]) == 2  # the old name still works
    assert "did you mean --vocabulary world?" in _one_error_line(capsys.readouterr().err)
    assert main(["perturb", str(src), str(tmp_path / "e.jsonl"), "--perturber", "llm", "--adapter",
                 str(tmp_path / "nope")]) == 2
    assert "--adapter" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "e.jsonl").exists()


def test_changed_settings_refusal_lists_the_settings(tmp_path, capsys, tiny_models):
    images = _inputs(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(images), "--out", str(out), "--editor", tiny_models["sd"], *FAST]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv + ["--seed", "3", "--min_clip_i2i", "0.5"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "seed: 0 -> 3" in line and "filters.min_clip_i2i: 0.7 -> 0.5" in line and "hash" not in line


def test_ctrl_c_says_the_run_stopped_and_rerunning_resumes(tmp_path, tiny_models):
    n = 8
    images = _inputs(tmp_path / "imgs", n)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "cirsynth", "synthesize", "--images", str(images), "--out", str(out),
            "--editor", tiny_models["sd"], "--batch_size", "1", *FAST]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # SIGINT back to its default in the child: a test run started in the background (nohup, `cmd &`) has SIGINT
    # ignored, the child would inherit that, and Python installs no KeyboardInterrupt handler for an ignored SIGINT
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list((out / "manifest").glob("part-*.parquet")):
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before Ctrl-C: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130
    line = _one_error_line(err)
    assert line.startswith("cirsynth: stopped by Ctrl-C; rerun the same command to resume")
    done = TripletDataset(out).ids()
    assert 0 < len(done) < n
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["skipped_already_done"] == len(done)
    this_run = sum(summary[k] for k in ("accepted", "rejected", "failed"))
    assert summary["whole_dataset"]["rows"] == len(TripletDataset(out).ids()) == this_run + len(done) >= n


@pytest.mark.parametrize("kind,marker", [("pipeline", "model_index.json"), ("clip", "config.json")])
def test_model_ref_check_of_folders(tmp_path, kind, marker):
    from cirsynth.models.refs import ModelRefError, check_model_ref

    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(ModelRefError, match=f"no {marker}"):
        check_model_ref("--x", d, kind)
    (d / marker).write_text("{}")
    assert check_model_ref("--x", d, kind) == "folder"
    with pytest.raises(ModelRefError, match="is a file"):
        check_model_ref("--x", d / marker, kind)
