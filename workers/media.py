"""What the platform does with a video file once a node or provider delivers it.

`probe` measures it (billing charges the measured duration, never what a node claims),
`make_poster` and `make_preview` make the cheap gallery assets, `apply_watermark` burns the
"Retake" mark into outputs of plans that carry one. Expiring download links are made
by `config.media_links`.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import av
import numpy as np
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw, ImageFont

Source = str | os.PathLike | IO[bytes]

# Demuxers that open still images (ffmpeg treats an image as a one-frame video).
IMAGE_FORMATS = {"image2", "gif", "apng", "webp_pipe", "tiff_pipe", "bmp_pipe"}
POSTER_AT = 0.10
PREVIEW_SHORT_SIDE = 360
PREVIEW_MAX_BITRATE = 400_000
# A preview may use at most this share of the original's bitrate.
PREVIEW_BITRATE_SHARE = 0.10
WATERMARK_TEXT = "Retake"
# One thread, and x264's C macroblock-tree functions (its SIMD ones vary run to run): the
# same original always gives the same preview and watermarked file (see the reference node).
DETERMINISTIC_X264 = {"threads": "1", "x264-params": "cpu-independent=1"}


class MediaError(Exception):
    """The file is not a playable video; the message says why, for the take's error."""


@dataclass(frozen=True)
class MediaInfo:
    duration_seconds: float
    fps: float
    width: int
    height: int
    codec: str
    frames: int
    size_bytes: int

    @property
    def bitrate(self) -> float:
        """Bits per second of the whole file."""
        return self.size_bytes * 8 / self.duration_seconds if self.duration_seconds else 0.0


def _size_of(source: Source) -> int:
    if isinstance(source, str | os.PathLike):
        try:
            return os.path.getsize(source)
        except FileNotFoundError as exc:
            raise MediaError("the file does not exist") from exc
    position = source.tell()
    source.seek(0, io.SEEK_END)
    size = source.tell()
    source.seek(position)
    return size


def _open(source: Source) -> Any:
    if not isinstance(source, str | os.PathLike):
        source.seek(0)
    try:
        return av.open(source if not isinstance(source, os.PathLike) else os.fspath(source))
    except av.FFmpegError as exc:
        raise MediaError(f"not a video file ({exc.strerror or exc})") from exc
    except FileNotFoundError as exc:
        raise MediaError("the file does not exist") from exc


def _video_stream(container: Any) -> Any:
    if container.format.name in IMAGE_FORMATS or container.format.name.endswith("_pipe"):
        raise MediaError(f"an image ({container.format.name}), not a video")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        raise MediaError(f"no video stream (the file holds {kinds})")
    return container.streams.video[0]


def probe(source: Source) -> MediaInfo:
    """Measure a video by decoding every frame, so a truncated or corrupt file is caught.

    Duration is the span of the decoded frames plus one frame, i.e. frames / fps for the
    constant-rate video models produce.
    """
    size = _size_of(source)
    container = _open(source)
    with container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        frames = 0
        first_pts = last_pts = None
        try:
            for frame in container.decode(stream):
                frames += 1
                if frame.pts is not None:
                    first_pts = frame.pts if first_pts is None else min(first_pts, frame.pts)
                    last_pts = frame.pts if last_pts is None else max(last_pts, frame.pts)
        except av.FFmpegError as exc:
            raise MediaError(f"the video is damaged after {frames} frames ({exc})") from exc
        rate = stream.average_rate or stream.guessed_rate
        if frames < 2 or not rate:
            raise MediaError(f"not a playable video ({frames} frame(s))")
        expected = _expected_frames(stream, rate)
        if expected and frames < expected * 0.98:
            raise MediaError(f"the video is truncated: {frames} of {expected} frames decode")
        fps = float(rate)
        if first_pts is not None and stream.time_base:
            duration = float((last_pts - first_pts) * stream.time_base) + 1 / fps
        else:
            duration = frames / fps
        return MediaInfo(
            duration_seconds=round(duration, 6),
            fps=round(fps, 6),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            frames=frames,
            size_bytes=size,
        )


def _expected_frames(stream: Any, rate: Fraction) -> int:
    """Frames the container's index promises (0 when it does not say)."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base * rate))
    return 0


def make_poster(src: Source, dst_path: str | os.PathLike) -> MediaInfo:
    """Write a JPEG of the frame about 10% into the video (past fade-ins, still early)."""
    info = probe(src)
    target = max(0, min(info.frames - 1, int(info.frames * POSTER_AT)))
    with _open(src) as container:
        stream = _video_stream(container)
        for index, frame in enumerate(container.decode(stream)):
            if index == target:
                frame.to_image().convert("RGB").save(dst_path, format="JPEG", quality=85)
                break
    return info


def make_spritesheet(
    src: Source, dst_path: str | os.PathLike, *, columns: int = 5, rows: int = 5, tile: int = 192
) -> tuple[int, int]:
    """Write a JPEG grid of `columns × rows` frames spread evenly over the video, each
    `tile` pixels wide; return the grid's size in pixels."""
    info = probe(src)
    count = columns * rows
    wanted = sorted({min(info.frames - 1, round(i * info.frames / count)) for i in range(count)})
    tile_h = _even(tile * info.height / info.width)
    sheet = Image.new("RGB", (columns * tile, rows * tile_h))
    with _open(src) as container:
        stream = _video_stream(container)
        placed = 0
        for index, frame in enumerate(container.decode(stream)):
            if placed < len(wanted) and index == wanted[placed]:
                image = frame.to_image().convert("RGB").resize((tile, tile_h))
                sheet.paste(image, ((placed % columns) * tile, (placed // columns) * tile_h))
                placed += 1
    sheet.save(dst_path, format="JPEG", quality=80)
    return sheet.size


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def make_preview(src: Source, dst_path: str | os.PathLike) -> MediaInfo:
    """Write a small, low-bitrate H.264 MP4 for galleries (muted, fast-start).

    Short side at most 360 px; bitrate capped at 400 kbit/s and at 10% of the original's,
    so a preview costs a fraction of the original to serve.
    """
    info = probe(src)
    scale = min(1.0, PREVIEW_SHORT_SIDE / min(info.width, info.height))
    width, height = _even(info.width * scale), _even(info.height * scale)
    maxrate = int(min(PREVIEW_MAX_BITRATE, max(40_000, info.bitrate * PREVIEW_BITRATE_SHARE)))
    options = {
        "crf": "30",
        "preset": "veryfast",
        "maxrate": str(maxrate),
        "bufsize": str(maxrate * 2),
        **DETERMINISTIC_X264,
    }
    _transcode(src, dst_path, width=width, height=height, options=options, keep_audio=False)
    return probe(dst_path)


def apply_watermark(src: Source, dst_path: str | os.PathLike) -> MediaInfo:
    """Burn a visible "Retake" mark into every frame; same size, fps, frames and audio."""
    info = probe(src)
    overlay = _watermark_overlay(info.width, info.height)
    options = {"crf": "18", "preset": "veryfast", **DETERMINISTIC_X264}
    _transcode(
        src,
        dst_path,
        width=info.width,
        height=info.height,
        options=options,
        keep_audio=True,
        overlay=overlay,
    )
    return probe(dst_path)


def _watermark_overlay(width: int, height: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The mark as (x, y, rgb, alpha) for the bottom-right corner, sized to the frame."""
    size = max(12, min(width, height) // 9)
    font = ImageFont.load_default(size=size)
    probe_draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe_draw.textbbox((0, 0), WATERMARK_TEXT, font=font)
    pad = max(2, size // 8)
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    mark = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(mark)
    draw.text(
        (pad - left, pad - top),
        WATERMARK_TEXT,
        font=font,
        fill=(255, 255, 255, 200),
        stroke_width=max(1, size // 16),
        stroke_fill=(0, 0, 0, 160),
    )
    pixels = np.asarray(mark, dtype=np.float32)
    margin = max(4, min(width, height) // 30)
    x = max(0, width - box_w - margin)
    y = max(0, height - box_h - margin)
    rgb = pixels[: height - y, : width - x, :3]
    alpha = pixels[: height - y, : width - x, 3:] / 255.0
    return x, y, rgb, alpha


def _transcode(
    src: Source,
    dst_path: str | os.PathLike,
    *,
    width: int,
    height: int,
    options: dict[str, str],
    keep_audio: bool,
    overlay: tuple[int, int, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Re-encode the video as constant-rate H.264/yuv420p MP4, frame for frame."""
    faststart = {"movflags": "+faststart"}
    with (
        _open(src) as source,
        av.open(os.fspath(dst_path), "w", format="mp4", container_options=faststart) as out,
    ):
        video_in = _video_stream(source)
        rate = video_in.average_rate or video_in.guessed_rate
        video_out = out.add_stream("libx264", rate=rate)
        video_out.width, video_out.height = width, height
        video_out.pix_fmt = "yuv420p"
        video_out.codec_context.time_base = 1 / Fraction(rate)
        video_out.options = options
        audio_in = source.streams.audio[0] if keep_audio and source.streams.audio else None
        audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
        wanted = [video_in] + ([audio_in] if audio_in is not None else [])
        index = 0
        for packet in source.demux(wanted):
            if packet.stream is audio_in:
                if packet.dts is not None:
                    packet.stream = audio_out
                    out.mux(packet)
                continue
            for frame in packet.decode():
                picture = frame
                if overlay is not None:
                    picture = _stamp(frame.to_ndarray(format="rgb24"), overlay)
                    picture = av.VideoFrame.from_ndarray(picture, format="rgb24")
                picture = picture.reformat(width=width, height=height, format="yuv420p")
                picture.pts = index
                picture.time_base = video_out.codec_context.time_base
                index += 1
                for encoded in video_out.encode(picture):
                    out.mux(encoded)
        for encoded in video_out.encode():
            out.mux(encoded)


def _stamp(pixels: np.ndarray, overlay: tuple[int, int, np.ndarray, np.ndarray]) -> np.ndarray:
    x, y, rgb, alpha = overlay
    h, w = rgb.shape[:2]
    region = pixels[y : y + h, x : x + w].astype(np.float32)
    pixels = pixels.copy()
    pixels[y : y + h, x : x + w] = (region * (1 - alpha) + rgb * alpha).astype(np.uint8)
    return pixels


def data_url(name: str) -> str:
    """A stored file as a data URL: how reference images travel to nodes and providers."""
    with default_storage.open(name, "rb") as fh:
        raw = fh.read()
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"
