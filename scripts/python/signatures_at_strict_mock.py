"""Real clients' signatures, verified by the mock's strict mode.

Run by daemon/tests/python_clients.rs against a strict mock (no proxy in
between) that knows the keys in SYNCOORD_TEST_KEYS and accepts JWTs naming
api.coinbase.com: coinbase-advanced-py 1.8.4 (its own JWT builder and its
RESTClient, ES256 and Ed25519 keys), ccxt 4.5.90's coinbase (ES256 and
Ed25519, which it signs differently) and coinbaseexchange (HMAC). Each
signed call must get 200 and raise the mock's `signatures_verified` by one
with no failure; two calls signed wrongly on purpose (a JWT for another
host, a wrong passphrase) must get 401 and count under their reasons. So
the verifier matches real clients, not only the project's own signer.

Environment: SYNCOORD_TEST_MOCK (the mock's http:// base), SYNCOORD_TEST_KEYS
(a folder with es.json and ed.json as Coinbase's portal downloads them, and
ex.json with key, secret and passphrase). Key material is never printed.
Prints one `strict mock: N passed, M failed` line; exits 1 on a failure.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

MOCK = os.environ["SYNCOORD_TEST_MOCK"].rstrip("/")
MOCK_HOST = urllib.parse.urlsplit(MOCK).netloc
KEYS = os.environ["SYNCOORD_TEST_KEYS"]
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")


def load(name):
    with open(os.path.join(KEYS, name)) as f:
        return json.load(f)


def stats():
    with DIRECT.open(MOCK + "/__stats", timeout=10) as r:
        s = json.loads(r.read().decode())
    return s["signatures_verified"], s["signature_failures"]


def verified(what, call):
    """`call` must succeed and be exactly one more verified signature."""
    before, failures_before = stats()
    try:
        result = call()
        error = None
    except Exception as e:  # noqa: BLE001 - reported, not raised
        result, error = None, f"{type(e).__name__}: {str(e)[:300]}"
    after, failures = stats()
    check(
        error is None and after == before + 1 and failures == failures_before,
        f"{what}: verified (error {error}, verified {before}->{after}, failures {failures})",
    )
    return result


def refused(what, call, reason):
    """`call` must fail with 401 and count one failure under `reason`."""
    _, before = stats()
    status = None
    try:
        call()
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception as e:  # noqa: BLE001 - ccxt raises its own kinds
        status = 401 if "401" in str(e) or "invalid passphrase" in str(e) else repr(e)[:200]
    _, after = stats()
    grew = after.get(reason, 0) == before.get(reason, 0) + 1
    check(status == 401 and grew, f"{what}: refused as {reason} (got {status}, failures {after})")


def get(path, headers):
    req = urllib.request.Request(MOCK + path, headers=headers)
    with DIRECT.open(req, timeout=10) as r:
        return json.loads(r.read().decode())


from requests.adapters import HTTPAdapter  # noqa: E402


class ToMock(HTTPAdapter):
    """Sends an https:// request to the mock over plain HTTP. Only the
    connection changes: what the client signed (method, host, path) is as
    it built it, and the mock's `Host` is its own address."""

    def send(self, request, **kwargs):
        parts = urllib.parse.urlsplit(request.url)
        request.url = MOCK + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


def to_mock(session):
    session.trust_env = False
    session.mount("https://", ToMock())
    return session


es = load("es.json")
ed = load("ed.json")
ex = load("ex.json")
ACCOUNTS = "/api/v3/brokerage/accounts"

# ---- coinbase-advanced-py's own JWT builder ----------------------------------
from coinbase import jwt_generator  # noqa: E402

for label, key in (("ES256", es), ("Ed25519", ed)):
    name = key.get("name") or key["id"]
    for host in (MOCK_HOST, "api.coinbase.com"):
        uri = f"GET {host}{ACCOUNTS}"
        token = jwt_generator.build_rest_jwt(uri, name, key["privateKey"])
        r = verified(
            f"coinbase-advanced-py build_rest_jwt {label} for {host}",
            lambda: get(ACCOUNTS, {"Authorization": f"Bearer {token}"}),
        )
        check(bool(r and r["accounts"]), f"coinbase-advanced-py build_rest_jwt {label}: accounts")
uri = jwt_generator.format_jwt_uri("GET", ACCOUNTS)
check(uri == f"GET api.coinbase.com{ACCOUNTS}", f"format_jwt_uri names the real host: {uri}")

# A token for another host is refused, as Coinbase refuses it.
token = jwt_generator.build_rest_jwt(f"GET api.example.com{ACCOUNTS}", es["name"], es["privateKey"])
refused(
    "coinbase-advanced-py JWT for another host",
    lambda: get(ACCOUNTS, {"Authorization": f"Bearer {token}"}),
    "wrong_uri",
)

# ---- coinbase-advanced-py's RESTClient, from the portal's key files ----------
from coinbase.rest import RESTClient  # noqa: E402

for label, file in (("ES256", "es.json"), ("Ed25519", "ed.json")):
    client = RESTClient(key_file=os.path.join(KEYS, file))
    to_mock(client.session)
    r = verified(f"RESTClient {label} get_accounts", client.get_accounts)
    check(bool(r and r["accounts"]), f"RESTClient {label} get_accounts: accounts")
    verified(f"RESTClient {label} get_fills (a query the JWT leaves out)", lambda: client.get_fills(product_ids=["BTC-USD"]))
    verified(f"RESTClient {label} get_best_bid_ask", lambda: client.get_best_bid_ask(product_ids=["BTC-USD", "ETH-USD"]))
    order = verified(
        f"RESTClient {label} market_order_buy (POST)",
        lambda: client.market_order_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", quote_size="10"),
    )
    check(bool(order and order["success"]), f"RESTClient {label} market_order_buy: success")
# base_url pointing at the mock: the JWT names the mock's own address.
client = RESTClient(key_file=os.path.join(KEYS, "es.json"), base_url=MOCK_HOST)
to_mock(client.session)
verified("RESTClient with base_url = the mock", client.get_accounts)

# ---- ccxt coinbase: ES256 (Cloud key claims) and Ed25519 (`uris`) -----------
import ccxt  # noqa: E402

for label, key in (("ES256", es), ("Ed25519", ed)):
    cb = ccxt.coinbase({"apiKey": key.get("name") or key["id"], "secret": key["privateKey"]})
    to_mock(cb.session)
    r = verified(f"ccxt coinbase {label} v3PrivateGetBrokerageAccounts", cb.v3PrivateGetBrokerageAccounts)
    check(bool(r and r["accounts"]), f"ccxt coinbase {label}: accounts")
    verified(
        f"ccxt coinbase {label} fills with a query",
        lambda: cb.v3PrivateGetBrokerageOrdersHistoricalFills({"product_id": "BTC-USD"}),
    )
    verified(
        f"ccxt coinbase {label} v3PrivatePostBrokerageOrders",
        lambda: cb.v3PrivatePostBrokerageOrders(
            {
                "client_order_id": str(uuid.uuid4()),
                "product_id": "BTC-USD",
                "side": "BUY",
                "order_configuration": {"market_market_ioc": {"quote_size": "10"}},
            }
        ),
    )

# ---- ccxt coinbaseexchange: HMAC ----------------------------------------------
exchange = ccxt.coinbaseexchange({"apiKey": ex["key"], "secret": ex["secret"], "password": ex["passphrase"]})
exchange.urls["api"] = {"public": MOCK, "private": MOCK}
to_mock(exchange.session)
a = verified("ccxt coinbaseexchange privateGetAccounts", exchange.privateGetAccounts)
check(isinstance(a, list) and len(a) > 0, "ccxt coinbaseexchange: accounts")
verified("ccxt coinbaseexchange privateGetOrders with a query", lambda: exchange.privateGetOrders({"status": "all"}))
o = verified(
    "ccxt coinbaseexchange privatePostOrders (a signed body)",
    lambda: exchange.privatePostOrders(
        {"product_id": "BTC-USD", "side": "buy", "type": "limit", "price": "100", "size": "0.01"}
    ),
)
check(bool(o and o.get("id")), "ccxt coinbaseexchange: order created")
wrong = ccxt.coinbaseexchange({"apiKey": ex["key"], "secret": ex["secret"], "password": "not-it"})
wrong.urls["api"] = {"public": MOCK, "private": MOCK}
to_mock(wrong.session)
refused("ccxt coinbaseexchange with a wrong passphrase", wrong.privateGetAccounts, "bad_passphrase")

print(f"strict mock: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
