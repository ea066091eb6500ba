"""The `import syncoord` helpers (packaging/python/syncoord), one added line
per client, against a daemon intercepting CONNECT in front of the mock.

The environment holds no HTTPS_PROXY and, for the CA, at most the system
roots: only SYNCOORD_PROXY and SYNCOORD_CA_FILE point at syncoord, and
the helpers read them. Checks
that ccxt (sync), ccxt.async_support (aiohttp) and coinbase-advanced-py
each reach the mock through syncoord after one `syncoord.*` line, and that
the same clients without that line do not reach it (so the line is what
made the difference).

Environment: SYNCOORD_TEST_MOCK, SYNCOORD_PROXY, SYNCOORD_CA_FILE,
PYTHONPATH including packaging/python. Prints one
`python helpers: N passed, M failed` line; exits 1 on a failure.
"""

import asyncio
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import syncoord
from harness import check, finish, get_json

MOCK = os.environ["SYNCOORD_TEST_MOCK"]
for var in ("HTTPS_PROXY", "https_proxy"):
    assert var not in os.environ, f"{var} must not be set: the helpers are under test"
# REQUESTS_CA_BUNDLE and SSL_CERT_FILE may point at the system roots (as
# on many machines): the helpers must win over them.

KEY_NAME = "organizations/o-test/apiKeys/k-helpers"
PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()


def requests_seen():
    return get_json(MOCK + "/__stats")["requests_total"]


check(syncoord.proxy_url() == os.environ["SYNCOORD_PROXY"], "proxy_url() reads SYNCOORD_PROXY")

# ---- ccxt sync ----------------------------------------------------------------
import ccxt  # noqa: E402

before = requests_seen()
# A key name per client: syncoord's cache is per credential, and each
# client must reach the mock for its check to mean anything.
cb = syncoord.ccxt(ccxt.coinbase({"apiKey": KEY_NAME + "-sync", "secret": PEM}))
r = cb.v3PrivateGetBrokerageAccounts()
check(len(r["accounts"]) > 0 and requests_seen() > before, "ccxt sync: syncoord.ccxt(exchange)")

plain = ccxt.coinbase({"apiKey": KEY_NAME, "secret": PEM, "timeout": 3000})
try:
    plain.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "BTC-USD"})
    check(False, "ccxt sync without the line must not reach the mock")
except Exception:  # noqa: BLE001 - real coinbase is unreachable here
    check(True, "ccxt sync without the line does not reach the mock")

# ---- ccxt async (aiohttp) -------------------------------------------------------
import ccxt.async_support as accxt  # noqa: E402


async def run_async():
    ex = syncoord.ccxt(accxt.coinbase({"apiKey": KEY_NAME + "-async", "secret": PEM}))
    try:
        before = requests_seen()
        r = await ex.v3PrivateGetBrokerageAccounts()
        return len(r["accounts"]) > 0 and requests_seen() > before
    finally:
        await ex.close()


try:
    ok = asyncio.run(run_async())
except Exception as e:  # noqa: BLE001
    print(f"     {e!r}")
    ok = False
check(ok, "ccxt async: syncoord.ccxt(exchange) (cafile and httpsProxy)")

# ---- coinbase-advanced-py --------------------------------------------------------
from coinbase.rest import RESTClient  # noqa: E402

before = requests_seen()
client = RESTClient(api_key=KEY_NAME + "-cbadv", api_secret=PEM)
syncoord.session(client.session)
accounts = client.get_accounts()
check(len(accounts["accounts"]) > 0 and requests_seen() > before, "coinbase-advanced-py: syncoord.session(client.session)")

# ---- the recipes (docs/connecting-bots.md, `syncoord ca`), no helper ----------
# These set the environment, so they run after the helper checks above.
import json  # noqa: E402

PROXY = os.environ["SYNCOORD_PROXY"]
CA = os.environ["SYNCOORD_CA_FILE"]


async def async_accounts(config):
    ex = accxt.coinbase(config)
    try:
        before = requests_seen()
        r = await ex.v3PrivateGetBrokerageAccounts()
        return len(r["accounts"]) > 0 and requests_seen() > before
    finally:
        await ex.close()


def attempt(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        print(f"     {e!r}")
        return False


# ccxt async via options only: httpsProxy and cafile.
ok = attempt(lambda: asyncio.run(async_accounts(
    {"apiKey": KEY_NAME + "-opts", "secret": PEM, "httpsProxy": PROXY, "cafile": CA})))
check(ok, "recipe: ccxt async with the options httpsProxy and cafile")

# A framework configuring ccxt from JSON, both dicts, no code: the async
# client from its dict alone, the sync one with requests_trust_env (sync
# ccxt's requests session ignores the environment otherwise) and
# REQUESTS_CA_BUNDLE.
ccxt_config = json.loads(json.dumps({"apiKey": KEY_NAME + "-json", "secret": PEM, "httpsProxy": PROXY,
                                     "cafile": CA, "requests_trust_env": True}))
ccxt_async_config = json.loads(json.dumps({"apiKey": KEY_NAME + "-json-async", "secret": PEM, "httpsProxy": PROXY, "cafile": CA}))
os.environ["REQUESTS_CA_BUNDLE"] = CA
before = requests_seen()
ok = attempt(lambda: len(ccxt.coinbase(ccxt_config).v3PrivateGetBrokerageAccounts()["accounts"]) > 0)
check(ok and requests_seen() > before, "recipe: JSON ccxt_config (sync) with REQUESTS_CA_BUNDLE")
check(attempt(lambda: asyncio.run(async_accounts(ccxt_async_config))), "recipe: JSON ccxt_async_config (async)")

# ccxt async via the environment: HTTPS_PROXY, aiohttp_trust_env and cafile.
os.environ["HTTPS_PROXY"] = PROXY
ok = attempt(lambda: asyncio.run(async_accounts(
    {"apiKey": KEY_NAME + "-env", "secret": PEM, "aiohttp_trust_env": True, "cafile": CA})))
check(ok, "recipe: ccxt async with HTTPS_PROXY, aiohttp_trust_env and cafile")

finish("python helpers")
