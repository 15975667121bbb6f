"""Library chatter that says nothing to a user, hidden from ``hierhead`` commands (``--verbose`` shows it) and from
a study job's log: Lightning's info lines and tips, and known warnings about its own internals or tiny runs.
Hand-written filters because neither Lightning nor Python has a switch for "only what matters here"."""

import logging
import warnings

#: warnings (regular expressions on the message) about Lightning's own code or settings a run chose on purpose
_KNOWN = (r".*LeafSpec.*", r".*smaller than the logging interval.*", r".*does not have many workers.*",
          r".*Experiment logs directory .* exists and is not empty.*",
          r".*Checkpoint directory .* exists and is not empty.*",  # only on --resume, which is meant
          r"To copy construct from a tensor.*", r".*torch.jit.script. is deprecated.*",
          # DDP: every rank computes val/mAP from all ranks' gathered detections, the same value
          r".*sync_dist=True.* when logging on epoch level in distributed setting.*")


def quiet_libraries() -> None:
    """Raise Lightning's info loggers (tips, "GPU available" lines, signal notes) to warnings and ignore the known
    warnings; call inside ``warnings.catch_warnings()`` to restore the filters afterwards."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.trainer.connectors.signal_connector"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in _KNOWN:
        warnings.filterwarnings("ignore", message=message)
