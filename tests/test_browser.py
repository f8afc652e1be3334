"""The studio in a real browser: Debian's Chromium driven by Playwright against the live
server, with real Celery workers and two real reference nodes rendering H.264 on the CPU.

Screenshots of each main page go to test-artifacts/screenshots/ at 390 px and desktop width.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from accounts.models import Membership
from billing.demo import PACKAGES, seed_plans
from billing.ledger import available_credits
from billing.models import CreditPackage
from conftest import make_user
from generation.models import Node, Take, TakeStatus
from generation.tests.helpers import fund, setup_catalog, subscribe, wallet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
WIDTHS = {"mobile": 390, "desktop": 1280}
PASSWORD = "a-long-test-password"
PROMPT = "a paper boat drifting down a rainy street"
TERMINAL_SELECTOR = "[data-testid=take-card][data-status={status}]"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls are ordinary blocking code, so Django's async-context guard must stand aside.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTHS["desktop"], "height": 900}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Anything the Content-Security-Policy refused (an inline script, style or handler).
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield page
    assert not errors, f"JavaScript errors: {errors}"
    context.close()


def wait_for_js(page: Page, expression: str, timeout: float = 15) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function
    compiles its predicate inside the page, which the CSP forbids: no 'unsafe-eval'.)"""
    deadline = time.monotonic() + timeout
    while not _evaluate_across_navigation(page, expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        time.sleep(0.1)


def _evaluate_across_navigation(page: Page, expression: str):
    """The expression's value, or False while the page is navigating (a take's page reloads
    itself when the take finishes, which destroys the context an evaluate runs in)."""
    try:
        return page.evaluate(expression)
    except PlaywrightError as exc:
        if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
            raise
        page.wait_for_load_state()
        return False


def screenshot(page: Page, name: str) -> None:
    """Save the page at phone and desktop widths (full page), then restore desktop."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
        # Nothing may stick out sideways on a phone.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


def sign_in(page: Page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/$"))


def sign_up(page: Page, email: str) -> None:
    """Sign up and follow the verification link from the e-mail, as a person would."""
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"confirm-email"))
    link = re.search(r"https?://\S+", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/$"))


def fill_studio(page: Page, *, count: int = 1) -> None:
    page.goto("/studio/?model=wan2.1-t2v-1.3b")
    page.fill("#prompt", PROMPT)
    page.select_option("#resolution", "480p")
    page.select_option("#duration", "1")
    page.select_option("#count", str(count))


def seed_packages() -> None:
    for package in PACKAGES:
        CreditPackage.objects.update_or_create(slug=package["slug"], defaults=package)


def test_sign_up_generate_two_takes_watch_play_compare_download_and_see_the_charge(
    page: Page, catalog, workers, shared_media
):
    seed_plans()
    seed_packages()
    for node in catalog:
        node.extra_input = {"speed": 1.5}
        node.save()
    page.goto("/")
    screenshot(page, "landing")
    page.goto("/pricing/")
    expect(page.get_by_test_id("peak-status")).to_be_visible()
    screenshot(page, "pricing")

    sign_up(page, "browser-signup@example.com")
    workspace = Membership.objects.get(user__email="browser-signup@example.com").workspace
    subscribe(workspace, "standard")  # grants the plan's 660 credits for the period
    start = available_credits(workspace)
    workers.start()

    fill_studio(page, count=2)
    # The live quote: 2 credits/s at 480p × 1 s × 2 takes.
    expect(page.get_by_test_id("quote-total")).to_have_text(re.compile(r"Total: 4 credits"))
    expect(page.get_by_test_id("quote-after")).to_contain_text(f"{start} → {start - 4}")
    screenshot(page, "studio")
    page.get_by_test_id("generate").click()
    page.wait_for_url(re.compile(r"/studio/"))
    cards = page.get_by_test_id("take-card")
    expect(cards).to_have_count(2)
    expect(page.get_by_test_id("model")).to_have_value("wan2.1-t2v-1.3b")
    expect(page.get_by_test_id("quote-total")).to_be_visible()
    # Live: the grid shows progress without a reload, then 100% on both takes.
    page.evaluate("window.__noReload = true")
    in_flight = page.locator("[data-testid=take-card]:not([data-status=succeeded])")
    expect(in_flight.first).to_be_visible()
    expect(page.locator("[data-testid=take-card] progress").first).to_be_visible()
    expect(page.locator(TERMINAL_SELECTOR.format(status="succeeded"))).to_have_count(
        2, timeout=60_000
    )
    assert page.evaluate("window.__noReload") is True
    expect(page.get_by_test_id("progress-text")).to_have_text(["100%", "100%"])
    expect(page.locator("#take-grid-inner[data-polling]")).to_have_count(0)
    screenshot(page, "studio-takes")

    # A thumbnail opens the lightbox; its link opens the take's page. Play it there.
    cards.first.locator("a.thumb").click()
    expect(page.get_by_test_id("lightbox")).to_be_visible()
    page.get_by_test_id("lightbox-page").click()
    page.wait_for_url(re.compile(r"/takes/"))
    player = page.get_by_test_id("player")
    assert player.evaluate("v => v.canPlayType('video/mp4; codecs=\"avc1.42E01E\"')")
    player.evaluate("v => { v.muted = true; return v.play(); }")
    wait_for_js(page, "document.querySelector('[data-testid=player]').currentTime > 0.2")
    screenshot(page, "take")

    # Download the original.
    with page.expect_download() as download_info:
        page.get_by_test_id("download").click()
    path = download_info.value.path()
    data = Path(path).read_bytes()
    assert len(data) > 1000 and data[4:8] == b"ftyp"

    # Compare both, playing in sync.
    page.goto("/studio/")
    for box in page.get_by_test_id("compare-pick").all():
        box.check()
    page.get_by_test_id("compare").click()
    page.wait_for_url(re.compile(r"/studio/compare/"))
    expect(page.get_by_test_id("compare-video")).to_have_count(2)
    page.get_by_test_id("play-all").click()
    wait_for_js(
        page,
        "[...document.querySelectorAll('[data-testid=compare-video]')]"
        ".every(v => v.currentTime > 0.2)",
    )
    times = page.evaluate(
        "[...document.querySelectorAll('[data-testid=compare-video]')].map(v => v.currentTime)"
    )
    assert max(times) - min(times) < 0.3, times
    screenshot(page, "compare")

    # The wallet shows the two charges and what is left.
    page.get_by_test_id("nav-wallet").click()
    expect(page.get_by_test_id("available")).to_have_text(str(start - 4))
    expect(page.locator("tr[data-kind=settle] [data-testid=entry-charged]")).to_have_text(
        ["2", "2"]
    )
    expect(page.get_by_test_id("held")).to_have_text("0")
    screenshot(page, "wallet")
    page.goto("/projects/")
    screenshot(page, "projects")
    assert wallet(workspace).balance == start - 4


def test_a_failed_take_shows_no_charge(page: Page, catalog, workers, shared_media):
    # The nodes refuse the prediction's inputs: every take fails.
    Node.objects.filter(pk__in=[n.pk for n in catalog]).update(extra_input={"speed": 999})
    user = make_user("erin@example.com", PASSWORD)
    workspace = Membership.objects.get(user=user).workspace
    fund(workspace, 20)
    workers.start()
    sign_in(page, "erin@example.com")
    fill_studio(page)
    page.get_by_test_id("generate").click()
    page.wait_for_url(re.compile(r"/studio/"))
    expect(page.locator(TERMINAL_SELECTOR.format(status="failed"))).to_have_count(1, timeout=60_000)
    expect(page.get_by_test_id("no-charge")).to_contain_text("cost nothing")
    take = Take.objects.get(workspace=workspace)
    assert take.status == TakeStatus.FAILED and take.charged == 0
    page.goto(f"/takes/{take.pk}/")
    expect(page.get_by_test_id("no-charge")).to_be_visible()
    screenshot(page, "take-failed")
    page.get_by_test_id("nav-wallet").click()
    expect(page.get_by_test_id("available")).to_have_text("20")
    expect(page.get_by_test_id("held")).to_have_text("0")
    expect(page.locator("tr[data-kind=settle]")).to_have_count(0)


def test_an_outsider_cannot_open_another_workspaces_take(page: Page, alice, acme, charlie):
    from unittest import mock

    from generation.submission import TakeSpec, submit_takes

    setup_catalog()
    fund(acme, 10)
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=1)
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        [take] = submit_takes(acme, alice, spec, idempotency_key="outsider")
    sign_in(page, charlie.email)
    for path in (f"/takes/{take.pk}/", f"/takes/{take.pk}/download/"):
        response = page.goto(path)
        assert response.status == 404, path
    page.goto("/studio/")
    expect(page.get_by_test_id("take-card")).to_have_count(0)


def test_switching_to_chinese_translates_the_studio(page: Page, alice, acme, bob, charlie):
    from billing.ledger import place_hold, settle_hold

    setup_catalog()
    seed_plans()
    fund(acme, 50)
    for member, charge in ((alice, 6), (bob, 4)):
        hold = place_hold(acme, 6, idempotency_key=f"zh-{member.pk}", member=member)
        settle_hold(hold, charge, idempotency_key=f"zh-{member.pk}:settle")
    sign_in(page, alice.email)
    with page.expect_navigation():
        page.get_by_test_id("workspace-switcher").select_option(label="Acme")
    page.goto("/studio/?model=wan2.1-t2v-1.3b")
    expect(page.get_by_test_id("generate")).to_have_text("Generate")
    with page.expect_navigation():
        page.get_by_test_id("language-switcher").select_option("zh-hans")
    expect(page.get_by_test_id("generate")).to_have_text("生成")
    expect(page.locator("h1")).to_have_text("工作室")
    expect(page.get_by_test_id("quote-total")).to_contain_text("合计")
    expect(page.get_by_test_id("quote-after")).to_contain_text("余额 40 → 生成后")
    screenshot(page, "studio-zh")
    page.goto("/team/")
    expect(page.get_by_test_id("member-spend")).to_have_text(["6 积分", "4 积分"])
    screenshot(page, "team-zh")


def test_a_long_project_name_shows_whole_and_renames_with_enter(page: Page, alice, acme):
    from generation.shots import create_project

    long_name = (
        "The paper boat's long journey down the rainy street to the harbour and back by night"
    )
    assert 80 < len(long_name) <= 120
    project = create_project(acme, long_name)
    sign_in(page, alice.email)
    with page.expect_navigation():
        page.get_by_test_id("workspace-switcher").select_option(label="Acme")
    page.goto(f"/projects/{project.pk}/")
    field = page.get_by_test_id("project-name")
    expect(field).to_have_value(long_name)
    for width in WIDTHS.values():
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        # The whole name shows: nothing hidden sideways or below in the field.
        hidden = field.evaluate(
            "f => [f.scrollWidth - f.clientWidth, f.scrollHeight - f.clientHeight]"
        )
        assert max(hidden) <= 1, f"the name is cut off by {hidden}px at {width}px"
    screenshot(page, "project-long-name")
    field.fill(long_name.replace("by night", "at dawn"))
    with page.expect_navigation():
        field.press("Enter")
    project.refresh_from_db()
    assert project.name.endswith("at dawn")
    # The personal workspace's given name in Chinese in the header's switcher.
    with page.expect_navigation():
        page.get_by_test_id("language-switcher").select_option("zh-hans")
    expect(page.get_by_test_id("workspace-switcher")).to_contain_text("alice 的工作区")


def _a_day_of_takes(workspace, user, node) -> None:
    """Takes finished over the last hours (so the chart has bars) and a few still queued."""
    from unittest import mock

    from generation.submission import TakeSpec, submit_takes

    spec = TakeSpec(
        model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=2, count=4
    )
    now = timezone.now()
    for hour in range(0, 20, 3):
        with mock.patch("workers.tasks.dispatch_takes.delay"):
            takes = submit_takes(workspace, user, spec, idempotency_key=f"ops-{hour}")
        finished = now - timedelta(hours=hour)
        for index, take in enumerate(takes[: 1 + hour % 4]):
            Take.objects.filter(pk=take.pk).update(
                status=TakeStatus.SUCCEEDED if index else TakeStatus.FAILED,
                charged=4 if index else 0,
                node=node,
                dispatched_at=finished - timedelta(seconds=12),
                finished_at=finished,
            )


def test_staff_see_the_operations_page_from_the_admin(page: Page, alice, acme, charlie):
    node = setup_catalog()
    Node.objects.filter(pk=node.pk).update(cost_per_gpu_second=Decimal("0.4"))
    subscribe(acme, "standard")
    _a_day_of_takes(acme, alice, node)
    staff = make_user("ops@example.com", PASSWORD)
    staff.is_staff = staff.is_superuser = True
    staff.save()
    sign_in(page, "ops@example.com")
    page.goto("/admin/")
    page.get_by_role("link", name="Operations").first.click()
    page.wait_for_url(re.compile(r"/ops/"))
    for section in ("ops-hourly", "ops-queues", "ops-states", "ops-nodes"):
        expect(page.get_by_test_id(section)).to_be_visible()
    screenshot(page, "ops")
    page.context.clear_cookies()
    sign_in(page, charlie.email)
    page.goto("/ops/")
    assert "/admin/login/" in page.url


def test_the_admin_pages_raise_no_content_security_policy_violations(page: Page, alice, acme):
    """The admin runs under the same policy as the site (no inline script or style): its
    index, change lists (filters, date drill-down, actions), change forms (with inlines
    and the credential widgets), the add-credits action and the pricing week grid load and
    react without one refusal. The `page` fixture fails the test on any CSP message."""
    from billing.demo import seed_schedule
    from billing.models import Plan, PricingSchedule, Wallet
    from workers.models import Provider

    node = setup_catalog()
    seed_plans()
    seed_schedule()
    subscribe(acme, "standard")
    fund(acme, 100)
    _a_day_of_takes(acme, alice, node)
    staff = make_user("ops@example.com", PASSWORD)
    staff.is_staff = staff.is_superuser = True
    staff.save()
    sign_in(page, "ops@example.com")
    schedule = PricingSchedule.objects.filter(is_active=True).first()
    take = Take.objects.first()
    pages = [
        "/admin/",
        "/admin/generation/take/",
        "/admin/generation/take/?status__exact=succeeded",
        f"/admin/generation/take/{take.pk}/change/",
        "/admin/billing/plan/",
        f"/admin/billing/plan/{Plan.objects.get(slug='standard').pk}/change/",
        f"/admin/generation/node/{node.pk}/change/",
        f"/admin/billing/pricingschedule/{schedule.pk}/change/",
        f"/admin/billing/pricingschedule/{schedule.pk}/week/",
        "/admin/workers/provider/add/",
        "/admin/accounts/workspace/",
    ]
    for path in pages:
        response = page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        assert "/admin/login/" not in page.url, path
        page.wait_for_load_state("load")
    # The scripted parts: the date drill-down, selecting rows for an action, the action's
    # own page, an inline's "add another" row and a collapsed fieldset.
    page.goto("/admin/generation/take/")
    page.locator(".xfull a, nav.toplinks a").first.click()
    page.wait_for_load_state("load")
    page.goto("/admin/billing/wallet/")
    page.locator("#action-toggle").check()
    expect(page.locator(".action-counter")).to_contain_text("1")
    page.select_option("select[name=action]", "adjust_credits")
    with page.expect_navigation():
        page.locator("button[name=index]").click()
    expect(page.locator("input[name=delta]")).to_be_visible()
    page.goto(f"/admin/billing/pricingschedule/{schedule.pk}/change/")
    page.locator(".add-row a").first.click()
    assert Wallet.objects.dangerously_unscoped().count() >= 1
    assert Provider.objects.count() == 0  # nothing was saved by looking
    screenshot(page, "admin-pricing-schedule")
