"""Rating compatibility: `products.simulate_usage` through the official client returns the
same fees as the Rust rating core (the tutorial examples, exactly)."""

from __future__ import annotations

from decimal import Decimal

from test_catalog import dimensional_prices, raw_json


def token_prices() -> list[dict]:
    def price(name: str, field: str, rate: str) -> dict:
        return {
            "type": "usage_based",
            "name": name,
            "usage_calculation": {"event_type": "chat_completion", "usage_type": "volume", "volume_field": field},
            "billing_model": {"type": "real_time"},
            "pricing": [{"asset": "USD", "values": [{"volume_rate": Decimal(rate), "package_size": 1000000}]}],
        }

    return [price("Input tokens", "input_tokens", "1.25"), price("Output tokens", "output_tokens", "10.00")]


def event(event_id: str, event_type: str, data: dict) -> dict:
    return {"id": event_id, "event_type": event_type, "occurred_at": "2026-11-01T12:00:00Z", "data": data}


def test_simulate_usage_prices_gpt_tokens_exactly(client, unique):
    created = client.products.create({"name": "GPT", "code": f"gpt-{unique}", "prices": token_prices(), "publish": True})
    events = [
        event("e1", "chat_completion", {"input_tokens": 1000000, "output_tokens": 1000000}),
        event("e2", "chat_completion", {"input_tokens": 2353, "output_tokens": 0}),
    ]
    result = client.products.simulate_usage(created.id, 1, {"events": events}, cls=raw_json)
    amounts = [(f["usage_id"], f["price_name"], f["amount"]) for f in result["fees"]]
    assert amounts == [
        ("e1", "Input tokens", Decimal("1.25")),
        ("e1", "Output tokens", Decimal("10")),
        ("e2", "Input tokens", Decimal("0.00294125")),
        ("e2", "Output tokens", Decimal("0")),
    ]
    assert all(f["currency"] == "USD" and f["usage_type"] == "volume" for f in result["fees"])
    # The typed model parses the same body.
    typed = client.products.simulate_usage(created.id, 1, {"events": events})
    assert [f.price_name for f in typed.fees] == ["Input tokens", "Output tokens"] * 2
    assert typed.fees[2].as_dict()["amount"] == 0.00294125


def test_simulate_usage_prices_images_with_a_star_fallback(client, unique):
    created = client.products.create(
        {"name": "Images", "code": f"img-{unique}", "publish": True,
         "prices": dimensional_prices({"dall-e-3": "0.05", "gpt-image-1": "0.10", "*": "0.03"})}
    )
    events = [
        event("a", "image_generated", {"model": "dall-e-3"}),
        event("b", "image_generated", {"model": "gpt-image-1"}),
        event("c", "image_generated", {"model": "stable-diffusion"}),
    ]
    result = client.products.simulate_usage(created.id, 1, {"events": events}, cls=raw_json)
    assert [(f["usage_id"], f["amount"], f["dimensions"]) for f in result["fees"]] == [
        ("a", Decimal("0.05"), {"model": "dall-e-3"}),
        ("b", Decimal("0.10"), {"model": "gpt-image-1"}),
        ("c", Decimal("0.03"), {"model": "*"}),
    ]


def test_simulate_usage_warns_about_unpriceable_events(client, unique):
    created = client.products.create({"name": "GPT", "code": f"gpt-{unique}", "prices": token_prices(), "publish": True})
    result = client.products.simulate_usage(
        created.id, 1, {"events": [event("e1", "chat_completion", {"input_tokens": "lots"})]}
    )
    assert result.fees == []
    assert len(result.warnings) == 2
    assert all("volume field" in w for w in result.warnings)
