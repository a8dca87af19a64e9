"""The synthesis pipeline: images in, a filtered TripletDataset out, resumable.

Stages, each batch-in / batch-out: 1. load  2. caption  3. perturb  4. invert  5. edit  6. filter
7. write. The runner takes images in batches through every stage and writes each batch's rows as
one manifest shard, so a crash loses at most the batch in flight and a rerun resumes after the
last complete shard. Every input ends as rows: accepted / rejected (with the failing filter rule)
/ failed (with the stage and reason).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cirsynth.data import CaptionEdit, Triplet, TripletDataset, config_hash
from cirsynth.synth.candidates import (CandidateConfig, candidate_noise_seed, draw_settings,
                                       edit_candidates, fixed_settings, hard_negative_captions)
from cirsynth.data.errors import DataError
from cirsynth.synth.filters import EditFilter, FilterConfig, pick_best
from cirsynth.synth.inputs import CaptionTable, InputImage, LoadPolicy, discover, load_rgb, read_captions_table


@dataclass
class SynthConfig:
    images: str  # folder (recursive) or .parquet/.jsonl list of images
    out: str  # TripletDataset root
    editor: str  # Stable Diffusion pipeline id or folder
    captioner: Optional[str] = None  # HF image-to-text id or folder (e.g. Salesforce/blip2-opt-2.7b)
    captions: Optional[str] = None  # file of captions (CSV/JSONL/Parquet: image -> caption) instead of a captioner
    captioner_prompt: Optional[str] = None  # prompt prefix for the captioner, e.g. "a photo of"
    captioner_max_new_tokens: Optional[int] = None  # caption length cap; None: the captioner's own (else 30)
    perturber: str = "lexical"  # lexical | llm
    perturber_model: Optional[str] = None  # causal LM id or folder for --perturber llm
    adapter: Optional[str] = None  # PEFT LoRA adapter folder for the LLM perturber
    vocabulary: Optional[str] = None  # perturber word lists: "world", a JSON file, or None (built-in + WordNet)
    edit_types: Optional[list[str]] = None  # restrict edit types (default: all)
    edits_per_image: int = 1  # counterfactual captions per image
    inversion: str = "null-text"  # null-text | negative-prompt | direct | ddim | ddpm
    num_steps: int = 50  # DDIM steps
    guidance_scale: float = 7.5  # classifier-free guidance scale
    cross_replace_steps: float = 0.8  # P2P: fraction of steps with source cross-attention
    self_replace_steps: list[float] = field(default_factory=lambda: [0.6])  # several: LANCE-style sweep, best kept
    local_blend: bool = True  # P2P LocalBlend on the changed words
    paste: str = "none"  # outside the LocalBlend mask, pixels of: none (the edit's) | source (the reconstruction) |
    # reference (the input image: what the edit leaves alone keeps no autoencoder loss); EditorConfig.paste
    kept_background: float = 0.0  # EditorConfig.kept_background: an edit with kept words (a background edit) pastes
    # its kept cells without the old background's colours (an RGB distance; 0: the whole cells)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)  # oversampling: N settings drawn per edit
    clip: Optional[str] = None  # CLIP id or folder for filtering
    no_filter: bool = False  # accept every edit (scores still recorded where computable)
    filters: FilterConfig = field(default_factory=FilterConfig)  # thresholds
    resolution: Optional[int] = None  # square working size in pixels (default: the model's native size)
    max_pixels: int = LoadPolicy.max_pixels  # decode limit per input image; larger ones fail (JPEGs decode reduced)
    split: str = "train"  # split recorded on every triplet
    seed: int = 0  # perturbation seed; with ddpm also the inversion noise (candidate_noise_seed)
    # runtime only (not part of the resume check):
    batch_size: int = 4  # images per batch (one manifest shard per batch)
    device: Optional[str] = None  # None: CUDA when available
    dtype: Optional[str] = None  # e.g. bfloat16 for the UNet on a GPU
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        from cirsynth.editing.editor import EditorConfig

        EditorConfig(paste=self.paste, kept_background=self.kept_background)  # its own checks, at configuration time


RUNTIME_FIELDS = {"batch_size", "device", "progress", "out", "images"}


def run_hash(cfg: SynthConfig) -> str:
    """Hash of every setting that changes outputs (not batch size, device or progress display)."""
    d = dataclasses.asdict(cfg)
    return config_hash({k: v for k, v in d.items() if k not in RUNTIME_FIELDS})


@dataclass
class Summary:
    inputs: int = 0
    skipped_done: int = 0  # inputs already complete in a previous run
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    rejected_by_rule: Counter = field(default_factory=Counter)
    failed_by_reason: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)  # input problems that are not an input's row (counted)
    warning_examples: list = field(default_factory=list)  # the first few, in full
    seconds: float = 0.0
    dataset: dict = field(default_factory=dict)  # rows of the whole output by status, earlier runs' rows included
    stages: "StageTimes" = field(default_factory=lambda: StageTimes())  # busy time per stage
    engine: str = "local"

    def warn(self, kind: str, detail: str) -> None:
        self.warnings[kind] += 1
        if len(self.warning_examples) < 10:
            self.warning_examples.append(detail)

    def as_dict(self) -> dict[str, Any]:
        n = self.accepted + self.rejected + self.failed
        return {
            "inputs": self.inputs,
            "skipped_already_done": self.skipped_done,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "whole_dataset": dict(self.dataset),  # the counts above are this run's; a resumed run adds to these
            "rejected_by_rule": dict(self.rejected_by_rule),
            "failed_by_reason": dict(self.failed_by_reason),
            "warnings": dict(self.warnings),
            "warning_examples": list(self.warning_examples),
            "seconds": round(self.seconds, 2),
            "triplets_per_second": round(n / self.seconds, 4) if self.seconds else None,
            "accepted_per_second": round(self.accepted / self.seconds, 4) if self.seconds else None,
            "engine": self.engine,
            "stages": self.stages.as_dict(),
        }


class ConfigChanged(RuntimeError):
    pass


class ClusterError(RuntimeError):
    """``--engine ray`` cannot run as asked: Ray missing, or settings the cluster cannot hold."""


Row = tuple  # (Triplet, (reference image or None, target image or None[, LocalBlend mask])): one manifest row


@dataclass
class Perturbed:
    """A batch after stages 1-3: the rows already final (failed inputs, captions, perturbations) and the
    (input, image, caption, edits) left to invert and edit."""

    rows: list
    ok: list


@dataclass
class Edited:
    """A batch after stages 4-5: final rows so far, the (input, reference, k, edit) pairs, and per pair its
    edited candidates or its failed row."""

    rows: list
    pairs: list
    results: list


@dataclass
class StageTimes:
    """Busy seconds and items (images for caption+perturb, edits after) per stage, summed over batches and
    workers; per-stage throughput is items / seconds (one worker's rate)."""

    seconds: Counter = field(default_factory=Counter)
    items: Counter = field(default_factory=Counter)

    def add(self, stage: str, seconds: float, items: int) -> None:
        self.seconds[stage] += seconds
        self.items[stage] += items

    def merge(self, other: "StageTimes") -> None:
        self.seconds.update(other.seconds)
        self.items.update(other.items)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {s: {"busy_seconds": round(self.seconds[s], 3), "items": self.items[s],
                    "items_per_busy_second": round(self.items[s] / self.seconds[s], 4) if self.seconds[s] else None}
                for s in self.seconds}


def add_row(writer, t: Triplet, images: tuple) -> None:
    """Write one row with its images (reference, target, optional mask) through a ``TripletWriter``."""
    writer.add(t, reference_image=images[0], target_image=images[1], mask=images[2] if len(images) > 2 else None)


def resumable_output(cfg: SynthConfig, force_new: bool = False) -> TripletDataset | None:
    """The earlier output of these settings to resume, or None when a new output is to be made.

    An output with no shard holds no finished work: it is not a run to protect and is simply replaced.

    Raises:
        ConfigChanged: the output holds shards written with other settings and ``force_new`` is not set.
    """
    out = Path(cfg.out)
    if not (out / "dataset.json").exists():
        return None
    ds = TripletDataset(out)
    old, h = ds.meta.get("run_config_hash"), run_hash(cfg)
    if old == h:
        return ds
    if ds.shard_paths() and not force_new:
        from cirsynth.config import changed_settings

        now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_FIELDS}
        changed = changed_settings(ds.meta.get("run_config") or {}, now, ignore=RUNTIME_FIELDS)
        raise ConfigChanged(
            f"{out} was written with different settings ({'; '.join(changed) or f'hash {old}, now {h}'}); rerun "
            f"with the same settings to resume, or pass --force_new true to move the old output aside and start again"
        )
    return None


def open_output(cfg: SynthConfig, force_new: bool = False) -> TripletDataset:
    """Create the output dataset, or reopen it for resume after checking the settings match."""
    ds = resumable_output(cfg, force_new)
    if ds is not None:
        return ds
    out = Path(cfg.out)
    if (out / "dataset.json").exists():
        if TripletDataset(out).shard_paths():  # force_new: keep the old run beside the new one
            backup = out.with_name(f"{out.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.move(str(out), str(backup))
        else:  # nothing was written there: start afresh in place
            (out / "dataset.json").unlink()
    h = run_hash(cfg)
    return TripletDataset.create(out, meta={"run_config_hash": h, "run_config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str))})


class Synthesizer:
    """Holds the loaded models; ``run`` processes the inputs. Models load once, lazily."""

    def __init__(self, cfg: SynthConfig):
        from cirsynth.synth.refs import check_references

        check_references(cfg)  # every model id / folder, the vocabulary and the captions file, before anything loads
        self.cfg = cfg
        self.captions = read_captions_table(cfg.captions) if cfg.captions else CaptionTable({}, {}, [])
        self.load_policy = LoadPolicy(max_pixels=cfg.max_pixels)
        self._captioner = None
        self._perturber = None
        self._editor = None
        self._filter = None

    # -- models ---------------------------------------------------------------------------------
    def load_models(self) -> None:
        """Load every model the run needs now, so a bad id or folder fails before any output exists."""
        if self.cfg.captioner:
            self.captioner()
        self.perturber()
        self.editor()
        self.filter()

    def captioner(self):
        if self._captioner is None:
            from cirsynth.captions.captioner import Captioner, CaptionerConfig

            cc = CaptionerConfig(prompt=self.cfg.captioner_prompt, max_new_tokens=self.cfg.captioner_max_new_tokens)
            self._captioner = Captioner.from_pretrained(self.cfg.captioner, cc, device=self.cfg.device, dtype=self.cfg.dtype)
        return self._captioner

    def perturber(self):
        if self._perturber is None:
            from cirsynth.synth.refs import vocabulary_ref

            voc = vocabulary_ref(self.cfg.vocabulary)  # "world": the mini world's closed lists, no WordNet
            if self.cfg.perturber == "lexical":
                from cirsynth.captions import LexicalConfig, LexicalPerturber

                self._perturber = LexicalPerturber(LexicalConfig(vocab=voc.vocab) if voc.vocab else None, wordnet=voc.wordnet)
            elif self.cfg.perturber == "llm":
                from cirsynth.captions.llm import LLMConfig, LLMPerturber

                if not self.cfg.perturber_model and not self.cfg.adapter:
                    raise ValueError("--perturber llm needs --perturber_model ID_OR_PATH (or an --adapter that records its base)")
                llm_cfg = LLMConfig()
                if voc.vocab is not None:  # the type checks' keywords; world captions run long
                    llm_cfg = LLMConfig(vocab=voc.vocab, **({"max_new_tokens": 96} if voc.world else {}))
                self._perturber = LLMPerturber.from_pretrained(self.cfg.perturber_model, adapter=self.cfg.adapter,
                                                               config=llm_cfg, device=self.cfg.device)
            else:
                raise ValueError(f"unknown perturber {self.cfg.perturber!r} (lexical | llm)")
        return self._perturber

    def editor(self):
        if self._editor is None:
            from cirsynth.editing import CounterfactualEditor, EditorConfig

            self._editor = CounterfactualEditor.from_pretrained(self.cfg.editor, device=self.cfg.device, dtype=self.cfg.dtype,
                                                                config=EditorConfig(paste=self.cfg.paste,
                                                                                    kept_background=self.cfg.kept_background))
            if self.cfg.resolution:
                self._editor.image_size = (self.cfg.resolution, self.cfg.resolution)
        return self._editor

    def filter(self):
        if self._filter is None:
            off = self.cfg.no_filter
            fc = dataclasses.replace(self.cfg.filters, clip=None if off else self.cfg.clip, device=self.cfg.device,
                                     recaptioner=None if off else self.cfg.filters.recaptioner,
                                     diffusion_judge=None if off else self.cfg.filters.diffusion_judge)
            # the editing model doubles as the diffusion judge when asked for: loaded once
            self._filter = EditFilter(fc, editor=self.editor() if fc.diffusion_judge == "editor" else None)
        return self._filter

    def provenance(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "editor": c.editor,
            "captioner": c.captioner or (f"file:{c.captions}" if c.captions else "input list"),
            "perturber": c.perturber if c.perturber == "lexical" else f"llm:{c.perturber_model}+{c.adapter}",
            "clip": None if c.no_filter else c.clip,
            "inversion": c.inversion,
            "num_steps": c.num_steps,
            "guidance_scale": c.guidance_scale,
            "seed": c.seed,
            "config_hash": run_hash(c),
        }

    # -- the run --------------------------------------------------------------------------------
    def run(self, force_new: bool = False) -> Summary:
        cfg = self.cfg
        t0 = time.perf_counter()
        ds, todo, summary = self.start(force_new)
        bars = _Bars(len(todo), enabled=cfg.progress)
        prov = self.provenance()
        # 3. batches: a shard holds all of a batch or nothing (an exception or Ctrl-C discards the batch)
        with ds.writer(shard_size=10**9, keep_on_error=False) as w:
            for batch in self.batches(todo):
                for t, images in self.process(batch, prov, bars, summary.stages):
                    add_row(w, t, images)
                    _count(summary, t)
                w.flush()  # one shard per batch: the resume unit
        bars.close()
        statuses = Counter(ds.table().column("status").to_pylist())
        summary.dataset = {"rows": sum(statuses.values()), **{k: statuses.get(k, 0) for k in ("accepted", "rejected", "failed")}}
        summary.seconds = time.perf_counter() - t0
        return summary

    def start(self, force_new: bool = False, load_models: bool = True) -> tuple[TripletDataset, list[InputImage], Summary]:
        """Steps before the first batch, shared by both engines: the inputs (checked before anything is loaded or
        written), the models (loaded, so checked, before the output folder exists; not at all when nothing is left,
        nor with ``load_models=False``), the output opened for resume. Returns (output, inputs to do, summary)."""
        cfg = self.cfg
        # 1. inputs
        inputs = discover(cfg.images)
        summary = Summary(inputs=len(inputs))
        self.check_inputs(inputs, summary)
        # 2. models
        earlier = resumable_output(cfg, force_new)
        done = _done_keys(earlier) if earlier is not None else set()
        if load_models and any(x.key not in done for x in inputs):
            self.load_models()
        ds = open_output(cfg, force_new=force_new)
        done = _done_keys(ds)
        todo = [x for x in inputs if x.key not in done]
        summary.skipped_done = len(inputs) - len(todo)
        return ds, todo, summary

    def batches(self, todo: list[InputImage]) -> list[list[InputImage]]:
        """The inputs in batches of ``batch_size``: the unit of model calls and of manifest shards (resume)."""
        return [todo[s : s + self.cfg.batch_size] for s in range(0, len(todo), self.cfg.batch_size)]

    def check_inputs(self, inputs: list[InputImage], summary: Summary) -> None:
        """Refuse a run with no caption source; count caption-file rows that name no input as warnings.

        Raises:
            DataError: neither --captioner nor --captions is given and no input carries a caption.
        """
        cfg = self.cfg
        if not cfg.captioner and not cfg.captions and not any(x.caption for x in inputs):
            raise DataError("no captions: pass --captioner ID_OR_DIR or --captions FILE "
                            "(or give captions in the input list)", file=str(cfg.images))
        for w in self.captions.warnings:
            summary.warn("captions file: row without a usable image name", w)
        for name in self.captions.unmatched(inputs):
            summary.warn("captions file: row names an image that is not an input", f"captions row for {name!r}: no such input image")

    def input_problem(self, x: InputImage) -> str | None:
        """Why input ``x`` cannot be used as given (a failed "input" row), or None."""
        if x.problem:
            return x.problem
        return None if x.caption else self.captions.lookup(x)[1]

    def process(self, batch: list[InputImage], prov: dict, bars: "_Bars", stages: Optional["StageTimes"] = None) -> list[Row]:
        """Run one batch of inputs through every stage; returns its (Triplet, (reference, target[, mask])) rows.

        The three steps are the scale-out engine's operators too (``cirsynth.synth.ray_engine``), so both engines
        run the same code on the same batches."""
        stages = StageTimes() if stages is None else stages
        front = self.caption_and_perturb(batch, prov, bars, stages)
        edited = self.invert_and_edit(front, prov, bars, stages)
        return self.filter_edits(edited, prov, bars, stages)

    def caption_and_perturb(self, batch: list[InputImage], prov: dict, bars: "_Bars", stages: "StageTimes") -> "Perturbed":
        """Stages 1-3 (load, caption, perturb) of one batch."""
        cfg = self.cfg
        t0 = time.perf_counter()
        rows: list[Row] = []
        # 1. load
        bars.start("load")
        loaded: list[tuple[InputImage, Any]] = []
        for x in batch:
            why = self.input_problem(x)
            if why:
                rows.append((_failed(x, "input", why, prov, cfg), (None, None)))
                continue
            im, why = load_rgb(x.path, self.load_policy)
            if im is None:
                rows.append((_failed(x, "load", why, prov, cfg), (None, None)))
            else:
                loaded.append((x, im))
        bars.update("load", len(batch))
        if not loaded:
            stages.add("caption+perturb", time.perf_counter() - t0, len(batch))
            return Perturbed(rows, [])
        # 2. caption
        bars.start("caption")
        captions = self.caption(loaded)
        bars.update("caption", len(loaded))
        # 3. perturb
        bars.start("perturb")
        ok: list[tuple[InputImage, Any, str, list[CaptionEdit]]] = []
        good = [(x, im, c) for (x, im), c in zip(loaded, captions) if c and not isinstance(c, CutCaption)]
        for (x, im), c in zip(loaded, captions):
            if isinstance(c, CutCaption):
                why = (f"the caption reached the captioner's length cap ({c.cap} tokens) and is probably cut off: "
                       f"{str(c)!r}; raise --captioner_max_new_tokens")
                rows.append((_failed(x, "caption", why, prov, cfg, reference=im, caption=str(c)), (im, None)))
            elif not c:
                why = "the captioner returned an empty caption" if cfg.captioner else "no caption for this image in the input list or --captions, and no --captioner"
                rows.append((_failed(x, "caption", why, prov, cfg, reference=im), (im, None)))
        results = self.perturber().perturb([c for _, _, c in good], edit_types=cfg.edit_types, n=cfg.edits_per_image, seed=cfg.seed)
        for (x, im, c), r in zip(good, results):
            if r.rejected:
                rows.append((_failed(x, "perturb", r.reason or "no edit", prov, cfg, reference=im, caption=c), (im, None)))
            else:
                ok.append((x, im, c, r.edits))
                if len(r.edits) < cfg.edits_per_image:  # the shortfall gets a row too, with the perturber's reason
                    why = f"{len(r.edits)} of {cfg.edits_per_image} edits: {r.reason or 'no more distinct edits'}"
                    rows.append((_failed(x, "perturb", why, prov, cfg, reference=im, caption=c, k=len(r.edits)), (im, None)))
        bars.update("perturb", len(loaded))
        stages.add("caption+perturb", time.perf_counter() - t0, len(batch))
        return Perturbed(rows, ok)

    def invert_and_edit(self, front: "Perturbed", prov: dict, bars: "_Bars", stages: "StageTimes") -> "Edited":
        """Stages 4-5 (invert, edit) of one batch: one inversion per image, shared by its edits."""
        cfg = self.cfg
        rows, ok = list(front.rows), front.ok
        if not ok:
            return Edited(rows, [], [])
        t0 = time.perf_counter()
        # 4. invert. From here on the reference is the image as the model sees it (resized + centre-cropped), so
        # reference and target align.
        editor = self.editor()
        bars.start("invert")
        editor.step_callback = bars.step
        ok = [(x, ref, c, edits) for (x, _, c, edits), ref in zip(ok, editor.prepare([im for _, im, _, _ in ok]))]
        how = dict(method=cfg.inversion, num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale,
                   seed=candidate_noise_seed(cfg.seed, 0))  # ddpm: candidates' noise seed 0 (the others: step 5)
        try:
            invs = editor.invert([im for _, im, _, _ in ok], [c for _, _, c, _ in ok], **how)
        except Exception:  # noqa: BLE001 - one bad image must not end the run: retry one by one
            invs = []
            for x, im, c, _ in ok:
                try:
                    invs.append(editor.invert([im], [c], **how)[0])
                except Exception as e:  # noqa: BLE001 - recorded as this item's failure reason
                    invs.append(e)
        bars.update("invert", len(ok))
        # 5. edit
        pairs = []
        for (x, im, c, edits), inv in zip(ok, invs):
            for k, ed in enumerate(edits):
                if isinstance(inv, Exception):
                    rows.append((_failed(x, "invert", f"{type(inv).__name__}: {inv}", prov, cfg, reference=im, caption=c, k=k, edit=ed), (im, None)))
                else:
                    pairs.append((x, im, inv, k, ed))
        results = self.edit(pairs, prov, bars)
        stages.add("invert+edit", time.perf_counter() - t0, len(pairs))
        return Edited(rows, [(x, im, k, ed) for x, im, _, k, ed in pairs], results)

    def caption(self, loaded) -> list[str]:
        out = []
        need = []
        for i, (x, _) in enumerate(loaded):
            cap = x.caption or self.captions.lookup(x)[0]
            out.append(cap)
            if cap is None:
                need.append(i)
        if need:
            if self.cfg.captioner is None:
                for i in need:
                    out[i] = ""  # reported as a failed caption below
            else:
                captioner = self.captioner()
                caps, cut = captioner.caption([loaded[i][1] for i in need], return_cut=True)
                for i, cap, c in zip(need, caps, cut):
                    out[i] = CutCaption((cap or "").strip(), captioner.max_new_tokens) if c else (cap or "").strip()
        return out

    def edit(self, pairs, prov, bars) -> list:
        """Each pair's edited candidates, or its failed row (the error isolated to the failing pair)."""
        cfg = self.cfg
        if not pairs:
            return []
        editor = self.editor()
        bars.start("edit")
        editor.step_callback = bars.step
        # every pair's candidate settings: the fixed sweep, or --candidates N drawn per edit (seeded by its id);
        # with ddpm each candidate also draws its inversion noise seed (inverted in edit_candidates)
        settings = [draw_settings(cfg.candidates.for_edit_type(p[4].edit_type), f"{p[0].key}:{p[3]}", cfg.seed,
                                  noise_seeds=cfg.inversion == "ddpm")
                    if cfg.candidates.n else fixed_settings(cfg.cross_replace_steps, cfg.self_replace_steps) for p in pairs]

        def run(idx):
            ps = [pairs[i] for i in idx]
            blend_words, blend_pin = cfg.candidates.blends([p[4] for p in ps], cfg.local_blend)
            return edit_candidates(
                editor, [p[2] for p in ps], [p[4].target_caption for p in ps], blend_words,
                [p[4].target_words for p in ps], [settings[i] for i in idx], images=[p[1] for p in ps],
                blend_pin=blend_pin)

        try:
            results = run(range(len(pairs)))
        except Exception:  # noqa: BLE001 - isolate the failing pair(s)
            results = []
            for i in range(len(pairs)):
                try:
                    results.append(run([i])[0])
                except Exception as e:  # noqa: BLE001
                    results.append(e)
        bars.update("edit", len(pairs))
        for i, ((x, im, _, k, ed), res) in enumerate(zip(pairs, results)):
            if isinstance(res, Exception):
                results[i] = (_failed(x, "edit", f"{type(res).__name__}: {res}", prov, cfg, reference=im, caption=ed.source_caption, k=k, edit=ed), (im, None))
        return results

    def filter_edits(self, edited: "Edited", prov: dict, bars: "_Bars", stages: "StageTimes") -> list[Row]:
        """Stage 6 (filter) of one batch: its rows, the earlier stages' failed rows first, in the order of the edits."""
        cfg = self.cfg
        rows = list(edited.rows)
        pairs, results = edited.pairs, edited.results
        if not pairs:
            return rows
        t0 = time.perf_counter()
        bars.start("filter")
        filt = self.filter()
        negatives = self.negatives([p[3] for p in pairs]) if filt.clip is not None else [None] * len(pairs)
        for p, res, negs in zip(pairs, results, negatives):
            x, im, k, ed = p
            if isinstance(res, tuple):  # the edit's failed row
                rows.append(res)
                continue
            n = len(res)
            verdicts = filt.score([im] * n, [c.image for c in res], [ed.source_caption] * n, [ed.target_caption] * n,
                                  [ed.source_words] * n, [ed.target_words] * n, [c.mask for c in res],
                                  negatives=None if negs is None else [negs] * n, edit_types=[ed.edit_type] * n)
            best = pick_best(verdicts, cfg.filters.rank_by)
            v = verdicts[best]
            status = "accepted" if (v.passed or cfg.no_filter) else "rejected"
            t = Triplet.from_edit(
                id=f"{x.key}:{k}", reference="", edit=ed, target="", scores=v.scores, status=status,
                reason=None if status == "accepted" else "; ".join(v.failed), split=cfg.split,
                provenance={**prov, "input": x.rel, **res[best].setting.as_dict(), "candidates": n,
                            "candidates_passed": sum(c.passed for c in verdicts),
                            "candidate_scores": [{**c.setting.as_dict(), **vv.scores, "passed": vv.passed}
                                                 for c, vv in zip(res, verdicts)],
                            "edit_provenance": ed.provenance},
            )
            rows.append((t, (im, res[best].image, res[best].mask)))
        bars.update("filter", len(pairs))
        stages.add("filter", time.perf_counter() - t0, len(pairs))
        return rows

    def negatives(self, edits: list[CaptionEdit]) -> list[list[str]]:
        """Hard-negative captions per edit for the filter's caption-margin rule (the source caption, and with
        ``filters.hard_negatives`` K, K one-attribute variants of the target caption by this run's perturber)."""
        k = self.cfg.filters.hard_negatives
        return hard_negative_captions(self.perturber() if k else None, [e.target_caption for e in edits],
                                      [e.source_caption for e in edits], k, self.cfg.seed)


class CutCaption(str):
    """A generated caption that stopped at the captioner's length cap (kept for the failed row's text)."""

    def __new__(cls, text: str, cap: int):
        obj = super().__new__(cls, text)
        obj.cap = cap
        return obj


def _failed(x: InputImage, stage: str, why: str, prov: dict, cfg: SynthConfig, reference=None, caption=None, k=None, edit=None) -> Triplet:
    """A failed row: kept in the manifest with its stage and reason."""
    ident = f"{x.key}:{'input' if k is None else k}"
    if edit is not None:
        return Triplet.from_edit(ident, "", edit, status="failed", reason=f"{stage}: {why}", split=cfg.split, provenance={**prov, "input": x.rel})
    return Triplet(
        id=ident, reference=str(x.path.absolute()) if reference is None else "", modification_text="",
        reference_caption=caption, status="failed", reason=f"{stage}: {why}", split=cfg.split, provenance={**prov, "input": x.rel},
    )


def _done_keys(ds: TripletDataset) -> set[str]:
    """Input keys with rows in ``ds``: finished (shards hold whole batches)."""
    return {i.split(":", 1)[0] for i in ds.ids()}


def _count(summary: Summary, t: Triplet) -> None:
    if t.status == "accepted":
        summary.accepted += 1
    elif t.status == "rejected":
        summary.rejected += 1
        for rule in (t.reason or "").split("; "):
            summary.rejected_by_rule[rule.split(" ")[0]] += 1
    else:
        summary.failed += 1
        summary.failed_by_reason[reason_kind(t.reason or "")] += 1


def reason_kind(reason: str) -> str:
    """A failure reason with its quoted specifics (captions, file names) elided, so the summary counts alike
    failures together and still says the whole reason: "caption: ... cut off: '…'; raise --captioner_max_new_tokens"."""
    return re.sub(r"(?<!\w)(?:'[^']*'|\"[^\"]*\")(?!\w)", "'…'", reason)


class _Bars:
    """One tqdm bar per stage, and one for the denoising steps of the running inversion or edit.

    A stage's rate is its own: the seconds spent inside that stage per item (``start`` .. ``update``), not the time
    since the run began. The step bar restarts with each inversion / edit call, so its it/s is that call's.
    """

    STAGES = ("load", "caption", "perturb", "invert", "edit", "filter")

    def __init__(self, n_images: int, enabled: bool = True):
        self.bars = {}
        self.seconds: dict[str, float] = {s: 0.0 for s in self.STAGES}  # time inside each stage
        self.done: Counter = Counter()
        self._started: dict[str, float] = {}
        self.steps = None
        if enabled:
            from tqdm.auto import tqdm

            for i, s in enumerate(self.STAGES):
                unit = "pair" if s in ("edit", "filter") else "img"
                fmt = "{desc}: {n_fmt}" + ("/{total_fmt}" if unit == "img" else "") + " {unit}{postfix}"
                self.bars[s] = tqdm(total=n_images if unit == "img" else None, desc=f"{i + 1}. {s:<7}", unit=unit,
                                    position=i, leave=True, bar_format=fmt)
            self.steps = tqdm(desc="   steps", unit="step", position=len(self.STAGES), leave=False,
                              bar_format="{desc}: {n_fmt} {unit}s [{rate_fmt}]")

    def start(self, stage: str) -> None:
        """The stage begins work on a batch (its clock runs until ``update``)."""
        self._started[stage] = time.perf_counter()
        if self.steps is not None and stage in ("invert", "edit"):
            self.steps.reset()
            self.steps.set_description_str(f"   {stage} steps")

    def step(self) -> None:
        """One inversion / sampling step done (the editor's ``step_callback``)."""
        if self.steps is not None:
            self.steps.update(1)

    def update(self, stage: str, n: int) -> None:
        t0 = self._started.pop(stage, None)
        if t0 is not None:
            self.seconds[stage] += time.perf_counter() - t0
        self.done[stage] += n
        if stage in self.bars:
            bar = self.bars[stage]
            if self.done[stage]:
                bar.set_postfix_str(f"{self.seconds[stage] / self.done[stage]:.2f} s/{bar.unit} in this stage",
                                    refresh=False)
            bar.update(n)

    def close(self) -> None:
        for b in [*self.bars.values(), *([self.steps] if self.steps is not None else [])]:
            b.close()
