"""The pretrained terrain consistency model of ``adaptive-terrain-diffusion`` as a uqdiff generator.

The package ships a consistency-distilled UNet as an ONNX file (sigma_max = 80,
1 x 128 x 128 heightmaps in [-1, 1] model space, conditioned on a difficulty
level 1..100). One-step sampling is x = D(sigma_max z, sigma_max, difficulty);
multi-step consistency sampling re-noises the estimate to each lower sigma in
``sigmas`` and denoises again. The re-noising noises are part of the noise
stream, so the noise shape is (1 + len(sigmas), 128, 128): antithetic pairs
negate the whole stream.
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Sequence

import numpy as np
import torch

SIZE = 128
SIGMA_MAX = 80.0
SIGMA_MIN = 0.002
NUM_DIFFICULTIES = 100
ONNX_RESOURCE = "weights/terrain_consistency_unet_difficulty100.onnx"


def terrain_model_path() -> str:
    """Path of the ONNX file inside the installed package (no download)."""
    try:
        root = importlib.resources.files("terrain_diffusion")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the terrain model needs 'pip install --no-deps adaptive-terrain-diffusion==0.4.2' and the terrain "
            "extra, pip install 'uqdiff[terrain]' (scripts/setup.sh terrain does both)"
        ) from None
    path = root.joinpath(ONNX_RESOURCE)
    if not path.is_file():
        raise FileNotFoundError(f"{ONNX_RESOURCE} is missing from the terrain_diffusion package; reinstall it")
    return str(path)


class TerrainGenerator:
    """Noise (B, 1 + len(sigmas), 128, 128) -> heightmaps (B, 1, 128, 128) in model space [-1, 1].

    ``difficulty`` is an int in 1..100 (the model's condition). ``sigmas`` are
    the decreasing noise levels of extra consistency steps (empty: one step).
    Runs through onnxruntime on the CPU, or CUDA when asked and available.
    """

    value_range = (-1.0, 1.0)

    def __init__(
        self,
        difficulty: int = 50,
        *,
        sigmas: Sequence[float] = (),
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        if (
            isinstance(difficulty, bool)
            or not isinstance(difficulty, (int, np.integer))
            or not 1 <= difficulty <= NUM_DIFFICULTIES
        ):
            raise ValueError(f"difficulty must be an integer in 1..{NUM_DIFFICULTIES}, got {difficulty!r}")
        sig = [float(s) for s in sigmas]
        if any(not SIGMA_MIN < s < SIGMA_MAX for s in sig) or any(a <= b for a, b in zip(sig, sig[1:])):
            raise ValueError(f"sigmas must decrease strictly inside ({SIGMA_MIN}, {SIGMA_MAX}), got {list(sigmas)}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(
                "the terrain model needs the terrain extra: pip install 'uqdiff[terrain]' and "
                "pip install --no-deps adaptive-terrain-diffusion==0.4.2 (scripts/setup.sh terrain does both)"
            ) from None

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("device='cuda' needs onnxruntime-gpu with a working CUDA provider")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.session = ort.InferenceSession(terrain_model_path(), sess_options=options, providers=providers)
        self.difficulty = int(difficulty)
        self.sigmas = tuple(sig)
        self.noise_shape = (1 + len(sig), SIZE, SIZE)
        #: the draws the noise packs: x_T, then one noise per refinement step (fed slot by slot)
        self.noise_layout = ((1, SIZE, SIZE),) * (1 + len(sig))
        self.device = torch.device("cpu")  # noise is handed over on the CPU; onnxruntime places it

    def denoise(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        """The consistency function D(x, sigma, difficulty) on a batch (B, 1, 128, 128)."""
        b = len(noisy)
        label = (self.difficulty - 1) / (NUM_DIFFICULTIES - 1)
        feeds = {
            "noisy": np.ascontiguousarray(noisy, dtype=np.float32),
            "sigma": np.full(b, sigma, dtype=np.float32),
            "difficulty": np.full(b, label, dtype=np.float32),
        }
        return self.session.run(["denoised"], feeds)[0]

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        z = noise.detach().to("cpu", torch.float32).numpy()
        if z.shape[1:] != self.noise_shape:
            raise ValueError(
                f"terrain noise must have shape (B, {', '.join(map(str, self.noise_shape))}), got {z.shape}"
            )
        x = self.denoise(SIGMA_MAX * z[:, :1], SIGMA_MAX)
        for i, sigma in enumerate(self.sigmas, start=1):
            x = self.denoise(x + math.sqrt(sigma**2 - SIGMA_MIN**2) * z[:, i : i + 1], sigma)
        return torch.from_numpy(np.ascontiguousarray(x))

    def __repr__(self) -> str:
        return f"TerrainGenerator(difficulty={self.difficulty}, sigmas={list(self.sigmas)})"
