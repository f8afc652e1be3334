"""The billing page and the buttons that send people to Stripe. Thin: parse, call an action
in billing/payments.py, redirect. Only owners and admins can pay; members read."""

from __future__ import annotations

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from . import display, ledger, payments, pricing, reports, stripe_sync
from .models import RESOLUTION_ORDER, CreditPackage, EntryKind, Plan, RateCard
from .plans import live_subscription, plan_for

LEDGER_PAGE = 200

CURRENCIES = ("CNY", "USD")
SYMBOLS = {"CNY": "¥", "USD": "$"}


def _prices(prices: dict) -> list[tuple[str, str]]:
    """(currency, "¥66.00") for each currency with a price; both have two minor digits."""
    return [(c, f"{SYMBOLS[c]}{prices[c] / 100:.2f}") for c in CURRENCIES if prices.get(c)]


def _require_manager(request: HttpRequest) -> None:
    if request.membership is None or not request.membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage billing.")


@login_required
def billing_page(request: HttpRequest) -> HttpResponse:
    workspace = request.workspace
    current = plan_for(workspace)
    subscription = live_subscription(workspace)
    paid = payments.live_payment_subscription(workspace)
    context = {
        "workspace": workspace,
        "current_plan": current,
        "subscription": subscription,
        "payment_subscription": paid,
        "balance": ledger.get_wallet(workspace).balance,
        "plans": [
            {"plan": plan, "prices": _prices(plan.prices)}
            for plan in Plan.objects.filter(is_active=True)
            if _prices(plan.prices)
        ],
        "packages": [
            {"package": package, "prices": _prices(package.prices)}
            for package in CreditPackage.objects.filter(is_active=True)
        ],
        "can_pay": bool(request.membership and request.membership.can_manage),
        "payments_enabled": payments.enabled(),
        "managers": ", ".join(
            m.user.email
            for m in workspace.memberships.filter(role__in=("owner", "admin")).select_related(
                "user"
            )
        ),
    }
    return render(request, "billing/billing.html", context)


def _run(request: HttpRequest, action, *args, success: str = "", **kwargs) -> HttpResponse:
    try:
        url = action(*args, **kwargs)
    except payments.PaymentError as exc:
        messages.error(request, str(exc))
        return redirect("billing")
    if success:
        messages.success(request, success)
    return redirect(url or "billing")


@login_required
@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    """Start Checkout for a plan (subscribe or change plan) or a credit package."""
    _require_manager(request)
    kind = request.POST.get("kind")
    slug = request.POST.get("slug", "")
    currency = request.POST.get("currency", "")
    if kind == "package":
        package = CreditPackage.objects.filter(slug=slug, is_active=True).first()
        if package is None:
            messages.error(request, "There is no such package.")
            return redirect("billing")
        return _run(
            request,
            payments.start_package_checkout,
            request.workspace,
            package,
            currency,
            user=request.user,
        )
    if kind == "plan":
        plan = Plan.objects.filter(slug=slug, is_active=True).first()
        if plan is None:
            messages.error(request, "There is no such plan.")
            return redirect("billing")
        current = payments.live_payment_subscription(request.workspace)
        if current is not None:
            try:
                payments.change_plan(request.workspace, plan)
                # Apply an upgrade now rather than when the webhook arrives (same rules).
                stripe_sync.sync_subscription(current.external_id)
            except (payments.PaymentError, stripe.StripeError) as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request, _("Your plan is changing to %(plan)s.") % {"plan": plan.display_name}
                )
            return redirect("billing")
        return _run(
            request,
            payments.start_subscription_checkout,
            request.workspace,
            plan,
            currency,
            user=request.user,
        )
    messages.error(request, "Choose a plan or a package.")
    return redirect("billing")


@login_required
@require_POST
def portal(request: HttpRequest) -> HttpResponse:
    """Open the Stripe Customer Portal (payment methods, invoices, cancellation)."""
    _require_manager(request)
    return _run(request, payments.portal_url, request.workspace)


@login_required
@require_POST
def cancel(request: HttpRequest) -> HttpResponse:
    """Cancel at period end: the plan lasts until the paid period is over."""
    _require_manager(request)
    return _run(
        request,
        payments.cancel_at_period_end,
        request.workspace,
        success="Your subscription will end at the end of the paid period.",
    )


@login_required
@require_safe
def wallet_page(request: HttpRequest) -> HttpResponse:
    """Balance, lots and their expiry, holds in flight, ledger history, usage this period."""
    workspace = request.workspace
    flt = reports.LedgerFilter.from_query(request.GET)
    entries = list(reports.ledger_entries(workspace, flt)[:LEDGER_PAGE])
    wallet = ledger.get_wallet(workspace)
    context = {
        "workspace": workspace,
        "wallet": wallet,
        "available": ledger.available_credits(workspace),
        "lots": reports.live_lots(workspace),
        "holds": [
            {"amount": h.amount, "reason": display.ledger_reason(h.reason)}
            for h in reports.pending_holds(workspace)
        ],
        "entries": [
            {"entry": e, "charged": reports.charge_of(e), "reason": display.ledger_reason(e.reason)}
            for e in entries
        ],
        "filter": flt,
        "kinds": EntryKind.choices,
        "usage": reports.usage_this_period(workspace),
        "query": request.GET.urlencode(),
        "now": timezone.now(),
    }
    return render(request, "billing/wallet.html", context)


@login_required
@require_safe
def wallet_csv(request: HttpRequest) -> HttpResponse:
    """The filtered ledger history as a CSV download."""
    flt = reports.LedgerFilter.from_query(request.GET)
    body = reports.ledger_csv(reports.ledger_entries(request.workspace, flt))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="retake-ledger.csv"'
    return response


@require_safe
def pricing_page(request: HttpRequest) -> HttpResponse:
    """Public: plans, packages, and whether it is peak or off-peak right now."""
    now = timezone.now()
    off_peak = pricing.is_off_peak(now)
    opens = None if off_peak else pricing.next_off_peak_start(now)
    cards = list(
        RateCard.objects.filter(is_active=True, video_model__is_active=True).select_related(
            "video_model"
        )
    )
    resolutions = [r for r in RESOLUTION_ORDER if any(r in c.rates for c in cards)]
    cheapest = {
        r: min((c.rates[r] for c in cards if c.rates.get(r)), default=None) for r in resolutions
    }
    context = {
        "plans": [
            {
                "plan": plan,
                "prices": _prices(plan.prices),
                # What a month of the plan's credits buys at the cheapest rate per resolution.
                "seconds": [
                    (r, plan.monthly_credits // cheapest[r])
                    for r in resolutions
                    if cheapest[r]
                    and plan.monthly_credits
                    and RESOLUTION_ORDER.index(r) <= RESOLUTION_ORDER.index(plan.max_resolution)
                ],
            }
            for plan in Plan.objects.filter(is_active=True)
        ],
        "rate_resolutions": resolutions,
        "rates": [
            {
                "model": card.video_model,
                "rates": [card.rates.get(r) for r in resolutions],
                "draft": card.draft_rate,
                "draft_resolution": card.video_model.draft_resolution,
            }
            for card in sorted(cards, key=lambda c: c.video_model.name)
        ],
        "packages": [
            {"package": package, "prices": _prices(package.prices)}
            for package in CreditPackage.objects.filter(is_active=True)
        ],
        "off_peak": off_peak,
        "opens_at": opens,
        "opens_in": countdown(opens - now) if opens else "",
    }
    return render(request, "billing/pricing.html", context)


def countdown(delta) -> str:
    """ "3 h 12 min" (or "12 min"): how long until the next off-peak window."""
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = []
    if days:
        parts.append(_("%(n)d d") % {"n": days})
    if hours or days:
        parts.append(_("%(n)d h") % {"n": hours})
    parts.append(_("%(n)d min") % {"n": minutes})
    return " ".join(parts)
