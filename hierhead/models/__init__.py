"""Detectors: one registry (``build``, ``names``), ``hierarchize`` and ``fold``."""

from .builders import build, input_size, names, register, spec_of
from .convert import fold, head_convs, hierarchize, level_designs, load_start, prediction_convs
from .weights import load_model_weights, load_state_dict, save

__all__ = ["build", "names", "input_size", "register", "spec_of", "fold", "hierarchize", "head_convs", "level_designs",
           "prediction_convs", "load_start", "load_state_dict", "load_model_weights", "save"]
