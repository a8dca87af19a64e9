import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cirsynth.cir import Combiner, CombinerConfig, batch_classification_loss, sum_combine, target_pad
from cirsynth.cir.preprocess import pad_image


def make(d=8, **kw):
    torch.manual_seed(0)
    return Combiner(CombinerConfig(feature_dim=d, projection_dim=16, hidden_dim=32, **kw)).eval()


def test_combine_shape_and_unit_norm():
    c = make()
    img, txt = torch.randn(5, 8), torch.randn(5, 8)
    q = c.combine(img, txt)
    assert q.shape == (5, 8)
    assert torch.allclose(q.norm(dim=-1), torch.ones(5), atol=1e-6)
    assert c(img, txt, torch.randn(5, 8)).shape == (5, 5)


def test_combine_is_mlp_output_plus_dynamic_mix():
    c = make()
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    lam = c.mixing_scalar(img, txt)  # (4, 1)
    assert lam.shape == (4, 1) and ((lam > 0) & (lam < 1)).all()
    joint = torch.cat([c.text_proj(txt), c.image_proj(img)], -1)
    expected = F.normalize(c.output(c.combine_mlp(joint)) + lam * txt + (1 - lam) * img, dim=-1)
    assert torch.allclose(c.combine(img, txt), expected, atol=1e-6)


@pytest.mark.parametrize("bias, which", [(50.0, "text"), (-50.0, "image")])
def test_mixing_scalar_selects_text_or_image(bias, which):
    c = make()
    with torch.no_grad():
        c.output.weight.zero_()
        c.output.bias.zero_()
        c.mix[3].weight.zero_()
        c.mix[3].bias.fill_(bias)  # sigmoid -> 1 (text) or 0 (image)
    img, txt = torch.randn(3, 8), torch.randn(3, 8)
    want = F.normalize(txt if which == "text" else img, dim=-1)
    assert torch.allclose(c.combine(img, txt), want, atol=1e-5)


def test_bad_shapes_fail_clearly():
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        make().combine(torch.randn(2, 8), torch.randn(2, 7))


def test_loss_is_cross_entropy_over_the_batch():
    q = F.normalize(torch.randn(6, 4), dim=-1)
    t = torch.randn(6, 4)
    logits = 10.0 * q @ F.normalize(t, dim=-1).T
    manual = -torch.log_softmax(logits, dim=1).diagonal().mean()
    assert torch.allclose(batch_classification_loss(q, t, 10.0), manual, atol=1e-6)
    # A query equal to its own target, with a large scale, gives near-zero loss.
    assert batch_classification_loss(F.normalize(t, dim=-1), t, 1000.0) < 1e-3


def test_sum_combine():
    i, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    assert torch.allclose(sum_combine(i, t), torch.tensor([[0.5**0.5, 0.5**0.5]]))


def test_target_pad():
    wide = Image.new("RGB", (100, 40), (255, 0, 0))
    padded = target_pad(wide, 1.25)
    assert padded.size == (100, 80) and max(padded.size) / min(padded.size) <= 1.25
    assert padded.getpixel((50, 0)) == (0, 0, 0) and padded.getpixel((50, 40)) == (255, 0, 0)
    near_square = Image.new("RGB", (50, 45))
    assert target_pad(near_square, 1.25) is near_square
    assert pad_image(Image.new("RGB", (30, 90)), "squarepad").size == (90, 90)
    with pytest.raises(ValueError, match="unknown mode"):
        pad_image(wide, "stretch")
