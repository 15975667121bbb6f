"""A study as data: the plan file, its datasets, its stages and arms, and the jobs they expand to.

A plan is a YAML file with no loops or conditionals; everything a run needs is declared::

    name: example                      # rows: results/<name>/<stage>.csv beside the plan (``rows:``)
    question: what the study asks      # prose; the pre-registration is this file and the prose beside it
    protocol: train                    # hierhead.study.protocols: how a job trains and what it scores
    recipe: defaults-2026-12           # the recipe every arm starts from
    datasets: [cards, microcontrollers]  # aliases of datasets.yaml beside the plan (defined once)
    seeds: [0, 1, 2]
    set: {max_steps: 600}              # settings of every arm (dotted keys or nested)
    metric: mAP                        # the row column the picks and decisions compare
    stages:
      - name: holdout
        score: holdout                 # holdout (carved from train) or test
        holdout: 0.2
        arms:
          general: {design: "9An{9}"}
          size512: {design: "9An{9}", set: {image_size: 512}}
        pick: {name: size, setting: image_size}        # the best arm's value, carried to later stages
        decision: {baseline: general, margin: 1.0}
      - name: test
        score: test
        arms:
          chosen: {design: "9An{9}", set: {image_size: {pick: holdout.size}}}

Besides: ``datasets`` may define a dataset in the plan (``{name, root, set}``); a stage may have its own
``seeds``, ``fractions``, ``protocol`` and ``datasets`` (some of the plan's), its seeds counted by an earlier stage's
``rule: seeds`` pick (``seeds: {first: 1000, n: {pick: pilot.n}}``: seeds 1000 to 1000 + n - 1, n per dataset with
``per: dataset``), several ``picks`` (:class:`Pick`:
best arm with a tolerance and an order of preference, or a number of seeds from the spread) and several
``decisions`` (:class:`Decision`: ``holm``, ``adopt``, ``spread``, ``meta``, ``holds``); ``legacy`` reads a stage's rows from a CSV of an older layout (:mod:`.adapters`), an arm's
``label`` and ``match`` saying which of them are its; an arm's ``recipe`` replaces the plan's for its jobs (two
recipes compared); ``docs`` lists the files whose ``study`` blocks the report
fills (:mod:`.report`).

A job is one (stage, dataset, arm, seed, fraction); its key names its row and its run folder, and nothing is
parsed back from the key: a job's settings always come from the plan.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Plan", "Stage", "Arm", "Dataset", "Job", "Pick", "Decision", "load_plan", "load_datasets", "ROW_COLUMNS",
           "PlanError"]

#: One row schema for every study (and every new results CSV): who ran what, on which split, what it scored.
#: ``mAP`` is VOC07 in percent; ``AP50`` and ``AP`` COCO-style (pycocotools) in percent; ``settings`` the JSON of
#: the arm's effective settings (picks filled in); ``same_as`` the job whose run this one shares (the same
#: training config once its ``auto`` choices are made: trained once); ``seconds`` the job's wall time (stopped and
#: resumed: the sum of its parts', each with its own start-up, a part killed outright up to its last checkpoint;
#: empty when a part's is unknown), ``threads`` its CPU threads.
ROW_COLUMNS = ("study", "stage", "dataset", "arm", "design", "seed", "fraction", "protocol", "recipe", "settings",
               "same_as", "split", "scored_images", "skipped_boxes", "mAP", "AP50", "AP", "steps", "train_images", "seconds",
               "threads", "device", "version", "commit")
SCORES = ("test", "holdout")


class PlanError(ValueError):
    """A plan file that cannot run: the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset alias: its root (a folder or a ``synthetic:`` spec) and the settings it always trains with
    (e.g. microcontrollers' seeded re-split)."""
    name: str
    root: str
    set: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Arm:
    """A design and its settings. ``label``: the name its rows had before plan files (e.g. ``9An{9,3}S@prior0.1``:
    rows keep their labels, so they stay comparable); default the design."""
    name: str
    design: str
    set: dict = dataclasses.field(default_factory=dict)
    label: str | None = None
    match: dict = dataclasses.field(default_factory=dict)  # legacy rows: {column: regex} besides the label
    recipe: str | None = None  # the recipe this arm starts from, when not the plan's (two recipes compared)

    @property
    def row_label(self) -> str:
        return self.label or self.design


@dataclasses.dataclass(frozen=True)
class Pick:
    """Carries a value from a finished stage to the next, computed from its rows (never copied by hand).

    ``rule: best`` (default): the ``setting`` of the best arm by mean ``metric``, among ``among`` (default every
    arm): the arms within ``tolerance`` of the highest mean are tied, and the first of them in ``prefer`` (default
    the stage's order) is taken. ``per``: ``all`` pools the datasets; ``dataset`` picks per dataset
    (``{dataset: value}``); ``each`` keeps only arms within ``tolerance`` of the best on every dataset.
    ``rule: seeds``: a number of seeds, the smallest n in [``min_n``, ``max_n``] with t(0.975, n-1) s / sqrt(n) <=
    ``half_width``, s the largest SD of the paired differences to ``baseline`` over the stage's (dataset,
    fraction, arm) cells (``max_n`` when none is small enough); ``per: dataset`` gives each dataset its own n
    (``{dataset: n}``, s over that dataset's cells). ``hours``: a cap on the wall hours of the runs counted, a
    seed of a dataset costing as many runs as the stage has arms, each the median ``seconds`` of the dataset's
    rows here, ``workers`` at a time; over the cap, every n is cut to the largest common ceiling that fits (the
    datasets needing fewer keep theirs; :func:`seed_counts` gives both). A later stage's ``seeds: {first, n:
    {pick: ...}}`` runs that many seeds, so the count is computed from the pilot's rows, never copied by hand."""
    name: str
    setting: str | None = None
    per: str = "all"  # all | dataset | each
    tolerance: float = 0.0
    prefer: tuple = ()
    among: tuple = ()
    rule: str = "best"  # best | seeds
    baseline: str | None = None
    half_width: float | None = None
    min_n: int = 2
    max_n: int = 100
    hours: float | None = None
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class Decision:
    """Each arm against ``baseline`` by paired differences (same dataset, seed and fraction).

    ``arms``: the arms compared (default every arm but the baseline). ``rule: holm``: per dataset, Holm-corrected
    across the ``family`` (``arms``: the arms of one dataset;
    ``all``: every dataset x arm of the stage); ``margin`` the equivalence bound of "no effect"
    (:func:`hierhead.comparison.decide`). ``rule: adopt``: the pairs of every dataset pooled; an arm is
    adopted when their mean is > 0, the lower bound of their (1 - alpha) t interval >= -margin, and no
    dataset's mean difference is below -margin; else the baseline is kept. ``rule: spread``: ``pairs`` names two
    differences ``[[a, b], [c, d]]`` (a change applied to both arms of a comparison, e.g. EMA); per dataset, the
    ratio SD(c - d) / SD(a - b) over seeds with a paired bootstrap interval, "lower by >= 30 %" when the ratio
    is <= 0.7 and its interval's upper bound < 1; and the change's own effect (c - a, d - b) with its t interval,
    "holds" when the lower bound is >= -margin. ``rule: meta``: per dataset, the paired t interval; then the
    datasets in ``pool`` (default all but ``origin``, the dataset where the hypothesis was found, reported beside)
    pooled by a random-effects meta-analysis (:func:`hierhead.comparison.pooled_effect`: Paule-Mandel tau^2,
    Hartung-Knapp-Sidik-Jonkman interval), Holm across the arms; "better" / "worse" when the Holm-adjusted p <
    alpha, "no effect" when the Bonferroni HKSJ interval lies within +-margin, else "inconclusive" with the
    seeds per dataset it would need; ``explore: variation`` adds an exploratory table and scatter (not a test):
    each dataset's effect beside its Table II variation over sizes minus over aspect ratios (the paper's reading:
    share across the dimension that varies more, :mod:`hierhead.recommend`), with Pearson's r. ``rule: holds``
    (a change kept for its speed, issue 41): per dataset, the paired t interval; the arm "holds" when its lower
    bound is >= -margin on every dataset, reported with the arm's run time over the baseline's."""
    baseline: str
    margin: float | None = None
    alpha: float = 0.05
    family: str = "arms"
    rule: str = "holm"
    pairs: tuple = ()
    arms: tuple = ()  # the arms compared with the baseline (the family); default every other arm
    pool: tuple = ()  # rule meta: the datasets pooled (default every one but origin)
    origin: str | None = None  # rule meta: the dataset where the hypothesis was found, not pooled
    explore: str | None = None  # rule meta: ``variation``, each dataset's effect beside its Table II statistic


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    arms: tuple[Arm, ...]
    score: str = "test"
    holdout: float | None = None
    set: dict = dataclasses.field(default_factory=dict)
    picks: tuple[Pick, ...] = ()
    decisions: tuple[Decision, ...] = ()
    fractions: tuple[float, ...] | None = None  # the plan's when None
    seeds: tuple[int, ...] | None = None  # the plan's when None
    protocol: str | None = None  # the plan's when None
    datasets: tuple[str, ...] | None = None  # the plan's when None (a stage on some of them)
    #: seeds counted by an earlier stage's ``rule: seeds`` pick: (the first seed, the pick's ``stage.name``)
    seed_count: tuple[int, str] | None = None

    @property
    def pick(self) -> Pick | None:
        """The stage's first pick (most stages carry one value)."""
        return self.picks[0] if self.picks else None

    @property
    def decision(self) -> Decision | None:
        """The stage's first decision (most stages have one)."""
        return self.decisions[0] if self.decisions else None

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


@dataclasses.dataclass(frozen=True)
class Job:
    stage: str
    dataset: str
    arm: str
    seed: int
    fraction: float

    @property
    def key(self) -> str:
        """``stage/dataset/arm/seed`` (``-fF`` below 1): the row's identity and its run folder."""
        tail = f"seed{self.seed}" + (f"-f{self.fraction:g}" if self.fraction != 1 else "")
        return f"{self.stage}/{self.dataset}/{self.arm}/{tail}"

    def row_key(self) -> tuple:
        return (self.stage, self.dataset, self.arm, self.seed, self.fraction)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A parsed, checked plan (:func:`load_plan`). Paths are absolute: ``rows`` the folder of its CSVs,
    ``runs`` the folder of its run folders."""
    path: Path
    name: str
    protocol: str
    recipe: str | None  # None: the built-in defaults
    datasets: tuple[Dataset, ...]
    seeds: tuple[int, ...]
    fractions: tuple[float, ...]
    stages: tuple[Stage, ...]
    set: dict
    metric: str
    threads: int
    rows: Path
    runs: Path
    question: str = ""
    docs: tuple[Path, ...] = ()
    #: stage -> [{"file": a CSV of an older layout, "datasets": {its name: the alias}, "dataset": the alias of
    #: every row of a file without a dataset column, "device": what they trained on}] (adapters.py)
    legacy: dict = dataclasses.field(default_factory=dict)
    reference: Path | None = None  # published numbers by dataset, shown beside the summary (report.py)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise PlanError(f"{self.path}: no stage {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def dataset(self, name: str) -> Dataset:
        return next(d for d in self.datasets if d.name == name)

    def datasets_of(self, stage: str) -> tuple[Dataset, ...]:
        """The datasets a stage runs on: its own ``datasets`` (some of the plan's), else the plan's."""
        own = self.stage(stage).datasets
        return tuple(d for d in self.datasets if d.name in own) if own else self.datasets

    def rows_file(self, stage: str) -> Path:
        return self.rows / f"{stage}.csv"

    def jobs(self, stage: str | None = None, picks: dict[str, Any] | None = None) -> list[Job]:
        """Every job in run order: stage by stage, then seed-major (each dataset gets seed 0 first), the arms
        of one (dataset, seed, fraction) side by side so pairs finish together. A stage whose seeds a pick counts
        (``seed_count``) has jobs once ``picks`` (``{"stage.name": value}``, :func:`hierhead.study.runner.picks`)
        holds that pick, none before."""
        stages = [self.stage(stage)] if stage else self.stages
        out = []
        for s in stages:
            seeds = {d.name: self.seeds_of(s, d.name, picks) for d in self.datasets_of(s.name)}
            out += [Job(s.name, d.name, a.name, seed, f) for seed in sorted(set().union(*seeds.values()))
                    for f in (s.fractions or self.fractions) for d in self.datasets_of(s.name) if seed in seeds[d.name]
                    for a in s.arms]
        return out

    def seeds_of(self, stage: Stage, dataset: str, picks: dict[str, Any] | None = None) -> tuple[int, ...]:
        """The seeds a stage runs on a dataset: listed (the stage's, else the plan's), or counted by a pick (none
        until ``picks`` holds it)."""
        if stage.seed_count is None:
            return stage.seeds or self.seeds
        first, ref = stage.seed_count
        n = (picks or {}).get(ref)
        n = n.get(dataset) if isinstance(n, dict) else n
        return tuple(range(first, first + n)) if n else ()

    def protocol_of(self, stage: str) -> str:
        return self.stage(stage).protocol or self.protocol

    def recipe_of(self, job: Job) -> str | None:
        """The recipe a job starts from: its arm's ``recipe``, else the plan's (None: the built-in defaults)."""
        return self.stage(job.stage).arm(job.arm).recipe or self.recipe

    def settings(self, job: Job, picks: dict[str, Any] | None = None) -> dict:
        """The job's settings, nested: plan ``set`` <- dataset ``set`` <- stage ``set`` <- arm ``set``, with
        ``{pick: stage.name}`` values replaced from ``picks`` (``{"stage.name": value or {dataset: value}}``)."""
        s, arm = self.stage(job.stage), self.stage(job.stage).arm(job.arm)
        out: dict = {}
        for layer in (self.set, self.dataset(job.dataset).set, s.set, arm.set):
            out = _merge(out, layer)
        return _fill(out, picks or {}, job.dataset, self.path)

    def needs(self, stage: str) -> list[str]:
        """The earlier stages whose picks this stage's settings use."""
        s = self.stage(stage)
        refs = [r for layer in (self.set, s.set, *(a.set for a in s.arms)) for r in _refs(layer)]
        refs += [s.seed_count[1]] if s.seed_count else []
        return list(dict.fromkeys(r.split(".")[0] for r in refs))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and not _is_pick(v) else v
    return out


def _is_pick(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"pick"}


def _refs(layer: dict) -> list[str]:
    out = []
    for v in layer.values():
        if _is_pick(v):
            out.append(str(v["pick"]))
        elif isinstance(v, dict):
            out += _refs(v)
    return out


def _fill(layer: dict, picks: dict, dataset: str, where: Path) -> dict:
    out = {}
    for k, v in layer.items():
        if _is_pick(v):
            if v["pick"] not in picks:
                raise PlanError(f"{where}: {k} needs pick {v['pick']!r}, not made yet (its stage has not finished)")
            value = picks[v["pick"]]
            out[k] = value[dataset] if isinstance(value, dict) and dataset in value else value
        elif isinstance(v, dict):
            out[k] = _fill(v, picks, dataset, where)
        else:
            out[k] = v
    return out


def nest(flat: dict, where: str) -> dict:
    """``{"data.resplit": 0.3, "optimizer": {"lr": 1}}`` -> nested; a key given twice is an error."""
    if not isinstance(flat, dict):
        raise PlanError(f"{where}: expected a mapping of settings, got {flat!r}")
    out: dict = {}
    for key, value in flat.items():
        node, parts = out, str(key).split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise PlanError(f"{where}: {key!r} sets inside a value that is not a section")
        if parts[-1] in node:
            raise PlanError(f"{where}: {key!r} is set twice")
        node[parts[-1]] = nest(value, f"{where}.{key}") if isinstance(value, dict) and not _is_pick(value) else value
    return out


def _keys(d: dict, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise PlanError(f"{where}: expected a mapping, got {d!r}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise PlanError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(d))
    if missing:
        raise PlanError(f"{where}: missing key {missing[0]!r}")


def load_datasets(path: Path) -> dict[str, Dataset]:
    """The aliases of a ``datasets.yaml``: ``name: {root: PATH or synthetic:..., set: {...}}``; a relative root is
    relative to the file's folder."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PlanError(f"{path}: cannot read the dataset aliases ({e})") from None
    return {str(name): _dataset(path, str(name), entry) for name, entry in raw.items()}


def _inline_datasets(path: Path, entries: list[dict]) -> dict[str, Dataset]:
    """Datasets defined in the plan itself (``{name, root, set}``): a user's own data needs no aliases file."""
    return {str(e["name"]): _dataset(path, str(e["name"]), {k: v for k, v in e.items() if k != "name"}) for e in entries}


def _dataset(path: Path, name: str, entry: dict) -> Dataset:
    _keys(entry, {"root", "set", "note"}, {"root"}, f"{path}: {name}")
    root = str(entry["root"])
    if not root.startswith("synthetic:"):
        root = str((path.parent / root).resolve())
    return Dataset(name, root, nest(entry.get("set") or {}, f"{path}: {name}.set"))


PLAN_KEYS = {"name", "question", "protocol", "recipe", "datasets", "seeds", "fractions", "set", "metric", "threads",
             "stages", "rows", "runs", "docs", "aliases", "legacy", "reference"}
STAGE_KEYS = {"name", "arms", "score", "holdout", "set", "pick", "picks", "decision", "decisions", "note", "fractions",
              "seeds", "protocol", "datasets"}


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file (every name, every reference) before any job runs."""
    from ..design import Design
    from .protocols import PROTOCOLS

    path = Path(path).resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    _keys(raw, PLAN_KEYS, {"name", "protocol", "recipe", "datasets", "seeds", "stages"}, str(path))
    name = str(raw["name"])
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise PlanError(f"{path}: name {name!r}: a file name without spaces or slashes")
    if raw["protocol"] not in PROTOCOLS:
        raise PlanError(f"{path}: protocol {raw['protocol']!r}: unknown; choose {', '.join(PROTOCOLS)}")
    if not isinstance(raw["datasets"], list) or not raw["datasets"]:
        raise PlanError(f"{path}: datasets: a list of aliases or of {{name, root, set}}")
    inline = {str(d["name"]): d for d in raw["datasets"] if isinstance(d, dict) and "name" in d}
    aliases = {}
    if len(inline) < len(raw["datasets"]):  # some are aliases: read the file that defines them
        aliases = load_datasets(path.parent / str(raw.get("aliases", "datasets.yaml")))
    aliases.update(_inline_datasets(path, list(inline.values())))
    names = [str(d["name"]) if isinstance(d, dict) and "name" in d else str(d) for d in raw["datasets"]]
    missing = [d for d in names if d not in aliases]
    if missing:
        raise PlanError(f"{path}: dataset {missing[0]!r} has no alias in "
                        f"{path.parent / str(raw.get('aliases', 'datasets.yaml'))} (known: {', '.join(aliases)}); "
                        f"or define it in the plan: {{name: NAME, root: FOLDER}}")
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: datasets {names}: a dataset is listed twice")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise PlanError(f"{path}: seeds {seeds!r}: a list of whole numbers")
    if len(set(seeds)) != len(seeds):
        raise PlanError(f"{path}: seeds {seeds!r}: a seed is listed twice")
    fractions = raw.get("fractions", [1.0])
    if not isinstance(fractions, list) or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in fractions):
        raise PlanError(f"{path}: fractions {fractions!r}: numbers in (0, 1]")
    metric = str(raw.get("metric", "mAP"))
    if metric not in ("mAP", "AP50", "AP"):
        raise PlanError(f"{path}: metric {metric!r}: choose mAP (VOC07), AP50 or AP")
    threads = raw.get("threads", 1)
    if not isinstance(threads, int) or threads < 1:
        raise PlanError(f"{path}: threads {threads!r}: a whole number >= 1")
    stages: list[Stage] = []
    for i, s in enumerate(raw["stages"] or []):
        where = f"{path}: stages[{i}]"
        _keys(s, STAGE_KEYS, {"name", "arms"}, where)
        if s["name"] in [t.name for t in stages]:
            raise PlanError(f"{where}: stage {s['name']!r} is named twice")
        where = f"{path}: stage {s['name']}"
        arms = []
        for arm_name, a in (s["arms"] or {}).items():
            _keys(a, {"design", "set", "label", "match", "recipe"}, {"design"}, f"{where}: arm {arm_name}")
            try:
                Design.parse(str(a["design"]), num_sizes=3, num_ratios=3)
            except ValueError as e:
                raise PlanError(f"{where}: arm {arm_name}: {e}") from None
            arms.append(Arm(str(arm_name), str(a["design"]), nest(a.get("set") or {}, f"{where}: arm {arm_name}.set"),
                            str(a["label"]) if a.get("label") else None,
                            {str(k): str(v) for k, v in (a.get("match") or {}).items()},
                            str(a["recipe"]) if a.get("recipe") else None))
        if not arms:
            raise PlanError(f"{where}: no arms")
        score = s.get("score", "test")
        if score not in SCORES:
            raise PlanError(f"{where}: score {score!r}: choose {' or '.join(SCORES)}")
        holdout = s.get("holdout")
        if (score == "holdout") != (holdout is not None):
            raise PlanError(f"{where}: score: holdout and holdout: F (the fraction of train held out) go together")
        if holdout is not None and not (isinstance(holdout, (int, float)) and 0 < holdout < 1):
            raise PlanError(f"{where}: holdout {holdout!r}: a fraction in (0, 1)")
        picks_ = tuple(_pick(p, [a.name for a in arms], where) for p in _one_or_many(s, "pick", where))
        stage_seeds, seed_count = s.get("seeds"), None
        if isinstance(stage_seeds, dict):
            seed_count, stage_seeds = _seed_count(stage_seeds, where), None
        if stage_seeds is not None and (not isinstance(stage_seeds, list) or not stage_seeds or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in stage_seeds) or len(set(stage_seeds)) != len(stage_seeds)):
            raise PlanError(f"{where}: seeds {stage_seeds!r}: a list of distinct whole numbers, or {{first: N, n: "
                            f"{{pick: STAGE.NAME}}}}")
        if s.get("protocol") is not None and s["protocol"] not in PROTOCOLS:
            raise PlanError(f"{where}: protocol {s['protocol']!r}: unknown; choose {', '.join(PROTOCOLS)}")
        decisions = tuple(_decision(d, [a.name for a in arms], where) for d in _one_or_many(s, "decision", where))
        own = s.get("fractions")
        if own is not None and (not isinstance(own, list) or not own or not all(
                isinstance(f, (int, float)) and 0 < f <= 1 for f in own)):
            raise PlanError(f"{where}: fractions {own!r}: numbers in (0, 1]")
        own_data = s.get("datasets")
        if own_data is not None and (not isinstance(own_data, list) or not own_data or not set(map(str, own_data)) <= set(names)
                                     or len(set(own_data)) != len(own_data)):
            raise PlanError(f"{where}: datasets {own_data!r}: distinct datasets of the plan ({', '.join(names)})")
        stages.append(Stage(str(s["name"]), tuple(arms), score, holdout, nest(s.get("set") or {}, f"{where}.set"),
                            picks_, decisions, tuple(float(f) for f in own) if own else None,
                            tuple(stage_seeds) if stage_seeds else None, s.get("protocol"),
                            tuple(map(str, own_data)) if own_data else None, seed_count))
    if not stages:
        raise PlanError(f"{path}: no stages")
    plan = Plan(path=path, name=name, protocol=raw["protocol"],
                recipe=None if raw["recipe"] is None else str(raw["recipe"]),  # None: the built-in defaults
                datasets=tuple(aliases[d] for d in names), seeds=tuple(seeds),
                fractions=tuple(float(f) for f in fractions), stages=tuple(stages), set=nest(raw.get("set") or {}, f"{path}: set"),
                metric=metric, threads=threads,
                rows=(path.parent / str(raw.get("rows", f"results/{name}"))).resolve(),
                runs=(path.parent / str(raw.get("runs", f"runs/{name}"))).resolve(),
                question=str(raw.get("question", "")).strip(),
                docs=tuple((path.parent / str(d)).resolve() for d in raw.get("docs") or []),
                legacy={str(k): _legacy(path, v) for k, v in (raw.get("legacy") or {}).items()},
                reference=(path.parent / str(raw["reference"])).resolve() if raw.get("reference") else None)
    for stage_name, files in plan.legacy.items():
        plan.stage(stage_name)  # names a stage of the plan
        for old in files:
            if not old["file"].is_file():
                raise PlanError(f"{path}: legacy rows of stage {stage_name}: no file {old['file']}")
            if old["dataset"] is not None and old["dataset"] not in names:
                raise PlanError(f"{path}: legacy rows of stage {stage_name}: dataset {old['dataset']!r} is not one "
                                f"of the plan's ({', '.join(names)})")
    for s in plan.stages:  # a meta decision pools datasets of its stage
        names_of = [d.name for d in plan.datasets_of(s.name)]
        for dec in s.decisions:
            pooled = [n for n in (dec.pool or names_of) if n != dec.origin]
            if dec.rule == "meta" and (not set(dec.pool) <= set(names_of) or (dec.origin and dec.origin not in names_of)
                                       or dec.origin in dec.pool or len(pooled) < 2):
                raise PlanError(f"{path}: stage {s.name}: decision meta pools {pooled} (origin {dec.origin!r}): at "
                                f"least 2 of the stage's datasets ({', '.join(names_of)}), the origin not among them")
    for k, s in enumerate(plan.stages):  # a pick comes from an earlier stage that declares it
        earlier = {f"{t.name}.{p.name}": t for t in plan.stages[:k] for p in t.picks}
        for layer in (plan.set, s.set, *(a.set for a in s.arms)):
            for ref in _refs(layer):
                if ref not in earlier:
                    raise PlanError(f"{path}: stage {s.name}: pick {ref!r} is not declared by an earlier stage "
                                    f"(declared: {', '.join(earlier) or 'none'})")
        if s.seed_count and not (s.seed_count[1] in earlier and any(
                p.rule == "seeds" and f"{t.name}.{p.name}" == s.seed_count[1] for t in plan.stages[:k] for p in t.picks)):
            raise PlanError(f"{path}: stage {s.name}: seeds counted by pick {s.seed_count[1]!r}: not a rule: seeds pick "
                            f"of an earlier stage")
        if s.seed_count and (missing := [d.name for d in plan.datasets_of(s.name) if d not in plan.datasets_of(
                earlier[s.seed_count[1]].name)]):
            raise PlanError(f"{path}: stage {s.name}: seeds counted by {s.seed_count[1]!r}, whose stage does not run "
                            f"on {', '.join(missing)}")
        for p in s.picks:
            for a in s.arms:
                if p.rule == "best" and p.setting != "design" and (not p.among or a.name in p.among) and _get(
                        plan.settings(Job(s.name, plan.datasets_of(s.name)[0].name, a.name, 0, 1.0), _placeholder(plan, k)),
                        p.setting) is _MISSING:
                    raise PlanError(f"{path}: stage {s.name}: pick.setting {p.setting!r} is not set by arm {a.name}")
    return plan


def _one_or_many(stage: dict, key: str, where: str) -> list:
    """A stage's ``pick`` / ``picks`` (or ``decision`` / ``decisions``) as a list."""
    if stage.get(key) and stage.get(key + "s"):
        raise PlanError(f"{where}: give {key} or {key}s, not both")
    return [stage[key]] if stage.get(key) else list(stage.get(key + "s") or [])


def _seed_count(raw: dict, where: str) -> tuple[int, str]:
    """A stage's ``seeds: {first: N, n: {pick: STAGE.NAME}}``: (N, the pick)."""
    _keys(raw, {"first", "n"}, {"first", "n"}, f"{where}: seeds")
    first, n = raw["first"], raw["n"]
    if not isinstance(first, int) or isinstance(first, bool) or first < 0 or not _is_pick(n):
        raise PlanError(f"{where}: seeds {raw!r}: {{first: a whole number >= 0, n: {{pick: STAGE.NAME}}}}")
    return first, str(n["pick"])


def _pick(raw: dict, names: list[str], where: str) -> Pick:
    """A stage's pick, checked against its arms."""
    _keys(raw, {"name", "setting", "per", "tolerance", "prefer", "among", "rule", "baseline", "half_width", "min_n",
                "max_n", "hours", "workers"}, {"name"}, f"{where}: pick")
    pick = Pick(**{**raw, "prefer": tuple(raw.get("prefer") or ()), "among": tuple(raw.get("among") or ())})
    if pick.rule not in ("best", "seeds"):
        raise PlanError(f"{where}: pick.rule {pick.rule!r}: choose best or seeds")
    if pick.per not in ("all", "dataset", "each") or (pick.rule == "seeds" and pick.per == "each"):
        raise PlanError(f"{where}: pick.per {pick.per!r}: choose all, dataset"
                        + (" or each" if pick.rule != "seeds" else " (rule seeds)"))
    if pick.rule == "best" and not pick.setting:
        raise PlanError(f"{where}: pick {pick.name}: rule best carries a setting: give setting")
    if pick.rule == "seeds" and (pick.baseline not in names or not pick.half_width):
        raise PlanError(f"{where}: pick {pick.name}: rule seeds needs a baseline arm and a half_width")
    if (pick.hours is not None or pick.workers != 1) and (pick.rule != "seeds" or not (
            isinstance(pick.hours, (int, float)) and pick.hours > 0 and isinstance(pick.workers, int) and pick.workers >= 1)):
        raise PlanError(f"{where}: pick {pick.name}: hours {pick.hours!r}, workers {pick.workers!r}: a cap of rule "
                        f"seeds, hours > 0 and workers a whole number >= 1")
    for key in ("prefer", "among"):
        if not set(getattr(pick, key)) <= set(names):
            raise PlanError(f"{where}: pick.{key} {list(getattr(pick, key))}: arms of the stage")
    return pick


def _decision(raw: dict, names: list[str], where: str) -> Decision:
    """A stage's decision, checked against its arms."""
    _keys(raw, {"baseline", "margin", "alpha", "family", "rule", "pairs", "arms", "pool", "origin", "explore"},
          {"baseline"}, f"{where}: decision")
    decision = Decision(**{**raw, "pairs": tuple(tuple(p) for p in raw.get("pairs") or ()),
                           "arms": tuple(raw.get("arms") or ()), "pool": tuple(map(str, raw.get("pool") or ()))})
    if not set(decision.arms) <= set(names) - {decision.baseline}:
        raise PlanError(f"{where}: decision.arms {list(decision.arms)}: arms of the stage other than the baseline")
    if decision.baseline not in names:
        raise PlanError(f"{where}: decision.baseline {decision.baseline!r} is not one of its arms")
    if decision.family not in ("arms", "all"):
        raise PlanError(f"{where}: decision.family {decision.family!r}: choose arms or all")
    if decision.rule not in ("holm", "adopt", "spread", "meta", "holds"):
        raise PlanError(f"{where}: decision.rule {decision.rule!r}: choose holm, adopt, spread, meta or holds")
    margin_is = {"meta": "the bound of 'no effect'", "adopt": "the worst mean loss allowed",
                 "holds": "the lowest lower bound allowed"}
    if decision.rule in margin_is and decision.margin is None:
        raise PlanError(f"{where}: decision.rule {decision.rule} needs a margin ({margin_is[decision.rule]})")
    if decision.explore is not None and (decision.rule != "meta" or decision.explore != "variation"):
        raise PlanError(f"{where}: decision.explore {decision.explore!r}: 'variation', with rule meta")
    if decision.rule == "spread" and (len(decision.pairs) != 2 or any(
            len(p) != 2 or not set(p) <= set(names) for p in decision.pairs) or decision.margin is None):
        raise PlanError(f"{where}: decision.rule spread needs pairs: [[a, b], [c, d]] of its arms and a margin")
    return decision


def _legacy(path: Path, entries) -> list[dict]:
    """A stage's ``legacy`` rows: one entry or a list of them, each a file or ``{file, datasets: {old name: alias}}``
    or ``{file, dataset: alias}`` (a file whose rows have no dataset column: every row is that dataset's), and
    ``device`` (default ``cpu``) what its runs trained on, ``column`` (a ``demo`` file's: ``mAP`` or ``unseen_mAP``)
    the score read as the row's mAP."""
    out = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if not isinstance(entry, dict):
            entry = {"file": entry}
        _keys(entry, {"file", "datasets", "dataset", "device", "column"}, {"file"}, f"{path}: legacy")
        out.append({"file": (path.parent / str(entry["file"])).resolve(), "datasets": dict(entry.get("datasets") or {}),
                    "dataset": str(entry["dataset"]) if entry.get("dataset") else None,
                    "device": str(entry.get("device") or "cpu"), "column": str(entry.get("column") or "mAP")})
    return out


_MISSING = object()


def _placeholder(plan: Plan, upto: int) -> dict:
    """Stand-in picks for checking a stage's settings before earlier stages have run."""
    return {f"{t.name}.{p.name}": None for t in plan.stages[:upto] for p in t.picks}


def _get(settings: dict, dotted: str) -> Any:
    node: Any = settings
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return _MISSING
        node = node[p]
    return node


def pick_value(plan: Plan, stage: Stage, pick: Pick, rows: list[dict]) -> Any:
    """The value a finished stage's ``pick`` carries (:class:`Pick`); ``rows`` are the stage's, complete."""
    if pick.rule == "seeds":
        return seed_counts(plan, stage, pick, rows)[1]
    arms = [stage.arm(n) for n in pick.among] if pick.among else list(stage.arms)
    datasets = plan.datasets_of(stage.name)
    order = [stage.arm(n) for n in pick.prefer] + [a for a in arms if a.name not in pick.prefer]

    def means(subset: list[dict]) -> dict[str, float]:
        out = {}
        for a in arms:
            values = [float(r[plan.metric]) for r in subset if r["arm"] == a.name]
            out[a.name] = sum(values) / len(values) if values else -math.inf
        return out

    def first(tied: set[str]) -> str:
        return next(a.name for a in order if a.name in tied)

    def best(subset: list[dict]) -> str:
        m = means(subset)
        return first({n for n, v in m.items() if v >= max(m.values()) - pick.tolerance})

    def value(arm: str, dataset: str) -> Any:
        if pick.setting == "design":
            return stage.arm(arm).design
        return _get(json.loads(next(r["settings"] for r in rows if r["arm"] == arm and r["dataset"] == dataset)),
                    pick.setting)

    if pick.per == "dataset":
        return {d.name: value(best([r for r in rows if r["dataset"] == d.name]), d.name) for d in datasets}
    if pick.per == "each":
        per = [means([r for r in rows if r["dataset"] == d.name]) for d in datasets]
        tied = {a.name for a in arms if all(m[a.name] >= max(m.values()) - pick.tolerance for m in per)}
        return value(first(tied) if tied else best(rows), datasets[0].name)
    return value(best(rows), datasets[0].name)


def row_values(rows: list[dict], metric: str) -> dict[tuple, float]:
    """(dataset, arm, seed, fraction) -> the rows' ``metric``: what picks, decisions and tables compare."""
    return {(r["dataset"], r["arm"], int(r["seed"]), float(r["fraction"])): float(r[metric]) for r in rows}


def seed_counts(plan: Plan, stage: Stage, pick: Pick, rows: list[dict]) -> tuple[Any, Any]:
    """``rule: seeds`` (:class:`Pick`): (the n the half-width needs, the n counted under the ``hours`` cap), each
    one n or ``{dataset: n}`` with ``per: dataset``."""
    import statistics

    from scipy import stats

    value = row_values(rows, plan.metric)
    cells: dict[tuple, list[float]] = {}
    for (ds, arm, seed, f), v in value.items():
        base = value.get((ds, pick.baseline, seed, f))
        if arm != pick.baseline and base is not None:
            cells.setdefault((ds, f, arm), []).append(v - base)

    def needed(of: list[list[float]]) -> int:
        s = max(statistics.stdev(d) for d in of if len(d) > 1)
        return next((n for n in range(max(2, pick.min_n), pick.max_n + 1)
                     if stats.t.ppf(0.975, n - 1) * s / math.sqrt(n) <= pick.half_width), pick.max_n)

    names = list(dict.fromkeys(c[0] for c in cells))
    need = ({ds: needed([d for (c, _, _), d in cells.items() if c == ds]) for ds in names} if pick.per == "dataset"
            else needed(list(cells.values())))
    if pick.hours is None:
        return need, need
    cost = {}  # seconds of one seed of a dataset: every arm's run, workers at a time
    for ds in names:
        secs = [float(r["seconds"]) for r in rows if r["dataset"] == ds and r.get("seconds")]
        if not secs:
            raise PlanError(f"{plan.path.name}: pick {stage.name}.{pick.name}: no seconds in {ds}'s rows to size the "
                            f"{pick.hours:g} h cap")
        cost[ds] = len(stage.arms) * statistics.median(secs) / pick.workers
    per = need if isinstance(need, dict) else dict.fromkeys(names, need)

    def hours(ceiling: int) -> float:
        return sum(min(n, ceiling) * cost[ds] for ds, n in per.items()) / 3600

    ceiling = max(per.values())
    while ceiling > max(2, pick.min_n) and hours(ceiling) > pick.hours:
        ceiling -= 1
    counted = {ds: min(n, ceiling) for ds, n in per.items()}
    return need, counted if isinstance(need, dict) else ceiling
