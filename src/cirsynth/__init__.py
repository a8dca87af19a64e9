"""cirsynth: synthetic Composed Image Retrieval triplets by counterfactual image generation."""

__version__ = "0.1.0"
