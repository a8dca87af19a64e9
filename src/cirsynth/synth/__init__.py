"""Stages, filters and the resumable runners (local; Ray in ``ray_engine``) behind ``cirsynth synthesize``."""

from cirsynth.synth.candidates import CandidateConfig, CandidateSetting, draw_settings
from cirsynth.synth.filters import EditFilter, FilterConfig, FilterVerdict, pick_best
from cirsynth.synth.inputs import InputImage, LoadPolicy, discover, load_rgb
from cirsynth.synth.pipeline import ClusterError, ConfigChanged, Summary, SynthConfig, Synthesizer, run_hash

__all__ = [
    "CandidateConfig", "CandidateSetting", "ClusterError", "ConfigChanged", "EditFilter", "FilterConfig", "FilterVerdict", "InputImage", "LoadPolicy", "Summary",
    "SynthConfig", "Synthesizer", "discover", "draw_settings", "load_rgb", "pick_best", "run_hash",
]
