"""Edit filters: CLIP similarities (InstructPix2Pix / LANCE rules) and structure preservation.

Scores per candidate (reference image R, edited image E, source caption S, target caption T,
changed words s -> t):
- ``clip_i2i``      cos(E_img(R), E_img(E))                      image-image: same scene kept
- ``clip_src_text`` cos(E_img(R), E_txt(S))                      the reference matches its caption
- ``clip_tgt_text`` cos(E_img(E), E_txt(T))                      the edit matches the target caption
- ``clip_dir``      cos(E_img(E) - E_img(R), E_txt(T) - E_txt(S)) directional similarity (Gal et al. 2022)
- ``words_margin``  cos(E_img(E), E_txt(t)) - cos(E_img(E), E_txt(s)) the edit is closer to the target words
- ``psnr_outside``  PSNR between R and E outside the LocalBlend mask (whole image without a mask)
- ``caption_margin`` cos(E_img(E), E_txt(T)) - max_n cos(E_img(E), E_txt(n)) over hard-negative captions n: the source
                    caption and one-attribute variants of T (``candidates.hard_negative_captions``). Positive when CLIP
                    reads the edited image as the target caption rather than as "nothing changed" or "something else
                    changed too"; only scored when negatives are given.
- ``recaption_target`` content words(C) vs words(T), C = a captioner's caption of E: multiset Jaccard overlap (1:
                    the captioner reads the edited image as exactly the target caption's words)
- ``recaption_margin`` overlap(C, T) - overlap(C, S): positive when the edited image reads more like the target
                    caption than like the source (the edit happened); only scored with a ``recaptioner``.
- ``recaption_diff`` the change between the captioner's own captions of R and of E, word by word, against the change
                    the edit asks for (the words of T not in S come in, those of S not in T go out):
                    (expected changes seen - changes not asked for) / expected changes; 1 = exactly the asked change,
                    0 = nothing changed, < 0 = something else changed too. Both captions are in the captioner's own
                    words, so the captions' phrasing (which the captioner may never write) does not enter; and a
                    captioner error on R that E repeats cancels out. Only scored with a ``recaptioner``.
- ``likelihood_edit`` the captioner as a reader: how much more likely it finds T than S on E than on R,
                    [log p(T|E) - log p(S|E)] - [log p(T|R) - log p(S|R)] (nats; > 0: the image moved towards T).
                    Measured against R so that a phrasing the captioner would not write cancels out.
- ``likelihood_kept`` the same against each hard negative n other than S (T with another attribute changed), the
                    worst one: min_n [log p(T|E) - log p(n|E)] - [log p(T|R) - log p(n|R)] (about 0 when the rest
                    of the scene is kept, < 0 when E drifted towards n). Both need a ``recaptioner`` and negatives.
- ``likelihood_margin`` the captioner as a judge of E alone: log p(T|E) - max_n log p(n|E) over the source caption and
                    every hard negative (> 0: of T and all its given one-attribute neighbours, T reads likeliest on
                    E). Not relative to R, so a phrasing the captioner would not write counts against it; it is the
                    sharper the more neighbours are given (``hard_negatives``: the world recipe asks for all of them).
- ``diffusion_margin`` the diffusion model as a judge of E alone (a diffusion classifier, Li et al. 2023;
                    ``synth.judge.caption_errors``): err(E, n) - err(E, T) for the worst n among the source
                    caption and every hard negative, where err is the UNet's noise-prediction error under a caption
                    at a few fixed timesteps, the same noise for every caption (> 0: of T and its one-attribute
                    neighbours, T explains E best). The generator knows what the words should look like.
- ``diffusion_edit`` [err(E, S) - err(E, T)] - [err(R, S) - err(R, T)]: E moved towards T, relative to R.
- ``diffusion_kept`` min over negatives n other than S of [err(E, n) - err(E, T)] - [err(R, n) - err(R, T)] (about 0
                    when the rest is kept, < 0 when E drifted towards n). All three need ``diffusion_judge`` and
                    negatives; they cost (2 + ``diffusion_negatives``) x ``len(diffusion_timesteps)`` UNet rows per candidate.
- ``learned``        a logistic model over the scores above (``FilterConfig.learned``, fitted by ``cirsynth world
                    calibrate-filter`` against ground truth): the probability that the candidate is right. Only
                    computed when a model is configured.
Each rule compares one score with a threshold; a candidate passes when every enabled rule does (a threshold of None
disables its rule); a rule whose score was not computed rejects the candidate with a reason that says what the
score needs, except that a filter without ``clip`` has no CLIP rules at all. Thresholds for the mini world are
calibrated against ground truth (``cirsynth world calibrate-filter``), never on the evaluation seed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cirsynth.captions.text import STOPWORDS
from cirsynth.metrics import psnr


@dataclass
class FilterConfig:
    clip: str | None = None  # CLIP id or folder; None: no CLIP rules (structure rule only)
    min_clip_i2i: float | None = 0.7  # InstructPix2Pix / LANCE default
    min_clip_src_text: float | None = 0.2  # reference image vs its caption
    min_clip_tgt_text: float | None = 0.2  # edited image vs target caption
    min_clip_dir: float | None = 0.2  # directional similarity
    min_words_margin: float | None = 0.0  # edited image closer to the target words than to the source words
    min_psnr_outside: float | None = 18.0  # dB outside the blend mask: the rest of the scene is preserved
    min_caption_margin: float | None = None  # target caption beats every hard negative by this much (None: off)
    hard_negatives: int = 0  # one-attribute variants of the target caption used as negatives (0: the source only)
    rank_by: str = "clip_dir"  # score that orders the passing candidates of one edit (the best is kept)
    device: str | None = None  # None: CUDA when available
    recaptioner: str | None = None  # image-to-text id or folder that re-captions each edit (None: no recaption scores)
    min_recaption_target: float | None = None  # overlap of the edit's caption with the target caption (None: off)
    min_recaption_margin: float | None = None  # ... minus its overlap with the source caption (None: off)
    min_recaption_diff: float | None = None  # the captioner sees the asked change between R and E, no other (None: off)
    min_likelihood_edit: float | None = None  # E reads as T rather than S, relative to R (nats; None: off)
    min_likelihood_kept: float | None = None  # E reads no more as another variant of T than R does (nats; None: off)
    min_likelihood_margin: float | None = None  # T is the likeliest of itself, S and the negatives on E (nats; None: off)
    # the diffusion model that reads each candidate for the diffusion_* scores: "editor" (the editing model itself),
    # another pipeline's id or folder, or None (no diffusion scores)
    diffusion_judge: str | None = None
    diffusion_timesteps: tuple[int, ...] = (100, 250, 400, 550, 700)  # where the judge noises each image
    diffusion_negatives: int | None = None  # the judge reads the source and the first K hard negatives (None: all)
    min_diffusion_margin: float | None = None  # T explains E better than S and every negative (None: off)
    min_diffusion_edit: float | None = None  # E moved towards T relative to R (None: off)
    min_diffusion_kept: float | None = None  # E moved towards no negative relative to R (None: off)
    # a logistic model over the scores (see ``learned_score``): {"features", "lo", "hi", "mean", "scale", "coef",
    # "intercept"} and optionally "type_offset" ({edit type: logit offset}); None: no ``learned`` score
    learned: dict[str, Any] | None = None
    min_learned: float | None = None  # the model's probability that the candidate is right (None: off)


RULES = (
    ("clip_i2i", "min_clip_i2i"),
    ("clip_src_text", "min_clip_src_text"),
    ("clip_tgt_text", "min_clip_tgt_text"),
    ("clip_dir", "min_clip_dir"),
    ("words_margin", "min_words_margin"),
    ("psnr_outside", "min_psnr_outside"),
    ("caption_margin", "min_caption_margin"),
    ("recaption_target", "min_recaption_target"),
    ("recaption_margin", "min_recaption_margin"),
    ("recaption_diff", "min_recaption_diff"),
    ("likelihood_edit", "min_likelihood_edit"),
    ("likelihood_kept", "min_likelihood_kept"),
    ("likelihood_margin", "min_likelihood_margin"),
    ("diffusion_margin", "min_diffusion_margin"),
    ("diffusion_edit", "min_diffusion_edit"),
    ("diffusion_kept", "min_diffusion_kept"),
    ("learned", "min_learned"),
)


def learned_score(model: dict[str, Any], scores: dict[str, float], edit_type: str | None = None) -> float | None:
    """A logistic model's probability over a candidate's scores: each feature clipped to ``[lo, hi]`` (its range on
    the data the model was fitted on), standardised, weighted; None when a feature the model reads is missing.

    A model with ``type_offset`` also adds its edit type's offset to the logit (a per-type prior: some edit types are
    right far more often than others); an edit type the model has no offset for, or None, adds nothing."""
    if any(f not in scores for f in model["features"]):
        return None
    x = np.clip([scores[f] for f in model["features"]], model["lo"], model["hi"])
    z = float(np.dot((x - np.asarray(model["mean"])) / np.asarray(model["scale"]), model["coef"]) + model["intercept"])
    z += float(model.get("type_offset", {}).get(edit_type, 0.0))
    return float(1.0 / (1.0 + np.exp(-z)))


def caption_words(text: str) -> Counter:
    """The content words of a caption as a multiset (lower case, letters and digits, no stop words)."""
    return Counter(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS)


def word_overlap(a: str, b: str) -> float:
    """Multiset Jaccard overlap of two captions' words: |A & B| / |A | B| (1: the same words, in any order, so
    paraphrases that reorder the same words count as equal)."""
    wa, wb = caption_words(a), caption_words(b)
    union = sum((wa | wb).values())
    return sum((wa & wb).values()) / union if union else 0.0


def change_match(ref_caption: str, edit_caption: str, source_caption: str, target_caption: str) -> float:
    """How exactly the change from ``ref_caption`` to ``edit_caption`` (two captions of the reference and of the edited
    image, in one captioner's words) is the change from ``source_caption`` to ``target_caption``: content words that
    came in and went out, as multisets. (asked changes seen - changes not asked for) / asked changes; 1 = the asked
    change and nothing else, 0 = no change, negative = more unasked changes than asked ones seen."""
    r, e = caption_words(ref_caption), caption_words(edit_caption)
    s, t = caption_words(source_caption), caption_words(target_caption)
    came, went = e - r, r - e
    want_in, want_out = t - s, s - t
    hit = sum((came & want_in).values()) + sum((went & want_out).values())
    extra = sum((came - want_in).values()) + sum((went - want_out).values())
    return (hit - extra) / max(sum(want_in.values()) + sum(want_out.values()), 1)


@dataclass
class FilterVerdict:
    scores: dict[str, float]
    failed: list[str] = field(default_factory=list)  # rule descriptions that failed, e.g. "clip_dir 0.12 < 0.2"

    @property
    def passed(self) -> bool:
        return not self.failed


CLIP_SCORES = frozenset({"clip_i2i", "clip_src_text", "clip_tgt_text", "clip_dir", "words_margin", "caption_margin"})
MISSING_WHY = {  # what a configured rule's score needs, for the rejection reason when it is missing
    **{name: "needs FilterConfig.clip" for name in CLIP_SCORES},
    "caption_margin": "needs FilterConfig.clip and hard-negative captions",
    "psnr_outside": "needs the reference and edited images",
    "recaption_target": "needs FilterConfig.recaptioner",
    "recaption_margin": "needs FilterConfig.recaptioner",
    "recaption_diff": "needs FilterConfig.recaptioner",
    "likelihood_edit": "needs FilterConfig.recaptioner and hard-negative captions",
    "likelihood_kept": "needs FilterConfig.recaptioner and hard-negative captions",
    "likelihood_margin": "needs FilterConfig.recaptioner and hard-negative captions",
    **{name: "needs FilterConfig.diffusion_judge and hard-negative captions"
       for name in ("diffusion_margin", "diffusion_edit", "diffusion_kept")},
    "learned": "needs FilterConfig.learned",
}


class EditFilter:
    """Scores and judges edited candidates in batches.

    Args:
        config: the rules and the models that score.
        editor: the run's ``CounterfactualEditor``, read as the diffusion judge when ``config.diffusion_judge`` is
            "editor" (or names the same model), so the model is not loaded twice.
    """

    def __init__(self, config: FilterConfig, editor: Any = None):
        self.config = config
        self.diffusion = None
        judge = config.diffusion_judge
        if config.diffusion_negatives is not None and config.diffusion_negatives < 0:
            raise ValueError(f"FilterConfig.diffusion_negatives must be >= 0 or None (all), got {config.diffusion_negatives}")
        if judge == "editor" and editor is None:
            raise ValueError('FilterConfig.diffusion_judge "editor" reads the candidates with the editing model: '
                             "pass it as EditFilter(config, editor=...)")
        if judge is not None:
            if editor is not None and judge in ("editor", editor.model_id):
                self.diffusion = editor
            else:
                from cirsynth.editing import CounterfactualEditor

                self.diffusion = CounterfactualEditor.from_pretrained(judge, device=config.device)
        self.clip = None
        if config.clip is not None:
            from cirsynth.models.clip import load_clip

            self.clip = load_clip(config.clip, device=config.device)
        self.recaptioner = None
        if config.recaptioner is not None:
            from cirsynth.captions.captioner import Captioner

            self.recaptioner = Captioner.from_pretrained(config.recaptioner, device=config.device)

    @property
    def model_id(self) -> str | None:
        return self.config.clip

    def _embed_images(self, images: Sequence[Image.Image]):
        import torch

        from cirsynth.models.clip import image_features

        model, proc = self.clip
        px = proc(images=list(images), return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
        with torch.no_grad():
            f = image_features(model, px).float()  # (B, D)
        return torch.nn.functional.normalize(f, dim=-1)

    def _embed_texts(self, texts: Sequence[str]):
        import torch

        from cirsynth.models.clip import text_features

        model, proc = self.clip
        out = []
        for b in range(0, len(texts), 256):  # in chunks: thousands of hard negatives at once would not fit in memory
            tok = proc.tokenizer(list(texts[b:b + 256]), padding=True, truncation=True, return_tensors="pt").to(model.device)
            with torch.no_grad():
                out.append(text_features(model, tok["input_ids"], tok.get("attention_mask")).float())  # (B, D)
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    def score(
        self,
        references: Sequence[Image.Image],
        edited: Sequence[Image.Image],
        source_captions: Sequence[str],
        target_captions: Sequence[str],
        source_words: Sequence[Sequence[str]],
        target_words: Sequence[Sequence[str]],
        masks: Sequence[np.ndarray | None],
        negatives: Sequence[Sequence[str]] | None = None,
        edit_types: Sequence[str | None] | None = None,
    ) -> list[FilterVerdict]:
        """Score N candidates (all sequences aligned) and apply the rules.

        Args:
            negatives: per candidate, hard-negative captions for ``caption_margin`` (None: not scored).
            edit_types: per candidate, its edit's type (``CaptionEdit.edit_type``), read by a learned model with
                per-type offsets (None: no offsets).
        """
        n = len(edited)
        types = [None] * n if edit_types is None else list(edit_types)
        if len(types) != n:  # before any model runs
            raise ValueError(f"EditFilter.score: {len(types)} edit_types for {n} candidates")
        scores: list[dict[str, float]] = [{} for _ in range(n)]
        for i in range(n):
            ref = np.asarray(references[i].convert("RGB").resize(edited[i].size))
            keep = None if masks[i] is None else ~np.asarray(masks[i], dtype=bool)
            if keep is not None and keep.shape != ref.shape[:2]:
                keep = np.asarray(Image.fromarray(keep.astype(np.uint8) * 255).resize(edited[i].size, Image.NEAREST)) > 0
            if keep is not None and not keep.any():
                keep = None  # the mask covers everything: judge the whole image
            scores[i]["psnr_outside"] = min(psnr(ref, np.asarray(edited[i].convert("RGB")), mask=keep), 99.0)
        if self.clip is not None and n:
            r, e = self._embed_images(references), self._embed_images(edited)
            s = self._embed_texts(source_captions)
            t = self._embed_texts(target_captions)
            sw = self._embed_texts([" ".join(w) or "." for w in source_words])
            tw = self._embed_texts([" ".join(w) or "." for w in target_words])
            d_img = torch_normalize(e - r)
            d_txt = torch_normalize(t - s)
            vals = {
                "clip_i2i": (r * e).sum(-1),
                "clip_src_text": (r * s).sum(-1),
                "clip_tgt_text": (e * t).sum(-1),
                "clip_dir": (d_img * d_txt).sum(-1),
                "words_margin": (e * tw).sum(-1) - (e * sw).sum(-1),
            }
            if negatives is not None:
                # each distinct caption embedded once: an edit's candidates share their negatives
                unique = list(dict.fromkeys(c for negs in negatives for c in negs))
                row = {c: k for k, c in enumerate(unique)}
                neg = self._embed_texts(unique) if unique else None  # (distinct captions, D)
                margins = []
                for i, negs in enumerate(negatives):
                    tgt = float(vals["clip_tgt_text"][i])
                    # no negative to beat: the lowest possible margin (cosines lie in [-1, 1]), so the rule fails
                    margins.append(tgt - float((neg[[row[c] for c in negs]] @ e[i]).max()) if negs else -2.0)
                vals["caption_margin"] = torch_tensor(margins)
            for name, v in vals.items():
                for i, x in enumerate(v.tolist()):
                    scores[i][name] = float(x)
        if self.recaptioner is not None and n:
            captions = self.recaptioner.caption(list(edited))
            unique = list({id(r): r for r in references}.values())  # candidates of one pair share its reference
            ref_caption = dict(zip([id(r) for r in unique], self.recaptioner.caption(unique)))
            for i, c in enumerate(captions):
                scores[i]["recaption_target"] = word_overlap(c, target_captions[i])
                scores[i]["recaption_margin"] = scores[i]["recaption_target"] - word_overlap(c, source_captions[i])
                scores[i]["recaption_diff"] = change_match(ref_caption[id(references[i])], c, source_captions[i],
                                                           target_captions[i])
            if negatives is not None:
                self._likelihood_scores(scores, references, edited, source_captions, target_captions, negatives)
        if self.diffusion is not None and negatives is not None and n:
            self._diffusion_scores(scores, references, edited, source_captions, target_captions, negatives)
        return [self.judge(sc, t) for sc, t in zip(scores, types)]

    def _diffusion_scores(self, scores: list[dict[str, float]], references: Sequence[Image.Image],
                          edited: Sequence[Image.Image], source_captions: Sequence[str],
                          target_captions: Sequence[str], negatives: Sequence[Sequence[str]]) -> None:
        """``diffusion_margin``, ``diffusion_edit`` and ``diffusion_kept`` into ``scores`` (module docstring): the
        reader scores of minus the judge's errors (the lower the error, the better the caption explains the image)."""
        from cirsynth.synth.judge import caption_errors

        judge, steps = self.diffusion, tuple(self.config.diffusion_timesteps)

        def read(images, lists):
            return [-e for e in caption_errors(judge, judge.prepare(list(images)), lists, steps)]

        self._reader_scores("diffusion", read, scores, references, edited, source_captions, target_captions, negatives,
                            self.config.diffusion_negatives)

    def _likelihood_scores(self, scores: list[dict[str, float]], references: Sequence[Image.Image],
                           edited: Sequence[Image.Image], source_captions: Sequence[str],
                           target_captions: Sequence[str], negatives: Sequence[Sequence[str]]) -> None:
        """``likelihood_edit``, ``likelihood_kept`` and ``likelihood_margin`` into ``scores`` (module docstring)."""
        self._reader_scores("likelihood", self.recaptioner.log_likelihood, scores, references, edited,
                            source_captions, target_captions, negatives)

    @staticmethod
    def _reader_scores(prefix: str, read: Any, scores: list[dict[str, float]], references: Sequence[Image.Image],
                       edited: Sequence[Image.Image], source_captions: Sequence[str], target_captions: Sequence[str],
                       negatives: Sequence[Sequence[str]], limit: int | None = None) -> None:
        """``{prefix}_edit``, ``_kept`` and ``_margin`` into ``scores`` from ``read(images, caption lists)``: per
        image, how well a reader finds each caption fits it (higher: better), read under T, S and the hard negatives
        other than S (the first ``limit`` of them; None: all), on each candidate and once on each reference."""
        lists = [[t, s, *[n for n in negs if n != s][:limit]]
                 for t, s, negs in zip(target_captions, source_captions, negatives)]
        on_edit = read(edited, lists)
        ref_key = [(id(r), tuple(c)) for r, c in zip(references, lists)]  # candidates of one pair share R and captions
        first: dict[tuple, int] = {}  # each (reference, captions) pair once, at its first candidate
        for i, k in enumerate(ref_key):
            first.setdefault(k, i)
        on_ref = dict(zip(first, read([references[i] for i in first.values()], [lists[i] for i in first.values()])))
        for i, (ge, key) in enumerate(zip(on_edit, ref_key)):
            margin, edit, kept = relative_scores(ge, on_ref[key])
            scores[i].update({f"{prefix}_edit": edit, f"{prefix}_kept": kept, f"{prefix}_margin": margin})

    def judge(self, scores: dict[str, float], edit_type: str | None = None) -> FilterVerdict:
        """Apply the rules to one candidate's scores (``edit_type``: its edit's, for a learned model's type offset)."""
        if self.config.learned is not None:
            p = learned_score(self.config.learned, scores, edit_type)
            scores = {**scores, **({} if p is None else {"learned": p})}
            if p is None and self.config.min_learned is not None:
                missing = [f for f in self.config.learned["features"] if f not in scores]
                return FilterVerdict(scores, [f"learned: scores {missing} missing (needs --recaptioner and negatives?)"])
        failed = []
        for name, attr in RULES:
            threshold = getattr(self.config, attr)
            if threshold is None:
                continue
            if name in scores:
                if scores[name] < threshold:
                    failed.append(f"{name} {scores[name]:.3f} < {threshold}")
            elif not (name in CLIP_SCORES and self.config.clip is None):  # no CLIP configured: no CLIP rules
                failed.append(f"{name}: not scored, so its rule (>= {threshold}) cannot pass ({MISSING_WHY[name]})")
        return FilterVerdict(scores, failed)


def relative_scores(on_edit: Sequence[float], on_ref: Sequence[float]) -> tuple[float, float, float]:
    """A reader's fit of T, S and the other negatives (in that order; higher: better, e.g. log-likelihoods, or minus
    a diffusion judge's errors) on the edit E and on the reference R -> ``(margin, edit, kept)``: how much better T
    fits E than the best of the rest; how much more E moved towards T than S, relative to R; and the least of that
    over the negatives other than S (0.0 without any)."""
    rel = [(on_edit[0] - on_edit[j]) - (on_ref[0] - on_ref[j]) for j in range(1, len(on_edit))]
    return float(on_edit[0] - max(on_edit[1:])), float(rel[0]), float(min(rel[1:])) if len(rel) > 1 else 0.0


def torch_normalize(x: Any):
    import torch

    return torch.nn.functional.normalize(x, dim=-1)


def torch_tensor(values: list[float]):
    import torch

    return torch.tensor(values)


def pick_best(verdicts: Sequence[FilterVerdict], rank_by: str = "clip_dir") -> int:
    """Index of the best candidate: passing ones first, then fewest failed rules, then highest ``rank_by`` score
    (then clip_dir, image-image similarity, PSNR outside the mask)."""
    def key(i: int):
        v = verdicts[i]
        s = v.scores
        return (v.passed, -len(v.failed), s.get(rank_by, 0.0), s.get("clip_dir", 0.0), s.get("clip_i2i", 0.0),
                s.get("psnr_outside", 0.0))

    return max(range(len(verdicts)), key=key)
