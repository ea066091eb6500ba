"""Bots with no exchange secret, through syncoord in signing mode.

Run by daemon/tests/python_clients.rs against a daemon that holds the keys
(`[[credentials]]`) in front of the project's mock in strict mode, which
verifies every signature as Coinbase does. The clients are docs/signing.md's
"keys in one place" snippets, unmodified:
- ccxt `coinbase` with a plain base URL, `X-Syncoord-Token` and the
  `Authorization` placeholder (and, without the placeholder, the TypeError
  the recipe warns of), its unified methods;
- ccxt `coinbaseexchange` likewise, under `/exchange` with `urls.api`
  `public` and `private` and placeholder credentials: load_markets,
  balance, ticker, an order and the open orders;
- coinbase-advanced-py with `HTTPS_PROXY=http://bot:TOKEN@...` and a
  throwaway key it signs with (syncoord drops that signature).
Checks that each is answered for its own account, that the mock verified
every signature and rejected none, and that a wrong token is refused with
no upstream call.

Environment: SYNCOORD_TEST_MOCK (the mock, reached directly for its
counters), SYNCOORD_TEST_DAEMON (http://ip:port), SYNCOORD_TEST_TOKEN
(client `desk-bot`), SYNCOORD_TEST_EX_TOKEN (client `exchange-bot`),
SYNCOORD_TEST_CDP_KEY (the key name the mock knows), SYNCOORD_TEST_EX_KEY,
REQUESTS_CA_BUNDLE, SSL_CERT_FILE.
Prints one `python signing: N passed, M failed` line; exits 1 on a failure.
"""

import os

MOCK = os.environ["SYNCOORD_TEST_MOCK"]
DAEMON = os.environ["SYNCOORD_TEST_DAEMON"]
TOKEN = os.environ["SYNCOORD_TEST_TOKEN"]
EX_TOKEN = os.environ["SYNCOORD_TEST_EX_TOKEN"]
CDP_KEY = os.environ["SYNCOORD_TEST_CDP_KEY"]
EX_KEY = os.environ["SYNCOORD_TEST_EX_KEY"]
from harness import check, finish, get_json


def mock_stats():
    return get_json(MOCK + "/__stats")


def credentials_in(value):
    """Every `mock_credential` anywhere in a parsed answer."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "mock_credential":
                found.append(v)
            else:
                found.extend(credentials_in(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(credentials_in(v))
    return found


def ccxt_advanced():
    import ccxt

    exchange = ccxt.coinbase({
        "urls": {"api": {"rest": DAEMON}},
        "headers": {"X-Syncoord-Token": TOKEN, "Authorization": "signed-by-syncoord"},
    })
    # The unified methods, as the recipe shows: load_markets (products,
    # currencies, exchange rates) comes first.
    balance = exchange.fetch_balance()
    who = credentials_in(balance["info"])
    check(who and all(w == f"jwt:{CDP_KEY}" for w in who), f"ccxt coinbase fetch_balance is the desk's ({sorted(set(who))})")
    ticker = exchange.fetch_ticker("BTC/USD")
    check((ticker.get("bid") or 0) > 0, f"ccxt coinbase fetch_ticker BTC/USD (bid {ticker.get('bid')})")

    # Without the Authorization placeholder ccxt 4.5.90 cannot sign at all
    # (it has no key) and fails inside its own code: why the recipe has it.
    bare = ccxt.coinbase({"urls": {"api": {"rest": DAEMON}}, "headers": {"X-Syncoord-Token": TOKEN}})
    try:
        bare.v3PrivateGetBrokerageAccounts()
        failed = None
    except Exception as e:  # noqa: BLE001
        failed = e
    check(
        isinstance(failed, TypeError) and "NoneType" in str(failed),
        f"ccxt coinbase without the Authorization placeholder fails with the TypeError docs/signing.md names ({failed!r})",
    )


def ccxt_exchange():
    import ccxt

    exchange = ccxt.coinbaseexchange({
        # all three: ccxt sends public calls to `public`, private ones to
        # `private` (with `rest` alone they go to api.exchange.coinbase.com)
        "urls": {"api": {"rest": DAEMON + "/exchange", "public": DAEMON + "/exchange", "private": DAEMON + "/exchange"}},
        # ccxt insists on credentials to sign with; syncoord drops its
        # CB-ACCESS-* headers and signs with the key it holds.
        "apiKey": "placeholder", "secret": "cGxhY2Vob2xkZXI=", "password": "placeholder",
        "headers": {"X-Syncoord-Token": EX_TOKEN},
    })
    balance = exchange.fetch_balance()
    who = credentials_in(balance["info"])
    check(who and all(w == f"key:{EX_KEY}" for w in who), f"ccxt coinbaseexchange fetch_balance is the Exchange key's ({sorted(set(who))})")
    ticker = exchange.fetch_ticker("ETH/USD")
    check((ticker.get("bid") or 0) > 0, f"ccxt coinbaseexchange fetch_ticker ETH/USD (bid {ticker.get('bid')})")
    order = exchange.create_order("ETH/USD", "limit", "buy", 0.01, round(ticker["bid"] * 0.9, 2))
    open_ids = [o["id"] for o in exchange.fetch_open_orders("ETH/USD")]
    check(order.get("id") in open_ids, f"ccxt coinbaseexchange create_order then fetch_open_orders ({order.get('id')} in {open_ids})")


def advanced_py():
    from coinbase.rest import RESTClient
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    throwaway = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    host = DAEMON.removeprefix("http://")
    os.environ["HTTPS_PROXY"] = f"http://desk-bot:{TOKEN}@{host}"
    client = RESTClient(api_key="organizations/-/apiKeys/syncoord", api_secret=throwaway)
    accounts = client.get_accounts().to_dict()
    who = credentials_in(accounts)
    check(who and all(w == f"jwt:{CDP_KEY}" for w in who), f"coinbase-advanced-py get_accounts through HTTPS_PROXY with the token ({sorted(set(who))})")

    before = mock_stats()["requests_total"]
    os.environ["HTTPS_PROXY"] = f"http://desk-bot:wrong-token@{host}"
    wrong = RESTClient(api_key="organizations/-/apiKeys/syncoord", api_secret=throwaway)
    try:
        wrong.get_accounts()
        refused = False
    except Exception as e:  # requests' ProxyError: the CONNECT got 407
        refused = "407" in str(e) or "Proxy" in type(e).__name__
    check(refused, "a wrong token in HTTPS_PROXY is refused at the CONNECT")
    check(mock_stats()["requests_total"] == before, "and nothing reached upstream")


for test in (ccxt_advanced, ccxt_exchange, advanced_py):
    try:
        test()
    except Exception as e:  # noqa: BLE001
        check(False, f"{test.__name__}: {type(e).__name__}: {e}")

stats = mock_stats()
check(stats.get("signature_failures") == {}, f"the strict mock rejected no signature ({stats.get('signature_failures')})")
check(stats.get("signatures_verified", 0) >= 3, f"and verified every one that reached it (the second desk read is a cache hit) ({stats.get('signatures_verified')})")
finish("python signing")
