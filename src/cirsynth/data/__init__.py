"""Records, the on-disk TripletDataset, and CIRR / FashionIQ / WebDataset I/O. No torch models."""

from cirsynth.data.cirr import CIRRQuery, CIRRSplit, cirr_splits, export_cirr, read_cirr
from cirsynth.data.dataset import TripletDataset, TripletWriter, keyed_shard_name
from cirsynth.data.errors import DataError, Rejection
from cirsynth.data.fashioniq import FashionIQQuery, FashionIQSplit, export_fashioniq, join_captions, read_fashioniq
from cirsynth.data.records import EDIT_TYPES, CaptionEdit, Triplet, config_hash
from cirsynth.data.webdataset import export_webdataset

__all__ = [
    "CaptionEdit",
    "CIRRQuery",
    "CIRRSplit",
    "DataError",
    "EDIT_TYPES",
    "FashionIQQuery",
    "FashionIQSplit",
    "Rejection",
    "Triplet",
    "TripletDataset",
    "TripletWriter",
    "config_hash",
    "export_cirr",
    "export_fashioniq",
    "export_webdataset",
    "join_captions",
    "keyed_shard_name",
    "read_cirr",
    "cirr_splits",
    "read_fashioniq",
]
