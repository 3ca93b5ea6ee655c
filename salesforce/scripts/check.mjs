#!/usr/bin/env node
// The checks of the Salesforce package that need no org (ci/salesforce-check runs them):
//
//   rules        salesforce/rules/trigger-rules.toml is well-formed (the generator's own checks)
//   xml          every XML file is well-formed; every metadata file is in the metadata namespace
//   api-version  one Metadata API version everywhere (sfdx-project.json sourceApiVersion)
//   apex-parse   every Apex class and trigger parses with @apexdevtools/apex-parser, no error
//   apex-rules   triggers are one line delegating to a handler class; every class states its
//                sharing; no SOQL, SOSL or DML inside a loop in non-test code
//   convert      @salesforce/source-deploy-retrieve converts the project (offline) into a
//                metadata-API package whose package.xml lists every component, and every source
//                file belongs to a component
//   names        every object, field and the PushTopic query of the router's default
//                [salesforce.names] exists in the converted package
//   permissions  the permission sets name only fields that exist and may carry field-level
//                security, and the integration user's set grants what the router needs
//
// usage: node scripts/check.mjs [--keep DIR]   (--keep: convert into DIR and leave it there)

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import {
  ApexErrorListener,
  ApexParser,
  ApexParserFactory,
  DotExpressionContext,
} from '@apexdevtools/apex-parser';
import { ComponentSet, MetadataConverter } from '@salesforce/source-deploy-retrieve';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { parse as parseToml } from 'smol-toml';
import { loadRules, SALESFORCE_DIR } from './rules.mjs';

const REPO = join(SALESFORCE_DIR, '..');
const FORCE_APP = join(SALESFORCE_DIR, 'force-app');
const DEFAULT = join(FORCE_APP, 'main', 'default');
const METADATA_NS = 'http://soap.sforce.com/2006/04/metadata';
// The router's [salesforce.names]: config.example.toml lists the defaults (a sors-tenant test
// checks it equals Config::default()); the defaults themselves are SalesforceNames::default() in
// config.rs. Both are read, and must agree.
const CONFIG_EXAMPLE = join(REPO, 'service', 'tenant', 'config.example.toml');
const CONFIG_RS = join(REPO, 'service', 'tenant', 'src', 'config.rs');

const xml = new XMLParser({ ignoreAttributes: false, parseTagValue: false, parseAttributeValue: false });

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === '.sf' || name === '.sfdx') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

const rel = (p) => relative(REPO, p);
const asList = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function readXml(path) {
  const doc = xml.parse(readFileSync(path, 'utf8'));
  const root = Object.keys(doc).find((k) => k !== '?xml');
  return { root, body: doc[root] ?? {} };
}

// ------------------------------------------------------------------ rules

function checkRulesFile() {
  const rules = loadRules();
  const steps = rules.case.reduce((n, c) => n + c.step.length, 0);
  return { problems: [], note: `${rules.case.length} cases, ${steps} steps` };
}

// ------------------------------------------------------------------ xml

function checkXml() {
  const problems = [];
  const files = walk(SALESFORCE_DIR).filter((p) => p.endsWith('.xml'));
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const valid = XMLValidator.validate(text);
    if (valid !== true) {
      problems.push(`${rel(f)}:${valid.err.line}: ${valid.err.msg}`);
      continue;
    }
    if (f.startsWith(FORCE_APP)) {
      const { root, body } = readXml(f);
      if (body['@_xmlns'] !== METADATA_NS) problems.push(`${rel(f)}: <${root}> is not in ${METADATA_NS}`);
    }
  }
  for (const f of walk(SALESFORCE_DIR).filter((p) => p.endsWith('.json'))) {
    try {
      JSON.parse(readFileSync(f, 'utf8'));
    } catch (e) {
      problems.push(`${rel(f)}: ${e.message}`);
    }
  }
  return { problems, note: `${files.length} XML files` };
}

// ------------------------------------------------------------------ api-version

function sourceApiVersion() {
  return JSON.parse(readFileSync(join(SALESFORCE_DIR, 'sfdx-project.json'), 'utf8')).sourceApiVersion;
}

function checkApiVersion() {
  const problems = [];
  const want = sourceApiVersion();
  if (!/^\d+\.0$/.test(want ?? '')) problems.push(`sfdx-project.json sourceApiVersion ${want}`);
  let n = 0;
  for (const f of walk(FORCE_APP).filter((p) => p.endsWith('-meta.xml'))) {
    const { body } = readXml(f);
    if (body.apiVersion !== undefined) {
      n++;
      if (String(body.apiVersion) !== want) problems.push(`${rel(f)}: apiVersion ${body.apiVersion}, project ${want}`);
    }
  }
  const gen = readFileSync(join(SALESFORCE_DIR, 'scripts', 'generate-apex-tests.mjs'), 'utf8');
  if (!gen.includes(`API_VERSION = '${want}'`)) problems.push(`scripts/generate-apex-tests.mjs API_VERSION is not ${want}`);
  return { problems, note: `${want}, ${n} files` };
}

// ------------------------------------------------------------------ apex

class Collect extends ApexErrorListener {
  constructor() {
    super();
    this.errors = [];
  }
  apexSyntaxError(line, column, msg) {
    const short = msg.length > 160 ? `${msg.slice(0, 160)}…` : msg;
    this.errors.push(`${line}:${column} ${short}`);
  }
}

function apexSources() {
  return walk(FORCE_APP).filter((p) => p.endsWith('.cls') || p.endsWith('.trigger'));
}

function parseApex(path) {
  const listener = new Collect();
  const { parser } = ApexParserFactory.createLexerAndParser(readFileSync(path, 'utf8'), listener);
  const tree = path.endsWith('.trigger') ? parser.triggerUnit() : parser.compilationUnit();
  return { tree, errors: listener.errors };
}

function checkApexParse() {
  const problems = [];
  const files = apexSources();
  for (const f of files) {
    const { tree, errors } = parseApex(f);
    for (const e of errors) problems.push(`${rel(f)}:${e}`);
    if (!existsSync(`${f}-meta.xml`)) problems.push(`${rel(f)}: no ${basename(f)}-meta.xml`);
    const name = basename(f).replace(/\.(cls|trigger)$/, '');
    const declared = f.endsWith('.trigger')
      ? tree.id(0)?.getText()
      : tree.typeDeclaration()?.classDeclaration()?.id()?.getText();
    if (errors.length === 0 && declared !== name) problems.push(`${rel(f)} declares ${declared}`);
  }
  const classes = files.filter((f) => f.endsWith('.cls')).length;
  return { problems, note: `${classes} classes, ${files.length - classes} triggers` };
}

const LOOP_FREE = new Set([
  ApexParser.RULE_soqlLiteral,
  ApexParser.RULE_soslLiteral,
  ApexParser.RULE_insertStatement,
  ApexParser.RULE_updateStatement,
  ApexParser.RULE_deleteStatement,
  ApexParser.RULE_undeleteStatement,
  ApexParser.RULE_upsertStatement,
  ApexParser.RULE_mergeStatement,
]);
const DATABASE_CALL = /^(Database\.(insert|update|upsert|delete|undelete|merge|query|queryWithBinds|countQuery|getQueryLocator|convertLead|emptyRecycleBin)|Search\.query)\(/i;

function children(ctx) {
  return ctx.children ?? [];
}

/** The parts of a loop that run once per iteration. */
function loopParts(ctx) {
  switch (ctx.ruleIndex) {
    case ApexParser.RULE_forStatement: {
      const control = ctx.forControl();
      const parts = [ctx.statement()];
      if (!control.enhancedForControl()) parts.push(control.expression(), control.forUpdate());
      return parts.filter(Boolean);
    }
    case ApexParser.RULE_whileStatement:
    case ApexParser.RULE_doWhileStatement:
      return children(ctx);
    default:
      return null;
  }
}

function findInLoops(ctx, found, inLoop = false) {
  const parts = loopParts(ctx);
  if (parts) {
    for (const p of parts) findInLoops(p, found, true);
    // The header of an enhanced for (for (X x : [SELECT ...])) runs once.
    if (ctx.ruleIndex === ApexParser.RULE_forStatement && ctx.forControl().enhancedForControl()) {
      findInLoops(ctx.forControl(), found, inLoop);
    }
    return;
  }
  if (inLoop && ctx.ruleIndex !== undefined) {
    if (LOOP_FREE.has(ctx.ruleIndex) || (ctx instanceof DotExpressionContext && DATABASE_CALL.test(ctx.getText()))) {
      found.push({ line: ctx.start.line, text: ctx.getText().slice(0, 60) });
      return;
    }
  }
  for (const c of children(ctx)) findInLoops(c, found, inLoop);
}

function isTestClass(source) {
  const head = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const at = head.search(/\bclass\b/);
  return /@IsTest\b/i.test(head.slice(0, at));
}

function checkApexRules() {
  const problems = [];
  const classes = new Set(apexSources().filter((f) => f.endsWith('.cls')).map((f) => basename(f, '.cls')));
  let checked = 0;
  for (const f of apexSources()) {
    const source = readFileSync(f, 'utf8');
    const { tree, errors } = parseApex(f);
    if (errors.length > 0) continue; // apex-parse reports it
    if (f.endsWith('.trigger')) {
      const members = tree.triggerBlock().triggerBlockMember_list();
      const text = members.map((m) => m.getText()).join('');
      const m = /^new(\w+)\(\)\.run\(\);$/.exec(text);
      if (members.length !== 1 || !m) {
        problems.push(`${rel(f)}: a trigger is one line, new Handler().run(); found ${JSON.stringify(text.slice(0, 80))}`);
      } else if (!classes.has(m[1])) {
        problems.push(`${rel(f)}: handler ${m[1]} is not a class of the package`);
      }
    } else {
      const head = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
      const decl = head.slice(0, head.search(/\bclass\b/));
      if (!isTestClass(source) && !/\b(with|without|inherited)\s+sharing\b/i.test(decl)) {
        problems.push(`${rel(f)}: the class does not state its sharing (with, without or inherited sharing)`);
      }
      if (isTestClass(source)) continue;
    }
    checked++;
    const found = [];
    findInLoops(tree, found);
    for (const x of found) problems.push(`${rel(f)}:${x.line}: SOQL/DML inside a loop: ${x.text}`);
  }
  return { problems, note: `${checked} non-test files checked for SOQL/DML in loops` };
}

// ------------------------------------------------------------------ convert

async function convert(outputDirectory) {
  const cs = ComponentSet.fromSource(FORCE_APP);
  // As `sf project convert source` does: the project's sourceApiVersion, so that nothing asks the
  // network for the org's current version (offline, SDR would fall back to an old default).
  cs.sourceApiVersion = sourceApiVersion();
  cs.apiVersion = sourceApiVersion();
  const converted = await new MetadataConverter().convert(cs, 'metadata', {
    type: 'directory',
    outputDirectory,
    genUniqueDir: false,
  });
  return { cs, converted };
}

function packageMembers(dir) {
  const { body } = readXml(join(dir, 'package.xml'));
  const members = new Map();
  for (const t of asList(body.types)) {
    members.set(t.name, new Set(asList(t.members).map(String)));
  }
  return { members, version: String(body.version) };
}

async function checkConvert(outDir) {
  const problems = [];
  const { cs } = await convert(outDir);
  const { members, version } = packageMembers(outDir);
  if (version !== sourceApiVersion()) problems.push(`package.xml version ${version}, project ${sourceApiVersion()}`);
  const claimed = new Set();
  let components = 0;
  for (const c of cs.getSourceComponents()) {
    components++;
    const type = c.type.name;
    if (!members.get(type)?.has(c.fullName)) problems.push(`package.xml does not list ${type} ${c.fullName}`);
    for (const p of [c.xml, c.content, ...c.walkContent()].filter(Boolean)) claimed.add(p);
    for (const child of c.getChildren()) {
      components++;
      if (!members.get(child.type.name)?.has(child.fullName)) {
        problems.push(`package.xml does not list ${child.type.name} ${child.fullName}`);
      }
      if (child.xml) claimed.add(child.xml);
    }
  }
  for (const f of walk(FORCE_APP)) {
    if (!claimed.has(f)) problems.push(`${rel(f)} belongs to no component (missing -meta.xml, or a wrong name?)`);
  }
  const want = {
    ApexClass: apexSources().filter((f) => f.endsWith('.cls')).length,
    ApexTrigger: apexSources().filter((f) => f.endsWith('.trigger')).length,
    CustomObject: 3,
    CustomTab: 2,
    CustomApplication: 1,
    PermissionSet: 2,
  };
  for (const [type, n] of Object.entries(want)) {
    const got = members.get(type)?.size ?? 0;
    if (got < n) problems.push(`package.xml lists ${got} ${type}, expected at least ${n}`);
  }
  for (const type of ['CustomField', 'ListView', 'Layout']) {
    if (!members.has(type)) problems.push(`package.xml lists no ${type}`);
  }
  const listed = [...members.values()].reduce((n, s) => n + s.size, 0);
  return { problems, note: `${listed} members of ${members.size} types in package.xml, ${components} components`, members };
}

// ------------------------------------------------------------------ names

const NAME_KEYS = {
  routing_object: { object: true },
  mapping_object: { object: true },
  case: { on: 'routing_object' },
  case_number: { on: 'routing_object' },
  subject: { on: 'routing_object' },
  from_address: { on: 'routing_object' },
  from_name: { on: 'routing_object' },
  event: { on: 'routing_object' },
  queue_id: { on: 'routing_object' },
  workgroup: { on: 'routing_object' },
  skills: { on: 'routing_object' },
  status: { on: 'routing_object' },
  interaction_id: { on: 'routing_object' },
  attempts: { on: 'routing_object' },
  error: { on: 'routing_object' },
  processed_at: { on: 'routing_object' },
  queue_name: { on: 'mapping_object' },
  mapping_workgroup: { on: 'mapping_object' },
  mapping_queue_id: { on: 'mapping_object' },
  case_skills: { on: 'Case' },
  push_topic: { pushTopic: true },
};

export function routerNames() {
  const problems = [];
  const example = parseToml(readFileSync(CONFIG_EXAMPLE, 'utf8'))?.salesforce?.names ?? {};
  const rs = readFileSync(CONFIG_RS, 'utf8');
  const block = /impl Default for SalesforceNames \{([\s\S]*?)\n\}/.exec(rs)?.[1] ?? '';
  const defaults = Object.fromEntries([...block.matchAll(/(\w+): "([^"]*)"\.into\(\)/g)].map((m) => [m[1], m[2]]));
  if (Object.keys(defaults).length === 0) problems.push(`${rel(CONFIG_RS)}: no SalesforceNames::default() found`);
  if (Object.keys(example).length === 0) problems.push(`${rel(CONFIG_EXAMPLE)}: no [salesforce.names]`);
  for (const k of new Set([...Object.keys(example), ...Object.keys(defaults)])) {
    if (example[k] !== defaults[k]) {
      problems.push(`[salesforce.names] ${k}: ${rel(CONFIG_EXAMPLE)} says ${JSON.stringify(example[k])}, ${rel(CONFIG_RS)} ${JSON.stringify(defaults[k])}`);
    }
    if (!NAME_KEYS[k]) problems.push(`[salesforce.names] ${k} is new: tell scripts/check.mjs (NAME_KEYS) which object it names`);
  }
  return { names: example, problems };
}

function sourceFields() {
  // object -> field -> parsed field metadata
  const fields = new Map();
  const objectsDir = join(DEFAULT, 'objects');
  for (const obj of readdirSync(objectsDir)) {
    const dir = join(objectsDir, obj, 'fields');
    const m = new Map();
    if (existsSync(dir)) {
      for (const f of readdirSync(dir)) m.set(f.replace('.field-meta.xml', ''), readXml(join(dir, f)).body);
    }
    fields.set(obj, m);
  }
  return fields;
}

function checkNames(members) {
  const { names, problems } = routerNames();
  const objects = members.get('CustomObject') ?? new Set();
  const fields = members.get('CustomField') ?? new Set();
  const objectOf = (spec) => (spec.on === 'Case' ? 'Case' : names[spec.on]);
  let n = 0;
  for (const [key, value] of Object.entries(names)) {
    const spec = NAME_KEYS[key];
    if (!spec) continue;
    n++;
    if (spec.object && !objects.has(value)) problems.push(`${key} = "${value}": no such object in the package`);
    if (spec.on) {
      const full = `${objectOf(spec)}.${value}`;
      if (!fields.has(full)) problems.push(`${key} = "${value}": no field ${full} in the package`);
    }
    if (spec.pushTopic && !(value.length <= 25 && /^[A-Za-z]\w*$/.test(value))) {
      problems.push(`push_topic = "${value}" is not a PushTopic name (letters, digits, _; at most 25)`);
    }
  }
  // The PushTopic the router creates (routing.md §2) needs Streaming API on the routing object
  // and every field of its query.
  const routing = names.routing_object;
  const objectFile = join(DEFAULT, 'objects', routing, `${routing}.object-meta.xml`);
  if (existsSync(objectFile) && String(readXml(objectFile).body.enableStreamingApi) !== 'true') {
    problems.push(`${routing}: enableStreamingApi must be true for the router's PushTopic`);
  }
  for (const k of ['case', 'event', 'workgroup', 'skills', 'status']) {
    if (!fields.has(`${routing}.${names[k]}`)) problems.push(`PushTopic query field ${names[k]} is missing`);
  }
  const status = sourceFields().get(routing)?.get(names.status);
  const values = asList(status?.valueSet?.valueSetDefinition?.value).map((v) => v.fullName);
  for (const v of ['New', 'Processing', 'Processed', 'Failed']) {
    if (!values.includes(v)) problems.push(`${routing}.${names.status} has no picklist value ${v}`);
  }
  return { problems, note: `${n} names of [salesforce.names] found in the package` };
}

// ------------------------------------------------------------------ permissions

function permissionSet(name) {
  const path = join(DEFAULT, 'permissionsets', `${name}.permissionset-meta.xml`);
  const { body } = readXml(path);
  const fieldPerms = new Map(asList(body.fieldPermissions).map((p) => [p.field, p]));
  const objectPerms = new Map(asList(body.objectPermissions).map((p) => [p.object, p]));
  const userPerms = new Map(asList(body.userPermissions).map((p) => [p.name, String(p.enabled) === 'true']));
  return { body, fieldPerms, objectPerms, userPerms };
}

const yes = (v) => String(v) === 'true';

function checkPermissions() {
  const problems = [];
  const fields = sourceFields();
  const { names } = routerNames();
  const noFls = (obj, field) => {
    const f = fields.get(obj)?.get(field);
    return f && (yes(f.required) || f.type === 'MasterDetail');
  };
  const sets = readdirSync(join(DEFAULT, 'permissionsets')).map((f) => f.replace('.permissionset-meta.xml', ''));
  for (const set of sets) {
    const { fieldPerms } = permissionSet(set);
    for (const [full, p] of fieldPerms) {
      const [obj, field] = full.split('.');
      if (field.endsWith('__c') && !fields.get(obj)?.has(field)) problems.push(`${set}: ${full} does not exist in the package`);
      if (noFls(obj, field)) problems.push(`${set}: ${full} is required or master-detail and cannot carry field-level security (the deploy fails)`);
      if (yes(p.editable) && !yes(p.readable)) problems.push(`${set}: ${full} editable but not readable`);
    }
  }
  // What the router does (service/salesforce): reads cases, mappings and rows; updates row status
  // and bookkeeping; inserts SwitchoverRecovery rows; creates and repairs its PushTopic.
  const integ = permissionSet('SORS_Integration');
  const R = names.routing_object;
  const M = names.mapping_object;
  const written = ['status', 'attempts', 'interaction_id', 'error', 'processed_at', 'case', 'event', 'queue_id', 'workgroup', 'skills', 'case_number', 'subject', 'from_address', 'from_name'];
  const read = [...written];
  const need = (obj, field, edit) => {
    if (noFls(obj, field)) return; // always readable and writable with object access
    const p = integ.fieldPerms.get(`${obj}.${field}`);
    if (!p || !yes(p.readable)) problems.push(`SORS_Integration: the router reads ${obj}.${field}`);
    else if (edit && !yes(p.editable)) problems.push(`SORS_Integration: the router writes ${obj}.${field}`);
    else if (!edit && yes(p.editable)) problems.push(`SORS_Integration: ${obj}.${field} editable, the router only reads it`);
  };
  for (const k of read) need(R, names[k], written.includes(k));
  for (const k of ['queue_name', 'mapping_workgroup', 'mapping_queue_id']) need(M, names[k], false);
  for (const f of [names.case_skills, 'Subject', 'SuppliedEmail', 'SuppliedName']) need('Case', f, false);
  const obj = (o, want) => {
    const p = integ.objectPerms.get(o) ?? {};
    for (const [perm, v] of Object.entries(want)) {
      if (yes(p[perm]) !== v) problems.push(`SORS_Integration: ${o} ${perm} should be ${v}`);
    }
  };
  obj('Case', { allowRead: true, viewAllRecords: true, allowEdit: false, allowDelete: false, modifyAllRecords: false });
  obj(M, { allowRead: true, allowCreate: false, allowEdit: false, allowDelete: false });
  obj(R, { allowRead: true, allowCreate: true, allowEdit: true, viewAllRecords: true, allowDelete: false, modifyAllRecords: false });
  obj('PushTopic', { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: false });
  if (integ.userPerms.get('ApiEnabled') !== true) problems.push('SORS_Integration: ApiEnabled');
  // The administrators' set covers every field of the package that carries field-level security.
  const admin = permissionSet('SORS_Administrator');
  for (const [o, fs] of fields) {
    if (o === 'ObjectRouting_Settings__c') continue; // custom setting: managed in Setup
    for (const f of fs.keys()) {
      if (!noFls(o, f) && !admin.fieldPerms.has(`${o}.${f}`)) problems.push(`SORS_Administrator: no field permission for ${o}.${f}`);
    }
  }
  return { problems, note: `${sets.length} permission sets` };
}

// ------------------------------------------------------------------ main

async function main() {
  const keep = process.argv[2] === '--keep' ? process.argv[3] : null;
  const outDir = keep ?? mkdtempSync(join(tmpdir(), 'sors-mdapi-'));
  if (keep) rmSync(keep, { recursive: true, force: true });
  let failed = 0;
  let members = new Map();
  const run = async (name, fn) => {
    let result;
    try {
      result = await fn();
    } catch (e) {
      result = { problems: [e.stack ?? String(e)] };
    }
    if (result.problems.length === 0) {
      console.log(`salesforce-check: ok   ${name}${result.note ? ` (${result.note})` : ''}`);
    } else {
      failed++;
      console.log(`salesforce-check: FAIL ${name}`);
      for (const p of result.problems) console.log(`    ${p}`);
    }
    return result;
  };
  await run('rules', checkRulesFile);
  await run('xml', checkXml);
  await run('api-version', checkApiVersion);
  await run('apex-parse', checkApexParse);
  await run('apex-rules', checkApexRules);
  const converted = await run('convert', () => checkConvert(outDir));
  members = converted.members ?? new Map();
  await run('names', () => checkNames(members));
  await run('permissions', checkPermissions);
  if (!keep) rmSync(outDir, { recursive: true, force: true });
  else console.log(`salesforce-check: metadata-API package left in ${keep}`);
  if (failed > 0) {
    console.log(`salesforce-check: ${failed} check(s) failed`);
    process.exit(1);
  }
}

await main();
