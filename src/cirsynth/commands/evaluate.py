from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional


def evaluate(
    features: Optional[Path] = None,
    protocol: Literal["plain", "cirr", "fashioniq"] = "plain",
    dataset: Optional[Path] = None,
    split: Optional[str] = None,
    categories: list[str] = ["dress", "shirt", "toptee"],
    ks: list[int] = [1, 5, 10, 50],
    out: Optional[Path] = None,
    model: Optional[str] = None,
    cache_dir: Optional[Path] = None,
    device: Optional[str] = None,
) -> int:
    """Compute retrieval metrics from saved features (an .npz file) or a CIR model, following a benchmark protocol.

    With --model CKPT (a train-cir model or checkpoint folder of any kind, CLIP + Combiner, CLIP + sum or
    BLIP, read by the kind saved in its cir_model.json; or a CLIP id/folder for zero-shot sum fusion),
    --dataset is a dataset spec: triplets:<root>[:<split>], cirr:<root>:<split>, or
    fashioniq:<root>:<category>:<split> (repeat categories with commas: fashioniq:<root>:dress,shirt:val).

    Args:
        features: .npz file of features; the arrays each protocol needs: plain: query_feats (Q, D), gallery_feats
            (G, D), targets (Q,) gallery indices, optional exclude (Q,). cirr: query_feats (Q, D), gallery_feats
            (G, D), gallery_names (G,), pairids (Q,); the annotations (reference, target, img_set members) come from
            --dataset (a cirr_dataset folder) and --split; for test1 the two test-server submission files are
            written to --out instead of metrics. fashioniq: per category C: C/query_feats, C/gallery_feats,
            C/gallery_names, C/query_index (position of each query in cap.C.SPLIT.json); annotations from --dataset.
        protocol: plain | cirr | fashioniq.
        dataset: benchmark root for cirr/fashioniq annotations.
        split: benchmark split (cirr: train|val|test1, default val if the export has it, else its one split;
            fashioniq: train|val|test, default val); the plain protocol has none.
        categories: FashionIQ categories to evaluate.
        ks: cut-offs for the plain protocol.
        out: folder for metrics.json (and CIRR submission files) plus the resolved config.
        model: CIR model checkpoint folder (any kind) or CLIP id/folder; evaluates it on --dataset (a spec).
        cache_dir: feature cache folder for --model.
        device: device for --model (default: CUDA when available).
    """
    import numpy as np

    from cirsynth.config import atomic_write_json, save_resolved_config
    from cirsynth.metrics import cirr_recall, cirr_submission, fashioniq_recall, recall_at_k

    if model is not None:
        return _evaluate_model(model, dataset, out, cache_dir, device)
    if features is None:
        raise SystemExit("evaluate: pass --features (an .npz of saved features) or --model CKPT --dataset SPEC")
    if protocol != "plain" and dataset is None:
        raise SystemExit(f"evaluate: --dataset is required for the {protocol} protocol")
    with np.load(features, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}

    def need(key: str) -> np.ndarray:
        if key not in f:
            raise SystemExit(f"evaluate: {features} lacks array {key!r} (has {sorted(f)})")
        return f[key]

    if protocol == "plain" and split is not None:
        raise SystemExit("evaluate: the plain protocol has no --split (its features file is the whole evaluation)")
    if protocol == "cirr" and split is None:
        from cirsynth.data import cirr_splits

        present = cirr_splits(dataset)
        if "val" not in present and len(present) != 1:
            raise SystemExit(f"evaluate: pass --split; {dataset} holds CIRR splits {', '.join(present) or 'none'}")
        split = "val" if "val" in present else present[0]
    if protocol == "fashioniq" and split is None:
        split = "val"
    result: dict = {"protocol": protocol} | ({"split": split} if split is not None else {})
    if protocol == "plain":
        exclude = f.get("exclude")
        result["metrics"] = recall_at_k(need("query_feats"), need("gallery_feats"), need("targets"), ks, exclude=exclude)
    elif protocol == "cirr":
        from cirsynth.data import read_cirr

        ann = read_cirr(dataset, split)
        by_id = {q.pairid: q for q in ann.queries}
        pairids = [int(p) for p in need("pairids")]
        missing = [p for p in pairids if p not in by_id]
        if missing:
            raise SystemExit(f"evaluate: pairids {missing[:5]} are not in the CIRR {split} annotations")
        qs = [by_id[p] for p in pairids]
        names = [str(n) for n in need("gallery_names")]
        members = [q.members for q in qs]
        refs = [q.reference for q in qs]
        if split == "test1":
            if out is None:
                raise SystemExit("evaluate: CIRR test1 has no targets; pass --out to write the submission files")
            recall, subset = cirr_submission(need("query_feats"), need("gallery_feats"), names, pairids, refs, members)
            atomic_write_json(out / "recall_submission_test1.json", recall)
            atomic_write_json(out / "recall_subset_submission_test1.json", subset)
            result["submission"] = [str(out / "recall_submission_test1.json"), str(out / "recall_subset_submission_test1.json")]
        else:
            result["metrics"] = cirr_recall(need("query_feats"), need("gallery_feats"), names, refs, [q.target for q in qs], members)
    else:
        from cirsynth.data import read_fashioniq

        per_cat = {}
        for cat in categories:
            ann = read_fashioniq(dataset, cat, split)
            names = [str(n) for n in need(f"{cat}/gallery_names")]
            pos = {n: i for i, n in enumerate(names)}
            qidx = need(f"{cat}/query_index")
            targets = []
            for i in qidx:
                if not 0 <= int(i) < len(ann.queries):
                    raise SystemExit(f"evaluate: {cat}/query_index {int(i)} is outside cap.{cat}.{split}.json")
                tgt = ann.queries[int(i)].target
                if tgt not in pos:
                    raise SystemExit(f"evaluate: target {tgt!r} of {cat} query {int(i)} is not in {cat}/gallery_names")
                targets.append(pos[tgt])
            per_cat[cat] = (need(f"{cat}/query_feats"), need(f"{cat}/gallery_feats"), np.asarray(targets))
        result["metrics"] = fashioniq_recall(per_cat)

    print(json.dumps(result, indent=2))
    if out is not None:
        atomic_write_json(out / "metrics.json", result, indent=2)
        save_resolved_config(out, "evaluate", dict(features=str(features), protocol=protocol, dataset=str(dataset),
                                                   split=split, categories=categories, ks=ks, out=str(out)))
    return 0


def _evaluate_model(model: str, dataset, out, cache_dir, device) -> int:
    from cirsynth.cir import evaluate_model
    from cirsynth.cir.data import load_split
    from cirsynth.config import atomic_write_json, save_resolved_config

    if dataset is None:
        raise SystemExit("evaluate: --model needs --dataset SPEC (triplets:<root>[:<split>] | cirr:<root>:<split> | fashioniq:<root>:<cats>:<split>)")
    spec = str(dataset)
    if spec.startswith("fashioniq:"):
        root, cats, split = spec[len("fashioniq:"):].rsplit(":", 2)
        splits = [load_split(f"fashioniq:{root}:{c}:{split}") for c in cats.split(",")]
    else:
        splits = [load_split(spec)]
    metrics = evaluate_model(model, splits, cache_dir=cache_dir, out_dir=out, device=device)
    result = {"model": model, "dataset": spec, "metrics": metrics}
    print(json.dumps(result, indent=2))
    if out is not None:
        atomic_write_json(out / "metrics.json", result, indent=2)
        save_resolved_config(out, "evaluate", dict(model=model, dataset=spec, cache_dir=str(cache_dir), device=device, out=str(out)))
    return 0
