"""Subscriptions that live (semantics §6, §12), through the official client: the integration
guide's hybrid "Premium Plan" created exactly as the guide writes it ($20 a month, 1,000 CREDIT
each month with `expire_and_replace` in the guide's older `refresh` shape, images at 10 CREDIT),
a customer subscribed on a test clock, and balances read across two periods as the clock moves."""

from __future__ import annotations

from decimal import Decimal

import requests

from conftest import make_client
from test_billing import balances, send
from test_catalog import raw_json

# The guide's two documents, verbatim.
CREDIT_ASSET = {"code": "CREDIT", "name": "Credits", "precision": 0, "symbol": "⭐", "label": "CR",
                "rates": [{"source": "USD", "rate": 0.05}]}
PREMIUM_PLAN = {
    "name": "Premium Plan", "code": "premium_monthly",
    "entitlements": [{"name": "Monthly Credit Allowance", "asset": "CREDIT", "amount": 1000, "purpose": "bundled",
                      "refresh": {"interval": "month", "strategy": "expire_and_replace"},
                      "accounting": {"revenue_basis": 0, "cost_basis": "auto"}}],
    "prices": [
        {"name": "Monthly Subscription Fee", "type": "fixed",
         "billing_model": {"type": "recurring", "recurring": {"interval": "month"}},
         "pricing": [{"asset": "USD", "values": [{"unit_price": 20}]}]},
        {"name": "Image Generation", "type": "usage_based", "billing_model": {"type": "real_time"},
         "usage_calculation": {"event_type": "image_generated", "usage_type": "unit"},
         "pricing": [{"asset": "CREDIT", "values": [{"unit_price": 10}]}]}],
    "publish": True,
}


def advance(http: requests.Session, url: str, clock: str, to: str) -> dict:
    r = http.post(f"{url}/test-clocks/{clock}/advance", json={"frozen_time": to})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    return r.json()


def test_the_guides_premium_plan_charges_its_fee_and_grants_its_credits_every_month(fresh_server):
    client = make_client(fresh_server)
    client.assets.create(CREDIT_ASSET)
    product = client.products.create(PREMIUM_PLAN)
    version = client.products.get_version(product.id, "1", cls=raw_json)
    # Shown in the current shape: `refresh.interval` became `duration`, `duration_count` 1.
    assert version["entitlements"][0]["lifecycle"] == {
        "duration": "month", "duration_count": 1, "refresh": {"strategy": "expire_and_replace"}}

    with requests.Session() as http:
        http.headers["X-CREDYT-API-KEY"] = fresh_server.key
        r = http.post(f"{fresh_server.url}/test-clocks", json={"frozen_time": "2027-03-01T09:00:00Z"})
        assert r.status_code == 201, r.text
        clock = r.json()["id"]

        customer = client.customers.create({
            "name": "Pixel Studio", "external_id": "pixel-studio", "test_clock": clock,
            "subscriptions": [{"products": [{"code": "premium_monthly"}]}]})
        # Period 1 starts now: the fee and the month's credits are there at once.
        assert balances(client, customer.id) == {"default:CREDIT": Decimal("1000"), "default:USD": Decimal("-20")}
        assert customer.subscriptions[0].renews_at.isoformat().startswith("2027-04-01T09:00:00")

        send(client, customer.id, [
            {"id": f"img-{i}", "event_type": "image_generated", "occurred_at": "2027-03-01T09:00:00Z", "data": {}}
            for i in range(3)])
        advance(http, fresh_server.url, clock, "2027-03-31T09:00:00Z")
        assert balances(client, customer.id)["default:CREDIT"] == Decimal("970")

        # Period 2: the 970 left expire (no rollover), 1,000 fresh credits, a second fee.
        advance(http, fresh_server.url, clock, "2027-04-01T09:00:00Z")
        assert balances(client, customer.id) == {"default:CREDIT": Decimal("1000"), "default:USD": Decimal("-40")}
        grants = client.wallets.customer_wallet_ops.get_credit_grants(
            customer.id, "default:CREDIT", exclude_expired=False, cls=raw_json)
        assert sorted(Decimal(g["available"]) for g in grants["items"]) == [Decimal("0"), Decimal("1000")]

        # Period 3 (two periods on), then the customer as the client reads it.
        advance(http, fresh_server.url, clock, "2027-05-01T09:00:00Z")
        assert balances(client, customer.id) == {"default:CREDIT": Decimal("1000"), "default:USD": Decimal("-60")}
        subscription = client.customers.get(customer.id).subscriptions[0]
        assert subscription.status == "active"
        assert subscription.renews_at.isoformat().startswith("2027-06-01T09:00:00")
