"""Issue 18 item 9: the ``triplets:`` and ``cirr:`` views of one world split are one benchmark.

The triplets view used to search only references and targets, leaving out the group's hard negatives that
the CIRR export's gallery holds. The world's hard negatives are other one-edit variants of the reference,
as close to it as the target is, so with them in the gallery a hard negative usually ranks first.
"""

import pytest

from cirsynth.cir import evaluate_model
from cirsynth.cir.data import load_split
from cirsynth.cir.model import load_cir_model
from cirsynth.data.cirr import export_cirr
from cirsynth.world.assets import ASSETS_DIR
from cirsynth.world.benchmark import BenchmarkConfig, build_benchmark, write_benchmark


@pytest.mark.skipif(not (ASSETS_DIR / "clip").is_dir(), reason="bundled world CLIP missing")
def test_triplets_and_cirr_views_of_a_world_split_agree(tmp_path):
    bench = build_benchmark(BenchmarkConfig(num_train=4, num_val=16, num_test=4))
    ds = write_benchmark(bench, tmp_path / "world", size=32)
    export_cirr(ds, tmp_path / "cirr")
    as_triplets = load_split(f"triplets:{tmp_path / 'world'}:val")
    as_cirr = load_split(f"cirr:{tmp_path / 'cirr'}:val")
    assert len(as_triplets.gallery_keys) == len(as_cirr.gallery_keys) > 2 * len(as_triplets.queries)
    model = load_cir_model(ASSETS_DIR / "clip", device="cpu")
    a, b = evaluate_model(model, as_triplets), evaluate_model(model, as_cirr)
    for k in ("R@1", "R@5", "R@10", "R@50"):
        assert a[k] == pytest.approx(b[k]), (k, a, b)
