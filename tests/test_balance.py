from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from classwise.attacks import flat_norm, pgd
from classwise.cli import main
from classwise.data import BatchIterator, LabeledImages
from classwise.errors import ClasswiseError
from classwise.models import create_model, load_checkpoint
from classwise.study.snapshot import copy_run
from classwise.train import METHODS, TECHNIQUES, TrainConfig, train
from classwise.train.balance import Balance, make_technique, normalise
from tests.synthetic import tiny, tiny_train_args, write_class_folders
from tests.test_attacks import Linear

COUNTS = torch.tensor([400, 100, 25])


def _make(name: str, method: str = "pgd-at", **args: object):  # the technique, to call its roles directly
    return make_technique(name, dict(args), COUNTS, 10, METHODS.get(method)).techniques[0]


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 3, generator=g)
    y = torch.arange(12) % 3
    return logits, y, F.cross_entropy(logits, y, reduction="none")


def test_every_technique_is_registered_and_builds() -> None:
    assert set(TECHNIQUES.names()) == {
        "none",
        "reweight",
        "adaptive-reweight",
        "resample",
        "focal",
        "ldam",
        "logit-adjust",
        "class-eps",
        "frl",
        "cfa",
        "wat",
        "dafa",
    }


def test_options_are_read_as_their_annotated_types() -> None:
    # a fraction written as text is a number, as everywhere in a config; whole numbers are floats
    assert _make("focal", gamma="1/2").gamma == 0.5
    values = _make("class-eps", values=[1, "1/2", 0]).values
    assert isinstance(values, torch.Tensor) and values.tolist() == [1.0, 0.5, 0.0]


def test_uniform_weights_give_exactly_the_plain_loss() -> None:
    _, y, loss = _batch()
    for technique in (_make("none"), _make("reweight", scheme="user", weights=[1.0, 1.0, 1.0])):
        assert torch.equal(Balance(technique).reduce(loss, y, {}, 0), loss.mean())


def test_inverse_and_effective_number_weights() -> None:
    inv = _make("reweight").class_weights(0)
    assert inv is not None and inv.sum().item() == pytest.approx(3)
    assert inv[2] / inv[0] == pytest.approx(16)
    eff = _make("reweight", scheme="effective", beta=0.99).class_weights(0)
    raw = (1 - 0.99) / (1 - 0.99 ** COUNTS.double())
    torch.testing.assert_close(eff, (raw * 3 / raw.sum()).float())


def test_focal_with_gamma_zero_is_cross_entropy_and_downweights_easy_examples() -> None:
    logits, y, loss = _batch()
    torch.testing.assert_close(_make("focal", gamma=0.0).criterion(0)(logits, y), loss)
    focal = _make("focal", gamma=2.0).criterion(0)(logits, y)
    assert bool((focal <= loss + 1e-6).all())


def test_ldam_margins_scale_as_n_to_the_minus_quarter_and_defer_reweighting() -> None:
    ldam = _make("ldam", max_margin=0.5, drw_start=0.5)
    m = ldam.margins
    assert m.max().item() == pytest.approx(0.5) and m.argmax().item() == 2
    assert (m[0] / m[1]).item() == pytest.approx((400 / 100) ** -0.25)
    assert ldam.class_weights(4) is None and ldam.class_weights(5) is not None
    logits, y, _ = _batch()
    shifted = logits - F.one_hot(y, 3) * m[y][:, None]
    torch.testing.assert_close(ldam.criterion(0)(logits, y), F.cross_entropy(shifted, y, reduction="none"))


def test_logit_adjustment_loss_and_posthoc() -> None:
    logits, y, _ = _batch()
    prior = COUNTS / COUNTS.sum()
    loss = _make("logit-adjust", tau=1.0).criterion(0)(logits, y)
    torch.testing.assert_close(loss, F.cross_entropy(logits + prior.log(), y, reduction="none"))
    post = _make("logit-adjust", mode="posthoc")
    shift = post.posthoc_logit_shift()
    assert shift is not None
    torch.testing.assert_close(shift, -prior.log())
    model = create_model("small_cnn", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(model.with_logit_shift(shift)(x), model(x) + shift)


def test_balanced_resampling_draws_classes_equally_in_expectation() -> None:
    labels = torch.tensor([0] * 400 + [1] * 100 + [2] * 25)
    weights = _make("resample").sample_weights(labels)
    split = LabeledImages(torch.zeros(525, 1, 2, 2, dtype=torch.uint8), labels)
    it = BatchIterator(split, 525, sample_weights=weights)
    drawn = []
    for epoch in range(20):
        it.set_epoch(epoch)
        drawn += [labels[idx] for _, _, idx in it]
    share = torch.bincount(torch.cat(drawn), minlength=3).float() / (20 * 525)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.02)


def test_per_class_eps_bounds_each_sample_by_its_class_budget() -> None:
    budget = torch.tensor([0.02, 0.1, 0.05])
    balancer = _make("class-eps", values=budget.tolist())
    x = torch.rand(30, 3, 2, 2)
    y = torch.arange(30) % 3
    eps = balancer.class_eps(0, 8 / 255)[y]
    x_adv, _ = pgd(Linear(), x, y, eps=eps, step_size=0.05, steps=5)
    norms = flat_norm(x_adv - x, "Linf")
    assert bool((norms <= eps + 1e-6).all()) and bool((norms[y == 1] > 0.05).any())


def test_adaptive_eps_and_weights_follow_validation() -> None:
    adaptive = _make("class-eps", adaptive=True, lam=0.5)
    adaptive.observe_validation(0, torch.tensor([0.9, 0.8, 0.5]), torch.tensor([0.5, 0.4, 0.1]))
    torch.testing.assert_close(adaptive.class_eps(1, 0.1), torch.tensor([0.1, 0.09, 0.06]))
    reweight = _make("adaptive-reweight", source="robust")
    reweight.observe_validation(0, torch.tensor([0.9, 0.8, 0.5]), torch.tensor([0.5, 0.4, 0.1]))
    w = reweight.class_weights(1)
    assert w is not None and w.argmax().item() == 2 and w.sum().item() == pytest.approx(3)


def test_a_combination_gives_each_role_to_its_technique_and_keeps_both_states() -> None:
    balance = make_technique(
        "class-eps+adaptive-reweight", {"class-eps": {"lam": 0.5}}, COUNTS, 10, METHODS.get("pgd-at")
    )
    clean, robust = torch.tensor([0.9, 0.8, 0.5]), torch.tensor([0.5, 0.4, 0.1])
    balance.observe_validation(0, clean, robust)  # both observe
    torch.testing.assert_close(balance.class_eps(1, 0.1), torch.tensor([0.1, 0.09, 0.06]))
    _, y, loss = _batch()
    w = normalise(1 - robust)
    torch.testing.assert_close(balance.reduce(loss, y, {}, 1), (w[y] * loss).mean())
    again = make_technique("class-eps+adaptive-reweight", {}, COUNTS, 10, METHODS.get("pgd-at"))
    again.load(balance.state())
    torch.testing.assert_close(again.class_eps(1, 0.1), balance.class_eps(1, 0.1))
    torch.testing.assert_close(again.reduce(loss, y, {}, 1), balance.reduce(loss, y, {}, 1))


def test_frl_raises_the_weight_and_margin_of_the_class_with_the_largest_error() -> None:
    frl = _make("frl", method="trades", mode="both", tau_clean=0.0, tau_boundary=0.0)
    clean, robust = torch.tensor([0.9, 0.85, 0.5]), torch.tensor([0.6, 0.5, 0.1])
    frl.observe_validation(0, clean, robust)
    w_nat, w_bnd = frl._weights(frl.lam_clean), frl._weights(frl.lam_boundary)
    assert w_nat.argmax().item() == 2 and w_nat[2] > 1 / 3
    assert w_bnd.argmax().item() == 2
    eps = frl.class_eps(1, 0.1)
    assert eps is not None and eps.argmax().item() == 2 and eps[2] > 0.1
    _, y, loss = _batch()
    uniform = _make("frl", method="trades", mode="remargin")
    natural, boundary = loss, 2 * loss
    assert Balance(uniform).reduce(loss, y, {"natural": natural, "boundary": boundary}, 0).item() == pytest.approx(
        (natural + boundary).mean().item() / 2
    )


def test_cfa_calibrates_eps_and_beta_from_training_robustness() -> None:
    cfa = _make("cfa", "trades", lambda1=0.3, lambda2=0.5, begin=0.2)
    cfa.observe_training(0, torch.tensor([0.6, 0.4, 0.2]))
    assert cfa.class_eps(1, 0.1) is None  # before ``begin``
    torch.testing.assert_close(cfa.class_eps(2, 0.1), torch.tensor([0.09, 0.07, 0.05]))
    torch.testing.assert_close(cfa.class_beta(2, 6.0), torch.tensor([6.6, 5.4, 4.2]))
    assert cfa.average_decay(torch.tensor([0.5, 0.3, 0.1])) is None
    assert cfa.average_decay(torch.tensor([0.5, 0.3, 0.25])) == pytest.approx(0.85)
    weights = {"w": torch.tensor([1.0]), "steps": torch.tensor([3])}
    assert not cfa.fold(weights, torch.tensor([0.5, 0.3, 0.1])) and cfa.average is None  # below the threshold
    assert cfa.fold(weights, torch.tensor([0.5, 0.3, 0.25])) and cfa.fold(
        {"w": torch.tensor([2.0]), "steps": torch.tensor([4])}, torch.tensor([0.3] * 3)
    )
    assert cfa.average is not None and cfa.average["w"].item() == pytest.approx(0.85 * 1 + 0.15 * 2)
    assert cfa.average["steps"].item() == 4  # integer buffers are taken, not averaged
    assert _make("cfa", "pgd-at").ccr is False and cfa.ccr is True  # CCR calibrates TRADES' β only


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"balance.name": "reweight", "balance.args": {"scheme": "user", "weights": [1, 2]}}, "one value per class"),
        ({"balance.name": "reweight", "balance.args": {"scheme": "user", "weights": [1, -2, 1]}}, ">= 0"),
        ({"data.imbalance_ratio": 0.5}, "imbalance_ratio"),
        ({"balance.name": "frl", "method.name": "pgd-at"}, "frl reweighs the natural and boundary parts.*trades"),
        ({"balance.name": "class-eps", "method.name": "standard"}, "adversarial training only"),
        ({"balance.name": "cfa", "balance.args.ccr": True}, "CCR calibrates TRADES"),
        ({"balance.name": "cfa", "balance.args.fawa": "no"}, "balance.args.fawa: expected true or false, got 'no'"),
        ({"balance.name": "focal", "balance.args.gamma": "two"}, "balance.args.gamma: expected a number"),
        ({"balance.name": "focal", "balance.args.gamma": True}, "balance.args.gamma: expected a number, got True"),
        ({"balance.name": "frl", "method.name": "trades", "balance.args.mode": 1}, "balance.args.mode: expected"),
        ({"balance.name": "reweight", "balance.args": {"scheme": "user", "weights": "1,2,3"}}, "expected a list"),
        ({"balance.name": "class-eps", "balance.args.values": [0.1, "x", 0.1]}, r"args.values\[1\]: expected a number"),
        ({"balance.name": "class-eps+wat", "balance.args": {"wat": {"eta": "fast"}}}, "balance.args.wat.eta: expected"),
        ({"balance.name": "focal", "balance.args.alpha": 1}, r"balance.args: focal takes no option\(s\) \['alpha'\]"),
        ({"balance.name": "fokal"}, "Did you mean: focal"),
        ({"balance.name": "wat", "balance.args.eta": 0}, "eta .* must be > 0"),
        ({"balance.name": "wat", "method.name": "standard"}, "adversarial training only"),
        ({"balance.name": "dafa", "balance.args.warmup": 1.0}, r"warmup is the fraction .* in \(0, 1\)"),
        ({"balance.name": "dafa", "balance.args.lam": -1}, "lam must be >= 0"),
        ({"balance.name": "class-eps+cfa"}, "class-eps and cfa both set the attack budget"),
        ({"balance.name": "dafa+reweight"}, "both set the loss weighting"),
        ({"balance.name": "focal+reweight", "balance.args.gamma": 2}, "options under its name"),
        ({"balance.name": "focal+focal"}, "joins different techniques"),
        ({"balance.name": "focal+fokal"}, "Did you mean: focal"),
        ({"balance.name": "focal+frl"}, "frl reweighs the natural and boundary parts"),
    ],
)
def test_bad_balancing_settings_fail_before_training(tmp_path: Path, changes: dict, match: str) -> None:
    data = str(write_class_folders(tmp_path, n=6))
    with pytest.raises(ClasswiseError, match=match):
        cfg = TrainConfig.from_dict(tiny({"data.dataset": data, **changes}))
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "state.pt").exists()


def test_cfa_run_evaluates_its_weight_average_and_resumes_its_state(tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=10, as_tar=True))
    settings = {"data.dataset": data, "data.imbalance_ratio": 2.0, "method.name": "trades", "method.args.steps": 2}
    settings |= {"optim.epochs": 2, "balance.name": "cfa", "balance.args": {"fawa_threshold": 0.0, "begin": 0.0}}
    cfg = TrainConfig.from_dict(tiny(settings))
    result = train(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "fawa.pt").exists()
    source = json.loads((tmp_path / "run" / "eval" / "evaluation.json").read_text())["source"]["checkpoint"]
    assert source.endswith("fawa.pt")
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["technique"]["train_robust"] is not None and state["technique"]["average"] is not None
    assert result.test.clean().n.tolist() == [10, 10, 10]
    assert [h["val"]["weights_averaged"] for h in result.history] == [True, True]  # FAWA took both epochs
    # without FAWA (the calibration alone) no average is kept or asked about, and best.pt is evaluated
    cfg = TrainConfig.from_dict(tiny(settings | {"balance.args": {"fawa_threshold": 0.0, "fawa": False}}))
    result = train(cfg, tmp_path / "ccm", progress=False)
    assert not (tmp_path / "ccm" / "fawa.pt").exists()
    source = json.loads((tmp_path / "ccm" / "eval" / "evaluation.json").read_text())["source"]["checkpoint"]
    assert source.endswith("best.pt") and all("weights_averaged" not in h["val"] for h in result.history)
    state = torch.load(tmp_path / "ccm" / "state.pt", weights_only=True)
    assert state["technique"]["average"] is None


def test_posthoc_adjusted_checkpoint_keeps_its_shift(tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=10))
    settings = {"data.dataset": data, "data.imbalance_ratio": 4.0, "method.name": "standard"}
    settings |= {"balance.name": "logit-adjust", "balance.args.mode": "posthoc"}
    cfg = TrainConfig.from_dict(tiny(settings))
    train(cfg, tmp_path / "run", progress=False)
    model, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    assert model.logit_shift is not None and model.logit_shift.argmax().item() == 2  # the rarest class


def test_wat_hedges_over_classes_and_the_expected_loss() -> None:
    wat = _make("wat", "trades", eta=0.5)
    torch.testing.assert_close(wat.class_weights(0), torch.full((3,), 2.0))  # every expert starts at 1
    wat.observe_validation_loss(0, torch.tensor([1.0, 2.0, 3.0]))
    wat.observe_validation_loss(1, torch.tensor([1.0, 1.0, 1.0]))
    cost = torch.tensor([2.0, 3.0, 4.0, 3.0])  # summed over both validations; the last is the mean's expert
    expected = 3 * torch.exp(0.5 * cost) / torch.exp(0.5 * cost).sum()
    torch.testing.assert_close(wat.weights, expected)
    torch.testing.assert_close(wat.class_weights(2), expected[:3] + expected[3])
    _, y, loss = _batch()  # the reference's loss: sum_k w_k * (class-k losses) / B + w_K * mean loss
    reference = sum(expected[k] * loss[y == k].sum() for k in range(3)) / len(y) + expected[3] * loss.mean()
    torch.testing.assert_close(Balance(wat).reduce(loss, y, {}, 2), reference)


def test_dafa_weights_and_margins_from_a_probability_matrix() -> None:
    from classwise.train.fairness import dafa_weights

    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    # class 0 is harder than 1 and 2: it gains p_01·p_11 + p_02·p_22; class 1 is the easiest: it loses
    expected = torch.tensor([1 + 0.3 * 0.8 + 0.2 * 0.7, 1 - 0.1 * 0.5 - 0.1 * 0.7, 1 + 0.1 * 0.8 - 0.2 * 0.5])
    torch.testing.assert_close(dafa_weights(probs, 1.0), expected)
    torch.testing.assert_close(dafa_weights(probs, 0.5), 1 + 0.5 * (expected - 1))
    dafa = _make("dafa", "trades", warmup=0.3)  # 10 epochs: the probabilities of epoch 3 (index 2) set them
    dafa.observe_training_probs(1, probs)
    assert dafa.class_eps(2, 0.1) is None
    dafa.observe_training_probs(2, probs)
    torch.testing.assert_close(dafa.class_eps(3, 0.1), 0.1 * expected)
    _, y, loss = _batch()
    natural, boundary = loss, 3 * loss
    w = expected[y]
    torch.testing.assert_close(
        Balance(dafa).reduce(natural + boundary, y, {"natural": natural, "boundary": boundary}, 3),
        (w * natural + boundary).mean(),  # TRADES: only the natural part is weighted, as in the reference
    )
    at = _make("dafa", "pgd-at", warmup=0.1)
    at.observe_training_probs(0, probs)
    torch.testing.assert_close(Balance(at).reduce(loss, y, {}, 1), (w * loss).mean())


@pytest.mark.parametrize("method", ["pgd-at", "trades"])
def test_dafa_scales_each_class_attack_step_with_its_weight(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in DAFA's reference code: class i is attacked within w_i·ε with steps of w_i times the method's."""
    import importlib

    import classwise.train.methods as methods
    from classwise.train.methods import Knobs

    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    dafa = Balance(_make("dafa", method, warmup=0.1))
    assert dafa.class_step_scale(0) is None  # before the weights are set, the method's step
    dafa.techniques[0].observe_training_probs(0, probs)
    w = dafa.class_step_scale(1)
    assert w is not None
    torch.testing.assert_close(dafa.class_eps(1, 8 / 255), w * 8 / 255)
    seen: list[torch.Tensor] = []

    def spy(model: object, x: torch.Tensor, *args: object, step_size: torch.Tensor, **kw: object) -> tuple:
        seen.append(torch.as_tensor(step_size))
        return x, torch.zeros(len(x), dtype=torch.bool)

    # the training attack's own PGD core (the package's name `pgd` is the function, not its module)
    monkeypatch.setattr(importlib.import_module("classwise.attacks.pgd"), "pgd", spy)
    trained = METHODS.get(method)(TrainConfig.from_dict({"method": {"name": method}}).method.options, 8 / 255)
    y = torch.tensor([0, 1, 2, 2])
    x = torch.rand(4, 3, 8, 8)
    model = create_model("resnet20", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4)
    eps = dafa.class_eps(1, 8 / 255)
    assert eps is not None
    trained.loss(model, x, y, torch.Generator(), methods.Knobs(eps[y], step_scale=w[y]))
    trained.loss(model, x, y, torch.Generator(), Knobs(8 / 255))  # without DAFA: the method's own step
    step = 2.5 * (8 / 255) / trained.options.steps
    torch.testing.assert_close(seen[0], step * w[y])
    torch.testing.assert_close(seen[1], torch.tensor(step))


@pytest.mark.parametrize(
    ("technique", "args"),
    [("wat", {"eta": 0.5}), ("dafa", {"warmup": 0.34}), ("class-eps+wat", {"wat": {"eta": 0.5}})],
)
def test_wat_dafa_and_a_combination_resume_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, technique: str, args: dict[str, float]
) -> None:
    from classwise.train.loop import Trainer

    data = str(write_class_folders(tmp_path, n=10))
    settings = {"data.dataset": data, "method.name": "trades", "method.args.steps": 2, "optim.epochs": 3}
    cfg = TrainConfig.from_dict(tiny({**settings, "balance.name": technique, "balance.args": args}))
    straight = train(cfg, tmp_path / "straight", progress=False, final_evaluation=False)
    original = Trainer.epoch

    def stop_after_the_second(self: Trainer, run_dir: Path, epoch: int, *rest: object) -> bool:
        stop = original(self, run_dir, epoch, *rest)  # type: ignore[arg-type]
        if epoch == 1:
            raise KeyboardInterrupt
        return stop

    monkeypatch.setattr(Trainer, "epoch", stop_after_the_second)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "stopped", progress=False, final_evaluation=False)
    monkeypatch.setattr(Trainer, "epoch", original)
    train(None, tmp_path / "stopped", resume=True, progress=False, final_evaluation=False)
    a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)
    states = a["technique"].get("combined", [a["technique"]])
    for i, state in enumerate(states):
        for key, value in state.items():
            again = b["technique"]["combined"][i] if "combined" in b["technique"] else b["technique"]
            assert value is not None and torch.equal(value, again[key]), key
    for name, p in a["model"].items():
        assert torch.equal(p, b["model"][name]), name
    assert straight.history[0].get("val", {}).get("method_loss") is not None or technique == "dafa"
    # the history records what the technique applies, equal to its saved state after the last epoch
    recorded = straight.history[-1]["technique"]
    prefix = "1." if "combined" in a["technique"] else ""
    assert recorded[prefix + "weights"] == pytest.approx(states[-1]["weights"].tolist())
    if technique == "dafa":  # the warm-up is epoch 0: its weights scale each class's ε and step
        assert recorded["eps_scale"] == pytest.approx(states[0]["weights"].tolist())
        assert recorded["step_scale"] == pytest.approx(states[0]["weights"].tolist())
    else:  # WAT's per-example weights: its class's Hedge weight plus the expected-loss expert's
        w = states[-1]["weights"]
        assert recorded["class_weights"] == pytest.approx((w[:-1] + w[-1]).tolist())


def test_init_from_starts_from_the_given_weights_and_refuses_another_architecture(tmp_path: Path) -> None:
    data = str(write_class_folders(tmp_path, n=10))
    base = {"data.dataset": data, "method.name": "trades", "method.args.steps": 1}
    pre = train(TrainConfig.from_dict(tiny(base)), tmp_path / "pre", progress=False, final_evaluation=False)
    settings = {**base, "balance.name": "frl", "model.init_from": str(pre.run_dir), "optim.lr": 1e-9}
    tuned = train(TrainConfig.from_dict(tiny(settings)), tmp_path / "tuned", progress=False, final_evaluation=False)
    a, _ = load_checkpoint(tmp_path / "pre" / "best.pt")
    b, _ = load_checkpoint(tuned.run_dir / "model.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if p.is_floating_point() and "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0)  # a learning rate of 1e-9 barely moves them
    # the run keeps which weights it started from, by content, and a snapshot carries that along
    digest = hashlib.sha256((tmp_path / "pre" / "best.pt").read_bytes()).hexdigest()
    [session] = json.loads((tuned.run_dir / "provenance.json").read_text())
    assert session["init_from"] == {"path": str(tmp_path / "pre" / "best.pt"), "sha256": digest}
    assert "init_from" not in json.loads((tmp_path / "pre" / "provenance.json").read_text())[0]
    train(TrainConfig.from_dict(tiny({**settings, "optim.epochs": 1})), tmp_path / "ev", progress=False)
    copied = json.loads((copy_run(tmp_path / "ev", tmp_path / "copy") / "provenance.json").read_text())
    assert copied[0]["init_from"]["sha256"] == digest
    with pytest.raises(ClasswiseError, match="holds a 'resnet20' model, not 'small_cnn'"):
        train(TrainConfig.from_dict(tiny({**settings, "model.name": "small_cnn"})), tmp_path / "x", progress=False)
    with pytest.raises(ClasswiseError, match=r"holds no best\.pt"):
        cfg = TrainConfig.from_dict(tiny({**settings, "model.init_from": str(tmp_path)}))
        train(cfg, tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    # the command line's --init-from is the same setting
    cli = {k: v for k, v in settings.items() if k != "model.init_from"}
    argv = ["train", *tiny_train_args({**cli, "optim.epochs": 1}), "--init-from", str(pre.run_dir)]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 0
    assert yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())["model"]["init_from"] == str(pre.run_dir)
    assert main([*argv, "--resume", str(tmp_path / "cli")]) == 2
