"""Studies as plan files: checking a plan, its jobs and settings, picks carried between stages, the report
(recomputed here independently of its code), and a real run killed and resumed with the same rows."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hierhead.cli import main
from hierhead.study import ROW_COLUMNS, PlanError, load_plan
from hierhead.study.report import report, write_report
from hierhead.study.runner import jobs, picks, read_rows, status

REPO = Path(__file__).resolve().parents[1]
TOY = "synthetic:classes=2,train=8,test=4,size=64"
FAST = ("{max_steps: 4, checkpoint_every_n_steps: 1, val_every_n_steps: 4, batch_size: 4, image_size: 64, "
        "num_workers: 0}")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HIERHEAD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _plan(tmp_path: Path, body: str, name: str = "toy") -> Path:
    studies = tmp_path / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    (studies / "datasets.yaml").write_text(f'toy: {{root: "{TOY}"}}\n'
                                           f'toy2: {{root: "{TOY}", set: {{data.resplit: 0.5}}}}\n')
    path = studies / f"{name}.yaml"
    path.write_text(f"name: {name}\nrows: ../docs/results/{name}\nruns: ../runs/studies/{name}\nprotocol: train\n"
                    "recipe: synthetic-ssdlite\n" + body)
    return path


PILOT = f"""datasets: [toy, toy2]
seeds: [0, 1, 2]
set: {FAST}
stages:
  - name: pilot
    score: holdout
    holdout: 0.25
"""
TWO_STAGES = PILOT + """    arms:
      small: {design: "9An{9}", set: {image_size: 64}}
      large: {design: "9An{9}", set: {image_size: 96}}
    pick: {name: size, setting: image_size, per: dataset}
  - name: main
    arms:
      general: {design: "9An{9}", set: {image_size: {pick: pilot.size}}}
      hier: {design: "9An{9,3,1}As", set: {image_size: {pick: pilot.size}}}
    decision: {baseline: general, margin: 1.0}
"""
COUNTED = PILOT + """    arms:
      general: {design: "9An{9}"}
      hier: {design: "9An{9,3,1}S"}
    pick: {name: n, rule: seeds, baseline: general, half_width: 1.0, per: dataset, min_n: 3, max_n: 12}
  - name: test
    seeds: {first: 1000, n: {pick: pilot.n}}
    arms:
      general: {design: "9An{9}"}
      hier: {design: "9An{9,3,1}S"}
    decision: {baseline: general, margin: 1.0}
"""


def _rows(plan, stage: str, values: dict, seconds: dict | None = None) -> None:
    """Write a stage's rows by hand (no training): values[(dataset, arm, seed)] = mAP (seconds: the same keys, or
    60 each)."""
    from hierhead.study.protocols import settings_json

    path = plan.rows_file(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    made = picks(plan, upto=stage)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_COLUMNS)
        w.writeheader()
        for job in jobs(plan, stage):
            w.writerow({"study": plan.name, "stage": stage, "dataset": job.dataset, "arm": job.arm,
                        "design": plan.stage(stage).arm(job.arm).design, "seed": job.seed, "fraction": job.fraction,
                        "settings": settings_json(plan.settings(job, made)),
                        "seconds": (seconds or {}).get((job.dataset, job.arm, job.seed), 60),
                        "mAP": values[(job.dataset, job.arm, job.seed)]})


def test_a_plan_expands_to_jobs_with_layered_settings(tmp_path):
    plan = load_plan(_plan(tmp_path, TWO_STAGES))
    jobs = plan.jobs()
    assert len(jobs) == 2 * 3 * 2 * 2 and jobs[0].key == "pilot/toy/small/seed0"
    assert [j.key for j in jobs[:4]] == ["pilot/toy/small/seed0", "pilot/toy/large/seed0",
                                         "pilot/toy2/small/seed0", "pilot/toy2/large/seed0"]  # seed-major, pairs adjacent
    pilot = plan.settings(jobs[3])
    assert pilot["image_size"] == 96 and pilot["max_steps"] == 4 and pilot["data"] == {"resplit": 0.5}
    assert plan.needs("main") == ["pilot"] and plan.rows == tmp_path / "docs" / "results" / "toy"
    with pytest.raises(PlanError, match="pick 'pilot.size', not made yet"):
        plan.settings(plan.jobs("main")[0])
    assert [s["waits"] for s in status(plan)] == [[], ["pilot"]]


def test_an_arm_with_its_own_recipe_trains_and_is_recorded_with_it(tmp_path):
    """Two recipes compared: an arm's ``recipe`` replaces the plan's for its jobs (config, row, legacy row)."""
    from hierhead.study.adapters import legacy_rows
    from hierhead.study.protocols import job_config

    body = ('datasets: [toy]\nseeds: [0]\nstages:\n  - name: test\n    arms:\n'
            '      plan: {design: "9An{9}", match: {arm: "^plan$"}}\n      pinned: {design: "9An{9}", recipe: defaults-2026-12, match: {arm: "^pinned$"}}\n')
    plan = load_plan(_plan(tmp_path, body))
    mine, pinned = plan.jobs("test")
    assert (plan.recipe_of(mine), plan.recipe_of(pinned)) == ("synthetic-ssdlite", "defaults-2026-12")
    configs = [job_config(plan, j, {}, tmp_path / j.key) for j in (mine, pinned)]
    assert [c["model"] for c in configs] == ["ssdlite320_mobilenet_v3", "ssdlite320_efficientnet_lite0"]
    assert [c["recipe"] for c in configs] == ["synthetic-ssdlite", "defaults-2026-12"]
    old = tmp_path / "old.csv"
    old.write_text("study,stage,dataset,arm,design,seed,fraction,mAP\nx,test,toy,pinned,9An{9},0,1.0,50.0\n")
    rows = legacy_rows(plan, "test", {"file": old, "datasets": {}, "column": "mAP", "device": "cpu"}, {})
    assert [(r["arm"], r["recipe"]) for r in rows] == [("pinned", "defaults-2026-12")]
    assert "recipe `synthetic-ssdlite`, arm pinned: `defaults-2026-12`, seeds 0" in report(plan)


@pytest.mark.parametrize("base, old, new, message", [
    (TWO_STAGES, "seeds: [0, 1, 2]", "seeds: [0, 1, 2]\ncolour: red", "unknown key 'colour'"),
    (TWO_STAGES, "datasets: [toy, toy2]", "datasets: [toy, cards]", "dataset 'cards' has no alias"),
    (TWO_STAGES, "{pick: pilot.size}", "{pick: pilot.width}", "pick 'pilot.width' is not declared by an earlier stage"),
    (TWO_STAGES, 'design: "9An{9}", set: {image_size: 64}', 'design: "9An{7}", set: {image_size: 64}', "arm small: "),
    (TWO_STAGES, "score: holdout", "score: test", "score: holdout and holdout: F"),
    (TWO_STAGES, "seeds: [0, 1, 2]", "seeds: [0, 1, 1]", "a seed is listed twice"),
    (TWO_STAGES, "baseline: general", "baseline: plain", "decision.baseline 'plain' is not one of its arms"),
    # a stage's seeds counted by a pilot (issue 45)
    (COUNTED, "max_n: 12}", "max_n: 12, hours: 0}", "hours 0, workers 1: a cap of rule seeds"),
    (COUNTED, "n: {pick: pilot.n}", "n: 5", "seeds {'first': 1000, 'n': 5}: {first: a whole number >= 0"),
    (COUNTED, "first: 1000, ", "", "seeds: missing key 'first'"),
    (COUNTED, "n: {pick: pilot.n}", "n: {pick: pilot.size}", "seeds counted by pick 'pilot.size': not a rule: seeds pick"),
    (COUNTED, "per: dataset", "per: each", "pick.per 'each': choose all, dataset (rule seeds)"),
    (COUNTED, "    holdout: 0.25\n", "    holdout: 0.25\n    datasets: [toy]\n",
     "stage test: seeds counted by 'pilot.n', whose stage does not run on toy2"),
])
def test_a_bad_plan_is_refused_before_any_run_naming_the_key(tmp_path, base, old, new, message):
    text = base.replace(old, new, 1)
    assert text != base
    with pytest.raises(PlanError, match=re.escape(message)) as e:
        load_plan(_plan(tmp_path, text))
    assert "toy.yaml" in str(e.value) and "\n" not in str(e.value)


def test_a_finished_stage_carries_its_pick_and_the_report_matches_an_independent_computation(tmp_path):
    from scipy import stats

    plan = load_plan(_plan(tmp_path, TWO_STAGES + "docs: [../README.md]\n"))
    pilot = {("toy", "small", s): 50 + s for s in range(3)} | {("toy", "large", s): 60 - s for s in range(3)}
    pilot |= {("toy2", "small", s): 70.0 for s in range(3)} | {("toy2", "large", s): 40.0 for s in range(3)}
    _rows(plan, "pilot", pilot)
    assert picks(plan) == {"pilot.size": {"toy": 96, "toy2": 64}}  # the best mean per dataset
    assert plan.settings(plan.jobs("main")[0], picks(plan))["image_size"] == 96
    assert [len(s["pending"]) for s in status(plan)] == [0, 12]
    hier = {0: 2.0, 1: 3.5, 2: 1.0}  # toy: hier ahead by 2.0, 3.5, 1.0; toy2: by 0.1, -0.2, 0.05
    main_rows = {("toy", "general", s): 40.0 + s for s in range(3)}
    main_rows |= {("toy", "hier", s): 40.0 + s + hier[s] for s in range(3)}
    main_rows |= {("toy2", "general", s): 30.0 for s in range(3)}
    main_rows |= {("toy2", "hier", s): 30.0 + d for s, d in enumerate([0.1, -0.2, 0.05])}
    _rows(plan, "main", main_rows)
    readme = tmp_path / "README.md"
    readme.write_text("# toy\n\n<!-- study: toy/main -->\nstale\n<!-- /study -->\n\nafter\n"
                      "<!-- study: toy/main decision -->\n<!-- /study -->\n")
    assert main(["study", "report", str(plan.path), "--check"]) == 1  # stale
    assert main(["study", "report", str(plan.path)]) == 0
    assert write_report(plan, check=True) == []  # regenerated: zero diff
    text, verdict = readme.read_text().split("<!-- study: toy/main decision -->\n")
    assert text.startswith("# toy\n\n<!-- study: toy/main -->\n**toy / main**") and text.endswith("<!-- /study -->\n\nafter\n")
    # the decision view: the rule's table of the stage's table, alone
    assert verdict.startswith("Against `general`: paired differences") and verdict.endswith("|\n<!-- /study -->\n")
    assert verdict.removesuffix("<!-- /study -->\n") in text and "| arm | design |" not in verdict
    # independently of the report's code: scipy's t interval of the paired differences
    diffs = [2.0, 3.5, 1.0]
    m, sd = sum(diffs) / 3, math.sqrt(sum((d - sum(diffs) / 3) ** 2 for d in diffs) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    mean_hier = sum(main_rows[("toy", "hier", s)] for s in range(3)) / 3
    assert f"| hier | `9An{{9,3,1}}As` | 3 | {mean_hier:.2f} |" in text
    assert f"{m:+.2f} [{m - half:+.2f}, {m + half:+.2f}]" in text
    p = stats.ttest_rel([40 + s + hier[s] for s in range(3)], [40.0 + s for s in range(3)]).pvalue
    assert f"| {p:.3f} | {'better' if p < 0.05 else 'inconclusive'} |" in text  # one arm per dataset: Holm = p
    # toy2: every difference small; the Bonferroni interval (one comparison: the 95 % one) within +-1.0?
    d2 = [0.1, -0.2, 0.05]
    m2, sd2 = sum(d2) / 3, math.sqrt(sum((d - sum(d2) / 3) ** 2 for d in d2) / 2)
    inside = abs(m2) + stats.t.ppf(0.975, 2) * sd2 / math.sqrt(3) <= 1.0
    assert ("no effect within +-1" if inside else "inconclusive") in text.split("toy2:")[1]
    report = (plan.rows / "report.md").read_text()
    assert "Pick `pilot.size`" in report and "{'toy': 96, 'toy2': 64}" in report


def test_a_stage_runs_as_many_fresh_seeds_per_dataset_as_the_pilot_counts_and_never_changes_them(tmp_path):
    """Issue 45: n per domain fixed by the plan from a holdout pilot's SD, computed from its rows (never copied by
    hand), never extended or cut once rows of that stage exist."""
    from scipy import stats

    plan = load_plan(_plan(tmp_path, COUNTED))
    assert jobs(plan, "test") == [] and plan.needs("test") == ["pilot"]
    assert [s["waits"] for s in status(plan)] == [[], ["pilot"]]
    ahead = {"toy": [0.0, 1.0, 2.0], "toy2": [0.5, 0.5, 0.5]}  # SDs 1 and 0
    _rows(plan, "pilot", {(d, a, s): 50.0 + (ahead[d][s] if a == "hier" else 0) for d in ahead
                          for a in ("general", "hier") for s in range(3)})
    n_toy = next(n for n in range(3, 13) if stats.t.ppf(0.975, n - 1) * 1.0 / math.sqrt(n) <= 1.0)
    assert picks(plan) == {"pilot.n": {"toy": n_toy, "toy2": 3}} and n_toy == 7
    keys = [j.key for j in jobs(plan, "test")]
    assert len(keys) == 2 * (n_toy + 3) and keys[:4] == ["test/toy/general/seed1000", "test/toy/hier/seed1000",
                                                          "test/toy2/general/seed1000", "test/toy2/hier/seed1000"]
    assert keys[-2:] == [f"test/toy/general/seed{1000 + n_toy - 1}", f"test/toy/hier/seed{1000 + n_toy - 1}"]
    assert [len(s["pending"]) for s in status(plan)] == [0, 2 * (n_toy + 3)]
    assert f"seeds from 1000, as many as pick `pilot.n` counts (toy {n_toy}, toy2 3); 0 of {len(keys)} rows" in report(plan)
    _rows(plan, "test", {(d, a, s): 40.0 for d in ahead for a in ("general", "hier") for s in range(1000, 1000 + n_toy)})
    assert [len(s["pending"]) for s in status(plan)] == [0, 0]
    _rows(plan, "pilot", {(d, a, s): 50.0 for d in ahead for a in ("general", "hier") for s in range(3)})  # SD 0 now
    with pytest.raises(PlanError, match=r"stage test: rows of toy/general/1003 and 7 more are beyond the seeds pick "
                                        r"'pilot.n' counts now"):
        status(plan)


def test_a_seed_count_over_its_hours_cap_is_cut_to_a_common_ceiling_and_the_report_says_what_it_needed(tmp_path):
    plan = load_plan(_plan(tmp_path, COUNTED.replace("max_n: 12}", "max_n: 12, hours: 0.35, workers: 2}")))
    ahead = {"toy": [0.0, 1.0, 2.0], "toy2": [0.0, 4.0, 8.0]}  # SD 1: n 7; SD 4: beyond max_n, 12
    _rows(plan, "pilot", {(d, a, s): 50.0 + (ahead[d][s] if a == "hier" else 0) for d in ahead
                          for a in ("general", "hier") for s in range(3)},
          seconds={(d, a, s): {"toy": 60, "toy2": 120}[d] for d in ahead for a in ("general", "hier") for s in range(3)})
    # a seed costs 2 arms x the median seconds / 2 workers: toy 60 s, toy2 120 s; 7 x 60 + 12 x 120 = 1860 s > 1260 s
    # (0.35 h); the ceiling 7 fits exactly (7 x 60 + 7 x 120 = 1260): toy keeps its 7, toy2 is cut to 7
    assert picks(plan) == {"pilot.n": {"toy": 7, "toy2": 7}}
    assert "(the half-width alone would need {'toy': 7, 'toy2': 12})" in report(plan)
    assert "at most 0.35 h of runs" in report(plan)


def test_an_incomplete_stage_gets_no_verdict(tmp_path):
    plan = load_plan(_plan(tmp_path, TWO_STAGES))
    _rows(plan, "pilot", {(d, a, s): 50.0 for d in ("toy", "toy2") for a in ("small", "large") for s in range(3)})
    rows = read_rows(plan, "pilot")
    with plan.rows_file("pilot").open("w", newline="") as f:  # one row lost
        w = csv.DictWriter(f, fieldnames=ROW_COLUMNS)
        w.writeheader()
        w.writerows(rows[:-1])
    assert picks(plan) == {}
    write_report(plan)
    report = (plan.rows / "report.md").read_text()
    assert "11 of 12 rows" in report and "incomplete: not quoted, no verdict" in report and "Pick" not in report


def _table(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_the_report_shows_from_git_whether_the_plan_came_before_its_rows(tmp_path):
    """Pre-registration, checked: the commit that first added the plan file, and whether each row's code (its
    ``commit`` column) descends from it; a row that ran older code is named; an uncommitted plan shows nothing."""
    from hierhead.study.report import registration_line

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    body = "datasets: [toy]\nseeds: [0, 1]\nstages:\n  - name: test\n    arms:\n      general: {design: \"9An{9}\"}\n"
    git("init", "-q")
    (tmp_path / "code.py").write_text("1\n")
    git("add", "code.py")
    git("commit", "-qm", "code before the plan")
    older = git("rev-parse", "HEAD")
    plan = load_plan(_plan(tmp_path, body))
    assert registration_line(plan) == ""  # not committed: nothing to show
    git("add", "studies")
    git("commit", "-qm", "the plan")
    registered = git("rev-parse", "HEAD")
    _rows(plan, "test", {("toy", "general", 0): 50.0, ("toy", "general", 1): 51.0})
    rows = list(csv.DictReader(plan.rows_file("test").open()))
    rows[0]["commit"], rows[1]["commit"] = registered + "+dirty", older
    with plan.rows_file("test").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    line = registration_line(plan)
    assert f"first committed in {registered[:7]} (" in line
    assert f"the code of 1 of its 2 own rows descends from that commit; **rows ran code older than the plan**: " \
           f"{older[:7]}." in line


def test_a_row_names_the_code_its_job_started_with(tmp_path, monkeypatch):
    """An edit to the checkout while a job trains (a long study beside development) is not the job's code: the
    row's commit is read before training, not after."""
    import hierhead.provenance
    from hierhead.study import protocols
    from hierhead.study.runner import run_job

    code = {"version": "0.1.0", "commit": "started"}

    class Edited(protocols.TrainProtocol):
        def run(self, config: dict, score: str) -> dict:
            code["commit"] = "edited mid-run"
            return {"mAP": 50.0, "split": score}

    monkeypatch.setattr(hierhead.provenance, "row_provenance", lambda: dict(code))
    monkeypatch.setitem(protocols.PROTOCOLS, "train", Edited("train", "a job during which the checkout changes"))
    plan = load_plan(_plan(tmp_path, "datasets: [toy]\nseeds: [0]\nstages:\n  - name: test\n    arms:\n"
                                     "      general: {design: \"9An{9}\"}\n"))
    row = run_job(plan, plan.jobs("test")[0].key, threads=1)
    assert (row["commit"], row["mAP"]) == ("started", 50.0)


@pytest.mark.parametrize("sig, group, code, said", [(signal.SIGTERM, False, 143, "stopped by SIGTERM"),
                                                     (signal.SIGINT, True, 130, "interrupted (Ctrl-C)")])
def test_a_stopped_study_starts_no_job_after_it_and_its_running_job_saves_its_step(tmp_path, sig, group, code, said):
    """SIGTERM to the runner (a service stop; it passes it on) or Ctrl-C in the terminal (the whole group): the
    runner went on starting every pending job, and reported a stopped job as failed."""
    import torch

    body = ("datasets: [toy]\nseeds: [0, 1, 2]\nset: {max_steps: 400, checkpoint_every_n_steps: 1, "
            "val_every_n_steps: 400, batch_size: 4, image_size: 64, num_workers: 0, plots: false}\n"
            "stages:\n  - name: main\n    arms:\n      general: {design: \"9An{9}\"}\n")
    plan = load_plan(_plan(tmp_path, body))
    proc = subprocess.Popen([sys.executable, "-m", "hierhead", "study", "run", str(plan.path), "--workers", "1"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = plan.runs / "main/toy/general/seed0/checkpoints/last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    step = torch.load(last, weights_only=True)["global_step"]
    assert proc.returncode == code and f"[1/3] main/toy/general/seed0: {said} at step {step}\n" in out, (out, err)
    assert err == (f"hierhead study: toy/main: stopped by {said.split()[-1].strip('()')}: 1 running job(s) stopped "
                   f"(each resumes from its last saved step), 2 not started, 0 failed; the same command resumes them\n")
    assert 0 < step < 400 and not (plan.runs / "main/toy/general/seed1").exists() and not read_rows(plan, "main")
    with pytest.raises(ProcessLookupError):  # nothing of the study left running
        os.killpg(proc.pid, 0)


def test_a_study_stops_when_its_time_is_up_as_asked_exit_0(tmp_path, capsys):
    """--stop-after ends a queue as SIGTERM does (nothing starts after it, a running job saves its step), with exit 0
    (a stop asked for); the second plan of the queue does not start."""
    first, second = (load_plan(_plan(tmp_path, ONE_SEED_MAIN.replace("seeds: [0]", "seeds: [0, 1, 2]") + "\n", name=n))
                     for n in ("first", "second"))
    assert main(["study", "run", str(first.path), str(second.path), "--workers", "1", "--stop-after", "0.001s"]) == 0
    err = capsys.readouterr().err
    stopped, not_started = map(int, re.search(r"first/main: stopped by --stop-after: (\d) running job\(s\) stopped "
                                              r"\(each resumes from its last saved step\), (\d) not started, 0 failed",
                                              err).groups())
    assert stopped + not_started == 3 and not read_rows(first, "main") and not (second.runs / "main").exists()
    assert main(["study", "run", str(first.path), "--stop-after", "soon"]) == 2  # not a duration: one line
    assert capsys.readouterr().err == ("hierhead study: error: time 'soon': expected a duration such as 15m, 900s, "
                                       "1.5h or 1h30m (a plain number is minutes)\n")


def test_a_job_stopped_and_resumed_records_the_sum_of_its_parts_seconds(tmp_path, monkeypatch):
    """Every session's stop left its running jobs' rows without seconds (issue 41's time ratios read them). A part
    killed outright counts up to its last checkpoint; one whose time is unknown (written by code that did not
    record its start, or at another thread count) still leaves them empty."""
    from hierhead.engine.trainer import TrainingStopped
    from hierhead.study import protocols, runner

    clock = iter([0.0, 100.0, 1000.0, 1030.0, 0.0, 5.0, 0.0, 7.0, 0.0, 7.0, 0.0, 7.0])
    monkeypatch.setattr(runner, "_clock", lambda: next(clock))
    monkeypatch.setattr(runner, "_wall", lambda: 5000.0)

    class Stops(protocols.TrainProtocol):  # the first part of each job stops after a checkpoint; the next scores
        def run(self, config: dict, score: str) -> dict:
            last = Path(config["out"]) / "checkpoints" / "last.ckpt"
            if not last.is_file():
                last.parent.mkdir(parents=True)
                last.write_bytes(b"")
                raise TrainingStopped("stopped by SIGTERM at step 3")
            return {"mAP": 50.0, "split": score}

    monkeypatch.setitem(protocols.PROTOCOLS, "train", Stops("train", "a job stopped once"))
    plan = load_plan(_plan(tmp_path, "datasets: [toy]\nseeds: [0, 1]\nstages:\n  - name: test\n    arms:\n"
                                     "      general: {design: \"9An{9}\"}\n"))
    first, second = (j.key for j in plan.jobs("test"))
    with pytest.raises(TrainingStopped):
        runner.run_job(plan, first, threads=1)
    assert runner.run_job(plan, first, threads=1)["seconds"] == 130.0  # 100 s stopped, then 30 s to the row
    (plan.runs / second / "checkpoints").mkdir(parents=True)  # a part killed outright: it said nothing
    (plan.runs / second / "checkpoints" / "last.ckpt").write_bytes(b"")
    (plan.runs / second / "parts.json").write_text('{"parts": [], "open": true, "threads": 1}')
    assert runner.run_job(plan, second, threads=1)["seconds"] == ""
    (plan.runs / second / "parts.json").write_text('{"parts": [40.0], "open": false, "threads": 2}')
    (plan.runs / second / "row.json").unlink()
    assert runner.run_job(plan, second, threads=1)["seconds"] == ""  # the earlier part at another thread count
    killed = '{"parts": [40.0], "open": true, "threads": 1, "started": %s}'
    os.utime(plan.runs / second / "checkpoints" / "last.ckpt", (1250.0, 1250.0))  # its last periodic save
    # 40 + 250 up to the save + 7; then a save older than the killed part: 40 + 0 + 7
    for started, seconds in ((1000.0, 297.0), (2000.0, 47.0)):
        (plan.runs / second / "parts.json").write_text(killed % started)
        (plan.runs / second / "row.json").unlink()
        assert runner.run_job(plan, second, threads=1)["seconds"] == seconds
    assert json.loads((plan.runs / second / "parts.json").read_text()) == {"parts": [40.0, 0.0], "open": True,
                                                                           "threads": 1, "started": 5000.0}


def test_a_study_killed_mid_run_resumes_to_the_same_rows(tmp_path, capsys):
    body = f"""datasets: [toy]
seeds: [0, 1]
set: {FAST}
stages:
  - name: main
    arms:
      general: {{design: "9An{{9}}"}}
      hier: {{design: "9An{{9,3}}S"}}
"""
    command = [sys.executable, "-m", "hierhead", "study", "run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = _plan(tmp_path / "whole", body)  # uninterrupted, its jobs in one process (no process start each)
    assert main(["study", "run", str(whole), "--workers", "0"]) == 0
    ended = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in ended] == ["[1/4", "[2/4", "[3/4", "[4/4"]  # each ended job: how many are left
    assert re.search(r"; 3 to go, about \d+ s at this run's median \d+ s a job, 1 at a time$", ended[0]), ended
    assert "to go" not in ended[-1]
    killed = _plan(tmp_path / "killed", body)
    runs = tmp_path / "killed" / "runs" / "studies" / "toy"
    proc = subprocess.Popen([*command, str(killed), "--workers", "2"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(runs.glob("main/toy/*/seed*/checkpoints/last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its jobs, mid-training
    proc.wait()
    rows = tmp_path / "killed" / "docs" / "results" / "toy" / "main.csv"
    assert not rows.is_file() or len(_table(rows)) < 4  # it was stopped before the end
    out = subprocess.run([*command, str(killed), "--dry-run"], check=True, env=env, capture_output=True, text=True).stdout
    assert "pending" in out and " 0 pending" not in out
    subprocess.run([*command, str(killed), "--workers", "2"], check=True, env=env, capture_output=True)
    assert _table(rows) == _table(tmp_path / "whole" / "docs" / "results" / "toy" / "main.csv")
    assert len(_table(rows)) == 4 and [r["arm"] for r in _table(rows)] == ["general", "hier"] * 2
    with rows.open(newline="") as f:
        assert "" not in {r["seconds"] for r in csv.DictReader(f)}  # a job killed mid-training: up to its checkpoint
    parts = [json.loads(p.read_text())["parts"] for p in runs.glob("main/toy/*/seed*/parts.json")]
    assert any(len(p) == 1 for p in parts), parts  # the killed part counted, then the part that wrote the row
    out = subprocess.run([*command, str(killed), "--dry-run"], check=True, env=env, capture_output=True, text=True).stdout
    assert "0 finished to merge, 0 pending" in out
    assert json.loads(next(runs.glob("main/toy/hier/seed1/row.json")).read_text())["design"] == "9An{9,3}S"
    # each finished job keeps its scored (last) checkpoint, not the one its validation split chose
    assert len(list(runs.glob("main/toy/*/seed*/checkpoints/last.ckpt"))) == 4
    assert not list(runs.glob("main/toy/*/seed*/checkpoints/best.ckpt"))


#: a plan's head: one seed of the toy data, quick settings, a stage `main` whose first arm is the general head
ONE_SEED_MAIN = f"""datasets: [toy]
seeds: [0]
set: {FAST}
stages:
  - name: main
    arms:
      general: {{design: "9An{{9}}"}}"""


def test_several_plans_run_one_after_another_and_all_are_checked_first(tmp_path, capsys):
    first, second = (load_plan(_plan(tmp_path, ONE_SEED_MAIN + "\n", name=n)) for n in ("first", "second"))
    broken = _plan(tmp_path, ONE_SEED_MAIN.replace("9An{{9}}", "9An{9}").replace("seeds: [0]", "seeds: []") + "\n",
                   name="broken")
    assert main(["study", "run", str(first.path), str(broken), "--workers", "0"]) == 2
    assert "broken.yaml" in capsys.readouterr().err and not read_rows(first, "main")  # nothing ran
    assert main(["study", "run", str(first.path), str(second.path), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert out.index("tables: hierhead study report " + str(first.path)) < out.index("second/main")
    assert len(read_rows(first, "main")) == len(read_rows(second, "main")) == 1
    assert main(["study", "report", str(first.path), str(second.path)]) == 0
    assert (first.rows / "report.md").is_file() and (second.rows / "report.md").is_file()


def test_a_queue_starts_a_later_plans_job_beside_an_earlier_plans_last_one(tmp_path, capsys):
    """Two plans, two workers: the second plan's job starts while the first plan's only job trains (the runner
    waited for a plan's last job before the next plan began, one core idle for a whole job at every plan's end)."""
    first, second = (load_plan(_plan(tmp_path, ONE_SEED_MAIN + "\n", name=n)) for n in ("first", "second"))
    assert main(["study", "run", str(first.path), str(second.path), "--workers", "2", "--threads", "1"]) == 0
    out, job = capsys.readouterr().out, "main/toy/general/seed0"
    started = json.loads((second.runs / job / "parts.json").read_text())["started"]
    assert started < (first.runs / job / "row.json").stat().st_mtime  # began before the first plan's job ended
    assert f"] first/{job}: " in out and f"] second/{job}: " in out, out  # a queue's lines name their plan
    log = (first.runs / job / "job.log").read_text()
    assert "Tip" not in log and "LeafSpec" not in log and "step " in log, log  # training's lines, no library chatter
    assert len(read_rows(first, "main")) == len(read_rows(second, "main")) == 1
    assert out.count("tables: hierhead study report ") == 2


def test_a_queues_free_place_goes_to_the_earliest_job_that_waits():
    """The queue's places go by the plans' order, then the stage's and the job's, whoever asked first."""
    import threading

    from hierhead.study.runner import _Slots

    slots, got = _Slots(1, plans=2), []
    slots.queue(0)  # both plans have listed their stage's jobs
    slots.queue(1)
    holding = slots.held((0, 0, 0))
    holding.__enter__()

    def wait(priority):
        with slots.held(priority):
            got.append(priority)

    waiting = [threading.Thread(target=wait, args=(p,)) for p in [(1, 0, 0), (0, 1, 2), (0, 1, 1)]]
    for t in waiting:
        t.start()
    deadline = time.time() + 30
    while len(slots.waiting) < 3 and time.time() < deadline:
        time.sleep(0.01)
    holding.__exit__(None, None, None)
    for t in waiting:
        t.join(30)
    assert got == [(0, 1, 1), (0, 1, 2), (1, 0, 0)] and slots.free == 1


def test_a_later_plans_job_waits_while_an_earlier_plan_lists_its_jobs():
    """A free place goes to no later plan's job while an earlier plan is still listing its stage's jobs (it may be
    resolving 'auto' settings from its data): the later plan, quicker to start, took both places first."""
    import threading

    from hierhead.study.runner import _Slots

    slots, got = _Slots(1, plans=2), []

    def wait(priority):
        with slots.held(priority):
            got.append(priority)

    later = threading.Thread(target=wait, args=((1, 0, 0),))
    later.start()
    deadline = time.time() + 30
    while not slots.waiting and time.time() < deadline:
        time.sleep(0.01)
    assert slots.waiting == [(1, 0, 0)] and slots.free == 1 and not got  # a place is free, and it waits
    slots.queue(0, [(0, 0, 0)])
    earlier = threading.Thread(target=wait, args=((0, 0, 0),))
    earlier.start()
    for t in (earlier, later):
        t.join(30)
    assert got == [(0, 0, 0), (1, 0, 0)] and slots.free == 1
    slots.prepare(0)  # plan 0's next stage: plan 1 waits again, until plan 0 queues its jobs (here: none)
    later = threading.Thread(target=wait, args=((1, 0, 1),))
    later.start()
    while not slots.waiting and time.time() < deadline:
        time.sleep(0.01)
    assert slots.waiting == [(1, 0, 1)] and slots.free == 1 and len(got) == 2
    slots.queue(0)
    later.join(30)
    assert got[2:] == [(1, 0, 1)] and not slots.waiting


def test_a_study_runs_the_seeds_its_pilot_counted_after_the_pilot(tmp_path, capsys):
    body = f"""datasets: [toy]
seeds: [0, 1]
set: {FAST}
stages:
  - name: pilot
    score: holdout
    holdout: 0.25
    arms:
      general: {{design: "9An{{9}}"}}
      hier: {{design: "9An{{9,3}}S"}}
    pick: {{name: n, rule: seeds, baseline: general, half_width: 1.0, min_n: 2, max_n: 2}}
  - name: test
    seeds: {{first: 100, n: {{pick: pilot.n}}}}
    arms:
      general: {{design: "9An{{9}}"}}
      hier: {{design: "9An{{9,3}}S"}}
"""
    plan = load_plan(_plan(tmp_path, body))
    assert main(["study", "run", str(plan.path), "--dry-run"]) == 0
    assert "toy/test: 0 jobs, 0 with rows, 0 finished to merge, 0 pending; waits on pilot" in capsys.readouterr().out
    assert main(["study", "run", str(plan.path), "--workers", "0"]) == 0
    assert [(r["stage"], r["arm"], r["seed"]) for r in read_rows(plan, "test")] == [
        ("test", "general", "100"), ("test", "hier", "100"), ("test", "general", "101"), ("test", "hier", "101")]


def test_running_a_plan_that_is_not_committed_as_it_is_warns_that_its_rows_are_unregistered(tmp_path, capsys):
    path = _plan(tmp_path, ONE_SEED_MAIN + "\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    def said() -> str:
        assert main(["study", "run", str(path), "--dry-run"]) == 0
        return capsys.readouterr().out

    assert "warning" not in said()  # outside any checkout: nothing to say
    git("init", "-q")
    assert "toy: warning: toy.yaml is not committed: its rows will not follow a registered plan" in said()
    git("add", "studies")
    git("commit", "-q", "-m", "plan")
    assert "warning" not in said()
    path.write_text(path.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    assert "toy: warning: toy.yaml is changed since its commit" in said()


def test_jobs_that_train_the_same_run_train_it_once(tmp_path, capsys):
    body = ONE_SEED_MAIN + """
      again: {design: "9An{9}", set: {anchor_s_min: 0.2, max_steps: 4}}
      hier: {design: "9An{9,3}S"}
"""
    plan = load_plan(_plan(tmp_path, body))
    assert main(["study", "run", str(plan.path), "--dry-run"]) == 0
    assert "3 pending (1 sharing an earlier job's run)" in capsys.readouterr().out
    assert main(["study", "run", str(plan.path), "--workers", "0"]) == 0  # in this process
    out = capsys.readouterr().out
    assert "1 job(s) train the same run as an earlier job" in out and "2 of 3 jobs to run" in out
    rows = {r["arm"]: r for r in read_rows(plan, "main")}
    assert list(rows) == ["general", "again", "hier"] and not (plan.runs / "main/toy/again").exists()
    assert rows["again"]["same_as"] == "main/toy/general/seed0" and rows["again"]["mAP"] == rows["general"]["mAP"]
    assert json.loads(rows["again"]["settings"])["anchor_s_min"] == 0.2 and rows["hier"]["same_as"] == ""
    assert main(["study", "run", str(plan.path), "--dry-run"]) == 0
    assert "3 with rows, 0 finished to merge, 0 pending" in capsys.readouterr().out
    plan.path.write_text(plan.path.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    assert main(["study", "run", str(plan.path), "--dry-run", "--workers", "2"]) == 0  # time left: the rows' median
    assert re.search(r"3 pending \(1 sharing an earlier job's run\); 2 to go, about \d+ s at the rows' median \d+ s "
                     r"a job, 2 at a time$", capsys.readouterr().out.splitlines()[-4]), "no estimate"


def _ten_seeds_holdout(datasets: str) -> str:
    """A plan's head: seeds 0-9, one holdout stage whose arms follow."""
    return f"datasets: [{datasets}]\nseeds: {list(range(10))}\nstages:\n  - name: holdout\n    score: holdout\n" \
           f"    holdout: 0.2\n    arms:"


def test_the_adopt_rule_pools_the_datasets_and_refuses_a_loss_on_any(tmp_path):
    from scipy import stats

    body = _ten_seeds_holdout("toy, toy2") + """
      today: {design: "9An{9}"}
      rule: {design: "9An{9}", set: {anchor_s_min: auto}}
      risky: {design: "9An{9}", set: {image_size: auto}}
    decision: {baseline: today, margin: 1.0, rule: adopt}
"""
    plan = load_plan(_plan(tmp_path, body))
    wiggle = [0.1, -0.1, 0.2, -0.2, 0.0, 0.1, -0.1, 0.3, -0.3, 0.0]
    gain = {"toy": [2.0 + w for w in wiggle], "toy2": [w for w in wiggle]}
    loss = {"toy": [2.0 + w for w in wiggle], "toy2": [-1.2 + w for w in wiggle]}  # a pooled gain, a loss on toy2
    values = {(d, "today", s): 50.0 for d in gain for s in range(10)}
    values |= {(d, "rule", s): 50.0 + gain[d][s] for d in gain for s in range(10)}
    values |= {(d, "risky", s): 50.0 + loss[d][s] for d in loss for s in range(10)}
    _rows(plan, "holdout", values)
    write_report(plan)
    text = (plan.rows / "report.md").read_text()
    for arm, diffs, verdict in (("rule", gain, "adopt"), ("risky", loss, "keep today (toy2 -1.20)")):
        pooled = diffs["toy"] + diffs["toy2"]
        m, sd = sum(pooled) / 20, math.sqrt(sum((d - sum(pooled) / 20) ** 2 for d in pooled) / 19)
        half = stats.t.ppf(0.975, 19) * sd / math.sqrt(20)
        assert m - half > -1.0  # the pooled bound holds for both: only toy2's mean loss refuses "risky"
        per = [sum(diffs[d]) / 10 for d in ("toy", "toy2")]
        assert (f"| {arm} | {m:+.2f} [{m - half:+.2f}, {m + half:+.2f}] | 20 | {per[0]:+.2f} | {per[1]:+.2f} | "
                f"{verdict} |") in text


@pytest.mark.parametrize("plan_file", sorted(p for p in (REPO / "studies").glob("*.yaml") if p.name != "datasets.yaml"), ids=lambda p: p.stem)
def test_every_committed_plan_reports_its_docs_with_zero_diff(plan_file):
    """The reports and the docs' study blocks are what `hierhead study report` writes from the committed rows."""
    assert write_report(load_plan(plan_file), check=True) == []


FINISHED = ("pretrained-val", "pretrained-p1", "pretrained-prior", "pretrained-p2", "defaults-today", "scratch", "scratch-start",
            "mechanism")


@pytest.mark.parametrize("name", FINISHED)
def test_a_finished_committed_plan_has_nothing_to_run(name, capsys):
    """On a fresh clone (no run folders), a finished study's dry run reports every job with its row."""
    plan = load_plan(REPO / "studies" / f"{name}.yaml")
    assert main(["study", "run", str(plan.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"(\d+) pending", out) and set(re.findall(r"(\d+) pending", out)) == {"0"}, out


def test_a_second_runner_of_the_same_plan_is_refused(tmp_path, capsys):
    import fcntl

    plan = load_plan(_plan(tmp_path, TWO_STAGES))
    plan.runs.mkdir(parents=True)
    with open(plan.runs / ".study.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["study", "run", str(plan.path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"hierhead study: error: toy.yaml: another 'hierhead study run' is running this plan ({plan.runs}); "
                   f"wait for it to end\n")
    assert main(["study", "run", str(plan.path), "--dry-run"]) == 0  # a dry run reads only


def test_the_holds_rule_keeps_a_cheaper_change_only_where_no_dataset_loses_more_than_the_margin(tmp_path):
    from scipy import stats

    body = _ten_seeds_holdout("toy, toy2") + """
      today: {design: "9An{9}"}
      half: {design: "9An{9}", set: {max_steps: 300}}
      small: {design: "9An{9}", set: {image_size: 256}}
    decision: {baseline: today, margin: 1.0, rule: holds}
"""
    plan = load_plan(_plan(tmp_path, body))
    wiggle = [0.1, -0.1, 0.2, -0.2, 0.0, 0.1, -0.1, 0.3, -0.3, 0.0]
    values = {(d, "today", s): 50.0 for d in ("toy", "toy2") for s in range(10)}
    values |= {(d, "half", s): 49.8 + wiggle[s] for d in ("toy", "toy2") for s in range(10)}  # -0.2: holds
    values |= {("toy", "small", s): 50.0 + wiggle[s] for s in range(10)}
    values |= {("toy2", "small", s): 48.5 + wiggle[s] for s in range(10)}  # -1.5 on toy2: does not hold
    seconds = {k: {"today": 600.0, "half": 300.0 + k[2], "small": 400.0}[k[1]] for k in values}
    _rows(plan, "holdout", values, seconds)
    write_report(plan)
    text = (plan.rows / "report.md").read_text()
    half = stats.t.ppf(0.975, 9) * stats.tstd(wiggle) / 10 ** 0.5
    mean = sum(wiggle) / 10
    assert f"| half | toy | 10 | {-0.2 + mean:+.2f} [{-0.2 + mean - half:+.2f}, {-0.2 + mean + half:+.2f}] | " \
           f"{(300 + 4.5) / 600:.2f}x | holds |" in text  # the median of 300 + seed over 600
    assert "| **half** | **all** | | | | **holds** |" in text
    assert f"| small | toy2 | 10 | {-1.5 + mean:+.2f} [{-1.5 + mean - half:+.2f}, {-1.5 + mean + half:+.2f}] | 0.67x | " \
           "does not hold |" in text
    assert "| **small** | **all** | | | | **does not hold** |" in text
    with pytest.raises(PlanError, match="decision.rule holds needs a margin"):
        load_plan(_plan(tmp_path, body.replace("margin: 1.0, ", ""), name="bad"))


def test_the_spread_rule_compares_two_differences_sds_with_a_bootstrap(tmp_path):
    import numpy as np
    from scipy import stats

    body = _ten_seeds_holdout("toy") + """
      general: {design: "9An{9}"}
      global: {design: "9An{9,3,1}S"}
      general-ema: {design: "9An{9}", set: {ema.enabled: true}}
      global-ema: {design: "9An{9,3,1}S", set: {ema.enabled: true}}
    decision: {baseline: general, margin: 1.0, rule: spread, pairs: [[global, general], [global-ema, general-ema]]}
"""
    plan = load_plan(_plan(tmp_path, body))
    rng = np.random.default_rng(3)
    noise, calm = rng.normal(0, 3, 10), rng.normal(0, 1, 10)
    values = {("toy", "general", s): 50.0 for s in range(10)}
    values |= {("toy", "global", s): 51.0 + noise[s] for s in range(10)}
    values |= {("toy", "general-ema", s): 50.5 for s in range(10)}
    values |= {("toy", "global-ema", s): 51.5 + calm[s] for s in range(10)}
    _rows(plan, "holdout", values)
    write_report(plan)
    text = (plan.rows / "report.md").read_text()
    first, second = 1.0 + noise, 1.0 + calm
    ratio = np.std(second, ddof=1) / np.std(first, ddof=1)
    boot = stats.bootstrap((first, second), lambda a, b, axis=-1: np.std(b, ddof=1, axis=axis) / np.std(a, ddof=1, axis=axis),
                           paired=True, vectorized=True, n_resamples=9999, method="percentile",
                           random_state=np.random.default_rng(0)).confidence_interval
    assert ratio < 0.7 and boot.high < 1  # the draw above: the EMA arms' difference is calmer
    row = next(line for line in text.splitlines() if line.startswith("| toy | 10 |"))
    assert f"| {np.std(first, ddof=1):.2f} | {np.std(second, ddof=1):.2f} | {ratio:.2f} [{boot.low:.2f}, {boot.high:.2f}] " \
           f"| lower by >= 30 % |" in row
    assert "| +0.50 [+0.50, +0.50] holds |" in row  # general-ema minus general: +0.5 on every seed
    with pytest.raises(PlanError, match=re.escape("decision.rule spread needs pairs: [[a, b], [c, d]] of its arms")):
        load_plan(_plan(tmp_path, body.replace("[global-ema, general-ema]", "[global-ema, nobody]"), name="bad"))


def test_the_frozen_protocol_of_a_plan_is_the_sweeps(tmp_path, capsys):
    """One concept: a plan's `frozen` job and `hierhead sweep --protocol frozen` train and score the same run."""
    settings = {"image_size": 96, "num_workers": 0, "progress": False, "frozen.views": 2, "frozen.steps": 3,
                "frozen.batch_size": 4}
    data = "synthetic:mode=all,classes=2,train=12,test=6,size=96,seed=3"
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "datasets.yaml").write_text(f'toy: {{root: "{data}"}}\n')
    (studies / "fz.yaml").write_text("name: fz\nrows: ../docs/results/fz\nprotocol: frozen\nrecipe: defaults-2026-12\ndatasets: [toy]\nseeds: [0]\n"
                                     f"set: {json.dumps(settings)}\nstages:\n  - name: test\n    arms:\n"
                                     '      ratios: {design: "9An{9,3}As"}\n')
    assert main(["study", "run", str(studies / "fz.yaml")]) == 0
    row = read_rows(load_plan(studies / "fz.yaml"), "test")[0]
    assert (row["protocol"], row["split"], row["steps"], row["train_images"], row["scored_images"]) == (
        "frozen", "test", "3", "12", "6")
    sweep = ["sweep", "--recipe", "defaults-2026-12", "--data", data, "--designs", "9An{9,3}As", "--seeds", "1",
             "--protocol", "frozen", "--out", str(tmp_path / "sweep"), *(x for k, v in settings.items()
                                                                         for x in ("--set", f"{k}={v}"))]
    assert main(sweep) == 0
    swept = {r["arm"]: r for r in csv.DictReader(open(tmp_path / "sweep" / "results.csv"))}
    assert float(swept["9An{9,3}As"]["mAP"]) == float(row["mAP"])


def test_a_plan_can_define_its_own_data_without_an_aliases_file(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "name: mine\nprotocol: train\nrecipe: defaults-2026-12\nseeds: [0, 1]\n"
        "datasets: [{name: parts, root: data/parts, set: {data.holdout: 0.2}}]\n"
        'stages:\n  - name: test\n    arms:\n      general: {design: "9An{9}"}\n      hier: {design: "9An{9,3,1}S"}\n')
    plan = load_plan(tmp_path / "mine.yaml")
    assert [(d.name, d.root, d.set) for d in plan.datasets] == [("parts", str(tmp_path / "data" / "parts"),
                                                                 {"data": {"holdout": 0.2}})]
    assert len(plan.jobs()) == 4 and plan.rows == tmp_path / "results" / "mine" and plan.runs == tmp_path / "runs" / "mine"


def test_a_missing_dataset_folder_is_refused_before_any_job(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text(
        "name: mine\nprotocol: train\nrecipe: defaults-2026-12\nseeds: [0]\ndatasets: [{name: parts, root: nowhere}]\n"
        'stages:\n  - name: test\n    arms:\n      general: {design: "9An{9}"}\n')
    assert main(["study", "run", str(tmp_path / "mine.yaml")]) == 2
    assert capsys.readouterr().err == f"hierhead study: error: mine.yaml: dataset parts: no folder {tmp_path / 'nowhere'}\n"
    assert not (tmp_path / "runs" / "mine" / "test").exists()


def test_the_pretrained_studys_picks_are_computed_from_its_rows_and_used_by_its_test_stages():
    """The validation stages' rules (studies/pretrained-val.yaml) computed from the committed rows give the values
    the test-stage plans train with: nothing copied by hand. The seeds rule recomputed here without the report."""
    import statistics

    from scipy import stats

    from hierhead.engine import resolve
    from hierhead.engine.from_config import image_size

    made = picks(load_plan(REPO / "studies" / "pretrained-val.yaml"))
    assert made == {"settings.lr": 0.01, "settings.steps": 500, "pilot.seeds": 30, "prior.strength": 0.1,
                    "size.image_size": 320}
    p1, prior, p2 = (load_plan(REPO / "studies" / f"pretrained-{n}.yaml") for n in ("p1", "prior", "p2"))
    for plan in (p1, prior):
        assert len(plan.seeds) == made["pilot.seeds"]
        assert plan.set["frozen"]["optimizer"]["lr"] == made["settings.lr"]
        assert plan.set["frozen"]["steps"] == made["settings.steps"]
    assert {a.set.get("frozen", {}).get("optimizer", {}).get("anchor_l2") for a in prior.stage("full").arms} == {
        None, made["prior.strength"]}
    assert image_size(resolve(p2.recipe, p2.set)) == (made["size.image_size"],) * 2
    with (REPO / "docs" / "results" / "pretrained-val-pilot.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    value = {(r["dataset"], r["fraction"], r["design"], r["seed"]): float(r["mAP"]) for r in rows}
    sds = [statistics.stdev([v - value[(d, f, "9An{9}", s)] for (d2, f2, g2, s), v in value.items()
                             if (d2, f2, g2) == (d, f, g)])
           for d, f, g in {(d, f, g) for d, f, g, _ in value if g != "9An{9}"}]
    n = next((n for n in range(10, 31) if stats.t.ppf(0.975, n - 1) * max(sds) / math.sqrt(n) <= 0.9), 30)
    assert n == made["pilot.seeds"]


def test_a_failing_job_is_reported_in_one_line_and_the_others_run(tmp_path, capsys):
    body = ONE_SEED_MAIN + """
      broken: {design: "9An{9}", set: {optimizer.name: nonesuch}}
"""
    plan = load_plan(_plan(tmp_path, body))
    assert main(["study", "run", str(plan.path), "--workers", "0"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if "main/toy/broken/seed0: FAILED" in line]
    assert len(failed) == 1 and "nonesuch" in failed[0]
    assert "1 job(s) failed" in out and [r["arm"] for r in read_rows(plan, "main")] == ["general"]


@pytest.mark.parametrize("args, message", [
    (["run", "--check"], "--check is an option of 'study report', not of 'study run'"),
    (["report", "--workers", "2"], "--workers is an option of 'study run', not of 'study report'"),
    (["report", "--dry-run"], "--dry-run is an option of 'study run', not of 'study report'"),
])
def test_an_option_of_the_other_action_is_refused(tmp_path, capsys, args, message):
    plan = _plan(tmp_path, TWO_STAGES)
    assert main(["study", args[0], str(plan), *args[1:]]) == 2
    assert capsys.readouterr().err == f"hierhead study: error: {message}\n"


LEGACY = """datasets: [toy, toy2]
seeds: [0, 1]
legacy:
  grid:
    - {file: old-toy.csv, dataset: toy}
    - {file: old-toy2.csv, dataset: toy2}
  unseen: {file: demo.csv, dataset: toy, column: unseen_mAP}
stages:
  - name: grid
    arms:
      general: {design: "9An{9}"}
      hier: {design: "9An{9,3}As"}
  - name: unseen
    datasets: [toy]
    arms:
      general: {design: "9An{9}"}
      hier: {design: "9An{9,3}As"}
"""


def _legacy_files(studies: Path) -> None:
    """A `sweep` layout file per dataset (mAP a fraction) and a `demo` one (two scores, in percent)."""
    for name, base in (("old-toy.csv", 0.40), ("old-toy2.csv", 0.20)):
        with (studies / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["design", "seed", "fraction", "train_images", "steps", "metric", "mAP", "train_seconds"])
            for seed in (0, 1):
                w.writerow(["9An{9}", seed, 1.0, 8, 4, "voc07", base + 0.01 * seed, 30.0])
                w.writerow(["9An{9,3}As", seed, 1.0, 8, 4, "voc07", base + 0.02 + 0.03 * seed, 31.0])
                w.writerow(["9An{9,3}S", seed, 1.0, 8, 4, "voc07", 0.9, 31.0])  # no arm: not the plan's
    (studies / "demo.csv").write_text("design,seed,mAP,unseen_mAP,AP:class0\n9An{9},0,44.5,30.25,50\n"
                                      "9An{9},1,45.5,31.5,50\n\"9An{9,3}As\",0,46,33,50\n\"9An{9,3}As\",1,44,30,50\n")


def test_rows_of_the_older_layouts_are_read_as_study_rows_never_rewritten(tmp_path):
    """`sweep` rows (no dataset column, mAP a fraction) and `demo` rows (a chosen score column) become study rows;
    a stage on some of the plan's datasets has jobs on those only; the table view is the paper's Table III form."""
    path = _plan(tmp_path, LEGACY)
    _legacy_files(path.parent)
    before = {p.name: p.read_bytes() for p in path.parent.glob("*.csv")}
    plan = load_plan(path)
    assert [j.key for j in plan.jobs("unseen")] == ["unseen/toy/general/seed0", "unseen/toy/hier/seed0",
                                                    "unseen/toy/general/seed1", "unseen/toy/hier/seed1"]
    assert all(s["pending"] == [] for s in status(plan))
    grid = {(r["dataset"], r["arm"], r["seed"]): r for r in read_rows(plan, "grid")}
    assert len(grid) == 8 and float(grid[("toy2", "hier", "1")]["mAP"]) == pytest.approx(25.0)
    assert (grid[("toy", "general", "0")]["seconds"], grid[("toy", "general", "0")]["split"]) == ("30.0", "test")
    assert [float(r["mAP"]) for r in read_rows(plan, "unseen")] == [30.25, 31.5, 33.0, 30.0]
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- study: toy/grid table toy2 -->\n<!-- /study -->\n")
    plan = load_plan(path.write_text(path.read_text() + "docs: [../doc.md]\n") and path)
    write_report(plan)
    text = doc.read_text()
    diffs = [25.0 - 21.0, 22.0 - 20.0]  # hier minus general, toy2, seeds 1 and 0
    mean, half = sum(diffs) / 2, 12.706204736 * abs(diffs[0] - diffs[1]) / 2  # t(0.975, 1) x SD / sqrt(2)
    assert f"| 9An{{9,3}}As | **23.50 +- 2.12 (n=2)**<br>{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]" in text
    assert "toy:" not in text and before == {p.name: p.read_bytes() for p in path.parent.glob("*.csv")}


@pytest.mark.parametrize("old, new, message", [
    ("    datasets: [toy]\n", "    datasets: [toy, cards]\n", "datasets ['toy', 'cards']: distinct datasets of the plan"),
    ("{file: old-toy.csv, dataset: toy}", "{file: old-toy.csv, dataset: cards}", "dataset 'cards' is not one of"),
    ("{file: old-toy.csv, dataset: toy}", "{file: gone.csv, dataset: toy}", "no file"),
    ("{file: old-toy.csv, dataset: toy}", "{file: old-toy.csv, dataset: toy, column: unseen_mAP}",
     "column 'unseen_mAP' is for a demo file's scores"),
])
def test_bad_legacy_or_stage_datasets_are_refused(tmp_path, old, new, message):
    path = _plan(tmp_path, LEGACY.replace(old, new, 1))
    _legacy_files(path.parent)
    with pytest.raises(PlanError, match=re.escape(message)):
        read_rows(load_plan(path), "grid")  # a plan's keys at load, a file's columns when its rows are read


def test_a_legacy_run_in_two_files_is_kept_once_and_two_scores_for_one_job_are_refused(tmp_path):
    path = _plan(tmp_path, LEGACY.replace("old-toy2.csv, dataset: toy2", "old-toy2.csv, dataset: toy"))
    _legacy_files(path.parent)
    with pytest.raises(PlanError, match=r"two legacy rows of toy/general/0/1.0 differ \(mAP 40.0 and 20.0\)"):
        read_rows(load_plan(path), "grid")
    (path.parent / "old-toy2.csv").write_bytes((path.parent / "old-toy.csv").read_bytes())
    assert len(read_rows(load_plan(path), "grid")) == 4


@pytest.mark.parametrize("protocol, settings, message", [
    ("finetune", {}, "protocol 'finetune' starts from a trained model: set init: CHECKPOINT"),
    ("head", {}, "protocol 'head' starts from a trained model"),
    ("train", {"init": "start.ckpt"}, "protocol 'train' has no trained start (init 'start.ckpt')"),
    ("imagenet", {"pretrained_backbone": False}, "starts from the ImageNet backbone: drop pretrained_backbone: false"),
])
def test_each_protocol_says_where_its_jobs_start(protocol, settings, message):
    from hierhead.engine.recipes import resolve
    from hierhead.study.protocols import PROTOCOLS

    with pytest.raises(ValueError, match=re.escape(message)):
        PROTOCOLS[protocol].check(resolve("defaults-2026-12", {"data": {"path": TOY}, **settings}))
    assert PROTOCOLS["imagenet"].check(resolve("defaults-2026-12", {"data": {"path": TOY}}))["pretrained_backbone"]


def test_a_committed_from_scratch_interval_is_the_one_recomputed_from_the_raw_rows():
    """The scratch plan's pooled cards interval for 9An{9,3,1}As, recomputed with scipy from docs/results/cards.csv
    (mAP a fraction there), is the one docs/results.md shows."""
    from scipy import stats

    rows = list(csv.DictReader(open(REPO / "docs" / "results" / "cards.csv")))
    value = {(r["design"], r["fraction"], r["seed"]): 100 * float(r["mAP"]) for r in rows}
    diffs = [v - value[("9An{9}", f, s)] for (d, f, s), v in value.items() if d == "9An{9,3,1}As"]
    mean, sem = sum(diffs) / len(diffs), stats.sem(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * sem
    assert len(diffs) == 9
    assert f"**{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] worse**" in (REPO / "docs" / "results.md").read_text()
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}], ahead 0/9" in (
        REPO / "docs" / "results" / "scratch" / "report.md").read_text()


def _pm_hksj(y: list[float], v: list[float]) -> tuple[float, float, float]:
    """(tau^2, mean, HKSJ se) computed here from their definitions: Paule-Mandel's tau^2 solves
    sum w_i (y_i - mu_w)^2 = k - 1 with w_i = 1 / (v_i + tau^2) (0 when the fixed-effect Q is below k - 1);
    the HKSJ variance is sum w_i (y_i - mu)^2 / ((k - 1) sum w_i)."""
    from scipy import optimize

    k = len(y)

    def q(tau2: float) -> float:
        w = [1 / (vi + tau2) for vi in v]
        mu = sum(wi * yi for wi, yi in zip(w, y)) / sum(w)
        return sum(wi * (yi - mu) ** 2 for wi, yi in zip(w, y)) - (k - 1)

    tau2 = 0.0 if q(0.0) <= 0 else optimize.brentq(q, 0.0, 1e4)
    w = [1 / (vi + tau2) for vi in v]
    mu = sum(wi * yi for wi, yi in zip(w, y)) / sum(w)
    return tau2, mu, math.sqrt(sum(wi * (yi - mu) ** 2 for wi, yi in zip(w, y)) / ((k - 1) * sum(w)))


@pytest.mark.parametrize("y, v", [([1.2, 0.3, 2.5, -0.4, 0.9], [0.5, 0.4, 0.8, 0.6, 0.3]),  # heterogeneous
                                  ([0.5, 0.6, 0.4, 0.55, 0.5], [0.5, 0.4, 0.8, 0.6, 0.3])])  # tau^2 = 0
def test_the_random_effects_pooling_is_paule_mandel_with_the_hksj_interval(y, v):
    from scipy import stats

    from hierhead.comparison import pooled_effect

    r = pooled_effect(y, v)
    tau2, mu, se = _pm_hksj(y, v)
    assert r["tau2"] == pytest.approx(tau2, abs=1e-5) and r["mean"] == pytest.approx(mu, abs=1e-5)  # statsmodels iterates to ~1e-6
    assert r["se"] == pytest.approx(se, rel=1e-4)
    half = stats.t.ppf(0.975, len(y) - 1) * se
    assert (r["low"], r["high"]) == pytest.approx((mu - half, mu + half), rel=1e-4)
    assert r["p"] == pytest.approx(2 * stats.t.sf(abs(mu / se), len(y) - 1), rel=1e-4) and 0 <= r["i2"] < 1
    with pytest.raises(ValueError, match="at least 2"):
        pooled_effect([1.0], [0.1])


META = """datasets: [{name: a, root: "%s"}, {name: b, root: "%s"}, {name: c, root: "%s"}, {name: o, root: "%s"}]
seeds: [0, 1, 2, 3]
stages:
  - name: test
    arms:
      general: {design: "9An{9}"}
      hier: {design: "9An{9,3,1}S"}
      ratios: {design: "9An{9,3}As"}
    decision: {baseline: general, margin: 1.0, rule: meta, origin: o}
""" % ((TOY,) * 4)


def test_the_meta_rule_pools_the_new_domains_and_reports_the_origin_beside_them(tmp_path):
    plan = load_plan(_plan(tmp_path, META))
    gain = {"a": [2.0, 3.0, 2.5, 3.5], "b": [1.5, 2.5, 2.0, 3.0], "c": [3.0, 2.0, 2.5, 4.0], "o": [9.0, 8.0, 9.5, 8.5]}
    values = {}
    for d in "abco":
        for s in range(4):
            values[(d, "general", s)] = 50.0 + s
            values[(d, "hier", s)] = 50.0 + s + gain[d][s]
            values[(d, "ratios", s)] = 50.0 + s + (0.1 if s % 2 else -0.1)
    _rows(plan, "test", values)
    text = write_report(plan) and (plan.rows / "report.md").read_text()
    from hierhead.comparison import pooled_effect

    y = [sum(gain[d]) / 4 for d in "abc"]
    v = [sum((g - m) ** 2 for g in gain[d]) / 3 / 4 for d, m in zip("abc", y)]
    r = pooled_effect(y, v)
    assert (f"| **hier** | **pooled (k=3)**: tau^2 {r['tau2']:.2f}, I^2 {r['i2']:.0%}, Holm p " in text
            and f"**{r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]** | **better** |" in text)
    assert "| hier | o (origin, not pooled) | 4 | 51.50 | +8.75 [" in text  # reported, not pooled (+8.75 would lift it)
    assert "| **ratios** |" in text and "**no effect within +-1**" in text
    bad = META.replace("origin: o}", "origin: o, pool: [a, o]}")
    with pytest.raises(PlanError, match="decision meta pools"):
        load_plan(_plan(tmp_path / "x", bad))


def test_the_meta_rule_explores_each_effect_beside_its_table_two_statistic(tmp_path):
    """``explore: variation``: per dataset, the Table II variations of its training split at the run's input size
    (as ``hierhead recommend`` reads them), each arm's mean difference beside them, Pearson's r of the differences
    and x = sizes minus ratios (scipy's, with its Fisher interval), and a scatter beside the report."""
    from scipy import stats

    from hierhead.data import open_dataset
    from hierhead.data.stats import table_two
    from hierhead.recommend import design_for

    specs = {"a": "mode=ratio,seed=1", "b": "mode=size,seed=2", "c": "mode=all,seed=3", "o": "mode=ratio,seed=4"}
    body = (META.replace(f'root: "{TOY}"', 'root: "X"')
            .replace("origin: o}", "origin: o, explore: variation}"))
    for d, spec in specs.items():
        body = body.replace('{name: %s, root: "X"}' % d, '{name: %s, root: "synthetic:classes=2,train=12,test=4,size=64,%s"}' % (d, spec))
    plan = load_plan(_plan(tmp_path, body))
    gain = {"a": [2.0, 3.0, 2.5, 3.5], "b": [0.5, 1.5, 1.0, 2.0], "c": [3.0, 2.0, 2.5, 4.0], "o": [9.0, 8.0, 9.5, 8.5]}
    values = {(d, arm, s): 50.0 + s + (gain[d][s] if arm == "hier" else 0.3 * k * (s % 2) if arm == "ratios" else 0)
              for k, d in enumerate("abco") for arm in ("general", "hier", "ratios") for s in range(4)}
    _rows(plan, "test", values)
    assert plan.rows / "test-explore.png" in write_report(plan)
    text = (plan.rows / "report.md").read_text()
    assert "Exploratory, not a test" in text and (plan.rows / "test-explore.png").stat().st_size > 5000
    xs = {}
    for d, spec in specs.items():  # the synthetic-ssdlite recipe's 160 px input, the whole train split (a test stage)
        v = design_for(table_two(open_dataset(f"synthetic:classes=2,train=12,test=4,size=64,{spec}", split="train"), 160))
        xs[d] = v["size_variation"] - v["ratio_variation"]
        assert (f"| {d}{' (origin)' if d == 'o' else ''} | {v['size_variation']:.2f} | {v['ratio_variation']:.2f} | "
                f"{xs[d]:+.2f} | `{v['design']}` | ") in text
    r = stats.pearsonr([xs[d] for d in "abco"], [sum(gain[d]) / 4 for d in "abco"])
    lo, hi = r.confidence_interval(0.95)
    assert (f"- hier (`9An{{9,3,1}}S`): Pearson r {r.statistic:+.2f} [{lo:+.2f}, {hi:+.2f}] over 4 datasets, the origin among "
            "them (the paper's reading predicts r > 0)") in text
    assert "predicts r < 0)" in text  # ratios: 9An{9,3}As
    assert write_report(plan) == []  # nothing left to write: the scatter is drawn when the report changes
    with pytest.raises(PlanError, match="decision.explore 'variation': 'variation', with rule meta"):
        load_plan(_plan(tmp_path / "y", body.replace("rule: meta, origin: o, ", "")))


def test_a_committed_holm_verdict_is_the_one_recomputed_from_the_raw_rows():
    """P2 on cards (studies/pretrained-p2.yaml): each design's paired t-test against the general head over the 10
    seeds of docs/results/pretrained-imagenet.csv, Holm across the three designs by hand; the verdicts and
    intervals are the ones the README's generated table shows."""
    from scipy import stats

    rows = [r for r in csv.DictReader(open(REPO / "docs" / "results" / "pretrained-imagenet.csv"))
            if r["dataset"] == "cards" and r["protocol"] == "imagenet"]
    value = {(r["design"], int(r["seed"])): float(r["mAP"]) for r in rows}
    designs = ["9An{9,3}As", "9An{9,3,1}S", "9An{9,1}Both"]
    diffs = {d: [value[(d, s)] - value[("9An{9}", s)] for s in range(10)] for d in designs}
    p = {d: stats.ttest_1samp(diffs[d], 0.0).pvalue for d in designs}
    order = sorted(designs, key=p.get)
    adjusted, running = {}, 0.0
    for rank, d in enumerate(order):
        running = max(running, min(1.0, (len(designs) - rank) * p[d]))
        adjusted[d] = running
    readme = (REPO / "README.md").read_text()
    for d in designs:
        m = sum(diffs[d]) / 10
        half = stats.t.ppf(0.975, 9) * stats.tstd(diffs[d]) / math.sqrt(10)
        cell = f"{m:+.2f} [{m - half:+.2f}, {m + half:+.2f}]"
        assert (f"**{cell} better**" if adjusted[d] < 0.05 else f"{cell} ") in readme, (d, cell, adjusted[d])
    assert [d for d in designs if adjusted[d] < 0.05] == ["9An{9,3,1}S"]


def _defaults_from_verdicts() -> tuple[dict, dict, dict]:
    """What studies/defaults-new.md ("How the verdicts combine") makes of the committed rows: ({setting: value} on
    every key the five studies decide, the verdicts, the flat settings of the engine-speed arm that enters (or {})):
    every rule adopted by defaults-rules, defaults-steps and defaults-stride8; EMA when defaults-rules adopts it and
    ema-spread finds it holds on both datasets for the general head; the cheapest engine-speed arm that holds and
    touches no key an adopted rule sets. A plan without every row decides nothing."""
    import statistics

    from hierhead.engine.recipes import resolve
    from hierhead.study.plan import _get, row_values
    from hierhead.study.report import adopted, holds_verdicts, spread_verdicts
    from hierhead.study.runner import stage_rows

    def flat(d: dict, prefix: str = "") -> dict:
        return {k2: v2 for k, v in d.items() for k2, v2 in (flat(v, f"{prefix}{k}.") if isinstance(v, dict)
                                                             else {f"{prefix}{k}": v}).items()}

    def holdout(name: str):
        plan = load_plan(REPO / "studies" / f"{name}.yaml")
        stage = plan.stage("holdout")
        rows, complete = stage_rows(plan, "holdout")
        return plan, stage, (row_values(rows, plan.metric) if complete else None)

    today, expected, verdicts, rule_keys, entering = resolve("defaults-2026-12"), {}, {}, set(), {}
    for name in ("defaults-rules", "defaults-steps", "defaults-stride8", "engine-speed"):  # what they may change
        expected |= {key: _get(today, key) for a in holdout(name)[1].arms for key in flat(a.set) if key not in expected}
    for name in ("defaults-rules", "defaults-steps", "defaults-stride8"):  # 1. issue 43's rules
        plan, stage, _ = holdout(name)
        verdicts[name] = adopted(plan, "holdout") or {a.name: False for a in stage.arms if a.name != "today"}
        for arm in (a for a in stage.arms if verdicts[name].get(a.name) and a.name != "ema"):
            expected.update(flat(arm.set))
            rule_keys |= set(flat(arm.set))
    if verdicts["defaults-rules"].get("ema"):  # 2. EMA: adopted, and holding for the general head on both datasets
        plan, stage, value = holdout("ema-spread")
        verdicts["ema-spread"] = value is not None and all(
            r["effects"][("general-ema", "general")]["holds"] for r in spread_verdicts(plan, stage, stage.decision, value).values())
        expected["ema.enabled"] = verdicts["ema-spread"]
    plan, stage, value = holdout("engine-speed")  # 3. the cheapest arm that holds, clear of the adopted rules' keys
    if value is not None:
        held = holds_verdicts(plan, stage, stage.decision, value)
        verdicts["engine-speed"] = {a: r["holds"] for a, r in held.items()}
        eligible = [a for a, r in held.items() if r["holds"] and not set(flat(stage.arm(a).set)) & rule_keys]
        if eligible:
            entering = flat(stage.arm(min(eligible, key=lambda a: statistics.mean(
                p["time"] for p in held[a]["per"].values()))).set)
            expected.update(entering)
    return expected, verdicts, entering


def test_the_built_in_defaults_follow_the_holdout_verdicts_as_defaults_new_md_combines_them():
    """Issues 43 and 41: the built-in defaults are today's (the recipe defaults-2026-12) changed only as
    studies/defaults-new.md says of the committed rows (:func:`_defaults_from_verdicts`). A change of the defaults
    the committed verdicts do not carry fails here."""
    from hierhead.engine.recipes import resolve
    from hierhead.study.plan import _get

    expected, verdicts, _ = _defaults_from_verdicts()
    defaults = resolve(None)
    assert {key: _get(defaults, key) for key in expected} == expected, verdicts


def test_the_cards_ssdlite_recipe_follows_engine_speeds_verdict_as_recipes_md_says():
    """Issue 41: cards-ssdlite takes the engine-speed arm that enters the defaults, each setting as the same change
    to its own value (studies/recipes.md); none entering, its schedule stays the pinned one's."""
    from hierhead.engine.recipes import resolve
    from hierhead.study.plan import _get

    _, verdicts, entering = _defaults_from_verdicts()
    pinned, recipe = resolve("cards-ssdlite-2026-12"), resolve("cards-ssdlite")
    expected = {"image_size": entering.get("image_size", _get(pinned, "image_size")),
                "max_steps": round(_get(pinned, "max_steps") * entering.get("max_steps", 600) / 600),
                "frozen_stages": entering.get("frozen_stages", _get(pinned, "frozen_stages"))}
    assert {key: _get(recipe, key) for key in expected} == expected, verdicts
