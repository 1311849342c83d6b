from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from classwise.cli import main
from classwise.report import collect, write_report
from classwise.study import load_study, run_study
from tests.synthetic import tiny, tiny_train_args, write_class_folders

ROOT = Path(__file__).resolve().parents[1]
TINY = {"optim.epochs": 2, "evaluation.attacks": [{"name": "pgd", "args": {"steps": 2}}]}


@pytest.fixture(scope="module")
def gap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gap")
    data = str(write_class_folders(tmp, n=8))
    assert main(["gap", *tiny_train_args({**TINY, "data.dataset": data}), "--out", str(tmp / "gap")]) == 0
    return tmp / "gap"


def test_gap_writes_a_report_with_every_section(gap_dir: Path) -> None:
    page = (gap_dir / "report" / "report.html").read_text()
    for heading in (
        "Per-class accuracy and robustness",
        "Mean robustness against the worst class",
        "Model: standard",
        "Model: pgd-at",
        "Why: class similarity",
    ):
        assert heading in page
    assert page.count("data:image/png;base64,") >= 8
    assert "table behind this figure" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing to fetch
    md = (gap_dir / "report" / "report.md").read_text()
    assert "| standard |" in md and "## pgd-at" in md
    data = collect(gap_dir)
    assert [m.name for m in data.models] == ["standard", "pgd-at"]


def test_report_with_boundary_distances(gap_dir: Path, tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=8))
    ckpt = str(gap_dir / "pgd-at" / "best.pt")
    args = ["evaluate", "--checkpoint", ckpt, "--dataset", data, "--steps", "2", "--boundary-per-class", "2"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    page, _ = write_report(tmp_path / "eval", tmp_path / "report")
    text = page.read_text()
    assert (
        "flips each of the first 2 evaluated images per class" in text and "distance to the decision boundary" in text
    )
    assert collect(tmp_path / "eval").models[0].adversarial is True  # the flag the checkpoint carries


def test_whether_a_model_was_adversarially_trained_is_what_its_run_stored(gap_dir: Path, tmp_path: Path) -> None:
    """A run writes the flag into its evaluation and its checkpoints, and the report reads it there:
    a method the registry does not know still reads as what its run stored, and results written
    before the flag fall back to the method names classwise had then (unknown ones: not known)."""
    import json

    from classwise.models.checkpoint import load_checkpoint

    assert [m.adversarial for m in collect(gap_dir).models] == [False, True]
    assert load_checkpoint(gap_dir / "pgd-at" / "best.pt")[1]["adversarial"] is True
    copy = tmp_path / "gap"
    for run in ("standard", "pgd-at"):
        shutil.copytree(gap_dir / run, copy / run)
    config = copy / "pgd-at" / "config.yaml"
    config.write_text(config.read_text().replace("name: pgd-at", "name: my-own-at"))
    assert [m.adversarial for m in collect(copy).models] == [False, True]
    md = write_report(copy, tmp_path / "report")[1].read_text()
    assert "adversarial training (my-own-at)" in md.splitlines()[0]
    for run in ("standard", "pgd-at"):  # as written before the flag
        path = copy / run / "eval" / "evaluation.json"
        payload = json.loads(path.read_text())
        del payload["source"]["adversarial"]
        path.write_text(json.dumps(payload))
    assert [m.adversarial for m in collect(copy).models] == [False, None]
    config.write_text(config.read_text().replace("name: my-own-at", "name: pgd-at"))
    assert [m.adversarial for m in collect(copy).models] == [False, True]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study: standard and PGD-AT, two seeds each, on synthetic images (trained once per module)."""
    tmp = tmp_path_factory.mktemp("study")
    data = str(write_class_folders(tmp, n=8))
    doc = {
        "base": tiny({"data.dataset": data}),
        "grid": {"method.name": ["standard", "pgd-at"], "seed": [0, 1]},
        "evaluation": {"attacks": ["fgsm"], "eps": [0.03]},
    }
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    run_study(load_study(path), tmp / "study", progress=False)
    return tmp / "study"


def test_study_report_has_universality_hyperparameters_and_widening(study_dir: Path, tmp_path: Path) -> None:
    page, _ = write_report(study_dir, tmp_path / "out")
    text = page.read_text()
    assert "Universality" in text and "Robustness against each hyper-parameter" in text
    assert "Does adversarial training widen the gap?" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
    "--enable-logging=stderr",
    "--v=0",
]


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (CI installs Debian's chromium)")
@pytest.mark.parametrize(("width", "height", "name"), [(1200, 3000, "desktop"), (390, 2400, "phone")])
def test_report_opens_in_a_real_browser(gap_dir: Path, tmp_path: Path, width: int, height: int, name: str) -> None:
    browser = _chromium()
    assert browser is not None
    page = (gap_dir / "report" / "report.html").resolve()
    profile = ["--user-data-dir=" + str(tmp_path / "profile"), f"--window-size={width},{height}"]
    dom = subprocess.run(
        [browser, *FLAGS, *profile, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    figures = re.search(r'data-figures="([^"]+)"', dom.stdout)
    assert figures is not None, dom.stderr[-2000:]
    n = page.read_text().count("<img ")
    assert figures.group(1) == f"ok:{n}", figures.group(1)  # every figure decoded and laid out
    body = dom.stdout.split("<body", 1)[1].split(">", 1)[1]
    assert body.lstrip().startswith('<h1 class="headline">')  # the finding is the first text
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "rror" in line], console
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / f"report-{name}.png"
    subprocess.run(
        [browser, *FLAGS, *profile, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def test_the_headline_states_the_stored_numbers(gap_dir: Path) -> None:
    from classwise.evaluate import Spread, read_evaluation

    standard, adversarial = read_evaluation(gap_dir / "standard" / "eval"), read_evaluation(gap_dir / "pgd-at" / "eval")
    names = adversarial.class_names
    before, after = Spread.of(standard.clean(), names), Spread.of(adversarial.clean(), names)
    robust = adversarial.robust(adversarial.headline)
    r = Spread.of(robust, names)
    page = (gap_dir / "report" / "report.html").read_text()
    first = re.search(r'<h1 class="headline">(.*?)</h1>', page, re.S)
    assert first is not None
    text = first.group(1)
    assert f"{100 * before.std:.1f} → {100 * after.std:.1f}" in text
    shown = round(100 * before.std, 1), round(100 * after.std, 1)  # the headline compares them as printed
    verb = "widens" if shown[1] > shown[0] else "narrows" if shown[1] < shown[0] else "leaves the gap as it was"
    assert f"adversarial training (pgd-at) {verb}" in text
    assert f"while the mean is {100 * r.mean:.1f}%" in text
    if len(r.worst_classes) == 1:
        k = names.index(r.worst_class)
        assert f"{r.worst_class} {100 * r.worst:.1f}% [{100 * robust.low[k]:.1f}, {100 * robust.high[k]:.1f}]" in text
    else:
        assert "tied at" in text
    setup = re.search(r'<p class="setup">(.*?)</p>', page, re.S)
    assert setup is not None and "resnet20" in setup.group(1) and "evaluation:" in setup.group(1)


def test_ties_for_the_worst_class_are_named_as_ties() -> None:
    import numpy as np

    from classwise.evaluate import ClassAccuracy, Spread
    from classwise.report.headline import weakest

    acc = ClassAccuracy.from_flags(np.zeros(6, dtype=bool), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert Spread.of(acc, ("a", "b", "c")).worst_classes == ("a", "b", "c")
    assert weakest(acc, ("a", "b", "c")) == "all 3 classes tied at 0.0%"
    two = ClassAccuracy.from_flags(np.array([0, 1, 0, 0, 1, 1], dtype=bool), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert weakest(two, ("a", "b", "c")) == "b 0.0% [0.0, 65.8]"
    pair = ClassAccuracy.from_flags(np.array([0, 0, 0, 0, 1, 1], dtype=bool), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert weakest(pair, ("a", "b", "c")) == "a and b tied at 0.0%"


def _per_class(run: Path) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(class, metric) -> (accuracy, low, high) from a run's stored per_class.csv."""
    import csv

    with open(run / "eval" / "per_class.csv") as f:
        return {
            (r["class"], r["attack"]): (float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"]))
            for r in csv.DictReader(f)
        }


def test_the_pages_numbers_are_the_stored_evaluations(gap_dir: Path) -> None:
    """Every per-class number of the HTML page and the Markdown summary equals the stored evaluation
    (per_class.csv): the accuracy, and on the page its Wilson interval."""
    page = (gap_dir / "report" / "report.html").read_text()
    md = (gap_dir / "report" / "report.md").read_text()
    for model in ("standard", "pgd-at"):
        stored = _per_class(gap_dir / model)
        section = md.split(f"## {model}\n", 1)[1].split("\n## ", 1)[0]
        rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
        classes = sorted({c for c, _ in stored})
        assert classes and all(c in rows for c in classes)
        for c in classes:
            clean, robust = stored[(c, "clean")], stored[(c, "pgd")]
            cells = [cell.strip() for cell in rows[c].strip("|").split("|")]
            assert cells[2:4] == [f"{100 * clean[0]:.1f}", f"{100 * robust[0]:.1f}"], (model, c)
            for acc, low, high in (clean, robust):
                assert f"{100 * acc:.1f} ({100 * low:.0f}-{100 * high:.0f})" in page, (model, c)


HASH = re.compile(r"\b[0-9a-f]{12}\b")


def test_a_study_reads_the_same_in_every_form_and_by_its_settings(study_dir: Path, tmp_path: Path) -> None:
    """The live study folder, its committed snapshot and the bare folder of its runs give one page;
    runs are named by the settings they vary, seeds grouped into one row per setting."""
    assert main(["snapshot", str(study_dir), "--out", str(tmp_path / "shared" / "study")]) == 0
    pages = []
    for form in (study_dir, tmp_path / "shared" / "study", tmp_path / "shared" / "study" / "runs"):
        page, md = write_report(form, tmp_path / "out" / str(len(pages)))
        pages.append((page.read_text(), md.read_text()))
    assert pages[0] == pages[1] == pages[2]
    html, md = pages[0]
    first_screen = html.split("<h2>", 2)[:2]  # the headline, the setup line and the summary table
    assert not HASH.search("".join(first_screen)), first_screen
    rows = [line for line in md.splitlines() if line.startswith("| pgd-at |") or line.startswith("| standard |")]
    assert len(rows) == 2 and all("| 0, 1 |" in r for r in rows)  # one row per setting, its seeds together
    assert "against standard" in md.splitlines()[0]  # the headline is the study's contrast
    assert "Universality" in html and "Per-class robustness of each setting" in html
    if importlib.util.find_spec("pandas") is not None:  # the same study, from Python, as a DataFrame
        from classwise.study import study_frame

        frame = study_frame(study_dir)
        assert frame["run_id"].nunique() == 4 and set(frame["grid.method.name"]) == {"standard", "pgd-at"}


def test_labels_of_many_settings_never_overlap_and_the_rest_are_left_to_the_table() -> None:
    import numpy as np

    from classwise.report import figures

    rng = np.random.default_rng(0)
    mean, worst = rng.uniform(0.3, 0.4, 100), rng.uniform(0.05, 0.2, 100)
    spread = np.stack([np.stack([mean - 0.01, mean + 0.01], 1), np.stack([worst - 0.01, worst + 0.01], 1)], 1)
    png, shown = figures.setting_scatter(mean, worst, spread, [f"method {i} + technique {i}" for i in range(100)])
    assert png[:4] == b"\x89PNG" and 0 < sum(shown) < 100
    few = figures.setting_scatter(mean[:3] * [1, 1.3, 1.6], worst[:3] * [1, 1.5, 2], spread[:3], ["a", "b", "c"])[1]
    assert all(few)  # three settings far apart: every label is drawn


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (CI installs Debian's chromium)")
@pytest.mark.parametrize(("width", "height"), [(1200, 3000), (390, 2400)])
def test_a_committed_study_page_opens_in_a_real_browser_named_by_settings(
    tmp_path: Path, width: int, height: int
) -> None:
    study = ROOT / "results" / "study" / "question-c"
    page, _ = write_report(study, tmp_path / "out")
    assert page.stat().st_size < 1_500_000  # a page a person opens comfortably (36 runs)
    browser = _chromium()
    assert browser is not None
    profile = ["--user-data-dir=" + str(tmp_path / "profile"), f"--window-size={width},{height}"]
    dom = subprocess.run(
        [browser, *FLAGS, *profile, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    figures_state = re.search(r'data-figures="([^"]+)"', dom.stdout)
    assert figures_state is not None and figures_state.group(1).startswith("ok:"), dom.stderr[-2000:]
    body = dom.stdout.split("<body", 1)[1].split(">", 1)[1]
    first_screen = body.split("<h2>", 2)[:2]
    assert "trades + dafa" in "".join(first_screen) and not HASH.search("".join(first_screen))


def test_a_run_history_reads_back_typed(tmp_path: Path) -> None:
    """history.json as the loop writes it becomes typed epochs; what a method adds is kept."""
    import json

    from classwise.errors import ClasswiseError
    from classwise.history import load_history

    folder = Path(__file__).resolve().parents[1] / "results" / "study" / "l2-fashion-mnist" / "runs" / "c3307d9e719c"
    raw = json.loads((folder / "history.json").read_text())
    epochs = load_history(folder / "history.json")
    assert [e.epoch for e in epochs] == [r["epoch"] for r in raw]
    last = epochs[-1]
    assert last.val is not None and last.val.robust is not None and len(last.val.robust) == 10
    assert last.val.robust_mean == raw[-1]["val"]["robust_mean"] and last.seconds == raw[-1]["seconds"]
    assert last.val.clean_worst_class == raw[-1]["val"]["clean_worst_class"]
    odd = [{**raw[0], "co_pgd_acc": 0.4, "catastrophic_overfitting": True}]
    (tmp_path / "history.json").write_text(json.dumps(odd))
    assert load_history(tmp_path / "history.json")[0].extra == {"co_pgd_acc": 0.4, "catastrophic_overfitting": True}
    for bad in ("{not json", '{"epoch": 0}', "[1, 2]"):
        (tmp_path / "history.json").write_text(bad)
        with pytest.raises(ClasswiseError, match="is not a run history"):
            load_history(tmp_path / "history.json")


def test_a_setting_with_one_seed_shows_its_runs_wilson_interval_not_nothing() -> None:
    """With one run there is no interval over seeds; the run's own interval over its images is shown."""
    from classwise.report.settings import group_settings, summary_rows

    models = collect(ROOT / "results" / "study" / "l2-fashion-mnist").models
    rows = {row[0]: row for row in summary_rows(group_settings(models))}
    trades = next(m for m in models if m.config["method"]["name"] == "trades")
    rob = trades.evaluation.robust(trades.headline)
    k = int(rob.accuracy.argmin())
    assert rows["trades"][4] == f"{100 * rob.accuracy[k]:.1f} [{100 * rob.low[k]:.1f}, {100 * rob.high[k]:.1f}]"
    assert all("not resolved" not in str(cell) for row in rows.values() for cell in row)


def test_a_run_evaluated_at_several_eps_leads_with_the_eps_it_was_trained_for() -> None:
    """question-a-mnist's Fashion-MNIST runs train at ε 0.1 and are attacked at 0.05, 0.1 and 0.2:
    their tables lead with 0.1, the dataset's ε; without a config (an outside model) the largest ε."""
    from dataclasses import replace

    models = collect(ROOT / "results" / "study" / "question-a-mnist").models
    fashion = next(m for m in models if m.config["data"]["dataset"] == "fashion-mnist")
    assert sorted({round(r.eps, 4) for r in fashion.evaluation.worst}) == [0.05, 0.1, 0.2]
    assert fashion.headline.eps == pytest.approx(0.1)
    assert fashion.headline is next(r for r in fashion.evaluation.worst if r.eps == pytest.approx(0.1))
    assert replace(fashion, config={}).headline.eps == pytest.approx(0.2)
    other_norm = {**fashion.config, "threat": {**fashion.config["threat"], "norm": "L2"}}
    assert replace(fashion, config=other_norm).headline.eps == pytest.approx(0.2)  # never measured: the largest
    assert replace(fashion, config={"threat": {"eps": "a lot"}}).headline.eps == pytest.approx(0.2)  # unreadable


def test_a_validation_is_written_as_it_reads_back() -> None:
    """The loop stores each validation through Validation.to_dict: every committed record of a run
    that validated robustness, one that averaged weights (CFA) and one that weighed by the loss
    (WAT) comes back key for key, in order, and what was not measured is left out."""
    import json

    from classwise.history import Validation

    finetune = ROOT / "results" / "study" / "question-c-finetune" / "runs"
    paths = [finetune / run / "history.json" for run in ("1f6e68e6a5af", "82415a50e3eb", "a697e23a2c73")]
    paths.append(ROOT / "results" / "study" / "question-a-mnist" / "runs" / "4787647a49fb" / "history.json")
    seen: set[str] = set()
    for path in paths:
        for record in json.loads(path.read_text()):
            if "val" in record:
                written = Validation.from_dict(record["val"]).to_dict()
                assert written == record["val"] and list(written) == list(record["val"])
                seen |= set(written)
    assert {"weights_averaged", "method_loss", "robust"} <= seen
    assert set(Validation((0.5, 1.0), 0.75, 0.5, "a").to_dict()) == {
        "clean",
        "clean_mean",
        "clean_worst",
        "clean_worst_class",
    }
