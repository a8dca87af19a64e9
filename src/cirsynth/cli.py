"""The ``cirsynth`` command line: sub-commands generated from typed function signatures.

Each command is a plain function in ``cirsynth.commands``; its signature (types, defaults, docstring)
is the config, parsed by jsonargparse, so every command also takes ``--config run.yaml`` and
``--print_config``. Modules there import heavy libraries inside the function bodies, so
``cirsynth --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

DESCRIPTION = (
    "Counterfactual training triplets for Composed Image Retrieval: caption images, change one attribute of the "
    "caption, invert and re-generate the image with prompt-to-prompt, filter with CLIP, write a TripletDataset; "
    "export it (CIRR, FashionIQ, WebDataset), train CIR models and measure Recall@K. Quick start: `cirsynth demo` "
    "(the mini world, no downloads). Add --debug to any command to see the traceback of an error."
)

# name -> "module:function", or a nested dict for command groups (``cirsynth world train``); "_help": a group's line.
COMMANDS: dict[str, Any] = {
    "export": "cirsynth.commands.export:export",
    "evaluate": "cirsynth.commands.evaluate:evaluate",
    "synthesize": "cirsynth.commands.synthesize:synthesize",
    "demo": "cirsynth.commands.demo:demo",
    "train-cir": "cirsynth.commands.train_cir:train_cir",
    "caption": "cirsynth.commands.caption:caption",
    "perturb": "cirsynth.commands.perturb:perturb",
    "train-perturber": "cirsynth.commands.train_perturber:train_perturber",
    "gallery": "cirsynth.commands.gallery:gallery",
    "curate": "cirsynth.commands.curate:curate",
    "experiment": {
        "_help": "Experiments over many training runs (data-scarcity: real-data fraction x synthetic data x seeds).",
        "data-scarcity": "cirsynth.commands.experiment:data_scarcity",
    },
    "world": {
        "_help": "The mini world: procedural scenes with ground truth, its benchmark, and its small trained models.",
        "train": {
            "_help": "Train one of the mini world's models (classifier, diffusion, clip, captioner, perturber).",
            "classifier": "cirsynth.commands.world:train_classifier",
            "diffusion": "cirsynth.commands.world:train_diffusion",
            "clip": "cirsynth.commands.world:train_clip",
            "captioner": "cirsynth.commands.world:train_captioner",
            "perturber": "cirsynth.commands.world:train_perturber",
        },
        "models": "cirsynth.commands.world:models",
        "evaluate": "cirsynth.commands.world:evaluate",
        "calibrate-filter": "cirsynth.commands.world:calibrate_filter",
        "controls": "cirsynth.commands.world:controls",
        "benchmark": "cirsynth.commands.world:benchmark",
    },
}


# old option names still accepted, by command: old -> the name every command now uses for that concept
ALIASES: dict[str, dict[str, str]] = {
    "perturb": {"vocab": "vocabulary", "edits_per_caption": "edits_per_image"},
}


def _resolve(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {name: v if name == "_help" else _resolve(v) for name, v in spec.items()}
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}


def normalise_argv(args: list[str], spec: Any = None) -> list[str]:
    """Accept ``--edits-per-image`` for ``--edits_per_image``, a bare ``--flag`` for ``--flag true``, and the old
    option names in ``ALIASES``.

    Bare flags are completed only for parameters annotated ``bool`` in the chosen command's signature.
    """
    import inspect

    spec = COMMANDS if spec is None else spec
    func = None
    path: list[str] = []
    out: list[str] = []
    for i, a in enumerate(args):
        if isinstance(spec, dict) and not a.startswith("-") and a in spec and a != "_help":
            spec = spec[a]
            path.append(a)
            if isinstance(spec, str):
                func = _resolve(spec)
            out.append(a)
            continue
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            name = name.replace("-", "_")
            name = ALIASES.get(" ".join(path), {}).get(name, name)
            a = f"--{name}{eq}{val}"
            if func is not None and not eq:
                param = inspect.signature(func).parameters.get(name)
                nxt = args[i + 1] if i + 1 < len(args) else None
                if param is not None and param.annotation in (bool, "bool") and (nxt is None or nxt.lower() not in _BOOL_WORDS):
                    out.extend([a, "true"])
                    continue
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code.

    Every error ends as one ``cirsynth: error: ...`` line (the traceback too with ``--debug``), Ctrl-C as one line
    saying what rerunning does.
    """
    from jsonargparse import CLI

    from cirsynth import console

    args = normalise_argv(sys.argv[1:] if argv is None else list(argv))
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    command = " ".join(a for a in args[:1] if not a.startswith("-"))
    console.quiet_known_noise()
    components: dict[str, Callable | dict] = _resolve(COMMANDS)
    try:
        result = CLI(components, args=args, prog="cirsynth", as_positional=True, description=DESCRIPTION,
                     parser_class=console.Parser)
    except SystemExit as e:  # argparse exits on --help / bad args; commands exit with a message
        if isinstance(e.code, str):
            print(f"cirsynth: error: {e.code}", file=sys.stderr)
            return 2
        return int(e.code or 0)
    except KeyboardInterrupt:
        return console.report_interrupt(command, debug)
    except Exception as e:  # noqa: BLE001 - the one place errors become a line for the user
        return console.report_error(e, debug)
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
