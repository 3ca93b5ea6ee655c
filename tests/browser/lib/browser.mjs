// Headless Chromium (the system's, /usr/bin/chromium) through puppeteer-core, as in the
// dashboard's tests: the same flags, a fresh profile each run. Every response of the service
// the browser or the test sees is recorded (for the leak check); every wait has a deadline.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sors-admin-chromium-'));
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

/** Bodies of every response the run saw, kept to be written out and searched. */
export class Recorder {
  constructor() {
    this.bodies = [];
    this.pending = new Set();
  }

  add(method, url, status, body) {
    this.bodies.push({ method, url, status, body: Buffer.isBuffer(body) ? body : Buffer.from(String(body)) });
  }

  /** Records the responses `page` receives from `origin`. */
  watch(page, origin) {
    page.on('response', (r) => {
      if (!r.url().startsWith(origin)) return;
      const p = (async () => {
        let body = Buffer.alloc(0);
        try {
          // Redirects have no body to read; everything else does.
          if (r.status() < 300 || r.status() >= 400) body = await r.buffer();
        } catch {
          // The page navigated on before the body could be read.
        }
        this.add(r.request().method(), r.url(), r.status(), body);
      })();
      this.pending.add(p);
      p.finally(() => this.pending.delete(p));
    });
  }

  /** fetch(), recorded. */
  async fetch(url, opts = {}) {
    const r = await fetch(url, { cache: 'no-store', redirect: 'manual', signal: AbortSignal.timeout(10000), ...opts });
    const body = Buffer.from(await r.arrayBuffer());
    this.add(opts.method || 'GET', url, r.status, body);
    r.bodyText = body.toString('utf8');
    return r;
  }

  async json(url, opts = {}) {
    const r = await this.fetch(url, opts);
    if (r.status >= 400) throw new Error(`${opts.method || 'GET'} ${url}: HTTP ${r.status}: ${r.bodyText.slice(0, 300)}`);
    return JSON.parse(r.bodyText);
  }

  /** Writes every body to `dir` (one file each) and returns the files. */
  async writeTo(dir) {
    await Promise.allSettled([...this.pending]);
    fs.mkdirSync(dir, { recursive: true });
    return this.bodies.map((b, i) => {
      const u = new URL(b.url);
      const name = `${String(i).padStart(3, '0')}-${b.method}-${b.status}-${(u.host + u.pathname).replace(/[^A-Za-z0-9.-]+/g, '_')}.body`;
      const file = path.join(dir, name);
      fs.writeFileSync(file, b.body);
      return file;
    });
  }
}

/** Retries `check` (which throws while not yet true) until it passes or `timeout` ms pass. */
export async function eventually(what, check, { timeout = 20000, interval = 150 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms: ${last?.message ?? last}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}
