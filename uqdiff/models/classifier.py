"""A small Fashion-MNIST classifier: the attribute detector of bias audits.

Input: images (B, 1, 28, 28) in [-1, 1] (32 x 32 inputs are center-cropped);
output: logits over the 10 classes. Weights ship as safetensors inside the
package (no pickle) and load offline.
"""

from __future__ import annotations

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
