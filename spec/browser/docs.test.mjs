// The API reference (LDoc with Markdown through lua-discount) renders in a real browser: the
// index groups the public modules, the C core and the internals; no page shows a literal
// backtick; parameter and option lists are lists. Built into build/docs-browser/ with the
// repository's config.ld; screenshots go to build/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, launch, shot } from './browser.mjs';

const DOCS = join(ROOT, 'build', 'docs-browser');
const page_url = (p) => pathToFileURL(join(DOCS, p)).href;
let browser;

before(async () => {
  execFileSync('rm', ['-rf', DOCS]);
  execFileSync('ldoc', ['-q', '-d', DOCS, '.'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  browser = await launch();
});

after(async () => { if (browser) await browser.close(); });

// The text a reader sees, without code blocks (where a backtick may be part of the code).
async function visible_text(page) {
  return page.evaluate(() => {
    const body = document.body.cloneNode(true);
    body.querySelectorAll('pre').forEach((pre) => pre.remove());
    return body.innerText;
  });
}

test('the index lists the public modules, then the C core, then the internals', async () => {
  const page = await browser.newPage();
  await page.goto(page_url('index.html'));
  const headings = await page.$$eval('#content h2', (hs) => hs.map((h) => h.textContent.trim()));
  const at = (h) => headings.indexOf(h);
  assert.ok(at('Modules') >= 0 && at('Modules') < at('C core') && at('C core') < at('Internals'), headings.join(' | '));
  // the group each module's row sits under
  const groups = await page.$$eval('#content table.module_list', (tables) => tables.map((t) => ({
    heading: t.previousElementSibling && (t.previousElementSibling.tagName === 'P'
      ? t.previousElementSibling.previousElementSibling : t.previousElementSibling).textContent.trim(),
    names: [...t.querySelectorAll('td.name a')].map((a) => a.textContent.trim()),
  })));
  const group_of = (name) => (groups.find((g) => g.names.includes(name)) || {}).heading;
  assert.equal(group_of('paykit'), 'Modules');
  assert.equal(group_of('paykit.providers.moka'), 'Modules');
  assert.equal(group_of('paykit.metrics'), 'Modules');
  assert.equal(group_of('paykit.core'), 'C core');
  assert.equal(group_of('paykit.http'), 'Internals');
  assert.equal(group_of('paykit.cosocket'), 'Internals');
  const menu = await page.$$eval('#navigation a', (as) => as.map((a) => a.textContent.trim()));
  assert.ok(menu.indexOf('Getting started') >= 0 && menu.indexOf('Getting started') < menu.indexOf('paykit'),
    'Getting started comes first in the menu');
  assert.ok(!(await visible_text(page)).includes('`'), 'no literal backtick on the index');
  await shot(page, 'docs-index');
  await page.close();
});

test('the C core reference shows code as code and parameters as a list', async () => {
  const page = await browser.newPage();
  await page.goto(page_url('modules/paykit.core.html'));
  const text = await visible_text(page);
  assert.ok(!text.includes('`'), 'no literal backtick in paykit.core');
  assert.ok(await page.$$eval('#content code', (cs) => cs.length) > 10, 'inline code is rendered as <code>');
  const params = await page.$$eval('a[name="hmac"]', (as) => {
    const dd = as[0].closest('dt').nextElementSibling;
    const ul = [...dd.querySelectorAll('h3')].find((h) => h.textContent.startsWith('Parameters')).nextElementSibling;
    return [...ul.children].map((li) => ({ tag: li.tagName, display: getComputedStyle(li).display,
      name: (li.querySelector('.parameter') || {}).textContent }));
  });
  assert.ok(params.length >= 3, `hmac has ${params.length} parameters listed`);
  for (const p of params) {
    assert.equal(p.tag, 'LI');
    assert.equal(p.display, 'list-item', `parameter ${p.name} is shown as a list item`);
  }
  await shot(page, 'docs-core');
  await page.close();
});

test('an option list of a Lua module renders as a list, underscores intact', async () => {
  const page = await browser.newPage();
  await page.goto(page_url('modules/paykit.http.html'));
  assert.ok(!(await visible_text(page)).includes('`'), 'no literal backtick in paykit.http');
  const options = await page.$$eval('a[name="new"]', (as) => {
    const dd = as[0].closest('dt').nextElementSibling;
    return [...dd.querySelectorAll('li li')].map((li) => li.textContent.replace(/\s+/g, ' ').trim());
  });
  assert.ok(options.length >= 5, `paykit.http.new lists ${options.length} options`);
  assert.ok(options.some((o) => o.startsWith('connect_timeout') || o.includes('connect_timeout (seconds')),
    `connect_timeout stays one word: ${options.join(' / ')}`);
  await shot(page, 'docs-http');
  await page.close();
});

test('the getting-started page renders its headings and code', async () => {
  const page = await browser.newPage();
  await page.goto(page_url('topics/getting-started.md.html'));
  assert.equal((await page.textContent('#content h1')).trim(), 'Getting started');
  assert.ok(await page.$$eval('#content pre', (ps) => ps.length) >= 4, 'code blocks are <pre>');
  assert.ok(!(await visible_text(page)).includes('`'), 'no literal backtick on the page');
  await shot(page, 'docs-getting-started');
  await page.close();
});
