/* SORS status dashboard: polls each tenant's /heartbeat and /history and shows them.
 *
 * A classic script (not a module) so that the page also works opened as a file. No inline
 * script or style attribute anywhere, so it runs under `script-src 'self'; style-src 'self'`.
 * All text from the tenants is inserted as text nodes, never as HTML.
 * See README.md beside this file for the states, the configuration format and /history.
 */
'use strict';

(function () {
  const STORAGE_KEY = 'sors-dashboard.config.v1';
  const FORMAT = 1;
  const MSG_UP = 'Successfully connected to CIC Server and Salesforce';
  const MSG_DOWN = 'Salesforce Object Routing Server Down';
  const MINUTE = 60000;
  const DAY = 24 * 60 * MINUTE;
  const HISTORY_EVERY = 30000;
  const BACKOFF_MAX = 60000;
  const ALERT_RECENT = 15 * MINUTE;
  const BRIEF_SEGMENT = 5000;
  const API_WARN = 0.9;
  const MAX_FILE = 1024 * 1024;
  const MAX_PAGE_EVENTS = 200;
  const POLL_CHOICES = [1, 2, 5, 10, 30, 60];
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const INCIDENT_LABELS = {
    switchover: 'Switchover',
    cic_lost: 'CIC lost',
    relogin: 'Re-login',
    push_lost: 'Push lost',
    push_topic_repaired: 'PushTopic repaired',
    push_topic: 'PushTopic repaired',
    resync: 'Resync',
    failed_rows: 'Failed rows',
    failed_row: 'Failed row',
    config_drift: 'Config drift',
    api_limit: 'API allowance',
    reconciled: 'Reconciled',
    other_router: 'Other router',
  };
  const LEVEL_WORD = { up: 'Up', degraded: 'Degraded', down: 'Down', unknown: 'Checking' };
  const LEVEL_RANK = { down: 0, degraded: 1, unknown: 2, up: 3 };

  // ---------------------------------------------------------------- small helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    applyAttrs(e, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    applyAttrs(e, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function applyAttrs(e, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  const $ = (id) => document.getElementById(id);

  function num(x) {
    return typeof x === 'number' && Number.isFinite(x) ? x : null;
  }

  function time(x) {
    if (typeof x !== 'string') return null;
    const t = Date.parse(x);
    return Number.isFinite(t) ? t : null;
  }

  function fmtInt(n) {
    return n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US');
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return '—';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    return fmtDur(ms);
  }

  function fmtDur(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
  }

  const pad = (n) => String(n).padStart(2, '0');

  function fmtClock(t) {
    const d = new Date(t);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fmtClockSec(t) {
    const d = new Date(t);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  function fmtWhen(t, now) {
    const d = new Date(t);
    const today = new Date(now);
    const sameDay = d.toDateString() === today.toDateString();
    return sameDay
      ? fmtClockSec(t)
      : `${DAYS[d.getDay()]} ${pad(d.getDate())} ${MONTHS[d.getMonth()]} ${fmtClockSec(t)}`;
  }

  function isoTitle(t) {
    return new Date(t).toISOString().replace('.000Z', 'Z');
  }

  function localMidnight(now) {
    const d = new Date(now);
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }

  function key(name) {
    return name.trim().toLowerCase();
  }

  // ---------------------------------------------------------------- validation and config files

  class ConfigError extends Error {
    constructor(problems) {
      super(problems.join(' '));
      this.problems = problems;
    }
  }

  function checkName(raw) {
    const name = typeof raw === 'string' ? raw.trim() : typeof raw === 'number' ? String(raw) : '';
    if (!name) return { error: 'Enter the organization name.' };
    if (name.length > 80) return { error: 'The organization name is longer than 80 characters.' };
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(name)) return { error: 'The organization name contains control characters.' };
    return { value: name };
  }

  function checkAddress(raw) {
    let a = typeof raw === 'string' ? raw.trim() : '';
    if (!a) return { error: "Enter the server's address (an IP address or a host name)." };
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(a) || a.includes('/'))
      return { error: 'Enter only the address, without http:// or a path (for example 10.0.0.5).' };
    if (/^[^:[\]]+:\d+$/.test(a))
      return { error: 'Enter the address without a port; the port has its own field.' };
    if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
    if (a.includes(':')) {
      if (!/^[0-9a-f:.]+$/i.test(a)) return { error: `"${a}" is not a valid IPv6 address.` };
      try {
        new URL(`http://[${a}]/`);
      } catch {
        return { error: `"${a}" is not a valid IPv6 address.` };
      }
      return { value: a.toLowerCase() };
    }
    if (/^[\d.]+$/.test(a)) {
      const parts = a.split('.');
      const ok = parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
      return ok ? { value: parts.map(Number).join('.') } : { error: `"${a}" is not a valid IPv4 address.` };
    }
    if (a.length > 253) return { error: 'The host name is longer than 253 characters.' };
    const labels = a.split('.');
    const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
    if (!labels.every((l) => label.test(l)) || /^\d+$/.test(labels[labels.length - 1]))
      return { error: `"${a}" is not a valid host name or IP address.` };
    return { value: a.toLowerCase() };
  }

  function checkPort(raw) {
    const s = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
    if (!s) return { error: 'Enter the status (heartbeat) port.' };
    if (!/^\d{1,5}$/.test(s) || Number(s) < 1 || Number(s) > 65535)
      return { error: `The port must be a whole number from 1 to 65535 (got "${s.slice(0, 20)}").` };
    return { value: Number(s) };
  }

  /** Problems of `t` against `list` (other tenants): duplicate name or address:port. */
  function checkDuplicate(t, list) {
    for (const o of list) {
      if (key(o.name) === key(t.name)) return { field: 'name', error: `A tenant named "${o.name}" is already in the list.` };
      if (o.address === t.address && o.port === t.port)
        return { field: 'address', error: `"${o.name}" already monitors ${hostPort(o)}.` };
    }
    return null;
  }

  function hostPort(t) {
    return `${t.address.includes(':') ? `[${t.address}]` : t.address}:${t.port}`;
  }

  const FIELD_NAMES = {
    name: ['name', 'organizationname', 'organisationname', 'orgname', 'organization', 'organisation', 'org', 'tenant', 'tenantname'],
    address: ['address', 'serveraddress', 'serverip', 'serveripaddress', 'ip', 'ipaddress', 'server', 'host', 'hostname'],
    port: ['port', 'heartbeatport', 'hearbeatport', 'statusport', 'heartbeat'],
  };

  function pick(obj, field) {
    for (const [k, v] of Object.entries(obj)) {
      if (FIELD_NAMES[field].includes(k.toLowerCase().replace(/[^a-z]/g, ''))) return v;
    }
    return undefined;
  }

  /**
   * Parses a configuration file's text: our JSON ({"sors_dashboard": 1, "tenants": [...]}), a
   * plain JSON list (objects with organization name, server address and port, under any of the
   * usual spellings, or [name, address, port] triples), or plain text, one tenant a line with
   * tab-, comma- or semicolon-separated name, address and port. All or nothing: throws a
   * ConfigError listing the problems.
   */
  function parseConfig(text) {
    if (text.length > MAX_FILE) throw new ConfigError(['The file is larger than 1 MB; a dashboard configuration is a few kilobytes.']);
    const body = text.replace(/^\uFEFF/, '').trim();
    if (!body) throw new ConfigError(['The file is empty.']);
    let entries;
    let pollSeconds = null;
    if (body[0] === '{' || body[0] === '[') {
      let doc;
      try {
        doc = JSON.parse(body);
      } catch (e) {
        throw new ConfigError([`It is not valid JSON (${e.message}).`]);
      }
      if (Array.isArray(doc)) {
        entries = doc.map((raw, i) => ({ where: `Entry ${i + 1}`, raw }));
      } else {
        if (doc.sors_dashboard !== undefined && doc.sors_dashboard !== FORMAT)
          throw new ConfigError([`It is version ${JSON.stringify(doc.sors_dashboard)} of the dashboard format; this page reads version ${FORMAT}.`]);
        if (!Array.isArray(doc.tenants))
          throw new ConfigError(['The JSON object has no "tenants" list. Expected {"sors_dashboard": 1, "tenants": [{"name": …, "address": …, "port": …}]} or a plain list of tenants.']);
        if (doc.poll_seconds !== undefined) {
          if (!POLL_CHOICES.includes(doc.poll_seconds))
            throw new ConfigError([`"poll_seconds" must be one of ${POLL_CHOICES.join(', ')} (got ${JSON.stringify(doc.poll_seconds)}).`]);
          pollSeconds = doc.poll_seconds;
        }
        entries = doc.tenants.map((raw, i) => ({ where: `Tenant ${i + 1}`, raw }));
      }
    } else {
      entries = [];
      body.split(/\r?\n/).forEach((line, i) => {
        const l = line.trim();
        if (!l || l.startsWith('#')) return;
        const cells = l.split(/\t|;|,/).map((c) => c.trim());
        if (i === 0 && /organi[sz]ation|name/i.test(l) && /port/i.test(l)) return; // a header line
        entries.push({ where: `Line ${i + 1}`, raw: cells, line: true });
      });
    }
    const problems = [];
    const tenants = [];
    if (!entries.length) problems.push('The file lists no tenants.');
    for (const { where, raw, line } of entries) {
      let name, address, port, scheme;
      if (Array.isArray(raw)) {
        if (raw.length !== 3) {
          problems.push(`${where}: expected three values (organization name, server address, port), found ${raw.length}.`);
          continue;
        }
        [name, address, port] = raw;
      } else if (raw && typeof raw === 'object') {
        name = pick(raw, 'name');
        address = pick(raw, 'address');
        port = pick(raw, 'port');
        scheme = raw.scheme;
      } else {
        problems.push(`${where}: expected an object with organization name, server address and port.`);
        continue;
      }
      const label = typeof name === 'string' && name.trim() ? `${where} ("${name.trim().slice(0, 40)}")` : where;
      const n = checkName(name);
      const a = checkAddress(typeof address === 'string' ? address : '');
      const p = checkPort(line ? String(port) : port);
      const own = [n, a, p].filter((r) => r.error).map((r) => r.error);
      if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') own.push('"scheme" must be "http" or "https".');
      if (own.length) {
        problems.push(`${label}: ${own.join(' ')}`);
        continue;
      }
      const t = { name: n.value, address: a.value, port: p.value };
      if (scheme === 'https') t.scheme = 'https';
      const dup = checkDuplicate(t, tenants);
      if (dup) {
        problems.push(`${label}: ${dup.error}`);
        continue;
      }
      tenants.push(t);
    }
    if (problems.length) throw new ConfigError(problems);
    return { tenants, pollSeconds };
  }

  function configDocument() {
    return {
      sors_dashboard: FORMAT,
      poll_seconds: app.pollSeconds,
      tenants: app.tenants.map((t) => {
        const o = { name: t.name, address: t.address, port: t.port };
        if (t.scheme === 'https') o.scheme = 'https';
        return o;
      }),
    };
  }

  function configText() {
    return JSON.stringify(configDocument(), null, 2) + '\n';
  }

  // ---------------------------------------------------------------- application state

  const app = {
    tenants: [],
    pollSeconds: 5,
    sort: 'config',
    monitors: new Map(), // key(name) -> Monitor
    selected: null, // key(name)
    undo: [],
    chartRange: null, // minutes; null: the shortest range that covers the service's history
    chartCursor: null,
  };

  function save() {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...configDocument(), sort: app.sort }));
    } catch {
      notify('The browser refused to store the configuration; it will be lost when the page closes. Download it to keep it.');
    }
  }

  function restore() {
    let text = null;
    try {
      text = localStorage.getItem(STORAGE_KEY);
    } catch {
      return;
    }
    if (!text) return;
    try {
      const doc = JSON.parse(text);
      const parsed = doc.tenants && doc.tenants.length ? parseConfig(text) : { tenants: [], pollSeconds: doc.poll_seconds };
      app.tenants = parsed.tenants;
      if (POLL_CHOICES.includes(parsed.pollSeconds)) app.pollSeconds = parsed.pollSeconds;
      if (['config', 'severity', 'name'].includes(doc.sort)) app.sort = doc.sort;
    } catch {
      try {
        localStorage.setItem(STORAGE_KEY + '.unreadable', text);
      } catch {
        /* nothing more to do */
      }
      notify('The stored configuration could not be read; the dashboard starts empty (the old text is kept under "' + STORAGE_KEY + '.unreadable").');
    }
  }

  // ---------------------------------------------------------------- polling

  class PollError extends Error {}

  function timeoutMs() {
    return Math.min(10000, Math.max(2000, app.pollSeconds * 2000));
  }

  async function fetchJson(url, ms, signalOwner) {
    const ctrl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctrl.abort();
    }, ms);
    const abort = () => ctrl.abort();
    signalOwner.abortCurrent = abort;
    try {
      let r;
      try {
        r = await fetch(url, { signal: ctrl.signal, cache: 'no-store', credentials: 'omit', mode: 'cors', redirect: 'error' });
      } catch (e) {
        if (timedOut) throw new PollError(`No answer within ${ms / 1000} s`);
        if (e && e.name === 'AbortError') throw new PollError('Stopped');
        throw new PollError('Cannot connect (refused, unreachable or not allowed by CORS)');
      }
      if (!r.ok) {
        const err = new PollError(`It answered HTTP ${r.status}${r.statusText ? ' ' + r.statusText : ''}`);
        err.status = r.status;
        throw err;
      }
      let text;
      try {
        text = await r.text();
      } catch {
        throw new PollError(timedOut ? `No complete answer within ${ms / 1000} s` : 'The answer was cut off');
      }
      try {
        return JSON.parse(text);
      } catch {
        throw new PollError('It answered, but not with JSON');
      }
    } finally {
      clearTimeout(timer);
      if (signalOwner.abortCurrent === abort) signalOwner.abortCurrent = null;
    }
  }

  function isHeartbeat(d) {
    return d && typeof d === 'object' && typeof d.status === 'string' && d.routing && typeof d.routing === 'object';
  }

  function isHistory(d) {
    return d && typeof d === 'object' && d.minutes && Array.isArray(d.minutes.routed) && Array.isArray(d.transitions) && Array.isArray(d.incidents);
  }

  class Monitor {
    constructor(tenant) {
      this.tenant = tenant;
      this.hb = null;
      this.hbAt = 0;
      this.statusAt = 0;
      this.hist = null;
      this.histAt = 0;
      this.histError = null;
      this.histMissing = false;
      this.error = null;
      this.failures = 0;
      this.attempts = 0;
      this.downSince = null;
      this.level = 'unknown';
      this.levelAt = Date.now();
      this.events = []; // what this page saw: {at, kind, message}
      this.downs = []; // periods this page could not reach it: {from, to}
      this.skew = 0;
      this.timer = null;
      this.busy = false;
      this.stopped = true;
      this.gen = 0;
      this.nextAt = null;
      this.nextDelay = 0;
      this.sig = '';
      this.abortCurrent = null;
    }

    url(path) {
      return `${this.tenant.scheme === 'https' ? 'https' : 'http'}://${hostPort(this.tenant)}${path}`;
    }

    start() {
      this.stopped = false;
      this.schedule(0);
    }

    stop() {
      this.stopped = true;
      this.gen++;
      this.busy = false;
      clearTimeout(this.timer);
      if (this.abortCurrent) this.abortCurrent();
    }

    schedule(ms) {
      clearTimeout(this.timer);
      this.nextDelay = ms;
      this.nextAt = Date.now() + ms;
      this.timer = setTimeout(() => this.poll(), ms);
    }

    now() {
      return Date.now() + this.skew;
    }

    pageEvent(kind, message) {
      this.events.push({ at: this.now(), kind, message });
      if (this.events.length > MAX_PAGE_EVENTS) this.events.shift();
    }

    async poll() {
      if (this.stopped || this.busy) return;
      // A stop() (or a stop() and start()) while this poll waits makes it stale: it then ends
      // without touching the state, and the new generation polls on its own.
      const gen = this.gen;
      const stale = () => this.stopped || gen !== this.gen;
      this.busy = true;
      clearTimeout(this.timer);
      this.attempts++;
      let ok = false;
      try {
        const hb = await fetchJson(this.url('/heartbeat'), timeoutMs(), this);
        if (stale()) return;
        if (!isHeartbeat(hb)) throw new PollError('It answered, but not with a sors heartbeat');
        this.gotHeartbeat(hb);
        ok = true;
      } catch (e) {
        if (stale()) return;
        this.failed(e instanceof PollError ? e.message : String(e));
      }
      update(this);
      if (ok && this.wantsHistory()) {
        await this.pollHistory();
        if (stale()) return;
        update(this);
      }
      this.busy = false;
      const base = app.pollSeconds * 1000;
      const delay = this.failures ? Math.min(BACKOFF_MAX, Math.max(base, base * 2 ** (this.failures - 1))) : base;
      this.schedule(delay);
      updateRowMeta(this);
    }

    gotHeartbeat(hb) {
      const now = Date.now();
      if (this.error) {
        const last = this.downs[this.downs.length - 1];
        if (last && last.to === null) last.to = now + this.skew;
        this.pageEvent('reachable', `Reachable again after ${fmtDur(now - this.downSince)}`);
      }
      const prevStart = this.hb ? time(this.hb.started_at) : null;
      const start = time(hb.started_at);
      if (prevStart !== null && start !== null && start !== prevStart) {
        this.pageEvent('restarted', `The service restarted at ${fmtClockSec(start)}; its history starts again from there`);
        this.histAt = 0;
      }
      if (!this.hb || this.hb.status !== hb.status) this.statusAt = now;
      this.hb = hb;
      this.hbAt = now;
      this.error = null;
      this.failures = 0;
      this.downSince = null;
    }

    failed(message) {
      const now = Date.now();
      if (!this.error) {
        this.downSince = now + this.skew;
        this.downs.push({ from: this.downSince, to: null });
        if (this.downs.length > MAX_PAGE_EVENTS) this.downs.shift();
        this.pageEvent('unreachable', `Not reachable from this dashboard: ${message}`);
      }
      this.error = message;
      this.failures++;
    }

    wantsHistory() {
      if (this.histMissing && Date.now() - this.histAt < 10 * MINUTE) return false;
      const sig = JSON.stringify([
        this.hb.status,
        this.hb.started_at,
        this.hb.message,
        Array.isArray(this.hb.alerts) && this.hb.alerts[0] ? this.hb.alerts[0].at : null,
        Array.isArray(this.hb.reasons) ? this.hb.reasons.map((r) => r && r.kind) : null,
      ]);
      const changed = sig !== this.sig;
      this.sig = sig;
      return changed || app.selected === key(this.tenant.name) || Date.now() - this.histAt >= HISTORY_EVERY;
    }

    async pollHistory() {
      const sent = Date.now();
      const gen = this.gen;
      try {
        const h = await fetchJson(this.url('/history'), timeoutMs(), this);
        if (gen !== this.gen) return;
        if (!isHistory(h)) throw new PollError('/history answered, but not with a sors history document');
        const received = Date.now();
        const serverNow = time(h.now);
        if (serverNow !== null) this.skew = serverNow - (sent + received) / 2;
        this.hist = h;
        this.histError = null;
        this.histMissing = false;
      } catch (e) {
        this.histError = e instanceof PollError ? e.message : String(e);
        this.histMissing = e && e.status === 404;
        if (this.histMissing) this.hist = null;
      }
      this.histAt = Date.now();
    }
  }

  function pollNow(m) {
    if (m.busy) return;
    m.poll();
  }

  function restartAll() {
    for (const m of app.monitors.values()) {
      m.stop();
      m.start();
    }
  }

  // ---------------------------------------------------------------- deciding the state

  function alertKindToReason(kind) {
    return kind === 'push_lost' ? 'push_loss_suspected' : kind === 'failed_row' ? 'failed_rows' : null;
  }

  /** The state of a monitor: level, message, active reasons and since when. */
  function derive(m) {
    const now = m.now();
    if (m.error) {
      return {
        level: 'down',
        message: MSG_DOWN,
        detail: m.error,
        reasons: [{ kind: 'unreachable', message: `${MSG_DOWN}: ${m.error}`, since: m.downSince, down: true }],
        since: m.downSince,
        seen: false,
      };
    }
    const hb = m.hb;
    if (!hb) return { level: 'unknown', message: 'Checking…', detail: null, reasons: [], since: null };
    const reasons = [];
    const typed = Array.isArray(hb.reasons);
    if (typed) {
      for (const r of hb.reasons) {
        if (!r || typeof r !== 'object') continue;
        reasons.push({
          kind: String(r.kind || 'reason'),
          message: String(r.message || r.kind || 'Degraded'),
          since: time(r.since),
        });
      }
    } else if (Array.isArray(hb.alerts)) {
      // An older heartbeat without typed reasons: recent push-loss and failed-row alerts count.
      const seen = new Set();
      for (const a of hb.alerts) {
        const kind = a && alertKindToReason(a.kind);
        const at = a && time(a.at);
        if (!kind || at === null || now - at > ALERT_RECENT || seen.has(kind)) continue;
        seen.add(kind);
        reasons.push({ kind, message: String(a.message || kind), since: at });
      }
    }
    const sf = hb.salesforce || {};
    const used = num(sf.api_used);
    const max = num(sf.api_max);
    if (used !== null && max && used / max >= API_WARN && !reasons.some((r) => /api/.test(r.kind))) {
      reasons.push({
        kind: 'api_allowance',
        message: `Salesforce API allowance nearly used: ${Math.floor((used / max) * 100)}% (${fmtInt(used)} of ${fmtInt(max)})`,
        since: null,
      });
    }
    let level;
    let message;
    if (hb.status === 'down') {
      level = 'down';
      message = hb.message ? String(hb.message) : MSG_DOWN;
      for (const r of reasons) r.down = true;
    } else if (hb.status === 'up' && !reasons.length) {
      level = 'up';
      message = hb.message ? String(hb.message) : MSG_UP;
    } else if (hb.status === 'up' || hb.status === 'degraded') {
      level = 'degraded';
      message = reasons.length ? reasons[0].message : hb.message ? String(hb.message) : 'Degraded';
    } else {
      level = 'degraded';
      message = `Unknown status "${String(hb.status).slice(0, 40)}": ${hb.message || ''}`;
    }
    // Since when: the oldest active reason, else the service's newest matching transition,
    // else when this page first saw the state.
    let since = null;
    let seen = false;
    const times = reasons.map((r) => r.since).filter((t) => t !== null);
    if (level !== 'up' && times.length) since = Math.min(...times);
    if (since === null && level === hb.status && m.hist && m.hist.transitions.length) {
      const last = m.hist.transitions[m.hist.transitions.length - 1];
      if (last.status === hb.status) since = time(last.at);
    }
    if (since === null) {
      since = m.levelAt + m.skew;
      seen = true;
    }
    return { level, message, detail: null, reasons, since, seen };
  }

  // ---------------------------------------------------------------- SVG pieces

  function dotSvg(level) {
    const shape =
      level === 'degraded'
        ? svg('path', { class: 'shape', d: 'M8 1.5 L15 14.5 L1 14.5 Z' })
        : level === 'down'
          ? svg('rect', { class: 'shape', x: 2, y: 2, width: 12, height: 12, rx: 1.5 })
          : svg('circle', { class: 'shape', cx: 8, cy: 8, r: level === 'unknown' ? 5.5 : 6.5 });
    return svg('svg', { class: 'dot', viewBox: '0 0 16 16', 'aria-hidden': 'true', focusable: 'false' }, shape);
  }

  function ensureDefs() {
    if ($('svg-defs')) return;
    const defs = svg(
      'svg',
      { id: 'svg-defs', width: 0, height: 0, 'aria-hidden': 'true', class: 'visually-hidden' },
      svg(
        'defs',
        null,
        svg(
          'pattern',
          { id: 'hatch', width: 8, height: 8, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
          svg('rect', { class: 'hatch-bg', width: 8, height: 8 }),
          svg('line', { class: 'hatch-line', x1: 0, y1: 0, x2: 0, y2: 8 }),
        ),
      ),
    );
    document.body.append(defs);
  }

  /** State segments over [from, to]: [{from, to, level}] with level up|degraded|down|unknown|nodata. */
  function segments(m, from, to) {
    const points = []; // {at, level}
    const h = m.hist;
    const start = h ? time(h.started_at) : m.hb ? time(m.hb.started_at) : null;
    if (start !== null) points.push({ at: start, level: 'unknown' });
    if (h) {
      for (const t of h.transitions) {
        const at = time(t.at);
        if (at !== null && LEVEL_RANK[t.status] !== undefined) points.push({ at, level: t.status });
      }
    }
    if (m.hb && !m.error) {
      const lvl = LEVEL_RANK[m.hb.status] !== undefined ? m.hb.status : 'degraded';
      const lastLevel = points.length ? points[points.length - 1].level : null;
      if (lastLevel !== lvl) {
        const prev = points.length ? points[points.length - 1].at : -Infinity;
        points.push({ at: Math.max(m.statusAt + m.skew, prev), level: lvl });
      }
    }
    points.sort((a, b) => a.at - b.at);
    const cut = [from, to];
    for (const p of points) if (p.at > from && p.at < to) cut.push(p.at);
    for (const d of m.downs) {
      if (d.from > from && d.from < to) cut.push(d.from);
      if (d.to !== null && d.to > from && d.to < to) cut.push(d.to);
    }
    const xs = [...new Set(cut)].sort((a, b) => a - b);
    const levelAt = (t) => {
      for (const d of m.downs) if (t >= d.from && (d.to === null || t < d.to)) return 'down';
      let lvl = 'nodata';
      for (const p of points) {
        if (p.at <= t) lvl = p.level;
        else break;
      }
      return lvl;
    };
    const out = [];
    for (let i = 0; i + 1 < xs.length; i++) {
      const lvl = levelAt((xs[i] + xs[i + 1]) / 2);
      const last = out[out.length - 1];
      if (last && last.level === lvl) last.to = xs[i + 1];
      else out.push({ from: xs[i], to: xs[i + 1], level: lvl });
    }
    return out;
  }

  const SEG_WORD = { up: 'Up', degraded: 'Degraded', down: 'Down', unknown: 'Unknown', nodata: 'No history' };

  function stateBar(m, cls, height) {
    const to = m.now();
    const from = to - DAY;
    const segs = segments(m, from, to);
    const total = {};
    const children = segs.map((s) => {
      total[s.level] = (total[s.level] || 0) + (s.to - s.from);
      // Problems, and the state now, are drawn at least 3 of 1440 wide so that a short outage
      // shows in a day; not past ones of a few seconds (a service starting, a CIC switchover):
      // the timeline lists those.
      const now = s.to >= to;
      const brief = !now && s.to - s.from < BRIEF_SEGMENT;
      const w = Math.max(((s.to - s.from) / DAY) * 1440, brief ? 0 : now || s.level === 'degraded' || s.level === 'down' ? 3 : 0.6);
      const x = Math.min(((s.from - from) / DAY) * 1440, 1440 - w);
      return svg(
        'rect',
        { class: `seg-${s.level}`, x: x.toFixed(2), y: 0, width: w.toFixed(2), height },
        svg('title', null, `${SEG_WORD[s.level]} ${fmtWhen(s.from, to)} – ${fmtWhen(s.to, to)} (${fmtDur(s.to - s.from)})`),
      );
    });
    const summary = Object.entries(total)
      .sort((a, b) => b[1] - a[1])
      .map(([l, ms]) => `${SEG_WORD[l].toLowerCase()} ${Math.round((ms / DAY) * 100)}%`)
      .join(', ');
    return svg(
      'svg',
      { class: cls, viewBox: `0 0 1440 ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `State over the last 24 hours: ${summary}` },
      children,
    );
  }

  /** A row of small marks under the state bar, one per incident, each with its text as a tooltip. */
  function incidentMarks(m, from, to) {
    const row = el('div', { class: 'marks', 'aria-hidden': 'true' });
    const list = m.hist ? m.hist.incidents : [];
    for (const i of list) {
      const at = time(i.at);
      if (at === null || at < from || at > to) continue;
      const mark = el('span', {
        class: 'mark',
        dataset: { kind: String(i.kind) },
        title: `${fmtWhen(at, to)} ${INCIDENT_LABELS[i.kind] || titleCase(i.kind)}: ${i.message}${i.count > 1 ? ` (×${i.count})` : ''}`,
      });
      mark.style.left = `${((at - from) / (to - from)) * 100}%`;
      row.append(mark);
    }
    return row;
  }

  function axis(from, to, stepHours) {
    const a = el('div', { class: 'axis', 'aria-hidden': 'true' });
    const span = to - from;
    const labels = [];
    const step = stepHours * 60 * MINUTE;
    const first = Math.ceil(from / step) * step;
    for (let t = first; t < to - span * 0.06; t += step) {
      if (t - from < span * 0.06) continue;
      labels.push([t, fmtClock(t)]);
    }
    const start = el('span', { class: 'first', text: stepHours >= 1 ? `${fmtClock(from)}` : fmtClock(from) });
    a.append(start);
    for (const [n, [t, text]] of labels.entries()) {
      const s = el('span', { text, class: labels.length > 4 && n % 2 === 0 ? 'minor' : null });
      s.style.left = `${((t - from) / span) * 100}%`;
      a.append(s);
    }
    const end = el('span', { class: 'last', text: 'now' });
    end.style.left = '100%';
    a.append(end);
    return a;
  }

  // ---------------------------------------------------------------- the per-minute series

  /** The history's minutes as [{t, routed, failed, backlog, p50, p95}] from `from` to now. */
  function minutes(m) {
    const h = m.hist;
    if (!h) return [];
    const start = time(h.minutes.start);
    if (start === null) return [];
    const s = (h.minutes.seconds || 60) * 1000;
    const mm = h.minutes;
    return mm.routed.map((r, i) => ({
      t: start + i * s,
      routed: num(r) || 0,
      failed: num(mm.failed && mm.failed[i]) || 0,
      backlog: num(mm.backlog && mm.backlog[i]),
      p50: num(mm.p50_ms && mm.p50_ms[i]),
      p95: num(mm.p95_ms && mm.p95_ms[i]),
    }));
  }

  function rowsChart(m, range) {
    const H = 100;
    const list = minutes(m);
    const end = Math.floor(m.now() / MINUTE) * MINUTE + MINUTE;
    const from = end - range * MINUTE;
    const inWindow = list.filter((x) => x.t >= from && x.t < end);
    const peak = inWindow.reduce((a, x) => Math.max(a, x.routed + x.failed), 0);
    const top = niceCeil(Math.max(peak, 4));
    const w = 1440 / range;
    let routed = '';
    let failed = '';
    for (const x of inWindow) {
      const i = (x.t - from) / MINUTE;
      const X = (i * w).toFixed(2);
      const W = Math.max(w * 0.82, 0.9).toFixed(2);
      const hr = (x.routed / top) * H;
      const hf = (x.failed / top) * H;
      if (x.routed) routed += `M${X} ${(H - hr).toFixed(2)}h${W}V${H}h-${W}Z`;
      if (x.failed) failed += `M${X} ${(H - hr - hf).toFixed(2)}h${W}V${(H - hr).toFixed(2)}h-${W}Z`;
    }
    const started = m.hist ? time(m.hist.minutes.start) : null;
    const parts = [];
    if (started === null || started > from) {
      const nx = started === null ? 1440 : Math.min(1440, ((started - from) / MINUTE) * w);
      parts.push(svg('rect', { class: 'seg-nodata', x: 0, y: 0, width: nx.toFixed(2), height: H }, svg('title', null, 'No history: the service had not started')));
    }
    parts.push(svg('line', { class: 'grid-line', x1: 0, x2: 1440, y1: H / 2, y2: H / 2, 'vector-effect': 'non-scaling-stroke' }));
    parts.push(svg('line', { class: 'grid-line', x1: 0, x2: 1440, y1: 0.5, y2: 0.5, 'vector-effect': 'non-scaling-stroke' }));
    parts.push(svg('line', { class: 'grid-line', x1: 0, x2: 1440, y1: H - 0.5, y2: H - 0.5, 'vector-effect': 'non-scaling-stroke' }));
    if (routed) parts.push(svg('path', { class: 'bar-routed', d: routed }));
    if (failed) parts.push(svg('path', { class: 'bar-failed', d: failed }));
    if (app.chartCursor !== null) {
      const cx = ((app.chartCursor - from) / MINUTE + 0.4) * w;
      if (cx >= 0 && cx <= 1440) parts.push(svg('line', { class: 'cursor-line', x1: cx, x2: cx, y1: 0, y2: H, 'vector-effect': 'non-scaling-stroke' }));
    }
    const totalR = inWindow.reduce((a, x) => a + x.routed, 0);
    const totalF = inWindow.reduce((a, x) => a + x.failed, 0);
    const label = `Rows routed per minute over the last ${rangeWord(range)}: ${fmtInt(totalR)} routed, ${fmtInt(totalF)} failed, peak ${fmtInt(peak)} a minute.`;
    const chart = svg('svg', { class: 'chart', viewBox: `0 0 1440 ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label }, parts);
    return { chart, from, end, range, top, inWindow, totalR, totalF, peak };
  }

  function niceCeil(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
    return 10 * p;
  }

  function rangeWord(range) {
    return range === 60 ? 'hour' : range === 360 ? '6 hours' : '24 hours';
  }

  // ---------------------------------------------------------------- rendering: tenant rows

  const rows = new Map(); // key -> {tr, cells...}

  function ordered() {
    const list = app.tenants.map((t, i) => ({ t, i, m: app.monitors.get(key(t.name)) }));
    if (app.sort === 'name') list.sort((a, b) => a.t.name.localeCompare(b.t.name));
    if (app.sort === 'severity')
      list.sort((a, b) => LEVEL_RANK[a.m ? a.m.level : 'unknown'] - LEVEL_RANK[b.m ? b.m.level : 'unknown'] || a.i - b.i);
    return list;
  }

  function buildRow(t) {
    const k = key(t.name);
    const status = el('div', { class: 'status' });
    const details = el('button', {
      type: 'button',
      class: 'btn small',
      'aria-expanded': 'false',
      'aria-controls': 'detail',
      text: 'Details',
      'aria-label': `Details of ${t.name}`,
      onclick: () => toggleDetail(k),
    });
    const del = el('button', {
      type: 'button',
      class: 'btn small danger',
      text: 'Delete',
      'aria-label': `Delete ${t.name}`,
      onclick: () => deleteTenant(k),
    });
    const tr = el(
      'tr',
      { dataset: { tenant: t.name } },
      el('td', { class: 'c-num' }),
      el('td', { class: 'name', text: t.name }),
      el('td', { class: 'addr', text: t.address.includes(':') ? `[${t.address}]` : t.address }),
      el('td', { class: 'port', text: String(t.port) }),
      el('td', { class: 'c-status' }, status),
      el('td', { class: 'c-bar' }),
      el('td', { class: 'actions' }, details, del),
    );
    const r = { tr, status, bar: tr.children[5], num: tr.children[0], details, del };
    rows.set(k, r);
    return r;
  }

  function renderRows() {
    const body = $('tenant-rows');
    const seen = new Set();
    const list = ordered();
    list.forEach(({ t }, n) => {
      const k = key(t.name);
      seen.add(k);
      const r = rows.get(k) || buildRow(t);
      r.num.textContent = String(n + 1);
      if (body.children[n] !== r.tr) body.insertBefore(r.tr, body.children[n] || null);
    });
    for (const [k, r] of rows) {
      if (!seen.has(k)) {
        r.tr.remove();
        rows.delete(k);
      }
    }
    $('empty').hidden = app.tenants.length > 0;
    $('tenant-table').hidden = app.tenants.length === 0;
    for (const m of app.monitors.values()) updateRow(m);
    updateSummary();
  }

  function updateRow(m) {
    const r = rows.get(key(m.tenant.name));
    if (!r) return;
    const d = derive(m);
    if (d.level !== m.level) {
      const was = m.level;
      m.level = d.level;
      m.levelAt = Date.now();
      if (was !== 'unknown') announce(`${m.tenant.name} is now ${LEVEL_WORD[d.level]}: ${d.message}`);
      if (app.sort === 'severity') queueMicrotask(renderRows);
    }
    r.tr.className = `s-${d.level}${app.selected === key(m.tenant.name) ? ' selected' : ''}`;
    r.tr.dataset.state = d.level;
    r.status.replaceChildren(
      dotSvg(d.level),
      el(
        'div',
        { class: 'status-text' },
        el('span', { class: 'status-msg' }, el('span', { class: 'state-word', text: LEVEL_WORD[d.level] }), ' · ', el('span', { class: 'msg', text: d.message })),
        el('span', { class: 'status-meta' }),
      ),
    );
    r.d = d;
    updateRowMeta(m);
    r.bar.replaceChildren(m.hb || m.error ? stateBar(m, 'minibar', 10) : el('span', { class: 'hint', text: '—' }));
  }

  function updateRowMeta(m) {
    const r = rows.get(key(m.tenant.name));
    if (!r || !r.d) return;
    const d = r.d;
    r.tr.dataset.attempts = String(m.attempts);
    r.tr.dataset.failures = String(m.failures);
    r.tr.dataset.nextDelay = String(m.nextDelay);
    const meta = r.status.querySelector('.status-meta');
    if (!meta) return;
    const bits = [];
    if (m.error && !m.hbAt) bits.push(`no answer since ${fmtWhen(d.since, m.now())}, when this page began polling it`);
    else if (d.since !== null && d.level !== 'unknown') bits.push(d.seen ? `for at least ${fmtDur(m.now() - d.since)} (seen since ${fmtWhen(d.since, m.now())})` : `for ${fmtDur(m.now() - d.since)} (since ${fmtWhen(d.since, m.now())})`);
    if (d.detail) bits.push(d.detail);
    if (d.level === 'degraded' && d.reasons.length > 1) bits.push(`+${d.reasons.length - 1} more`);
    if (m.error && m.nextAt && !m.busy) bits.push(`next try in ${fmtDur(Math.max(0, m.nextAt - Date.now()) + 999)}`);
    meta.textContent = bits.join(' · ');
  }

  function updateSummary() {
    const counts = { down: 0, degraded: 0, unknown: 0, up: 0 };
    for (const t of app.tenants) {
      const m = app.monitors.get(key(t.name));
      counts[m ? m.level : 'unknown']++;
    }
    const s = $('summary');
    if (!app.tenants.length) {
      s.replaceChildren(el('span', { class: 'hint', text: 'No tenants' }));
      document.title = 'SORS Status Dashboard';
      return;
    }
    s.replaceChildren(
      ...['down', 'degraded', 'up', 'unknown']
        .filter((l) => counts[l] || l === 'up' || l === 'down')
        .map((l) => el('span', { class: `count s-${l}`, dataset: { level: l } }, dotSvg(l), el('b', { text: String(counts[l]) }), ` ${LEVEL_WORD[l].toLowerCase()}`)),
    );
    const bad = [];
    if (counts.down) bad.push(`${counts.down} down`);
    if (counts.degraded) bad.push(`${counts.degraded} degraded`);
    document.title = `${bad.length ? bad.join(', ') : `All ${counts.up} up`} — SORS Status Dashboard`;
  }

  let announceTimer = null;
  function announce(text) {
    const live = $('live');
    clearTimeout(announceTimer);
    live.textContent = text;
    announceTimer = setTimeout(() => (live.textContent = ''), 10000);
  }

  // ---------------------------------------------------------------- rendering: the detail panel

  function toggleDetail(k) {
    if (app.selected === k) return closeDetail();
    app.selected = k;
    app.chartCursor = null;
    for (const [rk, r] of rows) {
      r.details.setAttribute('aria-expanded', String(rk === k));
      r.details.textContent = rk === k ? 'Hide' : 'Details';
    }
    const m = app.monitors.get(k);
    $('detail').hidden = false;
    renderDetail();
    for (const mm of app.monitors.values()) updateRow(mm);
    $('detail').scrollIntoView({ block: 'start' });
    $('detail-h').focus({ preventScroll: true });
    if (m) {
      m.histAt = 0;
      pollNow(m);
    }
  }

  function closeDetail() {
    const k = app.selected;
    app.selected = null;
    $('detail').hidden = true;
    for (const r of rows.values()) {
      r.details.setAttribute('aria-expanded', 'false');
      r.details.textContent = 'Details';
    }
    for (const mm of app.monitors.values()) updateRow(mm);
    const r = k && rows.get(k);
    if (r) r.details.focus();
  }

  function stat(keyName, label, value, sub, opts) {
    const o = opts || {};
    return el(
      'div',
      { class: `stat${o.cls ? ' ' + o.cls : ''}`, dataset: { stat: keyName, value: o.raw === undefined || o.raw === null ? '' : String(o.raw) } },
      el('dt', { text: label }),
      el('dd', null, el('span', { class: `v${o.text ? ' text' : ''}${o.mono ? ' mono' : ''}`, text: value }), sub ? el('span', { class: 'sub', text: sub }) : null),
    );
  }

  function renderDetail() {
    const m = app.selected && app.monitors.get(app.selected);
    if (!m) return;
    const t = m.tenant;
    const d = derive(m);
    const now = m.now();
    const hb = m.hb || {};
    const sf = hb.salesforce || {};
    const cic = hb.cic || {};
    const routing = hb.routing || {};
    const router = routing.router || {};
    $('detail-h').textContent = `${t.name} — ${hostPort(t)}`;
    $('detail').dataset.tenant = t.name;
    $('detail-status').className = `detail-status s-${d.level}`;
    $('detail-status').replaceChildren(
      dotSvg(d.level),
      el(
        'span',
        null,
        el('span', { class: 'state-word', text: LEVEL_WORD[d.level] }),
        ' · ',
        el('span', { class: 'msg', text: d.message }),
        d.since !== null && d.level !== 'unknown' ? el('span', { class: 'hint', text: ` · for ${fmtDur(now - d.since)}` }) : null,
        m.hbAt ? el('span', { class: 'hint', text: ` · heartbeat ${fmtClockSec(m.hbAt)}` }) : null,
      ),
    );

    const reasons = d.reasons.filter((r) => d.level !== 'down' || !m.error || r.kind === 'unreachable');
    $('detail-reasons').replaceChildren(
      ...(reasons.length
        ? [el(
            'ul',
            { 'aria-label': 'Active alerts' },
            reasons.map((r) =>
              el(
                'li',
                { class: r.down ? 'r-down' : '', dataset: { kind: r.kind } },
                r.message,
                r.since !== null ? el('span', { class: 'since', text: `since ${fmtWhen(r.since, now)} (${fmtDur(now - r.since)})` }) : null,
              ),
            ),
          )]
        : []),
    );

    const stats = [];
    const have = !!m.hb;
    const list = minutes(m);
    const dayStart = Math.max(localMidnight(now), 0);
    $('detail-stats').dataset.dayStart = String(dayStart);
    const today = list.filter((x) => x.t >= dayStart);
    const routedToday = m.hist ? today.reduce((a, x) => a + x.routed, 0) : null;
    const failedToday = m.hist ? today.reduce((a, x) => a + x.failed, 0) : null;
    const histStart = m.hist ? time(m.hist.started_at) : null;
    const todaySub = (total) =>
      histStart !== null && histStart > dayStart ? `since the service started at ${fmtClock(histStart)}` : `since 00:00 · ${fmtInt(total)} since start`;
    const backlog = num(router.waiting_rows);
    const inFlight = num(router.in_flight);
    stats.push(stat('backlog', 'Backlog', fmtInt(backlog), 'rows waiting', { raw: backlog, cls: backlog > 50 ? 'warn' : '' }));
    stats.push(stat('in_flight', 'In flight', fmtInt(inFlight), `${fmtInt(num(router.live_interactions))} live interactions`, { raw: inFlight }));
    stats.push(stat('routed_today', 'Routed today', m.hist ? fmtInt(routedToday) : '—', m.hist ? todaySub(num(routing.routed)) : `${fmtInt(num(routing.routed))} since start`, { raw: routedToday }));
    stats.push(
      stat('failed_today', 'Failed today', m.hist ? fmtInt(failedToday) : '—', m.hist ? todaySub(num(routing.failed)) : `${fmtInt(num(routing.failed))} since start`, {
        raw: failedToday,
        cls: failedToday > 0 ? 'warn' : '',
      }),
    );
    let ttr = null;
    for (let i = list.length - 1; i >= 0; i--) if (list[i].p50 !== null) { ttr = list[i]; break; }
    stats.push(
      stat(
        'ttr',
        'Time to route',
        ttr ? `${fmtMs(ttr.p50)} / ${fmtMs(ttr.p95)}` : '—',
        ttr ? `p50 / p95 in the minute of ${fmtClock(ttr.t)} · mean ${fmtMs(num(routing.mean_time_to_route_ms))}` : `no rows routed yet${num(routing.mean_time_to_route_ms) !== null ? ` · mean ${fmtMs(routing.mean_time_to_route_ms)}` : ''}`,
        { raw: ttr ? `${ttr.p50}/${ttr.p95}` : null, text: true },
      ),
    );
    const lastPush = time(sf.last_push_at);
    stats.push(
      stat('last_push', 'Last push', lastPush !== null ? `${fmtDur(now - lastPush)} ago` : have ? 'none yet' : '—', `${fmtInt(num(sf.pushes))} pushes · streaming ${sf.streaming || '—'}`, {
        raw: sf.last_push_at || null,
        text: true,
      }),
    );
    const used = num(sf.api_used);
    const max = num(sf.api_max);
    const frac = used !== null && max ? used / max : null;
    stats.push(
      stat('api', 'Salesforce API used', frac !== null ? `${Math.floor(frac * 100)}%` : '—', used !== null && max ? `${fmtInt(used)} of ${fmtInt(max)} today` : 'not reported yet', {
        raw: used !== null && max ? `${used}/${max}` : null,
        cls: frac !== null && frac >= API_WARN ? 'warn' : '',
      }),
    );
    let switchovers = null;
    if (m.hist) switchovers = m.hist.incidents.filter((i) => i.kind === 'switchover').reduce((a, i) => a + (num(i.count) || 1), 0);
    else if (Array.isArray(hb.alerts)) switchovers = hb.alerts.filter((a) => a.kind === 'switchover').length;
    stats.push(
      stat('switchovers', 'Switchovers', fmtInt(switchovers), cic.connected ? `on ${cic.server || 'CIC'}${cic.backup ? ' (backup)' : ''}` : have ? 'CIC not connected' : '', {
        raw: switchovers,
      }),
    );
    stats.push(stat('relogins', 'Re-logins', fmtInt(num(sf.relogins)), 'to Salesforce, since start', { raw: num(sf.relogins) }));
    const alertCount = m.error ? 1 : d.reasons.length;
    stats.push(stat('alerts', 'Active alerts', String(alertCount), alertCount ? 'listed above' : 'none', { raw: alertCount, cls: alertCount ? (d.level === 'down' ? 'bad' : 'warn') : '' }));
    const started = time(hb.started_at);
    stats.push(
      stat('service', 'Service', hb.version ? `sors ${hb.version}` : '—', started !== null ? `started ${fmtWhen(started, now)} (${fmtDur(now - started)} ago)` : '', {
        raw: hb.version || null,
        text: true,
      }),
    );
    stats.push(
      stat('salesforce', 'Salesforce', sf.logged_in ? sf.org_id || 'logged in' : have ? 'not logged in' : '—', sf.instance_url || sf.last_error || '', {
        text: true,
        mono: !!(sf.logged_in && sf.org_id),
        cls: have && !sf.logged_in ? 'warn' : '',
      }),
    );
    $('detail-stats').replaceChildren(...stats);

    // State bar
    const barWrap = $('detail-bar');
    barWrap.replaceChildren(stateBar(m, 'bar', 24), incidentMarks(m, now - DAY, now), axis(now - DAY, now, 3));
    $('bar-legend').replaceChildren(
      ...['up', 'degraded', 'down', 'nodata'].map((l) =>
        el(
          'span',
          { class: 'key' },
          svg('svg', { viewBox: '0 0 10 10', 'aria-hidden': 'true' }, svg('rect', { class: `seg-${l}`, width: 10, height: 10 })),
          SEG_WORD[l],
        ),
      ),
    );
    const note = [];
    if (histStart !== null) {
      note.push(`History starts at process start: this service started ${fmtWhen(histStart, now)} (${fmtDur(now - histStart)} ago) and keeps it in memory only; earlier time shows as no history.`);
      if (m.hist.transitions_dropped > 0) note.push(`${fmtInt(m.hist.transitions_dropped)} older state changes were dropped (the service keeps ${m.hist.limits ? m.hist.limits.transitions : 'a bounded number of'}).`);
    } else if (m.histMissing) note.push('This service does not serve /history (an older version): only the current heartbeat and its recent alerts are shown.');
    else if (m.histError) note.push(`History not available: ${m.histError}.`);
    else note.push('History starts at process start; waiting for the first /history answer.');
    if (m.downs.length) note.push('Red periods include the times this page could not reach the service.');
    $('history-note').textContent = note.join(' ');

    renderChart(m);
    renderEvents(m, now);
  }

  /** The chart's range in minutes: the one chosen, else the shortest covering the history. */
  function chartRangeOf(m) {
    if (app.chartRange !== null) return app.chartRange;
    const started = m.hist ? time(m.hist.started_at) : null;
    if (started === null) return 1440;
    const age = m.now() - started;
    return age < 60 * MINUTE ? 60 : age < 360 * MINUTE ? 360 : 1440;
  }

  function renderChart(m) {
    const range = chartRangeOf(m);
    for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(Number(b.dataset.range) === range));
    const c = rowsChart(m, range);
    $('chart-h').textContent = `Rows routed per minute, last ${rangeWord(range)}`;
    const wrap = $('detail-chart');
    wrap.tabIndex = 0;
    wrap.setAttribute('aria-describedby', 'chart-readout');
    wrap.replaceChildren(c.chart, el('span', { class: 'chart-y', 'aria-hidden': 'true', text: `${fmtInt(c.top)}/min` }), axis(c.from, c.end, range <= 60 ? 0.25 : range <= 360 ? 1 : 3));
    wrap._chart = c;
    let text;
    if (app.chartCursor !== null) {
      const x = c.inWindow.find((v) => v.t === app.chartCursor);
      const t = app.chartCursor;
      text = x
        ? `${fmtWhen(t, m.now())}: ${fmtInt(x.routed)} routed, ${fmtInt(x.failed)} failed, backlog ${x.backlog === null ? '—' : fmtInt(x.backlog)}, p50 ${fmtMs(x.p50)}, p95 ${fmtMs(x.p95)}`
        : `${fmtWhen(t, m.now())}: no history`;
    } else {
      const peakAt = c.inWindow.reduce((a, x) => (a === null || x.routed + x.failed > a.routed + a.failed ? x : a), null);
      text = m.hist
        ? `${fmtInt(c.totalR)} routed and ${fmtInt(c.totalF)} failed in the last ${rangeWord(range)}${peakAt && c.peak ? `; peak ${fmtInt(c.peak)} a minute at ${fmtClock(peakAt.t)}` : ''}. Point at the chart or focus it and use the arrow keys for one minute's numbers.`
        : 'No history yet.';
    }
    $('chart-readout').textContent = text;
  }

  function chartPointer(ev) {
    const wrap = $('detail-chart');
    const c = wrap._chart;
    if (!c) return;
    const svgEl = wrap.querySelector('svg.chart');
    const rect = svgEl.getBoundingClientRect();
    const f = Math.min(0.9999, Math.max(0, (ev.clientX - rect.left) / rect.width));
    app.chartCursor = c.from + Math.floor(f * c.range) * MINUTE;
    const m = app.monitors.get(app.selected);
    if (m) renderChart(m);
  }

  function chartKey(ev) {
    const wrap = $('detail-chart');
    const c = wrap._chart;
    const m = app.monitors.get(app.selected);
    if (!c || !m) return;
    const last = c.end - MINUTE;
    let cur = app.chartCursor === null ? last : app.chartCursor;
    const step = ev.shiftKey ? 10 * MINUTE : MINUTE;
    if (ev.key === 'ArrowLeft') cur -= step;
    else if (ev.key === 'ArrowRight') cur += step;
    else if (ev.key === 'Home') cur = c.from;
    else if (ev.key === 'End') cur = last;
    else if (ev.key === 'Escape' && app.chartCursor !== null) cur = null;
    else return;
    ev.preventDefault();
    ev.stopPropagation();
    app.chartCursor = cur === null ? null : Math.min(last, Math.max(c.from, cur));
    renderChart(m);
  }

  function renderEvents(m, now) {
    const items = [];
    if (m.hist) {
      for (const i of m.hist.incidents) {
        const at = time(i.at);
        if (at === null) continue;
        items.push({ at, cls: 'k-incident', kind: String(i.kind), label: INCIDENT_LABELS[i.kind] || titleCase(i.kind), message: String(i.message || ''), count: num(i.count) || 1, last: time(i.last_at) });
      }
      for (const t of m.hist.transitions) {
        const at = time(t.at);
        if (at === null) continue;
        items.push({ at, cls: `k-${t.status}`, kind: `state_${t.status}`, label: `→ ${LEVEL_WORD[t.status] || t.status}`, message: String(t.message || t.reason || '') });
      }
    } else if (m.hb && Array.isArray(m.hb.alerts)) {
      for (const a of m.hb.alerts) {
        const at = time(a.at);
        if (at === null) continue;
        const kind = a.kind === 'push_topic' ? 'push_topic_repaired' : a.kind === 'failed_row' ? 'failed_rows' : String(a.kind);
        items.push({ at, cls: 'k-incident', kind, label: INCIDENT_LABELS[kind] || titleCase(kind), message: String(a.message || '') });
      }
    }
    for (const e of m.events) {
      items.push({ at: e.at, cls: e.kind === 'unreachable' ? 'k-down' : e.kind === 'reachable' ? 'k-up' : 'k-incident', kind: `page_${e.kind}`, label: e.kind === 'restarted' ? 'Restarted' : e.kind === 'unreachable' ? 'Unreachable' : 'Reachable', message: e.message });
    }
    items.sort((a, b) => b.at - a.at);
    const shown = items.slice(0, 300);
    $('events-count').textContent = items.length ? `(${items.length}${items.length > shown.length ? `, newest ${shown.length} shown` : ''}, newest first)` : '';
    $('detail-events').replaceChildren(
      ...(shown.length
        ? shown.map((i) =>
            el(
              'li',
              { dataset: { kind: i.kind } },
              el('time', { datetime: new Date(i.at).toISOString(), title: isoTitle(i.at), text: fmtWhen(i.at, now) }),
              el('span', { class: `kind ${i.cls}`, text: i.label }),
              el('span', { class: 'what' }, i.message, i.count > 1 ? el('span', { class: 'count', text: `×${i.count}, last ${fmtWhen(i.last, now)}` }) : null),
            ),
          )
        : [el('li', null, el('span', { class: 'empty-row', text: 'Nothing yet. The service records incidents and state changes from the moment it starts.' }))]),
    );
  }

  function titleCase(s) {
    const t = String(s).replace(/_/g, ' ');
    return t.charAt(0).toUpperCase() + t.slice(1);
  }

  function update(m) {
    updateRow(m);
    updateSummary();
    if (app.selected === key(m.tenant.name)) renderDetail();
  }

  // ---------------------------------------------------------------- notices and undo

  function notify(text, undo) {
    $('notice').hidden = false;
    $('notice-text').textContent = text;
    $('undo').hidden = !undo;
    $('undo').textContent = undo ? undo : 'Undo';
  }

  function clearNotice() {
    $('notice').hidden = true;
    $('notice-text').textContent = '';
    $('undo').hidden = true;
  }

  function showLoadError(fileName, problems) {
    const box = $('load-error');
    const shown = problems.slice(0, 8);
    box.replaceChildren(
      el('p', null, el('strong', { text: `Could not load "${fileName}".` }), ' Nothing was changed.'),
      shown.length === 1 ? el('p', { text: shown[0] }) : el('ul', null, shown.map((p) => el('li', { text: p }))),
      problems.length > shown.length ? el('p', { text: `…and ${problems.length - shown.length} more problems.` }) : null,
      el('p', { class: 'hint', text: 'Expected our JSON format ({"sors_dashboard": 1, "tenants": [{"name", "address", "port"}]}) or a plain list of organization name, server address and port. See dashboard/README.md.' }),
    );
    box.hidden = false;
  }

  function doUndo() {
    const u = app.undo.pop();
    if (!u) return;
    if (u.type === 'delete') {
      if (app.tenants.some((t) => key(t.name) === key(u.tenant.name))) {
        notify(`Cannot restore "${u.tenant.name}": a tenant with that name was added since.`);
        return;
      }
      app.tenants.splice(Math.min(u.index, app.tenants.length), 0, u.tenant);
      startMonitor(u.tenant);
      notify(`Restored "${u.tenant.name}".`);
    } else if (u.type === 'load') {
      setTenants(u.previous, u.pollSeconds);
      notify(`Restored the previous configuration (${u.previous.length} tenants).`);
    }
    save();
    renderRows();
    const r = u.type === 'delete' && rows.get(key(u.tenant.name));
    if (r) r.del.focus();
    if (app.undo.length) {
      const next = app.undo[app.undo.length - 1];
      notify($('notice-text').textContent, next.type === 'delete' ? `Undo delete of "${next.tenant.name}"` : 'Undo load');
    }
  }

  // ---------------------------------------------------------------- changing the list

  function startMonitor(t) {
    const k = key(t.name);
    const old = app.monitors.get(k);
    if (old) old.stop();
    const m = new Monitor(t);
    app.monitors.set(k, m);
    m.start();
  }

  function setTenants(list, pollSeconds) {
    for (const m of app.monitors.values()) m.stop();
    app.monitors.clear();
    if (app.selected && !list.some((t) => key(t.name) === app.selected)) closeDetail();
    app.tenants = list.map((t) => ({ ...t }));
    if (POLL_CHOICES.includes(pollSeconds)) {
      app.pollSeconds = pollSeconds;
      $('poll').value = String(pollSeconds);
    }
    for (const t of app.tenants) startMonitor(t);
    if (app.selected) renderDetail();
  }

  function deleteTenant(k) {
    const index = app.tenants.findIndex((t) => key(t.name) === k);
    if (index < 0) return;
    const [t] = app.tenants.splice(index, 1);
    const m = app.monitors.get(k);
    if (m) m.stop();
    app.monitors.delete(k);
    if (app.selected === k) {
      app.selected = null;
      $('detail').hidden = true;
    }
    app.undo.push({ type: 'delete', tenant: t, index });
    if (app.undo.length > 20) app.undo.shift();
    save();
    renderRows();
    notify(`Deleted "${t.name}" (${hostPort(t)}).`, `Undo delete of "${t.name}"`);
    $('undo').focus();
  }

  function setFieldError(id, msg) {
    const input = $(id);
    const err = $(`${id}-err`);
    err.textContent = msg || '';
    if (msg) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  function onAdd(ev) {
    ev.preventDefault();
    const n = checkName($('f-name').value);
    const a = checkAddress($('f-address').value);
    const p = checkPort($('f-port').value);
    setFieldError('f-name', n.error);
    setFieldError('f-address', a.error);
    setFieldError('f-port', p.error);
    let firstBad = n.error ? 'f-name' : a.error ? 'f-address' : p.error ? 'f-port' : null;
    if (!firstBad) {
      const t = { name: n.value, address: a.value, port: p.value };
      const dup = checkDuplicate(t, app.tenants);
      if (dup) {
        const id = dup.field === 'name' ? 'f-name' : 'f-address';
        setFieldError(id, dup.error);
        firstBad = id;
      } else {
        app.tenants.push(t);
        startMonitor(t);
        save();
        renderRows();
        $('add-form').reset();
        notify(`Added "${t.name}" (${hostPort(t)}).`);
        $('f-name').focus();
        return;
      }
    }
    $(firstBad).focus();
  }

  async function copyConfig() {
    const text = configText();
    let ok = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        ok = true;
      } catch {
        ok = false;
      }
    }
    if (!ok) {
      const ta = el('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      try {
        ok = document.execCommand('copy');
      } catch {
        ok = false;
      }
      ta.remove();
      $('copy').focus();
    }
    notify(ok ? `Copied the configuration of ${app.tenants.length} tenant${app.tenants.length === 1 ? '' : 's'} to the clipboard.` : 'The browser did not allow copying to the clipboard; use Download JSON instead.');
  }

  function downloadConfig() {
    const blob = new Blob([configText()], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: 'sors-dashboard.json', class: 'visually-hidden' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    notify(`Downloaded sors-dashboard.json (${app.tenants.length} tenant${app.tenants.length === 1 ? '' : 's'}).`);
  }

  async function loadFile(file) {
    $('load-error').hidden = true;
    if (file.size > MAX_FILE) return showLoadError(file.name, ['The file is larger than 1 MB; a dashboard configuration is a few kilobytes.']);
    let text;
    try {
      text = await file.text();
    } catch {
      return showLoadError(file.name, ['The browser could not read the file.']);
    }
    let parsed;
    try {
      parsed = parseConfig(text);
    } catch (e) {
      return showLoadError(file.name, e instanceof ConfigError ? e.problems : [String(e)]);
    }
    app.undo.push({ type: 'load', previous: app.tenants.map((t) => ({ ...t })), pollSeconds: app.pollSeconds });
    const before = app.tenants.length;
    setTenants(parsed.tenants, parsed.pollSeconds);
    save();
    renderRows();
    notify(`Loaded ${parsed.tenants.length} tenant${parsed.tenants.length === 1 ? '' : 's'} from "${file.name}"${before ? ` (replacing ${before})` : ''}.`, 'Undo load');
  }

  async function addSelf() {
    const address = location.hostname;
    const port = Number(location.port || (location.protocol === 'https:' ? 443 : 80));
    let name = address;
    try {
      const hb = await fetchJson(`${location.origin}/heartbeat`, 3000, {});
      if (hb && typeof hb.tenant === 'string' && hb.tenant.trim()) name = hb.tenant.trim();
    } catch {
      /* keep the host name */
    }
    const a = checkAddress(address);
    if (a.error) return notify(a.error);
    const t = { name, address: a.value, port };
    if (location.protocol === 'https:') t.scheme = 'https';
    if (checkDuplicate(t, app.tenants)) return;
    app.tenants.push(t);
    startMonitor(t);
    save();
    renderRows();
    notify(`Added "${t.name}" (${hostPort(t)}), the service serving this page.`);
  }

  // ---------------------------------------------------------------- start

  function init() {
    ensureDefs();
    restore();
    $('poll').value = String(app.pollSeconds);
    $('sort').value = app.sort;
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
    const off = -new Date().getTimezoneOffset();
    $('tz').textContent = `${tz} (UTC${off >= 0 ? '+' : '−'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)})`;
    if (location.protocol === 'http:' || location.protocol === 'https:') {
      $('origin-hint').textContent = `This page is served by ${location.host}.`;
      const b = $('add-self');
      b.hidden = false;
      b.textContent = `Add the service serving this page (${location.host})`;
      b.addEventListener('click', addSelf);
    }
    $('add-form').addEventListener('submit', onAdd);
    for (const id of ['f-name', 'f-address', 'f-port']) $(id).addEventListener('input', () => setFieldError(id, null));
    $('copy').addEventListener('click', copyConfig);
    $('download').addEventListener('click', downloadConfig);
    $('load').addEventListener('click', () => $('load-file').click());
    $('load-file').addEventListener('change', (ev) => {
      const f = ev.target.files && ev.target.files[0];
      ev.target.value = '';
      if (f) loadFile(f);
    });
    $('undo').addEventListener('click', doUndo);
    $('notice-close').addEventListener('click', () => {
      clearNotice();
      $('load-error').hidden = true;
    });
    $('poll').addEventListener('change', () => {
      app.pollSeconds = Number($('poll').value);
      save();
      restartAll();
    });
    $('sort').addEventListener('change', () => {
      app.sort = $('sort').value;
      save();
      renderRows();
    });
    $('retry').addEventListener('click', () => {
      const m = app.selected && app.monitors.get(app.selected);
      if (m) {
        m.histAt = 0;
        pollNow(m);
      }
    });
    $('detail-close').addEventListener('click', closeDetail);
    $('detail').addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') closeDetail();
    });
    for (const b of document.querySelectorAll('[data-range]')) {
      b.addEventListener('click', () => {
        app.chartRange = Number(b.dataset.range);
        app.chartCursor = null;
        const m = app.monitors.get(app.selected);
        if (m) renderChart(m);
      });
    }
    const chart = $('detail-chart');
    chart.addEventListener('mousemove', chartPointer);
    chart.addEventListener('mouseleave', () => {
      app.chartCursor = null;
      const m = app.monitors.get(app.selected);
      if (m) renderChart(m);
    });
    chart.addEventListener('keydown', chartKey);
    window.addEventListener('storage', (ev) => {
      if (ev.key !== STORAGE_KEY) return;
      restore();
      setTenants(app.tenants, app.pollSeconds);
      renderRows();
    });
    for (const t of app.tenants) startMonitor(t);
    renderRows();
    // Durations ("for 3 min", "next try in 8 s") move on between polls.
    setInterval(() => {
      for (const m of app.monitors.values()) updateRowMeta(m);
    }, 1000);
    setInterval(() => {
      for (const m of app.monitors.values()) updateRow(m);
      if (app.selected) renderDetail();
    }, 30000);
    document.documentElement.dataset.ready = 'true';
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
