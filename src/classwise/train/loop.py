"""``train(config, run_dir)``: one loop for every method, with class-wise monitoring, best-checkpoint
selection and exact resume. What varies lives in its own piece: the method (its loss and its
end-of-epoch check, e.g. fast FGSM's catastrophic-overfitting check), the balancing technique
(its roles, e.g. CFA's weight averaging or a post-hoc logit shift), the schedule and the
selection metric.

Shuffling, augmentation and attack noise of epoch e depend only on (seed, e), and the full
state is saved atomically after each epoch, so a run killed at any moment and resumed ends
with the same weights as an uninterrupted one (on the CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from classwise.compute import channels_last_safe, resolve_precision
from classwise.data import (
    Augment,
    BatchIterator,
    Dataset,
    load_dataset,
    long_tailed,
    per_class_subset,
    validation_split,
    without_classes,
)
from classwise.data.files import file_digest
from classwise.errors import CheckpointError, ConfigError
from classwise.evaluate import EvalSpec, Evaluation, evaluate, run_evaluation
from classwise.history import Validation
from classwise.models import (
    ImageClassifier,
    atomic_torch_save,
    create_model,
    load_checkpoint,
    model_from_spec,
    save_checkpoint,
    torch_file,
)
from classwise.train import rundir
from classwise.train.balance import Balance, make_technique
from classwise.train.config import TrainConfig
from classwise.train.epoch import Compute, EpochSetup, class_losses, train_epoch
from classwise.train.methods import METHODS, EpochEnd, Method
from classwise.train.selection import SELECTION, BestCheckpoint
from classwise.train.track import Tracker, Tracking, epoch_scalars, test_scalars


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    best_epoch: int | None
    checkpoint: Path  # the weights the run is judged by: the technique's weight average, else best.pt
    evaluation: Evaluation | None  # class-wise test evaluation of ``checkpoint`` (None if not asked for)

    @property
    def test(self) -> Evaluation:
        """The final class-wise test evaluation (the run must have been trained with it)."""
        if self.evaluation is None:
            raise ValueError(f"{self.run_dir} was trained with final_evaluation=False")
        return self.evaluation


@dataclass
class RunState:
    """What a run carries from epoch to epoch besides the weights: the epochs' records and the best
    checkpoint so far. Saved with the model, optimizer, method and technique after every epoch."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: BestCheckpoint = field(default_factory=BestCheckpoint)

    @property
    def last_validation(self) -> dict[str, Any] | None:
        return next((h["val"] for h in reversed(self.history) if "val" in h), None)


def prepare_data(cfg: TrainConfig) -> Dataset:
    """The dataset with the configured training subset, stratified validation split, the classes left
    out (``data.drop_classes``, after the split so that the kept classes hold the images a run on all
    classes holds) and, with an imbalance ratio, a long-tailed training split (validation and test
    stay balanced)."""
    d = cfg.data
    ds = load_dataset(d.dataset, root=d.root)
    if len(ds.train) == 0:
        raise ConfigError(f"{d.dataset} has no train/ images: it can be evaluated (classwise evaluate), not trained on")
    if d.train_per_class is not None:
        ds = replace(ds, train=per_class_subset(ds.train, d.train_per_class + d.val_per_class, ds.num_classes))
    ds = validation_split(ds, d.val_per_class, seed=cfg.seed)
    ds = without_classes(ds, d.drop_classes) if d.drop_classes else ds
    ds = ds if d.imbalance_ratio is None else long_tailed(ds, d.imbalance_ratio, seed=cfg.seed)
    if len(ds.train) < cfg.optim.batch_size:  # every epoch keeps only full batches: it would train on nothing
        raise ConfigError(
            f"optim.batch_size is {cfg.optim.batch_size}, but only {len(ds.train)} training images are left after "
            f"the validation split ({d.val_per_class} a class); lower optim.batch_size or train on more images "
            "(data.train_per_class)"
        )
    return ds


class Trainer:
    """The live pieces of one run: data, model, optimizer, method, technique and batches."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, device: torch.device) -> None:
        self.cfg, self.ds, self.device = cfg, ds, device
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model.name, ds.num_classes, ds.input_shape, ds.mean, ds.std, **cfg.model.args)
        # the weights a fine-tune starts from, by content: the path alone does not say which model it held
        self.init: dict[str, str] = {}
        if cfg.model.init_from is not None:
            self.init = init_weights(model, Path(cfg.model.init_from), ds.num_classes)
        self.model = model.to(device)
        self.compute = Compute(resolve_precision(cfg.optim.precision, device), channels_last_safe(model, device))
        if self.compute.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        o = cfg.optim
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=o.lr,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
            fused=device.type == "cuda",  # one kernel per update, and it reads a tensor lr (CUDA graphs)
        )
        method_cls = METHODS.get(cfg.method.name)
        self.method: Method = method_cls(cfg.method.options, cfg.threat.eps, cfg.threat.norm)
        counts = ds.train.counts(ds.num_classes)
        self.balance: Balance = make_technique(cfg.balance.name, cfg.balance.args, counts, o.epochs, method_cls)
        augment = cfg.data.augment if cfg.data.augment is not None else Augment.for_input(ds.input_shape) is not None
        self.batches = BatchIterator(
            ds.train,
            o.batch_size,
            shuffle=True,
            augment=Augment() if augment else None,
            seed=cfg.seed,
            device=device,
            drop_last=True,
            channels_last=self.compute.channels_last,
            sample_weights=self.balance.sample_weights(ds.train.labels),
        )
        self.meta = {
            "dataset": ds.describe(),
            "class_names": list(ds.class_names),
            "config": cfg.to_dict(),
            "adversarial": method_cls.adversarial,  # stored with the run, so readers never ask the registry
        }

    def setup(self) -> EpochSetup:
        return EpochSetup(
            self.model,
            self.optimizer,
            self.method,
            self.balance,
            self.batches,
            self.cfg.optim,
            self.compute,
            self.cfg.seed,
            self.ds.class_names,
            self.cfg.method.name,
        )

    def predictor(self) -> ImageClassifier:
        """The network as it predicts and is evaluated (with a technique's post-hoc logit shift)."""
        return self.model.with_logit_shift(self.balance.posthoc_logit_shift())

    def restore(self, run_dir: Path) -> RunState:
        """The saved state of ``run_dir`` loaded into the live pieces (fresh if none was saved)."""
        path = run_dir / rundir.STATE
        if not path.exists():
            return RunState()  # killed before the first epoch ended: start from scratch
        fix = f"delete {path} to restart the run from its first epoch (its finished epochs are in {rundir.HISTORY})"
        saved = torch_file(path, "run state", fix)
        try:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.method.load(saved["method"])
            self.balance.load(saved["technique"])
            best = BestCheckpoint(**saved["best"])
        except Exception:  # a state of another run, another model or a damaged one: no torch text
            raise CheckpointError(
                f"cannot resume from {path}: it is not the saved state of this run's model, optimiser and "
                f"technique; {fix}"
            ) from None
        return RunState(list(saved["history"]), best)

    def save(self, run_dir: Path, state: RunState) -> None:
        """Everything needed to resume, then the last weights and the history, each atomically."""
        saved = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": state.history,
            "best": state.best.to_dict(),
            "method": self.method.state(),
            "technique": self.balance.state(),
        }
        atomic_torch_save(saved, run_dir / rundir.STATE)
        save_checkpoint(run_dir / rundir.LAST, self.predictor(), epoch=state.history[-1]["epoch"], **self.meta)
        rundir.write_history(run_dir, state.history)

    def validate(self, run_dir: Path, epoch: int, record: dict[str, Any], state: RunState) -> None:
        """Per-class validation; the technique observes it, best.pt and the weight average follow it."""
        predictor = self.predictor()
        val = validation_record(
            predictor, self.ds, self.cfg.validation_spec(self.compute.precision), self.cfg.validates_robustness
        )
        robust = None if val.robust is None else torch.tensor(val.robust, device=self.device)
        self.balance.observe_validation(epoch, torch.tensor(val.clean, device=self.device), robust)
        if self.balance.wants_validation_loss and self.ds.val is not None:
            seed, size, precision = self.cfg.seed * 1_000_003 + epoch, self.cfg.optim.batch_size, self.compute.precision
            loss = class_losses(self.model, self.method, self.ds.val, self.ds.num_classes, size, seed, precision)
            val = replace(val, method_loss=tuple(loss.cpu().tolist()))
            self.balance.observe_validation_loss(epoch, loss)
        value = SELECTION.get(self.cfg.selection_metric)(val)
        if state.best.improves(value):
            state.best.keep(value, epoch)
            save_checkpoint(run_dir / rundir.BEST, predictor, epoch=epoch, **self.meta)
        average = self.balance.fold(predictor.state_dict(), robust)
        if self.balance.averages:  # whether this epoch entered the average (CFA's FAWA)
            val = replace(val, weights_averaged=average is not None)
        record["val"] = val.to_dict()
        if average is not None:
            averaged = model_from_spec(predictor.spec)
            averaged.load_state_dict(average)
            save_checkpoint(run_dir / rundir.AVERAGE, averaged, epoch=epoch, **self.meta)

    def epoch(self, run_dir: Path, epoch: int, state: RunState, progress: bool, graphs: bool) -> bool:
        """Train, observe, validate, check and save one epoch; True when the method stops the run."""
        self.balance.to(self.device)
        record = train_epoch(self.setup(), epoch, state.last_validation, progress, graphs)
        if (epoch + 1) % self.cfg.monitor.every == 0 or epoch + 1 == self.cfg.optim.epochs:
            self.validate(run_dir, epoch, record, state)
        applied = self.balance.applied(epoch + 1, self.cfg.threat.eps, self.method.beta())
        if applied:
            record["technique"] = applied  # what the next epoch applies, after this one's observations
        batch = self.ds.train.take(torch.arange(min(len(self.ds.train), self.cfg.optim.batch_size)))
        end = EpochEnd(self.model, batch, self.ds.class_names, self.cfg.threat.eps, self.cfg.evaluation.seed, record)
        stop = self.method.end_of_epoch(end)
        state.history.append(record)
        self.save(run_dir, state)
        return stop


def train(
    cfg: TrainConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    final_evaluation: bool = True,
    cuda_graphs: bool = True,
    track: Tracking | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; returns its history and final class-wise evaluation.

    On CUDA each epoch's training step is captured as a CUDA graph and replayed (``train.step``);
    ``cuda_graphs=False`` runs it eagerly (to debug, or to compare). ``track`` sends each epoch's
    record (and the final evaluation) to TensorBoard or MLflow (:mod:`classwise.train.track`); a
    resumed run sends the epochs it trains.

    Example:
        >>> cfg = TrainConfig.from_dict({"data": {"dataset": "fashion-mnist"}, "threat": {"eps": 0.1}})
        >>> result = train(cfg, "runs/at")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    cfg = rundir.resolve(run_dir, cfg, resume)
    dev = torch.device(device)
    ds = prepare_data(cfg)
    trainer = Trainer(cfg, ds, dev)  # everything set up before the folder is touched
    track = track or Tracking()
    track.check()
    if resume:
        rundir.clear_partial_writes(run_dir)
    else:
        rundir.create(run_dir, cfg)
    state = trainer.restore(run_dir) if resume else RunState()
    if len(state.history) < cfg.optim.epochs:
        start = {**trainer.compute.to_dict(), **({"init_from": trainer.init} if trainer.init else {})}
        rundir.record_provenance(run_dir, dev, len(state.history), start)
    graphs = cuda_graphs and dev.type == "cuda"
    stopped = any(h.get("catastrophic_overfitting") for h in state.history)
    tracker = Tracker(track, cfg.to_dict())
    try:
        for epoch in range(len(state.history), cfg.optim.epochs if not stopped else 0):
            stop = trainer.epoch(run_dir, epoch, state, progress, graphs)
            tracker.log(epoch_scalars(state.history[-1], ds.class_names), epoch + 1)
            if stop:
                break
        result = _finish(run_dir, cfg, ds, trainer.meta, state, dev, final_evaluation, progress)
        if result.evaluation is not None:
            tracker.log(test_scalars(result.evaluation), len(state.history))
        return result
    finally:
        tracker.close()


def init_weights(model: ImageClassifier, source: Path, num_classes: int) -> dict[str, str]:
    """Load the weights of ``source`` (a run folder's ``best.pt``, or a checkpoint) into ``model``;
    they must be of the same architecture, arguments and classes. Returns the file loaded and its
    sha256, which the run's provenance keeps."""
    path = source / rundir.BEST if source.is_dir() else source
    if source.is_dir() and not path.exists():
        raise ConfigError(f"model.init_from: {source} holds no {rundir.BEST}; give a finished run or a checkpoint")
    loaded, _ = load_checkpoint(path, arch=model.spec.arch, num_classes=num_classes)
    if loaded.spec.kwargs != model.spec.kwargs or loaded.spec.input_shape != model.spec.input_shape:
        raise ConfigError(
            f"model.init_from: {path} holds a {loaded.spec.arch} with {loaded.spec.kwargs} for "
            f"{loaded.spec.input_shape} images; this run builds one with {model.spec.kwargs} "
            f"for {model.spec.input_shape}"
        )
    model.load_state_dict(loaded.state_dict())
    return {"path": str(path), "sha256": file_digest(path, "sha256")}


def validation_record(model: ImageClassifier, ds: Dataset, spec: EvalSpec, robust: bool) -> Validation:
    """Per-class clean and (where ``robust``: for runs that validate robustness) attacked accuracy
    under ``spec`` (the config's :meth:`~TrainConfig.validation_spec`) on the validation split."""
    ev = evaluate(model, ds, spec, progress=False)
    clean = ev.spread(ev.clean())
    val = Validation(tuple(ev.clean().accuracy.tolist()), clean.mean, clean.worst, clean.worst_class)
    if not robust:
        return val
    attacked = ev.robust(ev.worst[0])
    rob = ev.spread(attacked)
    return replace(
        val,
        robust=tuple(attacked.accuracy.tolist()),
        robust_mean=rob.mean,
        robust_worst=rob.worst,
        robust_worst_class=rob.worst_class,
    )


def _finish(
    run_dir: Path,
    cfg: TrainConfig,
    ds: Dataset,
    meta: dict[str, Any],
    state: RunState,
    dev: torch.device,
    final_evaluation: bool,
    progress: bool,
) -> TrainResult:
    """Class-wise evaluation on the test split, written to ``eval/``: of the technique's weight
    average when it keeps one (CFA's FAWA), else of the best checkpoint. Its source says what the
    run's checkpoints say (``meta``): the dataset and whether the run was adversarial."""
    source = next(run_dir / n for n in (rundir.AVERAGE, rundir.BEST, rundir.LAST) if (run_dir / n).exists())
    if not final_evaluation:
        return TrainResult(run_dir, cfg, state.history, state.best.epoch, source, None)
    model, _ = load_checkpoint(source, device=dev)
    ev = run_evaluation(
        model,
        ds,
        cfg.test_spec(),
        run_dir / rundir.EVAL,
        source={
            "checkpoint": source.name,
            "best_epoch": state.best.epoch,
            "dataset": meta["dataset"],
            "adversarial": meta["adversarial"],
        },
        progress=progress,
    )
    return TrainResult(run_dir, cfg, state.history, state.best.epoch, source, ev)
