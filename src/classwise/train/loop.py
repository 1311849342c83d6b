"""``train(config, run_dir)``: one loop for every method, with class-wise monitoring,
best-checkpoint selection, catastrophic-overfitting check (fast FGSM) and exact resume.

Shuffling, augmentation and attack noise of epoch e depend only on (seed, e), and the full
state is saved atomically after each epoch, so a run killed at any moment and resumed ends
with the same weights as an uninterrupted one (on the CPU)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classwise.compute import autocast, channels_last_safe, resolve_precision
from classwise.data import (
    Augment,
    BatchIterator,
    Dataset,
    load_dataset,
    long_tailed,
    per_class_subset,
    validation_split,
)
from classwise.errors import CheckpointError
from classwise.evaluate import AttackSpec, EvalSpec, Evaluation, evaluate, run_evaluation
from classwise.models import (
    ImageClassifier,
    atomic_torch_save,
    create_model,
    load_checkpoint,
    model_from_spec,
    save_checkpoint,
)
from classwise.progress import progress_bar
from classwise.train import rundir
from classwise.train.balance import Balancer, make_balancer
from classwise.train.config import TrainConfig
from classwise.train.methods import METHODS, Knobs
from classwise.train.schedules import learning_rate
from classwise.train.step import Body, TrainStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    best_epoch: int | None
    checkpoint: Path  # the weights the run is judged by: the weight average, else best.pt
    evaluation: Evaluation | None  # class-wise test evaluation of ``checkpoint`` (None if not asked for)

    @property
    def test(self) -> Evaluation:
        """The final class-wise test evaluation (the run must have been trained with it)."""
        if self.evaluation is None:
            raise ValueError(f"{self.run_dir} was trained with final_evaluation=False")
        return self.evaluation


def prepare_data(cfg: TrainConfig) -> Dataset:
    """The dataset with the configured training subset, stratified validation split and, with an
    imbalance ratio, a long-tailed training split (validation and test stay balanced)."""
    from dataclasses import replace

    ds = load_dataset(cfg.dataset, root=cfg.data_root)
    if cfg.train_per_class is not None:
        ds = replace(ds, train=per_class_subset(ds.train, cfg.train_per_class + cfg.val_per_class, ds.num_classes))
    ds = validation_split(ds, cfg.val_per_class, seed=cfg.seed)
    return ds if cfg.imbalance_ratio is None else long_tailed(ds, cfg.imbalance_ratio, seed=cfg.seed)


def train(
    cfg: TrainConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    final_evaluation: bool = True,
    cuda_graphs: bool = True,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; returns its history and final class-wise evaluation.

    On CUDA each epoch's training step is captured as a CUDA graph and replayed (``train.step``);
    ``cuda_graphs=False`` runs it eagerly (to debug, or to compare).

    Example:
        >>> result = train(TrainConfig(dataset="fashion-mnist", method="pgd-at", eps=0.1), "runs/at")
        ... # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    cfg = rundir.prepare(run_dir, cfg, resume)
    dev = torch.device(device)
    ds = prepare_data(cfg)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, ds.num_classes, ds.input_shape, ds.mean, ds.std, **cfg.model_args).to(dev)
    compute = Compute(resolve_precision(cfg.precision, dev), channels_last_safe(model, dev))
    if compute.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        fused=dev.type == "cuda",  # one kernel per update, and it reads a tensor lr (CUDA graphs)
    )
    balancer = make_balancer(cfg.balance, cfg.balance_args, ds.train.counts(ds.num_classes), cfg.epochs, cfg.method)
    state = _load_state(run_dir, model, optimizer, balancer) if resume else None
    history: list[dict[str, Any]] = state["history"] if state else []
    best = state["best"] if state else {"value": None, "epoch": None, "co_best": None}
    average: dict[str, torch.Tensor] | None = state.get("average") if state else None
    augment = cfg.augment if cfg.augment is not None else Augment.for_input(ds.input_shape) is not None
    batches = BatchIterator(
        ds.train,
        cfg.batch_size,
        shuffle=True,
        augment=Augment() if augment else None,
        seed=cfg.seed,
        device=dev,
        drop_last=True,
        channels_last=compute.channels_last,
        sample_weights=balancer.sample_weights(ds.train.labels),
    )
    meta = {"dataset": ds.describe(), "class_names": list(ds.class_names), "config": cfg.to_dict()}
    graphs = cuda_graphs and dev.type == "cuda"
    if len(history) < cfg.epochs:
        rundir.record_provenance(run_dir, dev, len(history), compute.to_dict())
    for epoch in range(len(history), cfg.epochs):
        balancer.to(dev)
        record = _train_epoch(model, optimizer, batches, cfg, epoch, ds, progress, history, balancer, graphs, compute)
        balancer.observe_training(epoch, torch.tensor(record["train_class_acc"], device=dev))
        predictor = model.with_logit_shift(balancer.posthoc_logit_shift())
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            val = record["val"] = _validate(predictor, ds, cfg)
            balancer.observe_validation(
                epoch, torch.tensor(val["clean"], device=dev), _tensor_or_none(val.get("robust"), dev)
            )
            value = _metric(val, cfg.selection_metric)
            if best["value"] is None or value > best["value"]:
                best = {**best, "value": value, "epoch": epoch}
                save_checkpoint(run_dir / rundir.BEST, predictor, epoch=epoch, **meta)
            average = _weight_average(average, predictor, balancer, val, run_dir, meta, epoch)
        stop = _catastrophic_overfitting(model, ds, cfg, record, best) if cfg.method == "fgsm-rs" else False
        history.append(record)
        saved = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "best": best,
            "balancer": balancer.state(),
            "average": average,
        }
        atomic_torch_save(saved, run_dir / rundir.STATE)
        save_checkpoint(run_dir / rundir.LAST, predictor, epoch=epoch, **meta)
        rundir.write_history(run_dir, history)
        if stop:
            break
    return _finish(run_dir, cfg, ds, history, best, dev, final_evaluation, progress)


def _tensor_or_none(values: list[float] | None, device: torch.device) -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, device=device)


def _weight_average(
    average: dict[str, torch.Tensor] | None,
    predictor: ImageClassifier,
    balancer: Balancer,
    val: dict[str, Any],
    run_dir: Path,
    meta: dict[str, Any],
    epoch: int,
) -> dict[str, torch.Tensor] | None:
    """CFA's fairness-aware weight averaging: an EMA of the weights over epochs whose worst-class
    validation robust accuracy clears the technique's threshold, saved as ``fawa.pt``."""
    decay = balancer.average_decay(_tensor_or_none(val.get("robust"), next(predictor.parameters()).device))
    if decay is None:
        return average
    current = {k: v.detach().cpu().clone() for k, v in predictor.state_dict().items()}
    if average is not None:
        current = {k: decay * average[k] + (1 - decay) * v if v.is_floating_point() else v for k, v in current.items()}
    averaged = model_from_spec(predictor.spec)
    averaged.load_state_dict(current)
    save_checkpoint(run_dir / rundir.AVERAGE, averaged, epoch=epoch, **meta)
    return current


@dataclass(frozen=True)
class EpochTotals:
    """Per-class images seen and correctly classified, and the summed loss, of one epoch. They stay
    on the device: reading them back (``.item()``, CUDA ``bincount``) would stall the GPU every
    step, so they are read only when the progress bar refreshes and at the end of the epoch."""

    seen: torch.Tensor
    correct: torch.Tensor
    loss: torch.Tensor

    @classmethod
    def zeros(cls, num_classes: int, device: torch.device) -> EpochTotals:
        return cls(
            torch.zeros(num_classes, device=device),
            torch.zeros(num_classes, device=device),
            torch.zeros((), device=device),
        )

    def class_accuracy(self) -> torch.Tensor:
        """Running training accuracy of each class (0 for a class not seen yet)."""
        return self.correct / self.seen.clamp_min(1)


@dataclass(frozen=True)
class Compute:
    """How a run's arithmetic runs: ``precision`` (``fp32`` or ``bf16`` autocast) and whether the
    model and batches are channels_last (see ``classwise.compute``)."""

    precision: str
    channels_last: bool

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "channels_last": self.channels_last}


def step_body(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    balancer: Balancer,
    epoch: int,
    generator: torch.Generator,
    totals: EpochTotals,
    precision: str = "fp32",
) -> Body:
    """One training step on a batch: the method's per-example loss under the technique's ε, β and
    criterion, the technique's reduction, backward and the optimizer update, added to ``totals``.
    :class:`TrainStep` runs it eagerly or as a CUDA graph."""
    method = METHODS.get(cfg.method)
    class_eps, class_beta = balancer.class_eps(epoch, cfg.eps), balancer.class_beta(epoch, cfg.trades_beta)
    criterion = balancer.criterion(epoch)

    def body(x: torch.Tensor, y: torch.Tensor) -> None:
        eps = cfg.eps if class_eps is None else class_eps[y]
        beta = cfg.trades_beta if class_beta is None else class_beta[y]
        with autocast(x.device, precision):
            out = method(model, x, y, cfg, generator, Knobs(eps, beta, criterion))
        loss = balancer.reduce(out.loss, y, out.parts, epoch)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            totals.seen.index_add_(0, y, torch.ones_like(y, dtype=totals.seen.dtype))
            totals.correct.index_add_(0, y, (out.logits.argmax(1) == y).to(totals.correct.dtype))
            totals.loss.add_(loss.detach().float())

    return body


def _train_epoch(
    model: ImageClassifier,
    optimizer: torch.optim.Optimizer,
    batches: BatchIterator,
    cfg: TrainConfig,
    epoch: int,
    ds: Dataset,
    progress: bool,
    history: list[dict[str, Any]],
    balancer: Balancer,
    graphs: bool,
    compute: Compute,
) -> dict[str, Any]:
    batches.set_epoch(epoch)
    g = torch.Generator(device=batches.device).manual_seed(cfg.seed * 1_000_003 + 7919 * (epoch + 1))
    totals = EpochTotals.zeros(ds.num_classes, batches.device)
    body = step_body(model, optimizer, cfg, balancer, epoch, g, totals, compute.precision)
    last_val = next((h["val"] for h in reversed(history) if "val" in h), None)
    desc = f"epoch {epoch + 1}/{cfg.epochs} {cfg.method}"
    model.train()
    start = time.perf_counter()
    with (
        TrainStep(body, optimizer, g, graph=graphs) as step,
        progress_bar(len(batches), desc, unit="batch", enabled=progress) as bar,
    ):
        for i, (x, y, _) in enumerate(batches):
            step(x, y, learning_rate(cfg, epoch + i / len(batches)))
            if progress and i % 10 == 0:
                speed = x.shape[0] * (i + 1) / (time.perf_counter() - start)
                bar.set_postfix(_postfix(speed, float(totals.loss) / (i + 1), totals, last_val, ds.class_names))
            bar.update(1)
    acc = totals.class_accuracy().cpu().tolist()  # waits for the device: the time is real
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "lr_end": learning_rate(cfg, epoch + 1),
        "train_loss": float(totals.loss) / len(batches),
        "train_class_acc": acc,
        "train_acc": float(totals.correct.sum() / totals.seen.sum()),
        "seconds": seconds,
        "images_per_s": len(batches) * cfg.batch_size / seconds,
        "graph_steps": step.replayed,  # steps replayed from a CUDA graph (the rest ran eagerly)
        **compute.to_dict(),
    }


def _postfix(
    speed: float, loss: float, totals: EpochTotals, val: dict[str, Any] | None, names: tuple[str, ...]
) -> dict[str, str]:
    acc = totals.class_accuracy().cpu().numpy()
    out = {
        "img/s": f"{speed:.0f}",
        "loss": f"{loss:.3f}",
        "train": f"{acc.mean():.0%} worst {names[acc.argmin()]} {acc.min():.0%}",
    }
    if val is not None:
        out["val clean"] = f"{val['clean_mean']:.0%} worst {val['clean_worst_class']} {val['clean_worst']:.0%}"
        if "robust_mean" in val:
            out["val robust"] = f"{val['robust_mean']:.0%} worst {val['robust_worst_class']} {val['robust_worst']:.0%}"
    return out


def _validate(model: ImageClassifier, ds: Dataset, cfg: TrainConfig) -> dict[str, Any]:
    """Per-class clean and PGD accuracy on the validation split (robust only for adversarial runs)."""
    ev = evaluate(model, ds, cfg.validation_spec(), progress=False)
    clean = ev.spread(ev.clean())
    out: dict[str, Any] = {
        "clean": ev.clean().accuracy.tolist(),
        "clean_mean": clean.mean,
        "clean_worst": clean.worst,
        "clean_worst_class": clean.worst_class,
    }
    if cfg.validates_robustness:
        rob = ev.spread(ev.robust(ev.worst[0]))
        out.update(
            {
                "robust": ev.robust(ev.worst[0]).accuracy.tolist(),
                "robust_mean": rob.mean,
                "robust_worst": rob.worst,
                "robust_worst_class": rob.worst_class,
            }
        )
    return out


def _metric(val: dict[str, Any], name: str) -> float:
    if name == "robust_mean_plus_worst":
        return float(val.get("robust_mean", val["clean_mean"]) + val.get("robust_worst", val["clean_worst"]))
    kind, stat = name.split("_")
    key = f"{kind}_{stat}" if f"{kind}_{stat}" in val else f"clean_{stat}"
    return float(val[key])


def _catastrophic_overfitting(
    model: ImageClassifier, ds: Dataset, cfg: TrainConfig, record: dict[str, Any], best: dict[str, Any]
) -> bool:
    """Wong et al.'s check: PGD accuracy on a fixed training batch; a drop of more than 20 points
    below the best so far means catastrophic overfitting, and training stops (best.pt predates it)."""
    if not cfg.co_check:
        return False
    batch = ds.train.take(torch.arange(min(len(ds.train), cfg.batch_size)))
    spec = EvalSpec(
        attacks=(AttackSpec("pgd", {"steps": 10}),), eps=(cfg.eps,), seed=cfg.evaluation.seed, analyses=False
    )
    ev = evaluate(model, batch, spec, class_names=ds.class_names, progress=False)
    acc = float(ev.worst[0].robust.mean())
    record["co_pgd_acc"] = acc
    if best["co_best"] is not None and acc < best["co_best"] - 0.2:
        record["catastrophic_overfitting"] = True
        log.warning(
            "catastrophic overfitting at epoch %d: PGD accuracy on a training batch fell from %.1f%% to "
            "%.1f%%; stopping (best.pt is from before)",
            record["epoch"] + 1,
            100 * best["co_best"],
            100 * acc,
        )
        return True
    best["co_best"] = acc if best["co_best"] is None else max(best["co_best"], acc)
    return False


def _load_state(
    run_dir: Path, model: ImageClassifier, optimizer: torch.optim.Optimizer, balancer: Balancer
) -> dict[str, Any] | None:
    path = run_dir / rundir.STATE
    if not path.exists():
        return None  # killed before the first epoch ended: start from scratch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        balancer.load(state.get("balancer") or {})
    except Exception as exc:
        raise CheckpointError(f"cannot resume from {path}: {str(exc).splitlines()[0][:200]}") from None
    return dict(state)


def _finish(
    run_dir: Path,
    cfg: TrainConfig,
    ds: Dataset,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    dev: torch.device,
    final_evaluation: bool,
    progress: bool,
) -> TrainResult:
    """Class-wise evaluation on the test split, written to ``eval/``: of the weight average when the
    technique keeps one (CFA's FAWA), else of the best checkpoint."""
    source = next(run_dir / n for n in (rundir.AVERAGE, rundir.BEST, rundir.LAST) if (run_dir / n).exists())
    if not final_evaluation:
        return TrainResult(run_dir, cfg, history, best["epoch"], source, None)
    model, _ = load_checkpoint(source, device=dev)
    ev = run_evaluation(
        model,
        ds,
        cfg.test_spec(),
        run_dir / rundir.EVAL,
        source={"checkpoint": source.name, "best_epoch": best["epoch"], "dataset": ds.describe()},
        progress=progress,
    )
    return TrainResult(run_dir, cfg, history, best["epoch"], source, ev)
