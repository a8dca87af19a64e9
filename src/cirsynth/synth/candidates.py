"""Oversample, then filter: several prompt-to-prompt candidates per edit, each with its own settings.

InstructPix2Pix builds its data by sampling many images per prompt with randomised settings and keeping the few that
pass its CLIP filter. With a deterministic inversion the variety has to come from the edit's settings: here each
candidate draws its cross-attention replace fraction, self-attention replace fraction and the attention scale of the
changed target words (prompt-to-prompt reweighting) from grids, seeded per edit, so a rerun draws the same candidates.
Edit-friendly DDPM inversion is not deterministic in that sense: its noise maps come from a seed, and another seed
gives another exact inversion of the same image, hence another edit. With ``ddpm`` each candidate also draws its
inversion noise seed (``draw_settings(..., noise_seeds=True)``), so candidates differ in more than their
prompt-to-prompt settings; ``edit_candidates`` inverts each (image, seed) once.
The filter then scores every candidate and keeps the best that passes (``filters.pick_best``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class CandidateSetting:
    """The prompt-to-prompt settings of one candidate."""

    cross_replace_steps: float  # fraction of steps with the source's cross-attention
    self_replace_steps: float  # fraction of steps with the source's self-attention
    reweight: float = 1.0  # attention scale of the changed target words (1: no reweighting)
    noise_seed: int | None = None  # ddpm: the seed of this candidate's inversion noise (None: the pair's inversion)
    start_seed: int | None = None  # the target branch starts from fresh noise of this seed (None: the inversion's)
    skip_steps: float = 0.0  # fraction of the first steps the target branch follows the source (editor.edit(skip_steps=))

    def as_dict(self) -> dict[str, float]:
        d = {"cross_replace_steps": self.cross_replace_steps, "self_replace_steps": self.self_replace_steps,
             "reweight": self.reweight}
        if self.noise_seed is not None:  # editor.invert(..., method="ddpm", seed=noise_seed) reproduces it
            d["noise_seed"] = self.noise_seed
        if self.start_seed is not None:  # editor.edit(..., start_noise=[start_seed]) reproduces it
            d["start_seed"] = self.start_seed
        if self.skip_steps:
            d["skip_steps"] = self.skip_steps
        return d


START_MODES = ("inversion", "noise")


@dataclass
class CandidateConfig:
    """How many candidates per edit, and the grids their settings are drawn from."""

    n: int = 0  # candidates per edit; 0: the fixed settings (one per self_replace_steps value, no reweighting)
    cross_replace_choices: tuple[float, ...] = (0.2, 0.4, 0.6)  # drawn per candidate
    self_replace_choices: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # drawn per candidate
    reweight_choices: tuple[float, ...] = (1.0, 1.5, 2.0)  # drawn per candidate; >1 strengthens the new words
    skip_choices: tuple[float, ...] = (0.0,)  # drawn per candidate: fraction of the first steps the edit leaves to
    # the source branch (edit-friendly DDPM's T_skip; more keeps more of the input's look); 0 with start "noise"
    # edit type -> its own grids ("cross_replace_choices", "self_replace_choices", "reweight_choices") and/or
    # "local_blend" (false: the edit is global, no LocalBlend; "mask": the mask is measured but does not pin the
    # latents, so the edit may reach past it and EditorConfig.paste restores what lies outside) and/or "start" (see
    # below), used instead of the above for that type's edits
    by_edit_type: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # where a candidate's target branch starts: "inversion" (the inverted noise, as prompt-to-prompt does) or "noise"
    # (fresh noise, its own seed per candidate: CounterfactualEditor.edit(start_noise=)), for edits the inverted noise
    # holds back such as a new background
    start: str = "inversion"

    def __post_init__(self) -> None:
        from cirsynth.data.records import EDIT_TYPES

        allowed = {"cross_replace_choices", "self_replace_choices", "reweight_choices", "skip_choices", "local_blend",
                   "start"}
        if self.start not in START_MODES:
            raise ValueError(f"candidates.start must be one of {list(START_MODES)}, got {self.start!r}")
        _check_skip(self.skip_choices, self.start, "candidates")
        for t, o in self.by_edit_type.items():
            if t not in EDIT_TYPES:
                raise ValueError(f"candidates.by_edit_type: unknown edit type {t!r}; expected one of {list(EDIT_TYPES)}")
            if not isinstance(o, dict) or set(o) - allowed:
                raise ValueError(f"candidates.by_edit_type[{t!r}]: unknown keys {sorted(set(o) - allowed)}; "
                                 f"expected any of {sorted(allowed)}")
            for k, v in o.items():
                if k == "local_blend" and not (isinstance(v, bool) or v == "mask"):
                    raise ValueError(f"candidates.by_edit_type[{t!r}].local_blend must be true, false or \"mask\", "
                                     f"got {v!r}")
                if k == "start" and v not in START_MODES:
                    raise ValueError(f"candidates.by_edit_type[{t!r}].start must be one of {list(START_MODES)}, got {v!r}")
                if k not in ("local_blend", "start") and (not isinstance(v, (list, tuple)) or not v):
                    raise ValueError(f"candidates.by_edit_type[{t!r}].{k} must be a non-empty list, got {v!r}")
            _check_skip(o.get("skip_choices", self.skip_choices), o.get("start", self.start),
                        f"candidates.by_edit_type[{t!r}]")

    def for_edit_type(self, edit_type: str) -> "CandidateConfig":
        """The config an edit of ``edit_type`` draws its candidates from (its own grids and start where
        ``by_edit_type`` has them)."""
        own = self.by_edit_type.get(edit_type, {})
        o: dict[str, Any] = {k: tuple(float(x) for x in v) for k, v in own.items() if k not in ("local_blend", "start")}
        if "start" in own:
            o["start"] = own["start"]
        return dataclasses.replace(self, **o, by_edit_type={}) if o else self

    def local_blend(self, edit_type: str, default: bool) -> bool | str:
        """How edits of ``edit_type`` blend: True (LocalBlend), False (none) or "mask" (the mask only, no pinning):
        ``by_edit_type``'s say, else ``default``."""
        v = self.by_edit_type.get(edit_type, {}).get("local_blend", default)
        return v if v == "mask" else bool(v)

    def blends(self, edits: Sequence[Any], default: bool) -> tuple[list[tuple[list[str], ...] | None], list[bool]]:
        """Per ``CaptionEdit``, its LocalBlend words (``blend_words_of``) and whether the blend pins the latents: the
        ``blend_words`` and ``blend_pin`` of ``edit_candidates`` / ``CounterfactualEditor.edit``."""
        modes = [self.local_blend(e.edit_type, default) for e in edits]
        return [blend_words_of(e, bool(m)) for e, m in zip(edits, modes)], [m is True for m in modes]


def _check_skip(choices: Sequence[float], start: str, where: str) -> None:
    """Skip fractions lie in [0, 1), and a fresh start (which does not follow the source) skips none."""
    if any(not 0 <= float(x) < 1 for x in choices):
        raise ValueError(f"{where}.skip_choices are fractions of the steps in [0, 1), got {list(choices)}")
    if start == "noise" and any(float(x) for x in choices):
        raise ValueError(f"{where} starts from fresh noise, which follows no source branch to skip along: "
                         f"its skip_choices must be [0], got {list(choices)}")


def fixed_settings(cross_replace_steps: float, self_replace_steps: Sequence[float]) -> list[CandidateSetting]:
    """The classic sweep: one cross-replace value, one candidate per self-replace value."""
    return [CandidateSetting(float(cross_replace_steps), float(s)) for s in self_replace_steps]


def candidate_noise_seed(seed: int, index: int) -> int:
    """The ``index``-th ddpm inversion noise seed of a run with seed ``seed`` (a 31-bit int). The editor mixes in the
    image content (``editing.editor.ddpm_noise_seed``), so one index gives every image its own noise, and an image's
    edits that draw the same index share its inversion."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:noise:{int(index)}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def candidate_start_seed(seed: int, key: str, index: int) -> int:
    """The fresh-noise seed of candidate ``index`` of the edit named ``key`` in a run with seed ``seed`` (31 bits)."""
    digest = hashlib.sha256(f"{int(seed)}:start:{key}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def draw_settings(cfg: CandidateConfig, key: str, seed: int, noise_seeds: bool = False) -> list[CandidateSetting]:
    """``cfg.n`` distinct settings for the edit named ``key`` (drawn without replacement from the grid product; all of
    it when the grid is smaller). The draw depends only on ``key`` and ``seed``, not on batch order.

    With ``noise_seeds`` (ddpm inversion) every one of the ``cfg.n`` candidates also gets its own inversion noise seed,
    ``candidate_noise_seed(seed, j)`` for the indices j = 0..n-1 in an order drawn per edit, so candidates are distinct
    even beyond the grid's size (the grid settings then repeat, in the same drawn order). The prompt-to-prompt
    settings are the ones drawn without ``noise_seeds``. With ``cfg.start == "noise"`` candidate k also gets the
    fresh-start seed ``candidate_start_seed(seed, key, k)``."""
    grid = [CandidateSetting(float(c), float(s), float(r), skip_steps=float(k)) for c, s, r, k in
            itertools.product(cfg.cross_replace_choices, cfg.self_replace_choices, cfg.reweight_choices,
                              cfg.skip_choices)]
    if not grid:
        raise ValueError("candidate grids must not be empty")
    for s in grid:
        if not (0 <= s.cross_replace_steps <= 1 and 0 <= s.self_replace_steps <= 1) or s.reweight <= 0:
            raise ValueError(f"bad candidate setting {s}: replace fractions lie in [0, 1], reweight > 0")
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    pick = rng.permutation(len(grid))
    if not noise_seeds:
        drawn = [grid[i] for i in pick[: min(cfg.n, len(grid))]]
    else:
        order = rng.permutation(cfg.n)  # after the grid draw, so the settings stay those drawn without noise seeds
        drawn = [dataclasses.replace(grid[pick[k % len(grid)]], noise_seed=candidate_noise_seed(seed, int(order[k])))
                 for k in range(cfg.n)]
    if cfg.start == "noise":
        drawn = [dataclasses.replace(s, start_seed=candidate_start_seed(seed, key, k)) for k, s in enumerate(drawn)]
    return drawn


@dataclass
class Candidate:
    """One edited image of one pair, with its settings and LocalBlend mask."""

    image: Any  # PIL image
    mask: np.ndarray | None  # (H, W) bool LocalBlend mask in pixels, None without blending
    setting: CandidateSetting


def blend_words_of(edit: Any, local_blend: bool = True) -> tuple[list[str], ...] | None:
    """The LocalBlend words of one ``CaptionEdit``: ``(source, target)`` or, when the edit names ``keep_words``,
    ``(source, target, keep)``; ``None`` (no blend) when blending is off or the edit names no word at all.

    Each side's changed span is one phrase (a span is contiguous), so a multi-word span ("and a green cube on the
    left") selects its own tokens, not every "a" and "the" of the prompt. One side may be empty: an added object has
    only target words (the blend follows where the new words attend), a removed one only source words."""
    src = " ".join(w for w in edit.source_words if w.strip())
    tgt = " ".join(w for w in edit.target_words if w.strip())
    src, tgt = [src] if src else [], [tgt] if tgt else []
    keep = [w for w in edit.keep_words if w.strip()]
    if not local_blend or not (src or tgt or keep):
        return None
    return (src, tgt, keep) if keep else (src, tgt)


def edit_candidates(
    editor: Any,
    inversions: Sequence[Any],
    target_prompts: Sequence[str],
    blend_words: Sequence[tuple[Sequence[str], Sequence[str]] | None],
    target_words: Sequence[Sequence[str]],
    settings: Sequence[Sequence[CandidateSetting]],
    images: Sequence[Any] | None = None,
    blend_pin: Sequence[bool] | None = None,
) -> list[list[Candidate]]:
    """Every pair's candidates, one per setting. Candidates that share (cross, self, skip) fractions share edit
    calls, so pairs and candidates still batch in the UNet.

    Args:
        editor: a ``CounterfactualEditor``.
        inversions, target_prompts, blend_words: per pair, as ``CounterfactualEditor.edit`` takes them.
        target_words: per pair, the changed words in the target prompt (reweighted when a setting's scale is not 1).
        settings: per pair, its candidates' settings.
        images: per pair, the reference image its inversion was made from; needed when a setting has a
            ``noise_seed`` (see ``seeded_inversions``).
        blend_pin: per pair, whether its LocalBlend pins the latents (default: all do; see ``CandidateConfig.blends``).

    Returns:
        Per pair, its candidates in the order of ``settings[pair]``.
    """
    out: list[list[Candidate | None]] = [[None] * len(s) for s in settings]
    inv_of = seeded_inversions(editor, inversions, settings, images)  # (pair, candidate) -> its inversion
    groups: dict[tuple[float, float, float], list[tuple[int, int]]] = {}
    for p, ss in enumerate(settings):
        for k, s in enumerate(ss):
            groups.setdefault((s.cross_replace_steps, s.self_replace_steps, s.skip_steps), []).append((p, k))
    for (cross, self_frac, skip), members in groups.items():
        reweights = []
        for p, k in members:
            scale = settings[p][k].reweight
            phrase = " ".join(w for w in target_words[p] if w.strip())  # the span's own tokens (see blend_words_of)
            reweights.append({phrase: scale} if scale != 1.0 and phrase else None)
        results = editor.edit(
            [inv_of[p, k] for p, k in members], [target_prompts[p] for p, _ in members],
            cross_replace_steps=cross, self_replace_steps=self_frac,
            blend_words=[blend_words[p] for p, _ in members], reweight=reweights, return_details=True,
            blend_pin=None if blend_pin is None else [blend_pin[p] for p, _ in members],
            start_noise=[settings[p][k].start_seed for p, k in members], skip_steps=skip,
        )
        for (p, k), res in zip(members, results):
            out[p][k] = Candidate(res.images[0], res.masks[0], settings[p][k])
    return out  # type: ignore[return-value]


def seeded_inversions(
    editor: Any, inversions: Sequence[Any], settings: Sequence[Sequence[CandidateSetting]], images: Sequence[Any] | None
) -> dict[tuple[int, int], Any]:
    """The inversion of every (pair, candidate): the pair's own, unless the candidate names a ddpm ``noise_seed``
    other than the one that inversion was made with; those are inverted here, once per distinct (image, prompt,
    seed), in one batched ``editor.invert`` call per (steps, guidance). Pairs of one image share the results.

    Raises:
        ValueError: a noise seed on a pair whose inversion is not ``ddpm``, or no ``images`` to invert.
    """
    key = lambda inv, s: (inv.image_hash, inv.prompt, int(s), inv.num_steps, float(inv.guidance_scale))  # noqa: E731
    have = {key(inv, inv.settings["seed"]): inv for inv in inversions if inv.method == "ddpm"}
    need: dict[tuple, int] = {}  # inversion key -> a pair that holds its image
    for p, ss in enumerate(settings):
        for s in ss:
            if s.noise_seed is None:
                continue
            if inversions[p].method != "ddpm":
                raise ValueError(f"candidate noise seeds need a ddpm inversion; pair {p} has {inversions[p].method!r}")
            if key(inversions[p], s.noise_seed) not in have:
                need.setdefault(key(inversions[p], s.noise_seed), p)
    if need and images is None:
        raise ValueError("candidates with ddpm noise seeds need the pairs' reference images (images=...) to invert")
    by_run: dict[tuple[int, float], list[tuple]] = {}
    for k in need:
        by_run.setdefault(k[3:], []).append(k)
    for (steps, guidance), ks in by_run.items():
        new = editor.invert([images[need[k]] for k in ks], [k[1] for k in ks], method="ddpm", num_steps=steps,
                            guidance_scale=guidance, seed=[k[2] for k in ks])
        for k, inv in zip(ks, new):
            if inv.image_hash != k[0]:
                raise ValueError(f"pair {need[k]}: its image is not the one its inversion was made from")
            have[k] = inv
    return {(p, k): inversions[p] if s.noise_seed is None else have[key(inversions[p], s.noise_seed)]
            for p, ss in enumerate(settings) for k, s in enumerate(ss)}


def hard_negative_captions(perturber: Any, target_captions: Sequence[str], source_captions: Sequence[str],
                           k: int, seed: int) -> list[list[str]]:
    """Per edit, captions an edited image must NOT match better than its target caption: the source caption (the
    edit did not happen) and up to ``k`` one-attribute variants of the target caption made by the same perturber
    (something else changed too). The filter's ``caption_margin`` rule ranks the target caption against them.
    """
    results = perturber.perturb(list(target_captions), n=k, seed=seed) if k > 0 else [None] * len(target_captions)
    out = []
    for src, tgt, r in zip(source_captions, target_captions, results):
        negs = [src] + ([e.target_caption for e in r.edits] if r is not None else [])
        out.append(list(dict.fromkeys(n for n in negs if n and n != tgt)))
    return out
