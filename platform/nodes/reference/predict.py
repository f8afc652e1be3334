"""Retake's reference GPU node: a Cog predictor that renders real H.264 video on the CPU.

It speaks exactly the protocol a real video model node speaks (the Cog HTTP server runs it),
so the platform can be developed and tested end to end without a GPU. Every take is a
deterministic function of its inputs: moving gradients and soft shapes whose colours and
motion come from a hash of prompt, negative prompt and seed, plus a little seeded grain so
the bitrate looks like a real model's output. With a reference image the first frame is
that image (image-to-video); with a last frame too, the video ends on it.

Progress is printed as lines `progress: <0-100>%`; Cog forwards them in the prediction's
`logs` (and in `logs` webhooks), where the platform parses the latest one.
"""

import asyncio
import hashlib
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from cog import BasePredictor, ExperimentalFeatureWarning, Input, Path, current_scope
from PIL import Image

MAX_SIDE = 1920
MAX_SECONDS = 20.0
GRAIN = 6
# x264 is bit-exact given its input, except for its macroblock-tree rate control: the SIMD
# versions of mbtree_propagate_cost/list (used by every preset but ultrafast) make the
# encoded frames differ from run to run on the same input. `cpu-independent=1` swaps in
# x264's C versions of exactly those two functions, so the same input gives the same bytes
# across runs, processes and CPUs; one thread keeps frame order and slicing fixed too.
ENCODER_OPTIONS = {
    "crf": "20",
    "preset": "veryfast",
    "threads": "1",
    "x264-params": "cpu-independent=1",
}
# Rendered files are kept this long, so a repeated PUT of a finished take is answered
# from disk (see Predictor.predict); older ones are deleted.
KEEP_SECONDS = 3600


class RenderCancelled(Exception):
    """The caller asked the render to stop."""


def _rng_seed(prompt: str, negative_prompt: str, seed: int) -> int:
    digest = hashlib.sha256(f"{prompt}\x00{negative_prompt}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _load_image(path: str, width: int, height: int) -> np.ndarray:
    """Scale and centre-crop an image to cover width x height (like a model's resize)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = max(width / img.width, height / img.height)
        size = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        left = (img.width - width) // 2
        top = (img.height - height) // 2
        img = img.crop((left, top, left + width, top + height))
        return np.asarray(img, dtype=np.float32)


class _Scene:
    """Procedural scene: a drifting two-colour gradient with soft moving discs."""

    def __init__(self, seed: int, width: int, height: int) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.width = width
        self.height = height
        self.colors = rng.uniform(20, 235, size=(2, 3)).astype(np.float32)
        self.angle = rng.uniform(0, 2 * math.pi)
        self.spin = rng.uniform(-0.6, 0.6)
        self.bands = rng.uniform(0.6, 2.0)
        self.flow = rng.uniform(0.1, 0.4)
        count = int(rng.integers(3, 7))
        self.discs = [
            {
                "color": rng.uniform(0, 255, size=3).astype(np.float32),
                "cx": rng.uniform(0.2, 0.8),
                "cy": rng.uniform(0.2, 0.8),
                "ax": rng.uniform(0.05, 0.3),
                "ay": rng.uniform(0.05, 0.3),
                "wx": rng.uniform(0.3, 1.5),
                "wy": rng.uniform(0.3, 1.5),
                "px": rng.uniform(0, 2 * math.pi),
                "py": rng.uniform(0, 2 * math.pi),
                "r": rng.uniform(0.06, 0.18),
            }
            for _ in range(count)
        ]
        self.xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
        self.ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None] * (height / width)

    def frame(self, t: float) -> np.ndarray:
        a = self.angle + self.spin * t
        g = math.cos(a) * self.xs + math.sin(a) * self.ys
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * (g * self.bands + t * self.flow))
        c0, c1 = self.colors
        img = c0 + (c1 - c0) * mix[:, :, None]
        for d in self.discs:
            cx = (d["cx"] + d["ax"] * math.sin(d["wx"] * t + d["px"])) * self.width
            cy = (d["cy"] + d["ay"] * math.sin(d["wy"] * t + d["py"])) * self.height
            r = d["r"] * self.width
            edge = max(2.0, r * 0.15)
            x0, x1 = max(0, int(cx - r - edge)), min(self.width, int(cx + r + edge) + 1)
            y0, y1 = max(0, int(cy - r - edge)), min(self.height, int(cy + r + edge) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
            yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
            mask = np.clip((r - np.sqrt(xx * xx + yy * yy)) / edge, 0.0, 1.0)[:, :, None]
            patch = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = patch + (d["color"] - patch) * mask
        return img


def render_video(
    path: str,
    *,
    prompt: str,
    negative_prompt: str = "",
    seed: int = 0,
    width: int = 832,
    height: int = 480,
    fps: int = 16,
    seconds: float = 5.0,
    image: str | None = None,
    last_frame: str | None = None,
    speed: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Render the take to `path` (MP4, H.264, yuv420p) and return the number of frames.

    Deterministic: the same arguments give byte-identical files. `speed` is wall-clock
    seconds spent per second of video, to emulate GPU time (0 = as fast as possible).
    """
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for H.264, got {width}x{height}")
    if last_frame is not None and image is None:
        raise ValueError("last_frame needs image (the first frame) as well")
    frames = max(1, round(seconds * fps))
    base_seed = _rng_seed(prompt, negative_prompt, seed)
    scene = _Scene(base_seed, width, height)
    first = _load_image(image, width, height) if image else None
    last = _load_image(last_frame, width, height) if last_frame else None
    started = time.monotonic()
    reported = -1
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = ENCODER_OPTIONS
        for index in range(frames):
            if cancel is not None and cancel.is_set():
                raise RenderCancelled()
            t = index / fps
            img = scene.frame(t)
            grain_rng = np.random.default_rng((base_seed, index))
            img += grain_rng.integers(-GRAIN, GRAIN + 1, size=img.shape[:2], dtype=np.int16)[
                :, :, None
            ]
            if first is not None:
                progress = index / (frames - 1) if frames > 1 else 0.0
                if last is not None:
                    # First and last frames are the references; motion in between.
                    base = first + (last - first) * progress
                    weight = 0.6 * math.sin(math.pi * progress)
                else:
                    base = first
                    weight = min(1.0, progress * 1.5) * 0.7
                img = base + (img - base) * weight
            pixels = np.clip(img, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
            if speed > 0:
                due = started + (index + 1) / fps * speed - time.monotonic()
                if due > 0 and cancel is not None and cancel.wait(due):
                    raise RenderCancelled()
                if due > 0 and cancel is None:
                    time.sleep(due)
            percent = (index + 1) * 100 // frames
            if on_progress is not None and percent != reported:
                reported = percent
                on_progress(percent)
        for packet in stream.encode():
            container.mux(packet)
    return frames


class Predictor(BasePredictor):
    def setup(self) -> None:
        """Nothing to load: a real node would put its weights on the GPU here."""
        self.out_dir = tempfile.mkdtemp(prefix="retake-reference-")

    async def predict(
        self,
        prompt: str = Input(description="What happens in the shot", min_length=1),
        negative_prompt: str = Input(description="What to avoid", default=""),
        seed: int = Input(description="Same seed and inputs, same video", default=0, ge=0),
        width: int = Input(description="Width in pixels (even)", default=832, ge=64, le=MAX_SIDE),
        height: int = Input(description="Height in pixels (even)", default=480, ge=64, le=MAX_SIDE),
        fps: int = Input(description="Frames per second", default=16, ge=1, le=60),
        seconds: float = Input(
            description="Duration in seconds", default=5.0, ge=0.1, le=MAX_SECONDS
        ),
        image: Path | None = Input(description="Reference image: the first frame", default=None),
        last_frame: Path | None = Input(description="Image the video ends on", default=None),
        speed: float = Input(
            description="Wall seconds per second of video (emulated GPU time; 0 = fast)",
            default=0.0,
            ge=0,
            le=60,
        ),
    ) -> Path:
        """Render one take. Async so the node can run several (COG_MAX_CONCURRENCY)."""
        _prune(self.out_dir, KEEP_SECONDS)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        params = dict(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            seconds=seconds,
            image=str(image) if image else None,
            last_frame=str(last_frame) if last_frame else None,
        )
        prediction_id = _prediction_id()
        if prediction_id:
            # Cog forgets a prediction once it completes, so the same PUT again starts it
            # afresh: answer it from the file already rendered for this id and inputs.
            key = _inputs_key(params)
            out = os.path.join(self.out_dir, prediction_id, key, f"{prediction_id}.mp4")
            if os.path.exists(out):
                print(f"already rendered {os.path.basename(out)}", flush=True)
                _emit("progress: 100%\n")
                return Path(out)
        else:
            out = os.path.join(self.out_dir, uuid.uuid4().hex, "output.mp4")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        print(f"rendering {width}x{height} {fps}fps {seconds}s seed={seed}", flush=True)

        partial = out + ".part"

        def report(percent: int) -> None:
            loop.call_soon_threadsafe(_emit, f"progress: {percent}%\n")

        try:
            await asyncio.to_thread(
                render_video, partial, **params, speed=speed, on_progress=report, cancel=cancel
            )
        except BaseException:
            # Cancelled (CancelledError) or failed: stop the render thread, drop the file.
            cancel.set()
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        os.replace(partial, out)
        return Path(out)


def _prune(folder: str, keep_seconds: float) -> None:
    """Delete per-prediction folders older than keep_seconds."""
    cutoff = time.time() - keep_seconds
    for entry in os.scandir(folder):
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry.path, ignore_errors=True)


def _inputs_key(params: dict) -> str:
    """Hash of the inputs, with reference images by content (Cog downloads each afresh)."""
    digest = hashlib.sha256()
    for name, value in sorted(params.items()):
        digest.update(f"{name}={value if name not in ('image', 'last_frame') else ''};".encode())
        if name in ("image", "last_frame") and value:
            with open(value, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()[:16]


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
