"""A small Fashion-MNIST classifier: the attribute detector of bias audits.

Input: images (B, 1, 28, 28) in [-1, 1] (32 x 32 inputs are center-cropped);
output: logits over the 10 classes. Weights ship as safetensors inside the
package (no pickle) and load offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CLASSIFIER_FILE = ASSETS / "fashion_mnist_classifier.safetensors"


class FashionClassifier(nn.Module):
    """Three 3x3 conv layers and one linear layer (about 17K parameters, 68 KB)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32 * 3 * 3, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 288 penultimate activations (B, 288): a learned feature map for gallery similarity (MSS, Vendi)."""
        if x.shape[-1] == 32:
            x = x[..., 2:30, 2:30]
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 7
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # 3
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, 10)."""
        return self(x).softmax(dim=-1)


def load_fashion_classifier(
    path: str | Path = CLASSIFIER_FILE, device: str | torch.device = "cpu"
) -> FashionClassifier:
    """The committed classifier, in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; train it with training/train_fashion_classifier.py")
    model = FashionClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def classifier_features(
    model: FashionClassifier | None = None, *, device: str | torch.device = "cpu"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The classifier's 288 penultimate activations as a differentiable feature map, (B, 1, 28, 28) -> (B, 288).

    For the repulsion kernel of :class:`uqdiff.samplers.RSD` (``features=``), in place of the
    DINO features of the paper: two particles far apart in these features look like different
    garments to a trained network, where pixel distance also counts shifts and noise. Gradients
    flow to the images only (the weights are frozen, the model in eval mode); images of another
    dtype (a float64 prior's particles) run in the model's and get features in their own.

    Parameters
    ----------
    model : FashionClassifier, optional
        Default: the committed classifier (:func:`load_fashion_classifier`).
    device : str or torch.device
        Where the default classifier is loaded.
    """
    model = load_fashion_classifier(device=device) if model is None else model
    model.eval().requires_grad_(False)
    dtype = next(model.parameters()).dtype

    def features(images: torch.Tensor) -> torch.Tensor:
        return model.features(images.to(dtype)).to(images.dtype)

    return features
