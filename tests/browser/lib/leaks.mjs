// The leak check: every secret of the run, in the forms a careless program might write it
// (plain, HTML-escaped, URL-encoded, JSON-escaped, base64 at any alignment, and its random
// core alone), searched in every file the run wrote.

import fs from 'node:fs';
import path from 'node:path';

const html = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
const htmlHex = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&#34;').replace(/'/g, '&#x27;');
const form = (s) => encodeURIComponent(s).replace(/%20/g, '+');
const json = (s) => JSON.stringify(s).slice(1, -1);

/**
 * The base64 texts that appear inside the base64 of any text containing `s`, whatever its
 * offset: for each of the three alignments, the characters that depend on `s` alone.
 */
function base64Needles(s) {
  const bytes = Buffer.from(s, 'utf8');
  const out = [];
  for (let pad = 0; pad < 3; pad++) {
    const b = Buffer.concat([Buffer.alloc(pad, 0), bytes]);
    const enc = b.toString('base64').replace(/=+$/, '');
    // Skip the characters touched by the padding in front, and the last (partial) group.
    const start = pad === 0 ? 0 : pad === 1 ? 2 : 3;
    const end = b.length % 3 === 0 ? enc.length : enc.length - (b.length % 3 === 1 ? 2 : 3);
    const mid = enc.slice(start, Math.max(start, end));
    if (mid.length >= 8) {
      out.push(mid);
      out.push(mid.replace(/\+/g, '-').replace(/\//g, '_'));
    }
  }
  return [...new Set(out)];
}

/**
 * Needles for `secrets` ({label: value}); `core` ({label: text}) adds a random part of a
 * secret to search for alone.
 */
export function needles(secrets, core = {}) {
  const out = [];
  const add = (label, how, text) => {
    if (text && text.length >= 6 && !out.some((n) => n.text === text && n.label === label)) out.push({ label, how, text });
  };
  for (const [label, value] of Object.entries(secrets)) {
    if (!value) continue;
    add(label, 'plain', value);
    add(label, 'html', html(value));
    add(label, 'html', htmlHex(value));
    add(label, 'url', encodeURIComponent(value));
    add(label, 'form', form(value));
    add(label, 'json', json(value));
    for (const b of base64Needles(value)) add(label, 'base64', b);
  }
  for (const [label, text] of Object.entries(core)) {
    add(label, 'random core', text);
    add(label, 'random core', text.toLowerCase());
    add(label, 'random core', text.toUpperCase());
  }
  return out;
}

/** Every file under `dir` (recursively). */
export function filesUnder(dir) {
  if (!fs.existsSync(dir)) return [];
  const st = fs.statSync(dir);
  if (st.isFile()) return [dir];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}

/**
 * Searches `files` for `needles`; `allowed(file, needle)` may excuse a hit (the setup token is
 * printed on the console and in the log by design). Returns the hits.
 */
export function scan(files, list, allowed = () => false) {
  const hits = [];
  for (const file of files) {
    const content = fs.readFileSync(file);
    const texts = [content.toString('utf8'), content.toString('latin1')];
    for (const n of list) {
      if (allowed(file, n)) continue;
      for (const t of texts) {
        const at = t.indexOf(n.text);
        if (at >= 0) {
          const line = t.slice(0, at).split('\n').length;
          hits.push({ file, line, label: n.label, how: n.how });
          break;
        }
      }
    }
  }
  return hits;
}
