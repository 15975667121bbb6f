"""Datasets: readers for every supported format, box rules, statistics (Table II)."""

from .._lazy import lazy_names
from .records import CLIP_TOLERANCE, FORMAT_NAMES, DataError, Record

__all__ = ["open_dataset", "DetectionDataset", "FORMATS", "FORMAT_NAMES", "VOC_CLASSES", "DataError", "Record",
           "CLIP_TOLERANCE", "load_image"]
__getattr__ = lazy_names(__name__, {"VOC_CLASSES": "readers", "DetectionDataset": "readers", "load_image": "readers",
                                    "FORMATS": "sources", "open_dataset": "sources"})
