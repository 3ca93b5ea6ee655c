// Screenshots of a realistic mix of tenants (green, amber, red) at 1280×800 and at a narrow
// width, in both themes, into target/dashboard-screenshots/ (outside the repository's tracked
// files). They are for people to look at; the test itself checks only that nothing overflows
// sideways and that the page raised no error.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openDashboard, config, waitForState, openDetail, screenshot, SCREENSHOTS } from './lib/browser.mjs';
import { loadTargets } from './lib/targets.mjs';

let targets;
let browser;
let pages;
const tenants = [];

before(async () => {
  targets = await loadTargets();
  browser = await launch();
  pages = await targets.dashboardPages();
  const make = async (name, opts) => {
    const t = await targets.createTenant(name, opts);
    tenants.push(t);
    return t;
  };
  const genesys = await make('Genesys', { story: true, startedMinutesAgo: 20 * 60, seed: 3 });
  const microsoft = await make('Microsoft', { startedMinutesAgo: 45, seed: 9 });
  await make('Initech', { startedMinutesAgo: 300, seed: 5 });
  const globex = await make('Globex Corporation', { startedMinutesAgo: 600, seed: 13, traffic: 2 });
  const umbrella = await make('Umbrella', { startedMinutesAgo: 180, seed: 21, traffic: 10 });
  await genesys.healthy();
  await microsoft.dropPushes();
  if (targets.kind === 'fixture') {
    globex.s.sf.api_used = 96250;
    globex.s.sf.api_max = 100000;
  } else {
    // Live services remember only what happened since they started: some traffic, and a
    // switchover for Genesys's incident timeline.
    await genesys.traffic(4);
    await genesys.switchover();
    await genesys.healthy();
    await genesys.traffic(3);
    await umbrella.traffic(6);
    await globex.traffic(2);
  }
});

/** Globex is amber for its API allowance in the fixture; a live fake's allowance is ample. */
const GLOBEX = () => (targets.kind === 'fixture' ? 'degraded' : 'up');

after(async () => {
  for (const t of tenants) await t.close();
  await browser?.close();
  await pages?.close();
});

async function scene(opts) {
  const page = await openDashboard(browser, pages.http, { config: config(tenants, 1), ...opts });
  const expected = { Genesys: 'up', Microsoft: 'degraded', Initech: 'down', 'Globex Corporation': GLOBEX(), Umbrella: 'up' };
  for (const t of tenants) await waitForState(page, t.name, expected[t.name], { timeout: 15000 });
  return page;
}

async function noSidewaysScroll(page) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= inner, `the page is ${scroll}px wide in a ${inner}px window`);
}

test('screenshots at 1280×800 and 400 wide, dark and light', async (t) => {
  // Initech was up, then its service stopped.
  const initech = tenants[2];
  {
    const page = await openDashboard(browser, pages.http, { config: config([initech], 1) });
    await waitForState(page, 'Initech', 'up');
    await initech.stop();
    await waitForState(page, 'Initech', 'down');
    await page.closeAll();
  }
  for (const colorScheme of ['dark', 'light']) {
    const page = await scene({ colorScheme });
    await page.select('#sort', 'severity');
    await page.waitForFunction(() => document.querySelector('#tenant-rows tr').dataset.state === 'down', { timeout: 5000 });
    await noSidewaysScroll(page);
    await screenshot(page, `overview-1280x800-${colorScheme}`);
    await openDetail(page, 'Genesys');
    await page.waitForSelector('#detail-events li[data-kind="switchover"]', { timeout: 10000 });
    await page.evaluate(() => document.getElementById('detail').scrollIntoView());
    await screenshot(page, `detail-1280x800-${colorScheme}`);
    await screenshot(page, `full-1280-${colorScheme}`, { fullPage: true });
    // One minute's numbers under the pointer, and from the keyboard.
    const box = await (await page.$('#detail-chart')).boundingBox();
    // A live service's history is minutes old: point at its newest minute.
    const at = targets.kind === 'fixture' ? 0.7 : 0.995;
    await page.mouse.move(box.x + box.width * at, box.y + box.height / 2);
    await page.waitForFunction(() => /: \d+ routed, \d+ failed, backlog/.test(document.getElementById('chart-readout').textContent), { timeout: 5000 });
    await page.mouse.move(0, 0);
    await page.focus('#detail-chart');
    await page.keyboard.press('End');
    await page.keyboard.down('Shift');
    for (let i = 0; i < (targets.kind === 'fixture' ? 33 : 0); i++) await page.keyboard.press('ArrowLeft');
    await page.keyboard.up('Shift');
    const readout = await page.$eval('#chart-readout', (r) => r.textContent);
    assert.match(readout, /: \d+ routed, \d+ failed, backlog/);
    const scrollY = await page.evaluate(() => window.scrollY);
    await screenshot(page, `chart-cursor-${colorScheme}`, { clip: { x: box.x - 20, y: box.y + scrollY - 60, width: box.width + 40, height: box.height + 110 } });
    if (colorScheme === 'dark') {
      await page.setViewport({ width: 400, height: 860 });
      await noSidewaysScroll(page);
      await page.evaluate(() => window.scrollTo(0, 0));
      await screenshot(page, 'narrow-400-top');
      await page.evaluate(() => document.getElementById('tenants-h').scrollIntoView());
      await screenshot(page, 'narrow-400-tenants');
      await page.evaluate(() => document.getElementById('detail').scrollIntoView());
      await screenshot(page, 'narrow-400-detail');
      await screenshot(page, 'narrow-400-full', { fullPage: true });
    }
    assert.deepEqual(page.errors, []);
    assert.deepEqual(page.cspViolations, []);
    await page.closeAll();
  }
  t.diagnostic(`screenshots in ${SCREENSHOTS}`);
});
