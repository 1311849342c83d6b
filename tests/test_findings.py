"""docs/findings.md is generated from the committed results, and says what they say."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classwise.cli import main
from classwise.evaluate import Spread, read_evaluation
from studies.findings import write_findings
from studies.findings.__main__ import main as findings
from studies.findings.anchors import ANCHORS

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "results" / "paper-scale").glob("*"))


def snapshot_then_findings(study: Path, results: Path, out: Path) -> int:
    """The study's update as its file header says: ``classwise snapshot`` into results, then the page."""
    return main(["snapshot", str(study), "--out", str(results / "study" / study.name)]) or findings(
        ["--results", str(results), "--out", str(out)]
    )


def test_committed_findings_are_what_the_generator_writes(tmp_path: Path) -> None:
    out = write_findings(ROOT / "results", tmp_path / "findings.md")
    assert out.read_text() == (ROOT / "docs" / "findings.md").read_text(), "run: python -m studies.findings"
    for folder in PAPER:  # one figure per device session, so two sessions do not overwrite each other's
        assert (tmp_path / "figures" / f"paper-scale-{folder.name}-per-class.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not PAPER, reason="no paper-scale results committed")
@pytest.mark.parametrize("folder", PAPER, ids=[p.name for p in PAPER])
def test_paper_scale_numbers_come_from_the_stored_evaluations(folder: Path, tmp_path: Path) -> None:
    text = write_findings(ROOT / "results", tmp_path / "findings.md").read_text()
    section = text.split(f"results in `results/paper-scale/{folder.name}`", 1)[1].split("\n## ", 1)[0]
    ev = read_evaluation(folder / "pgd-at-preact18" / "eval")
    pgd = Spread.of(ev.robust(ev.headline), ev.class_names)
    assert "| pgd-at | " in section and f"| {100 * pgd.overall:.1f} [" in section
    assert f"{pgd.worst_class} {100 * pgd.worst:.1f} [" in section
    # the verdict reads the largest AutoAttack evaluation of the run's checkpoint
    evaluations = [read_evaluation(p) for p in folder.iterdir() if p.name.startswith("aa-pgd-at")]
    aa = max(evaluations, key=lambda e: int(e.clean().n.sum()))
    s = Spread.of(aa.robust(aa.headline), aa.class_names)
    dm, dw = 100 * s.mean - ANCHORS["pgd-at"].robust_mean, 100 * s.worst - ANCHORS["pgd-at"].robust_worst
    verdict = section.split("- pgd-at: AutoAttack", 1)[1].splitlines()[0]
    assert f"mean {100 * s.mean:.1f} vs" in verdict
    assert ("met." if max(abs(dm), abs(dw)) <= 3 else "**not met**") in verdict
    if max(abs(dm), abs(dw)) > 3:
        assert f"mean {'within' if abs(dm) <= 3 else 'outside'}, worst class " in verdict


@pytest.mark.skipif(not PAPER, reason="no paper-scale results committed")
def test_a_figure_the_page_no_longer_shows_is_removed_and_nothing_else(tmp_path: Path) -> None:
    import shutil

    results, docs = tmp_path / "results", tmp_path / "docs"
    shutil.copytree(PAPER[0], results / "paper-scale" / "gpu-old")
    write_findings(results, docs / "findings.md")
    figures = docs / "figures"
    assert (figures / "paper-scale-gpu-old-per-class.png").exists()
    (figures / "mine.png").write_bytes(b"kept")  # not the page's: never touched
    listing = json.loads((figures / ".findings-figures.json").read_text())
    # a hostile list may name files outside the folder, or files that are no figures
    (figures / ".findings-figures.json").write_text(json.dumps([*listing, "../findings.md", "/etc/passwd", 3]))
    (results / "paper-scale" / "gpu-old").rename(results / "paper-scale" / "gpu-new")
    write_findings(results, docs / "findings.md")
    assert sorted(p.name for p in figures.glob("*.png")) == ["mine.png", "paper-scale-gpu-new-per-class.png"]
    assert "gpu-new" in (docs / "findings.md").read_text()
    assert json.loads((figures / ".findings-figures.json").read_text()) == ["paper-scale-gpu-new-per-class.png"]


def test_findings_without_results_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert findings(["--results", str(tmp_path), "--out", str(tmp_path / "f.md")]) == 2
    assert "holds no results yet" in capsys.readouterr().err
    assert not (tmp_path / "f.md").exists()


@pytest.mark.usefixtures("tiny_models_count")
def test_a_study_snapshot_reads_back_the_same_and_answers_from_it(tmp_path: Path) -> None:
    from classwise.evaluate import read_evaluation
    from classwise.study import load_study, run_study
    from tests.test_study import _study

    study = load_study(_study(tmp_path, {"method.name": ["standard", "pgd-at"], "seed": [0, 1]}))
    run_study(study, tmp_path / "s", progress=False)
    results = tmp_path / "results"
    assert snapshot_then_findings(tmp_path / "s", results, tmp_path / "f.md") == 0
    for run in study.runs:
        copied = read_evaluation(results / "study" / "s" / "runs" / run.run_id / "eval")
        original = read_evaluation(tmp_path / "s" / "runs" / run.run_id / "eval")
        assert not (results / "study" / "s" / "runs" / run.run_id / "eval" / "samples.csv").exists()  # gzipped
        assert (copied.worst[0].robust == original.worst[0].robust).all()
        assert (copied.clean_pred == original.clean_pred).all()
    text = (tmp_path / "f.md").read_text()
    assert "4 of 4 planned runs have finished" in text
    # the paired widening row: 2 pairs (standard vs pgd-at with the same seed), a t-interval over them
    lines = text.splitlines()
    header = (
        "| dataset, adversarial method | pairs | std across classes | max − min | worst class | mean "
        "| CV of per-class error (no unit) |"
    )
    row = lines[lines.index(header) + 2]
    # each of the 5 cells has an interval, or says "not resolved" where both pairs gave the same difference
    assert row.startswith("| images, pgd-at | 2 | ") and row.count("[") + row.count("(not resolved)") == 5
    assert (tmp_path / "figures").is_dir()
    # a second snapshot keeps what was copied and rewrites the same page
    before = (tmp_path / "f.md").read_text()
    # a run whose training collapsed (validation at chance) is named and left out of the answers
    collapsed = results / "study" / "s" / "runs" / study.runs[0].run_id / "history.json"
    original = collapsed.read_text()
    history = json.loads(original)
    last = history[-1]
    rose_then_fell = [{**last, "val": {**last["val"], "clean_mean": v}} for v in (0.9, 0.2)]
    collapsed.write_text(json.dumps(rose_then_fell))
    write_findings(results, tmp_path / "g.md")
    text = (tmp_path / "g.md").read_text()
    assert f"diverged (validation clean accuracy fell back to chance): `{study.runs[0].run_id}`" in text
    assert "| images, pgd-at | 1 | " in text  # the widening table lost the collapsed run's pair
    collapsed.write_text(original)
    assert snapshot_then_findings(tmp_path / "s", results, tmp_path / "f.md") == 0
    assert (tmp_path / "f.md").read_text() == before


def test_a_run_that_never_trained_is_named_and_left_out_of_every_claim() -> None:
    from studies.findings.study_answers import snapshot_runs, study_section

    folder = ROOT / "results" / "study" / "question-a"
    finished, runs, _ = snapshot_runs(folder)
    never = {r.model.name: r.never_trained for r in finished if r.never_trained}
    # the Fashion-MNIST small_cnn PGD-AT run at ε 0.2 that predicts one class for every test image
    assert never.get("8ad92d1ca95a", "").startswith("constant prediction: Sandal for 100%")
    assert not {r.model.name for r in runs} & set(never)
    assert all(r.trained for r in runs) and len(runs) < len(finished)
    text, _ = study_section(folder)
    assert "Left out because the model never trained" in text and "`8ad92d1ca95a` (Fashion-MNIST" in text


@pytest.mark.usefixtures("tiny_models_count")
def test_a_study_continued_in_a_fresh_folder_keeps_the_runs_an_earlier_snapshot_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from classwise.study import load_study, run_study
    from tests.test_study import _study

    study = load_study(_study(tmp_path, {"seed": [0, 1]}))
    first, second = (r.run_id for r in study.runs)
    run_study(study, tmp_path / "s", progress=False, only=[first])
    results = tmp_path / "results"
    args = (tmp_path / "s", results, tmp_path / "f.md")
    assert snapshot_then_findings(*args) == 0
    assert "\n### The answers so far\n" in (tmp_path / "f.md").read_text()  # one of two planned runs: not final
    # the study folder is lost (a new machine); the study goes on in a fresh one with the other run
    (tmp_path / "s").rename(tmp_path / "lost")
    run_study(study, tmp_path / "s", progress=False, only=[second])
    for _ in range(2):  # snapshotting again as the study goes on lists each run once
        assert snapshot_then_findings(*args) == 0
        table = [(e["run_id"], e["status"]) for e in json.loads((results / "study" / "s" / "runs.json").read_text())]
        assert sorted(table) == sorted([(first, "done"), (second, "done")])
    assert "2 of 2 planned runs have finished" in (tmp_path / "f.md").read_text()
    assert "\n### The answers\n" in (tmp_path / "f.md").read_text()  # every planned run finished: final
    # the grid is edited to drop seed 0 and the study goes on in another fresh folder: the earlier run stays
    # in the results, marked as one the grid no longer plans, and the page does not count it as planned
    (tmp_path / "s").rename(tmp_path / "lost again")
    edited = load_study(_study(tmp_path, {"seed": [1]}))
    assert [r.run_id for r in edited.runs] == [second]
    run_study(edited, tmp_path / "s", progress=False)
    assert snapshot_then_findings(*args) == 0
    table = json.loads((results / "study" / "s" / "runs.json").read_text())
    assert {e["run_id"]: e.get("planned", True) for e in table} == {first: False, second: True}
    page = (tmp_path / "f.md").read_text()
    assert "1 of 1 planned runs have finished" in page
    assert "with them 1 finished run of an earlier version of the grid, which the current grid no longer plans" in page
    # a table that is not one is refused with what to do, and is left as it was
    (results / "study" / "s" / "runs.json").write_text('{"run_id": 3}')
    assert snapshot_then_findings(*args) == 2
    assert "is not a runs table written by classwise snapshot" in capsys.readouterr().err
    assert (results / "study" / "s" / "runs.json").read_text() == '{"run_id": 3}'
    # nor one whose run ids name folders outside the snapshot, when the page is written from it
    hostile = json.dumps([{"run_id": "../../lost", "status": "done", "overrides": {}}])
    (results / "study" / "s" / "runs.json").write_text(hostile)
    assert findings(["--results", str(results), "--out", str(tmp_path / "f.md")]) == 2
    assert "a run_id of letters and digits" in capsys.readouterr().err


def test_a_snapshot_of_a_folder_that_is_no_study_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["snapshot", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "is neither a study folder" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_recipe_run_that_never_finished_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run").mkdir()
    assert main(["snapshot", str(tmp_path / "run"), "--out", str(tmp_path / "r" / "recipe" / "run")]) == 2
    assert "nor a finished run (no eval/evaluation.json)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "recipe").exists()


def test_a_fine_tuned_recipe_run_is_compared_with_the_model_it_started_from(tmp_path: Path) -> None:
    import shutil

    import yaml

    recipes = tmp_path / "results" / "recipe"
    shutil.copytree(ROOT / "results" / "recipe" / "a1-resnet20-fgsm", recipes / "a1")
    shutil.copytree(recipes / "a1", recipes / "ft")
    config = yaml.safe_load((recipes / "ft" / "config.yaml").read_text())
    config["model"]["init_from"] = "runs/recipe/a1"
    config["balance"] = {"name": "frl", "args": {"mode": "both"}}
    (recipes / "ft" / "config.yaml").write_text(yaml.safe_dump(config))
    page = write_findings(tmp_path / "results", tmp_path / "f.md").read_text()
    ev = read_evaluation(recipes / "a1" / "eval")
    robust = Spread.of(ev.robust(ev.headline), ev.class_names)
    line = next(x for x in page.splitlines() if x.startswith("- `ft`"))
    assert "fine-tuning `a1`" in line and "target" not in line.lower()  # not judged as a recipe of its own
    weakest = f"{robust.worst_class}: {100 * robust.worst:.1f} → {100 * robust.worst:.1f}"
    assert weakest in line and line.count("+0.0 [") == 10  # the same model: no class changes
    assert any(x.startswith("- `a1`: resnet20, fgsm-rs") for x in page.splitlines())
    # the model it started from, not among the recipes: said, not guessed
    shutil.rmtree(recipes / "a1")
    page = write_findings(tmp_path / "results", tmp_path / "f.md").read_text()
    assert "the model it started from is not among these recipes" in page


def test_the_committed_page_prints_no_zero_width_interval() -> None:
    """Where the seeds cannot resolve a difference (every seed equal), the page says "not resolved"
    instead of an interval such as +8.0 [+8.0, +8.0]."""
    import re

    page = (ROOT / "docs" / "findings.md").read_text()
    assert not re.findall(r"\[([+-]?\d+\.\d+), \1\]", page)  # one decimal (points) or two (ρ)
    assert "(not resolved)" in page


def test_the_weakest_class_over_runs_has_the_run_as_its_unit() -> None:
    """Recomputed from the committed runs, not through the page's code: MNIST PGD-AT's weakest class
    under attack is the mean over the runs of its per-run accuracy, with a Student-t interval over
    the runs (clipped to [0, 100]), and each ε has its own row."""
    from scipy import stats

    study = ROOT / "results" / "study" / "question-a"
    table = json.loads((study / "runs.json").read_text())
    per_run = []
    for entry in table:
        run = study / "runs" / entry["run_id"]
        if entry["status"] != "done" or not (run / "eval" / "evaluation.json").exists():
            continue
        config = (run / "config.yaml").read_text()
        if "dataset: mnist" not in config or "name: pgd-at" not in config:
            continue
        ev = read_evaluation(run / "eval")
        per_run.append(ev.robust(ev.headline).accuracy)
    acc = np.array(per_run)
    k = int(np.argmin(acc.mean(0)))
    mean = acc[:, k].mean()
    half = stats.t.ppf(0.975, len(acc) - 1) * acc[:, k].std(ddof=1) / np.sqrt(len(acc))
    low, high = max(0.0, mean - half), min(1.0, mean + half)
    expected = f"{ev.class_names[k]} {100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
    page = (ROOT / "docs" / "findings.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| MNIST | pgd-at | Linf 0.3 |"))
    assert f"| {len(acc)} |" in row and expected in row, (expected, row)
    fashion = [line for line in page.splitlines() if line.startswith("| Fashion-MNIST | pgd-at | Linf ")]
    assert len(fashion) == 2 and len({line.split(" | ")[2] for line in fashion}) == 2  # one row per ε


def test_the_techniques_against_pgd_at_are_also_judged_as_one_family() -> None:
    page = (ROOT / "docs" / "findings.md").read_text()
    assert "as one family (paired t-tests over seeds, Holm's correction, family-wise 5%)" in page


def test_an_imbalanced_training_set_is_read_beside_its_per_class_counts(tmp_path: Path) -> None:
    """Each run stores how many images of each class it trained on; where those differ (GTSRB, a
    long tail), the page sets them beside each class's accuracy, with Spearman's ρ between the two
    per run, computed from the stored results (runs that store no counts, or a balanced set: no part)."""
    from classwise import analysis
    from classwise.study import load_study, run_study
    from studies.findings.study_answers import imbalance_part, study_runs, train_counts
    from tests.test_study import _study

    grid = {"method.name": ["standard", "pgd-at"], "data.imbalance_ratio": [3.0]}
    study = load_study(_study(tmp_path, grid))
    run_study(study, tmp_path / "s", progress=False)
    results = tmp_path / "results"
    assert main(["snapshot", str(tmp_path / "s"), "--out", str(results / "study" / "s")]) == 0
    runs = study_runs(results / "study" / "s")
    counts = train_counts(runs[0])
    assert counts is not None and counts.tolist() == [6, 3, 2]  # 8 a class, 2 held out, a 3:1 long tail
    (dataset,) = {r.dataset for r in runs}
    lines = imbalance_part(runs, [dataset])
    assert f"#### {dataset}: the training set is imbalanced" in lines
    assert any("trained on 2 to 6 images each" in line for line in lines)
    for r in runs:
        rho = analysis.spearman(counts, r.judged).rho
        shown = f"{rho:+.2f}" if np.isfinite(rho) else "undefined"
        kind = "robust" if r.adversarial else "clean"
        assert any(
            line.startswith(f"| {dataset} | {r.method} | ") and f"| {kind} | 1 | {shown} |" in line for line in lines
        )
    per_class = [line for line in lines if line.startswith("| ") and line.split(" | ")[1].isdigit()]
    names = runs[0].model.class_names
    assert [line.split(" | ")[:2] for line in per_class] == [["| ship", "2"], ["| dog", "3"], ["| cat", "6"]]
    assert names == ("cat", "dog", "ship")
    # a balanced training set, or runs written before the counts were stored: no such part
    balanced = [
        replace(r, model=replace(r.model, evaluation=_with_counts(r.model.evaluation, [6, 6, 6]))) for r in runs
    ]
    assert imbalance_part(balanced, [dataset]) == []
    unknown = [replace(r, model=replace(r.model, evaluation=_with_counts(r.model.evaluation, None))) for r in runs]
    assert imbalance_part(unknown, [dataset]) == []


def _with_counts(ev: Any, counts: list[int] | None) -> Any:
    dataset = {k: v for k, v in ev.source["dataset"].items() if k != "train_class_counts"}
    if counts is not None:
        dataset["train_class_counts"] = counts
    return replace(ev, source={**ev.source, "dataset": dataset})


@pytest.mark.usefixtures("tiny_models_count")
def test_the_removal_intervention_is_read_against_its_baselines_from_the_stored_samples(tmp_path: Path) -> None:
    """Question (b) by intervention: runs that leave a class out are paired with the committed run of
    the same config and seed on all classes; the weakest class, its neighbour (the class its images
    are most taken for) and the control (least) are measured on the baselines, and every number in
    the tables is the weakest class's accuracy on its own test images, read back from the samples."""
    import yaml

    from classwise.study import load_study, run_study
    from tests.test_study import _study

    results = tmp_path / "results"
    grid = {"method.name": ["pgd-at"], "seed": [0, 1]}
    baseline = load_study(_study(tmp_path, grid))
    run_study(baseline, tmp_path / "s", progress=False)
    removal = load_study(_study(tmp_path, {**grid, "data.drop_classes": [["cat"], ["dog"], ["ship"]]}))
    run_study(removal, tmp_path / "r", progress=False)
    for name in ("s", "r"):
        assert main(["snapshot", str(tmp_path / name), "--out", str(results / "study" / name)]) == 0
    write_findings(results, tmp_path / "f.md")
    text = (tmp_path / "f.md").read_text()
    assert "## Question (b) by intervention: study `r`" in text

    def ev(study: str, run_id: str) -> Any:
        return read_evaluation(results / "study" / study / "runs" / run_id / "eval")

    base = {r.config.seed: ev("s", r.run_id) for r in baseline.runs}
    judged = np.array([e.robust(e.headline).accuracy for e in base.values()])
    names = base[0].class_names
    weakest = (judged == judged.min(1, keepdims=True)).sum(0)  # a tie counts for every class tied
    target = max(range(3), key=lambda k: (weakest[k], -judged[:, k].mean()))
    taken = sum(np.bincount(e.clean_pred[e.labels == target], minlength=3) for e in base.values())
    others = sorted((k for k in range(3) if k != target), key=lambda k: -taken[k])
    neighbour, control = names[others[0]], names[others[-1]]
    assert f"The weakest class is **{names[target]}** (weakest in {weakest[target]} of 2" in text
    assert f"most often taken for **{neighbour}**" in text and f"least often for **{control}**" in text
    assert f"leave {names[target]} itself out" in text

    def acc(e: Any, robust: bool) -> float:
        k = e.class_names.index(names[target])
        flags = e.headline.robust if robust else e.clean_correct
        return float(flags[e.labels == k].mean())

    lines = text.splitlines()
    for robust in (False, True):
        what = "robust (headline attack)" if robust else "clean"
        past: list[float] = []  # per seed: the neighbour arm's change past the share the baseline took for it
        start = lines.index(
            f"resnet20, pgd-at: {names[target]}'s {what} accuracy (%; change from the baseline in brackets):"
        )
        for seed in (0, 1):
            row = next(line for line in lines[start:] if line.startswith(f"| {seed} | "))
            cells = row.strip("| ").split(" | ")[1:]  # after the seed
            arms = {tuple(r.config.data.drop_classes): ev("r", r.run_id) for r in removal.runs if r.config.seed == seed}
            before = acc(base[seed], robust)
            after = [acc(arms[(c,)], robust) for c in (neighbour, control)]
            expected = [f"{100 * before:.1f}"] + [f"{100 * a:.1f} ({100 * (a - before):+.1f})" for a in after]
            assert [cells[0], *cells[2:4]] == expected  # the baseline, then each arm (after the shares)
            e = base[seed]  # the share of the target's images the baseline took for each removed class
            pred = (e.headline.adv_pred if robust else e.clean_pred)[e.labels == target]
            shares = [100 * float((pred == names.index(c)).mean()) for c in (neighbour, control)]
            assert cells[1] == " / ".join(f"{v:.1f}" for v in shares)
            past.append(100 * (after[0] - before) - shares[0])
        summary = next(line for line in lines[start:] if line.startswith("Mean over seeds"))
        assert (
            f"{neighbour} out's change past the share the baseline took for {neighbour} is {np.mean(past):+.1f}"
            in summary
        )
    assert "**Answer" in text
    assert (tmp_path / "figures" / "study-r-removal.png").read_bytes()[:4] == b"\x89PNG"
    config = yaml.safe_load((results / "study" / "r" / "runs" / removal.runs[0].run_id / "config.yaml").read_text())
    assert config["data"]["drop_classes"]  # the runs are the removal runs, not copies of the baselines


def test_runs_evaluated_at_several_budgets_get_a_table_per_budget(tmp_path: Path) -> None:
    """Each ε of an evaluation's sweep has its own table, never pooled with another ε; each row is
    the method's per-class robust accuracy at that ε, read from the stored worst-case records."""
    from classwise.attacks import format_eps
    from classwise.study import load_study, run_study
    from studies.findings.study_answers import eps_sweep_part, study_runs
    from tests.test_study import _study

    sweep = {"attacks": [{"name": "pgd", "args": {"steps": 2}}], "eps": ["2/255", "4/255"]}
    study = load_study(_study(tmp_path, {"method.name": ["standard", "pgd-at"]}, evaluation=sweep))
    run_study(study, tmp_path / "s", progress=False)
    results = tmp_path / "results"
    assert main(["snapshot", str(tmp_path / "s"), "--out", str(results / "study" / "s")]) == 0
    runs = study_runs(results / "study" / "s")
    (dataset,) = {r.dataset for r in runs}
    lines = eps_sweep_part(runs, [dataset])
    for eps in (2 / 255, 4 / 255):
        start = lines.index(f"Linf ε = {format_eps(eps)}:")
        for r in runs:
            (record,) = [w for w in r.model.evaluation.worst if w.eps == pytest.approx(eps)]
            mean = 100 * r.model.evaluation.robust(record).accuracy.mean()
            row = next(line for line in lines[start:] if line.startswith(f"| {r.method} | 1 | "))
            assert row.split(" | ")[2] == f"{mean:.1f}"
    single = load_study(_study(tmp_path / "one", {"method.name": ["standard"]}))  # one ε: no such table
    run_study(single, tmp_path / "one" / "s", progress=False)
    assert main(["snapshot", str(tmp_path / "one" / "s"), "--out", str(tmp_path / "one" / "r" / "s")]) == 0
    one = study_runs(tmp_path / "one" / "r" / "s")
    assert len(one) == 1 and eps_sweep_part(one, [one[0].dataset]) == []


def test_a_method_calibrated_with_its_own_settings_still_pairs_with_the_other_method() -> None:
    """question-a-cifar trains standard runs 14 epochs and PGD-AT runs 15: the epochs follow the
    method, so they belong to its recipe and the two still pair by architecture, learning rate and
    seed; a learning rate set for both methods is a hyper-parameter axis and stays in the variant."""
    from studies.findings.study_answers import recipe_keys

    def entry(**together: object) -> dict[str, Any]:
        return {"overrides": {"seed": 0, "with": together}}

    entries = [
        entry(**{"model.name": "resnet20", "method.name": "standard", "optim.epochs": 14}),
        entry(**{"model.name": "resnet20", "method.name": "pgd-at", "method.args": {"steps": 2}}),
        entry(**{"model.name": "resnet20", "method.name": "standard", "optim.epochs": 14, "optim.lr": 0.1}),
        entry(**{"model.name": "resnet20", "method.name": "pgd-at", "method.args": {"steps": 2}, "optim.lr": 0.1}),
    ]
    assert recipe_keys(entries) == {"model.name", "method.name", "method.args", "optim.epochs"}
    # the method from the grid, a setting varied beside it: nothing follows the method
    grid = [
        {"overrides": {"method.name": m, "with": {"data.dataset": "fashion-mnist", **wd}}}
        for m in ("standard", "pgd-at")
        for wd in ({}, {"optim.weight_decay": 0.005})
    ]
    assert recipe_keys(grid) == frozenset()

    # the committed page pairs question-a-cifar's runs that way: recomputed from the runs' own configs
    study = ROOT / "results" / "study" / "question-a-cifar"
    runs: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    for e in json.loads((study / "runs.json").read_text()):
        run = study / "runs" / e["run_id"]
        if e["status"] != "done" or not (run / "eval" / "evaluation.json").exists():
            continue
        import yaml

        c = yaml.safe_load((run / "config.yaml").read_text())
        key = (c["model"]["name"], json.dumps(c["model"].get("args"), sort_keys=True), c["optim"]["lr"], c["seed"])
        runs.setdefault(key, {})[c["method"]["name"]] = read_evaluation(run / "eval").clean().accuracy
    pairs = [(r["standard"], r["pgd-at"]) for r in runs.values() if {"standard", "pgd-at"} <= set(r)]
    change = 100 * np.mean([a.std() - s.std() for s, a in pairs])
    page = (ROOT / "docs" / "findings.md").read_text()
    row = next(
        line
        for line in page.splitlines()
        if line.startswith("| CIFAR-10 (JPEG q75), pgd-at | ") and "[" in line and f"| {len(pairs)} |" in line
    )
    assert len(pairs) >= 2 and f"| {change:+.1f} [" in row, (change, row)


def test_every_run_of_a_study_with_targets_is_checked_against_them_from_its_stored_accuracy() -> None:
    """Recomputed from each committed run's evaluation: its clean and robust class means, and whether
    they meet anchors.yaml's study targets for its kind of training (or by how much they fall short)."""
    import yaml

    targets = yaml.safe_load((ROOT / "studies" / "findings" / "anchors.yaml").read_text())["study_targets"]
    page = (ROOT / "docs" / "findings.md").read_text().splitlines()
    checked = 0
    for study, target in targets.items():
        folder = ROOT / "results" / "study" / study
        for e in json.loads((folder / "runs.json").read_text()):
            run = folder / "runs" / e["run_id"]
            if e["status"] != "done" or not (run / "eval" / "evaluation.json").exists():
                continue
            ev = read_evaluation(run / "eval")
            method = yaml.safe_load((run / "config.yaml").read_text())["method"]["name"]
            need = target["standard" if method == "standard" else "adversarial"]
            clean, robust = 100 * ev.clean().accuracy.mean(), 100 * ev.robust(ev.headline).accuracy.mean()
            row = next(line for line in page if line.startswith(f"| `{e['run_id']}` |"))
            assert f"| {clean:.1f} (≥ {need['clean']:g}) |" in row, row
            short = [
                f"{what} short by {need[what] - value:.1f}"
                for what, value in (("clean", clean), ("robust", robust))
                if need[what] is not None and value < need[what]
            ]
            assert row.endswith(f"| **{'; '.join(short)}** |" if short else "| met |"), row
            checked += 1
    assert checked >= 8


def test_an_earlier_study_leaves_out_the_datasets_a_later_study_replaces() -> None:
    page = (ROOT / "docs" / "findings.md").read_text()
    section = page.split("## Questions (a) and (b) on real data: study `question-a`")[1].split("\n## ")[0]
    assert "Replaced, and left out of every table and answer of this section: CIFAR-10 (JPEG q75)" in section
    assert "by study `question-a-cifar`" in section and "by study `question-a-gtsrb`" in section
    assert "| CIFAR-10 (JPEG q75) | pgd-at |" not in section and "| GTSRB (32 px) |" not in section
    assert "| MNIST | pgd-at | Linf 0.3 |" in section  # the datasets nothing replaces stay


def test_a_fine_tune_study_says_which_weights_each_seed_started_from(tmp_path: Path) -> None:
    """From each run's provenance.json (the sha256 model.init_from loaded), by seed; a seed whose
    runs started from different weights is named, since its technique−control pairs are then broken,
    and seeds that start from different weights are said not to share one."""
    import dataclasses
    import shutil

    from studies.findings.closing_gap import start_part
    from studies.findings.study_answers import snapshot_runs

    folder = tmp_path / "question-c-finetune"
    shutil.copytree(ROOT / "results" / "study" / "question-c-finetune", folder)
    runs = [r for r in snapshot_runs(folder)[1] if r.seed == 0]
    assert len(runs) >= 2
    for r in runs:  # as runs stored before the digest was kept
        (r.path / "provenance.json").unlink(missing_ok=True)
    [line] = [x for x in start_part(runs) if x]
    assert "seed 0: not recorded (ran on " in line and f"; {len(runs)} runs)" in line and "Within seed" not in line
    for r in runs:
        (r.path / "provenance.json").write_text(json.dumps([{"init_from": {"sha256": "ab" * 32}}]))
    [line] = [x for x in start_part(runs) if x]
    assert f"seed 0: sha256 {'ab' * 6} (" in line and "Within seed" not in line and "seed 0: not recorded" not in line
    assert "not shown to share" not in line
    other = dataclasses.replace(runs[0], seed=1, path=tmp_path / "other")  # another seed, another start
    shutil.copytree(runs[0].path, other.path)
    (other.path / "provenance.json").write_text(json.dumps([{"init_from": {"sha256": "ef" * 32}}]))
    [line] = [x for x in start_part([*runs, other]) if x]
    assert f"seed 1: sha256 {'ef' * 6}" in line and "The seeds are not shown to share one start" in line
    (runs[0].path / "provenance.json").write_text(json.dumps([{"init_from": {"sha256": "cd" * 32}}]))
    [line] = [x for x in start_part(runs) if x]
    assert f"sha256 {'ab' * 6}, sha256 {'cd' * 6}" in line and "Within seed 0 the runs do not share" in line
    (runs[0].path / "provenance.json").write_text("{not json")  # unreadable: not recorded, not a crash
    [line] = [x for x in start_part(runs) if x]
    assert "not recorded" in line.split("seed 0:")[1]


def test_classes_a_long_tailed_baseline_never_learns_are_named_from_the_stored_runs() -> None:
    """question-c-longtail's PGD-AT baseline: the classes whose clean accuracy, the mean over its
    seeds recomputed from per_class.csv, is at most 2% are named, and no other."""
    import csv

    from studies.findings.closing_gap import floor_part, settings_of
    from studies.findings.study_answers import snapshot_runs

    folder = ROOT / "results" / "study" / "question-c-longtail"
    runs = snapshot_runs(folder)[1]
    base = [r for r in runs if (r.model.config.get("balance") or {}).get("name", "none") == "none"]
    clean: dict[str, list[float]] = {}
    for r in base:
        with open(r.path / "eval" / "per_class.csv") as f:
            for row in csv.DictReader(f):
                if row["metric"] == "clean":
                    clean.setdefault(row["class"], []).append(float(row["accuracy"]))
    expected = sorted(c for c, v in clean.items() if sum(v) / len(v) <= 0.02)
    assert expected and len(base) == 3
    [line] = [x for x in floor_part(settings_of(runs)) if x]
    named = sorted(c for c in clean if f"{c} (" in line)
    assert named == expected and line.startswith("Classes pgd-at does not learn")
