import numpy as np
import pytest

from cirsynth.metrics import (
    cirr_recall,
    cirr_submission,
    fashioniq_recall,
    psnr,
    recall_at_k,
    recall_at_k_naive,
    target_ranks,
    topk_exact,
)


def tie_data(seed, n_q=120, n_g=400, d=6):
    """Small integer features: many exactly tied scores."""
    rng = np.random.default_rng(seed)
    g = rng.integers(-2, 3, size=(n_g, d)).astype(np.float32)
    q = rng.integers(-2, 3, size=(n_q, d)).astype(np.float32)
    t = rng.integers(0, n_g, size=n_q)
    ex = rng.integers(0, n_g, size=n_q)
    ex[ex == t] = -1
    return q, g, t, ex


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk", [1, 17, 1024])
@pytest.mark.parametrize("screen", ["bfloat16", "float32"])
def test_recall_equals_naive_with_ties(seed, chunk, screen):
    q, g, t, ex = tie_data(seed)
    ks = (1, 2, 5, 10, 50)
    assert recall_at_k(q, g, t, ks, exclude=ex, chunk_size=chunk, screen_dtype=screen) == recall_at_k_naive(q, g, t, ks, exclude=ex)
    assert recall_at_k(q, g, t, ks, chunk_size=chunk, screen_dtype=screen) == recall_at_k_naive(q, g, t, ks)


def test_exact_ranks_with_large_gallery_and_screen():
    # gallery larger than the fast screen (256), continuous features with duplicated rows (ties)
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3000, 32)).astype(np.float32)
    g[1000:1100] = g[:100]  # exact duplicates: equal scores, the lower index must win
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    t = rng.integers(0, 3000, size=300)
    t[:50] = np.arange(1000, 1050)  # targets whose twin has a lower index
    q = g[t] + rng.uniform(0.0, 0.6, size=(300, 1)).astype(np.float32) * rng.standard_normal((300, 32)).astype(np.float32)
    ex = (t + 7) % 3000
    s = q.astype(np.float64) @ g.T.astype(np.float64)
    naive = []
    for i in range(len(q)):
        order = np.argsort(-s[i], kind="stable")
        order = order[order != ex[i]]
        naive.append(int(np.nonzero(order == t[i])[0][0]))
    assert (target_ranks(q, g, t, ex, chunk_size=64) == np.asarray(naive)).all()
    assert (target_ranks(q, g, t, ex, chunk_size=64, screen_dtype="float32") == np.asarray(naive)).all()
    capped = target_ranks(q, g, t, ex, max_rank=50)
    assert (capped == np.minimum(naive, 50)).all()
    assert (np.asarray(naive)[:50] >= 1).all()  # the twin at a lower index ranks first


def test_topk_exact_matches_stable_sort():
    q, g, t, ex = tie_data(7)
    top = topk_exact(q, g, 20, exclude=ex, chunk_size=9)
    s = q.astype(np.float64) @ g.T.astype(np.float64)
    for i in range(len(q)):
        order = np.argsort(-s[i], kind="stable")
        assert (top[i] == order[order != ex[i]][:20]).all()


def test_recall_rejects_bad_input():
    q, g, t, ex = tie_data(0, n_q=5, n_g=10)
    with pytest.raises(ValueError, match="excluded item is its target"):
        recall_at_k(q, g, t, exclude=t)
    with pytest.raises(ValueError, match=r"targets\[0\] = 10 is not a gallery index"):
        recall_at_k(q, g, np.full(5, 10))
    with pytest.raises(ValueError, match="feature sizes differ"):
        recall_at_k(q, g[:, :3], t)
    q2 = q.copy()
    q2[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(q2, g, t)
    with pytest.raises(ValueError, match="screen_dtype"):
        recall_at_k(q, g, t, screen_dtype="float16")


def test_cirr_protocol_by_hand():
    # gallery of 7 images on a line; scores are the first coordinate
    names = [f"img{i}" for i in range(7)]
    g = np.zeros((7, 2), np.float32)
    g[:, 0] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    q = np.array([[1.0, 0.0]], np.float32)
    # reference img0 (best score) is excluded; target img3 then ranks 2 (after img1, img2)
    members = [["img0", "img3", "img5", "img6", "img2", "img4"]]
    out = cirr_recall(q, g, names, ["img0"], ["img3"], members)
    assert out["R@1"] == 0.0 and out["R@5"] == 100.0
    # within the group minus reference: img2 (0.7) beats img3 (0.6): subset rank 1
    assert out["Rsubset@1"] == 0.0 and out["Rsubset@2"] == 100.0
    assert out["(R@5+Rsubset@1)/2"] == 50.0
    recall, subset = cirr_submission(q, g, names, [42], ["img0"], members)
    assert recall["version"] == "rc2" and recall["metric"] == "recall"
    assert recall["42"] == ["img1", "img2", "img3", "img4", "img5", "img6"]  # top-50 capped by gallery, no reference
    assert subset["metric"] == "recall_subset" and subset["42"] == ["img2", "img3", "img4"]
    with pytest.raises(ValueError, match="target 'nope' is not in the gallery"):
        cirr_recall(q, g, names, ["img0"], ["nope"], members)


def test_fashioniq_protocol_averages():
    rng = np.random.default_rng(1)
    per = {}
    for cat in ("dress", "shirt"):
        g = rng.standard_normal((80, 8)).astype(np.float32)
        t = rng.integers(0, 80, size=30)
        q = g[t] + rng.standard_normal((30, 8)).astype(np.float32)
        per[cat] = (q, g, t)
    out = fashioniq_recall(per)
    for cat, (q, g, t) in per.items():
        ref = recall_at_k_naive(q, g, t, (10, 50))
        assert out[f"{cat}/R@10"] == ref["R@10"] and out[f"{cat}/R@50"] == ref["R@50"]
    assert out["avg/R@10"] == pytest.approx((out["dress/R@10"] + out["shirt/R@10"]) / 2)
    assert out["avg"] == pytest.approx((out["avg/R@10"] + out["avg/R@50"]) / 2)


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == float("inf")
    b[0, 0] = 255
    mse = 3 / (4 * 4 * 3)
    assert psnr(a, b) == pytest.approx(10 * np.log10(1 / mse))
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    assert psnr(a, b, mask=mask) == float("inf")  # the changed pixel is outside the mask


def test_recall_is_the_exact_share_in_percent():
    """14 of 25 hits is 56.0, not 56.00000000000001 (mean() * 100)."""
    import numpy as np

    from cirsynth.metrics import recall_at_k

    g = np.eye(25, dtype=np.float32)
    targets = np.array([i if i < 14 else (i + 1) % 25 for i in range(25)])
    out = recall_at_k(g, g, targets, ks=[1])
    assert repr(out["R@1"]) == "56.0"
