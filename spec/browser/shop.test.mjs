// Each provider's flow in a real browser: from the shop's buy button, through the sandbox's
// payment pages, to the shop's order page; approval and decline. A screenshot of every page
// goes to build/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, run, shot } from './browser.mjs';

const SANDBOX_PORT = process.env.PAYKIT_BROWSER_SANDBOX_PORT || '18891';
const SHOP_PORT = process.env.PAYKIT_BROWSER_SHOP_PORT || '18892';
const SANDBOX = `http://127.0.0.1:${SANDBOX_PORT}`;
const SHOP = `http://127.0.0.1:${SHOP_PORT}`;
let browser;

before(async () => {
  run('bin/paykit-sandbox', ['start', '--port', SANDBOX_PORT]);
  run('examples/openresty/shop', ['start', '--port', SHOP_PORT, '--sandbox', SANDBOX]);
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  try { run('examples/openresty/shop', ['stop', '--port', SHOP_PORT]); } catch (e) { /* already stopped */ }
  run('bin/paykit-sandbox', ['stop', '--port', SANDBOX_PORT]);
});

// Opens the shop, runs `pay` on the provider's pages, and returns the order page's state.
async function purchase(name, buy, pay) {
  const page = await browser.newPage();
  try {
    await page.goto(SHOP + '/');
    await shot(page, `${name}-1-shop`);
    await buy(page);
    await pay(page);
    await page.waitForSelector('#order-status', { timeout: 15000 });
    assert.ok(page.url().startsWith(SHOP + '/order/'), `back on the shop's order page, not ${page.url()}`);
    await shot(page, `${name}-9-order`);
    return {
      status: (await page.textContent('#order-status')).trim(),
      granted: (await page.textContent('#granted')).trim(),
    };
  } finally {
    await page.close();
  }
}

async function onProviderPage(page, name, step, selector) {
  await page.waitForSelector(selector, { timeout: 15000 });
  assert.ok(page.url().startsWith(SANDBOX), `on the provider's page, not ${page.url()}`);
  await shot(page, `${name}-${step}`);
}

const mokaBuy = (card) => async (page) => {
  if (card) await page.fill('#card-number', card);
  await page.click('#buy-moka');
};

test('Moka: the buyer approves on the 3D page and the order is paid', async () => {
  const r = await purchase('moka-approve', mokaBuy(), async (page) => {
    await onProviderPage(page, 'moka-approve', '2-3d-page', '#approve');
    const body = await page.textContent('body');
    assert.ok(!body.includes('4111111111111111'), 'the 3D page never shows the whole card number');
    await page.click('#approve');
  });
  assert.deepEqual(r, { status: 'paid', granted: '1' });
});

test('Moka: the buyer declines on the 3D page and the order fails', async () => {
  const r = await purchase('moka-decline', mokaBuy(), async (page) => {
    await onProviderPage(page, 'moka-decline', '2-3d-page', '#decline');
    await page.click('#decline');
  });
  assert.deepEqual(r, { status: 'failed', granted: '0' });
});

test('Moka: a bank error chosen on the 3D page fails the order', async () => {
  const r = await purchase('moka-bank-error', mokaBuy(), async (page) => {
    await onProviderPage(page, 'moka-bank-error', '2-3d-page', '#fail');
    await page.selectOption('#bank-error', '002');
    await page.click('#fail');
  });
  assert.deepEqual(r, { status: 'failed', granted: '0' });
});

test('MoCoPay: the buyer sends the SMS and the order is paid', async () => {
  const r = await purchase('mocopay-approve', (page) => page.click('#buy-mocopay'), async (page) => {
    await onProviderPage(page, 'mocopay-approve', '2-checkout', '#send-sms');
    await page.click('#send-sms');
  });
  assert.deepEqual(r, { status: 'paid', granted: '1' });
});

test('MoCoPay: the buyer cancels and the order fails', async () => {
  const r = await purchase('mocopay-cancel', (page) => page.click('#buy-mocopay'), async (page) => {
    await onProviderPage(page, 'mocopay-cancel', '2-checkout', '#cancel');
    await page.click('#cancel');
  });
  assert.deepEqual(r, { status: 'failed', granted: '0' });
});

const zippyCard = (number) => async (page) => {
  await onProviderPage(page, `zippy-card-${number}`, '2-card-form', '#card-number');
  await page.fill('#card-number', number);
  await page.fill('#card-expiry', '12/35');
  await page.fill('#card-cvc', '123');
  await shot(page, `zippy-card-${number}-3-filled`);
  await page.click('#pay');
};

test('Zippy card: an approved card pays the order', async () => {
  const r = await purchase('zippy-card-approve', (page) => page.click('#buy-zippy-card'), zippyCard('4111111111111111'));
  assert.deepEqual(r, { status: 'paid', granted: '1' });
});

test('Zippy card: a declined card fails the order', async () => {
  const r = await purchase('zippy-card-decline', (page) => page.click('#buy-zippy-card'), zippyCard('4000000000000002'));
  assert.deepEqual(r, { status: 'failed', granted: '0' });
});

const zippyOperator = (pin) => async (page) => {
  const name = `zippy-operator-${pin}`;
  await onProviderPage(page, name, '2-phone', '#phone');
  await page.fill('#phone', '+905551112233');
  await page.click('#send');
  await onProviderPage(page, name, '3-pin', '#pin');
  await page.fill('#pin', pin);
  await page.click('#confirm');
};

test('Zippy carrier billing: the right PIN pays the order', async () => {
  const r = await purchase('zippy-operator-approve', (page) => page.click('#buy-zippy-operator'), zippyOperator('1234'));
  assert.deepEqual(r, { status: 'paid', granted: '1' });
});

test('Zippy carrier billing: a wrong PIN fails the order', async () => {
  const r = await purchase('zippy-operator-decline', (page) => page.click('#buy-zippy-operator'), zippyOperator('9999'));
  assert.deepEqual(r, { status: 'failed', granted: '0' });
});
