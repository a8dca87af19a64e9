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
}


def _resolve(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {name: _resolve(v) for name, v in spec.items()}
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code."""
    from jsonargparse import CLI

    components: dict[str, Callable | dict] = _resolve(COMMANDS)
    args = sys.argv[1:] if argv is None else list(argv)
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
