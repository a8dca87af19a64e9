"""What the command line shows: one-line errors, the Ctrl-C line, help formatting, and quiet third-party noise.

Kept apart from ``cirsynth.cli`` (which wires the commands) so every command gets the same behaviour from one place.
Nothing here imports torch, transformers or diffusers at import time: ``cirsynth --help`` stays fast.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback

from jsonargparse import ArgumentParser, DefaultHelpFormatter

from cirsynth.data.errors import DataError

# What rerunning an interrupted command does, by command (the first words of the command line).
RERUN = {
    "synthesize": "rerun the same command to resume after the last complete batch (the interrupted batch is redone)",
    "train-cir": "rerun it with --resume true to continue from the newest checkpoint (written every --save_every "
                 "epochs)",
    "demo": "rerun it to start the demo again",
}
RERUN_DEFAULT = "outputs are written whole or not at all; rerun the same command to run it again"

# Third-party log lines known to be harmless here, by logger and message fragment.
KNOWN_NOISE = {
    # the world pipeline's text encoder is a BERT (MiniLM) by design; diffusers expects SD's CLIP text model
    "diffusers.pipelines.pipeline_utils": ("Expected types for text_encoder",),
    # cirsynth does not depend on torchvision; transformers then uses its PIL image processors, as intended
    "transformers.utils.import_utils": ("requires torchvision (not installed); falling back to",),
}

USER_ERRORS = (DataError, ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, PermissionError,
               OSError)


class _DropKnown(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(f in msg for f in self.fragments)


def quiet_known_noise() -> None:
    """Drop the third-party log lines in ``KNOWN_NOISE`` (logger filters: the libraries need not be imported yet)."""
    for name, fragments in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(fragments))


def quiet_loading_bars() -> None:
    """Hide transformers' "Loading weights" and diffusers' "Loading pipeline components" bars (Hub download bars
    stay): for commands that load several small local models and show their own progress."""
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()  # also turns the Hub's bars off: on again below
    try:
        import diffusers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - diffusers is a dependency
        pass
    huggingface_hub.utils.enable_progress_bars()


def one_line(e: BaseException) -> str:
    """The error as one line: a user error's own message; anything else with its type and a pointer to --debug."""
    msg = re.sub(r"\s+", " ", str(e)).strip()
    if isinstance(e, USER_ERRORS) and msg:
        return msg
    return f"{type(e).__name__}: {msg or '(no message)'} (rerun with --debug for the traceback)"


def report_error(e: BaseException, debug: bool) -> int:
    """Print ``cirsynth: error: ...`` (after the traceback with ``debug``); the exit code: 2 user error, 1 other."""
    if debug:
        traceback.print_exception(e)
    print(f"cirsynth: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2 if isinstance(e, USER_ERRORS) else 1


def report_interrupt(command: str, debug: bool) -> int:
    """Print one line saying the run stopped and what rerunning it does; exit code 130 (the shell's for SIGINT)."""
    if debug:
        traceback.print_exc()
    print(f"cirsynth: stopped by Ctrl-C; {RERUN.get(command, RERUN_DEFAULT)}", file=sys.stderr, flush=True)
    return 130


REQUIRED_MARK = "required:"  # a docstring Args line starting with this marks an Optional option the command requires


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, plus: an option whose help starts with ``required:`` reads "required" (not
    ``Optional[...]`` with ``default: null``: it is Optional only so a --config file or --recipe can give it), and a
    bool option shows that its bare form means true."""

    def _get_help_string(self, action) -> str:
        text = super()._get_help_string(action)  # "<help> (type: %(type)s, default: %(default)s)", expanded later
        if (action.help or "").startswith(REQUIRED_MARK):
            text = text[len(REQUIRED_MARK):].lstrip().replace(", default: %(default)s", "")
            text = text.replace("type: %(type)s", "required")
        if _is_bool(action) and text.endswith(")"):
            text = text[:-1] + "; the bare flag means true)"
        return text

    def _format_args(self, action, default_metavar) -> str:
        if _is_bool(action) and action.option_strings:
            return "[{true,false}]"
        return super()._format_args(action, default_metavar)


def _is_bool(action) -> bool:
    return getattr(action, "_typehint", None) is bool


class Parser(ArgumentParser):
    """jsonargparse's parser with ``HelpFormatter`` (sub-command parsers are made from this class too)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)
