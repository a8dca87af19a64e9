import inspect
import json

import numpy as np
import yaml
import pytest
import torch

from cirsynth.commands.world import train_diffusion
from cirsynth.world.diffusion import WorldDiffusionConfig, psnr

def test_train_command_saves_a_loadable_stable_diffusion_folder(tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    from cirsynth.cli import main

    out = tmp_path / "sd"
    args = ["world", "train", "diffusion", str(out), "--image_size", "32", "--vae_channels", "[8, 16, 16]",
            "--unet_channels", "[16, 32]", "--norm_num_groups", "8", "--max_length", "24", "--num_scenes", "8",
            "--num_eval", "4", "--vae_steps", "2", "--unet_steps", "2", "--batch_size", "4", "--vae_batch_size", "4", "--latent_channels", "4",
            "--log_every", "1", "--vae_eval_every", "1", "--save_every", "1", "--decoder_steps", "2"]
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "unet step 2/2" in log and "vae step 1: held-out PSNR" in log and "decoder step 2/2" in log
    ckpt = tmp_path / "sd.ckpt"  # the mid-training checkpoint (after UNet step 1) is a whole pipeline too
    assert f"checkpoint at unet step 1: {ckpt}" in log
    assert StableDiffusionPipeline.from_pretrained(ckpt, safety_checker=None).unet.config.in_channels == 4
    assert not (tmp_path / "sd.ckpt.tmp").exists() and not (tmp_path / "sd.tmp").exists()
    report = json.loads((out / "training_report.json").read_text())
    assert np.isfinite(report["unet"]["loss_last50"]) and np.isfinite(report["vae"]["eval_psnr_db"])
    card = json.loads((out / "card.json").read_text())
    assert card["command"].startswith(f"cirsynth world train diffusion {out} --vae_steps 2 --unet_steps 2")
    assert (out / "README.md").is_file()
    saved = yaml.safe_load((out / "cirsynth.world-train-diffusion.yaml").read_text())
    assert set(saved) == set(inspect.signature(train_diffusion).parameters)  # rerunnable with --config

    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    assert type(pipe.text_encoder).__name__ == "BertModel"
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 384
    assert pipe.vae.config.scaling_factor == pytest.approx(report["vae"]["scaling_factor"])
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the world's latents, not SD's constant
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a small red matte plain circle in the middle, on grass, at midday", num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def test_config_is_checked():
    with pytest.raises(ValueError, match="norm_num_groups"):
        WorldDiffusionConfig(vae_channels=(12, 16, 16), norm_num_groups=8)
    with pytest.raises(ValueError, match="save_dtype"):
        WorldDiffusionConfig(save_dtype="bfloat16")
    assert WorldDiffusionConfig().latent_size == 16


def test_psnr_matches_its_definition():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[1] += 0.2  # mse 0.04 on a peak-to-peak range of 2: 10 log10(4 / 0.04) = 20 dB
    b[0] += 0.02
    assert psnr(a, b).tolist() == pytest.approx([40.0, 20.0], abs=1e-4)


def test_decoder_finetuning_leaves_encoder_and_latents_unchanged():
    from cirsynth.world.diffusion import build_pipeline, finetune_decoder, object_band_weight, world_images_and_captions

    cfg = WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8,
                               max_length=24, decoder_steps=3, vae_batch_size=4, log_every=1)
    vae = build_pipeline(cfg).vae
    pixels, _ = world_images_and_captions(8, 0, 32)
    enc = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    with torch.no_grad():
        z0 = vae.encode(pixels).latent_dist.mean
    report = finetune_decoder(vae, pixels, pixels[:4], cfg, log=lambda s: None)
    assert all(torch.equal(enc[k], v) for k, v in vae.encoder.state_dict().items())
    assert any(not torch.equal(dec[k], v) for k, v in vae.decoder.state_dict().items())
    with torch.no_grad():
        assert torch.equal(vae.encode(pixels).latent_dist.mean, z0)
    assert all(p.requires_grad for p in vae.parameters())  # trainable again for whoever goes on
    assert np.isfinite(report["eval_psnr_db"]) and np.isfinite(report["eval_band_psnr_db_before"])
    w = object_band_weight(64, 4.0).view(-1)
    assert w.shape == (64,) and w.min() >= 1.0 and w.argmax() in (35, 36) and w[0] < 1.01
