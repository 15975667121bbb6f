"""Optimisers for a detector with hierarchical heads, and the units' step size (issue 15).

One place builds the optimiser for every training path (the Lightning module and the head
protocol), so ``optimizer.unit_lr_scale`` means the same everywhere:

* a number ``s``: every unit gets ``s x lr`` (its own parameter group);
* ``"auto"``: unit j gets ``lr / n_j``, n_j the number of anchors M joins to it (row sum of M).

Why ``auto``: under SGD the composed weight of anchor a is ``W'_a = W_a + sum_j M_ja W_Rj``, so
one step moves W'_a by its own gradient plus, through each unit, the gradients of *every* anchor
the unit joins: along a global unit's direction the step is up to (1 + 9) times a general head's.
Under Adam/RMSprop each unit moves about lr per element on top of the anchor's own move. Dividing
unit j's lr by n_j makes its move the *mean* of its anchors' steps rather than their sum (SGD),
or a 1/n_j share of one step (Adam), so Eq. 2's function and fold are untouched and only the
step size of the shared directions changes.

Per-unit rates need per-row learning rates inside one tensor (``unit_weight`` holds all J units),
which torch's parameter groups cannot express. Every optimiser here updates ``p <- p - lr * u``
with a ``u`` that does not depend on lr (SGD with momentum, RMSprop, Adam; AdamW's decoupled decay
is ``lr * wd * p``, also linear in lr), so scaling a row's update by ``c`` after the step is exactly
a learning rate of ``c x lr`` for that row. :class:`RowScaledSteps` does that with torch's
optimiser step hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import HierarchicalConv2d

__all__ = ["make_optimizer", "lr_scheduler", "SCHEDULES", "RowScaledSteps", "TFRMSprop", "unit_row_scales", "parse_unit_lr_scale",
           "parse_backbone_lr_scale", "prior_strengths", "prior_penalty"]

OPTIMIZERS = ("sgd", "rmsprop", "tf_rmsprop", "adam", "adamw")


class TFRMSprop(torch.optim.Optimizer):
    """RMSprop as TensorFlow 1's ``tf.train.RMSPropOptimizer`` computes it (the paper's VOC and
    FlickrLogos-47 optimiser, through the TF Object Detection API), per parameter::

        g    = grad + weight_decay * p              (the API's L2 regulariser, coupled)
        ms   = decay * ms + (1 - decay) * g**2      (ms starts at 1, not 0)
        mom  = momentum * mom + lr * g / sqrt(ms + eps)
        p    = p - mom

    Kept by hand because ``torch.optim.RMSprop`` differs in three places: ``sqrt(v) + eps`` instead
    of ``sqrt(v + eps)``, the mean square starting at 0, and lr applied after the momentum buffer
    (which changes the step when the lr drops, as at the paper's 60k / 80k / ... milestones).
    """

    def __init__(self, params, lr: float = 0.001, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 weight_decay: float = 0.0) -> None:
        if lr < 0 or not 0 <= decay < 1 or momentum < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"tf_rmsprop: lr={lr}, decay={decay}, momentum={momentum}, eps={eps}, "
                             f"weight_decay={weight_decay}: expected lr, momentum, eps, weight_decay >= 0, 0 <= decay < 1")
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                mom.mul_(group["momentum"]).addcdiv_(g, ms.add(group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(mom)
        return loss


SCHEDULES = ("constant", "multistep", "step", "cosine")


def lr_scheduler(optimizer: torch.optim.Optimizer, name: str = "constant", total_steps: int = 0,
                 milestones=(), gamma: float = 0.1, step_size: int = 0, warmup_steps: int = 0,
                 warmup_start_lr: float | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """The recipe's ``schedule`` as torch's schedulers, stepped once per optimiser step.

    A linear warm-up (``LinearLR``) from ``warmup_start_lr`` (default 0.001 x lr) to lr over
    ``warmup_steps``, then under ``SequentialLR``: ``constant``; ``multistep`` (x ``gamma`` at each
    of ``milestones``); ``step`` (x ``gamma`` every ``step_size`` steps); ``cosine`` (to 0 at
    ``total_steps``). Milestones and step sizes count from step 0, warm-up included, as the
    paper's schedules do, so both are ``MultiStepLR`` milestones shifted by the warm-up (torch's
    ``StepLR`` would count from the end of the warm-up). Every parameter group (the units' own
    lr, ``unit_lr_scale``) is scaled by the same factors.

    Args:
        optimizer: its groups' ``lr`` are the peak rates.
        name: one of ``constant``, ``multistep``, ``step``, ``cosine``.
        total_steps: the run's length (the cosine's end; the last ``step`` milestone).
        milestones, gamma, step_size, warmup_steps, warmup_start_lr: as above.
    """
    from torch.optim import lr_scheduler as sched

    if name not in SCHEDULES:
        raise ValueError(f"schedule {name!r}: unknown; choose {', '.join(SCHEDULES)}")
    if name == "step" and step_size <= 0:
        raise ValueError("schedule 'step' needs step_size > 0")
    warmup = int(warmup_steps)
    if name == "step":
        milestones = range(step_size, max(total_steps, step_size) + 1, step_size)
    if name in ("multistep", "step"):
        main = sched.MultiStepLR(optimizer, sorted(int(m) - warmup for m in milestones), gamma)
    elif name == "cosine" and total_steps > warmup:
        main = sched.CosineAnnealingLR(optimizer, T_max=total_steps - warmup)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup <= 0:
        return main
    lr = float(optimizer.param_groups[0]["lr"])
    start = warmup_start_lr / lr if warmup_start_lr is not None else 0.001
    ramp = sched.LinearLR(optimizer, start_factor=start, end_factor=1.0, total_iters=warmup)
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def unit_row_scales(layer: HierarchicalConv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight rows, bias rows) scales ``1 / n_j`` for ``unit_weight`` / ``unit_bias`` (J*K rows, unit-major)."""
    joined = layer.matrix.detach().sum(1).clamp_min(1.0)  # n_j, anchors joined to unit j
    per_row = (1.0 / joined).repeat_interleave(layer.num_outputs_per_anchor)
    return per_row.view(-1, 1, 1, 1), per_row


class RowScaledSteps:
    """Scale each listed parameter's update by a fixed per-row factor (see the module docstring).

    ``scales``: ``{parameter: factor tensor broadcastable to it}``. Registered as a pre/post step
    hook pair on ``optimizer``; the parameters are restored to ``old + c * (new - old)``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scales: dict[nn.Parameter, torch.Tensor]) -> None:
        self.scales = scales
        self._before: list[torch.Tensor] = []
        optimizer.register_step_pre_hook(self._save)
        optimizer.register_step_post_hook(self._scale)

    def _save(self, *_):
        self._before = [p.detach().clone() for p in self.scales]

    @torch.no_grad()
    def _scale(self, *_):
        for (p, c), old in zip(self.scales.items(), self._before):
            p.copy_(old + (p - old) * c.to(p.device, p.dtype))
        self._before = []


def parse_unit_lr_scale(value) -> float | str:
    """``optimizer.unit_lr_scale`` checked: a number > 0 or ``"auto"``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"optimizer.unit_lr_scale={value!r}: expected a number > 0 or 'auto'") from None
    if not scale > 0:
        raise ValueError(f"optimizer.unit_lr_scale={value!r}: expected a number > 0 or 'auto'")
    return scale


def _at_least_0(key: str, value, note: str = "") -> float:
    """``optimizer.<key>`` checked: a number >= 0 (not a bool), else one line naming the key."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number >= 0:
        raise ValueError(f"optimizer.{key}={value!r}: expected a number >= 0{note}")
    return number


def parse_backbone_lr_scale(value) -> float:
    """``optimizer.backbone_lr_scale`` checked: a number >= 0 (0 freezes the backbone body)."""
    return _at_least_0("backbone_lr_scale", value, " (0 freezes the backbone)")


def prior_strengths(config: dict) -> tuple[float, float]:
    """``(anchor_l2, unit_l2)`` of an ``optimizer`` section, each a number >= 0 (absent: 0)."""
    anchor, unit = (config.get(k) for k in ("anchor_l2", "unit_l2"))
    return (_at_least_0("anchor_l2", 0.0 if anchor is None else anchor),
            _at_least_0("unit_l2", 0.0 if unit is None else unit))


def prior_penalty(model: nn.Module, config: dict) -> torch.Tensor | float:
    """Sharing as a prior (issue 25): ``anchor_l2 / 2 * sum_a ||W_a||^2 + unit_l2 / 2 * sum_j ||U_j||^2``
    over the prediction convs' weights (biases free), added to the loss.

    Eq. 2's W'_a = W_a + sum_j M_aj U_j spans the same functions as the general head, so with a
    small weight decay the units change only the optimiser's geometry. With separate L2 penalties (the
    regularised multi-task learning of Evgeniou & Pontil, KDD 2004), a strong penalty on each anchor's
    own W_a and a weak one on the units pull the anchors a unit joins towards what they share. The
    penalty is *coupled* (in the loss, so Adam(W) normalises its gradient like the data's): a Gaussian
    prior, not decoupled decay. A general head's prediction convs take ``anchor_l2`` as a plain L2.
    Training only: the fold (W'_a) is unchanged. ``config``: an ``optimizer`` section.
    """
    anchor, unit = prior_strengths(config)
    if anchor == 0 and unit == 0:
        return 0.0
    from ..models import prediction_convs

    total = 0.0
    for conv, *_ in prediction_convs(model):
        if isinstance(conv, HierarchicalConv2d):
            total = total + anchor / 2 * conv.anchor_weight.pow(2).sum() + unit / 2 * conv.unit_weight.pow(2).sum()
        else:
            total = total + anchor / 2 * conv.weight.pow(2).sum()
    return total


def _given(cfg: dict, key: str, default: float) -> float:
    """``cfg[key]`` as a float, ``default`` where it is absent or None (a given 0 stays 0)."""
    value = cfg.pop(key, None)
    return default if value is None else float(value)


def make_optimizer(model: nn.Module, config: dict) -> torch.optim.Optimizer:
    """The optimiser of ``config`` (``name``, ``lr``, ``weight_decay``, ``momentum``, ``eps``,
    ``unit_lr_scale``, ``backbone_lr_scale``) over ``model``'s trainable parameters.

    ``backbone_lr_scale`` (fine-tuning an ImageNet backbone): the backbone body's parameters
    (:func:`~hierhead.models.builders.backbone_body`) train at ``scale x lr`` in a group of their own;
    at 0 they are left out (:class:`~hierhead.engine.module.DetectorModule` also stops their gradients).

    Args:
        model: a detector (or any module) whose ``requires_grad`` parameters are trained.
        config: the recipe's ``optimizer`` section. ``tf_rmsprop`` is :class:`TFRMSprop` (the
            paper's optimiser); ``rmsprop`` is PyTorch's RMSprop (eps outside the square root, mean
            square from 0). Both take ``decay`` (0.9) and ``eps`` (1.0), the TF Object Detection
            API's values; ``eps`` defaults to 1e-8 for Adam(W).
    """
    cfg = dict(config)
    name, lr = str(cfg.pop("name", "sgd")).lower(), float(cfg.pop("lr"))
    decay = float(cfg.pop("weight_decay", 0.0))
    scale = parse_unit_lr_scale(cfg.pop("unit_lr_scale", 1.0))
    body_scale = parse_backbone_lr_scale(cfg.pop("backbone_lr_scale", 1.0))
    prior_strengths(config)  # checked here; the penalty is a loss term (prior_penalty), not the optimiser's
    layers = [m for m in model.modules() if isinstance(m, HierarchicalConv2d)]
    unit_ids = {id(p) for m in layers for p in (m.unit_weight, m.unit_bias)}
    body_ids = set()
    if body_scale != 1.0 and hasattr(model, "backbone"):  # a detector (the head protocol passes its head alone)
        from ..models.builders import backbone_body
        body_ids = {id(p) for p in backbone_body(model).parameters()}
    trained = [p for p in model.parameters() if p.requires_grad and not (body_scale == 0 and id(p) in body_ids)]
    units = [p for p in trained if id(p) in unit_ids]
    body = [p for p in trained if id(p) in body_ids]
    # one group at scale 1 (the paper's single lr; also what checkpoints from before the options hold); the
    # first group is always at lr (the warm-up's start is a fraction of it). Each group is named: Lightning's
    # LearningRateMonitor logs it as lr-<Optimizer>/<name> (results.png's legend), not as pg1, pg2.
    rest = [p for p in trained if id(p) not in unit_ids and id(p) not in body_ids]
    params = [{"params": rest, "name": "detector"}]
    if units and scale not in (1.0, "auto"):
        params.append({"params": units, "lr": lr * scale, "name": "units"})
    else:
        rest.extend(units)
    if body:
        params.append({"params": body, "lr": lr * body_scale, "name": "backbone"})
    if name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=float(cfg.pop("momentum", 0.9)), weight_decay=decay)
    elif name in ("rmsprop", "tf_rmsprop"):  # the TF Object Detection API's values (paper IV-C)
        eps, alpha, momentum = _given(cfg, "eps", 1.0), _given(cfg, "decay", 0.9), _given(cfg, "momentum", 0.9)
        opt = (torch.optim.RMSprop(params, lr=lr, momentum=momentum, alpha=alpha, eps=eps, weight_decay=decay)
               if name == "rmsprop" else TFRMSprop(params, lr=lr, decay=alpha, momentum=momentum, eps=eps,
                                                   weight_decay=decay))
    elif name in ("adam", "adamw"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        opt = cls(params, lr=lr, weight_decay=decay, eps=_given(cfg, "eps", 1e-8))
    else:
        raise ValueError(f"optimizer {name!r}: unknown; choose {', '.join(OPTIMIZERS)}")
    if scale == "auto" and units:
        scales = {}
        for m in layers:
            if m.unit_weight.requires_grad:
                scales[m.unit_weight], scales[m.unit_bias] = unit_row_scales(m)
        opt.hierhead_row_scales = RowScaledSteps(opt, scales)  # kept alive with the optimiser
    return opt
