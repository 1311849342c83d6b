"""classwise: per-class accuracy and adversarial robustness of image classifiers."""

__version__ = "0.1.0"
