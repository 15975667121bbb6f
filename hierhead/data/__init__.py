"""Datasets: readers for every supported format, box rules, statistics (Table II)."""

from .readers import VOC_CLASSES, DetectionDataset, load_image
from .records import CLIP_TOLERANCE, DataError, Record
from .sources import FORMATS, open_dataset

__all__ = ["open_dataset", "DetectionDataset", "FORMATS", "VOC_CLASSES", "DataError", "Record", "CLIP_TOLERANCE",
           "load_image"]
