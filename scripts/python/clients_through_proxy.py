"""The client libraries Coinbase bots use, unmodified, through syncoord.

Run by daemon/tests/python_clients.rs against a daemon whose upstreams
answer for the real hosts (`origins`) in front of the project's mock:
coinbase-advanced-py with nothing but HTTPS_PROXY and the CA bundle in its
environment; ccxt with the same environment and `requests_trust_env` (sync ccxt ignores
the environment unless told to). Checks that:
- every call reaches the mock, and each Advanced Trade JWT's `uri` claim
  names the real host and the path (the token stays valid at Coinbase);
- repeated reads are answered from syncoord's cache;
- syncoord's own refusals are classified as temporary errors by ccxt
  (`NetworkError` subclasses) and as `HTTPError`s with the status by
  coinbase-advanced-py.

Environment: SYNCOORD_TEST_MOCK (the mock's http:// base, reached directly
for its counters), HTTPS_PROXY, REQUESTS_CA_BUNDLE, SSL_CERT_FILE.
Prints one `python clients: N passed, M failed` line; exits 1 on a failure.
"""

import base64
import json
import os
import urllib.request
import uuid

MOCK = os.environ["SYNCOORD_TEST_MOCK"]
from harness import DIRECT, check, finish


def mock(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data or path == "/__reset" else "GET")
    if data:
        req.add_header("Content-Type", "application/json")
    with DIRECT.open(req, timeout=10) as r:
        text = r.read().decode()
        return json.loads(text) if text else None


def jwt_uris():
    return mock("/__stats")["jwt_uris"]


def raises(fn, kinds):
    try:
        fn()
    except kinds as e:  # noqa: PERF203
        return e
    except Exception as e:  # the wrong kind
        return ("wrong", type(e).__name__, str(e)[:300])
    return None


# An EC key as Coinbase's CDP keys are (signature never checked by the mock).
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

KEY_NAME = "organizations/o-test/apiKeys/k-test"
PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()

# ---- coinbase-advanced-py: zero code, environment only ----------------------
from coinbase.rest import RESTClient  # noqa: E402
from requests.exceptions import HTTPError  # noqa: E402

mock("/__reset")
client = RESTClient(api_key=KEY_NAME, api_secret=PEM)
accounts = client.get_accounts()
check(len(accounts["accounts"]) > 0, "coinbase-advanced-py get_accounts through HTTPS_PROXY")
client.get_accounts()
client.get_best_bid_ask(product_ids=["BTC-USD"])
product = client.get_product("BTC-USD")
check(product["product_id"] == "BTC-USD", "coinbase-advanced-py get_product")
order = client.market_order_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", quote_size="10")
check(order["success"] is True, "coinbase-advanced-py market_order_buy (POST)")
client.get_fills(product_id="BTC-USD")
stats = mock("/__stats")
# The second get_accounts was a cache hit: 5 calls reached the mock.
check(stats["requests_total"] == 5, f"one of the 6 calls answered from the cache (mock saw {stats['requests_total']})")
want = [
    "GET api.coinbase.com/api/v3/brokerage/accounts",
    "GET api.coinbase.com/api/v3/brokerage/best_bid_ask",
    "GET api.coinbase.com/api/v3/brokerage/products/BTC-USD",
    "POST api.coinbase.com/api/v3/brokerage/orders",
    "GET api.coinbase.com/api/v3/brokerage/orders/historical/fills",
]
check(stats["jwt_uris"] == want, f"coinbase-advanced-py JWT uri claims name the real host and path: {stats['jwt_uris']}")

# ---- ccxt coinbase: the environment, with requests_trust_env ---------------------------
import ccxt  # noqa: E402

mock("/__reset")
# Another key: the first one's answers are in syncoord's cache.
cb = ccxt.coinbase({"apiKey": KEY_NAME + "-ccxt", "secret": PEM, "requests_trust_env": True})
r = cb.v3PrivateGetBrokerageAccounts()
check(len(r["accounts"]) > 0, "ccxt coinbase v3PrivateGetBrokerageAccounts")
cb.v3PrivateGetBrokerageOrdersHistoricalFills({"product_id": "BTC-USD"})
t = cb.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "BTC-USD"})
check("trades" in t, "ccxt coinbase public ticker")
uris = jwt_uris()
check(
    uris[:2] == [
        "GET api.coinbase.com/api/v3/brokerage/accounts",
        "GET api.coinbase.com/api/v3/brokerage/orders/historical/fills",
    ],
    f"ccxt coinbase JWT uri claims name the real host and path: {uris}",
)

# syncoord's own refusals, classified by ccxt's coinbase.handle_errors.
# only-if-cached with nothing cached: our 504.
cb.headers = {"Cache-Control": "only-if-cached"}
e = raises(lambda: cb.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "SOL-USD"}), ccxt.NetworkError)
check(isinstance(e, ccxt.RequestTimeout), f"ccxt coinbase: syncoord 504 is RequestTimeout (retryable), got {e!r}")
cb.headers = {}
# Upstream failing (5xx after retries): our 502.
mock("/__faults", {"status": 500, "status_next": 20})
e = raises(lambda: cb.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "ETH-USD"}), ccxt.NetworkError)
check(isinstance(e, ccxt.ExchangeNotAvailable), f"ccxt coinbase: syncoord 502 is ExchangeNotAvailable (retryable), got {e!r}")
mock("/__faults", {})
# A request syncoord refuses as the bot's mistake (400) stays a
# non-retryable ExchangeError, not the ExchangeNotAvailable ccxt gives a
# bare 400.
cb.headers = {"X-Syncoord-Priority": "bogus"}
e = raises(lambda: cb.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "BTC-USD"}), ccxt.BaseError)
cb.headers = {}
check(
    isinstance(e, ccxt.ExchangeError) and not isinstance(e, ccxt.NetworkError) and "unknown_priority" in str(e),
    f"ccxt coinbase: syncoord's 400 is a non-retryable ExchangeError, got {e!r}",
)

# coinbase-advanced-py sees our 502 as HTTPError with the status.
mock("/__faults", {"status": 500, "status_next": 20})
e = raises(lambda: client.get_product("ETH-USD"), HTTPError)
check(
    isinstance(e, HTTPError) and e.response is not None and e.response.status_code == 502,
    f"coinbase-advanced-py: syncoord 502 is HTTPError with status 502, got {e!r}",
)
mock("/__faults", {})

# ---- ccxt proxyUrl, with the workaround for ccxt 4.5.90 ----------------------
PROXY = os.environ["HTTPS_PROXY"].rstrip("/")
mock("/__reset")
viaurl = ccxt.coinbase({"apiKey": KEY_NAME + "-proxyurl", "secret": PEM, "proxyUrl": PROXY + "/"})
e = raises(lambda: viaurl.v3PrivateGetBrokerageAccounts(), ccxt.InvalidProxySettings)
check(isinstance(e, ccxt.InvalidProxySettings), f"ccxt 4.5.90 proxyUrl alone raises InvalidProxySettings (the bug docs/connecting-bots.md works around), got {e!r}")
# The recipe in docs/connecting-bots.md:
viaurl.check_conflicting_proxies = lambda *args, **kwargs: None
r = viaurl.v3PrivateGetBrokerageAccounts()
check(len(r["accounts"]) > 0, "ccxt proxyUrl with check_conflicting_proxies disabled")
check(
    jwt_uris() == ["GET api.coinbase.com/api/v3/brokerage/accounts"],
    f"ccxt proxyUrl: the JWT names the real host: {jwt_uris()}",
)

# ---- coinbase-advanced-py through a transport adapter (no environment) -----
from requests.adapters import HTTPAdapter  # noqa: E402


class Syncoord(HTTPAdapter):
    """Sends each signed request to syncoord in proxyUrl form: the URL the
    client signed for is unchanged, only the connection goes elsewhere."""

    def __init__(self, base):
        super().__init__()
        self.base = base.rstrip("/")

    def send(self, request, **kwargs):
        request.url = f"{self.base}/{request.url}"
        return super().send(request, **kwargs)


mock("/__reset")
adapted = RESTClient(api_key=KEY_NAME + "-adapter", api_secret=PEM)
adapted.session.trust_env = False  # prove it needs no HTTPS_PROXY
adapted.session.mount("https://", Syncoord(PROXY))
check(len(adapted.get_accounts()["accounts"]) > 0, "coinbase-advanced-py through a transport adapter")
check(
    jwt_uris() == ["GET api.coinbase.com/api/v3/brokerage/accounts"],
    f"transport adapter: the JWT names the real host: {jwt_uris()}",
)

# ---- ccxt coinbaseexchange ---------------------------------------------------
mock("/__reset")
ex = ccxt.coinbaseexchange(
    {
        "apiKey": "exchange-key",
        "secret": base64.b64encode(b"exchange-secret").decode(),
        "password": "passphrase",
        "requests_trust_env": True,
    }
)
t = ex.publicGetProductsIdTicker({"id": "BTC-USD"})
check("price" in t, "ccxt coinbaseexchange public ticker through HTTPS_PROXY")
a = ex.privateGetAccounts()
check(isinstance(a, list) and len(a) > 0, "ccxt coinbaseexchange privateGetAccounts")
mock("/__faults", {"status": 500, "status_next": 20})
e = raises(lambda: ex.publicGetProductsIdTicker({"id": "ETH-USD"}), ccxt.NetworkError)
check(isinstance(e, ccxt.ExchangeNotAvailable), f"ccxt coinbaseexchange: syncoord 502 is ExchangeNotAvailable, got {e!r}")
mock("/__faults", {})

finish("python clients")
