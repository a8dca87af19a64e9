"""Tiny random models built from configs with the real diffusers/transformers classes, for tests and CPU benchmarks."""
