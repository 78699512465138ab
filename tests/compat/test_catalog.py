"""Catalog compatibility: assets, products, customers, wallets, errors.

Every flow goes through the official `credyt-api` client, unchanged; raw HTTP
(`requests`) is used only where a test checks an error status or body.

Decimals: the client declares some amount fields as `int` (e.g. `unit_price`)
and would truncate them on attribute access, and others as `decimal.Decimal`.
Decimal values are therefore always read from the model's dict form
(`model.as_dict()` / `model["field"]`, the JSON value as received) and
compared as `Decimal(str(x))`. Where exactness beyond a float matters
(`test_decimals_round_trip_exactly`), bodies go through the client as bytes and
answers are read as text with `parse_float=Decimal`.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pytest
import requests
from corehttp.credentials import ServiceKeyCredential
from corehttp.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from corehttp.rest import HttpRequest
from credytapi import CredytApiClient, models

from conftest import make_client

PROBLEM_JSON = "application/problem+json"


def D(x) -> Decimal:
    """Exact decimal of a JSON number as the client parsed it."""
    assert x is not None, "expected a number, got null/missing"
    assert not isinstance(x, bool), f"expected a number, got {x!r}"
    return Decimal(str(x))


def body_text(resp) -> str:
    """Response body as text, for corehttp (`text()`) and requests (`text`) responses."""
    text = resp.text
    return text() if callable(text) else text


def problem(resp) -> dict:
    """The ProblemDetails body of an error response (corehttp or requests)."""
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith(PROBLEM_JSON), f"content-type {ctype!r}, body {body_text(resp)!r}"
    body = resp.json()
    assert isinstance(body, dict), body
    return body


def dimensional_prices(prices: dict[str, str]) -> list[dict]:
    """One real-time, unit, per-`model` usage price for `image_generated` events.

    `prices` maps the `model` dimension value to the USD unit price (a decimal string).
    """
    return [
        {
            "type": "usage_based",
            "name": "Image generation",
            "usage_calculation": {
                "event_type": "image_generated",
                "usage_type": "unit",
                "billable_dimensions": ["model"],
            },
            "billing_model": {"type": "real_time"},
            "pricing": [
                {
                    "asset": "USD",
                    "values": [
                        {"dimensions": {"model": model}, "values": [{"unit_price": Decimal(price)}]}
                        for model, price in prices.items()
                    ],
                }
            ],
        }
    ]


PRICES_V1 = {"dall-e-3": "0.05", "gpt-image": "0.10", "*": "0.03"}
PRICES_V2 = {"dall-e-3": "0.06", "gpt-image": "0.12", "*": "0.04"}


def assert_dimensional_prices(prices: list, expected: dict[str, str]) -> None:
    """`prices` (dict form) is the single price built by `dimensional_prices(expected)`."""
    assert len(prices) == 1, prices
    price = prices[0]
    assert price["type"] == "usage_based"
    assert price["name"] == "Image generation"
    calc = price["usage_calculation"]
    assert calc["event_type"] == "image_generated"
    assert calc["usage_type"] == "unit"
    assert calc["billable_dimensions"] == ["model"]
    assert price["billing_model"]["type"] == "real_time"
    assert len(price["pricing"]) == 1, price["pricing"]
    pricing = price["pricing"][0]
    assert pricing["asset"] == "USD"
    got = []
    for dim in pricing["values"]:
        assert len(dim["values"]) == 1, dim
        got.append((dim["dimensions"], D(dim["values"][0]["unit_price"])))
    assert got == [({"model": m}, Decimal(p)) for m, p in expected.items()]


def get_version(client, product_id: str, version) -> models.GetProductVersionResponse:
    """GET /products/{id}/{version} through the client pipeline (works for `default` too)."""
    resp = client.send_request(HttpRequest("GET", f"/products/{product_id}/{version}"))
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text()}"
    return models.GetProductVersionResponse(resp.json())


def create_product_with_default_v2(client, code: str) -> str:
    """Product `code`: v1 published, v2 published and default. Returns its id."""
    created = client.products.create(
        {"name": f"Images {code}", "code": code, "publish": True, "prices": dimensional_prices(PRICES_V1)}
    )
    client.products.create_version(created.id, {"prices": dimensional_prices(PRICES_V2)})
    client.products.update_version(created.id, 2, {"publish": True, "make_default": True})
    return created.id


# --------------------------------------------------------------------------- assets


def test_custom_asset_rates_and_quote(client, unique):
    code = f"CRED{unique}"
    created = client.assets.create(
        models.CreateAssetRequest(
            code=code,
            name=f"Credits {unique}",
            precision=2,
            rates=[models.StartingExchangeRate(source="USD", rate=Decimal("0.10"))],
        )
    )
    assert created.code == code
    assert isinstance(created.created_at, datetime.datetime)

    asset = client.assets.get(code).as_dict()
    assert asset["code"] == code
    assert asset["name"] == f"Credits {unique}"
    assert asset["precision"] == 2
    usd = [r for r in asset["rates"] if r["source"] == "USD"]
    assert len(usd) == 1, asset["rates"]
    assert len(usd[0]["schedule"]) == 1, usd[0]
    first = usd[0]["schedule"][0]
    assert D(first["rate"]) == Decimal("0.1")
    assert D(first["inverse_rate"]) == Decimal("10")
    assert first.get("valid_to") is None
    assert isinstance(client.assets.get(code).rates[0].schedule[0].valid_from, datetime.datetime)

    assert client.assets.add_rate(code, {"source": "USD", "rate": Decimal("0.2")}) is None

    asset = client.assets.get(code).as_dict()
    usd = [r for r in asset["rates"] if r["source"] == "USD"]
    assert len(usd) == 1, asset["rates"]
    schedule = usd[0]["schedule"]
    assert len(schedule) == 2, schedule
    open_rates = [r for r in schedule if r.get("valid_to") is None]
    assert len(open_rates) == 1, f"the new rate must close the previous one: {schedule}"
    assert D(open_rates[0]["rate"]) == Decimal("0.2")
    assert D(open_rates[0]["inverse_rate"]) == Decimal("5")

    quote = client.assets.quote(code, {"source": "USD", "amount": 10}).as_dict()
    assert quote["source"] == "USD"
    assert quote["destination"] == code
    assert D(quote["source_amount"]) == Decimal("10")
    assert D(quote["destination_amount"]) == Decimal("50")
    assert D(quote["rate"]) == Decimal("0.2")
    if quote.get("inverse_rate") is not None:
        assert D(quote["inverse_rate"]) == Decimal("5")


def test_custom_asset_is_listed(client, unique):
    code = f"CRED{unique}"
    client.assets.create({"code": code, "name": f"Listed {unique}", "precision": 2})
    page = client.assets.list(limit=100)
    assert page.limit == 100
    assert page.offset == 0
    codes = [item.code for item in page.items_property]
    assert codes == sorted(codes), "assets are listed sorted by code"
    if page.total_count <= 100:
        assert code in codes


# --------------------------------------------------------------------------- products


def test_dimensional_product_versions(client, unique):
    code = f"images-{unique.lower()}"
    created = client.products.create(
        {"name": f"Images {unique}", "code": code, "publish": True, "prices": dimensional_prices(PRICES_V1)}
    )
    assert created.id.startswith("prod_"), created.id
    assert created.code == code
    assert created.version == 1
    assert created.status == "published"
    assert created.is_default is True
    product_id = created.id

    v2 = client.products.create_version(product_id, {"prices": dimensional_prices(PRICES_V2)})
    assert v2.id == product_id
    assert v2.code == code
    assert v2.version == 2
    assert v2.status == "draft"
    assert v2.is_default is False

    assert client.products.update_version(product_id, 2, {"publish": True, "make_default": True}) is None

    product = client.products.get(product_id)
    assert product.id == product_id
    assert product.code == code
    assert product.name == f"Images {unique}"
    assert product.default_version.version == 2
    assert_dimensional_prices(product.as_dict()["default_version"]["prices"], PRICES_V2)
    versions = sorted((v.version, v.status) for v in product.versions)
    assert versions == [(1, "published"), (2, "published")]
    assert all(isinstance(v.created_at, datetime.datetime) for v in product.versions)

    # The documented way, `client.products.get_version(product_id, "default")`,
    # fails inside credyt-api 0.2.0 before any request is sent: its request
    # builder serializes the `version` path parameter as `int` ("version must be
    # type int"). So `default` is asked for through the client's own pipeline
    # (`send_request`: same endpoint, auth and policies) and read into the
    # client's response model.
    with pytest.raises(TypeError):
        client.products.get_version(product_id, "default")
    default = get_version(client, product_id, "default")
    assert default.id == product_id
    assert default.version == 2
    assert default.code == code
    assert default.name == f"Images {unique}"
    assert default.status == "published"
    assert default.is_default is True
    assert_dimensional_prices(default.as_dict()["prices"], PRICES_V2)

    v1 = client.products.get_version(product_id, 1)
    assert v1.version == 1
    assert v1.status == "published"
    assert v1.is_default is False
    assert_dimensional_prices(v1.as_dict()["prices"], PRICES_V1)

    page = client.products.list(code=code)
    assert page.total_count == 1
    assert [(p.id, p.code, p.name) for p in page.items_property] == [(product_id, code, f"Images {unique}")]


def test_volume_price_without_volume_field_is_422(client, unique):
    body = {
        "name": "Tokens",
        "code": f"tokens-{unique.lower()}",
        "prices": [
            {
                "type": "usage_based",
                "name": "Input tokens",
                "usage_calculation": {"event_type": "completion", "usage_type": "volume"},
                "billing_model": {"type": "real_time"},
                "pricing": [
                    {"asset": "USD", "values": [{"volume_rate": Decimal("1.25"), "package_size": 1000000}]}
                ],
            }
        ],
    }
    with pytest.raises(HttpResponseError) as exc:
        client.products.create(body)
    assert exc.value.status_code == 422, body_text(exc.value.response)
    body = problem(exc.value.response)
    assert body["status"] == 422
    assert "prices[0].usage_calculation.volume_field" in body["errors"], body
    assert exc.value.model is not None
    assert "prices[0].usage_calculation.volume_field" in exc.value.model.errors


# --------------------------------------------------------------------------- customers and wallets


def test_customer_with_subscription(client, unique):
    product_code = f"images-{unique.lower()}"
    product_id = create_product_with_default_v2(client, product_code)

    external_id = f"ext-{unique}"
    name = f"Ada {unique}"
    email = f"ada.{unique.lower()}@example.com"
    metadata = {"plan": "pro", "team": unique}
    created = client.customers.create(
        {
            "name": name,
            "external_id": external_id,
            "email": email,
            "metadata": metadata,
            "subscriptions": [
                {
                    "products": [{"id": product_id, "version": "default"}],
                    "return_url": "https://example.com/return",
                    "failure_url": "https://example.com/failure",
                }
            ],
        }
    )
    customer_id = created.id
    assert customer_id.startswith("cust_"), customer_id
    assert len(created.subscriptions) == 1, created.as_dict()
    sub = created.subscriptions[0]
    assert sub.id.startswith("sub_"), sub.id
    assert sub.status == "active"
    assert len(sub.products) == 1, sub.as_dict()
    assert sub.products[0].id == product_id
    assert sub.products[0].version == 2, "`default` must resolve to the pinned version number"
    if sub.products[0].code is not None:
        assert sub.products[0].code == product_code

    page = client.customers.list(external_id=external_id)
    assert page.total_count == 1
    assert len(page.items_property) == 1
    summary = page.items_property[0]
    assert summary.id == customer_id
    assert summary.external_id == external_id
    assert summary.name == name
    assert summary.email == email
    assert summary.active_subscription_count == 1

    got = client.customers.get(customer_id)
    assert got.id == customer_id
    assert got.name == name
    assert got.email == email
    assert got.external_id == external_id
    assert got.metadata == metadata
    assert got.active_subscription_count == 1
    assert isinstance(got.created_at, datetime.datetime)
    assert len(got.subscriptions) == 1
    gsub = got.subscriptions[0]
    assert gsub.id == sub.id
    assert gsub.status == "active"
    assert [(p.id, p.version) for p in gsub.products] == [(product_id, 2)]

    wallet = client.wallets.customer_wallet_ops.get_customer_wallet(customer_id)
    accounts = {a["id"]: a for a in wallet.as_dict()["accounts"]}
    assert "default:USD" in accounts, accounts
    usd = accounts["default:USD"]
    assert usd["name"] == "default"
    assert usd["asset"] == "USD"
    assert D(usd["available"]) == Decimal("0")


def test_duplicate_customer_external_id_is_422(client, unique):
    external_id = f"dup-{unique}"
    client.customers.create({"name": "First", "external_id": external_id})
    with pytest.raises(HttpResponseError) as exc:
        client.customers.create({"name": "Second", "external_id": external_id})
    assert exc.value.status_code == 422, body_text(exc.value.response)
    body = problem(exc.value.response)
    assert "external_id" in body["errors"], body
    assert body["errors"]["external_id"], "the error must explain itself"

    page = client.customers.list(external_id=external_id)
    assert page.total_count == 1
    assert page.items_property[0].name == "First"


def test_unknown_customer_is_404(client, http, server):
    with pytest.raises(ResourceNotFoundError) as exc:
        client.customers.get("cust_doesnotexist")
    assert exc.value.status_code == 404

    resp = http.get(f"{server.url}/customers/cust_doesnotexist")
    assert resp.status_code == 404
    body = problem(resp)
    assert body["status"] == 404
    assert isinstance(body.get("title"), str)


# --------------------------------------------------------------------------- auth, errors, context


def test_healthz_is_unauthenticated(server):
    resp = requests.get(f"{server.url}/healthz", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_missing_or_wrong_api_key_is_401(server):
    resp = requests.get(f"{server.url}/customers", timeout=10)
    assert resp.status_code == 401
    body = problem(resp)
    assert body["status"] == 401

    resp = requests.get(
        f"{server.url}/customers", headers={"X-CREDYT-API-KEY": "sk_test_wrong"}, timeout=10
    )
    assert resp.status_code == 401

    with CredytApiClient(ServiceKeyCredential("sk_test_wrong"), endpoint=server.url, retry_total=0) as bad:
        with pytest.raises(ClientAuthenticationError) as exc:
            bad.accounts.get_context()
    assert exc.value.status_code == 401


def test_malformed_json_is_400_problem_details(http, server):
    resp = http.post(
        f"{server.url}/customers",
        data=b'{"name": "Broken", ',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    body = problem(resp)
    assert body["status"] == 400
    assert isinstance(body.get("title"), str) and body["title"]


def test_account_context_is_test_environment(client):
    ctx = client.accounts.get_context()
    assert ctx.environment == "test"
    assert isinstance(ctx.account_id, str) and ctx.account_id


# --------------------------------------------------------------------------- fresh server


def test_empty_server_lists_nothing(fresh_server):
    with make_client(fresh_server) as c:
        page = c.customers.list()
        assert (page.total_count, page.items_property, page.offset) == (0, [], 0)
        assert page.limit > 0
        products = c.products.list()
        assert (products.total_count, products.items_property) == (0, [])


def test_catalog_survives_restart(server_factory, unique):
    srv = server_factory.start()
    with make_client(srv) as c:
        product_id = create_product_with_default_v2(c, f"images-{unique.lower()}")
        customer = c.customers.create(
            {
                "name": "Durable",
                "external_id": f"ext-{unique}",
                "subscriptions": [
                    {
                        "products": [{"id": product_id, "version": "default"}],
                        "return_url": "https://example.com/return",
                        "failure_url": "https://example.com/failure",
                    }
                ],
            }
        )
        c.assets.create({"code": f"CRED{unique}", "name": "Durable credits", "precision": 2,
                         "rates": [{"source": "USD", "rate": Decimal("0.10")}]})

    srv = server_factory.restart(srv)
    with make_client(srv) as c:
        got = c.customers.get(customer.id)
        assert got.name == "Durable"
        assert [(p.id, p.version) for p in got.subscriptions[0].products] == [(product_id, 2)]
        product = c.products.get(product_id)
        assert product.default_version.version == 2
        assert_dimensional_prices(product.as_dict()["default_version"]["prices"], PRICES_V2)
        asset = c.assets.get(f"CRED{unique}").as_dict()
        assert D(asset["rates"][0]["schedule"][0]["rate"]) == Decimal("0.1")


# --------------------------------------------------------------------------- exact decimals


def raw_json(pipeline_response, _deserialized, _headers):
    """`cls=` hook: the response body parsed with exact decimals (no float)."""
    return json.loads(pipeline_response.http_response.text(), parse_float=Decimal)


def test_decimals_round_trip_exactly(client, unique):
    """Semantics 1 and 5: no f64 on the money path; only divisions round, to 12
    fractional digits, half-even. The client itself would send and read floats,
    so the bodies go through it as bytes and the answers are read as text."""
    code = f"CRED{unique}"
    rate = "0.1234567890123456789"  # more digits than a float holds
    client.assets.create(
        f'{{"code": "{code}", "name": "Exact", "rates": [{{"source": "USD", "rate": {rate}}}]}}'.encode()
    )
    asset = client.assets.get(code, cls=raw_json)
    entry = asset["rates"][0]["schedule"][0]
    assert entry["rate"] == Decimal(rate)
    assert entry["inverse_rate"] == Decimal("8.100000072900")  # 1 / rate, 12 digits half-even

    quote = client.assets.quote(code, b'{"source": "USD", "amount": 0.3}', cls=raw_json)
    assert quote["source_amount"] == Decimal("0.3")
    assert quote["destination_amount"] == Decimal("2.43000002187")

    product = client.products.create(
        json.dumps(
            {
                "name": "Exact",
                "code": f"exact-{unique.lower()}",
                "publish": True,
                "prices": [
                    {
                        "type": "usage_based",
                        "name": "Tokens",
                        "usage_calculation": {"event_type": "completion", "usage_type": "unit"},
                        "billing_model": {"type": "real_time"},
                        "pricing": [{"asset": "USD", "values": [{"unit_price": "@PRICE@"}]}],
                    }
                ],
            }
        )
        .replace('"@PRICE@"', "0.1000000000000000000000001")
        .encode()
    )
    version = client.products.get_version(product.id, 1, cls=raw_json)
    unit_price = version["prices"][0]["pricing"][0]["values"][0]["unit_price"]
    assert unit_price == Decimal("0.1000000000000000000000001")
