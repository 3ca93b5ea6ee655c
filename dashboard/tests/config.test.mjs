// The tenant list: add (validated), delete and undo, copy, download and load a configuration
// (our format, the original's plain list, plain text) and a bad file, kept between visits.
// Every address here is on 127.0.0.1: the page polls whatever it lists.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launch, openDashboard, config, tenantNames, row, eventually, waitForState } from './lib/browser.mjs';
import { loadTargets } from './lib/targets.mjs';

let targets;
let browser;
let pages;
let a;
let b;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sors-dashboard-config-'));
const closers = [];

before(async () => {
  targets = await loadTargets();
  browser = await launch();
  pages = await targets.dashboardPages();
  a = await targets.createTenant('Genesys');
  b = await targets.createTenant('Microsoft');
});

after(async () => {
  for (const c of closers.reverse()) await c();
  await a?.close();
  await b?.close();
  await browser?.close();
  await pages?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function open(tenants, opts = {}) {
  const page = await openDashboard(browser, opts.mode === 'http' ? pages.http : pages.file, { config: tenants ? config(tenants, 1) : null, ...opts });
  closers.push(() => page.closeAll());
  return page;
}

function stored(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('sors-dashboard.config.v1') || 'null'));
}

async function fill(page, name, address, port) {
  for (const [id, v] of [['#f-name', name], ['#f-address', address], ['#f-port', port]]) {
    await page.$eval(id, (e) => (e.value = ''));
    if (v) await page.type(id, v);
  }
  await page.click('#add');
}

const errors = (page) => page.evaluate(() => ({ name: document.getElementById('f-name-err').textContent, address: document.getElementById('f-address-err').textContent, port: document.getElementById('f-port-err').textContent }));

async function load(page, name, text) {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  const [chooser] = await Promise.all([page.waitForFileChooser({ timeout: 5000 }), page.click('#load')]);
  await chooser.accept([file]);
}

test('add validates the fields, refuses duplicates, and keeps the list between visits', async () => {
  const page = await open(null);
  assert.deepEqual(await tenantNames(page), []);
  assert.equal(await page.$eval('#empty', (e) => e.hidden), false);

  await fill(page, '', '', '');
  let e = await errors(page);
  assert.match(e.name, /Enter the organization name/);
  assert.match(e.address, /Enter the server's address/);
  assert.match(e.port, /Enter the status/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'f-name', 'focus goes to the first bad field');

  await fill(page, 'Genesys', '127.0.0.1', '70000');
  assert.match((await errors(page)).port, /whole number from 1 to 65535/);
  await fill(page, 'Genesys', '127.0.0.1', '0');
  assert.match((await errors(page)).port, /1 to 65535/);
  await fill(page, 'Genesys', 'http://127.0.0.1/', '2000');
  assert.match((await errors(page)).address, /without http:\/\//);
  await fill(page, 'Genesys', '127.0.0.1:2000', '2000');
  assert.match((await errors(page)).address, /without a port/);
  await fill(page, 'Genesys', '300.1.2.3', '2000');
  assert.match((await errors(page)).address, /not a valid IPv4/);
  await fill(page, 'Genesys', 'bad_host!', '2000');
  assert.match((await errors(page)).address, /not a valid host name/);
  assert.deepEqual(await tenantNames(page), []);
  assert.equal(await page.$eval('#f-port', (i) => i.getAttribute('aria-invalid')), null, 'only the bad field is marked');
  assert.equal(await page.$eval('#f-address', (i) => i.getAttribute('aria-invalid')), 'true');

  await fill(page, 'Genesys', a.address, String(a.port));
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Genesys']));
  await fill(page, ' genesys ', '127.0.0.1', '9');
  assert.match((await errors(page)).name, /already in the list/);
  await fill(page, 'Other', a.address, String(a.port));
  assert.match((await errors(page)).address, /already monitors/);
  await fill(page, 'Microsoft', b.address, String(b.port));
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Genesys', 'Microsoft']));
  await waitForState(page, 'Genesys', 'up');

  assert.deepEqual((await stored(page)).tenants, [
    { name: 'Genesys', address: a.address, port: a.port },
    { name: 'Microsoft', address: b.address, port: b.port },
  ]);
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('html[data-ready="true"]');
  assert.deepEqual(await tenantNames(page), ['Genesys', 'Microsoft']);
  await waitForState(page, 'Microsoft', 'up');
});

test('the add form works from the keyboard alone', async () => {
  const page = await open(null);
  await page.focus('#f-name');
  await page.keyboard.type('Keyboard Co');
  await page.keyboard.press('Tab');
  await page.keyboard.type(a.address);
  await page.keyboard.press('Tab');
  await page.keyboard.type(String(a.port));
  await page.keyboard.press('Enter');
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Keyboard Co']));
  // Tab from the form to the row's Details button, open it with Enter, close it with Escape.
  await page.focus('#sort');
  let guard = 0;
  while ((await page.evaluate(() => document.activeElement.getAttribute('aria-controls'))) !== 'detail' && guard++ < 15) await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Details');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => !document.getElementById('detail').hidden && document.activeElement.id === 'detail-h', { timeout: 5000 });
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.getElementById('detail').hidden && document.activeElement.getAttribute('aria-controls') === 'detail', { timeout: 5000 });
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.equal(outline, 'solid', 'the focused button shows a focus ring');
});

test('delete, then undo restores the tenant where it was', async () => {
  const page = await open([a, b, { name: 'Third', address: '127.0.0.1', port: 9 }]);
  const del = await page.$('tr[data-tenant="Microsoft"] button.danger');
  await del.click();
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Genesys', 'Third']));
  assert.deepEqual((await stored(page)).tenants.map((t) => t.name), ['Genesys', 'Third']);
  assert.match(await page.$eval('#notice-text', (n) => n.textContent), /Deleted "Microsoft"/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'undo', 'focus moves to Undo');
  await page.keyboard.press('Enter');
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Genesys', 'Microsoft', 'Third']));
  assert.deepEqual((await stored(page)).tenants.map((t) => t.name), ['Genesys', 'Microsoft', 'Third']);
  await waitForState(page, 'Microsoft', 'up');
  // Two deletes undo in reverse order.
  await (await page.$('tr[data-tenant="Genesys"] button.danger')).click();
  await (await page.$('tr[data-tenant="Third"] button.danger')).click();
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Microsoft']));
  await page.click('#undo');
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Microsoft', 'Third']));
  await page.click('#undo');
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Genesys', 'Microsoft', 'Third']));
});

test('copy puts the configuration on the clipboard', async () => {
  const page = await open([a, b], { mode: 'http' });
  await page.browserContext().overridePermissions(new URL(pages.http).origin, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
  await page.click('#copy');
  await page.waitForFunction(() => /Copied the configuration of 2 tenants/.test(document.getElementById('notice-text').textContent), { timeout: 5000 });
  const text = await page.evaluate(() => navigator.clipboard.readText());
  assert.deepEqual(JSON.parse(text), config([a, b], 1));
  // And as a file page, where the clipboard may fall back to the older copy command.
  const filePage = await open([a]);
  await filePage.click('#copy');
  await filePage.waitForFunction(() => /Copied the configuration of 1 tenant|did not allow copying/.test(document.getElementById('notice-text').textContent), { timeout: 5000 });
});

test('download saves the configuration as JSON, and loading that file gives the same list', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'dl-'));
  const page = await open([a, b], { downloadPath: dir });
  await page.click('#download');
  const file = path.join(dir, 'sors-dashboard.json');
  const text = await eventually(
    () => {
      const t = fs.readFileSync(file, 'utf8');
      assert.ok(t.endsWith('\n'));
      return t;
    },
    { timeout: 10000 },
  );
  assert.deepEqual(JSON.parse(text), config([a, b], 1));
  const fresh = await open(null);
  await load(fresh, 'downloaded.json', text);
  await eventually(async () => assert.deepEqual(await tenantNames(fresh), ['Genesys', 'Microsoft']));
  await waitForState(fresh, 'Genesys', 'up');
});

test("load reads our format, the original's plain list and plain text, and can be undone", async () => {
  const page = await open([a]);
  await load(
    page,
    'original.json',
    JSON.stringify([
      { 'Organization Name': 'Acme', 'Server IP': '127.0.0.1', 'Hearbeat Port': String(b.port) },
      { organizationName: 'Globex', serverIp: '127.0.0.1', heartbeatPort: 9 },
    ]),
  );
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Acme', 'Globex']));
  assert.match(await page.$eval('#notice-text', (n) => n.textContent), /Loaded 2 tenants from "original.json" \(replacing 1\)/);
  await waitForState(page, 'Acme', 'up');
  assert.deepEqual((await stored(page)).tenants, [
    { name: 'Acme', address: '127.0.0.1', port: b.port },
    { name: 'Globex', address: '127.0.0.1', port: 9 },
  ]);

  await load(page, 'triples.json', JSON.stringify([['Initech', '127.0.0.1', 9]]));
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Initech']));

  await load(page, 'table.txt', `Organization Name\tServer IP\tHeartbeat Port\nUmbrella\t127.0.0.1\t${a.port}\nHooli, 127.0.0.1, 9\n`);
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Umbrella', 'Hooli']));

  await load(page, 'ours.json', JSON.stringify({ sors_dashboard: 1, poll_seconds: 2, tenants: [{ name: 'Ours', address: 'localhost', port: a.port }] }));
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Ours']));
  assert.equal(await page.$eval('#poll', (s) => s.value), '2');

  await page.click('#undo');
  await eventually(async () => assert.deepEqual(await tenantNames(page), ['Umbrella', 'Hooli']));
  assert.equal(await page.$eval('#poll', (s) => s.value), '1');
  assert.deepEqual((await stored(page)).tenants.map((t) => t.name), ['Umbrella', 'Hooli']);
});

test('a bad file gives a readable error and changes nothing', async () => {
  const page = await open([a, b]);
  const before = await stored(page);
  const cases = [
    ['broken.json', '{"tenants": [', /not valid JSON/],
    ['empty.json', '   ', /The file is empty/],
    ['none.json', '[]', /lists no tenants/],
    ['object.json', '{"servers": []}', /no "tenants" list/],
    ['newer.json', '{"sors_dashboard": 2, "tenants": []}', /version 2 of the dashboard format/],
    [
      'mixed.json',
      JSON.stringify([
        { name: 'Good', address: '127.0.0.1', port: 9 },
        { name: 'Bad port', address: '127.0.0.1', port: 70000 },
        { name: 'Good', address: '127.0.0.1', port: 10 },
        { name: 'No address', port: 11 },
      ]),
      /Entry 2 \("Bad port"\): The port must be a whole number from 1 to 65535[\s\S]*Entry 3 \("Good"\): A tenant named "Good" is already in the list[\s\S]*Entry 4 \("No address"\): Enter the server's address/,
    ],
    ['text.txt', 'Acme\t127.0.0.1\n', /Line 1: expected three values/],
    ['poll.json', '{"sors_dashboard": 1, "poll_seconds": 0, "tenants": [{"name": "x", "address": "127.0.0.1", "port": 9}]}', /"poll_seconds" must be one of/],
  ];
  for (const [name, text, want] of cases) {
    await load(page, name, text);
    await page.waitForFunction((n) => !document.getElementById('load-error').hidden && document.getElementById('load-error').textContent.includes(n), { timeout: 5000 }, name);
    const shown = await page.$eval('#load-error', (e) => e.textContent);
    assert.match(shown, want, `${name}: ${shown}`);
    assert.match(shown, /Nothing was changed/);
    assert.equal(await page.$eval('#load-error', (e) => e.getAttribute('role')), 'alert');
    assert.deepEqual(await tenantNames(page), ['Genesys', 'Microsoft'], name);
    assert.deepEqual(await stored(page), before, name);
  }
  assert.equal((await row(page, 'Genesys')).index, 0);
});
