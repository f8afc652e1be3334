"""Live previews: a cheap linear latent->RGB projection, a few frames, a few KB.

Decoding latents with the VAE every few steps would cost as much as a step. Instead, as
ComfyUI does for its latent previews, each latent channel vector is mapped to a colour by
one linear map (plus a bias). We fit that map once, at start-up, from the model's own VAE:
encode a grid of solid colours, normalise the latents the way the pipeline does, and solve
a ridge least-squares problem from latent channels to RGB. No table of magic numbers, and
it follows the weights actually loaded.
"""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import torch
from PIL import Image

PREVIEW_FRAMES = 4
PREVIEW_MAX_SIDE = 160


class LatentProjection:
    """latents (C channels) -> RGB in [0, 1], fitted from the VAE."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight = weight  # (C, 3)
        self.bias = bias  # (3,)

    @classmethod
    def fit(cls, pipe: Any, family: str) -> LatentProjection:
        vae = pipe.vae
        levels = (0.0, 0.5, 1.0)
        colours = torch.tensor(list(itertools.product(levels, repeat=3)), dtype=torch.float32)
        factor = getattr(pipe, "vae_scale_factor_spatial", None)
        factor = factor or pipe.vae_spatial_compression_ratio
        side = int(factor) * 2
        param = next(vae.parameters())
        pixels = colours[:, :, None, None, None].expand(-1, -1, 1, side, side) * 2 - 1
        with torch.no_grad():
            latents = []
            for one in pixels:  # one at a time: some VAEs keep a per-call temporal cache
                encoded = vae.encode(one[None].to(param.device, param.dtype)).latent_dist.mode()
                latents.append(_normalise(encoded.float().cpu(), vae, family))
            z = torch.cat(latents).mean(dim=(2, 3, 4))  # (27, C)
        design = torch.cat([z, torch.ones(len(z), 1)], dim=1)
        ridge = 1e-3 * torch.eye(design.shape[1])
        solution = torch.linalg.solve(design.T @ design + ridge, design.T @ colours)
        return cls(solution[:-1], solution[-1])

    def frames(self, latents: torch.Tensor) -> np.ndarray:
        """(C, F, H, W) latents -> (n, h, w, 3) uint8, a few frames spread over the clip."""
        latents = latents.detach().float().cpu()
        count = latents.shape[1]
        last = max(1, PREVIEW_FRAMES - 1)
        picks = sorted({round(i * (count - 1) / last) for i in range(PREVIEW_FRAMES)})
        chosen = latents[:, picks]  # (C, n, H, W)
        rgb = torch.einsum("cnhw,cr->nhwr", chosen, self.weight) + self.bias
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _normalise(z: torch.Tensor, vae: Any, family: str) -> torch.Tensor:
    """What the pipelines denoise: Wan and LTX normalise VAE latents by per-channel stats."""
    config = vae.config
    if family == "wan":
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
        return (z - mean) / std
    mean = vae.latents_mean.detach().float().cpu().view(1, -1, 1, 1, 1)
    std = vae.latents_std.detach().float().cpu().view(1, -1, 1, 1, 1)
    return (z - mean) * config.scaling_factor / std


def unpack(pipe: Any, family: str, latents: torch.Tensor, frames: int, height: int, width: int):
    """The step's latents as (C, F, H, W) for the first video of the batch."""
    if family == "ltx":
        # LTX denoises patchified tokens (B, seq, C): undo the packing.
        latent_frames = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
        latents = pipe._unpack_latents(
            latents,
            latent_frames,
            height // pipe.vae_spatial_compression_ratio,
            width // pipe.vae_spatial_compression_ratio,
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )
    return latents[0]


def encode_webp(frames: np.ndarray, fps: float = 4.0) -> bytes:
    """An animated WebP of the preview frames, scaled up to at most PREVIEW_MAX_SIDE."""
    images = [Image.fromarray(frame) for frame in frames]
    width, height = images[0].size
    scale = PREVIEW_MAX_SIDE / max(width, height)
    if scale >= 2 or scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        images = [img.resize(size, Image.Resampling.BILINEAR) for img in images]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=int(1000 / fps),
        loop=0,
        quality=60,
        method=4,
    )
    return buffer.getvalue()
