"""The API settings page: a workspace's API keys and webhook endpoints, with deliveries.

Owners and admins create and revoke keys and manage endpoints; members see the lists.
Thin: forms are parsed here, state changes go through `accounts.api_keys` and
`api.webhooks`.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.api_keys import (
    ApiKeyError,
    create_api_key,
    no_api_access_message,
    plan_allows_api,
    revoke_api_key,
)
from accounts.models import ApiKey
from billing.ledger import api_key_spent_this_month

from . import webhooks
from .models import EventType, WebhookDelivery, WebhookEndpoint
from .serializers import WebhookEndpointSerializer


class KeyForm(forms.Form):
    name = forms.CharField(max_length=120, label=gettext_lazy("Name"))
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label=gettext_lazy("Expires in (days)")
    )
    monthly_spend_cap = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        required=False,
        label=gettext_lazy("Monthly cap (credits)"),
    )


def _require_manager(request: HttpRequest) -> None:
    if request.membership is None or not request.membership.can_manage:
        raise PermissionDenied(_("Only owners and admins can manage the API settings."))


@login_required
def api_settings(request: HttpRequest) -> HttpResponse:
    workspace = request.workspace
    if workspace is None:
        raise Http404
    can_manage = request.membership.can_manage
    form = KeyForm(request.POST or None)
    new_key = None
    if request.method == "POST":
        _require_manager(request)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                key, new_key = create_api_key(
                    workspace,
                    name=form.cleaned_data["name"],
                    acting_user=request.user,
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                    monthly_spend_cap=form.cleaned_data["monthly_spend_cap"],
                )
            except ApiKeyError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request,
                    _("Key %(name)s created. Copy it now: it is not shown again.")
                    % {"name": key.name},
                )
                form = KeyForm()
    keys = list(ApiKey.objects.for_workspace(workspace).select_related("created_by"))
    for key in keys:
        key.spent_this_month = api_key_spent_this_month(workspace, key)
    context = {
        "workspace": workspace,
        "can_manage": can_manage,
        "api_allowed": plan_allows_api(workspace),
        "no_access_message": no_api_access_message(workspace),
        "form": form,
        "new_key": new_key,
        "keys": keys,
        "endpoints": WebhookEndpoint.objects.for_workspace(workspace),
        "event_types": EventType.choices,
    }
    return render(request, "api/settings.html", context)


@login_required
@require_POST
def revoke_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = ApiKey.objects.for_workspace(request.workspace).filter(pk=key_id).first()
    if key is None:
        raise Http404
    _require_manager(request)
    revoke_api_key(key, acting_user=request.user)
    messages.success(request, _("Key %(name)s revoked.") % {"name": key.name})
    return redirect("api_settings")


@login_required
@require_POST
def add_endpoint(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    data = {
        "url": request.POST.get("url", ""),
        "description": request.POST.get("description", ""),
        "event_types": request.POST.getlist("event_types"),
        "low_balance_threshold": request.POST.get("low_balance_threshold") or None,
    }
    form = WebhookEndpointSerializer(data=data)
    if form.is_valid():
        WebhookEndpoint.objects.for_workspace(request.workspace).create(
            workspace=request.workspace, **form.validated_data
        )
        messages.success(request, _("Webhook endpoint added."))
    else:
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")
    return redirect("api_settings")


def _endpoint(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.for_workspace(request.workspace).filter(pk=endpoint_id)
    endpoint = endpoint.first()
    if endpoint is None:
        raise Http404
    return endpoint


@login_required
def endpoint_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "POST":
        _require_manager(request)
        action = request.POST.get("action")
        if action == "delete":
            endpoint.delete()
            messages.success(request, _("Webhook endpoint deleted."))
            return redirect("api_settings")
        if action in ("enable", "disable"):
            endpoint.is_active = action == "enable"
            if endpoint.is_active:
                endpoint.disabled_at = endpoint.failing_since = None
            endpoint.save()
            messages.success(request, _("Webhook endpoint updated."))
        return redirect("api_webhook_endpoint", endpoint_id=endpoint.pk)
    deliveries = endpoint.deliveries.prefetch_related("attempt_log")[:50]
    context = {
        "endpoint": endpoint,
        "deliveries": deliveries,
        "can_manage": request.membership.can_manage,
    }
    return render(request, "api/endpoint.html", context)


@login_required
@require_POST
def redeliver(request: HttpRequest, delivery_id) -> HttpResponse:
    delivery = (
        WebhookDelivery.objects.for_workspace(request.workspace).filter(pk=delivery_id).first()
    )
    if delivery is None:
        raise Http404
    _require_manager(request)
    webhooks.redeliver(delivery)
    messages.success(request, _("Delivery queued again."))
    return redirect("api_webhook_endpoint", endpoint_id=delivery.endpoint_id)


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    """404 for URLs nothing matches: the API's error shapes under /api/ and /v1/."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    from .errors import v1_error_body

    message = _("Not found.")
    if request.path.startswith("/api/"):
        return JsonResponse(v1_error_body(message, None, {}, "not_found"), status=404)
    if request.path.startswith("/v1/"):
        body = {"error": {"message": message, "type": "not_found_error", "param": None,
                          "code": "not_found"}}  # fmt: skip
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)
