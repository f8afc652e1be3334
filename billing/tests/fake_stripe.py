"""A local stand-in for the parts of Stripe's API Retake uses, served over real HTTP.

The real `stripe` library talks to it (STRIPE_API_BASE points here): form-encoded POST
bodies with nested keys (`line_items[0][price]`), JSON objects with an `object` field,
`Idempotency-Key` replays, and errors in Stripe's `{"error": {...}}` shape. Test helpers
(`complete_checkout`, `renew`, `fail_payment`, `refund`, …) play the part of the customer
and of Stripe's billing engine, and `event()` / `sign()` build webhook deliveries exactly
as Stripe signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

API_VERSION = "2026-10-28.endive"
_counter = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_counter):06d}{secrets.token_hex(6)}"


def _now() -> int:
    return int(time.time())


def parse_form(body: str) -> dict:
    """Decode Stripe's form encoding: `a[b][0][c]=x` becomes {"a": {"b": [{"c": "x"}]}}."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: dict = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, param: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "type": "invalid_request_error",
                "message": message,
                **({"param": param} if param else {}),
                **({"code": code} if code else {}),
            }
        }


def _require(params: dict, *names: str) -> None:
    for name in names:
        if name not in params or params[name] in ("", None):
            raise StripeError(400, f"Missing required param: {name}.", param=name)


class FakeStripe:
    """The in-memory account: objects by id, every request received, and the helpers."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.idempotent: dict[tuple[str, str], tuple[int, dict]] = {}
        self.lock = threading.RLock()
        self.fail_next: list[StripeError] = []
        self.server: ThreadingHTTPServer | None = None

    # --- HTTP ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, method: str, path: str, params: dict, headers: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append((method, path, params, headers))
            if not headers.get("authorization", "").startswith("Bearer sk_"):
                return 401, {
                    "error": {"type": "invalid_request_error", "message": "Invalid API Key."}
                }
            key = headers.get("idempotency-key")
            if method == "POST" and key and (path, key) in self.idempotent:
                return self.idempotent[(path, key)]
            try:
                if self.fail_next:
                    raise self.fail_next.pop(0)
                result = 200, self.route(method, path, params)
            except StripeError as exc:
                result = exc.status, exc.body
            if method == "POST" and key:
                self.idempotent[(path, key)] = result
            return result

    def route(self, method: str, path: str, params: dict) -> dict:
        routes = [
            ("POST", r"/v1/customers", self.create_customer),
            ("POST", r"/v1/products", self.create_product),
            ("POST", r"/v1/prices", self.create_price),
            ("POST", r"/v1/checkout/sessions", self.create_checkout_session),
            ("POST", r"/v1/billing_portal/sessions", self.create_portal_session),
            (
                "GET",
                r"/v1/(customers|prices|checkout/sessions|subscriptions|invoices|charges)/"
                r"(?P<id>[\w]+)",
                self.retrieve,
            ),
            ("POST", r"/v1/subscriptions/(?P<id>\w+)", self.update_subscription),
            ("DELETE", r"/v1/subscriptions/(?P<id>\w+)", self.cancel_subscription),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                ident = match.groupdict().get("id")
                return handler(ident, params) if ident else handler(params)
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def get(self, ident: str) -> dict:
        if ident not in self.objects:
            raise StripeError(
                404, f"No such object: '{ident}'", param="id", code="resource_missing"
            )
        return self.objects[ident]

    def retrieve(self, ident: str, params: dict) -> dict:
        return self.get(ident)

    def _store(self, obj: dict) -> dict:
        self.objects[obj["id"]] = obj
        return obj

    # --- API objects ---------------------------------------------------------------------

    def create_customer(self, params: dict) -> dict:
        return self._store(
            {
                "id": _id("cus"),
                "object": "customer",
                "created": _now(),
                "email": params.get("email"),
                "name": params.get("name"),
                "metadata": params.get("metadata", {}),
                "livemode": False,
            }
        )

    def create_product(self, params: dict) -> dict:
        _require(params, "name")
        return self._store(
            {
                "id": _id("prod"),
                "object": "product",
                "name": params["name"],
                "metadata": params.get("metadata", {}),
            }
        )

    def create_price(self, params: dict) -> dict:
        _require(params, "currency", "unit_amount", "product")
        self.get(params["product"])
        recurring = params.get("recurring")
        return self._store(
            {
                "id": _id("price"),
                "object": "price",
                "currency": params["currency"],
                "unit_amount": int(params["unit_amount"]),
                "product": params["product"],
                "recurring": {"interval": recurring["interval"]} if recurring else None,
                "type": "recurring" if recurring else "one_time",
                "metadata": params.get("metadata", {}),
            }
        )

    def create_checkout_session(self, params: dict) -> dict:
        _require(params, "mode", "line_items", "success_url")
        mode = params["mode"]
        if mode not in ("payment", "subscription"):
            raise StripeError(400, f"Invalid mode: {mode}", param="mode")
        items = params["line_items"]
        amount = 0
        currency = None
        for index, item in enumerate(items):
            price = self.get(item.get("price", ""))
            if (price["type"] == "recurring") != (mode == "subscription"):
                raise StripeError(
                    400,
                    f"The price {price['id']} does not fit mode {mode}.",
                    param=f"line_items[{index}][price]",
                )
            amount += price["unit_amount"] * int(item.get("quantity", 1))
            currency = price["currency"]
        if params.get("customer"):
            self.get(params["customer"])
        ident = _id("cs_test")
        return self._store(
            {
                "id": ident,
                "object": "checkout.session",
                "mode": mode,
                "status": "open",
                "payment_status": "unpaid",
                "url": f"https://checkout.stripe.test/c/pay/{ident}",
                "customer": params.get("customer"),
                "client_reference_id": params.get("client_reference_id"),
                "metadata": params.get("metadata", {}),
                "line_items_params": items,
                "subscription_data": params.get("subscription_data", {}),
                "payment_method_types": params.get("payment_method_types", ["card"]),
                "amount_total": amount,
                "currency": currency,
                "payment_intent": None,
                "subscription": None,
                "invoice": None,
                "success_url": params["success_url"],
                "cancel_url": params.get("cancel_url"),
                "created": _now(),
                "livemode": False,
            }
        )

    def create_portal_session(self, params: dict) -> dict:
        _require(params, "customer")
        self.get(params["customer"])
        ident = _id("bps")
        return self._store(
            {
                "id": ident,
                "object": "billing_portal.session",
                "customer": params["customer"],
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.test/p/session/{ident}",
            }
        )

    def update_subscription(self, ident: str, params: dict) -> dict:
        sub = self.get(ident)
        if sub["status"] == "canceled":
            raise StripeError(
                400, "A canceled subscription can only update its cancellation_details."
            )
        if "cancel_at_period_end" in params:
            sub["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
        if "metadata" in params:
            sub["metadata"].update(params["metadata"])
        for change in params.get("items", []):
            item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None:
                raise StripeError(400, "No such subscription item.", param="items")
            item["price"] = self.get(change["price"])
        sub["last_update_params"] = params
        return sub

    def cancel_subscription(self, ident: str, params: dict) -> dict:
        sub = self.get(ident)
        sub["status"] = "canceled"
        sub["canceled_at"] = _now()
        sub["ended_at"] = _now()
        return sub

    # --- the customer's and the billing engine's side ------------------------------------

    def _charge(self, customer: str | None, amount: int, currency: str) -> tuple[dict, dict]:
        intent = self._store(
            {
                "id": _id("pi"),
                "object": "payment_intent",
                "amount": amount,
                "currency": currency,
                "customer": customer,
                "status": "succeeded",
            }
        )
        charge = self._store(
            {
                "id": _id("ch"),
                "object": "charge",
                "amount": amount,
                "amount_refunded": 0,
                "currency": currency,
                "customer": customer,
                "payment_intent": intent["id"],
                "paid": True,
                "refunded": False,
                "disputed": False,
                "status": "succeeded",
                "created": _now(),
            }
        )
        intent["latest_charge"] = charge["id"]
        return intent, charge

    def complete_checkout(self, session_id: str, *, paid: bool = True) -> dict:
        """The customer pays (or, with a delayed method, submits) the Checkout page."""
        with self.lock:
            session = self.get(session_id)
            session["status"] = "complete"
            price = self.get(session["line_items_params"][0]["price"])
            if session["mode"] == "payment":
                intent, _charge = self._charge(
                    session["customer"], session["amount_total"], session["currency"]
                )
                session["payment_intent"] = intent["id"]
                session["payment_status"] = "paid" if paid else "unpaid"
                return session
            sub = self._store(
                {
                    "id": _id("sub"),
                    "object": "subscription",
                    "customer": session["customer"],
                    "status": "active",
                    "cancel_at_period_end": False,
                    "canceled_at": None,
                    "ended_at": None,
                    "currency": price["currency"],
                    "metadata": dict(session["subscription_data"].get("metadata", {})),
                    "created": _now(),
                    "items": {"object": "list", "data": []},
                    "latest_invoice": None,
                }
            )
            start = _now()
            end = int((datetime.fromtimestamp(start) + timedelta(days=30)).timestamp())
            sub["items"]["data"].append(
                {
                    "id": _id("si"),
                    "object": "subscription_item",
                    "price": price,
                    "quantity": 1,
                    "current_period_start": start,
                    "current_period_end": end,
                }
            )
            invoice = self._invoice(sub, "subscription_create")
            session["subscription"] = sub["id"]
            session["invoice"] = invoice["id"]
            session["payment_status"] = "paid"
            return session

    def _invoice(self, sub: dict, billing_reason: str, *, paid: bool = True) -> dict:
        item = sub["items"]["data"][0]
        price = item["price"]
        amount = price["unit_amount"]
        invoice = self._store(
            {
                "id": _id("in"),
                "object": "invoice",
                "customer": sub["customer"],
                "billing_reason": billing_reason,
                "status": "paid" if paid else "open",
                "amount_due": amount,
                "amount_paid": amount if paid else 0,
                "currency": price["currency"],
                "attempt_count": 1,
                "created": _now(),
                "period_start": item["current_period_start"],
                "period_end": item["current_period_end"],
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {
                        "subscription": sub["id"],
                        "metadata": dict(sub["metadata"]),
                    },
                },
                "lines": {
                    "object": "list",
                    "data": [
                        {
                            "id": _id("il"),
                            "object": "line_item",
                            "amount": amount,
                            "currency": price["currency"],
                            "pricing": {"price_details": {"price": price["id"]}},
                            "period": {
                                "start": item["current_period_start"],
                                "end": item["current_period_end"],
                            },
                        }
                    ],
                },
                "payments": {"object": "list", "data": []},
            }
        )
        if paid:
            intent, _charge = self._charge(sub["customer"], amount, price["currency"])
            invoice["payments"]["data"].append(
                {
                    "object": "invoice_payment",
                    "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
                }
            )
        sub["latest_invoice"] = invoice["id"]
        return invoice

    def renew(self, sub_id: str, *, at: datetime | None = None, paid: bool = True) -> dict:
        """The next period starts; its invoice is paid (or fails). Returns the invoice."""
        with self.lock:
            sub = self.get(sub_id)
            item = sub["items"]["data"][0]
            start = item["current_period_end"]
            end = int((datetime.fromtimestamp(start) + timedelta(days=30)).timestamp())
            item["current_period_start"], item["current_period_end"] = start, end
            invoice = self._invoice(sub, "subscription_cycle", paid=paid)
            sub["status"] = "active" if paid else "past_due"
            return invoice

    def end_subscription(self, sub_id: str) -> dict:
        with self.lock:
            return self.cancel_subscription(sub_id, {})

    def refund(self, charge_id: str, amount: int) -> dict:
        with self.lock:
            charge = self.get(charge_id)
            charge["amount_refunded"] = min(charge["amount"], charge["amount_refunded"] + amount)
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            return charge

    def dispute(self, charge_id: str, amount: int | None = None) -> dict:
        with self.lock:
            charge = self.get(charge_id)
            charge["disputed"] = True
            return self._store(
                {
                    "id": _id("du"),
                    "object": "dispute",
                    "amount": charge["amount"] if amount is None else amount,
                    "charge": charge["id"],
                    "payment_intent": charge["payment_intent"],
                    "currency": charge["currency"],
                    "reason": "fraudulent",
                    "status": "needs_response",
                    "created": _now(),
                }
            )

    def charge_for_intent(self, intent_id: str) -> dict:
        return self.get(self.get(intent_id)["latest_charge"])

    def sent(self, method: str, path: str) -> list[dict]:
        return [p for m, pth, p, _h in self.requests if m == method and pth == path]

    # --- webhooks ------------------------------------------------------------------------

    @staticmethod
    def event(event_type: str, obj: dict, *, created: int | None = None) -> dict:
        return {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created or _now(),
            "type": event_type,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": json.loads(json.dumps(obj))},
        }


def sign(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send for this payload."""
    timestamp = timestamp or _now()
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStripe

    def _serve(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = parse_form(body or url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.fake.handle(self.command, url.path, params, headers)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", _id("req"))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, *args) -> None:
        return


@contextmanager
def running_fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    handler = type("Handler", (_Handler,), {"fake": fake})
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
