import inspect
import json

import numpy as np
import yaml
import pytest
import torch

from cirsynth.commands.world import train_diffusion
from cirsynth.models.diffusion import PACKAGED_WEIGHTS, load_sd_pipeline
from cirsynth.models.text import minilm_dir
from cirsynth.world.diffusion import WorldDiffusionConfig, psnr
from cirsynth.world.render import object_mask, object_masks, render_array
from cirsynth.world.scene import COLORS, random_scene

# a world model small enough to train in seconds (latent_channels last: tests swap it)
SMALL = ["--image_size", "32", "--vae_channels", "[8, 16, 16]", "--unet_channels", "[16, 32]", "--norm_num_groups", "8",
         "--max_length", "24", "--num_scenes", "8", "--num_eval", "4", "--batch_size", "4", "--vae_batch_size", "4",
         "--log_every", "1", "--latent_channels", "4"]


def test_train_command_saves_a_loadable_stable_diffusion_folder(tmp_path, capsys):
    from diffusers import StableDiffusionPipeline
    from transformers import BertModel

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
    assert load_sd_pipeline(ckpt, device="cpu").unet.config.in_channels == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd", "sd.ckpt"]  # no staging or swapped-out folder left
    report = json.loads((out / "training_report.json").read_text())
    assert 0.0 < report["unet"]["held_out_object_word_attention_inside"] < 1.0  # measured on the 8x8 layers
    assert np.isfinite(report["unet"]["loss_last50"]) and np.isfinite(report["vae"]["eval_psnr_db"])
    card = json.loads((out / "card.json").read_text())
    assert card["command"].startswith(f"cirsynth world train diffusion {out} --vae_steps 2 --unet_steps 2")
    assert (out / "README.md").is_file()
    saved = yaml.safe_load((out / "cirsynth.world-train-diffusion.yaml").read_text())
    assert set(saved) == set(inspect.signature(train_diffusion).parameters)  # rerunnable with --config

    # the frozen MiniLM is not copied into the folder: it points to the package's weights, and loads back from there
    assert not list((out / "text_encoder").glob("*.safetensors")) and (out / "text_encoder" / PACKAGED_WEIGHTS).is_file()
    with pytest.raises(OSError):  # plain diffusers needs the text encoder passed in (the module docstring says how)
        StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    pipe = load_sd_pipeline(out, device="cpu")
    assert type(pipe.text_encoder).__name__ == "BertModel"
    packaged = BertModel.from_pretrained(minilm_dir()).state_dict()
    assert all(torch.equal(v, packaged[k]) for k, v in pipe.text_encoder.state_dict().items())
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 384
    assert pipe.vae.config.scaling_factor == pytest.approx(report["vae"]["scaling_factor"])
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the world's latents, not SD's constant
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a small red matte plain circle in the middle, on grass, at midday", num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def test_unet_stage_can_start_from_a_trained_vae(tmp_path, capsys):
    from diffusers import AutoencoderKL

    from cirsynth.cli import main

    assert main(["world", "train", "diffusion", str(tmp_path / "a"), "--vae_steps", "2", "--unet_steps", "0", *SMALL]) == 0
    capsys.readouterr()
    assert main(["world", "train", "diffusion", str(tmp_path / "b"), "--init_vae", str(tmp_path / "a" / "vae"),
                 "--vae_steps", "0", "--unet_steps", "2", *SMALL]) == 0
    assert "vae from" in capsys.readouterr().out
    card = json.loads((tmp_path / "b" / "card.json").read_text())  # the VAE's own recipe travels with the model
    assert card["vae_from"]["command"] == json.loads((tmp_path / "a" / "card.json").read_text())["command"]
    assert "--vae_steps 2" in card["vae_from"]["command"] and "--init_vae" in card["command"]
    readme = (tmp_path / "b" / "README.md").read_text()
    assert "## vae_from" in readme and card["vae_from"]["command"] in readme
    a, b = (AutoencoderKL.from_pretrained(tmp_path / n / "vae") for n in "ab")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.config.scaling_factor == b.config.scaling_factor
    assert main(["world", "train", "diffusion", str(tmp_path / "c"), "--init_vae", str(tmp_path / "a" / "vae"),
                 "--vae_steps", "0", "--unet_steps", "1", *SMALL[:-2], "--latent_channels", "8"]) == 2
    assert "latent channels" in capsys.readouterr().err


def test_unet_stage_can_go_on_training_a_trained_unet_and_cards_keep_the_recipe(tmp_path, capsys):
    from diffusers import UNet2DConditionModel

    from cirsynth.cli import main

    assert main(["world", "train", "diffusion", str(tmp_path / "a"), "--vae_steps", "2", "--unet_steps", "2", *SMALL]) == 0
    go_on = ["--vae_steps", "0", "--unet_steps", "2", "--ema_decay", "0.9", "--snr_gamma", "5", "--noise_offset", "0.1"]
    assert main(["world", "train", "diffusion", str(tmp_path / "b"), "--init_vae", str(tmp_path / "a" / "vae"),
                 "--init_unet", str(tmp_path / "a" / "unet"), *go_on, *SMALL]) == 0
    assert main(["world", "train", "diffusion", str(tmp_path / "c"), "--init_vae", str(tmp_path / "b" / "vae"),
                 "--init_unet", str(tmp_path / "b" / "unet"), *go_on, *SMALL]) == 0
    capsys.readouterr()
    cards = {n: json.loads((tmp_path / n / "card.json").read_text()) for n in "abc"}
    # b went on from a's UNet; c from b's, which went on from a's: the whole chain travels with the model
    assert cards["b"]["unet_from"]["command"] == cards["a"]["command"]
    assert cards["c"]["unet_from"]["command"] == cards["b"]["command"]
    assert "--noise_offset 0.1" in cards["b"]["command"] and "--noise_offset 0.0" in cards["a"]["command"]
    assert cards["c"]["unet_from"]["unet_from"]["command"] == cards["a"]["command"]
    # the VAE was trained only by a: b's and c's cards both name a's command for it, not b's
    assert cards["b"]["vae_from"]["command"] == cards["c"]["vae_from"]["command"] == cards["a"]["command"]
    assert "unet_loss_last50" in cards["c"]["unet_from"]["quality"] and "## unet_from" in (tmp_path / "c" / "README.md").read_text()
    a, b = (UNet2DConditionModel.from_pretrained(tmp_path / n / "unet") for n in "ab")
    assert a.config.block_out_channels == b.config.block_out_channels
    assert any(not torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())  # it trained on
    assert main(["world", "train", "diffusion", str(tmp_path / "d"), "--init_unet", str(tmp_path / "a" / "unet"),
                 "--vae_steps", "1", "--unet_steps", "1", *SMALL[:-2], "--latent_channels", "8"]) == 2
    assert "latent channels" in capsys.readouterr().err  # refused before rendering or training anything
    assert not (tmp_path / "d").exists()


def test_ema_weights_are_saved_and_lag_the_raw_weights():
    from cirsynth.world.diffusion import build_pipeline, encode_prompts, train_unet, world_images_and_captions

    cfg = WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8,
                               max_length=24, latent_channels=4, unet_steps=6, batch_size=4, log_every=3, unet_lr=1e-3)
    pixels, captions, _, _ = world_images_and_captions(6, 2, 32)
    runs = {}
    for decay in (0.0, 0.99):
        pipe = build_pipeline(cfg)  # same seed: the same start
        with torch.no_grad():
            latents = pipe.vae.encode(pixels).latent_dist.mean
        start = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
        cfg.ema_decay = decay
        train_unet(pipe, latents, encode_prompts(pipe, captions), encode_prompts(pipe, [""]), cfg, lambda _: None)
        runs[decay] = pipe.unet.state_dict()
    raw, ema = runs[0.0], runs[0.99]
    moved = lambda w: sum(float((w[k] - start[k]).norm() ** 2) for k in start) ** 0.5  # noqa: E731
    assert 0.0 < moved(ema) < moved(raw)  # an average of the trajectory: it moved, less far than the last step


def test_min_snr_weights_cut_only_the_nearly_clean_steps():
    from diffusers import DDPMScheduler

    from cirsynth.world.diffusion import build_pipeline, min_snr_weights

    pipe = build_pipeline(WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32),
                                               norm_num_groups=8, max_length=24, latent_channels=4))
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    t = torch.arange(1000)
    w = min_snr_weights(sched, t, 5.0)
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    assert torch.all(w[snr <= 5.0] == 1.0) and (snr <= 5.0).sum() > 500  # most steps keep weight 1
    torch.testing.assert_close(w[snr > 5.0] * snr[snr > 5.0], torch.full_like(w[snr > 5.0], 5.0))
    assert w[0] < 0.01 and torch.all(w[1:] >= w[:-1])  # t = 0 is nearly clean; weights grow with the noise


def test_offset_noise_adds_one_constant_per_image_and_channel_and_leaves_plain_noise_unchanged():
    from cirsynth.world.diffusion import training_noise

    shape = (4000, 4, 8, 8)
    plain = training_noise(shape, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(0)))  # offset 0: as before
    offset = training_noise(shape, torch.Generator().manual_seed(0), 0.3)
    extra = offset - plain  # the plain draws come first, so the difference is the offset alone
    assert torch.allclose(extra, extra[:, :, :1, :1].expand_as(extra), atol=1e-6)  # constant over each image's channel
    assert extra[:, :, 0, 0].std().item() == pytest.approx(0.3, rel=0.05)  # drawn with std = offset
    # so the noise's per-channel mean (what hides an image's brightness) grows from 1/8 to sqrt(1/64 + 0.09)
    assert plain.mean((2, 3)).std().item() == pytest.approx(1 / 8, rel=0.05)
    assert offset.mean((2, 3)).std().item() == pytest.approx((1 / 64 + 0.09) ** 0.5, rel=0.05)


def test_a_checkpoint_from_before_noise_offset_resumes_only_without_it():
    from dataclasses import replace

    from cirsynth.world.diffusion import check_same_recipe

    old = WorldDiffusionConfig().recipe()
    old.pop("noise_offset")  # what a checkpoint written before the field existed holds
    check_same_recipe(old, WorldDiffusionConfig())  # it trained without offset noise: the same recipe
    with pytest.raises(ValueError, match="noise_offset: 0.0 -> 0.1"):
        check_same_recipe(old, replace(WorldDiffusionConfig(), noise_offset=0.1))


def test_config_is_checked():
    with pytest.raises(ValueError, match="noise_offset"):
        WorldDiffusionConfig(noise_offset=-0.1)
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
    from cirsynth.world.diffusion import build_pipeline, finetune_decoder, world_images_and_captions

    cfg = WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8,
                               max_length=24, decoder_steps=3, vae_batch_size=4, log_every=1)
    vae = build_pipeline(cfg).vae
    pixels, _, masks, _ = world_images_and_captions(8, 0, 32)
    enc = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    with torch.no_grad():
        z0 = vae.encode(pixels).latent_dist.mean
    report = finetune_decoder(vae, pixels, masks, pixels[:4], masks[:4], cfg, log=lambda s: None)
    assert all(torch.equal(enc[k], v) for k, v in vae.encoder.state_dict().items())
    assert any(not torch.equal(dec[k], v) for k, v in vae.decoder.state_dict().items())
    with torch.no_grad():
        assert torch.equal(vae.encode(pixels).latent_dist.mean, z0)
    assert all(p.requires_grad for p in vae.parameters())  # trainable again for whoever goes on
    assert np.isfinite(report["eval_psnr_db"]) and np.isfinite(report["eval_object_psnr_db_before"])


def test_object_masks_cover_the_objects_and_weight_them():
    from cirsynth.world.diffusion import object_weight_map, weighted_recon_loss, world_images_and_captions

    pixels, _, masks, _ = world_images_and_captions(6, 3, 64)
    assert masks.shape == (6, 1, 64, 64) and 0.0 <= masks.min() and masks.max() == 1.0
    assert all(0.01 < float(m.mean()) < 0.4 for m in masks)  # a few objects, never the whole picture
    # where the mask is zero, changing an object changes no pixel: the mask covers what objects draw
    rng = np.random.default_rng(3)
    scenes = [random_scene(rng) for _ in range(6)]
    for scene in scenes:
        recoloured = scene.replace_object(0, color=next(c for c in COLORS if c != scene.objects[0].color))
        moved = np.abs(render_array(scene) - render_array(recoloured)).max(-1) > 1e-6
        assert moved.any() and not (moved & (object_mask(scene) == 0)).any()
    w = object_weight_map(masks, 9.0)
    assert w.min() == 1.0 and w.max() == 10.0 and (w > 1)[masks > 0].all()  # grown masks hold the objects
    x = torch.zeros(1, 3, 4, 4)
    recon = x.clone()
    recon[..., 0, 0] = 0.5  # error on one pixel: L1 + MSE = 0.75 there
    weight = torch.ones(1, 1, 4, 4)
    assert weighted_recon_loss(recon, x, weight).item() == pytest.approx(0.75 / 16)
    weight[..., 0, 0] = 4.0  # weighting the wrong pixel up raises the loss
    assert weighted_recon_loss(recon, x, weight).item() == pytest.approx(0.75 * 4 / 19)


def test_object_word_tokens_select_each_objects_own_words():
    from transformers import AutoTokenizer

    from cirsynth.models.text import minilm_dir
    from cirsynth.world.diffusion import object_word_tokens
    from cirsynth.world.language import NUM_CAPTION_VARIANTS, caption

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    rng = np.random.default_rng(11)
    scenes = [random_scene(rng) for _ in range(12)]
    scenes = [s for s in scenes if len(s.objects) >= 2][:4]
    pairs = [(s, caption(s, v)) for s in scenes for v in range(NUM_CAPTION_VARIANTS)]  # every paraphrase
    sel = object_word_tokens(tok, [s for s, _ in pairs], [c for _, c in pairs], 77)
    assert sel.shape == (len(pairs), 3, 77)
    for n, (scene, text) in enumerate(pairs):
        ids = tok(text, padding="max_length", max_length=77)["input_ids"]
        for i in range(3):
            words = tok.decode([ids[k] for k in range(77) if sel[n, i, k]]).split()
            if i >= len(scene.objects):
                assert words == []
                continue
            o = scene.objects[i]
            assert sorted(words) == sorted([o.size, o.color, o.pattern, o.material, o.shape]), (text, i, words)
        assert sel[n].sum(0).max() <= 1  # no token is given to two objects


def test_grounding_loss_is_zero_inside_and_reports_the_share():
    from cirsynth.world.diffusion import grounding_loss

    masks = torch.zeros(1, 3, 4, 4)
    masks[0, 0, :2, :2] = 1.0  # object 0: the top-left quarter
    tokens = torch.zeros(1, 3, 5)
    tokens[0, 0, 1] = 1.0  # token 1 names object 0
    inside = torch.zeros(1, 2, 16, 5)
    inside[..., [0, 1, 4, 5], :] = 0.25  # every token attends only to the top-left quarter
    loss, share = grounding_loss([inside], tokens, masks)
    assert loss.item() == pytest.approx(0.0) and share.item() == pytest.approx(1.0)
    uniform = torch.full((1, 2, 16, 5), 1 / 16)
    loss, share = grounding_loss([uniform], tokens, masks)
    assert share.item() == pytest.approx(0.25) and loss.item() == pytest.approx(0.75**2)
    # an 8x8 layer is compared with the masks pooled to 8x8... here a 2x2 layer with 4x4 masks
    loss, share = grounding_loss([torch.tensor([1.0, 0, 0, 0]).view(1, 1, 4, 1).expand(1, 1, 4, 5)], tokens, masks)
    assert share.item() == pytest.approx(1.0)


def test_grounding_trains_through_the_recorded_attention(tmp_path):
    from cirsynth.editing.attention import p2p_attention
    from cirsynth.world.diffusion import (
        AttentionRecorder, build_pipeline, encode_prompts, object_word_tokens, stacked_object_masks, train_unet,
        world_images_and_captions,
    )

    cfg = WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8,
                               max_length=64, latent_channels=4, unet_steps=3, batch_size=4, log_every=1,
                               grounding_weight=1.0, grounding_min_queries=16, unet_lr=1e-3)
    pipe = build_pipeline(cfg)
    pixels, captions, _, scenes = world_images_and_captions(6, 2, 32)
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mean
    embeds, null = encode_prompts(pipe, captions), encode_prompts(pipe, [""])
    # the recorder path computes the same UNet output as diffusers' own processors
    t = torch.tensor([500] * 6)
    with torch.no_grad():
        plain = pipe.unet(latents, t, encoder_hidden_states=embeds).sample
        rec = AttentionRecorder(16)
        with p2p_attention(pipe.unet, rec):
            seen = pipe.unet(latents, t, encoder_hidden_states=embeds).sample
    torch.testing.assert_close(seen, plain, rtol=1e-4, atol=1e-5)
    assert rec.maps and all(m.shape[-1] == 64 and m.shape[2] >= 16 for m in rec.maps)
    tokens = object_word_tokens(pipe.tokenizer, scenes, captions, 64)
    masks = stacked_object_masks(scenes, 8)
    assert masks.shape == (6, 3, 8, 8)
    assert all(torch.equal(masks[n, : len(s.objects)], torch.from_numpy(object_masks(s, size=8)).float()) and
               not masks[n, len(s.objects):].any() for n, s in enumerate(scenes))
    to_k = {k: v.clone() for k, v in pipe.unet.state_dict().items() if "attn2.to_k" in k}
    logs = []
    report = train_unet(pipe, latents, embeds, null, cfg, logs.append, None, tokens, masks)
    assert 0.0 < report["object_word_attention_inside_last50"] < 1.0 and np.isfinite(report["grounding_last50"])
    assert "object words' attention inside their object" in logs[-1]
    assert any(not torch.equal(v, pipe.unet.state_dict()[k]) for k, v in to_k.items())
    with pytest.raises(ValueError, match="grounding_weight"):
        train_unet(pipe, latents, embeds, null, cfg, logs.append)


def test_a_stopped_and_resumed_run_trains_exactly_the_same_weights_and_refuses_other_settings(tmp_path, capsys):
    from safetensors.torch import load_file

    from cirsynth.cli import main

    recipe = SMALL + ["--vae_steps", "2", "--unet_steps", "4", "--ema_decay", "0.9", "--grounding_weight", "0.1",
                      "--snr_gamma", "5.0", "--card", "false"]
    assert main(["world", "train", "diffusion", str(tmp_path / "straight"), *recipe]) == 0
    split = ["world", "train", "diffusion", str(tmp_path / "split"), *recipe]
    assert main([*split, "--stop_at", "2"]) == 0
    log = capsys.readouterr().out
    assert "stopped at unet step 2/4" in log and '"complete": false' in log
    assert not (tmp_path / "split").exists()  # only the checkpoint moved: no half-trained model at OUT
    ckpt = tmp_path / "split.ckpt"
    assert (ckpt / "unet").is_dir() and (ckpt / "train_state" / "state.safetensors").is_file()
    assert main([*split, "--resume", "true", "--unet_lr", "1e-3"]) == 2  # refused, naming what changed
    assert "unet_lr: 0.0004 -> 0.001" in capsys.readouterr().err
    assert main([*split, "--resume", "true"]) == 0
    assert "resumed the unet stage at step 2/4" in capsys.readouterr().out
    a = load_file(tmp_path / "straight" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "split" / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the EMA weights, bit for bit
    first = load_file(ckpt / "unet" / "diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(a[k], first[k]) for k in a)  # and the last two steps did train


def test_resume_without_a_checkpoint_says_what_is_missing(tmp_path):
    from cirsynth.world.diffusion import WorldDiffusionConfig, train_world_diffusion

    with pytest.raises(FileNotFoundError, match="holds no training state to resume"):
        train_world_diffusion(WorldDiffusionConfig(resume=True), tmp_path / "none", log=lambda _: None)


def test_rendering_in_worker_processes_gives_the_same_data():
    from cirsynth.world.diffusion import world_images_and_captions

    one = world_images_and_captions(6, 5, 32)
    two = world_images_and_captions(6, 5, 32, workers=2)
    assert one[1] == two[1] and torch.equal(one[0], two[0]) and torch.equal(one[2], two[2])


def test_the_cut_text_encoder_gives_the_full_encoders_embeddings_for_world_captions(tmp_path):
    from cirsynth.world.diffusion import WorldDiffusionConfig, build_pipeline, encode_prompts, save_world_text_encoder
    from cirsynth.world.language import NUM_CAPTION_VARIANTS, caption

    info = save_world_text_encoder(tmp_path / "te", dtype="float32", num_captions=3000)
    assert info["vocab_size"] < 300 < info["full_vocab_size"]
    rng = np.random.default_rng(99)  # captions it never saw
    prompts = [caption(random_scene(rng), int(rng.integers(NUM_CAPTION_VARIANTS))) for _ in range(40)] + [""]
    full = build_pipeline(WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8))
    cut = build_pipeline(WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8,
                                              text_encoder=str(tmp_path / "te")))
    assert torch.allclose(encode_prompts(full, prompts), encode_prompts(cut, prompts), atol=1e-5)
    assert cut.tokenizer.unk_token_id not in cut.tokenizer(prompts)["input_ids"][0]


def test_a_spent_time_budget_checkpoints_and_stops_the_unet_stage():
    from cirsynth.world.diffusion import build_pipeline, encode_prompts, train_unet, world_images_and_captions

    cfg = WorldDiffusionConfig(image_size=32, vae_channels=(8, 16, 16), unet_channels=(16, 32), norm_num_groups=8,
                               max_length=24, latent_channels=4, unet_steps=50, batch_size=4, max_seconds=1e-6)
    pixels, captions, _, _ = world_images_and_captions(6, 2, 32)
    pipe = build_pipeline(cfg)
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mean
    saved, logs = [], []
    report = train_unet(pipe, latents, encode_prompts(pipe, captions), encode_prompts(pipe, [""]), cfg, logs.append,
                        lambda step, tensors, meta: saved.append((step, meta["step"], "generator" in tensors)))
    assert report["steps_done"] == 1 and report["complete"] is False
    assert saved == [(1, 1, True)] and "stopped at unet step 1/50 (time budget spent)" in logs


def test_finish_early_saves_a_stopped_runs_checkpoint_as_a_carded_model(tmp_path, capsys):
    from safetensors.torch import load_file

    from cirsynth.cli import main

    recipe = SMALL + ["--vae_steps", "2", "--unet_steps", "4", "--ema_decay", "0.9", "--grounding_weight", "0.1"]
    run = ["world", "train", "diffusion", str(tmp_path / "m"), *recipe]
    assert main([*run, "--stop_at", "2"]) == 0 and not (tmp_path / "m").exists()  # the plain early stop: no model
    capsys.readouterr()
    assert main([*run, "--resume", "true", "--stop_at", "2"]) == 2  # nothing to train, and not asked to finish
    assert "nothing to train (pass finish_early" in capsys.readouterr().err
    assert main([*run, "--resume", "true", "--stop_at", "2", "--finish_early", "true"]) == 0
    assert "saved " in capsys.readouterr().out
    ckpt_unet = load_file(tmp_path / "m.ckpt" / "unet" / "diffusion_pytorch_model.safetensors")
    model_unet = load_file(tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(ckpt_unet[k], model_unet[k]) for k in ckpt_unet)  # the checkpoint's (EMA) weights
    assert not (tmp_path / "m" / "train_state").exists()
    load_sd_pipeline(tmp_path / "m")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["quality"]["unet_steps_done"] == 2 and np.isfinite(card["quality"]["unet_loss_last50"])
    assert "--stop_at 2" in card["command"] and "--resume false" in card["command"]  # reproduces it in one run
    # in one go: a run that stops early with finish_early saves the same model
    assert main(["world", "train", "diffusion", str(tmp_path / "n"), *recipe, "--stop_at", "2", "--finish_early", "true"]) == 0
    again = load_file(tmp_path / "n" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(again[k], model_unet[k]) for k in again)
    assert json.loads((tmp_path / "n" / "card.json").read_text())["quality"]["unet_steps_done"] == 2


def test_encoded_training_data_is_kept_and_a_resumed_run_loads_it_and_trains_the_same_weights(tmp_path, capsys):
    from safetensors.torch import load_file

    from cirsynth.cli import main

    assert main(["world", "train", "diffusion", str(tmp_path / "a"), "--vae_steps", "2", "--unet_steps", "0", *SMALL]) == 0
    assert not (tmp_path / "a.data").exists()  # a run that trains its VAE keeps no encodings (they depend on it)
    recipe = ["--init_vae", str(tmp_path / "a" / "vae"), "--vae_steps", "0", "--unet_steps", "4", "--ema_decay", "0.9",
              "--grounding_weight", "0.1", "--card", "false", *SMALL]
    assert main(["world", "train", "diffusion", str(tmp_path / "straight"), *recipe, "--data_cache", "false"]) == 0
    assert not (tmp_path / "straight.data").exists()
    split = ["world", "train", "diffusion", str(tmp_path / "split"), *recipe]
    capsys.readouterr()
    assert main([*split, "--stop_at", "2"]) == 0
    assert "rendered 8+4 scenes" in capsys.readouterr().out
    kept = load_file(tmp_path / "split.data" / "data.safetensors")
    assert kept["latents"].shape[0] == 8 and kept["embeds"].shape[0] == 8 and kept["tokens"].shape[0] == 8
    assert main([*split, "--resume", "true"]) == 0
    log = capsys.readouterr().out
    assert "from " + str(tmp_path / "split.data") in log and "rendered" not in log  # loaded, not rendered again
    a = load_file(tmp_path / "straight" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "split" / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same weights, bit for bit
    # kept data made for other scenes is not used: a run on more scenes renders and replaces it
    assert main([*split, "--num_scenes", "12", "--unet_steps", "1"]) == 0
    assert "rendered 12+4 scenes" in capsys.readouterr().out
    assert load_file(tmp_path / "split.data" / "data.safetensors")["latents"].shape[0] == 12
