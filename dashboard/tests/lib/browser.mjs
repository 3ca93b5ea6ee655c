// Headless Chromium (the system's, /usr/bin/chromium) through puppeteer-core, and helpers that
// read the dashboard the way an operator would: by the row of a tenant, its state and message.
// Every wait has a deadline; nothing sleeps and hopes.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const dashboardDir = path.resolve(here, '../..');
export const SCREENSHOTS = process.env.SORS_DASHBOARD_SCREENSHOTS || path.resolve(dashboardDir, '../target/dashboard-screenshots');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sors-dashboard-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--disable-extensions',
      '--no-default-browser-check',
      '--font-render-hinting=none',
    ],
  });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return browser;
}

/**
 * Opens the dashboard at `url` with `config` (our JSON format) already in its storage.
 * Returns the page; `page.cspViolations` collects Content-Security-Policy violations and
 * `page.errors` uncaught page errors.
 */
export async function openDashboard(browser, url, { config, width = 1280, height = 800, colorScheme = 'dark', downloadPath } = {}) {
  const context = await browser.createBrowserContext(downloadPath ? { downloadBehavior: { policy: 'allow', downloadPath } } : {});
  const page = await context.newPage();
  page.cspViolations = [];
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) page.cspViolations.push(m.text());
  });
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`Content Security Policy violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  await page.setViewport({ width, height });
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: colorScheme }]);
  await page.goto(url, { waitUntil: 'load' });
  await page.evaluate((text) => {
    localStorage.clear();
    if (text) localStorage.setItem('sors-dashboard.config.v1', text);
  }, config ? JSON.stringify(config) : null);
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('html[data-ready="true"]', { timeout: 10000 });
  page.closeAll = () => context.close();
  return page;
}

export function config(tenants, pollSeconds = 1) {
  return {
    sors_dashboard: 1,
    poll_seconds: pollSeconds,
    tenants: tenants.map((t) => ({ name: t.name, address: t.address, port: t.port })),
  };
}

/** The row of tenant `name`: {state, message, meta, attempts, failures, nextDelay} or null. */
export function row(page, name) {
  return page.evaluate((name) => {
    const tr = [...document.querySelectorAll('#tenant-rows tr')].find((r) => r.dataset.tenant === name);
    if (!tr) return null;
    return {
      state: tr.dataset.state,
      message: tr.querySelector('.msg')?.textContent ?? '',
      meta: tr.querySelector('.status-meta')?.textContent ?? '',
      attempts: Number(tr.dataset.attempts || 0),
      failures: Number(tr.dataset.failures || 0),
      nextDelay: Number(tr.dataset.nextDelay || 0),
      index: [...tr.parentNode.children].indexOf(tr),
    };
  }, name);
}

export function tenantNames(page) {
  return page.$$eval('#tenant-rows tr', (rs) => rs.map((r) => r.dataset.tenant));
}

/** Waits until tenant `name`'s row is in `state` (and its message matches `message`, if given). */
export async function waitForState(page, name, state, { message, timeout = 10000 } = {}) {
  try {
    await page.waitForFunction(
      (name, state, source, flags) => {
        const tr = [...document.querySelectorAll('#tenant-rows tr')].find((r) => r.dataset.tenant === name);
        if (!tr || tr.dataset.state !== state) return false;
        return !source || new RegExp(source, flags).test(tr.querySelector('.msg')?.textContent ?? '');
      },
      { timeout, polling: 100 },
      name,
      state,
      message ? message.source : null,
      message ? message.flags : '',
    );
  } catch (e) {
    const r = await row(page, name);
    throw new Error(`${name} did not turn ${state}${message ? ` with ${message}` : ''} within ${timeout} ms; it is ${JSON.stringify(r)} (${e.message})`);
  }
  return row(page, name);
}

/** Retries `check` (which throws while not yet true) until it passes or `timeout` ms pass. */
export async function eventually(check, { timeout = 10000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

export async function screenshot(page, name, opts = {}) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, ...opts });
  return file;
}

export async function openDetail(page, name) {
  const r = await page.evaluateHandle((name) => [...document.querySelectorAll('#tenant-rows tr')].find((t) => t.dataset.tenant === name), name);
  const button = await r.asElement().$('td.actions button[aria-controls="detail"]');
  if ((await button.evaluate((b) => b.getAttribute('aria-expanded'))) !== 'true') await button.click();
  await page.waitForFunction((name) => !document.getElementById('detail').hidden && document.getElementById('detail').dataset.tenant === name, { timeout: 5000 }, name);
}

/** The detail panel's numbers: {stat: {value (data-value), text}}. */
export function detailStats(page) {
  return page.evaluate(() => {
    const out = {};
    for (const s of document.querySelectorAll('#detail-stats .stat')) {
      out[s.dataset.stat] = { value: s.dataset.value, text: s.querySelector('.v').textContent, sub: s.querySelector('.sub')?.textContent ?? '' };
    }
    out.dayStart = Number(document.getElementById('detail-stats').dataset.dayStart);
    return out;
  });
}

export async function getJson(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}
