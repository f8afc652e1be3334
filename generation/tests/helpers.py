"""Shared set-up for generation and pipeline tests: catalog, credits, plans, images."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

NODE_TOKEN = "test-node-token"


def setup_catalog(base_url: str = "http://127.0.0.1:9", token: str = NODE_TOKEN):
    """The demo models, one reference node at `base_url`, and the demo rate cards."""
    from billing.demo import seed_rate_cards
    from generation.demo import seed_catalog

    node = seed_catalog(base_url=base_url, token=token)
    seed_rate_cards()
    return node


def fund(workspace, amount: int = 1000, key: str = "test-grant") -> None:
    from billing.ledger import grant_credits

    grant_credits(workspace, amount, source="purchase", idempotency_key=f"{key}:{workspace.pk}")


def subscribe(workspace, slug: str = "pro"):
    from billing.demo import seed_plans
    from billing.plans import start_subscription

    plans = seed_plans()
    return start_subscription(workspace, plans[slug])


def wallet(workspace):
    from billing.ledger import get_wallet

    return get_wallet(workspace)


def png_bytes(width: int = 64, height: int = 48, color=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width × height but carries almost no data (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + width * 3) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def studio_form(**overrides) -> dict:
    """The studio's Generate form as a browser posts it, with `overrides`."""
    data = {
        "model": "wan2.1-t2v-1.3b",
        "prompt": "a paper boat drifting down a rainy street",
        "resolution": "480p",
        "duration": "2",
        "aspect_ratio": "16:9",
        "fps": "16",
        "count": "1",
        "mode": "standard",
        "seed_mode": "random",
        "idempotency_key": "form-1",
    }
    data.update(overrides)
    return data
