"""`cirsynth synthesize --editor <SDXL folder> --inversion ddpm`: the real command over a tiny random SDXL pipeline."""

import json

from cirsynth.cli import main
from cirsynth.data import TripletDataset
from tests.synth.conftest import _photo, write_captions


def test_synthesize_with_an_sdxl_folder_and_ddpm_inversion(tmp_path, capsys):
    from cirsynth.testing.tiny_sd import save_tiny_sdxl

    xl = save_tiny_sdxl(tmp_path / "xl")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        _photo(i).save(imgs / f"p{i}.png")
    caps = write_captions(imgs, ["p0.png", "p1.png"])
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(imgs), "--out", str(out), "--editor", str(xl), "--captions", str(caps),
            "--no-filter", "--inversion", "ddpm", "--num_steps", "2", "--progress", "false"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = list(TripletDataset(out).triplets())
    assert {t.provenance["input"] for t in rows} == {"p0.png", "p1.png"}, summary
    accepted = [t for t in rows if t.status == "accepted"]
    assert accepted, [(t.status, t.provenance) for t in rows]
