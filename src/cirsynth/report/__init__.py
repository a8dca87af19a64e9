"""Look at a run and curate it: the browser gallery, human decisions, and plots (layer 9, beside the CLI)."""

from cirsynth.report.curation import apply_decisions
from cirsynth.report.decisions import DecisionStore, read_decisions
from cirsynth.report.manifest import ManifestView
from cirsynth.report.plots import make_plots
from cirsynth.report.server import Gallery, make_server, serve_in_thread

__all__ = ["DecisionStore", "Gallery", "ManifestView", "apply_decisions", "make_plots", "make_server", "read_decisions",
           "serve_in_thread"]
