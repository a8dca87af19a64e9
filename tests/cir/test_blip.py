import pytest
import torch
import torch.nn.functional as F
from transformers import BlipConfig

from cirsynth.cir.blip import BlipCIR, BlipCIRConfig
from cirsynth.metrics.retrieval import recall_at_k

VOCAB, L = 100, 6


def tiny_blip_config(**text_kw) -> BlipConfig:
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, initializer_range=0.02)  # BLIP's vision default 1e-10 gives a dead ViT
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                encoder_hidden_size=32, max_position_embeddings=32, bos_token_id=1, sep_token_id=2, **text_kw)
    return BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)


def make(seed=0, **cfg_kw) -> BlipCIR:
    torch.manual_seed(seed)
    return BlipCIR.from_blip_config(tiny_blip_config(), BlipCIRConfig(embed_dim=16, **cfg_kw)).eval()


def batch(b=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(b, 3, 32, 32, generator=g)  # (B, 3, H, W)
    ids = torch.randint(3, VOCAB, (b, L), generator=g)  # (B, L)
    ids[:, 0] = 1  # a fixed first token, as BLIP's [ENC]
    mask = torch.ones(b, L, dtype=torch.long)
    mask[0, -2:] = 0  # one padded text
    tgt = torch.randn(b, 3, 32, 32, generator=g)
    return ref, ids, mask, tgt


def test_shapes_and_unit_norm():
    m = make()
    ref, ids, mask, tgt = batch(4)
    with torch.no_grad():
        q, t = m.compose(ref, ids, mask), m.encode_target(tgt)
    assert q.shape == (4, 16) and t.shape == (4, 16)
    assert torch.allclose(q.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(t.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert any(".crossattention." in n for n, _ in m.text_encoder.named_parameters())


def test_text_config_without_decoder_flag_still_gets_cross_attention():
    m = BlipCIR.from_blip_config(tiny_blip_config(is_decoder=False), BlipCIRConfig(embed_dim=16))
    assert all(hasattr(layer, "crossattention") for layer in m.text_encoder.encoder.layer)


def test_query_depends_on_reference_image_and_text():
    m = make()
    ref, ids, mask, _ = batch(4)
    with torch.no_grad():
        q = m.compose(ref, ids, mask)
        q_same = m.compose(ref.clone(), ids, mask)
        q_other_ref = m.compose(ref.flip(0), ids, mask)  # same texts, references permuted
        q_other_text = m.compose(ref, ids.flip(0), mask.flip(0))
    assert torch.allclose(q, q_same, atol=1e-6)
    assert (q - q_other_ref).norm(dim=-1).min() > 1e-3
    assert (q - q_other_text).norm(dim=-1).min() > 1e-3


def test_loss_is_cross_entropy_on_scaled_logits():
    m = make(temperature=0.2)
    ref, ids, mask, tgt = batch(4)
    with torch.no_grad():
        loss = m(ref, ids, mask, tgt)
        q, t = m.compose(ref, ids, mask), m.encode_target(tgt)
        logits = q @ t.T / 0.2  # (B, B)
        expected = (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
    assert loss.ndim == 0
    assert torch.allclose(loss, expected, atol=1e-5)


def test_temperature_is_learned_unless_fixed():
    assert make().log_temperature.requires_grad
    assert not make(learn_temperature=False).log_temperature.requires_grad
    with pytest.raises(ValueError):
        make(temperature=1.0)


def test_training_learns_a_tiny_retrieval_task():
    m = make().train()
    ref, ids, mask, tgt = batch(8, seed=3)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(60):
        loss = m(ref, ids, mask, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    m.eval()
    with torch.no_grad():
        q, t = m.compose(ref, ids, mask), m.encode_target(tgt)
    recall = recall_at_k(q.numpy(), t.numpy(), torch.arange(8).numpy(), ks=(1,), screen_dtype="float32")
    assert recall["R@1"] >= 75.0, recall



def test_checkpoint_round_trip_and_load_by_kind(tiny_blip_dir, tmp_path):
    from transformers import BlipForImageTextRetrieval

    from cirsynth.cir import load_cir_model

    from tests.cir.conftest import square

    torch.manual_seed(0)
    m = BlipCIR.from_pretrained(tiny_blip_dir, BlipCIRConfig(embed_dim=16, temperature=0.1))
    hf = BlipForImageTextRetrieval.from_pretrained(tiny_blip_dir)
    assert torch.equal(m.vision_model.embeddings.patch_embedding.weight,
                       hf.vision_model.embeddings.patch_embedding.weight)
    assert m.processor is not None and m.source == str(tiny_blip_dir.resolve())
    m.pad_mode = "squarepad"
    m.eval()
    images, texts = [square("red", 2, 3), square("blue", 10, 0)], ["make it blue", "change it to green"]
    q, t = m.encode_queries(images, texts), m.encode_images(images)  # (2, 16) each
    assert q.shape == t.shape == (2, 16)

    saved = m.save_pretrained(tmp_path / "ckpt")
    reloaded = BlipCIR.from_pretrained(saved)  # the whole model, head config included
    via_kind = load_cir_model(saved, device="cpu")  # dispatches on cir_model.json's kind
    assert isinstance(via_kind, BlipCIR) and not via_kind.training
    for again in (reloaded.eval(), via_kind):
        assert again.config == m.config and again.pad_mode == "squarepad" and again.source == m.source
        assert m.state_dict().keys() == again.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))
        assert torch.equal(again.encode_queries(images, texts), q) and torch.equal(again.encode_images(images), t)
    assert reloaded.fingerprint() == m.fingerprint()
    with torch.no_grad():
        reloaded.query_proj.weight.add_(1e-3)
    assert reloaded.fingerprint() != m.fingerprint()  # feature caches are keyed on the weights
