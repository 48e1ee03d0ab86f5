// The sandbox's own pages render in a real browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, run, shot } from './browser.mjs';

const PORT = process.env.PAYKIT_BROWSER_SANDBOX_PORT || '18890';
const BASE = `http://127.0.0.1:${PORT}`;
let browser;

before(async () => { run('bin/paykit-sandbox', ['start', '--port', PORT]); browser = await launch(); });
after(async () => { if (browser) await browser.close(); run('bin/paykit-sandbox', ['stop', '--port', PORT]); });

test('the sandbox index lists the three providers', async () => {
  const page = await browser.newPage();
  await page.goto(BASE + '/');
  const text = await page.textContent('body');
  for (const p of ['/moka', '/mocopay', '/zippy']) assert.ok(text.includes(BASE + p), `index names ${p}`);
  await shot(page, 'sandbox-index');
  await page.close();
});
