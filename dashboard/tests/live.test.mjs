// Checks only live targets can make (lib/live-targets.mjs: real sors services, each with its own
// fake Salesforce and fake CIC pair): the page as the service serves it, a killed and restarted
// service, pushes the fake Salesforce drops, a CIC switchover, and the detail numbers against
// /heartbeat and /history fetched at the same moment. Skipped with other targets.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openDashboard, config, row, waitForState, openDetail, detailStats, eventually, getJson } from './lib/browser.mjs';
import { loadTargets } from './lib/targets.mjs';

const MSG_DOWN = 'Salesforce Object Routing Server Down';
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

let targets;
let live = false;
let browser;
let pages;
const cleanup = [];

before(async () => {
  targets = await loadTargets();
  live = targets.kind === 'live';
  if (!live) return;
  browser = await launch();
  pages = await targets.dashboardPages();
});

after(async () => {
  for (const c of cleanup.reverse()) await c();
  await browser?.close();
  await pages?.close();
});

function skipUnlessLive(c) {
  if (!live) c.skip('needs live targets (SORS_DASHBOARD_TARGETS=tests/lib/live-targets.mjs)');
  return !live;
}

async function tenant(name) {
  const t = await targets.createTenant(name);
  cleanup.push(() => t.close());
  await t.healthy();
  return t;
}

async function open(tenants, url = pages.file) {
  const page = await openDashboard(browser, url, { config: config(tenants, 1) });
  cleanup.push(() => page.closeAll());
  return page;
}

const base = (t) => `http://${t.address}:${t.port}`;

test('every service serves the page at /dashboard/ with its policy, and /history with CORS', async (c) => {
  if (skipUnlessLive(c)) return;
  const a = await tenant('Served A');
  const b = await tenant('Served B');
  for (const t of [a, b]) {
    const redirect = await fetch(`${base(t)}/dashboard`, { redirect: 'manual' });
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get('location'), '/dashboard/');
    for (const [file, type] of [
      ['', 'text/html; charset=utf-8'],
      ['dashboard.js', 'text/javascript; charset=utf-8'],
      ['dashboard.css', 'text/css; charset=utf-8'],
      ['favicon.svg', 'image/svg+xml'],
    ]) {
      const r = await fetch(`${base(t)}/dashboard/${file}`);
      assert.equal(r.status, 200, file);
      assert.equal(r.headers.get('content-type'), type, file);
      assert.equal(r.headers.get('content-security-policy'), CSP, file);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', file);
    }
    assert.equal((await fetch(`${base(t)}/dashboard/package.json`)).status, 404);
    for (const doc of ['heartbeat', 'history']) {
      const r = await fetch(`${base(t)}/${doc}`, { headers: { Origin: 'http://127.0.0.1:1' } });
      assert.equal(r.headers.get('access-control-allow-origin'), '*', doc);
    }
  }
  // The page B serves watches A (another origin) and B; its /history reads work cross-origin.
  const page = await open([a, b], b.dashboardUrl);
  await waitForState(page, 'Served A', 'up');
  await waitForState(page, 'Served B', 'up');
  await openDetail(page, 'Served A');
  await page.waitForFunction(() => /History starts at process start: this service started/.test(document.getElementById('history-note').textContent), { timeout: 10000 });
  assert.deepEqual(page.cspViolations, []);
  assert.deepEqual(page.errors, []);
});

test('a killed service turns red within two polls; restarted, its history starts again', async (c) => {
  if (skipUnlessLive(c)) return;
  const t = await tenant('Crashing Co');
  const page = await open([t]);
  await waitForState(page, 'Crashing Co', 'up');
  const first = await getJson(t.historyUrl);
  await t.kill();
  const atKill = (await row(page, 'Crashing Co')).attempts;
  const red = await waitForState(page, 'Crashing Co', 'down', { timeout: 10000 });
  assert.ok(red.attempts <= atKill + 2, `red after ${red.attempts - atKill} polls`);
  assert.equal(red.message, MSG_DOWN);
  assert.match(red.meta, /Cannot connect/);
  await t.start();
  await openDetail(page, 'Crashing Co');
  await page.click('#retry');
  await waitForState(page, 'Crashing Co', 'up', { timeout: 15000 });
  const again = await getJson(t.historyUrl);
  assert.ok(Date.parse(again.started_at) > Date.parse(first.started_at), 'a new process, a new history');
  assert.equal(again.transitions[0].reason, 'salesforce_logged_out', 'it starts from scratch');
  const item = await page.waitForSelector('#detail-events li[data-kind="page_restarted"]', { timeout: 10000 });
  assert.match(await item.evaluate((li) => li.textContent), /restarted/);
});

test("dropped pushes: amber with the service's own message once the sweep has found the rows, green when pushes flow again", async (c) => {
  if (skipUnlessLive(c)) return;
  const t = await tenant('Dropping Ltd');
  const page = await open([t]);
  await waitForState(page, 'Dropping Ltd', 'up');
  const before = await getJson(t.heartbeatUrl);
  await t.dropPushes();
  const amber = await waitForState(page, 'Dropping Ltd', 'degraded', { message: targets.pushLossPattern, timeout: targets.timeouts.pushLoss });
  const hb = await getJson(t.heartbeatUrl);
  assert.ok(hb.routing.push_lost_rows > before.routing.push_lost_rows, 'the sweep found rows no push announced');
  assert.ok(hb.routing.sweeps > before.routing.sweeps);
  assert.equal(hb.salesforce.pushes, before.salesforce.pushes, 'no push arrived');
  assert.equal(hb.reasons[0].kind, 'push_loss_suspected');
  assert.match(amber.message, /^Push notifications appear lost: the sweep found \d+ row\(s\) no push announced/);
  const h = await getJson(t.historyUrl);
  assert.ok(h.transitions.some((x) => x.status === 'degraded' && x.reason === 'push_loss_suspected'));
  assert.ok(h.incidents.some((i) => i.kind === 'push_lost'));
  await openDetail(page, 'Dropping Ltd');
  await page.waitForSelector('#detail-events li[data-kind="push_lost"]', { timeout: 10000 });
  await t.healthy();
  await waitForState(page, 'Dropping Ltd', 'up', { timeout: 10000 });
  // The sweep routed every row the pushes did not announce.
  await eventually(async () => assert.deepEqual(Object.keys(await t.rows()), ['Processed']), { timeout: 15000 });
});

test('a switchover that loses the interactions: the lost session, the switchover and its re-routing in the timeline, counted once', async (c) => {
  if (skipUnlessLive(c)) return;
  const t = await tenant('Switching NV');
  await t.traffic(2);
  const page = await open([t]);
  await waitForState(page, 'Switching NV', 'up');
  await openDetail(page, 'Switching NV');
  assert.equal((await detailStats(page)).switchovers.value, '0');
  await t.switchover({ loseInteractions: true });
  // The reconciliation that follows is added to the same switchover, not counted as another.
  await page.waitForFunction(
    () => [...document.querySelectorAll('#detail-events li[data-kind="switchover"]')].some((li) => /CIC session re-established on http:\/\/127\.0\.0\.1:\d+; CIC switchover: 2 interaction\(s\) lost, 2 being re-routed/.test(li.textContent)),
    { timeout: targets.timeouts.switchover, polling: 100 },
  );
  assert.equal(await page.$$eval('#detail-events li[data-kind="switchover"]', (li) => li.length), 1);
  await page.waitForSelector('#detail-events li[data-kind="cic_lost"]', { timeout: 5000 });
  await page.waitForSelector('#detail-bar .mark[data-kind="switchover"]', { timeout: 5000 });
  await waitForState(page, 'Switching NV', 'up', { timeout: targets.timeouts.switchover });
  await eventually(async () => {
    const s = await detailStats(page);
    assert.equal(s.switchovers.value, '1');
    assert.match(s.switchovers.sub, /\(backup\)/);
  });
  const hb = await getJson(t.heartbeatUrl);
  assert.equal(hb.cic.backup, true);
  assert.equal(hb.cic.sessions, 2);
  assert.equal(hb.alerts.filter((a) => a.kind === 'switchover').length, 2, 'the heartbeat alerts twice');
  // The lost interactions are routed again on the backup.
  await eventually(async () => assert.ok((await getJson(t.heartbeatUrl)).routing.routed >= 4), { timeout: 15000 });
});

test('the detail numbers equal /heartbeat and /history fetched at the same moment', async (c) => {
  if (skipUnlessLive(c)) return;
  const t = await tenant('Counting AG');
  await t.traffic(5);
  const page = await open([t]);
  await waitForState(page, 'Counting AG', 'up');
  await openDetail(page, 'Counting AG');
  await t.traffic(3);
  await eventually(
    async () => {
      const [hb, h, s] = await Promise.all([getJson(t.heartbeatUrl), getJson(t.historyUrl), detailStats(page)]);
      const start = Date.parse(h.minutes.start);
      const mins = h.minutes.routed.map((r, i) => ({ t: start + i * 60000, r, f: h.minutes.failed[i], p50: h.minutes.p50_ms[i], p95: h.minutes.p95_ms[i] }));
      const today = mins.filter((m) => m.t >= s.dayStart);
      const routedToday = today.reduce((a, m) => a + m.r, 0);
      // Everything this service routed is in its history, minute by minute.
      assert.equal(mins.reduce((a, m) => a + m.r, 0), hb.routing.routed);
      assert.equal(hb.routing.routed, 8);
      assert.equal(s.routed_today.value, String(routedToday));
      assert.equal(s.failed_today.value, String(today.reduce((a, m) => a + m.f, 0)));
      if (/since start/.test(s.routed_today.sub)) assert.match(s.routed_today.sub, new RegExp(`${hb.routing.routed} since start`));
      else assert.equal(routedToday, hb.routing.routed);
      const last = [...mins].reverse().find((m) => m.p50 !== null);
      assert.ok(last, 'routed rows have a time to route');
      assert.equal(s.ttr.value, `${last.p50}/${last.p95}`);
      assert.ok(last.p50 <= last.p95);
      assert.equal(s.backlog.value, String(hb.routing.router.waiting_rows));
      assert.equal(s.in_flight.value, String(hb.routing.router.in_flight));
      assert.equal(s.last_push.value, hb.salesforce.last_push_at ?? '');
      assert.equal(s.api.value, `${hb.salesforce.api_used}/${hb.salesforce.api_max}`);
      assert.equal(s.relogins.value, String(hb.salesforce.relogins));
      assert.equal(s.switchovers.value, String(h.incidents.filter((i) => i.kind === 'switchover').reduce((a, i) => a + i.count, 0)));
      assert.equal(s.alerts.value, String(hb.reasons.length));
      assert.equal(s.service.value, hb.version);
      assert.equal(h.started_at, hb.started_at, 'one process, one start');
      const events = await page.$$eval('#detail-events li', (li) => li.length);
      assert.equal(events, h.incidents.length + h.transitions.length);
    },
    { timeout: 15000 },
  );
});
