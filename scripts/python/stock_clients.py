"""Stock clients against the mock through syncoord, with no patch and no
monkeypatch: a ccxt `coinbase` bot's unified methods, sync and async, and
coinbase-advanced-py 1.8.4's typed answers for the same endpoints.

Run by daemon/tests/python_clients.rs against a daemon that intercepts
CONNECT for api.coinbase.com (`origins`) in front of the project's mock.
The clients are configured only through their own constructor options:
ccxt sync reads HTTPS_PROXY and REQUESTS_CA_BUNDLE when told to
(`requests_trust_env`); ccxt.async_support (aiohttp) reads HTTPS_PROXY
when told to (`aiohttp_trust_env`) and takes syncoord's CA as `cafile`.

Each client, as a trading bot would at start and in its loop:
`load_markets` (products, transaction_summary, currencies, exchange rates),
`fetch_time`, `fetch_ticker` for several pairs, `fetch_ohlcv` with `since`
and `limit` (candles inside the range asked for, one `granularity` apart,
prices moving), `fetch_order_book`, `fetch_balance`,
`create_order` (limit and market), `fetch_open_orders`. Checks the values
parse into ccxt's structures, not only that no exception was raised, and
that every call reached the mock (none answered 404).

ccxt `coinbaseexchange` (sync, `requests_trust_env`): the same unified
methods through api.exchange.coinbase.com.

coinbase-advanced-py (HTTPS_PROXY and REQUESTS_CA_BUNDLE from the
environment, as it reads them): `get_unix_time`, `get_transaction_summary`,
`get_public_candles` with `start`/`end`, `get_public_product_book`,
`limit_order_gtc_buy` and `list_orders` of the open ones.

Environment: SYNCOORD_TEST_MOCK (the mock's http:// base, reached directly
for its counters), HTTPS_PROXY, REQUESTS_CA_BUNDLE (syncoord's CA).
Prints one `stock clients: N passed, M failed` line; exits 1 on a failure.
"""

import asyncio
import os
import time
import traceback
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import ccxt
import ccxt.async_support as accxt
from harness import check, finish, get_json

MOCK = os.environ["SYNCOORD_TEST_MOCK"]
CA = os.environ["REQUESTS_CA_BUNDLE"]
PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD"]

# A CDP key as the portal hands them out (the mock reads the identity from
# the JWT; syncoord passes the client's own signature through).
KEY_NAME = "organizations/o-unified/apiKeys/k-"
PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()


def unmatched():
    """Requests the mock had no endpoint for."""
    return get_json(MOCK + "/__stats")["by_route"].get("unmatched", 0)


def check_markets(name, markets):
    check(all(p in markets for p in PAIRS), f"{name} load_markets: {PAIRS} among {len(markets)} markets")
    btc = markets.get("BTC/USD", {})
    check(
        btc.get("spot") is True and btc.get("precision", {}).get("price") == 0.01 and btc.get("taker") is not None,
        f"{name} BTC/USD market: spot, price precision 0.01, taker fee from transaction_summary "
        f"({btc.get('precision')}, taker {btc.get('taker')})",
    )


def check_ticker(name, symbol, ticker):
    ok = (
        ticker.get("symbol") == symbol
        and (ticker.get("bid") or 0) > 0
        and (ticker.get("ask") or 0) >= (ticker.get("bid") or 0)
        and (ticker.get("last") or 0) > 0
    )
    check(ok, f"{name} fetch_ticker {symbol}: bid {ticker.get('bid')} ask {ticker.get('ask')} last {ticker.get('last')}")


def check_ohlcv(name, candles, since, limit):
    ok = (
        0 < len(candles) <= limit
        and all(len(c) == 6 and c[2] >= c[3] > 0 for c in candles)
        and all(since <= c[0] for c in candles)
        and all(b[0] - a[0] == 60_000 for a, b in zip(candles, candles[1:]))
    )
    check(ok, f"{name} fetch_ohlcv 1m since {since} limit {limit}: {len(candles)} candles in range, 60 s apart, oldest first")
    closes = {c[4] for c in candles}
    check(len(closes) > len(candles) // 2, f"{name} prices move: {len(closes)} different closes in {len(candles)} candles")


def check_book(name, book):
    bids, asks = book.get("bids") or [], book.get("asks") or []
    ok = bids and asks and bids[0][0] < asks[0][0] and all(a[0] >= b[0] for a, b in zip(bids, bids[1:]))
    check(bool(ok), f"{name} fetch_order_book: {len(bids)} bids below {len(asks)} asks, best first")


def check_balance(name, balance):
    usd = balance.get("USD", {})
    check((usd.get("total") or 0) > 0 and usd.get("free") is not None, f"{name} fetch_balance: USD {usd}")


def check_order(name, order, kind):
    ok = order.get("id") and order.get("symbol") == "BTC/USD" and order.get("side") == "buy"
    check(bool(ok), f"{name} create_order {kind}: id {order.get('id')} {order.get('symbol')} {order.get('side')}")


def check_open(name, open_orders, limit_id):
    ids = [o.get("id") for o in open_orders]
    check(limit_id in ids and all(o.get("status") == "open" for o in open_orders), f"{name} fetch_open_orders: the limit order is open ({ids})")


def sync_bot():
    name = "ccxt sync"
    ex = ccxt.coinbase({"apiKey": KEY_NAME + "sync", "secret": PEM, "requests_trust_env": True})
    check_markets(name, ex.load_markets())
    check(abs(ex.fetch_time() - time.time() * 1000) < 60_000, f"{name} fetch_time")
    first = {}
    for symbol in PAIRS:
        first[symbol] = ex.fetch_ticker(symbol)
        check_ticker(name, symbol, first[symbol])
    since = (int(time.time()) - 3600) * 1000
    check_ohlcv(name, ex.fetch_ohlcv("BTC/USD", "1m", since, 30), since, 30)
    check_book(name, ex.fetch_order_book("ETH/USD", 10))
    check_balance(name, ex.fetch_balance())
    price = first["BTC/USD"]["bid"] * 0.9
    limit = ex.create_order("BTC/USD", "limit", "buy", 0.001, price)
    check_order(name, limit, "limit")
    market = ex.create_order("BTC/USD", "market", "buy", 0.001, first["BTC/USD"]["ask"])
    check_order(name, market, "market")
    check_open(name, ex.fetch_open_orders("BTC/USD"), limit.get("id"))
    return first


async def async_bot(first):
    name = "ccxt async"
    ex = accxt.coinbase({"apiKey": KEY_NAME + "async", "secret": PEM, "aiohttp_trust_env": True, "cafile": CA})
    try:
        check_markets(name, await ex.load_markets())
        tickers = await asyncio.gather(*(ex.fetch_ticker(s) for s in PAIRS))
        for symbol, ticker in zip(PAIRS, tickers):
            check_ticker(name, symbol, ticker)
        prices = {t["last"] for t in tickers}
        check(len(prices) == len(PAIRS), f"{name} each pair has its own price ({prices})")
        since = (int(time.time()) - 7200) * 1000
        check_ohlcv(name, await ex.fetch_ohlcv("ETH/USD", "1m", since, 50), since, 50)
        check_book(name, await ex.fetch_order_book("BTC/USD"))
        check_balance(name, await ex.fetch_balance())
        price = tickers[0]["bid"] * 0.9
        limit = await ex.create_order("BTC/USD", "limit", "buy", 0.002, price)
        check_order(name, limit, "limit")
        check_open(name, await ex.fetch_open_orders("BTC/USD"), limit.get("id"))
    finally:
        await ex.close()


def exchange_bot():
    """ccxt `coinbaseexchange`, sync, the same unified methods (Exchange
    candles take ISO 8601 `start`/`end`)."""
    name = "ccxt coinbaseexchange"
    ex = ccxt.coinbaseexchange({
        "apiKey": "ex-stock", "secret": "c3RvY2stc2VjcmV0", "password": "pp", "requests_trust_env": True,
    })
    markets = ex.load_markets()
    check(all(p in markets for p in PAIRS) and markets["BTC/USD"]["precision"]["price"] == 0.01, f"{name} load_markets (products, currencies)")
    ticker = ex.fetch_ticker("SOL/USD")
    check_ticker(name, "SOL/USD", ticker)
    since = (int(time.time()) - 3600) * 1000
    check_ohlcv(name, ex.fetch_ohlcv("BTC/USD", "1m", since, 20), since, 20)
    check_book(name, ex.fetch_order_book("BTC/USD", 10))
    check_balance(name, ex.fetch_balance())
    btc_bid = ex.fetch_ticker("BTC/USD")["bid"]
    limit = ex.create_order("BTC/USD", "limit", "buy", 0.001, round(btc_bid * 0.9, 2))
    check_order(name, limit, "limit")
    check_open(name, ex.fetch_open_orders("BTC/USD"), limit.get("id"))


def advanced_py():
    from coinbase.rest import RESTClient

    name = "coinbase-advanced-py"
    client = RESTClient(api_key=KEY_NAME + "advanced-py", api_secret=PEM)
    now = time.time()
    t = client.get_unix_time().to_dict()
    check(abs(int(t["epoch_seconds"]) - now) < 60 and t["iso"].endswith("Z"), f"{name} get_unix_time ({t})")
    fees = client.get_transaction_summary().to_dict()
    check(fees["fee_tier"]["taker_fee_rate"] == "0.008", f"{name} get_transaction_summary fee tier ({fees['fee_tier']})")
    start, end = int(now) - 3600, int(now) - 1800
    candles = client.get_public_candles("SOL-USD", start=str(start), end=str(end), granularity="FIVE_MINUTE").to_dict()["candles"]
    starts = sorted(int(c["start"]) for c in candles)
    check(
        0 < len(starts) <= 7 and all(start <= s <= end and s % 300 == 0 for s in starts),
        f"{name} get_public_candles FIVE_MINUTE within [start, end]: {len(starts)} candles",
    )
    book = client.get_public_product_book("BTC-USD", limit=5).to_dict()["pricebook"]
    check(float(book["bids"][0]["price"]) < float(book["asks"][0]["price"]), f"{name} get_public_product_book")
    bid = float(book["bids"][0]["price"])
    order = client.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001", limit_price=f"{bid * 0.9:.2f}").to_dict()
    order_id = order.get("success_response", {}).get("order_id")
    open_ids = [o["order_id"] for o in client.list_orders(order_status=["OPEN"]).to_dict()["orders"]]
    check(order.get("success") is True and order_id in open_ids, f"{name} limit_order_gtc_buy then list_orders OPEN ({order_id} in {open_ids})")


def guarded(what, run):
    try:
        return run()
    except Exception as e:  # noqa: BLE001 - a failure is a counted check
        traceback.print_exc()
        check(False, f"{what} raised {e!r}"[:600])
        return None


first = guarded("ccxt sync", sync_bot)
if first:
    guarded("ccxt async", lambda: asyncio.run(async_bot(first)))
guarded("ccxt coinbaseexchange", exchange_bot)
guarded("coinbase-advanced-py", advanced_py)
check(unmatched() == 0, f"every call had an endpoint at the mock ({unmatched()} unmatched)")
finish("stock clients")
