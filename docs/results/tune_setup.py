"""What the seed-0 tuning scripts in this folder share (run them from the repo root with PYTHONPATH=src): the world
edits of some types, the recipe's editor and judge, and one inversion of every reference scene."""
import torch

from cirsynth.synth.candidates import candidate_noise_seed
from cirsynth.world.evaluate import world_setup
from cirsynth.world.recipe import world_eval_config


def tuning_inputs(types, n, paste):
    """Seed 0's evaluation edits of ``types`` among the first ``n``, with the editor pasting ``paste``.

    Returns:
        ``(cfg, edits, editor, classifier, prepared references, caption edits, inversions)``.
    """
    torch.set_num_threads(2)
    cfg = world_eval_config(n=n, seed=0, paste=paste)  # the recipe's settings, seed 0 (tuning) edits only
    edits, editor, clf, refs = world_setup(cfg, types)
    print(len(edits), "edits", flush=True)
    ces = [e.caption_edit for e in edits]
    inv = editor.invert(refs, [c.source_caption for c in ces], method=cfg.methods[0], num_steps=cfg.num_steps,
                        guidance_scale=cfg.guidance_scale, seed=candidate_noise_seed(0, 0))
    return cfg, edits, editor, clf, refs, ces, inv
