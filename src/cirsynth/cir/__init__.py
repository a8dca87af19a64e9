"""Composed image retrieval models, the one trainer, evaluation and experiments.

``BlipCIR`` and ``BlipCIRConfig`` (``cirsynth.cir.blip``) are imported on first use: they pull in
transformers' BLIP modules, which the CLIP-only paths do not need.
"""

from cirsynth.cir.combiner import Combiner, CombinerConfig, batch_classification_loss, sum_combine
from cirsynth.cir.data import (
    CIRQuery,
    CIRSplit,
    TrainingPart,
    build_training_set,
    fashioniq_text_variants,
    from_cirr,
    from_fashioniq,
    from_triplet_dataset,
    load_split,
    sample_fraction,
)
from cirsynth.cir.evaluate import evaluate_model, split_features
from cirsynth.cir.experiment import ScarcityReport, run_data_scarcity
from cirsynth.cir.model import ClipCIR, extract_image_features, extract_text_features, load_cir_model
from cirsynth.cir.preprocess import pad_image, target_pad
from cirsynth.cir.train import TrainConfig, TrainResult, latest_checkpoint, train_cir

__all__ = [
    "BlipCIR", "BlipCIRConfig", "CIRQuery", "CIRSplit", "ClipCIR", "Combiner", "CombinerConfig", "ScarcityReport",
    "TrainConfig", "TrainResult", "TrainingPart", "batch_classification_loss", "build_training_set",
    "evaluate_model", "extract_image_features", "extract_text_features", "fashioniq_text_variants", "from_cirr",
    "from_fashioniq", "from_triplet_dataset", "latest_checkpoint", "load_cir_model", "load_split", "pad_image",
    "run_data_scarcity", "sample_fraction", "split_features", "sum_combine", "target_pad", "train_cir",
]


def __getattr__(name: str):
    if name in ("BlipCIR", "BlipCIRConfig"):
        from cirsynth.cir import blip

        return getattr(blip, name)
    raise AttributeError(f"module 'cirsynth.cir' has no attribute {name!r}")
