from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from classwise.errors import ConfigError
from classwise.evaluate import (
    AttackRecord,
    ClassAccuracy,
    EvalSpec,
    Evaluation,
    Spread,
    confusion_matrix,
    evaluate,
    format_table,
    read_evaluation,
    wilson_interval,
    write_evaluation,
)
from classwise.evaluate.checks import sanity_warnings
from tests.test_attacks import Linear, as_split

CLASSES = ("a", "b", "c")
FGSM = EvalSpec(attacks=("fgsm",), eps=(0.05,))


def _data(n: int = 90, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 2, 2, generator=g)
    logits = Linear()(x)
    y = logits.argmax(1).detach()
    y[::7] = (y[::7] + 1) % 3  # some clean errors
    return as_split(x, y)


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(np.array([5, 0, 10]), np.array([10, 10, 10]))
    np.testing.assert_allclose(low, [0.2366, 0.0, 0.7225], atol=1e-4)
    np.testing.assert_allclose(high, [0.7634, 0.2775, 1.0], atol=1e-4)


def test_spread_and_confusion_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    correct = np.array([1, 1, 1, 0, 0, 0, 0, 1], dtype=bool)
    acc = ClassAccuracy.from_flags(correct, labels, 3)
    assert acc.accuracy.tolist() == [1.0, 0.5, 0.25]
    s = Spread.of(acc, CLASSES)
    assert (s.worst_class, s.best_class) == ("c", "a")
    assert s.mean == pytest.approx(1.75 / 3) and s.gap == pytest.approx(0.75) and s.overall == pytest.approx(0.5)
    assert s.std == pytest.approx(np.std([1.0, 0.5, 0.25])) and s.cv == pytest.approx(s.std / s.mean)
    m = confusion_matrix(labels, np.array([0, 0, 1, 2, 0, 1, 1, 2]), 3)
    assert m.tolist() == [[2, 0, 0], [0, 1, 1], [1, 2, 1]]


def test_evaluate_per_class_invariants() -> None:
    model = Linear().train()
    spec = EvalSpec.from_dict({"attacks": ["fgsm", {"name": "pgd", "args": {"steps": 10}}], "eps": [0.02, 0.1]})
    ev = evaluate(model, _data(), spec, class_names=CLASSES, progress=False)
    assert model.training and all(p.requires_grad for p in model.parameters())  # mode restored
    clean = ev.clean()
    for r in (*ev.records, *ev.worst):
        assert bool((ev.robust(r).correct <= clean.correct).all())
        assert r.perturbation.max() <= r.eps + 1e-6
        assert not r.robust[~ev.clean_correct].any()  # clean errors are never robust
        assert set(r.broken_by[r.robust]) == {""}
    for w in ev.worst:  # worst = every attack at that ε left it robust
        together = np.logical_and.reduce([r.robust for r in ev.records if r.eps == w.eps])
        np.testing.assert_array_equal(w.robust, together)
    # robust accuracy falls with ε, and a sample's adversarial prediction differs from its label iff broken
    assert ev.worst[1].robust.sum() <= ev.worst[0].robust.sum()
    broken = ev.clean_correct & ~ev.worst[1].robust
    assert bool((ev.worst[1].adv_pred[broken] != ev.labels[broken]).all())
    assert "worst@0.1" in format_table(ev)
    back = read_evaluation(write_evaluation(ev, Path(tempfile.mkdtemp()))[0].parent)
    for a, b in zip((*ev.records, *ev.worst), (*back.records, *back.worst), strict=True):
        assert (a.attack, a.eps, a.norm) == (b.attack, b.eps, b.norm)
        np.testing.assert_array_equal(a.robust, b.robust)
        np.testing.assert_array_equal(a.broken_by, b.broken_by)
        np.testing.assert_allclose(a.perturbation, b.perturbation)


def test_cascade_gives_the_same_worst_case_flags() -> None:
    data, model = _data(150), Linear()
    spec = EvalSpec(attacks=("fgsm", {"name": "pgd", "args": {"steps": 8, "random_start": False}}), eps=(0.05,))
    full = evaluate(model, data, spec, class_names=CLASSES, progress=False)
    fast = evaluate(model, data, replace(spec, cascade=True), class_names=CLASSES, progress=False)
    np.testing.assert_array_equal(full.worst[0].robust, fast.worst[0].robust)
    np.testing.assert_array_equal(full.worst[0].adv_pred, fast.worst[0].adv_pred)
    assert fast.records[-1].attack == "fgsm→pgd"


def test_two_variants_of_one_attack_at_one_eps_are_both_kept_with_their_worst_case(tmp_path: Path) -> None:
    """``pgd`` and ``{name: pgd, args: {steps: 20}}`` at one ε: two records named by their variant,
    the worst case over both, and both in every table and stored file; the same attack twice is refused."""
    from classwise.evaluate import per_class_rows

    spec = EvalSpec.from_dict(
        {"attacks": [{"name": "pgd", "args": {"steps": 1}}, {"name": "pgd", "args": {"steps": 20}}], "eps": [0.05]}
    )
    ev = evaluate(Linear(), _data(150), spec, class_names=CLASSES, progress=False)
    names = [r.attack for r in ev.records]
    assert len(set(names)) == 2 and all(n.startswith("pgd(") for n in names) and "steps=20" in names[1]
    together = ev.records[0].robust & ev.records[1].robust
    np.testing.assert_array_equal(ev.worst[0].robust, together)
    table = format_table(ev)
    assert "worst@0.05" in table and all(f"{n}@0.05" in table for n in names)
    metrics = {r["metric"] for r in per_class_rows(ev)}
    assert {f"{n}@0.05" for n in names} | {"worst@0.05", "clean"} <= metrics
    back = read_evaluation(write_evaluation(ev, tmp_path / "e")[0].parent)
    assert [r.attack for r in back.records] == names
    with pytest.raises(ConfigError, match="given more than once"):
        EvalSpec.from_dict({"attacks": ["pgd", "pgd"]})


def test_eps_zero_robust_equals_clean() -> None:
    ev = evaluate(Linear(), _data(), EvalSpec(eps=(0.0,)), class_names=CLASSES, progress=False)
    np.testing.assert_array_equal(ev.worst[0].robust, ev.clean_correct)


def test_n_per_class_takes_the_first_images_of_each_class() -> None:
    data = _data()
    spec = EvalSpec(attacks=("fgsm",), eps=(0.01,), n_per_class=5)
    ev = evaluate(Linear(), data, spec, class_names=CLASSES, progress=False)
    available = np.bincount(data.labels.numpy(), minlength=3)
    assert ev.clean().n.tolist() == np.minimum(available, 5).tolist()
    np.testing.assert_array_equal(ev.labels, data.labels.numpy()[ev.index])


def test_model_returning_probabilities_is_refused() -> None:
    model = nn.Sequential(Linear(), nn.Softmax(dim=1))
    with pytest.raises(ConfigError, match="probabilities"):
        evaluate(model, _data(), FGSM, class_names=CLASSES, progress=False)


def test_zero_gradients_warn_of_masking() -> None:
    class Rounding(nn.Module):  # gradient of round() is zero everywhere
        def __init__(self) -> None:
            super().__init__()
            self.inner = Linear()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(torch.round(x * 4) / 4)

    ev = evaluate(Rounding(), _data(), EvalSpec(eps=(0.03,)), class_names=CLASSES, progress=False)
    assert any("zero loss gradient" in w for w in ev.warnings)


def _fake_eval(robust_by_key: dict[tuple[str, float], list[bool]]) -> Evaluation:
    labels = np.array([0, 1, 2, 0])
    recs = tuple(
        AttackRecord(a, e, "Linf", np.array(r), labels, np.zeros(4), np.array([""] * 4))
        for (a, e), r in robust_by_key.items()
    )
    return Evaluation(CLASSES, "toy", "test", np.arange(4), labels, labels, recs, recs[:1])


def test_an_evaluation_on_some_of_its_images_keeps_just_their_outcomes() -> None:
    ev = _fake_eval({("pgd", 0.1): [True, False, True, False]})
    sub = ev.on(np.array([3, 0, 99]))  # positions in the split; 99 was never evaluated
    assert sub.index.tolist() == [0, 3] and sub.labels.tolist() == ev.labels[[0, 3]].tolist()
    assert sub.headline.robust.tolist() == [True, False] and len(sub.records[0].broken_by) == 2
    assert sub.robust(sub.headline).n.sum() == 2 and sub.analyses is None
    assert len(ev.index) == 4  # the original is untouched


def test_sanity_warnings_for_pgd_weaker_than_fgsm_and_rising_curves() -> None:
    ev = _fake_eval(
        {
            ("fgsm", 0.1): [False, False, True, True],
            ("pgd", 0.1): [True, True, True, True],
            ("pgd", 0.2): [True, True, True, True],
            ("pgd", 0.05): [False, False, False, True],
        }
    )
    warnings = sanity_warnings(ev)
    assert any("weaker than FGSM" in w for w in warnings)
    assert any("rises" in w for w in warnings)


def test_targeted_matrix_by_source_and_target() -> None:
    data = _data()
    spec = EvalSpec(attacks=({"name": "pgd", "args": {"steps": 40, "step_size": 0.05}},), eps=(1.0,), targeted="all")
    result = evaluate(Linear(), data, spec, class_names=CLASSES, progress=False).targeted
    assert result is not None
    counts = np.bincount(data.labels.numpy(), minlength=3)
    assert np.diag(result.attempts).tolist() == [0, 0, 0]
    for t in range(3):
        expect = counts.copy()
        expect[t] = 0
        assert result.attempts[:, t].tolist() == expect.tolist()
    assert (result.success <= result.attempts).all() and result.success.sum() > 0.8 * result.attempts.sum()
    single = evaluate(Linear(), data, replace(spec, targeted="c"), class_names=CLASSES, progress=False).targeted
    assert single is not None and single.attempts[:, :2].sum() == 0 and single.attempts[:, 2].sum() > 0


def test_write_evaluation_files(tmp_path: Path) -> None:
    ev = evaluate(Linear(), _data(), FGSM, class_names=CLASSES, progress=False)
    paths = write_evaluation(ev, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["analyses.json", "evaluation.json", "per_class.csv", "samples.csv"]
    payload = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert payload["summary"][0]["attack"] == "clean" and payload["summary"][0]["worst_class"] in CLASSES
    assert np.array(payload["confusion"]["clean"]).sum() == len(ev.labels)
    lines = (tmp_path / "out" / "samples.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * len(ev.labels)  # fgsm and worst records
    assert not list((tmp_path / "out").glob(".partial-*"))


def test_write_evaluation_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from classwise.evaluate import store

    ev = evaluate(Linear(), _data(), FGSM, class_names=CLASSES, progress=False)

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        write_evaluation(ev, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_evaluation_and_a_study_read_as_dataframes(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    from classwise.evaluate import per_class_rows

    ev = evaluate(Linear(), _data(), FGSM, class_names=CLASSES, progress=False)
    frame = ev.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(per_class_rows(ev))
    clean = frame[frame["metric"] == "clean"].set_index("class")["accuracy"]
    np.testing.assert_allclose(clean.loc[list(CLASSES)].to_numpy(), ev.clean().accuracy)
