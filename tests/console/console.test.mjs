// The web console (/console) in a real browser: Debian's Chromium, headless, driven by
// puppeteer-core (pinned in package-lock.json; no browser download). One server with the
// Fashion-MNIST demo collection and both API keys; each test is something a person does.
//
// Run: npm ci --prefix tests/console && node --test tests/console/
// FATHOM_BIN names the binary (default build/src/cli/fathom); CHROMIUM the browser (default
// /usr/bin/chromium). FATHOM_CONSOLE_SCREENSHOTS=DIR also saves a screenshot of each view there
// (docs/console/ holds the ones docs/console.md shows).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { startFathom } from '../fathom_server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.FATHOM_BIN || join(root, 'build', 'src', 'cli', 'fathom');
const shots = process.env.FATHOM_CONSOLE_SCREENSHOTS || '';
const WRITE_KEY = 'console-test-write-key';
const READ_KEY = 'console-test-read-key';
let server, dataDir, url, browser, page;
// Every console message of type error and every uncaught page error, with what the page was
// doing; the browser logs a failed HTTP status as an error, so each test that provokes one on
// purpose says which (`expectHttpErrors`).
const errors = [];
let expected = [];
// The page's REST calls (fetch) not yet answered, in the current document only: a request cut
// off by navigating away is never answered, and puppeteer's waitForNetworkIdle then waits forever.
const inFlight = new Set();
// The browser reports a response a moment after the page has used it, and the page may still
// have a call in flight that it no longer waits for (a filter that fails both the scroll and the
// count shows the first refusal): before expecting fewer errors, wait until no call has been in
// flight for 500 ms.
const expectHttpErrors = async (...codes) => {
  if (codes.length < expected.length) {
    const deadline = Date.now() + 20000;
    for (let quiet = 0; quiet < 500;) {
      assert.ok(Date.now() < deadline, `still in flight: ${[...inFlight].map((r) => `${r.method()} ${r.url()}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
      quiet = inFlight.size ? 0 : quiet + 50;
    }
  }
  expected = codes;
};

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'fathom-console-'));
  ({ server, url } = await startFathom(bin, ['--demo', '--data', dataDir],
                                       { ...process.env, FATHOM_API_KEY: WRITE_KEY, FATHOM_READ_ONLY_API_KEY: READ_KEY }));
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const status = (m.text().match(/status of (\d{3})/) || [])[1];
    if (status && expected.includes(Number(status))) return;
    errors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) inFlight.clear();  // a new document
    if (r.resourceType() === 'fetch') inFlight.add(r);
  });
  page.on('requestfinished', (r) => inFlight.delete(r));
  page.on('requestfailed', (r) => inFlight.delete(r));
  page.on('pageerror', (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
  if (shots) mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function rest(method, path, body, key = WRITE_KEY) {
  const res = await fetch(url + path, {
    method,
    headers: { 'api-key': key, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  assert.equal(res.status, 200, `${method} ${path}: ${JSON.stringify(json.status)}`);
  return json.result;
}
async function shot(name, width) {
  if (!shots) return;
  if (width) await page.setViewport({ width, height: 800 });
  await page.screenshot({ path: join(shots, `${name}.png`) });
  if (width) await page.setViewport({ width: 1280, height: 900 });
}
const text = (sel) => page.$eval(sel, (e) => e.textContent);
const rowIds = () => page.$$eval('table[data-testid=points] tbody tr', (rows) => rows.map((r) => r.dataset.id));
async function go(hash, selector) {
  // A fresh page each time (a goto that changes only the hash would keep the old view); the
  // key stays, as session storage belongs to the tab.
  await page.goto('about:blank');
  await page.goto(`${url}/console${hash}`);
  if (selector) await page.waitForSelector(selector, { timeout: 20000 });
}
async function enterKey(key) {
  await page.waitForSelector('#key-dialog[open]', { timeout: 10000 });
  await page.type('#key-input', key);
  await page.click('#key-save');
}

test('without a key the console asks for one and shows nothing else', async () => {
  await expectHttpErrors(401);
  await go('#/');
  await page.waitForSelector('#key-dialog[open]');
  assert.match(await text('#key-message'), /needs an API key/);
  assert.equal(await page.$('table[data-testid=collections]'), null);
  await shot('key');
  await page.type('#key-input', 'wrong-key');
  await page.click('#key-save');
  await page.waitForFunction(() => /refused|invalid/i.test(document.querySelector('#key-message').textContent) &&
                             document.querySelector('#key-dialog').open);
  await page.$eval('#key-input', (e) => { e.value = ''; });
  await page.type('#key-input', WRITE_KEY);
  await page.click('#key-save');
  await page.waitForSelector('table[data-testid=collections]');
  assert.equal(await text('#access-badge'), 'read-write key');
});

test('the demo collection is listed with its size, dimension and index', async () => {
  await expectHttpErrors();
  await go('#/', 'tr[data-collection="fashion-mnist"]');
  const cells = await page.$$eval('tr[data-collection="fashion-mnist"] td', (tds) => tds.map((t) => t.textContent));
  const info = await rest('GET', '/collections/fashion-mnist');
  assert.equal(info.points_count, 70000);
  assert.deepEqual(cells.slice(0, 5), ['fashion-mnist', '70,000', '784', 'Euclid', info.config.params.vectors.index]);
  // The model description from the collection's metadata.
  assert.equal(cells[6], 'raw pixels 28x28 grey, 0-255');
  assert.ok(await page.$('[data-testid=create]'), 'a read-write key sees Create');
  assert.ok(await page.$('[data-testid=drop]'), 'a read-write key sees Drop');
  await shot('collections');
});

test('the points table pages forward and back through scroll', async () => {
  await go('#/c/fashion-mnist/points', 'table[data-testid=points] tbody tr');
  const first = await rowIds();
  assert.equal(first.length, 20);
  const rest20 = await rest('POST', '/collections/fashion-mnist/points/scroll', { limit: 40 });
  assert.deepEqual(first, rest20.points.slice(0, 20).map((p) => String(p.id)));
  assert.equal(await text('[data-testid=page]'), '1–20');
  // Each row shows the 28x28 picture the vector is.
  assert.equal(await page.$$eval('table[data-testid=points] tbody canvas[data-picture=pixels]', (c) => c.length), 20);
  await shot('points');
  await page.click('[data-testid=next]');
  await page.waitForFunction(() => document.querySelector('[data-testid=page]').textContent === '21–40');
  assert.deepEqual(await rowIds(), rest20.points.slice(20, 40).map((p) => String(p.id)));
  await page.click('[data-testid=prev]');
  await page.waitForFunction(() => document.querySelector('[data-testid=page]').textContent === '1–20');
  assert.deepEqual(await rowIds(), first);
});

test('a filter narrows the table and a bad filter shows its error', async () => {
  await go('#/c/fashion-mnist/points', 'table[data-testid=points] tbody tr');
  await page.type('[data-testid=filter]', "label = 3 AND split = 'test'");
  await page.click('[data-testid=apply-filter]');
  await page.waitForFunction(() => /1,000 points match/.test(document.querySelector('[data-testid=match-count]')?.textContent));
  const labels = await page.$$eval('table[data-testid=points] tbody tr', (rows) => rows.map((r) => r.children[2].textContent + '/' + r.children[4].textContent));
  assert.equal(labels.length, 20);
  assert.ok(labels.every((l) => l === '3/test'), labels.join(' '));
  await shot('filter');
  await expectHttpErrors(400);
  await page.$eval('[data-testid=filter]', (e) => { e.value = ''; });
  await page.type('[data-testid=filter]', 'label = = 3');
  await page.click('[data-testid=apply-filter]');
  await page.waitForFunction(() => document.querySelector('[data-testid=filter-error]').textContent !== '');
  assert.match(await text('[data-testid=filter-error]'), /filter parse error at column 9/);
  // The table still shows the last good filter's points.
  assert.match(await text('[data-testid=match-count]'), /1,000 points match/);
  await shot('filter-error');
  await expectHttpErrors();
  await page.click('.panel button.ghost');  // Clear
  await page.waitForFunction(() => /70,000 points in total/.test(document.querySelector('[data-testid=match-count]')?.textContent));
});

test('the detail view draws the 28x28 image and "similar" finds what the REST search finds', async () => {
  await go('#/c/fashion-mnist/p/5', '[data-testid=results] .card');
  const picture = await page.$eval('[data-testid=detail] canvas[data-picture=pixels]', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const values = new Set();
    for (let i = 0; i < d.length; i += 4) values.add(d[i]);
    return { width: c.width, height: c.height, distinct: values.size };
  });
  assert.deepEqual([picture.width, picture.height], [28, 28]);
  assert.ok(picture.distinct > 20, `the picture has ${picture.distinct} grey levels: blank`);
  assert.match(await page.$eval('[data-testid=payload]', (e) => e.textContent), /Pullover/);
  const shown = await page.$$eval('[data-testid=results] .card', (cards) => cards.map((c) => c.dataset.id));
  const point = await rest('GET', '/collections/fashion-mnist/points/5');
  const hits = await rest('POST', '/collections/fashion-mnist/points/search', { vector: point.vector, limit: 10, params: { hnsw_ef: 64 } });
  assert.deepEqual(shown, hits.map((p) => String(p.id)));
  assert.equal(shown[0], '5');
  assert.match(await text('[data-testid=search-stats]'), /same ids as exact: \d+ of 10/);
  await shot('similar');
  // k and ef change the search.
  await page.$eval('[data-testid=k]', (e) => { e.value = '5'; });
  await page.click('[data-testid=similar]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=results] .card').length === 5);
});

test('recommend from + and − picks matches the REST recommend', async () => {
  await go('#/c/fashion-mnist/p/5', '[data-testid=results] .card');
  const ids = await page.$$eval('[data-testid=results] .card', (cards) => cards.map((c) => c.dataset.id));
  // Point 5 is a positive pick already; add the 3rd result as positive and the 4th as negative.
  await page.click(`[data-testid=results] .card[data-id="${ids[2]}"] .votes button:first-child`);
  await page.click(`[data-testid=results] .card[data-id="${ids[3]}"] .votes button:last-child`);
  await page.click('[data-testid=recommend]');
  await page.waitForFunction(() => /^recommend \(2 positive, 1 negative\)/.test(document.querySelector('[data-testid=search-stats]').textContent));
  const shown = await page.$$eval('[data-testid=results] .card', (cards) => cards.map((c) => c.dataset.id));
  const hits = await rest('POST', '/collections/fashion-mnist/points/recommend',
    { positive: [5, Number(ids[2])], negative: [Number(ids[3])], limit: 10, params: { hnsw_ef: 64 } });
  assert.deepEqual(shown, hits.map((p) => String(p.id)));
});

test('search by a pasted vector; a wrong dimension is refused with a message', async () => {
  const point = await rest('GET', '/collections/fashion-mnist/points/77');
  await go('#/c/fashion-mnist/search', '[data-testid=vector-input]');
  await page.$eval('[data-testid=vector-input]', (e, v) => { e.value = v; }, '1, 2, 3');
  await page.click('[data-testid=search-vector]');
  assert.match(await text('[data-testid=vector-error]'), /has 3 numbers; this collection's vectors have 784/);
  await page.$eval('[data-testid=vector-input]', (e, v) => { e.value = v; }, JSON.stringify(point.vector));
  await page.click('[data-testid=search-vector]');
  await page.waitForSelector('[data-testid=results] .card');
  assert.equal(await page.$eval('[data-testid=results] .card', (c) => c.dataset.id), '77');
});

test('the map projects a sample, colours it by a payload field and opens a point on click', async () => {
  await go('#/c/fashion-mnist/map');
  await page.waitForFunction(() => /^1000 points, first two principal components/.test(document.querySelector('[data-testid=map-status]')?.textContent), { timeout: 30000 });
  assert.equal(await page.$eval('select[aria-label="colour by"]', (s) => s.value), 'label');
  assert.equal(await page.$$eval('.legend > span', (s) => s.length), 10);
  await shot('map');
  // Click where the canvas has a drawn dot.
  const spot = await page.$eval('[data-testid=map]', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let y = 0; y < c.height; y += 2) {
      for (let x = 0; x < c.width; x += 2) {
        if (d[(y * c.width + x) * 4 + 3] > 150) {
          const r = c.getBoundingClientRect();
          return { x: r.left + (x / c.width) * r.width, y: r.top + (y / c.height) * r.height };
        }
      }
    }
    return null;
  });
  assert.ok(spot, 'the map is blank');
  await page.mouse.click(spot.x, spot.y);
  await page.waitForFunction(() => /#\/c\/fashion-mnist\/p\/\d+$/.test(location.hash));
  await page.waitForSelector('[data-testid=detail]');
  // The keyboard reaches the dots too: focus the map, move to a dot, open it.
  await go('#/c/fashion-mnist/map');
  await page.waitForFunction(() => /^1000 points/.test(document.querySelector('[data-testid=map-status]')?.textContent), { timeout: 30000 });
  await page.focus('[data-testid=map]');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /#\/c\/fashion-mnist\/p\/\d+$/.test(location.hash));
  await page.waitForSelector('[data-testid=detail]');
});

test('estimate recall: the index against exact search, shown in the list', async () => {
  await go('#/c/fashion-mnist/info', '[data-testid=estimate-recall]');
  await page.click('[data-testid=estimate-recall]');
  await page.waitForFunction(() => /^recall@10 [01]\.\d{4}/.test(document.querySelector('[data-testid=recall]').textContent), { timeout: 30000 });
  const value = Number((await text('[data-testid=recall]')).match(/recall@10 ([01]\.\d{4})/)[1]);
  assert.ok(value >= 0.9 && value <= 1, `recall ${value}`);
  await shot('info');
  await go('#/', 'tr[data-collection="fashion-mnist"]');
  const cells = await page.$$eval('tr[data-collection="fashion-mnist"] td', (tds) => tds.map((t) => t.textContent));
  assert.equal(cells[7], value.toFixed(3));
});

test('the description is edited in the Info tab and kept in the collection metadata', async () => {
  await go('#/c/fashion-mnist/info', '[data-testid=save-description]');
  await page.$eval('input[aria-label="model name"]', (e) => { e.value = ''; });
  await page.type('input[aria-label="model name"]', 'pixels-test');
  await page.click('[data-testid=save-description]');
  await page.waitForFunction(() => document.querySelector('[data-testid=model]')?.textContent === 'pixels-test 28x28 grey, 0-255');
  const meta = (await rest('GET', '/collections/fashion-mnist')).config.metadata;
  assert.deepEqual(meta.model, { name: 'pixels-test', version: '28x28 grey, 0-255', dimension: 784 });
  assert.match(meta.description, /^Fashion-MNIST/);
  await rest('PATCH', '/collections/fashion-mnist', { metadata: { model: { name: 'raw pixels', version: '28x28 grey, 0-255', dimension: 784 } } });
});

test('a payload field that holds an image is shown instead of the vector', async () => {
  // 2x2 PNGs as data URLs and as bare base64; vectors that are not pixels (negative values).
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEklEQVR4nGP4z8DAAMIM/4EAAB/uBfsL2WiLAAAAAElFTkSuQmCC';
  await rest('PUT', '/collections/pictures', { vectors: { size: 3, distance: 'Cosine' } });
  await rest('PUT', '/collections/pictures/points', { points: [
    { id: 1, vector: [-1, 0, 1], payload: { image: `data:image/png;base64,${png}`, kind: 'url' } },
    { id: 2, vector: [1, -1, 0], payload: { image: png, kind: 'bare' } },
    { id: 3, vector: [0, 1, -1], payload: { kind: 'none' } }] });
  await go('#/c/pictures/points', 'table[data-testid=points] tbody tr');
  const pictures = await page.$$eval('table[data-testid=points] tbody tr', (rows) => rows.map((r) => r.querySelector('[data-picture]')?.dataset.picture ?? null));
  assert.deepEqual(pictures, ['field', 'field', null]);
  await page.waitForFunction(() => [...document.querySelectorAll('img[data-picture=field]')].every((i) => i.complete && i.naturalWidth === 2));
  await rest('DELETE', '/collections/pictures');
});

test('tune from the Info tab keeps the cheapest ef that reaches the target', async () => {
  await go('#/c/fashion-mnist/info', '[data-testid=tune]');
  assert.match(await text('[data-testid=search-defaults]'), /never tuned/);
  await page.$eval('[data-testid=target-recall]', (e) => { e.value = '0.9'; });
  await page.click('[data-testid=tune]');
  await page.waitForFunction(() => /^Reached: ef \d+/.test(document.querySelector('[data-testid=tune-result]').textContent), { timeout: 120000 });
  const defaults = (await rest('GET', '/collections/fashion-mnist')).search_defaults[''];
  assert.equal(defaults.target_recall, 0.9);
  assert.ok(defaults.recall >= 0.9);
  assert.equal(await text('[data-testid=search-defaults]'),
    `Default: ef ${defaults.ef}, tuned for recall 0.9 (measured ${defaults.recall.toFixed(4)}).`);
});

test('health shows live numbers from /metrics', async () => {
  await go('#/health', '[data-testid=charts]');
  // Some traffic the charts should count (the page's own polling is left out).
  for (let i = 0; i < 20; ++i) await rest('POST', '/collections/fashion-mnist/points/count', {}, READ_KEY);
  await page.waitForFunction(() => {
    const qps = document.querySelector('[data-chart="Requests / s"] .value').textContent;
    return qps !== '—' && Number(qps) > 0;
  }, { timeout: 15000 });
  assert.match(await text('[data-testid=uptime]'), /up \d+ s .* process [\d.]+ MiB resident/);
  assert.match(await page.$eval('main', (m) => m.textContent), /fashion-mnist70,000(—|[01]\.\d{3})\d+ s ago/);
  await shot('health');
});

test('create and drop a collection (drop asks for the name)', async () => {
  await go('#/', '[data-testid=create]');
  await page.click('[data-testid=create]');
  await page.waitForSelector('dialog[open] input[name=name]');
  await page.type('dialog[open] input[name=name]', 'scratch');
  await page.$eval('dialog[open] input[name=dim]', (e) => { e.value = '8'; });
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('tr[data-collection="scratch"]');
  assert.equal((await rest('GET', '/collections/scratch')).config.params.vectors.size, 8);
  await page.click('tr[data-collection="scratch"] [data-testid=drop]');
  await page.waitForSelector('dialog[open] input');
  await page.type('dialog[open] input', 'wrong');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForFunction(() => /type "scratch" exactly/.test(document.querySelector('dialog[open] .error').textContent));
  await page.$eval('dialog[open] input', (e) => { e.value = ''; });
  await page.type('dialog[open] input', 'scratch');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForFunction(() => !document.querySelector('tr[data-collection="scratch"]') && document.querySelector('tr[data-collection="fashion-mnist"]'));
  const list = await rest('GET', '/collections');
  assert.deepEqual(list.collections.map((c) => c.name), ['fashion-mnist']);
});

test('a read-only key sees no write buttons', async () => {
  await go('#/', 'table[data-testid=collections]');
  await expectHttpErrors(401);  // forgetting the key: the console asks the server again
  await page.click('#key-button');
  await page.click('#key-forget');
  await enterKey(READ_KEY);
  await page.waitForFunction(() => document.querySelector('#access-badge').textContent === 'read-only key');
  await page.waitForSelector('tr[data-collection="fashion-mnist"]');
  assert.equal(await page.$('[data-testid=create]'), null);
  assert.equal(await page.$('[data-testid=drop]'), null);
  const buttons = await page.$$eval('main button', (b) => b.map((x) => x.textContent));
  assert.deepEqual(buttons, []);
  await expectHttpErrors();
  // Reading still works.
  await go('#/c/fashion-mnist/p/5', '[data-testid=results] .card');
});

test('readable at phone width: nothing wider than the screen', async () => {
  await page.setViewport({ width: 390, height: 800 });
  // Each view complete: the point view draws its similar points after the view is shown.
  for (const [hash, complete] of [['#/', 'table[data-testid=collections] tbody tr'], ['#/c/fashion-mnist/points', 'table[data-testid=points] tbody tr'],
                                  ['#/c/fashion-mnist/p/5', '[data-testid=results] .card'], ['#/health', '[data-testid=charts]']]) {
    await go(hash, complete);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(wide <= 0, `${hash} is ${wide}px wider than the screen`);
  }
  await go('#/c/fashion-mnist/p/5', '[data-testid=results] .card');
  await shot('phone-similar');
  await page.setViewport({ width: 1280, height: 900 });
});

test('the console made no errors in the browser', () => {
  assert.deepEqual(errors, []);
});
