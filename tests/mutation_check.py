"""The suite checks itself: plant known one-line bugs in a copy of the package, one at a time, and
confirm that the tests that pin the numbers turn red for each.

    CLASSWISE_DATA=../shared/data .venv/bin/python tests/mutation_check.py            # every bug
    .venv/bin/python tests/mutation_check.py --only trades-kl-direction restarts-noop

Each bug is a replacement of one exact line of the source, so a refactor that moves the line makes
the check say "not found" instead of passing silently. The copy lives in a temporary folder and is
imported ahead of the installed package; the working tree is never touched. Not part of the default
suite (a few minutes); prints one line per bug with the first test that caught it, and exits 1 when
a bug survives or the unmutated copy fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALUES = "tests/test_method_values.py"
STATS = "tests/test_stats_values.py"
ATTACKS = "tests/test_attack_values.py"


@dataclass(frozen=True)
class Bug:
    name: str
    path: str  # under src/classwise
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, -k selections


BUGS = (
    Bug(
        "trades-kl-direction",
        "train/methods.py",
        "kl_per_example(logits, adv_logits)",
        "kl_per_example(adv_logits, logits)",
        (VALUES,),
    ),
    Bug("trades-ccr-normalisation", "train/methods.py", "loss = loss / (1 + beta)", "loss = loss / beta", (VALUES,)),
    Bug(
        "pgd-default-step",  # training's PGD-AT and TRADES and evaluation's PGD all take this step
        "attacks/pgd.py",
        "    return 2.5 * eps / steps\n",
        "    return 2.0 * eps / steps\n",
        (VALUES,),
    ),
    Bug("fgsm-rs-step", "train/methods.py", "else 1.25 * eps", "else 1.0 * eps", (VALUES,)),
    Bug(
        "training-attack-ignores-step-multiple",  # DAFA's per-class step would never reach the attack
        "attacks/pgd.py",
        "self.alpha * step_scale, **how)[0]",
        "self.alpha, **how)[0]",
        (VALUES, "-k", "methods_attack"),
    ),
    Bug(
        "table-leads-with-largest-eps",  # a sweep's table at 0.2 under an intro that says the training ε
        "report/collect.py",
        "return trained[0] if trained else self.evaluation.headline",
        "return self.evaluation.headline",
        ("tests/test_report.py", "-k", "several_eps"),
    ),
    Bug(
        "history-drops-false-flags",  # FAWA's weights_averaged: false would vanish from history.json
        "history.py",
        "if (v := getattr(self, f.name)) is not None",
        "if (v := getattr(self, f.name))",
        ("tests/test_report.py", "-k", "written_as_it_reads"),
    ),
    Bug(
        "dafa-transposed",
        "train/fairness.py",
        "    p = probs.float()\n",
        "    p = probs.float().T\n",
        (VALUES, "tests/test_balance.py"),
    ),
    Bug(
        "class-probs-transposed",
        "train/epoch.py",
        "return self.probs / self.seen.clamp_min(1)[:, None]",
        "return self.probs.T / self.seen.clamp_min(1)[:, None]",
        (VALUES,),
    ),
    Bug(
        "frl-tau-sign",
        "train/fairness.py",
        "gap_clean = clean_err - clean_err.mean() - self.tau_clean",
        "gap_clean = clean_err - clean_err.mean() + self.tau_clean",
        (VALUES,),
    ),
    Bug(
        "wat-hedge-sign",
        "train/fairness.py",
        "self.weights = self.k * torch.softmax(self.eta * self.cost, 0)",
        "self.weights = self.k * torch.softmax(-self.eta * self.cost, 0)",
        ("tests/test_balance.py", "-k", "wat"),
    ),
    Bug(
        "focal-exponent",
        "train/longtail.py",
        "return -((1 - log_p.exp()) ** self.gamma) * log_p",
        "return -((1 - log_p.exp()) ** (self.gamma / 2)) * log_p",
        (VALUES,),
    ),
    Bug(
        "effective-number",
        "train/balance.py",
        "(1 - torch.pow(beta, counts.double()))",
        "(1 - torch.pow(beta, counts.double() / 2))",
        (VALUES,),
    ),
    Bug(
        "restarts-noop",
        "attacks/pgd.py",
        "for _ in range(self.restarts - 1):",
        "for _ in range(0):",
        (ATTACKS, "-k", "restarts"),
    ),
    Bug(
        "random-start-half-ball",
        "attacks/pgd.py",
        "delta = (2 * u - 1) * per_sample(eps, x)",
        "delta = (u - 0.5) * per_sample(eps, x)",
        (ATTACKS, "-k", "random_start or independent"),
    ),
    Bug(
        "margin-targeted-sign",
        "attacks/pgd.py",
        "return true - others if targeted else others - true",
        "return others - true if targeted else others - true",
        (ATTACKS, "-k", "independent"),
    ),
    Bug(
        "l2-step-unnormalised",
        "attacks/pgd.py",
        '    g = grad / flat_norm(grad, "L2").clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))\n',
        "    g = grad\n",
        (ATTACKS, "-k", "independent"),
    ),
    Bug(
        "fab-t-untargeted",
        "attacks/autoattack.py",
        'a.fab.targeted = component == "fab-t"',
        "a.fab.targeted = False",
        (ATTACKS, "-k", "alone and fab"),
    ),
    Bug(
        "wilson-centre",
        "evaluate/metrics.py",
        "centre = (p + z**2 / (2 * n)) / denom",
        "centre = (p + z**2 / n) / denom",
        (STATS, "-k", "wilson"),
    ),
    Bug(
        "newcombe-limits",
        "evaluate/metrics.py",
        "d - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)",
        "d - np.sqrt((p2 - l2) ** 2 + (p1 - l1) ** 2)",
        (STATS, "-k", "newcombe"),
    ),
    Bug(
        "t-interval-ddof",
        "analysis/inference.py",
        "* v.std(ddof=1) / np.sqrt(len(v)))",
        "* v.std(ddof=0) / np.sqrt(len(v)))",
        (STATS, "-k", "run_interval"),
    ),
    Bug(
        "fisher-variance",
        "analysis/stats.py",
        "np.sqrt(1.06 / (n - 3))",
        "np.sqrt(1.0 / (n - 3))",
        (STATS, "-k", "fisher"),
    ),
    Bug("holm-factor", "analysis/inference.py", "(m - rank) * p[i]", "(m - rank - 1) * p[i]", (STATS, "-k", "holm")),
    Bug(
        "mcnemar-count",
        "analysis/inference.py",
        "stats.binomtest(only_b, n, 0.5)",
        "stats.binomtest(only_b, n + 1, 0.5)",
        (STATS, "-k", "mcnemar"),
    ),
    Bug(
        "store-accuracy-is-upper-bound",
        "study/export.py",
        '"accuracy": row["accuracy"],',
        '"accuracy": row["ci_high"],',
        ("tests/test_study.py", "-k", "per_class_csv"),
    ),
    Bug(
        "held-out-measured-on-its-own-half",
        "analysis/inference.py",
        "value = (acc_b[pick_a] + acc_a[pick_b]) / 2",
        "value = (acc_a[pick_a] + acc_b[pick_b]) / 2",
        (STATS, "-k", "held_out"),
    ),
    Bug(
        "leaderboard-ranks-by-the-mean",
        "report/ranking.py",
        "key=lambda e: (-e.worst.accuracy, -e.mean)",
        "key=lambda e: (-e.mean, -e.worst.accuracy)",
        ("tests/test_leaderboard.py",),
    ),
    Bug(
        "leaderboard-ranks-by-the-naive-minimum",
        "report/ranking.py",
        "key=lambda e: (-e.worst.accuracy, -e.mean)",
        "key=lambda e: (-e.worst.naive, -e.mean)",
        ("tests/test_leaderboard.py",),
    ),
    Bug(
        "store-read-in-two-moments",
        "study/store.py",
        'db.execute("BEGIN")\n            try:\n                runs = [dict(r) for r in db.execute(RUNS_QUERY)]',
        'runs = [dict(r) for r in db.execute(RUNS_QUERY)]\n            db.execute("BEGIN")\n            try:',
        ("tests/test_bad_input.py", "-k", "one_moment"),
    ),
    Bug(
        "run-interval-float-equal",  # seeds equal but for float rounding would print a zero-width interval
        "analysis/inference.py",
        "if len(v) < 2 or np.allclose(v, v[0]):",
        "if len(v) < 2 or float(np.ptp(v)) == 0.0:",
        (STATS,),
    ),
    Bug(
        "drop-classes-relabel-order",  # the kept classes relabelled in another order than the dataset's
        "data/dataset.py",
        "kept = [c for c in dataset.class_names if c not in set(names)]",
        "kept = [c for c in reversed(dataset.class_names) if c not in set(names)]",
        ("tests/test_data.py", "-k", "without_classes"),
    ),
)


def copy_tree(dest: Path) -> None:
    for part in ("src", "tests", "pyproject.toml"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, dest / part)
    (dest / "results").symlink_to(ROOT / "results")  # the committed results some value tests read (never written)


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src") + os.pathsep + str(tree)}
    env.setdefault("CLASSWISE_DATA", str(ROOT.parent / "shared" / "data"))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    return done.returncode, failed[0] if failed else done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="BUG", help="just these bugs: " + ", ".join(b.name for b in BUGS))
    args = p.parse_args()
    bugs = [b for b in BUGS if not args.only or b.name in args.only]
    unknown = set(args.only or ()) - {b.name for b in BUGS}
    if unknown:
        print(f"unknown bug(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        where = subprocess.run(
            [sys.executable, "-c", "import classwise; print(classwise.__file__)"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree / "src")},
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(tree)):
            print(f"the copy is not what Python imports (it imports {where})", file=sys.stderr)
            return 1
        selections = sorted({b.tests for b in bugs})
        for tests in selections:
            code, last = run_tests(tree, tests)
            if code != 0:
                print(f"the unmutated copy fails {' '.join(tests)}: {last}", file=sys.stderr)
                return 1
        print(f"{'bug':32} {'caught':7} {'seconds':>7}  first failing test")
        for bug in bugs:
            target = tree / "src" / "classwise" / bug.path
            original = target.read_text()
            if bug.old not in original:
                print(f"{bug.name:32} {'-':7} {'':>7}  the line to mutate is not in {bug.path}: update this check")
                survived += 1
                continue
            target.write_text(original.replace(bug.old, bug.new, 1))
            start = time.perf_counter()
            try:
                code, first = run_tests(tree, bug.tests)
            finally:
                target.write_text(original)
            caught = code == 1 and bool(first) and "::" in first  # a test failed (not a collection error)
            survived += not caught
            print(f"{bug.name:32} {'yes' if caught else 'NO':7} {time.perf_counter() - start:7.1f}  {first}")
    print(f"{len(bugs) - survived} of {len(bugs)} planted bugs caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
