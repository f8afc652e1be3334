"""Retake's diffusers node: a Cog predictor running a real open video model.

One model per node process (`RETAKE_NODE_MODEL`, e.g. `wan2.1-t2v-1.3b`). Weights are
loaded once in `setup()` from `MODEL_PATH` (a diffusers-format folder) or the local
Hugging Face cache, offline; with `RETAKE_NODE_TINY=1` the same pipelines are built from
small configs with random weights instead (tests, CPU machines). The input schema is the
reference node's plus `steps` and `guidance`.

While it denoises, the predictor prints `progress: N%` once per step (the platform parses
the latest from the prediction's logs) and, every `RETAKE_PREVIEW_EVERY` steps, PUTs a
small animated WebP of the current latents to `RETAKE_PREVIEW_URL` (the platform's ingest
endpoint). Cancelling stops at the next step and frees the GPU's cached memory before the
slot is free again.
"""

import asyncio
import contextvars
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import av
import latent_preview
import numpy as np
import torch
import video_models
from cog import BasePredictor, ExperimentalFeatureWarning, Input, Path, current_scope
from PIL import Image
from pydantic import Field

SPEC = video_models.spec_for(os.environ.get("RETAKE_NODE_MODEL", "wan2.1-t2v-1.3b"))
MAX_SIDE = 1920
MAX_SECONDS = 20.0
KEEP_SECONDS = 3600
# Progress: denoising is 0-90 %, decoding and encoding the rest.
DENOISE_SHARE = 90
TINY_MAX_SEQUENCE_LENGTH = 32


class Cancelled(Exception):
    """The prediction was cancelled; raised from the step callback to stop denoising."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _device() -> torch.device:
    wanted = os.environ.get("RETAKE_NODE_DEVICE", "")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dtype(device: torch.device) -> torch.dtype:
    name = os.environ.get("RETAKE_NODE_DTYPE") or ("bf16" if device.type == "cuda" else "fp32")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _size_field(default: int, what: str) -> Any:
    return Field(
        default=default,
        ge=SPEC.size_multiple * 2,
        le=MAX_SIDE,
        multiple_of=SPEC.size_multiple,
        description=f"{what} in pixels: a multiple of {SPEC.size_multiple} for {SPEC.slug}",
    )


def _load_image(path: str, width: int, height: int) -> Image.Image:
    """Scale and centre-crop to cover width x height (the reference node does the same)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = max(width / img.width, height / img.height)
        size = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        left = (img.width - width) // 2
        top = (img.height - height) // 2
        return img.crop((left, top, left + width, top + height))


def encode_mp4(path: str, frames: np.ndarray, fps: int) -> None:
    """(n, h, w, 3) uint8 frames -> H.264 yuv420p MP4, single-threaded (deterministic)."""
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        # One thread, and x264's C mbtree (its SIMD one differs from run to run): the same
        # frames always give the same bytes (as the reference node does).
        stream.options = {
            "crf": "18",
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "cpu-independent=1",
        }
        for index, pixels in enumerate(frames):
            frame = yuv420p_frame(pixels)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def yuv420p_frame(rgb: np.ndarray) -> av.VideoFrame:
    """(h, w, 3) uint8 RGB -> a yuv420p frame (BT.601, limited range), every byte set.

    Converted here rather than by swscale, and written into planes whose row padding is
    zeroed: x264 reads a little past each row, and PyAV leaves that padding as whatever
    the allocator had, which made the same frames encode to different files now and then.
    """
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    height, width = y.shape

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, values in zip(frame.planes, (y, half(u), half(v)), strict=True):
        padded = np.zeros((plane.height, plane.line_size), dtype=np.uint8)
        padded[:, : plane.width] = np.clip(np.rint(values), 0, 255)
        plane.update(padded)
    return frame


class PreviewSender:
    """PUTs previews to the platform on a background thread; drops one if the last is busy."""

    def __init__(self, base_url: str, token: str = "") -> None:
        self.base_url = base_url
        self.token = token
        self._busy = threading.Lock()

    def send(self, prediction_id: str, data: bytes) -> None:
        if not self._busy.acquire(blocking=False):
            return
        threading.Thread(target=self._put, args=(prediction_id, data), daemon=True).start()

    def _put(self, prediction_id: str, data: bytes) -> None:
        try:
            request = urllib.request.Request(
                f"{self.base_url}{prediction_id}.preview.webp",
                data=data,
                method="PUT",
                headers={"Content-Type": "image/webp", "X-Prediction-ID": prediction_id},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError as exc:
            print(f"preview upload failed: {exc}", file=sys.stderr, flush=True)
        finally:
            self._busy.release()


class Predictor(BasePredictor):
    def setup(self) -> None:
        """Load the model once: weights on the device, GPU options applied."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.out_dir = tempfile.mkdtemp(prefix="retake-diffusers-")
        self.device = _device()
        if self.device.type == "cpu":
            # oneDNN picks kernels by memory alignment, so on a CPU the same take could
            # come out a little different from one run to the next; plain ATen kernels don't.
            torch.backends.mkldnn.enabled = False
        tiny = _flag("RETAKE_NODE_TINY")
        # Toy models on a shared CPU run fastest on one thread; GPUs ignore this.
        self.threads = int(os.environ.get("RETAKE_NODE_THREADS") or (1 if tiny else 0))
        if self.threads:
            torch.set_num_threads(self.threads)
        # Every take runs on this one thread with the same torch thread settings: CPU
        # kernels pick their blocking by thread count, so a take's numbers (and its frames)
        # would otherwise depend on which pool thread ran it.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="denoise")
        # The tiny text encoders need no 512-token prompts.
        self.max_sequence_length = TINY_MAX_SEQUENCE_LENGTH if tiny else None
        dtype = torch.float32 if tiny else _dtype(self.device)
        started = time.monotonic()
        self.model = video_models.build(SPEC, tiny=tiny, device=self.device, dtype=dtype)
        apply_gpu_options(self.model)
        self.projection = latent_preview.LatentProjection.fit(self.model.any_pipe, SPEC.family)
        self.preview_every = int(os.environ.get("RETAKE_PREVIEW_EVERY", "5"))
        url = os.environ.get("RETAKE_PREVIEW_URL", "")
        self.previews = PreviewSender(url) if url and self.preview_every > 0 else None
        # One denoise at a time per process, whatever cog's slots say.
        self.gpu = threading.Lock()
        print(
            f"loaded {SPEC.slug} ({'tiny random weights' if tiny else 'weights'}) on "
            f"{self.device} {dtype} in {time.monotonic() - started:.1f}s",
            flush=True,
        )

    async def predict(
        self,
        prompt: str = Input(description="What happens in the shot", min_length=1),
        negative_prompt: str = Input(description="What to avoid", default=""),
        seed: int = Input(description="Same seed and inputs, same video", default=0, ge=0),
        width: int = _size_field(SPEC.native_sizes[0][0], "Width"),
        height: int = _size_field(SPEC.native_sizes[0][1], "Height"),
        fps: int = Input(description="Frames per second", default=SPEC.default_fps, ge=1, le=60),
        seconds: float = Input(
            description="Duration in seconds", default=5.0, ge=0.1, le=MAX_SECONDS
        ),
        image: Path | None = Input(description="Reference image: the first frame", default=None),
        last_frame: Path | None = Input(description="Image the video ends on", default=None),
        steps: int | None = Input(
            description=f"Denoising steps (default {SPEC.default_steps})",
            default=None,
            ge=1,
            le=200,
        ),
        guidance: float | None = Input(
            description=f"Classifier-free guidance scale (default {SPEC.default_guidance})",
            default=None,
            ge=0,
            le=20,
        ),
    ) -> Path:
        """Generate one take; async so cog can cancel it while the pipeline runs in a thread."""
        _prune(self.out_dir, KEEP_SECONDS)
        wanted, generated = SPEC.frames_for(seconds, fps)
        if generated > SPEC.max_frames:
            raise ValueError(
                f"{SPEC.slug} makes at most {SPEC.max_frames} frames; "
                f"{seconds}s at {fps} fps needs {generated}"
            )
        mode = "flf" if last_frame else "i2v" if image else "t2v"
        if mode not in SPEC.modes:
            served = {"t2v": "text only", "i2v": "a first frame", "flf": "first and last frames"}
            raise ValueError(
                f"{SPEC.slug} cannot generate from {served[mode]}; it takes "
                + ", ".join(served[m] for m in SPEC.modes)
            )
        if last_frame and not image:
            raise ValueError("last_frame needs image (the first frame) as well")
        prediction_id = _prediction_id() or uuid.uuid4().hex
        out = os.path.join(self.out_dir, prediction_id, f"{prediction_id}.mp4")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        job = dict(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            wanted=wanted,
            generated=generated,
            image=str(image) if image else None,
            last_frame=str(last_frame) if last_frame else None,
            steps=steps or SPEC.default_steps,
            guidance=SPEC.default_guidance if guidance is None else guidance,
            prediction_id=prediction_id,
        )
        print(
            f"generating {SPEC.slug} {mode} {width}x{height} {generated} frames "
            f"({wanted} kept) {job['steps']} steps seed={seed}",
            flush=True,
        )
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def emit(line: str) -> None:
            loop.call_soon_threadsafe(_emit, line)

        # The prediction's context (cog's log scope) goes along, as asyncio.to_thread does.
        context = contextvars.copy_context()
        work = loop.run_in_executor(
            self.executor, context.run, self._generate, out, job, mode, cancel, emit
        )
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # Stop at the next step, and keep the slot until the GPU is really free.
            cancel.set()
            try:
                await work
            except Cancelled:
                pass
            raise
        return Path(out)

    def _generate(self, out: str, job: dict, mode: str, cancel: threading.Event, emit) -> None:
        steps = job["steps"]
        pipe = self.model.pipes["t2v" if mode == "t2v" else "i2v"]
        prediction_id = job["prediction_id"]
        if self.threads:
            torch.set_num_threads(self.threads)

        def on_step(pipeline: Any, index: int, timestep: Any, tensors: dict) -> dict:
            if cancel.is_set():
                raise Cancelled()
            done = index + 1
            emit(f"progress: {done * DENOISE_SHARE // steps}%\n")
            if self.previews and (done % self.preview_every == 0 or done == 1) and done < steps:
                latents = latent_preview.unpack(
                    pipeline,
                    SPEC.family,
                    tensors["latents"],
                    job["generated"],
                    job["height"],
                    job["width"],
                )
                frames = self.projection.frames(latents)
                self.previews.send(prediction_id, latent_preview.encode_webp(frames))
            return tensors

        arguments: dict[str, Any] = dict(
            prompt=job["prompt"],
            negative_prompt=job["negative_prompt"] or None,
            width=job["width"],
            height=job["height"],
            num_frames=job["generated"],
            num_inference_steps=steps,
            guidance_scale=job["guidance"],
            generator=torch.Generator(device=self.model.device).manual_seed(job["seed"]),
            output_type="np",
            callback_on_step_end=on_step,
            callback_on_step_end_tensor_inputs=["latents"],
        )
        if self.max_sequence_length:
            arguments["max_sequence_length"] = self.max_sequence_length
        if SPEC.family == "ltx":
            arguments["frame_rate"] = job["fps"]
        if job["image"]:
            arguments["image"] = _load_image(job["image"], job["width"], job["height"])
        if job["last_frame"]:
            arguments["last_image"] = _load_image(job["last_frame"], job["width"], job["height"])
        partial = out + ".part"
        try:
            with self.gpu, torch.inference_mode():
                emit("progress: 0%\n")
                video = pipe(**arguments).frames[0]
                if cancel.is_set():
                    raise Cancelled()
                frames = (np.clip(video[: job["wanted"]], 0, 1) * 255).round().astype(np.uint8)
                emit(f"progress: {DENOISE_SHARE + 5}%\n")
                encode_mp4(partial, frames, job["fps"])
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        finally:
            free_memory(self.model.device)
        os.replace(partial, out)
        emit("progress: 100%\n")


def apply_gpu_options(model: video_models.Loaded) -> None:
    """SDPA attention (diffusers' default), cache hook, torch.compile, CPU offload."""
    backend = os.environ.get("RETAKE_NODE_ATTENTION", "")
    cache = os.environ.get("RETAKE_NODE_CACHE", "").lower()
    offload = os.environ.get("RETAKE_NODE_OFFLOAD", "").lower()
    transformer = model.any_pipe.transformer
    if backend:
        transformer.set_attention_backend(backend)
    if cache == "fbc":
        from diffusers import FirstBlockCacheConfig

        threshold = float(os.environ.get("RETAKE_NODE_CACHE_THRESHOLD", "0.05"))
        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    elif cache:
        raise ValueError(f"RETAKE_NODE_CACHE={cache!r}: use 'fbc' (First Block Cache) or nothing")
    if offload == "model":
        for pipe in model.pipes.values():
            pipe.enable_model_cpu_offload(device=model.device)
    elif offload:
        raise ValueError(f"RETAKE_NODE_OFFLOAD={offload!r}: use 'model' or leave it empty")
    else:
        for pipe in model.pipes.values():
            pipe.to(model.device)
    if _flag("RETAKE_NODE_COMPILE"):
        # Regional compilation: each repeated transformer block compiles once.
        transformer.compile_repeated_blocks(fullgraph=True)


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _prune(folder: str, keep_seconds: float) -> None:
    cutoff = time.time() - keep_seconds
    for entry in os.scandir(folder):
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry.path, ignore_errors=True)


def _emit(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def _prediction_id() -> str | None:
    """The prediction id the platform chose (the take id), to name the uploaded file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalFeatureWarning)
        try:
            value = current_scope().context.get("id")
        except RuntimeError:
            return None
    if value and all(c.isalnum() or c in "-_" for c in value):
        return value
    return None
