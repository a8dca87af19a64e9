"""LLM perturber: parsing, the resample-then-reject path (tiny random Llama), LoRA training on SmolLM2."""

import json

import pytest
import torch

from cirsynth.captions.llm import LLMConfig, LLMPerturber, parse_output, render_prompt
from cirsynth.captions.lora import LoRATrainConfig, read_edits, train_lora
from cirsynth.models.text import LoadedCausalLM, adapter_base_model, cache_root, gguf_folder, load_causal_lm, smollm2_path

TRAIN = [
    {"source_caption": "a red car on a street", "target_caption": "a blue car on a street", "edit_type": "color",
     "modification_text": "is blue instead of red", "source_words": ["red"], "target_words": ["blue"]},
    {"source_caption": "a dog on a couch", "target_caption": "a cat on a couch", "edit_type": "subject",
     "modification_text": "a cat instead of a dog", "source_words": ["dog"], "target_words": ["cat"]},
]


@pytest.fixture(scope="module")
def smol_tokenizer():
    from transformers import AutoTokenizer

    d, f = smollm2_path()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tok.padding_side = "left"
    return tok


def test_parse_output():
    assert parse_output("A blue car on a street.\nmore text", "a red car on a street") == "a blue car on a street"
    assert parse_output('Edited caption: "a blue car"', "a red car") == "a blue car"
    assert parse_output("  \n", "a red car") == ""
    assert parse_output("A blue car.", "A red car.") == "A blue car."


def test_random_llm_resamples_then_rejects_with_reason(smol_tokenizer):
    """A random LM never produces a valid edit: every request is retried, then rejected with the last reason."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=256)).eval()
    lm = LoadedCausalLM(model, smol_tokenizer, "tiny-random-llama")
    p = LLMPerturber(lm, LLMConfig(batch_size=3, max_attempts=2, max_new_tokens=6))
    calls = []
    generate = p._generate
    p._generate = lambda reqs, seed: calls.append(len(reqs)) or generate(reqs, seed)
    res = p.perturb(["a red car on a street", "", "a dog on a couch"], edit_types=["color"], n=2, seed=0)
    assert calls == [4, 4]  # 2 valid captions x 2 edits, sampled twice; the empty caption never reaches the LM
    assert res[1].rejected and res[1].reason == "empty caption"
    for r in (res[0], res[2]):
        assert r.rejected and r.reason.count("no valid color edit after 2 attempts (last: ") == 2


def test_prompt_names_edit_type(smol_tokenizer):
    text = render_prompt(smol_tokenizer, "a red car", "material")
    assert "Type: material" in text and "Caption: a red car" in text and text.endswith("assistant\n")


def test_gguf_is_dequantised_once_into_a_cached_folder_that_loads_the_same_model(smol_tokenizer):
    """SmolLM2's GGUF becomes a plain folder in cirsynth's cache: made once (atomically), then reused, holding exactly
    the weights and the tokenizer that transformers reads from the GGUF itself."""
    from transformers import AutoModelForCausalLM

    d, f = smollm2_path()
    folder = gguf_folder(d, f)
    assert folder.parent == cache_root() / "gguf" and (folder / "config.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    made = (folder / "config.json").stat().st_mtime_ns
    lm = load_causal_lm("smollm2", device="cpu")
    assert gguf_folder(d, f) == folder and (folder / "config.json").stat().st_mtime_ns == made  # reused, not rewritten
    assert lm.source == f"{d}::{f}"  # provenance names the GGUF the user asked for
    direct = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=f, dtype=torch.float32).state_dict()
    cached = lm.model.state_dict()
    assert direct.keys() == cached.keys() and all(torch.equal(direct[k], cached[k]) for k in direct)
    text = "a red car on a street, at sunset; the striped cube is bigger"
    assert lm.tokenizer(text)["input_ids"] == smol_tokenizer(text)["input_ids"]
    assert lm.tokenizer.eos_token == smol_tokenizer.eos_token


def test_an_unwritable_cache_is_named_in_the_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CIRSYNTH_CACHE", str(blocker / "cache"))
    with pytest.raises(OSError, match="set CIRSYNTH_CACHE to a writable folder"):
        load_causal_lm("smollm2", device="cpu")


@pytest.mark.slow
def test_lora_trains_saves_reloads_and_generates(tmp_path):
    data = tmp_path / "edits.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TRAIN) + '{"source_caption": "x", "rejected": true}\n')
    edits = read_edits(data)
    assert len(edits) == 2
    out = tmp_path / "adapter"
    summary = train_lora(edits, out, LoRATrainConfig(max_steps=2, batch_size=2, lr=1e-3, warmup_steps=1))
    assert summary["steps"] == 2 and summary["examples"] == 2 and summary["first_loss"] > 0
    assert (out / "adapter_model.safetensors").is_file() and adapter_base_model(out)["model"] == "smollm2"
    lm = load_causal_lm(None, adapter=out, device="cpu")  # base model taken from the adapter's metadata
    assert type(lm.model).__name__ == "PeftModelForCausalLM"
    lora_b = [p for n, p in lm.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained: LoRA B starts at zero
    p = LLMPerturber(lm, LLMConfig(max_attempts=1, max_new_tokens=16))
    raw = p._generate([("a red car on a street", "color"), ("a dog on a couch", "subject")], seed=0)
    assert len(raw) == 2 and all(parse_output(r, "a red car") for r in raw)
    res = p.perturb(["a red car on a street", "a dog on a couch"], edit_types=["color"], seed=0)
    for r in res:  # every caption got a validated edit or a reason
        assert (r.edits and r.edits[0].edit_type == "color") or "attempts" in r.reason


def test_read_edits_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**TRAIN[0], "edit_type": "colour"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: unknown edit type"):
        read_edits(bad)
    bad.write_text(json.dumps({**TRAIN[0], "extra": 1}) + "\n")
    with pytest.raises(ValueError, match="unknown fields"):
        read_edits(bad)
    bad.write_text("\n")
    with pytest.raises(ValueError, match="no caption edits"):
        read_edits(bad)
