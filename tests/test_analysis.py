from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from classwise.analysis import (
    bootstrap_class_accuracy,
    class_rank_agreement,
    compare_gaps,
    confusion_similarity,
    spread_of,
    weakest_classes,
)
from classwise.attacks import PGD
from classwise.evaluate.geometry import boundary_distance, centroid_similarity, class_centroids, class_weight_norms
from classwise.models import create_model


def test_bootstrap_intervals() -> None:
    labels = np.repeat([0, 1], 100)
    flags = np.concatenate([np.ones(100), np.arange(100) % 2]).astype(bool)
    acc, low, high = bootstrap_class_accuracy(flags, labels, 3, n_boot=500)
    assert acc[0] == 1 and low[0] == 1 and high[0] == 1
    assert acc[1] == 0.5 and 0.35 < low[1] < 0.5 < high[1] < 0.65
    assert np.isnan(acc[2])


def test_spread_and_widening_across_seeds() -> None:
    assert spread_of(np.array([0.9, 0.5, np.nan])) == pytest.approx({"mean": 0.7, "worst": 0.5, "gap": 0.4, "std": 0.2})
    standard = np.array([[0.9, 0.8, 0.7], [0.92, 0.8, 0.71], [0.9, 0.82, 0.69]])
    adversarial = np.array([[0.8, 0.5, 0.2], [0.82, 0.5, 0.25], [0.8, 0.55, 0.2]])
    cmp = compare_gaps(standard, adversarial, "gap")
    assert cmp.mean_difference > 0.35 and cmp.p_value < 0.01
    assert np.isnan(compare_gaps(standard[:1], adversarial[:1]).p_value)


def test_rank_agreement_and_weakest() -> None:
    acc = np.array([[0.9, 0.5, 0.7], [0.8, 0.4, 0.6], [0.1, 0.9, 0.5]])
    rho = class_rank_agreement(acc)
    assert rho[0, 1] == pytest.approx(1.0) and rho[0, 2] == pytest.approx(-1.0)
    with_ties = class_rank_agreement(np.vstack([acc, np.zeros(3)]))  # a run at 0% everywhere has no order
    assert with_ties.shape == (4, 4) and np.isnan(with_ties[3, :3]).all() and with_ties[3, 3] == 1
    assert weakest_classes(acc[:2], ("cat", "dog", "ship"), top=1) == [("dog", pytest.approx(0.45))]


def test_confusion_and_centroid_similarity_by_hand() -> None:
    confusion = np.array([[8, 2, 0], [4, 6, 0], [0, 0, 10]])
    sim = confusion_similarity(confusion)
    assert sim[0, 1] == pytest.approx((0.2 + 0.4) / 2) and sim[0, 2] == 0 and sim[0, 0] == 0
    cos = centroid_similarity(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    assert cos[0, 1] == pytest.approx(0) and cos[0, 2] == pytest.approx(2**-0.5) and cos[2, 2] == pytest.approx(1)


def test_class_centroids_are_mean_features() -> None:
    model = create_model("small_cnn", 2, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, width=4).eval()
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 5)
    centroids = class_centroids(model, images, labels, 2, batch_size=3)
    with torch.no_grad():
        features = model.features(images.float() / 255)
    np.testing.assert_allclose(centroids[1], features[labels == 1].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert class_weight_norms(model) == pytest.approx(model.head.weight.detach().norm(dim=1).numpy())


class Hyperplane(nn.Module):
    """Two classes split by w·x + b = 0: the distance of x to the boundary is known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.tensor([0.5, -1.0, 2.0, 1.5])
        self.b = -1.0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s, s], 1) / 2


@pytest.mark.parametrize(("norm", "dual"), [("Linf", 1), ("L2", 2)])
def test_boundary_distance_of_a_hyperplane(norm: str, dual: int) -> None:
    model = Hyperplane()
    x = 0.45 + 0.1 * torch.rand(16, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    score = x.flatten(1) @ model.w + model.b
    y = (score > 0).long()
    true = (score.abs() / model.w.norm(p=dual)).numpy()  # L∞ distance uses the L1 norm of w, L2 the L2 norm
    attack = PGD(eps=0.5, norm=norm, steps=30)
    found = boundary_distance(model, x, y, attack=attack, eps_max=0.5, iterations=12)
    assert np.all(found >= true - 1e-4) and np.all(found <= true + 2 * 0.5 / 2**12 + 1e-4)
