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

# name -> "module:function", or a nested dict for command groups (``cirsynth world train``).
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
    "experiment": {"data-scarcity": "cirsynth.commands.experiment:data_scarcity"},
    "world": {
        "train": {
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


def _resolve(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {name: _resolve(v) for name, v in spec.items()}
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}


def normalise_argv(args: list[str], spec: Any = None) -> list[str]:
    """Accept ``--edits-per-image`` for ``--edits_per_image`` and a bare ``--flag`` for ``--flag true``.

    Bare flags are completed only for parameters annotated ``bool`` in the chosen command's signature.
    """
    import inspect

    spec = COMMANDS if spec is None else spec
    func = None
    out: list[str] = []
    for i, a in enumerate(args):
        if isinstance(spec, dict) and not a.startswith("-") and a in spec:
            spec = spec[a]
            if isinstance(spec, str):
                func = _resolve(spec)
            out.append(a)
            continue
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            name = name.replace("-", "_")
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
    """Run the command line with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code."""
    from jsonargparse import CLI

    components: dict[str, Callable | dict] = _resolve(COMMANDS)
    args = normalise_argv(sys.argv[1:] if argv is None else list(argv))
    from cirsynth.data.errors import DataError

    try:
        result = CLI(components, args=args, prog="cirsynth", as_positional=True)
    except SystemExit as e:  # argparse exits on --help / bad args; commands exit with a message
        if isinstance(e.code, str):
            print(f"cirsynth: {e.code}", file=sys.stderr)
            return 2
        return int(e.code or 0)
    except (DataError, FileExistsError, FileNotFoundError) as e:
        print(f"cirsynth: error: {e}", file=sys.stderr)
        return 2
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
