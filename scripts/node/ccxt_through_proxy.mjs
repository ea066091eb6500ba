// ccxt for Node, unmodified, through syncoord, as docs/connecting-bots.md
// says: the option `httpsProxy` (Node ccxt takes no proxy from the
// environment) and NODE_EXTRA_CA_CERTS naming syncoord's CA (set before
// Node starts). Run by daemon/tests/python_clients.rs against a daemon
// whose upstreams answer for the real hosts in front of the project's mock.
// Checks that:
// - ccxt coinbase's private and public calls reach the mock, each JWT's
//   `uri` claim naming the real host and path;
// - a repeated public read is answered from syncoord's cache;
// - ccxt coinbaseexchange's public ticker works the same way.
//
// Environment: SYNCOORD_NODE_CCXT (the folder ccxt was installed into by
// scripts/install-node-ccxt.sh), SYNCOORD_TEST_MOCK (the mock's http://
// base, reached directly), SYNCOORD_TEST_PROXY (syncoord's address),
// NODE_EXTRA_CA_CERTS. Prints one `node ccxt: N passed, M failed` line;
// exits 1 on a failure.
import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';

const require = createRequire(path.join(process.env.SYNCOORD_NODE_CCXT, 'package.json'));
const ccxt = require('ccxt');
const MOCK = process.env.SYNCOORD_TEST_MOCK;
const PROXY = process.env.SYNCOORD_TEST_PROXY;

let passed = 0;
let failed = 0;
function check(ok, what) {
    if (ok) {
        passed += 1;
        console.log(`ok   ${what}`);
    } else {
        failed += 1;
        console.log(`FAIL ${what}`);
    }
}

// The mock, reached directly (never through the proxy).
function mock(route, method = 'GET') {
    return new Promise((resolve, reject) => {
        const req = http.request(MOCK + route, { method }, (res) => {
            let text = '';
            res.on('data', (c) => { text += c; });
            res.on('end', () => resolve(text ? JSON.parse(text) : null));
        });
        req.on('error', reject);
        req.end();
    });
}

// An EC key as Coinbase's CDP keys are (the mock does not check the
// signature, only the JWT's claims).
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const PEM = privateKey.export({ type: 'sec1', format: 'pem' });

try {
    await mock('/__reset', 'POST');
    const cb = new ccxt.coinbase({
        apiKey: 'organizations/o-test/apiKeys/k-node',
        secret: PEM,
        httpsProxy: PROXY,
    });
    const accounts = await cb.v3PrivateGetBrokerageAccounts();
    check(accounts.accounts.length > 0, 'node ccxt coinbase v3PrivateGetBrokerageAccounts through httpsProxy');
    const t = await cb.v3PublicGetBrokerageMarketProductsProductIdTicker({ product_id: 'BTC-USD' });
    check('trades' in t, 'node ccxt coinbase public ticker');
    const before = (await mock('/__stats')).requests_total;
    await cb.v3PublicGetBrokerageMarketProductsProductIdTicker({ product_id: 'BTC-USD' });
    const after = (await mock('/__stats')).requests_total;
    check(after === before, `node ccxt: the repeated ticker was answered from syncoord's cache (mock saw ${after - before} more)`);
    const uris = (await mock('/__stats')).jwt_uris;
    check(
        uris[0] === 'GET api.coinbase.com/api/v3/brokerage/accounts',
        `node ccxt coinbase JWT uri claim names the real host and path: ${JSON.stringify(uris)}`,
    );
    const ex = new ccxt.coinbaseexchange({ httpsProxy: PROXY });
    const tick = await ex.publicGetProductsIdTicker({ id: 'BTC-USD' });
    check('price' in tick, 'node ccxt coinbaseexchange public ticker through httpsProxy');
} catch (e) {
    check(false, `node ccxt threw ${e && e.constructor && e.constructor.name}: ${String(e).slice(0, 300)}`);
}
console.log(`node ccxt: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
