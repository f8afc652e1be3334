"""Signed-in creators browsing the studio while their takes render (bench_studio).

Each simulated user takes one prepared session (BENCH_STUDIO_USERS names the JSON file)
and, about every 2 s, does one thing: polls its take grid (as the page does while takes
render), opens a take, checks a take's status or asks for a quote. The bare DRF endpoint
is requested at the grid's rate by the same users, so both see the same load.
"""

from __future__ import annotations

import itertools
import json
import os
import random

from locust import FastHttpUser, between, task

with open(os.environ["BENCH_STUDIO_USERS"]) as f:
    IDENTITIES = json.load(f)
_next = itertools.count()


class Creator(FastHttpUser):
    wait_time = between(1.5, 2.5)  # about one request every 2 s, as the grid polls

    def on_start(self) -> None:
        me = IDENTITIES[next(_next) % len(IDENTITIES)]
        self.takes = me["takes"]
        self.headers = {"Cookie": f"sessionid={me['session']}", "HX-Request": "true"}

    def _get(self, url: str, name: str) -> None:
        with self.client.get(url, headers=self.headers, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}")

    @task(4)
    def poll_grid(self) -> None:
        self._get("/studio/takes/", "poll grid")

    @task(4)
    def bare(self) -> None:
        self._get("/bench/bare/", "bare DRF")

    @task(1)
    def open_take(self) -> None:
        self._get(f"/takes/{random.choice(self.takes)}/", "open take")

    @task(1)
    def take_status(self) -> None:
        self._get(f"/takes/{random.choice(self.takes)}/status/", "take status")

    @task(1)
    def quote(self) -> None:
        self._get(
            "/studio/quote/?model=wan2.1-t2v-1.3b&resolution=480p&duration=5&count=1",
            "quote",
        )
