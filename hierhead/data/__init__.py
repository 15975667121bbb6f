"""Datasets: readers for every supported format, box rules, statistics (Table II)."""

from .readers import FORMATS, VOC_CLASSES, DetectionDataset, load_image, open_dataset
from .records import CLIP_TOLERANCE, DataError, Record

__all__ = ["open_dataset", "DetectionDataset", "FORMATS", "VOC_CLASSES", "DataError", "Record", "CLIP_TOLERANCE",
           "load_image"]
