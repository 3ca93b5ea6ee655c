// Reads and checks salesforce/rules/trigger-rules.toml (the trigger rules as test cases).
// The same checks are made on the Rust side by fakes/salesforce/tests/trigger_rules.rs
// (rules_file_is_well_formed), so both implementations read the file the same way.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'smol-toml';

export const SALESFORCE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const RULES_FILE = join(SALESFORCE_DIR, 'rules', 'trigger-rules.toml');

export const ACTORS = ['admin', 'agent'];
export const STATUSES = ['New', 'Closed'];

const CASE_FIELDS = ['owner', 'status', 'subject', 'supplied_email', 'supplied_name', 'skills'];
const STEP_KEYS = {
  insert_case: ['case', ...CASE_FIELDS],
  update_case: ['case', ...CASE_FIELDS],
  delete_case: ['case'],
  insert_comment: ['case'],
  insert_email: ['case', 'incoming'],
  insert_mapping: ['mapping', 'queue_name', 'workgroup', 'queue_id', 'mapping_queue'],
  update_mapping: ['mapping', 'queue_name', 'workgroup', 'mapping_queue'],
  delete_mapping: ['mapping'],
};
const REQUIRED = {
  insert_case: ['case'],
  update_case: ['case'],
  delete_case: ['case'],
  insert_comment: ['case'],
  insert_email: ['case', 'incoming'],
  insert_mapping: ['mapping', 'queue_name', 'workgroup'],
  update_mapping: ['mapping'],
  delete_mapping: ['mapping'],
};
const EXPECTATION_KEYS = ['do', 'as', 'rows', 'error', 'error_field'];
const TOP_KEYS = ['schema', 'queue', 'group', 'case'];

/** The rules file, parsed and checked; throws with every problem found. */
export function loadRules(path = RULES_FILE) {
  const text = readFileSync(path, 'utf8');
  let rules;
  try {
    rules = parse(text);
  } catch (e) {
    throw new Error(`${path}: ${e.message}`);
  }
  const problems = checkRules(rules);
  if (problems.length > 0) {
    throw new Error(`${path}:\n  ${problems.join('\n  ')}`);
  }
  return rules;
}

function isString(v) {
  return typeof v === 'string';
}

export function checkRules(r) {
  const bad = [];
  for (const k of Object.keys(r)) {
    if (!TOP_KEYS.includes(k)) bad.push(`unknown key ${k}`);
  }
  if (r.schema !== 1) bad.push(`schema ${r.schema} (this script reads schema 1)`);
  const queues = new Set();
  for (const q of r.queue ?? []) {
    for (const k of Object.keys(q)) if (!['key', 'name', 'workgroup'].includes(k)) bad.push(`queue: unknown key ${k}`);
    if (!isString(q.key) || !isString(q.name)) bad.push(`queue needs key and name: ${JSON.stringify(q)}`);
    queues.add(q.key);
  }
  for (const g of r.group ?? []) {
    for (const k of Object.keys(g)) if (!['key', 'name'].includes(k)) bad.push(`group: unknown key ${k}`);
  }
  const ids = new Set();
  for (const c of r.case ?? []) {
    for (const k of Object.keys(c)) if (!['id', 'rule', 'title', 'step'].includes(k)) bad.push(`case ${c.id}: unknown key ${k}`);
    if (!/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(c.id ?? '') || c.id.length > 100) {
      bad.push(`case id ${JSON.stringify(c.id)} is not snake_case (≤ 100 chars)`);
    }
    if (ids.has(c.id)) bad.push(`case id ${c.id} is used twice`);
    ids.add(c.id);
    if (!isString(c.rule)) bad.push(`case ${c.id}: rule must be a string`);
    if (!isString(c.title) || c.title.trim() === '') bad.push(`case ${c.id} has no title`);
    if (!Array.isArray(c.step) || c.step.length === 0) {
      bad.push(`case ${c.id} has no step`);
      continue;
    }
    const cases = new Set();
    const mappings = new Set();
    c.step.forEach((s, i) => {
      const at = (msg) => bad.push(`case ${c.id} step ${i + 1}: ${msg}`);
      const allowed = STEP_KEYS[s.do];
      if (!allowed) {
        at(`unknown or missing do ${JSON.stringify(s.do)}`);
        return;
      }
      for (const k of Object.keys(s)) {
        if (!allowed.includes(k) && !EXPECTATION_KEYS.includes(k)) at(`\`${k}\` does not belong to ${s.do}`);
      }
      for (const k of REQUIRED[s.do]) if (s[k] === undefined) at(`${s.do} needs \`${k}\``);
      if (s.as !== undefined && !ACTORS.includes(s.as)) at(`unknown user ${JSON.stringify(s.as)}`);
      if ((s.rows === undefined) === (s.error === undefined)) at('says both or neither of `rows` and `error`');
      if (s.error_field !== undefined && s.error === undefined) at('`error_field` without `error`');
      if (s.do === 'update_case' && !CASE_FIELDS.some((f) => s[f] !== undefined)) at('update_case changes nothing');
      if (s.status !== undefined && !STATUSES.includes(s.status)) at(`status ${s.status} is not one of ${STATUSES}`);
      if (s.incoming !== undefined && typeof s.incoming !== 'boolean') at('incoming must be true or false');
      for (const k of ['case', 'mapping', 'owner', 'status', 'subject', 'supplied_email', 'supplied_name', 'skills', 'queue_name', 'workgroup', 'queue_id', 'mapping_queue', 'error', 'error_field']) {
        if (s[k] !== undefined && !isString(s[k])) at(`\`${k}\` must be a string`);
      }
      for (const row of s.rows ?? []) {
        for (const k of Object.keys(row)) if (!['event', 'queue', 'workgroup'].includes(k)) at(`row: unknown key ${k}`);
        if (!isString(row.event) || !isString(row.queue) || !isString(row.workgroup)) at('a row needs event, queue and workgroup');
        if (!queues.has(row.queue)) at(`row names unknown queue ${row.queue}`);
      }
      if (s.owner !== undefined) {
        const [kind, key] = String(s.owner).split(':');
        const ok = (kind === 'queue' && queues.has(key)) || (kind === 'user' && ACTORS.includes(key));
        if (!ok) at(`owner ${s.owner} is not queue:KEY or user:admin|agent`);
      }
      if (s.mapping_queue !== undefined && !queues.has(s.mapping_queue)) at(`mapping_queue names unknown queue ${s.mapping_queue}`);
      if (s.case !== undefined) {
        if (s.do === 'insert_case') {
          if (cases.has(s.case)) at(`case ${s.case} is inserted twice`);
          cases.add(s.case);
        } else if (!cases.has(s.case)) {
          at(`case ${s.case} is not inserted before`);
        }
      }
      if (s.mapping !== undefined) {
        if (s.mapping.startsWith('world:')) {
          const key = s.mapping.slice('world:'.length);
          const mapped = (r.queue ?? []).some((q) => q.key === key && q.workgroup !== undefined);
          if (s.do === 'insert_mapping' || !mapped) at(`${s.mapping} is not a world mapping to ${s.do}`);
        } else if (s.do === 'insert_mapping') {
          mappings.add(s.mapping);
        } else if (!mappings.has(s.mapping)) {
          at(`mapping ${s.mapping} is not inserted before`);
        }
      }
    });
  }
  return bad;
}
