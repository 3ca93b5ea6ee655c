// Chooses the targets the tests drive: fixture tenants by default, or the module named by
// SORS_DASHBOARD_TARGETS (resolved from the current directory) exporting the same interface as
// fixture-targets.mjs.

import path from 'node:path';
import { pathToFileURL } from 'node:url';

export async function loadTargets() {
  const chosen = process.env.SORS_DASHBOARD_TARGETS;
  if (chosen) return import(pathToFileURL(path.resolve(chosen)).href);
  return import('./fixture-targets.mjs');
}
