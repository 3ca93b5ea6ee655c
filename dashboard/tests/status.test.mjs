// Status: green, amber, red, back-off, a slow tenant, the incident timeline and the detail
// numbers, against the targets of lib/targets.mjs (fixture tenants unless told otherwise).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openDashboard, config, row, waitForState, openDetail, detailStats, eventually, getJson } from './lib/browser.mjs';
import { loadTargets } from './lib/targets.mjs';

const MSG_UP = 'Successfully connected to CIC Server and Salesforce';
const MSG_DOWN = 'Salesforce Object Routing Server Down';

let targets;
let browser;
let pages;
const cleanup = [];

before(async () => {
  targets = await loadTargets();
  browser = await launch();
  pages = await targets.dashboardPages();
});

after(async () => {
  for (const c of cleanup.reverse()) await c();
  await browser?.close();
  await pages?.close();
});

async function tenant(name, opts) {
  const t = await targets.createTenant(name, opts);
  cleanup.push(() => t.close());
  return t;
}

async function open(tenants, opts = {}) {
  const page = await openDashboard(browser, opts.mode === 'http' ? pages.http : pages.file, { config: config(tenants, 1), ...opts });
  cleanup.push(() => page.closeAll());
  return page;
}

const timeout = (name, fallback) => (targets.timeouts && targets.timeouts[name]) || fallback;

test('a healthy tenant is green with the original words, served with the CSP and without errors', async () => {
  const t = await tenant('Healthy Co');
  await t.healthy();
  const page = await open([t], { mode: 'http' });
  const r = await waitForState(page, 'Healthy Co', 'up', { message: new RegExp(MSG_UP) });
  assert.equal(r.message, MSG_UP);
  assert.match(r.meta, /^for \d+/);
  const summary = await page.$eval('#summary', (s) => s.textContent);
  assert.match(summary, /1 up/);
  assert.match(await page.title(), /All 1 up/);
  assert.deepEqual(page.cspViolations, []);
  assert.deepEqual(page.errors, []);
});

test('a tenant whose service is stopped turns red within two polls, backs off, and comes back green', async () => {
  const t = await tenant('Stopping Ltd');
  await t.healthy();
  const page = await open([t]);
  await waitForState(page, 'Stopping Ltd', 'up');
  await t.stop();
  const atStop = (await row(page, 'Stopping Ltd')).attempts;
  const red = await waitForState(page, 'Stopping Ltd', 'down', { timeout: 10000 });
  assert.ok(red.attempts <= atStop + 2, `red after ${red.attempts - atStop} polls`);
  assert.equal(red.message, MSG_DOWN);
  assert.match(red.meta, /Cannot connect/);
  // Back-off: the wait between tries doubles with each failure (1 s, 2 s, 4 s, ...).
  await page.waitForFunction(
    (name) => {
      const tr = [...document.querySelectorAll('#tenant-rows tr')].find((r) => r.dataset.tenant === name);
      const f = Number(tr.dataset.failures);
      return f >= 3 && Number(tr.dataset.nextDelay) === Math.min(60000, 1000 * 2 ** (f - 1));
    },
    { timeout: 15000, polling: 100 },
    'Stopping Ltd',
  );
  await t.start();
  await openDetail(page, 'Stopping Ltd');
  await page.click('#retry');
  await waitForState(page, 'Stopping Ltd', 'up', { timeout: 15000 });
  const kinds = await page.$$eval('#detail-events li', (li) => li.map((l) => l.dataset.kind));
  assert.ok(kinds.includes('page_unreachable') && kinds.includes('page_reachable'), kinds.join(','));
});

test('a tenant whose pushes are lost turns amber with the push-loss message once the sweep finds the rows', async () => {
  const t = await tenant('Lost Pushes Inc');
  await t.healthy();
  const page = await open([t]);
  await waitForState(page, 'Lost Pushes Inc', 'up');
  await t.dropPushes();
  const r = await waitForState(page, 'Lost Pushes Inc', 'degraded', { message: targets.pushLossPattern, timeout: timeout('pushLoss', 10000) });
  assert.match(r.message, targets.pushLossPattern);
  await openDetail(page, 'Lost Pushes Inc');
  const reasons = await page.$$eval('#detail-reasons li', (li) => li.map((l) => l.textContent));
  assert.ok(reasons.some((x) => targets.pushLossPattern.test(x)), reasons.join(' | '));
  await page.waitForSelector('#detail-events li[data-kind="push_lost"]', { timeout: 10000 });
});

test('an older heartbeat without typed reasons: a recent push-loss alert still makes it amber', async (c) => {
  if (!targets.capabilities.withoutReasons) return c.skip('the targets cannot serve an older heartbeat');
  const t = await tenant('Old Heartbeat', { typedReasons: false });
  await t.healthy();
  const page = await open([t]);
  await waitForState(page, 'Old Heartbeat', 'up');
  await t.dropPushes();
  await waitForState(page, 'Old Heartbeat', 'degraded', { message: targets.pushLossPattern });
});

test('a switchover appears in the incident timeline', async () => {
  const t = await tenant('Switching SA');
  await t.healthy();
  const page = await open([t]);
  await waitForState(page, 'Switching SA', 'up');
  await openDetail(page, 'Switching SA');
  await t.switchover();
  const item = await page.waitForSelector('#detail-events li[data-kind="switchover"]', { timeout: timeout('switchover', 15000) });
  const text = await item.evaluate((li) => li.textContent);
  assert.match(text, /Switchover/);
  assert.match(text, /switchover/i);
  await page.waitForSelector('#detail-bar .mark[data-kind="switchover"]', { timeout: 5000 });
  await waitForState(page, 'Switching SA', 'up', { timeout: timeout('switchover', 15000) });
});

test('one slow tenant never stalls the others, and turns red when it does not answer in time', async (c) => {
  if (!targets.capabilities.slow) return c.skip('the targets cannot slow a tenant down');
  const fast = await tenant('Fast GmbH');
  const slow = await tenant('Slow BV');
  await fast.healthy();
  await slow.healthy();
  const page = await open([slow, fast]);
  await waitForState(page, 'Fast GmbH', 'up');
  await waitForState(page, 'Slow BV', 'up');
  await slow.slow(60000);
  await fast.dropPushes();
  // The fast tenant changes while the slow one's request is still hanging.
  await waitForState(page, 'Fast GmbH', 'degraded', { timeout: 5000 });
  const s = await waitForState(page, 'Slow BV', 'down', { timeout: 10000 });
  assert.match(s.meta, /No answer within 2 s/);
  await fast.healthy();
  await waitForState(page, 'Fast GmbH', 'up', { timeout: 5000 });
  await slow.slow(0);
  await waitForState(page, 'Slow BV', 'up', { timeout: 15000 });
});

test("the detail numbers equal what /heartbeat and /history say", async () => {
  const t = await tenant('Numbers Corp', { story: true, startedMinutesAgo: 600, seed: 11 });
  await t.traffic(4);
  const page = await open([t]);
  await waitForState(page, 'Numbers Corp', 'up');
  await openDetail(page, 'Numbers Corp');
  await eventually(
    async () => {
      const s = await detailStats(page);
      const hb = await getJson(t.heartbeatUrl);
      const h = await getJson(t.historyUrl);
      const start = Date.parse(h.minutes.start);
      const mins = h.minutes.routed.map((r, i) => ({ t: start + i * 60000, r, f: h.minutes.failed[i], p50: h.minutes.p50_ms[i], p95: h.minutes.p95_ms[i] }));
      const today = mins.filter((m) => m.t >= s.dayStart);
      const router = hb.routing.router;
      assert.equal(s.backlog.value, String(router.waiting_rows));
      assert.equal(s.backlog.text, router.waiting_rows.toLocaleString('en-US'));
      assert.equal(s.in_flight.value, String(router.in_flight));
      assert.equal(s.routed_today.value, String(today.reduce((a, m) => a + m.r, 0)));
      assert.equal(s.failed_today.value, String(today.reduce((a, m) => a + m.f, 0)));
      assert.equal(s.routed_today.text, today.reduce((a, m) => a + m.r, 0).toLocaleString('en-US'));
      const last = [...mins].reverse().find((m) => m.p50 !== null);
      assert.equal(s.ttr.value, last ? `${last.p50}/${last.p95}` : '');
      assert.equal(s.last_push.value, hb.salesforce.last_push_at ?? '');
      assert.equal(s.api.value, hb.salesforce.api_max ? `${hb.salesforce.api_used}/${hb.salesforce.api_max}` : '');
      assert.equal(s.api.text, hb.salesforce.api_max ? `${Math.floor((hb.salesforce.api_used / hb.salesforce.api_max) * 100)}%` : '—');
      const switchovers = h.incidents.filter((i) => i.kind === 'switchover').reduce((a, i) => a + i.count, 0);
      assert.equal(s.switchovers.value, String(switchovers));
      assert.equal(s.relogins.value, String(hb.salesforce.relogins));
      assert.equal(s.alerts.value, String((hb.reasons || []).length));
      assert.equal(s.service.value, hb.version);
      assert.match(s.routed_today.sub + s.failed_today.sub, /since/);
      const events = await page.$$eval('#detail-events li', (li) => li.length);
      assert.equal(events, h.incidents.length + h.transitions.length);
    },
    { timeout: 10000 },
  );
  const note = await page.$eval('#history-note', (n) => n.textContent);
  assert.match(note, /History starts at process start/);
});

test('a service without /history still shows its heartbeat and its alerts', async (c) => {
  if (!targets.capabilities.history404) return c.skip('the targets all serve /history');
  const t = await tenant('No History', { story: true, startedMinutesAgo: 300 });
  t.historyStatus = 404;
  const page = await open([t]);
  await waitForState(page, 'No History', 'up');
  await openDetail(page, 'No History');
  await page.waitForFunction(() => /does not serve \/history/.test(document.getElementById('history-note').textContent), { timeout: 5000 });
  await page.waitForSelector('#detail-events li[data-kind="switchover"]', { timeout: 5000 });
});

test('changing the poll interval while a request is out neither stalls polling nor shows a false alarm', async (c) => {
  if (!targets.capabilities.slow) return c.skip('the targets cannot slow a tenant down');
  const t = await tenant('Interval Co');
  await t.healthy();
  const page = await open([t]);
  await waitForState(page, 'Interval Co', 'up');
  await t.slow(800);
  await page.waitForFunction(() => document.querySelector('#tenant-rows tr').dataset.attempts > 1, { timeout: 5000 });
  const states = [];
  await page.exposeFunction('noteState', (s) => states.push(s));
  await page.evaluate(() => {
    const tr = document.querySelector('#tenant-rows tr');
    new MutationObserver(() => window.noteState(tr.dataset.state)).observe(tr, { attributes: true, attributeFilter: ['data-state'] });
  });
  await page.select('#poll', '2');
  await page.select('#poll', '1');
  const before = (await row(page, 'Interval Co')).attempts;
  await t.slow(0);
  await page.waitForFunction((n) => Number(document.querySelector('#tenant-rows tr').dataset.attempts) >= n + 3, { timeout: 10000 }, before);
  assert.equal((await row(page, 'Interval Co')).state, 'up');
  assert.ok(!states.includes('down'), `states seen: ${states.join(',')}`);
});
