"""Detectors: one registry (``build``, ``names``), the model spec, ``hierarchize`` and ``fold``."""

from .builders import build, build_from_spec, input_size, names, spec_of
from .convert import anchor_generator_of, fold, head_convs, hierarchize, level_designs, load_start, prediction_convs
from .spec import ModelSpec
from .stock import Architecture, architecture
from .weights import load_model_weights, load_state_dict, save

__all__ = ["build", "build_from_spec", "names", "input_size", "spec_of", "ModelSpec", "architecture", "Architecture",
           "fold", "hierarchize", "head_convs", "level_designs", "prediction_convs", "anchor_generator_of",
           "load_start", "load_state_dict", "load_model_weights", "save"]
