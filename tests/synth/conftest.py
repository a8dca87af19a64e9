import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from cirsynth.testing.tiny_clip import make_tiny_clip
    from cirsynth.testing.tiny_sd import save_tiny_sd

    root = tmp_path_factory.mktemp("models")
    return {"sd": str(save_tiny_sd(root / "sd")), "clip": str(make_tiny_clip(root / "clip"))}


def _photo(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.BILINEAR)


def make_mixed_folder(root: Path) -> dict[str, str]:
    """Good and bad inputs; returns file name -> what should happen ("ok" or a reason fragment)."""
    root.mkdir(parents=True, exist_ok=True)
    expect = {}
    _photo(1).save(root / "rgb.png"); expect["rgb.png"] = "ok"
    _photo(2).convert("L").save(root / "gray.png"); expect["gray.png"] = "ok"
    _photo(3).convert("CMYK").save(root / "cmyk.jpg"); expect["cmyk.jpg"] = "ok"
    a16 = (np.asarray(_photo(4).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(a16).save(root / "deep16.png"); expect["deep16.png"] = "ok"
    _photo(5).convert("P", palette=Image.ADAPTIVE).save(root / "palette.png"); expect["palette.png"] = "ok"
    sub = root / "nested"
    sub.mkdir()
    rgba = _photo(6).convert("RGBA"); rgba.putalpha(128); rgba.save(sub / "alpha.png"); expect["nested/alpha.png"] = "ok"
    buf = io.BytesIO(); _photo(7).save(buf, format="JPEG"); (root / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    expect["truncated.jpg"] = "load: corrupt or truncated"
    (root / "notimage.png").write_text("hello"); expect["notimage.png"] = "load: not a readable image"
    _photo(8, size=(4, 4)).save(root / "tiny.png"); expect["tiny.png"] = "load: image too small"
    _photo(9).save(root / "nocaption.png"); expect["nocaption.png"] = "caption: no caption"
    (root / "readme.txt").write_text("not an image extension: ignored by discovery")
    return expect


def write_captions(root: Path, names) -> Path:
    import csv

    p = root.parent / "captions.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for n in names:
            w.writerow([n, "a red car on a street" if "gray" not in n else "a photo of nothing in particular"])
    return p


def resume_argv(tmp_path: Path, n: int, editor: str, seed: int = 100) -> tuple[list[str], Path]:
    """``n`` captioned photos and the fast one-image-per-batch ``synthesize`` arguments (without the program) that
    the kill-and-resume tests run on them; returns (arguments, output folder)."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(n):
        _photo(seed + i).save(imgs / f"img{i:02d}.png")
    caps = write_captions(imgs, [f"img{i:02d}.png" for i in range(n)])
    out = tmp_path / "out"
    return ["synthesize", "--images", str(imgs), "--out", str(out), "--editor", editor, "--captions", str(caps),
            "--no-filter", "--batch_size", "1", "--inversion", "negative-prompt", "--num_steps", "3", "--progress", "false"], out


def kill_mid_run_and_resume(argv: list[str], out: Path, n: int) -> list:
    """Start the command ``argv``, SIGKILL it once its first shard is written, rerun it to the end. Checks that the
    kill left some but not all of the ``n`` rows, that the rerun lost none and repeated none, and that no temp file
    is left; returns the final rows."""
    import os
    import signal
    import subprocess
    import time

    from cirsynth.data import TripletDataset

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "dataset.json").exists() and TripletDataset(out).shard_paths():
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = TripletDataset(out).ids()
    assert 0 < len(partial) < n
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(TripletDataset(out).triplets())  # raises on any duplicated id
    ids = {t.id for t in rows}
    assert len(rows) == len(ids) == n and partial <= ids
    assert not list(out.rglob("*.tmp"))
    return rows
