"""Prompt-to-prompt (Hertz et al. 2022) as diffusers attention processors.

Pieces:
- token helpers: which prompt tokens a word occupies, and how target tokens align to source tokens;
- per-(image, edit) specs: ``AttentionReplace`` (word swap), ``AttentionRefine`` (words added/removed),
  ``AttentionReweight`` (scale chosen words' cross-attention), ``LocalBlend`` (edit only where the chosen words attend);
- ``P2PController``: applies a batch of those specs to the attention probabilities of one UNet call. The step index
  is set explicitly by the sampler (``begin_step``), never counted from layer calls;
- ``P2PAttnProcessor``: computes the probabilities, hands them to the controller and uses the tensor it returns.
  Layers whose maps nobody needs at this step delegate to the original processor (SDPA);
- ``p2p_attention``: installs the processors with ``unet.set_attn_processor`` and restores the originals, also on error.

Batch layout of a UNet call under a controller: ``[uncond rows ... | cond sources (S) | cond targets (J)]``; only the
conditional rows are edited (as in P2P). Target ``j`` edits against source row ``source_index[j]``.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------- tokens
def tokenize(tokenizer: Any, prompt: str) -> tuple[list[int], int]:
    """Token ids of ``prompt`` padded to ``tokenizer.model_max_length`` and the count of non-padding tokens.

    Padding is read from the attention mask, not from a pad id (SD-1.x's CLIP tokenizer pads with its EOS token).
    """
    enc = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    return list(enc["input_ids"]), int(sum(enc["attention_mask"]))


def word_token_indices(tokenizer: Any, prompt: str, word: str) -> list[int]:
    """Positions (in the padded sequence) of every occurrence of ``word``'s tokens in ``prompt``.

    A word may span several tokens (BPE / WordPiece pieces) or several words ("red car").

    Raises:
        ValueError: when the word's tokens do not occur in the prompt (or were truncated away).
    """
    return sorted({i for run in word_occurrences(tokenizer, prompt, word) for i in run})


def word_occurrences(tokenizer: Any, prompt: str, word: str) -> list[list[int]]:
    """Each occurrence of ``word``'s tokens in ``prompt`` as its own list of positions.

    Raises:
        ValueError: when the word has no tokens, or its tokens do not occur in the prompt (or were truncated away).
    """
    ids, n = tokenize(tokenizer, prompt)
    piece = list(tokenizer(word, add_special_tokens=False)["input_ids"])
    if not piece:
        raise ValueError(f"word {word!r} has no tokens")
    starts = [i for i in range(n - len(piece) + 1) if ids[i : i + len(piece)] == piece]
    if not starts:
        raise ValueError(f"word {word!r} does not occur in prompt {prompt!r} (after tokenization/truncation)")
    return [list(range(i, i + len(piece))) for i in starts]


def changed_positions(tokenizer: Any, source: str, target: str) -> tuple[set[int], set[int]]:
    """The token positions of ``source`` and of ``target`` outside their longest common blocks: where the edit is."""
    (src, n_src), (tgt, n_tgt) = tokenize(tokenizer, source), tokenize(tokenizer, target)
    matcher = difflib.SequenceMatcher(None, src[:n_src], tgt[:n_tgt], autojunk=False)
    same_src = {b.a + k for b in matcher.get_matching_blocks() for k in range(b.size)}
    same_tgt = {b.b + k for b in matcher.get_matching_blocks() for k in range(b.size)}
    return set(range(n_src)) - same_src, set(range(n_tgt)) - same_tgt


def edited_word_indices(tokenizer: Any, prompt: str, word: str, changed: set[int]) -> list[int]:
    """Positions of ``word`` in ``prompt``, only its occurrences that touch the ``changed`` positions when some do
    ("large" in "a large cube and a large ball" -> "a small cube and a large ball" is the first one), else all.

    Raises:
        ValueError: when the word does not occur in the prompt (as ``word_token_indices``).
    """
    runs = word_occurrences(tokenizer, prompt, word)
    edited = [r for r in runs if changed & set(r)]
    return sorted({i for r in (edited or runs) for i in r})


def align_tokens(source_ids: Sequence[int], n_source: int, target_ids: Sequence[int], n_target: int):
    """Align target tokens to source tokens (longest-common-subsequence blocks, ``difflib``).

    Args:
        source_ids, target_ids: padded token ids, both of length L.
        n_source, n_target: non-padding lengths.

    Returns:
        ``(mapper, alpha)``, both (L,): target position ``p`` takes source position ``mapper[p]`` when
        ``alpha[p] == 1``; tokens with no counterpart (new words) have ``alpha 0`` and keep their own attention.
        Padding positions align end-to-end (their maps carry much of SD's attention mass).
    """
    length = len(target_ids)
    if len(source_ids) != length:
        raise ValueError(f"token sequences differ in padded length: {len(source_ids)} vs {length}")
    mapper = torch.arange(length)
    alpha = torch.zeros(length)
    matcher = difflib.SequenceMatcher(None, list(source_ids[:n_source]), list(target_ids[:n_target]), autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            mapper[block.b + k] = block.a + k
            alpha[block.b + k] = 1.0
    for p in range(n_target, length):  # padding tail, aligned from the end of the real tokens
        mapper[p] = min(p - n_target + n_source, length - 1)
        alpha[p] = 1.0
    return mapper, alpha


# ----------------------------------------------------------------------------------------------- specs
@dataclass
class AttentionReplace:
    """Word swap with the same token count: the target takes the source's cross-attention maps position by position.

    Attributes:
        mapper: (L,) long, identity.
        alpha: (L,) float, all ones.
    """

    mapper: torch.Tensor
    alpha: torch.Tensor
    name = "replace"

    @classmethod
    def from_prompts(cls, tokenizer: Any, source: str, target: str) -> "AttentionReplace":
        src, n_src = tokenize(tokenizer, source)
        tgt, n_tgt = tokenize(tokenizer, target)
        if n_src != n_tgt:
            raise ValueError(
                f"AttentionReplace needs prompts with equal token counts; {source!r} has {n_src}, "
                f"{target!r} has {n_tgt}. Use AttentionRefine for added/removed words."
            )
        return cls(mapper=torch.arange(len(tgt)), alpha=torch.ones(len(tgt)))


@dataclass
class AttentionRefine:
    """Added/removed words: aligned target tokens take their source token's map, new tokens keep their own.

    Attributes:
        mapper: (L,) long, source position per target position (see ``align_tokens``).
        alpha: (L,) float, 1 for aligned tokens, 0 for new ones.
    """

    mapper: torch.Tensor
    alpha: torch.Tensor
    name = "refine"

    @classmethod
    def from_prompts(cls, tokenizer: Any, source: str, target: str) -> "AttentionRefine":
        src, n_src = tokenize(tokenizer, source)
        tgt, n_tgt = tokenize(tokenizer, target)
        mapper, alpha = align_tokens(src, n_src, tgt, n_tgt)
        return cls(mapper=mapper, alpha=alpha)


def cross_attention_edit(tokenizer: Any, source: str, target: str, mode: str = "auto"):
    """``AttentionReplace`` when the token counts match (``mode="auto"``), else ``AttentionRefine``."""
    if mode == "replace":
        return AttentionReplace.from_prompts(tokenizer, source, target)
    if mode == "refine":
        return AttentionRefine.from_prompts(tokenizer, source, target)
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'replace' or 'refine', got {mode!r}")
    if tokenize(tokenizer, source)[1] == tokenize(tokenizer, target)[1]:
        return AttentionReplace.from_prompts(tokenizer, source, target)
    return AttentionRefine.from_prompts(tokenizer, source, target)


@dataclass
class AttentionReweight:
    """Scale the cross-attention of chosen target-prompt words (P2P's equalizer), during the cross-replace window.

    Attributes:
        equalizer: (L,) float, 1 except at the chosen words' tokens.
    """

    equalizer: torch.Tensor

    @classmethod
    def from_words(cls, tokenizer: Any, prompt: str, weights: dict[str, float],
                   source: str | None = None) -> "AttentionReweight":
        """``source``: the prompt ``prompt`` edits; a word that also occurs outside the edit is then scaled only
        where the edit changed it (see ``edited_word_indices``)."""
        ids, _ = tokenize(tokenizer, prompt)
        changed = changed_positions(tokenizer, source, prompt)[1] if source is not None else set()
        eq = torch.ones(len(ids))
        for word, scale in weights.items():
            eq[edited_word_indices(tokenizer, prompt, word, changed)] = float(scale)
        return cls(equalizer=eq)


@dataclass
class LocalBlend:
    """Edit only where the chosen words attend; elsewhere the target latents are the source latents.

    The mask is the union of the source branch's map for ``source_words`` and the target branch's map for
    ``target_words``, accumulated over layers and steps, max-pooled (3x3), normalised by its maximum and thresholded.
    ``keep_words`` (source-prompt words whose regions must stay as they are, e.g. the objects of a background edit)
    take their own source map out of the mask, pooled wider and thresholded lower (``keep_threshold``; the
    controller's ``keep_pool``) since a kept object cut short is a broken edit; with keep words and no changed words
    the mask is everything but the kept regions.

    Attributes:
        source_tokens: (L,) 0/1 weights selecting the source words' tokens in the source prompt.
        target_tokens: (L,) 0/1 weights selecting the target words' tokens in the target prompt.
        threshold: mask threshold on the normalised map (P2P uses 0.3).
        keep_tokens: (L,) 0/1 weights selecting the kept words' tokens in the source prompt (zeros: nothing kept).
        keep_threshold: threshold of the kept words' normalised map (``None``: ``threshold``).
        pin: pin the target latents to the source outside the mask while sampling (LocalBlend proper); False only
            measures the mask (for ``EditorConfig.paste`` and the result's masks), so an edit that must grow past
            its source words' region (a larger object, another shape) can, and pasting restores the rest.
    """

    source_tokens: torch.Tensor
    target_tokens: torch.Tensor
    threshold: float = 0.3
    keep_tokens: torch.Tensor | None = None
    pin: bool = True
    keep_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.keep_threshold is None:
            self.keep_threshold = self.threshold

    @classmethod
    def from_words(
        cls,
        tokenizer: Any,
        source_prompt: str,
        target_prompt: str,
        source_words: Sequence[str],
        target_words: Sequence[str],
        threshold: float = 0.3,
        keep_words: Sequence[str] = (),
        pin: bool = True,
        keep_threshold: float | None = None,
    ) -> "LocalBlend":
        if not source_words and not target_words and not keep_words:
            raise ValueError("LocalBlend needs at least one source, target or keep word")
        overlap = set(keep_words) & (set(source_words) | set(target_words))
        if overlap:
            raise ValueError(f"LocalBlend: {sorted(overlap)} both changed and kept")
        length = len(tokenize(tokenizer, source_prompt)[0])
        src, tgt, keep = torch.zeros(length), torch.zeros(length), torch.zeros(length)
        changed_src, changed_tgt = changed_positions(tokenizer, source_prompt, target_prompt)
        for word in source_words:  # the occurrence the edit changes, not every one of the same word
            src[edited_word_indices(tokenizer, source_prompt, word, changed_src)] = 1.0
        for word in target_words:
            tgt[edited_word_indices(tokenizer, target_prompt, word, changed_tgt)] = 1.0
        for word in keep_words:
            keep[word_token_indices(tokenizer, source_prompt, word)] = 1.0
        return cls(source_tokens=src, target_tokens=tgt, threshold=threshold, keep_tokens=keep, pin=pin,
                   keep_threshold=keep_threshold)


@dataclass
class PairEdit:
    """Everything the controller needs for one target branch.

    Attributes:
        source_index: which source row (0..S-1) this target edits against.
        cross: the cross-attention edit (replace or refine).
        reweight: optional per-token scaling.
        blend: optional local blend.
        cross_steps: cross-attention is edited for steps ``< cross_steps``.
        self_steps: self-attention is replaced for steps ``< self_steps``.
        start_seed: ``None``: the target branch starts from the source's inverted noise; else from fresh Gaussian
            noise drawn with this seed, sampled with the plain empty-prompt unconditional (see
            ``CounterfactualEditor.edit(start_noise=)``).
        skip_steps: the target branch follows its source branch for the first ``skip_steps`` steps and is edited only
            from there on (edit-friendly DDPM inversion's T_skip; ``CounterfactualEditor.edit(skip_steps=)``).
    """

    source_index: int
    cross: AttentionReplace | AttentionRefine
    reweight: AttentionReweight | None = None
    blend: LocalBlend | None = None
    cross_steps: int = 0
    self_steps: int = 0
    start_seed: int | None = None
    skip_steps: int = 0


# ----------------------------------------------------------------------------------------------- controller
class P2PController:
    """Applies a batch of ``PairEdit``s to attention probabilities; accumulates LocalBlend maps.

    Args:
        edits: one per target branch (J).
        num_sources: S, the count of source rows.
        latent_hw: latent (h, w), to lay queries out spatially.
        self_max_tokens: self-attention is replaced only in layers with at most this many queries (P2P skips the
            high-resolution layers; their maps are large and carry little layout).
        blend_grid: (gh, gw) grid the cross-attention maps are pooled onto for LocalBlend.
        device: where the per-target tensors live.
        keep_pool: max-pool kernel (odd, in grid cells) of the kept words' maps; the changed words' take 3 (P2P).
    """

    def __init__(
        self,
        edits: Sequence[PairEdit],
        num_sources: int,
        latent_hw: tuple[int, int],
        self_max_tokens: int,
        blend_grid: tuple[int, int],
        device: torch.device,
        keep_pool: int = 3,
    ) -> None:
        if keep_pool < 1 or keep_pool % 2 == 0:
            raise ValueError(f"keep_pool is an odd kernel size >= 1, got {keep_pool}")
        self.keep_pool = keep_pool
        self.num_sources = num_sources
        self.num_targets = len(edits)
        self.latent_hw = latent_hw
        self.self_max_tokens = self_max_tokens
        self.blend_grid = blend_grid
        self.source_index = torch.tensor([e.source_index for e in edits], device=device)  # (J,)
        self.mapper = torch.stack([e.cross.mapper for e in edits]).to(device)  # (J, L)
        self.alpha = torch.stack([e.cross.alpha for e in edits]).to(device)  # (J, L)
        self.equalizer = torch.stack(
            [e.reweight.equalizer if e.reweight is not None else torch.ones_like(e.cross.alpha) for e in edits]
        ).to(device)  # (J, L)
        self.cross_steps = torch.tensor([e.cross_steps for e in edits], device=device)  # (J,)
        self.self_steps = torch.tensor([e.self_steps for e in edits], device=device)  # (J,)
        self.has_blend = torch.tensor([e.blend is not None for e in edits], device=device)  # (J,)
        self.pin = torch.tensor([e.blend is not None and e.blend.pin for e in edits], device=device)  # (J,)
        zeros = torch.zeros_like(self.alpha)
        self.blend_src = torch.stack([e.blend.source_tokens.to(device) if e.blend else z for e, z in zip(edits, zeros)])
        self.blend_tgt = torch.stack([e.blend.target_tokens.to(device) if e.blend else z for e, z in zip(edits, zeros)])
        self.blend_keep = torch.stack([e.blend.keep_tokens.to(device) if e.blend and e.blend.keep_tokens is not None
                                       else z for e, z in zip(edits, zeros)])
        self.has_keep = self.blend_keep.sum(-1) > 0  # (J,)
        self.has_change = (self.blend_src.sum(-1) + self.blend_tgt.sum(-1)) > 0  # (J,)
        self.threshold = torch.tensor([e.blend.threshold if e.blend else 0.0 for e in edits], device=device)  # (J,)
        self.keep_threshold = torch.tensor([e.blend.keep_threshold if e.blend else 0.0 for e in edits], device=device)
        self.maps_src = torch.zeros(self.num_targets, 1, *blend_grid, device=device)  # (J, 1, gh, gw) accumulated
        self.maps_tgt = torch.zeros_like(self.maps_src)
        self.maps_keep = torch.zeros_like(self.maps_src)
        self.step = 0
        self.cond_offset = 0
        self._cross_active = torch.zeros(self.num_targets, dtype=torch.bool, device=device)
        self._self_active = torch.zeros_like(self._cross_active)

    # -- explicit state
    def begin_step(self, step: int, cond_offset: int) -> None:
        """Set the denoising step index and the row where the conditional block starts."""
        self.step = step
        self.cond_offset = cond_offset
        self._cross_active = step < self.cross_steps  # (J,)
        self._self_active = step < self.self_steps  # (J,)
        self._any_cross = bool(self._cross_active.any())
        self._any_self = bool(self._self_active.any())
        self._any_blend = bool(self.has_blend.any())

    def wants(self, is_cross: bool, num_queries: int) -> bool:
        """Whether a layer must expose its probabilities at this step (else it keeps its fast processor)."""
        if is_cross:
            return self._any_cross or self._any_blend
        return self._any_self and num_queries <= self.self_max_tokens

    # -- the edit
    def __call__(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        """Edit attention probabilities.

        Args:
            probs: (B, heads, Q, K) with B = cond_offset + S + J.

        Returns:
            (B, heads, Q, K), the target rows edited; the processor multiplies this tensor with the values.
        """
        off, S, J = self.cond_offset, self.num_sources, self.num_targets
        if probs.shape[0] != off + S + J:
            raise RuntimeError(f"controller expected batch {off + S + J}, got {probs.shape[0]}")
        base = probs[off + self.source_index]  # (J, heads, Q, K) source maps per target
        tgt = probs[off + S :]  # (J, heads, Q, K)
        if is_cross:
            if self._any_blend:
                self._collect_blend_maps(base, tgt)
            if not self._any_cross:
                return probs
            index = self.mapper[:, None, None, :].expand_as(base)  # (J, heads, Q, L)
            mapped = base.gather(-1, index)  # (J, heads, Q, L)
            alpha = self.alpha[:, None, None, :].to(probs.dtype)  # (J, 1, 1, L)
            new = (mapped * alpha + tgt * (1 - alpha)) * self.equalizer[:, None, None, :].to(probs.dtype)
            active = self._cross_active
        else:
            new = base
            active = self._self_active
        probs[off + S :] = torch.where(active[:, None, None, None], new, tgt)
        return probs

    def _collect_blend_maps(self, base: torch.Tensor, tgt: torch.Tensor) -> None:
        """Add this layer's word maps (pre-edit, averaged over heads) to the LocalBlend accumulators."""
        J, _, Q, _ = base.shape
        h, w = self.latent_hw
        scale = (h * w / Q) ** 0.5
        res = (round(h / scale), round(w / scale))
        for probs, weights, acc in ((base, self.blend_src, self.maps_src), (tgt, self.blend_tgt, self.maps_tgt),
                                    (base, self.blend_keep, self.maps_keep)):
            m = torch.einsum("jhqk,jk->jq", probs.float(), weights) / probs.shape[1]  # (J, Q)
            m = F.interpolate(m.reshape(J, 1, *res), size=self.blend_grid, mode="area")  # (J, 1, gh, gw)
            acc += m

    def blend(self, x_src: torch.Tensor, x_tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LocalBlend: keep the source latents outside the mask (for targets whose blend pins).

        Args:
            x_src: (S, C, h, w) source latents after this step.
            x_tgt: (J, C, h, w) target latents after this step.

        Returns:
            ``(x_tgt, mask, kept)``: blended (J, C, h, w) latents; the (J, 1, h, w) bool mask (all True for targets
            without LocalBlend; the measured mask for blends that do not pin, whose latents are left as they are);
            the (J, 1, h, w) bool regions of the kept words (all False where nothing is kept), which the mask excludes.
        """
        J = self.num_targets
        words = F.max_pool2d(torch.cat([self.maps_src, self.maps_tgt]), kernel_size=3, stride=1, padding=1)
        keep = F.max_pool2d(self.maps_keep, kernel_size=self.keep_pool, stride=1, padding=self.keep_pool // 2)
        maps = F.interpolate(torch.cat([words, keep]), size=x_tgt.shape[-2:], mode="nearest")  # (3J, 1, h, w)
        maps = maps / maps.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        above = maps > torch.cat([self.threshold, self.threshold, self.keep_threshold])[:, None, None, None]
        changed = above[:J] | above[J : 2 * J] | ~self.has_change[:, None, None, None]  # no changed words: all
        kept = above[2 * J :] & self.has_keep[:, None, None, None] & self.has_blend[:, None, None, None]
        mask = (changed & ~kept) | ~self.has_blend[:, None, None, None]  # (J, 1, h, w)
        free = mask | ~self.pin[:, None, None, None]
        return torch.where(free, x_tgt, x_src[self.source_index]), mask, kept


# ----------------------------------------------------------------------------------------------- processor
class P2PAttnProcessor:
    """Attention processor that exposes probabilities to a ``P2PController`` and uses what it returns.

    Mirrors diffusers' ``AttnProcessor`` maths (spatial/group norm, residual, rescale); when the controller does not
    need this layer's maps at the current step it calls ``fallback`` (the layer's original, usually SDPA, processor).
    """

    def __init__(self, controller: P2PController, fallback: Any) -> None:
        self.controller = controller
        self.fallback = fallback

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        is_cross = encoder_hidden_states is not None
        num_queries = hidden_states.shape[1] if hidden_states.ndim == 3 else hidden_states.shape[2] * hidden_states.shape[3]
        if not self.controller.wants(is_cross, num_queries):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)  # (B, Q, C)
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)  # (B, Q, inner)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B*heads, K, d)
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))  # (B*heads, K, d)
        query = attn.head_to_batch_dim(query)  # (B*heads, Q, d)

        probs = attn.get_attention_scores(query, key, attention_mask)  # (B*heads, Q, K)
        heads = attn.heads
        probs = self.controller(probs.view(batch, heads, *probs.shape[1:]), is_cross)  # (B, heads, Q, K)
        probs = probs.reshape(batch * heads, *probs.shape[2:])  # (B*heads, Q, K)

        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))  # (B, Q, inner)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))  # projection, dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextlib.contextmanager
def p2p_attention(unet: Any, controller: P2PController) -> Iterator[None]:
    """Install ``P2PAttnProcessor``s on every attention layer of ``unet``; restore the originals on exit or error."""
    original = dict(unet.attn_processors)
    unet.set_attn_processor({name: P2PAttnProcessor(controller, proc) for name, proc in original.items()})
    try:
        yield
    finally:
        unet.set_attn_processor(dict(original))  # set_attn_processor pops from the dict it is given
