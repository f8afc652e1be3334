"""GPU benchmark for the diffusers node's models, at their real size, with no download.

For each model it builds the real diffusers pipeline from `configs/<model>.json` with random
weights (bf16 on CUDA) and random prompt embeddings of the text encoder's shape (the text
encoder runs once per take and is not timed), then, for 480p and 720p and for each variant
(plain; First Block Cache; torch.compile of the repeated blocks; both):

- seconds per denoising step: the median over the measured steps (the first step, which
  pays any compile, is excluded);
- seconds for 5 s of video at the model's default steps and fps: default steps x seconds
  per step + one measured VAE decode of that clip's latents (timed once per size);
- peak GPU memory of the run.

Cache figures come from a short run: First Block Cache skips more blocks late in a
50-step schedule than in the first few steps, so a full run is faster than they say.
It needs only torch, diffusers and transformers. The last line printed is one JSON object
with every figure; `--out` writes it to a file too. `--tiny` runs the same code on the tiny
pipelines on a CPU (the test suite runs it); its figures mean nothing for a GPU.

    python bench.py --device cuda --out bench-h100.json
    python bench.py --tiny
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import video_models  # noqa: E402

VARIANTS = ("plain", "fbc", "compile", "fbc+compile")
# Published end-to-end figures for 5 s of 480p (distilled, few-step models), for ratios.
PUBLISHED = {
    "wan2.1-t2v-1.3b": {
        "seconds_5s_480p": 5.0,
        "source": "FastVideo, distilled Wan 2.1 T2V 1.3B, one H200",
    },
    "wan2.1-i2v-14b": {
        "seconds_5s_480p": 14.0,
        "source": "LightX2V, distilled Wan 2.1 I2V 14B, 480p",
    },
}


def build_real(slug: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, dict]:
    """The real-size pipeline with random weights (no text encoder: embeddings are given)."""
    import diffusers

    config = json.loads((video_models.CONFIGS / f"{slug}.json").read_text())
    previous = torch.get_default_dtype()
    try:
        with torch.device(device):
            torch.set_default_dtype(dtype)
            transformer = getattr(diffusers, config["transformer_class"]).from_config(
                config["transformer"]
            )
            torch.set_default_dtype(torch.float32)
            vae = getattr(diffusers, config["vae_class"]).from_config(config["vae"])
    finally:
        torch.set_default_dtype(previous)
    transformer.eval()
    vae.eval()
    if config["vae_class"] != "AutoencoderKLWan":
        vae.to(dtype)
    scheduler = getattr(diffusers, config["scheduler_class"]).from_config(config["scheduler"])
    cls = getattr(diffusers, config["pipeline_class"])
    parts = dict(transformer=transformer, vae=vae, scheduler=scheduler)
    parts.update(text_encoder=None, tokenizer=None)
    if config["pipeline_class"] == "WanImageToVideoPipeline":
        parts.update(image_encoder=None, image_processor=None)
    pipe = cls(**parts, **config.get("pipeline_options", {}))
    pipe.set_progress_bar_config(disable=True)
    return pipe, config


def build_tiny(slug: str, device: torch.device) -> tuple[Any, dict]:
    spec = video_models.spec_for(slug)
    loaded = video_models.build(spec, tiny=True, device=device, dtype=torch.float32)
    pipe = loaded.pipes["i2v" if "t2v" not in spec.modes else "t2v"]
    multiple = spec.size_multiple
    config = {
        "pipeline_class": type(pipe).__name__,
        "sizes": {"480p": [multiple * 3, multiple * 2], "720p": [multiple * 4, multiple * 3]},
    }
    return pipe.to(device), config


def call_arguments(
    pipe: Any,
    config: dict,
    slug: str,
    width: int,
    height: int,
    frames: int,
    steps: int,
    device: torch.device,
    tiny: bool,
) -> dict:
    spec = video_models.spec_for(slug)
    arguments: dict[str, Any] = dict(
        width=width,
        height=height,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=spec.default_guidance,
        generator=torch.Generator(device=device).manual_seed(0),
        output_type="latent",
    )
    if tiny:
        arguments.update(prompt="a paper boat on a rainy street", max_sequence_length=32)
    else:
        dtype = pipe.transformer.dtype
        shape = (1, config["text_tokens"], config["text_dim"])
        arguments.update(
            prompt_embeds=torch.randn(shape, device=device, dtype=dtype),
            negative_prompt_embeds=torch.randn(shape, device=device, dtype=dtype),
        )
        if spec.family == "ltx":
            mask = torch.ones(shape[:2], device=device, dtype=torch.long)
            arguments.update(prompt_attention_mask=mask, negative_prompt_attention_mask=mask)
        if "image_embeds" in config:
            arguments["image_embeds"] = torch.randn(
                config["image_embeds"], device=device, dtype=dtype
            )
    if config["pipeline_class"].endswith("ImageToVideoPipeline") or "flf" in spec.modes:
        from PIL import Image

        arguments["image"] = Image.new("RGB", (width, height), (128, 128, 128))
        if "flf" in spec.modes:
            arguments["last_image"] = Image.new("RGB", (width, height), (90, 90, 90))
    return arguments


def timed_steps(pipe: Any, arguments: dict) -> tuple[list[float], Any]:
    stamps: list[float] = []

    def on_step(pipeline, index, timestep, tensors):
        _sync()
        stamps.append(time.perf_counter())
        return tensors

    _sync()
    start = time.perf_counter()
    latents = pipe(**arguments, callback_on_step_end=on_step).frames
    _sync()
    times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    return times, latents


def decode_seconds(
    pipe: Any, latents: torch.Tensor, family: str, frames: int, width: int, height: int
) -> float:
    """One VAE decode of a clip's latents, the way the pipeline ends."""
    vae = pipe.vae
    with torch.no_grad():
        if family == "ltx":
            latents = pipe._unpack_latents(
                latents,
                (frames - 1) // pipe.vae_temporal_compression_ratio + 1,
                height // pipe.vae_spatial_compression_ratio,
                width // pipe.vae_spatial_compression_ratio,
                pipe.transformer_spatial_patch_size,
                pipe.transformer_temporal_patch_size,
            )
        latents = latents.to(next(vae.parameters()).dtype)
        _sync()
        start = time.perf_counter()
        if family == "ltx":
            vae.decode(latents, None, return_dict=False)
        else:
            vae.decode(latents, return_dict=False)
        _sync()
        return time.perf_counter() - start


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _apply(pipe: Any, variant: str, compiled: set[int]) -> None:
    transformer = pipe.transformer
    if "fbc" in variant:
        from diffusers import FirstBlockCacheConfig

        transformer.enable_cache(FirstBlockCacheConfig(threshold=0.05))
    if "compile" in variant and id(transformer) not in compiled:
        transformer.compile_repeated_blocks(fullgraph=True)
        compiled.add(id(transformer))


def _reset(pipe: Any) -> None:
    if getattr(pipe.transformer, "is_cache_enabled", False):
        pipe.transformer.disable_cache()


def bench_model(slug: str, args: argparse.Namespace, device: torch.device) -> dict:
    spec = video_models.spec_for(slug)
    started = time.perf_counter()
    if args.tiny:
        pipe, config = build_tiny(slug, device)
    else:
        pipe, config = build_real(slug, device, torch.bfloat16)
    result: dict[str, Any] = {"build_seconds": round(time.perf_counter() - started, 2)}
    fps = spec.default_fps
    wanted, frames = spec.frames_for(5.0, fps)
    if args.tiny:
        frames = spec.frame_step * 2 + 1  # tiny: a short clip, the same code
    compiled: set[int] = set()
    for variant in args.variants:
        if "compile" in variant and args.tiny and not args.compile_on_cpu:
            continue
        for label, (width, height) in config["sizes"].items():
            if label not in args.sizes:
                continue
            _reset(pipe)
            _apply(pipe, variant, compiled)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            arguments = call_arguments(
                pipe, config, slug, width, height, frames, args.steps, device, args.tiny
            )
            with torch.inference_mode():
                times, latents = timed_steps(pipe, arguments)
                key = f"decode_{label}"
                if key not in result:
                    result[key] = round(
                        decode_seconds(pipe, latents, spec.family, frames, width, height), 3
                    )
            per_step = statistics.median(times[1:] if len(times) > 1 else times)
            figures = {
                "size": f"{width}x{height}",
                "frames": frames,
                "seconds_per_step": round(per_step, 4),
                "first_step_seconds": round(times[0], 3),
                "seconds_5s_default_steps": round(
                    spec.default_steps * per_step + result[f"decode_{label}"], 2
                ),
                "default_steps": spec.default_steps,
            }
            if torch.cuda.is_available():
                figures["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            published = PUBLISHED.get(slug)
            if published and label == "480p" and not args.tiny:
                figures["ratio_vs_published"] = round(
                    figures["seconds_5s_default_steps"] / published["seconds_5s_480p"], 1
                )
                figures["published"] = published["source"]
            result[f"{variant}/{label}"] = figures
            print(f"{slug} {variant} {label}: {json.dumps(figures)}", flush=True)
    _reset(pipe)
    del pipe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny pipelines (CPU tests)")
    parser.add_argument("--models", nargs="+", default=list(video_models.SPECS)[:4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--sizes", nargs="+", default=["480p", "720p"], choices=["480p", "720p"])
    parser.add_argument("--steps", type=int, default=4, help="steps run per measurement")
    parser.add_argument("--compile-on-cpu", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.tiny:
        torch.set_num_threads(1)
    elif device.type != "cuda":
        parser.error("real-size models need a CUDA device (or use --tiny)")
    began = time.perf_counter()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "tiny": args.tiny,
        "torch": torch.__version__,
        "models": {slug: bench_model(slug, args, device) for slug in args.models},
    }
    report["total_seconds"] = round(time.perf_counter() - began, 1)
    line = json.dumps(report, sort_keys=True)
    if args.out:
        args.out.write_text(line + "\n")
    print(line, flush=True)
    return report


if __name__ == "__main__":
    main()
