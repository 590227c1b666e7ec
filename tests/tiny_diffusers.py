"""A tiny text-conditioned Stable Diffusion's parts from configs, random weights, local tokenizer (no download).

Shared by tests/test_capture.py (every scheduler under capture) and tests/test_docs_examples.py
(the docs' pipeline example, loaded from a saved folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch

#: The UNet's configuration; a subclass with a linear prediction reuses it.
UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,
)


def tokenizer(folder: Path):
    """A CLIP tokenizer over single letters, written to ``folder``."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tok.model_max_length = 16
    return tok


def parts(folder: Path) -> dict:
    """Text encoder, tokenizer, VAE and UNet, seeded."""
    import transformers

    torch.manual_seed(0)
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=54,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        norm_num_groups=4,
        sample_size=8,
    ).eval()
    return dict(
        text_encoder=text, tokenizer=tokenizer(folder), vae=vae, unet=diffusers.UNet2DConditionModel(**UNET).eval()
    )
