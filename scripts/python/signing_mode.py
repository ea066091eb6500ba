"""Bots with no exchange secret, through syncoord in signing mode.

Run by daemon/tests/python_clients.rs against a daemon that holds the keys
(`[[credentials]]`) in front of the project's mock in strict mode, which
verifies every signature as Coinbase does. The clients are docs/signing.md's
"keys in one place" snippets, unmodified:
- ccxt `coinbase` with a plain base URL and `X-Syncoord-Token`;
- ccxt `coinbaseexchange` likewise, under `/exchange`;
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
    # The raw endpoints: unified methods first load markets from
    # /v2/currencies, which the mock does not serve.
    accounts = exchange.v3PrivateGetBrokerageAccounts()
    who = credentials_in(accounts)
    check(who and all(w == f"jwt:{CDP_KEY}" for w in who), f"ccxt coinbase accounts are the desk's ({sorted(set(who))})")
    ticker = exchange.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "BTC-USD"})
    check("trades" in ticker or "best_bid" in ticker, "ccxt coinbase ticker")


def ccxt_exchange():
    import ccxt

    exchange = ccxt.coinbaseexchange({
        "urls": {"api": {"rest": DAEMON + "/exchange", "public": DAEMON + "/exchange", "private": DAEMON + "/exchange"}},
        # ccxt insists on credentials to sign with; syncoord drops its
        # CB-ACCESS-* headers and signs with the key it holds.
        "apiKey": "placeholder", "secret": "cGxhY2Vob2xkZXI=", "password": "placeholder",
        "headers": {"X-Syncoord-Token": EX_TOKEN},
    })
    accounts = exchange.privateGetAccounts()
    who = credentials_in(accounts)
    check(who and all(w == f"key:{EX_KEY}" for w in who), f"ccxt coinbaseexchange accounts are the Exchange key's ({sorted(set(who))})")


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
