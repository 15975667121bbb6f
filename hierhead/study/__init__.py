"""Studies as data: a plan file (:mod:`.plan`) run by one command (:mod:`.runner`) with one protocol object per
way of training (:mod:`.protocols`), reported from its rows only (:mod:`.report`). Sits above the engine: the
engine never imports it."""

from .plan import ROW_COLUMNS, PlanError, load_plan

__all__ = ["load_plan", "PlanError", "ROW_COLUMNS"]
