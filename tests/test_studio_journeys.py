"""The redraw loop in a real browser (issue 12): draw a shot many times without retyping,
keep one from the lightbox, finalize after confirming its price; build a storyboard,
reorder it, export and download the rough cut; a capped member is warned before Generate.

Debian's Chromium via Playwright against the live server, real Celery workers and two
reference nodes. Screenshots at 390 and 1280 px (English and Chinese) are checked for
sideways scrolling by `screenshot`.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import opentimelineio as otio
import pytest
from playwright.sync_api import Page, expect

from accounts.models import Membership
from billing.demo import seed_plans
from billing.ledger import available_credits
from conftest import make_user
from generation.models import Project, RoughCut, Shot, Take, TakeStatus
from generation.tests.helpers import fund, setup_catalog, subscribe
from tests import test_browser
from tests.test_browser import PASSWORD, screenshot, sign_in, wait_for_js

# The browser fixtures of test_browser, shared by name.
browser = test_browser.browser
page = test_browser.page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROMPT = "a paper boat drifting down a rainy street, close-up"
SUCCEEDED = "[data-testid=take-card][data-status=succeeded]"


def _fast(catalog) -> None:
    for node in catalog:
        node.extra_input = {"speed": 1.5}
        node.save()


def _creator(email: str, plan: str = "standard"):
    user = make_user(email, PASSWORD)
    workspace = Membership.objects.get(user=user).workspace
    seed_plans()
    subscribe(workspace, plan)
    return user, workspace


def _to_chinese(page: Page) -> None:
    with page.expect_navigation():
        page.get_by_test_id("language-switcher").select_option("zh-hans")


def _to_english(page: Page) -> None:
    with page.expect_navigation():
        page.get_by_test_id("language-switcher").select_option("en")


def test_draw_a_shot_five_times_keep_one_from_the_lightbox_and_finalize_after_confirming(
    page: Page, catalog, workers, shared_media
):
    _fast(catalog)
    user, workspace = _creator("redraw@example.com")
    workers.start()
    sign_in(page, user.email)

    page.goto("/studio/?model=wan2.1-t2v-1.3b")
    page.get_by_test_id("prompt").fill(PROMPT)
    page.get_by_test_id("mode").select_option("draft")
    page.select_option("#resolution", "720p")
    page.select_option("#duration", "1")
    page.select_option("#aspect_ratio", "9:16")
    # The quote names what it bills and why, before anything is drawn.
    expect(page.get_by_test_id("quote-why-resolution")).to_contain_text(
        "drafts render at 480p, not 720p"
    )
    page.get_by_test_id("generate").click()
    page.wait_for_url(re.compile(r"/studio/\?shot=\d+"))
    shot = Shot.objects.dangerously_unscoped().get(project__workspace=workspace)

    # Four more draws, each by the D key: nothing is retyped, the form keeps everything.
    for draw in range(2, 6):
        expect(page.get_by_test_id("prompt")).to_have_value(PROMPT)
        expect(page.get_by_test_id("mode")).to_have_value("draft")
        expect(page.locator("#resolution")).to_have_value("720p")
        expect(page.locator("#aspect_ratio")).to_have_value("9:16")
        expect(page.get_by_test_id("take-card")).to_have_count(draw - 1)
        page.locator("body").click(position={"x": 5, "y": 5})
        with page.expect_navigation():
            page.keyboard.press("d")
    expect(page.get_by_test_id("take-card")).to_have_count(5)
    takes = list(Take.objects.filter(shot=shot))
    assert len(takes) == 5 and len({t.seed for t in takes}) == 5
    assert {(t.mode, t.resolution, t.aspect_ratio) for t in takes} == {("draft", "480p", "9:16")}
    assert Shot.objects.dangerously_unscoped().filter(project__workspace=workspace).count() == 1
    expect(page.locator(SUCCEEDED)).to_have_count(5, timeout=90_000)
    screenshot(page, "shot-studio")

    # The lightbox: open the newest, move right, keep with K, favourite with F.
    page.locator(SUCCEEDED).first.locator("a.thumb").click()
    lightbox = page.get_by_test_id("lightbox")
    expect(lightbox).to_be_visible()
    page.keyboard.press("ArrowRight")
    second = page.locator(SUCCEEDED).nth(1).get_attribute("data-take")
    expect(page.get_by_test_id("lightbox-page")).to_have_attribute("href", re.compile(second))
    page.keyboard.press("k")
    expect(page.get_by_test_id("lightbox-keep")).to_be_disabled()
    page.keyboard.press("f")
    expect(page.get_by_test_id("lightbox-favourite")).to_contain_text("♥")
    page.keyboard.press(" ")
    screenshot(page, "lightbox")
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()
    shot.refresh_from_db()
    assert str(shot.chosen_take_id) == second
    assert Take.objects.get(pk=second).is_favourite

    # Finalize the kept draft: the price first, then confirm.
    page.goto(f"/takes/{second}/")
    expect(page.get_by_test_id("chosen-badge")).to_be_visible()
    page.get_by_test_id("finalize").click()
    page.wait_for_url(re.compile(r"/finalize/$"))
    expect(page.get_by_test_id("finalize-quote")).to_contain_text("at 720p")
    total = page.get_by_test_id("quote-total").inner_text()
    price = int(re.search(r"(\d+)", total).group(1))
    assert Take.objects.filter(shot=shot).count() == 5  # seeing the price spent nothing
    screenshot(page, "finalize")
    before = available_credits(workspace)
    page.get_by_test_id("finalize-confirm").click()
    page.wait_for_url(re.compile(r"/takes/[0-9a-f-]+/$"))
    final = Take.objects.get(draft_of_id=second)
    assert (
        final.resolution == "720p" and str(final.seed) == page.get_by_test_id("seed").inner_text()
    )
    assert before - available_credits(workspace) == price  # held at the quoted price
    wait_for_js(page, "document.querySelector('[data-testid=player]') !== null", timeout=90)
    shot.refresh_from_db()
    assert shot.chosen_take_id == final.pk
    expect(page.get_by_test_id("chosen-badge")).to_be_visible()


def _draw_and_keep(page: Page, shot_id: int, seconds: str, aspect: str) -> str:
    page.goto(f"/studio/?shot={shot_id}&model=wan2.1-t2v-1.3b")
    page.get_by_test_id("prompt").fill(f"{PROMPT}, shot {shot_id}")
    page.select_option("#resolution", "480p")
    page.select_option("#duration", seconds)
    page.select_option("#aspect_ratio", aspect)
    page.get_by_test_id("generate").click()
    page.wait_for_url(re.compile(rf"/studio/\?shot={shot_id}"))
    expect(page.locator(SUCCEEDED)).to_have_count(1, timeout=90_000)
    take_id = page.locator(SUCCEEDED).first.get_attribute("data-take")
    page.goto(f"/takes/{take_id}/")
    page.get_by_test_id("choose").click()
    expect(page.get_by_test_id("chosen-badge")).to_be_visible()
    return take_id


def test_build_a_three_shot_storyboard_reorder_it_and_export_the_rough_cut(
    page: Page, catalog, workers, shared_media, tmp_path
):
    _fast(catalog)
    user, workspace = _creator("storyboard@example.com")
    workers.start()
    sign_in(page, user.email)

    page.goto("/projects/")
    page.get_by_test_id("new-project-name").fill("Paper boats")
    page.get_by_test_id("new-project").click()
    page.wait_for_url(re.compile(r"/projects/\d+/$"))
    project = Project.objects.dangerously_unscoped().get(workspace=workspace, name="Paper boats")
    shot_ids = []
    for title in ("Rain", "Gutter", "Sea"):
        page.goto(f"/projects/{project.pk}/")
        page.get_by_test_id("new-shot-title").fill(title)
        page.get_by_test_id("new-shot").click()
        page.wait_for_url(re.compile(r"/studio/\?shot=\d+"))
        shot_ids.append(int(re.search(r"shot=(\d+)", page.url).group(1)))
    kept = {}
    for shot_id, seconds, aspect in zip(
        shot_ids, ("1", "2", "1"), ("16:9", "16:9", "9:16"), strict=True
    ):
        kept[shot_id] = _draw_and_keep(page, shot_id, seconds, aspect)

    page.goto(f"/projects/{project.pk}/")
    tiles = page.get_by_test_id("shot-tile")
    expect(tiles).to_have_count(3)
    expect(page.get_by_test_id("missing-chosen")).to_have_count(0)
    # Drag "Sea" in front of "Rain".
    with page.expect_response(re.compile(rf"/projects/{project.pk}/edit/")):
        tiles.nth(2).drag_to(tiles.nth(0), target_position={"x": 10, "y": 40})
    order = [shot_ids[2], shot_ids[0], shot_ids[1]]
    stored = list(
        Shot.objects.dangerously_unscoped()
        .filter(project=project)
        .order_by("position")
        .values_list("pk", flat=True)
    )
    assert stored == order
    page.reload()
    expect(page.get_by_test_id("shot-link")).to_have_text(["Sea", "Rain", "Gutter"])
    screenshot(page, "storyboard")

    page.get_by_test_id("rough-cut-export").click()
    expect(page.locator("[data-testid=rough-cut][data-status=succeeded]")).to_have_count(
        1, timeout=90_000
    )
    with page.expect_download() as video_download:
        page.get_by_test_id("rough-cut-video").click()
    assert video_download.value.suggested_filename == "paper-boats-rough-cut.mp4"
    with page.expect_download() as timeline_download:
        page.get_by_test_id("rough-cut-timeline").click()
    assert timeline_download.value.suggested_filename == "paper-boats-rough-cut.otio"
    with page.expect_download() as edl_download:
        page.get_by_test_id("rough-cut-edl").click()
    assert edl_download.value.suggested_filename == "paper-boats-rough-cut.edl"
    with page.expect_download() as fcp_download:
        page.get_by_test_id("rough-cut-fcpxml").click()
    assert fcp_download.value.suggested_filename == "paper-boats-rough-cut.xml"
    screenshot(page, "storyboard-rough-cut")

    cut = RoughCut.objects.get(project=project)
    chosen = {Take.objects.get(pk=kept[s]) for s in order}
    expected = sum(t.measured_duration for t in chosen)
    with av.open(video_download.value.path()) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = frames / float(stream.average_rate)
    assert abs(duration - expected) <= len(order) / cut.fps, (duration, expected)
    timeline = otio.adapters.read_from_file(str(Path(timeline_download.value.path())), "otio_json")
    assert [c.name for c in timeline.find_clips()] == ["Sea", "Rain", "Gutter"]
    assert [c.metadata["retake"]["take"] for c in timeline.find_clips()] == [kept[s] for s in order]
    # The EDL and FCP 7 XML list the same clips in order, each as long as its chosen take.
    edl = otio.adapters.read_from_file(str(edl_download.value.path()), "cmx_3600", rate=cut.fps)
    fcp = otio.adapters.read_from_file(str(fcp_download.value.path()), "fcp_xml")
    takes = {str(t.pk): t for t in chosen}
    for parsed in (edl, fcp):
        clips = list(parsed.find_clips())
        assert [c.name for c in clips] == ["Sea", "Rain", "Gutter"]
        for clip, shot_id in zip(clips, order, strict=True):
            seconds = clip.source_range.duration.to_seconds()
            assert abs(seconds - takes[kept[shot_id]].measured_duration) <= 1 / cut.fps


def test_a_member_at_their_cap_is_warned_before_generate(page: Page, alice, acme, bob):
    setup_catalog()
    seed_plans()
    fund(acme, 200)
    Membership.objects.filter(workspace=acme, user=bob).update(monthly_spend_cap=1)
    sign_in(page, bob.email)
    with page.expect_navigation():
        page.get_by_test_id("workspace-switcher").select_option(label="Acme")
    page.goto("/studio/?model=wan2.1-t2v-1.3b")
    page.get_by_test_id("prompt").fill(PROMPT)
    page.select_option("#duration", "1")
    expect(page.get_by_test_id("quote-cap")).to_contain_text("monthly cap")
    expect(page.get_by_test_id("quote-cap")).to_contain_text(alice.email)
    screenshot(page, "cap-warning")
    assert Take.objects.filter(workspace=acme).count() == 0


def _delivered(reference, tmp_path: Path, shot, user, *, seed: int, mode="standard", size):
    """A take of `shot` that really delivered: a reference-node video with its poster and
    preview in storage, measured, as settlement leaves it (so pages show real media)."""
    from unittest import mock

    from django.core.files import File
    from django.core.files.storage import default_storage

    from generation.submission import TakeSpec, submit_takes
    from workers.media import make_poster, make_preview

    spec = TakeSpec(
        model="wan2.1-t2v-1.3b",
        prompt=f"{PROMPT}, seed {seed}",
        resolution="480p",
        duration=1,
        mode=mode,
        aspect_ratio="16:9" if size[0] > size[1] else "9:16",
    )
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        [take] = submit_takes(
            shot.project.workspace, user, spec, idempotency_key=f"shots-{shot.pk}-{seed}", shot=shot
        )
    original, poster, preview = (tmp_path / f"{take.pk}{n}" for n in (".mp4", ".jpg", "-p.mp4"))
    frames = reference.render_video(
        str(original),
        prompt=spec.prompt,
        seed=seed,
        width=size[0],
        height=size[1],
        fps=16,
        seconds=1.0,
    )
    make_poster(str(original), poster)
    make_preview(str(original), preview)
    names = {}
    for field, path in (
        ("output_original", original),
        ("output_poster", poster),
        ("output_preview", preview),
    ):
        with open(path, "rb") as fh:
            names[field] = default_storage.save(f"takes/{take.pk}/{path.name}", File(fh))
    Take.objects.filter(pk=take.pk).update(
        status=TakeStatus.SUCCEEDED,
        progress=100,
        charged=take.quote["total"],
        measured_duration=frames / 16,
        measured_fps=16,
        measured_width=size[0],
        measured_height=size[1],
        measured_codec="h264",
        **names,
    )
    take.refresh_from_db()
    return take


def test_every_new_page_in_english_and_chinese_at_phone_and_desktop_widths(
    page: Page, alice, acme, charlie, tmp_path, live_server, settings
):
    """Screenshots (390 and 1280 px, no sideways scroll) of every page issue 12 added or
    changed, in English and in Chinese: the studio in a shot, the lightbox, the take page,
    compare, the finalize quote, the storyboard with a rough cut rendered and one rendering,
    projects, pricing, the wallet's ledger, the offer to switch workspace for a take,
    creating a team, and the notification settings."""
    from accounts.models import UserSettings
    from generation.curation import choose_take, set_favourite
    from generation.roughcut import render_rough_cut, start_rough_cut
    from generation.shots import create_project, create_shot
    from generation.submission import inbox_for
    from workers.tests.conftest import load_reference_predictor

    reference = load_reference_predictor()
    settings.PUBLIC_BASE_URL = live_server.url  # signed media links point at this server
    setup_catalog()
    seed_plans()
    subscribe(acme, "standard")
    fund(acme, 200)
    project = create_project(acme, "纸船 Paper boats with a long project name to wrap")
    shots = [create_shot(project, title) for title in ("雨夜街道", "Gutter", "Sea", "Harbour")]
    takes = [
        _delivered(reference, tmp_path, shots[0], alice, seed=seed, mode="draft", size=size)
        for seed, size in ((1, (320, 180)), (2, (180, 320)), (3, (320, 180)))
    ]
    choose_take(takes[1])
    set_favourite(takes[2], True)
    for shot, seed in ((shots[1], 4), (shots[2], 5)):
        choose_take(_delivered(reference, tmp_path, shot, alice, seed=seed, size=(320, 180)))
    cut = start_rough_cut(project, alice, crossfade_ms=250)
    render_rough_cut(cut.pk)
    rendering = start_rough_cut(project, alice)
    type(rendering).objects.filter(pk=rendering.pk).update(status="running", progress=40)
    # A take in alice's personal workspace, opened while she works in Acme.
    personal = Membership.objects.get(user=alice, workspace__is_personal=True).workspace
    subscribe(personal, "standard")
    fund(personal, 50)
    elsewhere = _delivered(
        reference, tmp_path, create_shot(inbox_for(personal)), alice, seed=9, size=(320, 180)
    )
    UserSettings.objects.create(user=alice, batch_digest_email=True, email_language="en")

    sign_in(page, alice.email)
    with page.expect_navigation():
        page.get_by_test_id("workspace-switcher").select_option(label="Acme")
    for language in ("en", "zh"):
        if language == "zh":
            _to_chinese(page)
        page.goto(f"/studio/?shot={shots[0].pk}")
        expect(page.get_by_test_id("draw-again")).to_contain_text(
            "Draw again" if language == "en" else "再画一次"
        )
        page.select_option("#count", "3")
        expect(page.get_by_test_id("quote-digest")).to_contain_text("alice@example.com")
        expect(page.get_by_test_id("chosen-badge")).to_have_count(1)
        screenshot(page, f"shot-studio-{language}")
        page.locator(SUCCEEDED).first.locator("a.thumb").click()
        expect(page.get_by_test_id("lightbox")).to_be_visible()
        screenshot(page, f"lightbox-{language}")
        # What a phone shows with the lightbox open (a full-page capture stretches it).
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(test_browser.SCREENSHOTS / f"lightbox-{language}-phone.png"))
        page.set_viewport_size({"width": 1280, "height": 900})
        page.keyboard.press("Escape")

        page.goto(f"/takes/{takes[1].pk}/")
        expect(page.get_by_test_id("chosen-badge")).to_be_visible()
        screenshot(page, f"take-{language}")
        page.goto("/studio/compare/?" + "&".join(f"take={t.pk}" for t in takes))
        expect(page.get_by_test_id("compare-video")).to_have_count(3)
        screenshot(page, f"compare-{language}")
        page.goto(f"/takes/{takes[1].pk}/finalize/")
        expect(page.get_by_test_id("finalize-quote")).to_contain_text("720p")
        screenshot(page, f"finalize-{language}")

        page.goto(f"/projects/{project.pk}/")
        expect(page.get_by_test_id("missing-chosen")).to_be_visible()
        expect(page.get_by_test_id("rough-cut-edl")).to_be_visible()
        expect(page.locator("[data-testid=rough-cut][data-status=running]")).to_have_count(1)
        screenshot(page, f"storyboard-rough-cut-{language}")
        page.goto("/projects/")
        screenshot(page, f"projects-{language}")
        page.goto("/pricing/")
        screenshot(page, f"pricing-{language}")
        page.goto("/wallet/")
        expect(page.get_by_test_id("ledger")).to_contain_text(
            f"take {takes[0].pk}" if language == "en" else f"镜头 {takes[0].pk}"
        )
        screenshot(page, f"wallet-{language}")
        page.goto(f"/takes/{elsewhere.pk}/")
        expect(page.get_by_test_id("switch-offer")).to_be_visible()
        screenshot(page, f"switch-to-take-{language}")
        page.goto("/workspaces/")
        screenshot(page, f"workspaces-{language}")
        page.goto("/account/notifications/")
        expect(page.get_by_test_id("batch-digest")).to_be_checked()
        screenshot(page, f"notifications-{language}")

    # Chinese names for the shipped plans and packages, and the Inbox.
    page.goto("/pricing/")
    expect(page.locator("body")).to_contain_text("工作室版")
    expect(page.locator("body")).to_contain_text("100 积分")
    page.goto(f"/takes/{elsewhere.pk}/")
    page.get_by_test_id("switch-and-open").click()
    expect(page.locator(".crumbs").first).to_contain_text("收件箱")
    # The phone menu opens and closes the header.
    page.goto("/studio/")
    page.set_viewport_size({"width": 390, "height": 800})
    toggle = page.get_by_test_id("menu-toggle")
    expect(toggle).to_be_visible()
    expect(page.get_by_test_id("nav-studio")).to_be_hidden()
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] < 80, header
    toggle.click()
    expect(page.get_by_test_id("nav-studio")).to_be_visible()
    page.screenshot(path=str(test_browser.SCREENSHOTS / "menu-zh-mobile.png"))
    page.set_viewport_size({"width": 1280, "height": 900})
