"""The `openai` SDK against Retake's `/v1/videos`: create, poll, download and probe, list,
delete, and an unknown model. Run it against `make run` with a key from
`manage.py create_api_key demo@retake.local`:

    RETAKE_KEY=rtk_… .venv/bin/python docs/examples/openai_videos.py  # RETAKE_URL: another host
"""

import io
import os
import time
import warnings

import av
import openai

# The SDK warns that OpenAI's own video API shut down; the shape lives on here.
warnings.filterwarnings("ignore", message="The Sora API")
client = openai.OpenAI(
    base_url=os.environ.get("RETAKE_URL", "http://127.0.0.1:8000") + "/v1",
    api_key=os.environ["RETAKE_KEY"],
)

print("models:", [m.id for m in client.models.list()])
video = client.videos.create(
    model="wan2.1-t2v-1.3b",
    prompt="a paper boat on a rainy street",
    seconds="2",
    size="832x480",
)
print("created:", video.id, video.status, "price", video.model_extra["price_credits"], "credits")

while video.status in ("queued", "in_progress"):
    time.sleep(1)
    video = client.videos.retrieve(video.id)
    print("  retrieve:", video.status, f"{video.progress}%")
print("done:", video.status, "charged", video.model_extra["charged_credits"], "credits")

data = client.videos.download_content(video.id).read()
with av.open(io.BytesIO(data)) as container:
    stream = container.streams.video[0]
    frames = sum(1 for _ in container.decode(stream))
    print(
        f"content: {len(data)} bytes, {stream.codec_context.name} "
        f"{stream.codec_context.width}x{stream.codec_context.height}, "
        f"{frames / float(stream.average_rate):.2f} s at {stream.average_rate} fps"
    )

print("list:", [(v.id, v.status) for v in client.videos.list(limit=5)])
deleted = client.videos.delete(video.id)
print("delete:", deleted.id, deleted.object, deleted.deleted)
print("listed after delete:", video.id in [v.id for v in client.videos.list()])

try:
    client.videos.create(model="sora-2", prompt="a paper boat")
except openai.BadRequestError as exc:
    print("unknown model:", type(exc).__name__, exc.status_code, exc.body["param"], exc.message)
