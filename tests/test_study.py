from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from classwise.cli import main
from classwise.data.official import DATASETS
from classwise.errors import ClasswiseError, ConfigError
from classwise.study import STORE, Store, export, load_study, run_study
from classwise.study.spec import describe_point
from tests.conftest import REAL_DATA
from tests.synthetic import tiny, write_class_folders

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny({"method.name": "standard"})


def _study(tmp_path: Path, grid: dict, **extra: object) -> Path:
    data = str(write_class_folders(tmp_path, n=8))
    doc = {
        "name": "tiny",
        "base": tiny({"method.name": "standard", "data.dataset": data}),
        "grid": grid,
        "evaluation": {"attacks": ["fgsm", {"name": "pgd", "args": {"steps": 2}}], "eps": ["4/255"]},
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"grd": {}}, r"study.yaml.grd: unknown field"),
        ({"grid": {"learning_rate": [0.1]}}, "grid.learning_rate: unknown setting"),
        ({"grid": {"optim.learning_rate": [0.1]}}, r"run \[optim.learning_rate=0.1\]: optim.learning_rate: unknown"),
        ({"grid": {"model.args.width": 3}}, "grid.model.args.width: give a non-empty list"),
        ({"grid": {"seed": []}}, "grid.seed: give a non-empty list"),
        ({"base": {"epochz": 3}}, "base.epochz: unknown field"),
        ({"grid": {"method.name": ["pgd-at", "madry"]}}, r"run \[method.name=madry\]: .*unknown training method"),
        ({"grid": {"optim.epochs": ["many"]}}, "optim.epochs: expected a whole number, got 'many'"),
        ({"grid": {"with": [{"optim.lr": 0.1}, {"optimm.lr": 0.1}]}}, "grid.optimm.lr: unknown setting"),
        ({"evaluation": {"attacks": ["pgd"], "eps": [-1]}}, "evaluation: ε must be >= 0"),
    ],
)
def test_bad_study_files_name_the_offending_path(tmp_path: Path, doc: dict, match: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"base": TINY, **doc}))
    with pytest.raises(ConfigError, match=match):
        load_study(path)


def test_expansion_counts_hashes_and_dotted_keys(tmp_path: Path) -> None:
    together = [{"method.name": "standard"}, {"method.name": "pgd-at", "method.args.steps": 2}]
    path = _study(tmp_path, {"seed": [0, 1], "model.args.width": [4, 8], "with": together})
    study = load_study(path)
    assert len(study.runs) == 8 and len({r.run_id for r in study.runs}) == 8
    assert {r.config.model.args["width"] for r in study.runs} == {4, 8}
    assert {r.config.method.options.steps for r in study.runs if r.config.method.name == "pgd-at"} == {2}
    again = load_study(path)
    assert [r.run_id for r in again.runs] == [r.run_id for r in study.runs]


def test_a_grid_that_drops_an_option_by_switching_the_method_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _study(tmp_path, {"seed": [0, 1], "with": [{"method.name": "trades"}]})
    doc = yaml.safe_load(path.read_text())
    doc["base"]["method"] = {"name": "pgd-at", "args": {"steps": 2}}
    path.write_text(yaml.safe_dump(doc))
    with caplog.at_level("WARNING"):
        study = load_study(path)
    assert caplog.text.count("method.name=trades starts method.args afresh and drops steps=2") == 1
    assert {r.config.method.options.steps for r in study.runs} == {10}  # the warning changes nothing


def test_local_run_records_every_class_and_skips_finished_runs(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, {"seed": [0, 1]}))
    out = run_study(study, tmp_path / "s", progress=False)
    assert (out.done, out.failed, out.pending) == (2, 0, 0)
    store = Store(tmp_path / "s" / STORE)
    metrics = store.metrics()
    # clean, fgsm, pgd and worst × 3 classes × 2 runs
    assert len(metrics) == 4 * 3 * 2
    assert {m["attack"] for m in metrics} == {"clean", "fgsm", "pgd", "worst"}
    runs = store.runs()
    assert all(r["git_sha"] is None or len(r["git_sha"]) == 40 for r in runs)
    assert all(json.loads(r["versions"])["torch"] for r in runs)
    before = [(r["attempts"], r["finished"]) for r in runs]
    run_study(study, tmp_path / "s", progress=False)
    assert [(r["attempts"], r["finished"]) for r in store.runs()] == before


def test_failures_are_recorded_retried_and_do_not_stop_the_others(tmp_path: Path) -> None:
    broken = tmp_path / "MISSING" / "train" / "a"  # exists when the study is read, fails when a run reads it
    broken.mkdir(parents=True)
    (broken / "0.png").write_bytes(b"not an image")
    path = _study(tmp_path, {"data.dataset": [str(tmp_path / "MISSING"), str(tmp_path / "images")]}, retries=1)
    study = load_study(path)
    out = run_study(study, tmp_path / "s", progress=False)
    assert (out.done, out.failed) == (1, 1)
    failed = next(r for r in Store(tmp_path / "s" / STORE).runs() if r["status"] == "failed")
    assert failed["attempts"] == 2 and "Traceback" in failed["error"] and "MISSING" in failed["error"]


def test_worker_processes_take_each_run_exactly_once_sharing_the_cpu_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    study = load_study(_study(tmp_path, {"seed": [0, 1, 2]}))
    out = run_study(study, tmp_path / "s", workers=2, progress=False)
    assert out.done == 3
    assert [r["attempts"] for r in Store(tmp_path / "s" / STORE).runs()] == [1, 1, 1]
    for run in study.runs:  # 2 workers × half the threads each (measured faster: benchmarks/bench_workers.py)
        stored = json.loads((tmp_path / "s" / "runs" / run.run_id / "eval" / "evaluation.json").read_text())
        assert stored["provenance"]["device"]["threads"] == max(1, torch.get_num_threads() // 2)


def test_killed_study_resumes_and_completes_every_run_exactly_once(tmp_path: Path) -> None:
    path = _study(tmp_path, {"seed": [0, 1, 2]})
    base = yaml.safe_load(path.read_text())
    base["base"]["optim"]["epochs"] = 3
    path.write_text(yaml.safe_dump(base))
    cmd = [sys.executable, "-m", "classwise.cli", "study", "run", str(path), "--dir", str(tmp_path / "s")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "s" / STORE
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if db.exists():
            with sqlite3.connect(db, timeout=30) as con, contextlib.suppress(sqlite3.OperationalError):
                # (the table may not exist yet: the study is creating the store)
                if con.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0] >= 1:
                    os.kill(child.pid, signal.SIGKILL)
                    break
        time.sleep(0.05)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the study finished before it could be killed"
    assert main(["study", "run", str(path), "--dir", str(tmp_path / "s")]) == 0
    store = Store(db)
    assert [r["status"] for r in store.runs()] == ["done"] * 3
    assert len(store.metrics()) == 3 * 4 * 3  # no run recorded twice
    for run in load_study(path).runs:
        history = json.loads((tmp_path / "s" / "runs" / run.run_id / "history.json").read_text())
        assert [h["epoch"] for h in history] == [0, 1, 2]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_and_local_give_the_same_per_class_results(tmp_path: Path) -> None:
    import ray

    study = load_study(_study(tmp_path, {"seed": [0, 1]}))
    run_study(study, tmp_path / "local", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = run_study(study, tmp_path / "ray", executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert out.done == 2

    def table(d: str) -> list[tuple]:
        return [tuple(m.values()) for m in Store(tmp_path / d / STORE).metrics()]

    assert table("local") == table("ray")


def test_status_shows_each_grid_point_whole() -> None:
    point = {"seed": 1, "with": {"method.name": "trades", "method.args": {"steps": 3}, "balance.args": {"b": [1, 2]}}}
    assert describe_point(point) == "seed=1 method.name=trades method.args={steps: 3} balance.args={b: [1, 2]}"


def test_status_export_and_confirmation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _study(tmp_path, {"seed": [0]})
    assert main(["study", "status", str(path), "--dir", str(tmp_path / "s")]) == 0
    assert "pending 1" in capsys.readouterr().out
    assert main(["study", "export", str(path), "--dir", str(tmp_path / "s")]) == 2
    assert main(["study", "run", str(path), "--dir", str(tmp_path / "s")]) == 0
    assert main(["study", "status", str(path), "--dir", str(tmp_path / "s")]) == 0
    assert "done 1" in capsys.readouterr().out
    assert main(["study", "export", str(path), "--dir", str(tmp_path / "s"), "--out", str(tmp_path / "t.csv")]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 3 and "config.method.name" in lines[0] and "class_name" in lines[0]
    if importlib.util.find_spec("pyarrow"):
        import pyarrow.parquet as pq

        export(Store(tmp_path / "s" / STORE), tmp_path / "t.parquet", "parquet")
        assert pq.read_table(tmp_path / "t.parquet").num_rows == 12
    big = _study(tmp_path / "big", {"seed": list(range(1001))})
    assert main(["study", "run", str(big), "--dir", str(tmp_path / "big" / "s")]) == 2
    assert "pass --yes" in capsys.readouterr().err


def test_only_runs_the_given_runs_in_their_order_and_keeps_the_rest_pending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _study(tmp_path, {"seed": [0, 1, 2]})
    runs = load_study(path).runs
    base = ["study", "run", str(path), "--dir", str(tmp_path / "s")]
    assert main([*base, "--only", runs[2].run_id, runs[0].run_id, runs[2].run_id]) == 0
    assert "done 2, failed 0, pending 0 (of --only)" in capsys.readouterr().out
    rows = {r["run_id"]: r for r in Store(tmp_path / "s" / STORE).runs()}
    assert [rows[r.run_id]["status"] for r in runs] == ["done", "pending", "done"]
    assert rows[runs[2].run_id]["finished"] < rows[runs[0].run_id]["finished"]  # the order given
    assert main([*base, "--only", "nosuchrun"]) == 2  # refused before anything runs
    assert "has no run 'nosuchrun'; 'classwise study status' lists its runs by id" in capsys.readouterr().err
    assert {r["run_id"]: r["status"] for r in Store(tmp_path / "s" / STORE).runs()} == {
        i: r["status"] for i, r in rows.items()
    }
    assert main(base) == 0  # the rest, later
    assert {r["status"] for r in Store(tmp_path / "s" / STORE).runs()} == {"done"}


def test_an_edited_grid_is_the_plan_and_keeps_finished_runs(tmp_path: Path) -> None:
    runs = load_study(_study(tmp_path, {"seed": [0, 1, 2]})).runs
    store = Store(tmp_path / "s" / STORE)
    store.register(runs)
    store.claim(runs[0].run_id, "w", 1)
    store.finish(runs[0].run_id, [], {})  # seed 0 finished; seed 1 left running by a killed study
    store.claim(runs[1].run_id, "w", 1)
    store.register((runs[2],))  # the grid now holds seed 2 only
    rows = {r["run_id"]: r["status"] for r in store.runs()}
    assert rows == {runs[2].run_id: "pending", runs[0].run_id: "done"}


def test_unknown_executor_and_unreachable_ray(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, {"seed": [0]}))
    with pytest.raises(ConfigError, match="unknown executor"):
        run_study(study, tmp_path / "s", executor="slurm", progress=False)
    if importlib.util.find_spec("ray") is not None:
        with pytest.raises(ClasswiseError, match="cannot reach the Ray cluster"):
            run_study(study, tmp_path / "s2", executor="ray", address="127.0.0.1:9", progress=False)


@pytest.mark.parametrize(
    "preset", sorted((ROOT / "studies").rglob("question_*.yaml")), ids=lambda p: p.parent.name + "/" + p.stem
)
def test_presets_expand(preset: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def datasets(node: object) -> list[str]:
        if isinstance(node, list):
            return [d for item in node for d in datasets(item)]
        if not isinstance(node, dict):
            return []
        own = node.get(
            "data.dataset", (node.get("data") or {}).get("dataset") if isinstance(node.get("data"), dict) else None
        )
        own = own if isinstance(own, list) else [own] if own else []
        return own + [d for value in node.values() for d in datasets(value)]

    if any(d not in DATASETS for d in datasets(yaml.safe_load(preset.read_text()))):  # a file of the data root
        if REAL_DATA is None:
            pytest.skip("the preset reads files of the data root: set CLASSWISE_DATA (e.g. ../shared/data)")
        monkeypatch.setenv("CLASSWISE_DATA", str(REAL_DATA.resolve()))
    study = load_study(preset)
    # every grid point is its own run: no two entries resolve to the same config
    grid = yaml.safe_load(preset.read_text())["grid"]
    assert len(study.runs) == math.prod(len(v) if isinstance(v, list) else 1 for v in grid.values()) > 1
    assert "args afresh" not in caplog.text  # no grid entry loses an option by switching a piece


def test_a_second_study_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    from classwise.study.execute import exclusive

    study = load_study(_study(tmp_path, {"seed": [0]}))
    (tmp_path / "s").mkdir()
    with exclusive(tmp_path / "s"), pytest.raises(ClasswiseError, match="being run by another"):
        run_study(study, tmp_path / "s", progress=False)


def test_a_setting_added_later_keeps_the_ids_of_existing_runs() -> None:
    import hashlib
    import json

    from classwise.study import run_hash
    from classwise.train import TrainConfig

    cfg = TrainConfig().with_overrides({"monitor.precision": "fp32"})  # validation as every run before it
    before = cfg.to_dict()
    del before["monitor"]["precision"]  # the config as studies knew it before monitor.precision existed
    del before["model"]["init_from"]  # ... and before model.init_from
    del before["threat"]["norm"]  # ... and before threat.norm (L2 training)
    del before["data"]["drop_classes"]  # ... and before data.drop_classes (the class-removal intervention)
    assert run_hash(cfg) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert run_hash(cfg.with_overrides({"model.init_from": "runs/pre"})) != run_hash(cfg)
    assert run_hash(cfg.with_overrides({"data.drop_classes": ["dog"]})) != run_hash(cfg)
    assert run_hash(cfg.with_overrides({"monitor.precision": "train"})) != run_hash(cfg)
    assert run_hash(cfg.with_overrides({"threat.norm": "L2", "threat.eps": 0.5})) != run_hash(
        cfg.with_overrides({"threat.eps": 0.5})
    )


def test_the_stores_rows_are_each_runs_per_class_csv(tmp_path: Path) -> None:
    """The study store's metrics equal, row for row, what each run wrote to eval/per_class.csv."""
    import csv

    study = load_study(_study(tmp_path, {"seed": [0, 1]}))
    run_study(study, tmp_path / "s", progress=False)
    stored = Store(tmp_path / "s" / STORE).metrics()
    for run in study.runs:
        with open(tmp_path / "s" / "runs" / run.run_id / "eval" / "per_class.csv") as f:
            written = list(csv.DictReader(f))
        mine = [m for m in stored if m["run_id"] == run.run_id]
        assert len(mine) == len(written) > 0
        key = {(m["attack"], m["class_name"]): m for m in mine}
        for row in written:
            m = key[(row["attack"], row["class"])]
            assert (m["n"], m["correct"]) == (int(row["n"]), int(row["correct"]))
            for column in ("accuracy", "ci_low", "ci_high", "eps"):
                assert m[column] == pytest.approx(float(row[column])), column
            assert m["accuracy"] == pytest.approx(m["correct"] / m["n"])
            assert m["ci_low"] <= m["accuracy"] <= m["ci_high"]
