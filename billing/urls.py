from django.urls import path

from . import views, webhooks

urlpatterns = [
    path("billing/", views.billing_page, name="billing"),
    path("wallet/", views.wallet_page, name="wallet"),
    path("wallet/ledger.csv", views.wallet_csv, name="wallet_csv"),
    path("pricing/", views.pricing_page, name="pricing"),
    path("billing/checkout/", views.checkout, name="billing_checkout"),
    path("billing/portal/", views.portal, name="billing_portal"),
    path("billing/cancel/", views.cancel, name="billing_cancel"),
    path("billing/stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
]
