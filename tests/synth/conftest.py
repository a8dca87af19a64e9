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
