"""Running a plan: the pending jobs, fanned out to worker processes, one row each, resumable after a kill.

A job runs in its own process (``python -m hierhead.study.runner PLAN KEY``: its own threads, its own memory)
in its run folder ``runs/<key>``; a finished job leaves ``row.json`` there, and the parent merges it into the
stage's CSV (rows ordered as the plan lists the jobs, a row never changed once written). A killed study is run
again with the same command: jobs with a row are skipped, finished jobs not yet merged are merged, and a job
killed mid-training resumes from its last checkpoint (the trainer's resume equals an uninterrupted run), so the
rows are the ones an uninterrupted study writes (but ``seconds``: a job stopped and resumed sums its parts' wall
times, each with its own start-up; a part killed outright counts up to its last checkpoint, whose steps the next
part does not redo; empty when a part's time is unknown: run at another thread count, or by code that did not
record when it started).

Stopping: Ctrl-C in the terminal (every process of the study gets it) or SIGTERM to the runner (which passes it on
to its jobs): no job starts after it, each running job saves its step (``last.ckpt``) and exits, and the runner
ends with one line saying how many stopped and how many never started (:class:`StudyStopped`); the same command
resumes them. No job of any plan of the queue starts after it.

A queue of several plans (:func:`run_queue`) shares its workers: a job of an earlier plan always starts before one
of a later plan, and a later plan's jobs start as soon as a worker would otherwise wait (the last jobs of a stage,
which the next stage waits for), so the cores stay busy from the first plan's start to the last plan's end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import heapq
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .plan import ROW_COLUMNS, Job, Plan, PlanError, load_plan, pick_value

__all__ = ["read_rows", "stage_rows", "status", "picks", "jobs", "run", "run_queue", "run_job", "StudyStopped"]


def read_rows(plan: Plan, stage: str) -> list[dict]:
    """The stage's rows as written (strings), [] before the first; a stage with ``legacy`` rows reads them
    first (:mod:`.adapters`), and a job with a legacy row is not run again."""
    rows = []
    if stage in plan.legacy:
        from .adapters import legacy_rows

        made = picks(plan, upto=stage)
        rows = _one_per_job([r for old in plan.legacy[stage] for r in legacy_rows(plan, stage, old, made)], plan, stage)
    known = {_row_key(r) for r in rows}
    return rows + [r for r in _own_rows(plan, stage) if _row_key(r) not in known]


def _one_per_job(rows: list[dict], plan: Plan, stage: str) -> list[dict]:
    """Legacy rows with one row per job: a run written to two old files (the general head of each of a study's
    comparisons) is kept once, and two different scores for one job are an error."""
    out: dict[tuple, dict] = {}
    for r in rows:
        first = out.setdefault(_row_key(r), r)
        if first[plan.metric] != r[plan.metric]:
            raise PlanError(f"{plan.path.name}: stage {stage}: two legacy rows of {'/'.join(map(str, _row_key(r)[1:]))} "
                            f"differ ({plan.metric} {first[plan.metric]} and {r[plan.metric]})")
    return list(out.values())


def _own_rows(plan: Plan, stage: str) -> list[dict]:
    path = plan.rows_file(stage)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _row_key(row: dict) -> tuple:
    return (row["stage"], row["dataset"], row["arm"], int(row["seed"]), float(row["fraction"]))


def jobs(plan: Plan, stage: str | None = None) -> list[Job]:
    """The plan's jobs (or a stage's), a stage whose seeds a pick counts expanded from the earlier stages' rows
    (:meth:`Plan.jobs`; none until that pick is made)."""
    counted = any(s.seed_count for s in ([plan.stage(stage)] if stage else plan.stages))
    return plan.jobs(stage, picks(plan, upto=stage) if counted else None)


def stage_rows(plan: Plan, stage: str) -> tuple[list[dict], bool]:
    """(the rows of the stage's jobs, whether every job has one): what picks and reports read; a stage whose seed
    count is not made yet is incomplete."""
    keys = {j.row_key() for j in jobs(plan, stage)}
    rows = [r for r in read_rows(plan, stage) if _row_key(r) in keys]
    return rows, bool(keys) and len(rows) == len(keys)


def picks(plan: Plan, upto: str | None = None) -> dict:
    """The values carried by the picks of the finished stages before ``upto`` (all stages when None)."""
    out = {}
    for s in plan.stages:
        if s.name == upto:
            break
        if s.picks:
            rows, complete = stage_rows(plan, s.name)
            if complete:
                for p in s.picks:
                    out[f"{s.name}.{p.name}"] = pick_value(plan, s, p, rows)
    return out


def status(plan: Plan, stage: str | None = None) -> list[dict]:
    """Per stage (or the one named): ``jobs``, ``done`` (rows), ``finished`` (row.json not yet merged), ``pending``
    (the jobs to run), ``waits`` (the earlier stages whose picks it needs and which have not finished)."""
    made = picks(plan, upto=stage)
    out = []
    for s in [plan.stage(stage)] if stage else plan.stages:
        done = {_row_key(r) for r in read_rows(plan, s.name)}
        listed = plan.jobs(s.name, made)
        waits = [n for n in plan.needs(s.name) if any(f"{n}.{p.name}" not in made for p in plan.stage(n).picks)]
        if s.seed_count and (extra := sorted(done - {j.row_key() for j in listed})):
            raise PlanError(f"{plan.path.name}: stage {s.name}: rows of {'/'.join(map(str, extra[0][1:4]))} and "
                            f"{len(extra) - 1} more are beyond the seeds pick {s.seed_count[1]!r} counts now: the count "
                            f"changed after its rows were written (a seed count is never changed once they exist)")
        finished = [j for j in listed if j.row_key() not in done and (plan.runs / j.key / "row.json").is_file()]
        pending = [j for j in listed if j.row_key() not in done and j not in finished]
        out.append({"stage": s.name, "jobs": len(listed), "done": len(listed) - len(finished) - len(pending),
                    "finished": finished, "pending": pending, "waits": waits})
    return out


_lock = threading.Lock()
_clock = time.perf_counter  # a job's wall seconds (a test's own clock)
_wall = time.time  # when a part started, against its checkpoint's modification time (a test's own clock)


class StudyStopped(KeyboardInterrupt):
    """A study stopped from outside (Ctrl-C: ``code`` 130; SIGTERM: 143): no job started after it, the running
    ones saved their step; the same command resumes them."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Stopping:
    """The runner's side of a stop: a flag no job starts after, and the jobs' processes, so that a SIGTERM to the
    runner reaches them (a terminal's Ctrl-C reaches every process of the foreground group by itself; passing it on
    again would be a second Ctrl-C, which stops a job at once, unsaved)."""

    def __init__(self, stop_at: float | None = None) -> None:
        self.reason: str | None = None
        self.running: set[subprocess.Popen] = set()
        self._previous = None
        self._due = False
        self._timer = None if stop_at is None else threading.Timer(max(0.0, stop_at - time.monotonic()), self._time_up)

    def __enter__(self) -> "_Stopping":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self.stop(
                "--stop-after" if self._due else "SIGTERM", signal.SIGTERM))
        elif self._timer is not None:
            raise PlanError("--stop-after: the study must run in the main thread (it stops as on SIGTERM)")
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _time_up(self) -> None:
        """``--stop-after``'s time: a SIGTERM to this process, which reaches a job training in it (``--workers
        0``) as well as the runner's handler (which passes it on to the jobs' processes)."""
        self._due = True
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(self, reason: str, passed_on: int | None = None) -> None:
        self.reason = self.reason or reason
        for proc in list(self.running) if passed_on else ():
            try:
                proc.send_signal(passed_on)
            except ProcessLookupError:
                pass


class _Slots:
    """The queue's ``workers`` places, given in order of priority (a plan's place in the queue, then its stage and
    job): a job waits for a place only while every place is taken, and a free place goes to the earliest job that
    waits. A plan still listing a stage's jobs (``plans`` of them at first, :meth:`prepare` again at each later
    stage) holds back every later plan's jobs until it queues its own (:meth:`queue`): else a later plan, quicker
    to list its jobs (an earlier one's may resolve ``auto`` settings from its data first), took the places.
    Hand-written because ``concurrent.futures`` keeps one pool per stage, and the stages of several plans must
    share one set of places in the plans' order."""

    def __init__(self, places: int, plans: int = 1) -> None:
        self.free = places
        self.waiting: list[tuple] = []
        self.preparing = set(range(plans))
        self.changed = threading.Condition()

    def prepare(self, rank: int) -> None:
        """Plan ``rank`` lists a stage's jobs: later plans' jobs wait for them."""
        with self.changed:
            self.preparing.add(rank)

    def queue(self, rank: int, priorities: list[tuple] = ()) -> None:
        """Plan ``rank``'s jobs (none: it has none now, or it ended) in line; later plans' jobs may go on."""
        with self.changed:
            for p in priorities:
                heapq.heappush(self.waiting, p)
            self.preparing.discard(rank)
            self.changed.notify_all()

    def _turn(self, priority: tuple) -> bool:
        return (self.free > 0 and self.waiting[0] == priority
                and not any(r < priority[0] for r in self.preparing))

    @contextlib.contextmanager
    def held(self, priority: tuple):
        with self.changed:
            if priority not in self.waiting:  # not queued by its plan beforehand
                heapq.heappush(self.waiting, priority)
            self.changed.wait_for(lambda: self._turn(priority))
            heapq.heappop(self.waiting)
            self.free -= 1
            self.changed.notify_all()  # the next in line may find a place too
        try:
            yield
        finally:
            with self.changed:
                self.free += 1
                self.changed.notify_all()


def _merge(plan: Plan, stage: str, new: list[dict]) -> None:
    """Add rows to the stage's CSV: every earlier row kept as it is, new ones added, ordered as the plan lists
    the jobs (rows of jobs the plan no longer lists stay, at the end). Written aside, then renamed."""
    with _lock:
        rows = {_row_key(r): r for r in _own_rows(plan, stage)}
        for r in new:
            rows.setdefault(_row_key(r), {c: r.get(c, "") for c in ROW_COLUMNS})
        order = {j.row_key(): k for k, j in enumerate(jobs(plan, stage))}
        ordered = sorted(rows.values(), key=lambda r: order.get(_row_key(r), len(order)))
        path = plan.rows_file(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".csv.{os.getpid()}.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=ROW_COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(ordered)
        tmp.replace(path)


def run(plan: Plan, workers: int = 1, threads: int | None = None, dry_run: bool = False,
        log: Callable[[str], None] = print, stop_at: float | None = None) -> int:
    """Run every pending job of the plan, stage after stage (a stage that needs an earlier stage's pick waits
    for it); ``workers`` jobs at once, each in its own process with ``threads`` CPU threads (default: the plan's;
    ``workers=0``: one after another in this process, as a sweep of seconds-long runs wants). Returns the
    number of jobs that failed (their logs named). ``dry_run``: only say what is pending. ``stop_at``: a
    ``time.monotonic()`` at which the study stops as on SIGTERM (``--stop-after``; :class:`StudyStopped` with
    code 0: a stop that was asked for)."""
    if not dry_run:
        return run_queue([plan], workers, threads, log, stop_at)
    for st in status(plan):
        wait = f"; waits on {', '.join(st['waits'])}" if st["waits"] else ""
        shared = len(shared_runs(plan, st["stage"], st["pending"])) if st["pending"] and not st["waits"] else 0
        sharing = f" ({shared} sharing an earlier job's run)" if shared else ""
        to_train = len(st["pending"]) - shared
        secs = [float(r["seconds"]) for r in read_rows(plan, st["stage"]) if r.get("seconds") and not r.get("same_as")]
        left = _to_go(to_train, secs, workers, "the rows'")
        log(f"{plan.name}/{st['stage']}: {st['jobs']} jobs, {st['done']} with rows, {len(st['finished'])} finished "
            f"to merge, {len(st['pending'])} pending{sharing}{wait}{left}")
        for j in st["pending"][:5]:
            log(f"  {j.key}")
        if len(st["pending"]) > 5:
            log(f"  ... {len(st['pending']) - 5} more")
    return 0


def run_queue(plans: list[Plan], workers: int = 1, threads: int | None = None, log: Callable[[str], None] = print,
              stop_at: float | None = None, ended: Callable[[Plan], None] | None = None) -> int:
    """Run several plans as one queue (:func:`run`'s jobs, rows and stops): with ``workers`` >= 1 their jobs share
    the workers' places in the plans' order (:class:`_Slots`), each plan's stages one after another as in
    :func:`run`; with ``workers=0``, one plan after another in this process. Every plan is locked before the first
    job starts. ``ended(plan)`` is called as each plan ends without a stop. Returns the number of failed jobs; a stop
    raises one :class:`StudyStopped` for the queue (every plan it stopped named)."""
    if workers < 0:
        raise PlanError(f"--workers {workers}: 0 (jobs one after another in this process) or more")
    for plan in plans:  # before hours of jobs: every dataset a pending job of the queue reads is there
        pending = [j for st in status(plan) for j in st["pending"]]
        for d in plan.datasets:
            if any(j.dataset == d.name for j in pending) and not d.root.startswith("synthetic:") and not Path(
                    d.root).exists():
                raise PlanError(f"{plan.path.name}: dataset {d.name}: no folder {d.root}")
    with contextlib.ExitStack() as held:
        for plan in plans:
            held.enter_context(_plan_lock(plan))
        stopping = held.enter_context(_Stopping(stop_at))
        if not workers:  # in this process's main thread, where training's own Ctrl-C and SIGTERM handling works
            failed = 0
            for plan in plans:
                failed += _run(plan, 0, threads or plan.threads, log, stopping)
                if ended:
                    ended(plan)
            return failed
        slots, outcomes, ends = _Slots(workers, len(plans)), [None] * len(plans), [threading.Event() for _ in plans]

        def one_plan(k: int, plan: Plan) -> None:
            try:
                outcomes[k] = _run(plan, workers, threads or plan.threads, log, stopping, slots, k, len(plans) > 1)
                if ended:
                    ended(plan)
            except BaseException as e:  # noqa: BLE001 - raised in the main thread below, in the plans' order
                outcomes[k] = e
            finally:
                slots.queue(k)  # an ended plan holds no later one back
                ends[k].set()

        for k, plan in enumerate(plans):
            threading.Thread(target=one_plan, args=(k, plan), name=plan.name, daemon=True).start()
        # the main thread waits (it takes Ctrl-C and SIGTERM); on events, since a Thread.join that Ctrl-C
        # interrupted can return before its thread has ended
        try:
            for end in ends:
                end.wait()
        except KeyboardInterrupt:  # Ctrl-C: the jobs got it too and save their step; none starts after it
            stopping.stop("Ctrl-C")
            for end in ends:
                end.wait()
    stops = [e for e in outcomes if isinstance(e, StudyStopped)]
    if errors := [e for e in outcomes if isinstance(e, BaseException) and not isinstance(e, StudyStopped)]:
        raise errors[0]
    if stops:
        raise StudyStopped("; ".join(str(e) for e in stops), stops[0].code)
    return sum(outcomes)


def _plan_lock(plan: Plan):
    """One runner per plan: an exclusive lock on ``runs/<study>/.study.lock`` for the whole run (two runners
    would start the same jobs)."""
    from .._lock import exclusive

    plan.runs.mkdir(parents=True, exist_ok=True)
    return exclusive(plan.runs / ".study.lock", PlanError(
        f"{plan.path.name}: another 'hierhead study run' is running this plan ({plan.runs}); wait for it to end"))


def _run(plan: Plan, workers: int, threads: int, log: Callable[[str], None], stopping: _Stopping,
         slots: _Slots | None = None, rank: int = 0, named: bool = False) -> int:
    """One plan's stages, one after another; its jobs take the queue's ``slots`` at priority (``rank``, stage, job)
    (none: ``workers`` at a time); ``named``: each job's line names the plan (a queue of several)."""
    failed = 0
    for n, s in enumerate(plan.stages):
        if slots:
            slots.prepare(rank)
        st = status(plan, s.name)[0]
        if st["waits"]:  # an earlier stage is unfinished only when it failed, which returned already
            raise PlanError(f"{plan.name}/{s.name}: waits on {', '.join(st['waits'])}, not finished")
        _merge(plan, s.name, [json.loads((plan.runs / j.key / "row.json").read_text()) for j in st["finished"]])
        if not st["pending"]:
            if slots:
                slots.queue(rank)
            continue
        leaders = shared_runs(plan, s.name, st["pending"])
        todo = [j for j in st["pending"] if j not in leaders]
        if len(todo) < len(st["pending"]):
            log(f"{plan.name}/{s.name}: {len(st['pending']) - len(todo)} job(s) train the same run as an earlier job "
                f"(the same config once 'auto' is chosen): trained once, the row shared")
        at = f"{workers} at a time" if workers else "one after another in this process"
        log(f"{plan.name}/{s.name}: {len(todo)} of {st['jobs']} jobs to run, {at}, {threads} thread(s) each")
        count, took = {"ended": 0}, []

        def one(k: int, job: Job) -> str:
            with slots.held((rank, n, k)) if slots else contextlib.nullcontext():
                if stopping.reason:
                    return "not started"
                began = time.monotonic()
                outcome, line = (_spawn(plan, job, threads, stopping) if workers else
                                 _inline(plan, job, threads, stopping))
            row = json.loads((plan.runs / job.key / "row.json").read_text()) if outcome == "ok" else None
            with _lock:
                count["ended"] += 1
                if row:  # the whole job's time (a resumed one's earlier parts too), else this part's
                    took.append(float(row.get("seconds") or time.monotonic() - began))
                log(f"[{count['ended']}/{len(todo)}] {plan.name + '/' if named else ''}{job.key}: {line}"
                    f"{_to_go(len(todo) - count['ended'], took, workers)}")
            if row:
                _merge(plan, s.name, [row])
                _merge_shared(plan, s, {j: lead for j, lead in leaders.items() if lead == job})
            return outcome

        _merge_shared(plan, s, leaders)  # those whose run had its row already (a resumed study)
        if slots:
            slots.queue(rank, [(rank, n, k) for k in range(len(todo))])
        outcomes: list[str] = []
        if not workers:  # in this process's main thread, where training's own Ctrl-C and SIGTERM handling works
            for k, j in enumerate(todo):
                try:
                    outcomes.append(one(k, j))
                except KeyboardInterrupt as e:  # Ctrl-C: training saved its step (or the job was cut outside it)
                    stopping.stop("Ctrl-C")
                    outcomes.append("stopped")
                    log(f"{j.key}: {_where(str(e)) or 'interrupted (Ctrl-C)'}")
        else:  # in the plan's own thread (run_queue): Ctrl-C reaches the main thread, which stops the queue
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                outcomes = [f.result() for f in [pool.submit(one, k, j) for k, j in enumerate(todo)]]
        failed += outcomes.count("failed")
        if stopping.reason:
            raise StudyStopped(f"{plan.name}/{s.name}: stopped by {stopping.reason}: {outcomes.count('stopped')} "
                               f"running job(s) stopped (each resumes from its last saved step), "
                               f"{len(todo) - len(outcomes) + outcomes.count('not started')} not started, "
                               f"{outcomes.count('failed')} failed; the same command resumes them",
                               {"SIGTERM": 143, "Ctrl-C": 130}.get(stopping.reason, 0))
        if failed:
            log(f"{plan.name}/{s.name}: {failed} job(s) failed; later stages not started")
            return failed
    return failed


def _to_go(left: int, took: list[float], workers: int, basis: str = "this run's") -> str:
    """``; 37 to go, about 3.9 h ...``: ``left`` jobs at the median of ``took`` (rows' seconds, a resumed job's
    earlier parts included: the jobs this run finished, or for a dry run every row of the stage), ``workers`` at
    a time (rough where arms cost differently, or plans share the places)."""
    if not left or not took:
        return ""

    def span(seconds: float) -> str:
        return (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400
                else f"{seconds / 3600:.1f} h")

    job, at = statistics.median(took), max(1, workers)
    return (f"; {left} to go, about {span(job * math.ceil(left / at))} at {basis} median {span(job)} a job, "
            f"{at} at a time")


def _merge_shared(plan: Plan, stage, shared: dict[Job, Job]) -> None:
    """The rows of jobs that share an earlier job's run, as soon as that run has its row: its scores, the job's
    own arm, design and settings, ``same_as`` naming the run (no seconds of its own)."""
    if not shared:
        return
    done = {_row_key(r): r for r in read_rows(plan, stage.name)}
    _merge(plan, stage.name, [{**done[lead.row_key()], "arm": j.arm, "design": stage.arm(j.arm).design,
                               "settings": _settings(plan, j), "same_as": lead.key, "seconds": ""}
                              for j, lead in shared.items() if lead.row_key() in done])


def _settings(plan: Plan, job: Job) -> str:
    from .protocols import settings_json

    return settings_json(plan.settings(job, picks(plan, upto=job.stage)))


def shared_runs(plan: Plan, stage: str, pending: list[Job]) -> dict[Job, Job]:
    """The pending jobs that train the same run as an earlier job of the stage (the protocol's fingerprint:
    e.g. an ``auto`` rule that chooses the defaults on this dataset), each with that earlier job."""
    from .protocols import PROTOCOLS, job_config

    protocol, made = PROTOCOLS[plan.protocol_of(stage)], picks(plan, upto=stage)
    groups = {(j.dataset, j.seed, j.fraction) for j in pending}
    first: dict[str, Job] = {}
    out = {}
    for j in plan.jobs(stage, made):
        if (j.dataset, j.seed, j.fraction) not in groups:
            continue
        fp = protocol.fingerprint(job_config(plan, j, made, plan.runs / j.key))
        if fp in first and j in pending:
            out[j] = first[fp]
        first.setdefault(fp, j)
    return out


#: a job's exit status when it stopped on Ctrl-C (130) or SIGTERM (143), its step saved (``_main``)
STOPPED = {130: "Ctrl-C", 143: "SIGTERM", -signal.SIGINT: "Ctrl-C", -signal.SIGTERM: "SIGTERM"}


def _spawn(plan: Plan, job: Job, threads: int, stopping: _Stopping) -> tuple[str, str]:
    """Run one job in a child process; (``ok`` / ``stopped`` / ``failed``, a one-line summary: its metric, where it
    stopped, or why it failed and its log)."""
    folder = plan.runs / job.key
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with (folder / "job.log").open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hierhead.study.runner", str(plan.path), job.key,
                                 "--threads", str(threads)], stdout=out, stderr=subprocess.STDOUT, env=env)
        stopping.running.add(proc)
        if stopping.reason:  # started as the study stopped: it stops too (before its handlers exist, at once)
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait()
        finally:
            stopping.running.discard(proc)
    if code == 0 and (folder / "row.json").is_file():
        return "ok", _summary(plan, json.loads((folder / "row.json").read_text()))
    lines = (folder / "job.log").read_text(errors="replace").strip().splitlines()
    last = lines[-1] if lines else "no output"
    if code in STOPPED:  # a job stopped from outside stops the study: none starts after it
        stopping.stop(STOPPED[code])
        # where it stopped (the study's last line says how to resume), or how, when it stopped before saying so
        return "stopped", _where(last) if " at step " in last else f"stopped by {STOPPED[code]} (exit {code})"
    return "failed", f"FAILED (exit {code}): {last} (log: {folder / 'job.log'})"


def _where(message: str) -> str:
    """Training's stop message up to where it stopped ("stopped by SIGTERM at step 173"): its advice to resume
    with ``--resume`` is not a study's, whose last line says the same command resumes."""
    return message.split(";")[0]


def _inline(plan: Plan, job: Job, threads: int, stopping: _Stopping) -> tuple[str, str]:
    """Run one job in this process (``--workers 0``: no process start per job); its errors become a failed job,
    a stop (Ctrl-C, SIGTERM: the step saved) stops the study."""
    from ..engine.trainer import TrainingStopped

    try:
        row = run_job(plan, job.key, threads)
    except TrainingStopped as e:  # SIGTERM (or --stop-after's): the study stops
        stopping.stop("SIGTERM")
        return "stopped", _where(str(e))
    except Exception as e:  # noqa: BLE001 - one job's failure is reported like a worker's, the others go on
        return "failed", f"FAILED: {type(e).__name__}: {e}"
    return "ok", _summary(plan, row)


def _summary(plan: Plan, row: dict) -> str:
    return f"{plan.metric} {float(row[plan.metric]):.2f}" + (f", {float(row['seconds']) / 60:.1f} min"
                                                           if row["seconds"] != "" else " (resumed)")


def run_job(plan: Plan, key: str, threads: int) -> dict:
    """Train and score one job in its run folder; writes and returns its row."""
    import torch

    from ..provenance import row_provenance
    from .protocols import PROTOCOLS, job_config, settings_json

    job = next((j for j in jobs(plan) if j.key == key), None)
    if job is None:
        raise PlanError(f"{plan.path}: no job {key!r}")
    torch.set_num_threads(threads)
    folder = plan.runs / job.key
    made = picks(plan, upto=job.stage)
    resumed = (folder / "checkpoints" / "last.ckpt").is_file()
    code = row_provenance()  # the code this part of the job runs, read before it trains (not after an edit)
    parts = _parts(folder, resumed, threads)
    t = _clock()
    config = job_config(plan, job, made, folder)
    stage = plan.stage(job.stage)
    try:
        metrics = PROTOCOLS[plan.protocol_of(job.stage)].run(config, stage.score)
    except BaseException:  # stopped (its step saved) or failed: this part's time counts when the job goes on
        if parts is not None:
            _save_parts(folder, [*parts, round(_clock() - t, 1)], threads, open_=False)
        raise
    seconds = None if parts is None else sum(parts) + _clock() - t
    row = {"study": plan.name, "stage": job.stage, "dataset": job.dataset, "arm": job.arm,
           "design": stage.arm(job.arm).design, "seed": job.seed, "fraction": job.fraction, "protocol": plan.protocol_of(job.stage),
           "recipe": plan.recipe_of(job), "settings": settings_json(plan.settings(job, made)), **metrics,
           "seconds": "" if seconds is None else round(seconds, 1), "threads": threads,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", **code}
    row = {c: row.get(c, "") for c in ROW_COLUMNS}
    folder.mkdir(parents=True, exist_ok=True)  # a cached protocol's run writes nothing else there
    tmp = folder / "row.json.tmp"
    tmp.write_text(json.dumps(row))
    tmp.replace(folder / "row.json")
    # a study scores the last checkpoint only; the best one was chosen on the split the run validated on (the
    # scored holdout, or a test split): dropped once the row exists, half of a run folder's 80 MB
    (folder / "checkpoints" / "best.ckpt").unlink(missing_ok=True)
    return row


def _parts(folder: Path, resumed: bool, threads: int) -> list[float] | None:
    """The wall seconds of a job's earlier parts (a job stopped and resumed), [] for a fresh one; None when one is
    unknown (one run by code that did not record them, or at another thread count): its row's ``seconds`` stays
    empty. A part killed outright (a session's end, a power cut) said nothing when it ended: it counts from its
    start to the modification time of ``last.ckpt``, the periodic checkpoint this part resumes from (0 when that
    checkpoint is older than the part), so the steps it ran after that checkpoint, redone now, are not counted
    twice. Marks this part as started."""
    path = folder / "parts.json"
    known = json.loads(path.read_text()) if path.is_file() else None
    if not resumed:  # a start from scratch: earlier parts (a failure before any checkpoint) did not carry over
        parts: list[float] | None = []
    elif known is None or known["threads"] != threads or (known["open"] and "started" not in known):
        parts = None
    elif known["open"]:  # killed outright: its time up to the checkpoint this part resumes from counts
        saved = (folder / "checkpoints" / "last.ckpt").stat().st_mtime
        parts = [*known["parts"], max(0.0, round(saved - known["started"], 1))]
    else:
        parts = known["parts"]
    if parts is not None:
        _save_parts(folder, parts, threads, open_=True)
    return parts


def _save_parts(folder: Path, parts: list[float], threads: int, open_: bool) -> None:
    """``parts.json``: the parts that ended without a row (stopped or failed), and whether one is running now (with
    its start on the wall clock, which a checkpoint's modification time is read against if it is killed)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"parts": parts, "open": open_, "threads": threads, **({"started": _wall()} if open_ else {})}
    (folder / "parts.json").write_text(json.dumps(state))


def _main() -> int:
    ap = argparse.ArgumentParser(prog="python -m hierhead.study.runner", description="run one job of a plan")
    ap.add_argument("plan")
    ap.add_argument("key")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from ..engine.quiet import quiet_libraries
    from ..engine.trainer import TrainingInterrupted, TrainingStopped

    quiet_libraries()  # the job's log: its training lines, not Lightning's tips

    try:
        run_job(load_plan(args.plan), args.key, args.threads)
    except (TrainingInterrupted, TrainingStopped) as e:  # its step saved: one line, and the status says which
        print(e, file=sys.stderr, flush=True)
        return 130 if isinstance(e, TrainingInterrupted) else 143
    return 0


if __name__ == "__main__":
    sys.exit(_main())
