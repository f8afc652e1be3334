"""Media handling on real videos rendered by the reference node's predictor."""

from __future__ import annotations

import io
import time
from fractions import Fraction
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import numpy as np
import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from config.media_links import signed_media_url
from conftest import client_for
from workers.media import (
    MediaError,
    apply_watermark,
    make_poster,
    make_preview,
    probe,
)


@pytest.fixture(scope="module")
def clips(reference, tmp_path_factory) -> dict[str, Path]:
    """A 480p original like a model's, and a small one for quick checks."""
    folder = tmp_path_factory.mktemp("clips")
    sd = folder / "sd.mp4"
    small = folder / "small.mp4"
    reference.render_video(
        str(sd), prompt="neon city in rain", seed=11, width=848, height=480, fps=16, seconds=2
    )
    reference.render_video(
        str(small), prompt="meadow", seed=2, width=256, height=144, fps=24, seconds=1.5
    )
    return {"sd": sd, "small": small}


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_probe_measures_duration_fps_size_codec_and_frames(clips):
    info = probe(clips["small"])

    assert info.duration_seconds == pytest.approx(1.5)
    assert info.fps == 24
    assert (info.width, info.height) == (256, 144)
    assert info.codec == "h264"
    assert info.frames == 36
    assert info.size_bytes == clips["small"].stat().st_size


def test_probe_reads_file_objects_too(clips):
    with clips["small"].open("rb") as handle:
        assert probe(handle) == probe(clips["small"])
    assert probe(io.BytesIO(clips["small"].read_bytes())).frames == 36
    name = default_storage.save("takes/probe.mp4", ContentFile(clips["small"].read_bytes()))
    with default_storage.open(name, "rb") as stored:
        assert probe(stored).duration_seconds == pytest.approx(1.5)


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        for index in range(10):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "not a video file"),
        ("png", "an image"),
        ("jpeg", "an image"),
        ("audio", "no video stream"),
        ("truncated", "not a video file"),
        ("truncated_faststart", "truncated"),
        ("missing", "does not exist"),
    ],
)
def test_probe_rejects_what_is_not_a_playable_video(kind, message, clips, tmp_path):
    path = tmp_path / f"upload-{kind}"
    if kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind in ("png", "jpeg"):
        Image.new("RGB", (64, 64), "red").save(path, format=kind.upper())
    elif kind == "audio":
        _audio_only(path)
    elif kind == "truncated":
        data = clips["small"].read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "truncated_faststart":
        make_preview(clips["small"], tmp_path / "faststart.mp4")
        data = (tmp_path / "faststart.mp4").read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(MediaError, match=message):
        probe(path)


def test_poster_is_a_jpeg_of_a_frame_about_ten_percent_in(clips, tmp_path):
    poster = tmp_path / "poster.jpg"

    make_poster(clips["small"], poster)

    frames = frames_of(clips["small"])
    with Image.open(poster) as image:
        assert image.format == "JPEG" and image.size == (256, 144)
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    distances = [np.abs(pixels - frame).mean() for frame in frames]
    assert int(np.argmin(distances)) == 3  # frame 3 of 36


def test_preview_of_a_480p_original_is_small_h264_with_the_same_duration(clips, tmp_path):
    original = probe(clips["sd"])
    preview = make_preview(clips["sd"], tmp_path / "preview.mp4")

    assert preview.codec == "h264"
    assert preview.size_bytes <= 0.15 * original.size_bytes
    assert preview.height == 360 and preview.width == 636
    assert preview.duration_seconds == pytest.approx(original.duration_seconds)
    assert preview.frames == original.frames
    data = (tmp_path / "preview.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "previews must start playing at once"


def test_watermark_marks_the_corner_and_keeps_size_fps_and_duration(clips, tmp_path):
    marked_path = tmp_path / "marked.mp4"
    original = probe(clips["small"])

    marked = apply_watermark(clips["small"], marked_path)

    assert (marked.width, marked.height, marked.fps, marked.frames, marked.codec) == (
        original.width,
        original.height,
        original.fps,
        original.frames,
        "h264",
    )
    assert marked.duration_seconds == pytest.approx(original.duration_seconds)
    before, after = frames_of(clips["small"])[5].astype(int), frames_of(marked_path)[5]
    changed = np.abs(after - before).max(axis=2) > 60
    assert changed[-36:, -96:].mean() > 0.08, "the mark must be visible in the corner"
    assert changed[:100].mean() < 0.001, "the rest of the frame is untouched"


def test_watermark_keeps_the_audio_track(tmp_path):
    source = tmp_path / "with-audio.mp4"
    with av.open(str(source), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(12))
        video.width, video.height, video.pix_fmt = 128, 72, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        for index in range(12):
            pixels = np.full((72, 128, 3), index * 20, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for index in range(43):
            sound = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            sound.sample_rate, sound.pts = 44100, index * 1024
            for packet in audio.encode(sound):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)

    marked = apply_watermark(source, tmp_path / "marked.mp4")

    assert marked.frames == 12
    with av.open(str(tmp_path / "marked.mp4")) as container:
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.demux(container.streams.audio[0])) > 40


def _store(name: str, content: bytes) -> str:
    return default_storage.save(name, ContentFile(content))


def _path_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_signed_url_streams_the_original_without_login(clips, client, db):
    name = _store("takes/original.mp4", clips["small"].read_bytes())

    response = client.get(_path_of(signed_media_url(name)))

    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert b"".join(response.streaming_content) == clips["small"].read_bytes()


def test_signed_url_expires_after_its_ttl(client, db):
    name = _store("takes/expiring.mp4", b"bytes")
    with time_machine.travel(timezone.now(), tick=False) as clock:
        path = _path_of(signed_media_url(name, ttl=60))
        clock.shift(59)
        assert client.get(path).status_code == 200
        clock.shift(2)
        response = client.get(path)
    assert response.status_code == 403
    assert b"expired" in response.content


def test_tampered_or_foreign_tokens_are_forbidden_and_missing_files_404(client, db, alice):
    name = _store("takes/mine.mp4", b"mine")
    path = _path_of(signed_media_url(name))
    token = path.rstrip("/").rsplit("/", 1)[1]
    forged = path.replace(token, token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))

    assert client.get(forged).status_code == 403
    assert client_for(alice).get(forged).status_code == 403, "a login does not help"
    assert client.get("/media/signed/not-a-token/").status_code == 403
    default_storage.delete(name)
    assert client.get(path).status_code == 404


def test_on_s3_the_storage_presigns_the_url(settings):
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "retake",
                "endpoint_url": "http://127.0.0.1:9000",
                "access_key": "test-key",
                "secret_key": "test-secret",
                "region_name": "us-east-1",
                "querystring_auth": True,
            },
        },
    }

    url = signed_media_url("takes/original.mp4", ttl=120)

    assert url.startswith("http://127.0.0.1:9000/retake/takes/original.mp4?")
    query = parse_qs(urlsplit(url).query)
    assert query["Signature"] and query["AWSAccessKeyId"] == ["test-key"]
    assert int(query["Expires"][0]) - time.time() == pytest.approx(120, abs=5)


def test_signed_url_serves_byte_ranges_so_players_can_seek(clips, client, db):
    data = clips["small"].read_bytes()
    path = _path_of(signed_media_url(_store("takes/seek.mp4", data)))

    middle = client.get(path, HTTP_RANGE="bytes=100-199")
    tail = client.get(path, HTTP_RANGE="bytes=-50")
    beyond = client.get(path, HTTP_RANGE=f"bytes={len(data) + 10}-")

    assert middle.status_code == 206
    assert middle["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert b"".join(middle.streaming_content) == data[100:200]
    assert b"".join(tail.streaming_content) == data[-50:]
    assert beyond.status_code == 416
    assert client.get(path)["Accept-Ranges"] == "bytes"
