// WCAG AA contrast of the page's colours, computed from dashboard.css's custom properties for
// both themes: 4.5:1 for text, 3:1 for state marks, bars, field borders and the focus ring.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { dashboardDir } from './lib/browser.mjs';

const css = fs.readFileSync(path.join(dashboardDir, 'dashboard.css'), 'utf8');

function vars(block) {
  const out = {};
  for (const m of block.matchAll(/--([a-z0-9-]+):\s*(#[0-9a-f]{6})\s*;/gi)) out[m[1]] = m[2];
  return out;
}

const dark = vars(css.slice(css.indexOf(':root {'), css.indexOf('}', css.indexOf(':root {'))));
const lightStart = css.indexOf('@media (prefers-color-scheme: light)');
const light = { ...dark, ...vars(css.slice(lightStart, css.indexOf('}\n}', lightStart))) };

function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

export function ratio(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

// [foreground, backgrounds, minimum]
const TEXT = 4.5;
const MARK = 3;
const pairs = [
  ['text', ['bg', 'panel', 'raised', 'up-bg', 'degraded-bg', 'down-bg'], TEXT],
  ['muted', ['bg', 'panel', 'raised', 'up-bg', 'degraded-bg', 'down-bg'], TEXT],
  ['up', ['panel', 'raised', 'up-bg'], TEXT],
  ['degraded', ['panel', 'raised', 'degraded-bg'], TEXT],
  ['down', ['panel', 'raised', 'down-bg'], TEXT],
  ['unknown', ['panel', 'raised'], TEXT],
  ['accent', ['panel', 'raised'], TEXT],
  ['accent-text', ['accent'], TEXT],
  ['chart-routed', ['panel'], MARK],
  ['chart-failed', ['panel'], MARK],
  ['field-border', ['panel', 'raised'], MARK],
  ['focus', ['bg', 'panel', 'raised', 'degraded-bg', 'down-bg'], MARK],
];

for (const [theme, v] of [
  ['dark', dark],
  ['light', light],
]) {
  test(`${theme} theme: every text and mark colour meets WCAG AA`, () => {
    const report = [];
    const fails = [];
    for (const [fg, bgs, min] of pairs) {
      for (const bg of bgs) {
        assert.ok(v[fg] && v[bg], `--${fg} and --${bg} are defined in the ${theme} theme`);
        const r = ratio(v[fg], v[bg]);
        report.push(`${fg} on ${bg}: ${r.toFixed(2)}`);
        if (r < min) fails.push(`--${fg} ${v[fg]} on --${bg} ${v[bg]}: ${r.toFixed(2)} < ${min}`);
      }
    }
    assert.deepEqual(fails, [], report.join('\n'));
  });
}

test('the ratio formula matches known values', () => {
  assert.equal(ratio('#000000', '#ffffff').toFixed(2), '21.00');
  assert.equal(ratio('#777777', '#ffffff').toFixed(2), '4.48');
});
