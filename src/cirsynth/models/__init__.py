"""Model loading by HF id or local folder (captioners, LLMs, CLIP, diffusion components).

Sub-modules import their heavy libraries lazily; import the one you need, e.g.
``from cirsynth.models.diffusion import load_sd_pipeline``.
"""
