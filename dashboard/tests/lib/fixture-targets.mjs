// The default targets: fixture tenants (lib/fixture.mjs) and the dashboard served from this
// directory. Another targets module (live sors services and fakes) exports the same names and is
// chosen with SORS_DASHBOARD_TARGETS=path/to/module.mjs; see tests/README.md.

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FixtureTenant, serveDashboard } from './fixture.mjs';

const dashboardDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const kind = 'fixture';

/** What these targets can do beyond the common steps. */
export const capabilities = { slow: true, withoutReasons: true, history404: true };

/** The text the amber state shows once the sweep has found rows no push announced. */
export const pushLossPattern = /push notifications appear lost/i;

/**
 * A running tenant. The object has `name`, `address`, `port`, `heartbeatUrl`, `historyUrl` and
 * the steps `healthy()`, `stop()`, `start()`, `dropPushes()`, `switchover()`, `traffic()`,
 * `close()` (and, with capabilities.slow, `slow(ms)`), each resolving once the change is made.
 */
export async function createTenant(name, opts = {}) {
  const t = new FixtureTenant(name, opts);
  await t.start();
  return t;
}

/** Where the page is: as a file, and served over HTTP with the service's CSP. */
export async function dashboardPages() {
  const served = await serveDashboard(dashboardDir);
  return {
    file: pathToFileURL(path.join(dashboardDir, 'index.html')).href,
    http: served.url,
    close: served.close,
  };
}
