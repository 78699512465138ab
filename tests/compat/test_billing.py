"""The billing models of the Credyt guides, end to end through the official client: usage sent
with `events.send_usage`, wallet credits with `create_adjustment`, balances read back exactly
(raw bodies parsed with `Decimal`) after the pipeline has posted each step."""

from __future__ import annotations

import datetime
import json
import time
from decimal import Decimal

from test_catalog import raw_json

POLL_DEADLINE_S = 60.0


def now(minutes: int = 0) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    return at.isoformat().replace("+00:00", "Z")


def unit_price(name: str, event_type: str, pricing: list[tuple[str, str]]) -> dict:
    return {
        "type": "usage_based",
        "name": name,
        "usage_calculation": {"event_type": event_type, "usage_type": "unit"},
        "billing_model": {"type": "real_time"},
        "pricing": [{"asset": asset, "values": [{"unit_price": Decimal(amount)}]} for asset, amount in pricing],
    }


def token_price() -> dict:
    return {
        "type": "usage_based",
        "name": "Tokens",
        "usage_calculation": {"event_type": "chat", "usage_type": "volume", "volume_field": "tokens"},
        "billing_model": {"type": "real_time"},
        "pricing": [{"asset": "USD", "values": [{"volume_rate": Decimal("1.25"), "package_size": 1000000}]}],
    }


def subscribe(client, unique: str, prices: list[dict]) -> str:
    product = client.products.create({"name": "Plan", "code": f"plan-{unique}", "prices": prices, "publish": True})
    customer = client.customers.create(
        {
            "name": "Acme",
            "external_id": f"acme-{unique}",
            "subscriptions": [
                {"products": [{"id": product.id}], "return_url": "https://x.test/ok", "failure_url": "https://x.test/ko"}
            ],
        }
    )
    return customer.id


def adjust(client, customer: str, transaction_id: str, asset: str, amount: str, reason: str, **extra) -> dict:
    body = {"transaction_id": transaction_id, "asset": asset, "reason": reason, **extra}
    # Sent as bytes so the amount travels as an exact JSON number.
    text = json.dumps(body)[:-1] + f', "amount": {amount}}}'
    return client.wallets.customer_wallet_ops.create_adjustment(customer, text.encode(), cls=raw_json)


def send(client, customer: str, events: list[dict]) -> None:
    client.events.send_usage({"customer_id": customer, "events": events})


def wait_posted(http, server, event_id: str) -> dict:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while time.monotonic() < deadline:
        r = http.get(f"{server.url}/events/{event_id}")
        if r.status_code == 200:
            return json.loads(r.text, parse_float=Decimal)
        time.sleep(0.01)
    raise AssertionError(f"event {event_id} was never posted")


def balances(client, customer: str) -> dict[str, Decimal]:
    wallet = client.wallets.customer_wallet_ops.get_customer_wallet(customer, cls=raw_json)
    return {a["id"]: Decimal(a["available"]) for a in wallet["accounts"]}


def event(event_id: str, event_type: str, data: dict | None = None) -> dict:
    return {"id": event_id, "event_type": event_type, "occurred_at": now(), "data": data or {}}


def test_subscription_only_monthly_credit_then_usage(client, http, server, unique):
    customer = subscribe(client, unique, [token_price()])
    # The platform bills its subscription elsewhere and credits the month's allowance.
    month_end = now(minutes=60 * 24 * 30)
    created = adjust(client, customer, f"month-1-{unique}", "USD", "20.00", "external_topup", expires_at=month_end)
    assert created["id"] == f"month-1-{unique}"
    assert balances(client, customer)["default:USD"] == Decimal("20")
    send(client, customer, [event(f"chat-1-{unique}", "chat", {"tokens": 2353}),
                            event(f"chat-2-{unique}", "chat", {"tokens": 1000000})])
    wait_posted(http, server, f"chat-1-{unique}")
    wait_posted(http, server, f"chat-2-{unique}")
    assert balances(client, customer)["default:USD"] == Decimal("20") - Decimal("0.00294125") - Decimal("1.25")
    grants = client.wallets.customer_wallet_ops.get_credit_grants(customer, "default:USD", cls=raw_json)
    assert [(g["purpose"], g["available"]) for g in grants["items"]] == [("paid", Decimal("18.74705875"))]


def test_top_ups_only_usage_then_refund(client, http, server, unique):
    customer = subscribe(client, unique, [unit_price("Images", "image", [("USD", "0.05")])])
    adjust(client, customer, f"topup-{unique}", "USD", "50", "external_topup")
    send(client, customer, [event(f"img-{i}-{unique}", "image") for i in range(3)])
    posted = wait_posted(http, server, f"img-2-{unique}")
    assert [f["amount"] for f in posted["fees"]] == [Decimal("0.05")]
    wait_posted(http, server, f"img-0-{unique}")
    assert balances(client, customer)["default:USD"] == Decimal("49.85")
    adjust(client, customer, f"refund-{unique}", "USD", "-10", "external_refund")
    assert balances(client, customer)["default:USD"] == Decimal("39.85")
    account = client.wallets.customer_wallet_ops.get_account(customer, "default:USD", cls=raw_json)
    assert (account["available"], account["pending_in"], account["pending_out"]) == (Decimal("39.85"), 0, 0)
    refund = client.wallets.customer_wallet_ops.get_transaction(customer, f"refund-{unique}")
    assert (refund.type, refund.as_dict()["amount"]) == ("adjustment", -10)


def test_hybrid_credits_in_consumption_order_then_usd_overage(client, http, server, unique):
    code = f"CR{unique}"
    client.assets.create(f'{{"code": "{code}", "name": "Credits", "rates": [{{"source": "USD", "rate": 0.01}}]}}'.encode())
    customer = subscribe(client, unique, [unit_price("Images", "image", [(code, "1"), ("USD", "0.012")])])
    soon = now(minutes=60 * 24 * 10)
    adjust(client, customer, f"paid-{unique}", code, "10", "external_topup")
    adjust(client, customer, f"gift-{unique}", code, "5", "gift", expires_at=soon)
    adjust(client, customer, f"usd-{unique}", "USD", "1.00", "external_topup")
    assert balances(client, customer) == {f"default:{code}": Decimal("15"), "default:USD": Decimal("1")}
    # 17 images: 5 from the promotion grant first (priority 10), then 10 paid credits, then the
    # credit account no longer covers a fee and the USD price takes over.
    send(client, customer, [event(f"h-{i:02}-{unique}", "image") for i in range(17)])
    for i in range(17):
        wait_posted(http, server, f"h-{i:02}-{unique}")
    assert balances(client, customer) == {f"default:{code}": Decimal("0"), "default:USD": Decimal("0.976")}
    last = wait_posted(http, server, f"h-16-{unique}")
    assert [(f["currency"], f["amount"]) for f in last["fees"]] == [("USD", Decimal("0.012"))]
    first = wait_posted(http, server, f"h-00-{unique}")
    assert [(f["currency"], f["amount"]) for f in first["fees"]] == [(code, Decimal("1"))]
    grants = client.wallets.customer_wallet_ops.get_credit_grants(customer, f"default:{code}", cls=raw_json)
    assert sorted((g["purpose"], g["available"]) for g in grants["items"]) == [("paid", 0), ("promotion", 0)]
    promotions = client.wallets.customer_wallet_ops.get_credit_grants(
        customer, f"default:{code}", purpose="promotion", cls=raw_json
    )
    assert [g["purpose"] for g in promotions["items"]] == ["promotion"]


def test_duplicate_events_and_replayed_adjustments_change_nothing(client, http, server, unique):
    customer = subscribe(client, unique, [unit_price("Calls", "call", [("USD", "0.25")])])
    first = adjust(client, customer, f"top-{unique}", "USD", "5", "external_topup")
    events = [event(f"call-{i}-{unique}", "call") for i in range(4)]
    send(client, customer, events)
    for e in events:
        wait_posted(http, server, e["id"])
    assert balances(client, customer)["default:USD"] == Decimal("4")
    # The same events again, and the same adjustment again: accepted, no effect.
    send(client, customer, events)
    replay = adjust(client, customer, f"top-{unique}", "USD", "5", "external_topup")
    assert replay == first
    marker = event(f"marker-{unique}", "other")
    send(client, customer, [marker])
    wait_posted(http, server, marker["id"])
    assert balances(client, customer)["default:USD"] == Decimal("4")
    listed = client.events.list(customer_id=customer, cls=raw_json)
    assert listed["total_count"] == 5
    # A different body under the same transaction id is a conflict.
    r = http.post(
        f"{server.url}/customers/{customer}/wallet/adjustments",
        data=f'{{"transaction_id": "top-{unique}", "asset": "USD", "amount": 6, "reason": "external_topup"}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 409, r.text
