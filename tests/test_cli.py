import json
import subprocess
import sys

import numpy as np

from cirsynth.cli import main
from tests.data.helpers import make_dataset


def test_python_dash_m_help():
    r = subprocess.run([sys.executable, "-m", "cirsynth", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "export" in r.stdout and "evaluate" in r.stdout


def test_export_then_evaluate_cirr_from_saved_features(tmp_path, capsys):
    make_dataset(tmp_path / "ds")
    assert main(["export", "--format", "cirr", str(tmp_path / "ds"), str(tmp_path / "cirr_dataset")]) == 0
    assert (tmp_path / "cirr_dataset" / "cirsynth.export.yaml").is_file()  # resolved config saved
    capsys.readouterr()
    caps = json.loads((tmp_path / "cirr_dataset/cirr/captions/cap.rc2.val.json").read_text())
    gallery = sorted(json.loads((tmp_path / "cirr_dataset/cirr/image_splits/split.rc2.val.json").read_text()))
    pos = {n: i for i, n in enumerate(gallery)}
    # an oracle model: each query's feature is its target's feature
    rng = np.random.default_rng(0)
    g = rng.standard_normal((len(gallery), 16)).astype(np.float32)
    q = np.stack([g[pos[e["target_hard"]]] for e in caps])
    feats = tmp_path / "val.npz"
    np.savez(feats, query_feats=q, gallery_feats=g, gallery_names=np.array(gallery), pairids=np.array([e["pairid"] for e in caps]))
    out = tmp_path / "eval"
    rc = main(["evaluate", "--features", str(feats), "--protocol", "cirr", "--dataset", str(tmp_path / "cirr_dataset"), "--split", "val", "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["R@1"] == 100.0 and metrics["Rsubset@1"] == 100.0
    assert (out / "cirsynth.evaluate.yaml").is_file()

    # test1: submission files with top-50 (capped by the gallery) per pair id
    caps1 = json.loads((tmp_path / "cirr_dataset/cirr/captions/cap.rc2.test1.json").read_text())
    gal1 = sorted(json.loads((tmp_path / "cirr_dataset/cirr/image_splits/split.rc2.test1.json").read_text()))
    g1 = rng.standard_normal((len(gal1), 16)).astype(np.float32)
    np.savez(tmp_path / "t.npz", query_feats=g1[: len(caps1)], gallery_feats=g1, gallery_names=np.array(gal1), pairids=np.array([e["pairid"] for e in caps1]))
    rc = main(["evaluate", "--features", str(tmp_path / "t.npz"), "--protocol", "cirr", "--dataset", str(tmp_path / "cirr_dataset"), "--split", "test1", "--out", str(tmp_path / "sub")])
    assert rc == 0
    sub = json.loads((tmp_path / "sub/recall_submission_test1.json").read_text())
    assert sub["version"] == "rc2" and len(sub) == 2 + len(caps1)
    assert all(len(v) == len(gal1) - 1 for k, v in sub.items() if k not in ("version", "metric"))


def test_evaluate_plain_and_errors(tmp_path, capsys):
    g = np.eye(5, dtype=np.float32)
    np.savez(tmp_path / "f.npz", query_feats=g[[1, 2]], gallery_feats=g, targets=np.array([1, 3]))
    assert main(["evaluate", "--features", str(tmp_path / "f.npz"), "--ks", "[1, 5]"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"] == {"R@1": 50.0, "R@5": 100.0}
    np.savez(tmp_path / "bad.npz", query_feats=g)
    assert main(["evaluate", "--features", str(tmp_path / "bad.npz")]) == 2
    assert "lacks array 'gallery_feats'" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    assert "dataset.json missing" in capsys.readouterr().err


def _groups(spec, path=()):
    """(command path, its sub-command spec) for the top level and every command group."""
    yield list(path), spec
    for name, sub in spec.items():
        if isinstance(sub, dict):
            yield from _groups(sub, (*path, name))


def test_every_sub_command_help_has_a_description(capsys):
    import re

    from cirsynth.cli import COMMANDS, DESCRIPTION, _resolve

    assert main(["--help"]) == 0
    assert " ".join(capsys.readouterr().out.split()).count(" ".join(DESCRIPTION.split()[:12])) == 1
    for path, spec in _groups(COMMANDS):
        assert main([*path, "--help"]) == 0
        listing = capsys.readouterr().out
        for name, sub in spec.items():
            if name == "_help":
                continue
            # the sub-command's line in its parent's listing carries a one-line help
            assert re.search(rf"^\s+{re.escape(name)}\s+\S", listing, re.M), (path, name, listing)
            if isinstance(sub, dict):
                assert sub.get("_help", "").endswith("."), (path, name)
            else:  # a command's description is its docstring's first line: one whole sentence
                first = _resolve(sub).__doc__.strip().splitlines()[0]
                assert first.endswith("."), (path, name, first)
                assert main([*path, name, "--help"]) == 0
                assert " ".join(first.split()) in " ".join(capsys.readouterr().out.split())


def test_help_shows_required_options_bare_flags_and_the_arrays_of_each_protocol(capsys):
    assert main(["synthesize", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for opt, nxt in (("images", "out"), ("out", "editor"), ("editor", "captioner")):
        entry = out.split(f"--{opt} {opt.upper()} ", 1)[1].split(f" --{nxt} {nxt.upper()}", 1)[0]
        assert entry.endswith("(required)") and "default: null" not in entry, entry
    assert "[--no_filter [{true,false}]]" in out and "the bare flag means true" in out
    assert main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    for array in ("query_feats", "gallery_feats", "targets", "gallery_names", "pairids", "C/query_index"):
        assert array in out
    assert main(["demo", "--inversion", "nul-text", "--n", "1"]) == 2  # checked choices, as in synthesize
    assert "nul-text" in capsys.readouterr().err


def test_known_harmless_library_warnings_are_dropped_and_others_kept():
    import logging

    from cirsynth.console import quiet_known_noise

    quiet_known_noise()
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("Expected types for text_encoder: (CLIPTextModel,), got BertModel.")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert seen == ["something else"]


def test_evaluate_split_defaults_and_errors(tmp_path, capsys):
    make_dataset(tmp_path / "ds", per_split={"train": 8})  # a synthesize run's export: train only
    assert main(["export", str(tmp_path / "ds"), str(tmp_path / "cirr_dataset")]) == 0
    caps = json.loads((tmp_path / "cirr_dataset/cirr/captions/cap.rc2.train.json").read_text())
    gallery = sorted(json.loads((tmp_path / "cirr_dataset/cirr/image_splits/split.rc2.train.json").read_text()))
    g = np.eye(len(gallery), dtype=np.float32)
    np.savez(tmp_path / "f.npz", query_feats=g[: len(caps)], gallery_feats=g, gallery_names=np.array(gallery),
             pairids=np.array([e["pairid"] for e in caps]))
    base = ["evaluate", "--features", str(tmp_path / "f.npz"), "--protocol", "cirr", "--dataset", str(tmp_path / "cirr_dataset")]
    capsys.readouterr()
    assert main(base) == 0  # no val in this export: its one split
    assert json.loads(capsys.readouterr().out)["split"] == "train"
    assert main(base + ["--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "no CIRR val split here" in err and "splits present: train" in err
    assert main(base + ["--split", "test1"]) == 2
    err = capsys.readouterr().err
    assert "no CIRR test1 split here" in err and "splits present: train" in err
    np.savez(tmp_path / "p.npz", query_feats=g[[1, 2]], gallery_feats=g, targets=np.array([1, 3]))
    assert main(["evaluate", "--features", str(tmp_path / "p.npz")]) == 0
    assert "split" not in json.loads(capsys.readouterr().out)  # the plain protocol has none
