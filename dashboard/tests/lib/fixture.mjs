// A fixture tenant: a small HTTP server on 127.0.0.1 serving /heartbeat and /history documents
// shaped like the sors service's (service/sors/src/status.rs and history.rs), with CORS, that the
// tests can stop, restart, slow down and change. Also a static server for the dashboard files
// with the Content-Security-Policy the service will use.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const MINUTE = 60000;

export const MSG_UP = 'Successfully connected to CIC Server and Salesforce';

function iso(t) {
  return t === null || t === undefined ? null : new Date(t).toISOString();
}

/** Deterministic pseudo-random numbers (xorshift32), so screenshots are the same every run. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

export class FixtureTenant {
  /**
   * @param {string} name tenant name
   * @param {object} opts
   *   typedReasons: include the heartbeat's `reasons` array (the newer service); default true
   *   startedMinutesAgo: when the "process" started; default 90
   *   seed: random seed for the generated history
   *   traffic: rows a minute on average in the generated history (0 for none); default 6
   */
  constructor(name, opts = {}) {
    this.name = name;
    this.opts = { typedReasons: true, startedMinutesAgo: 90, seed: 7, traffic: 6, ...opts };
    this.address = '127.0.0.1';
    this.port = null;
    this.server = null;
    this.sockets = new Set();
    this.delayMs = 0;
    this.pending = new Set();
    this.requests = { heartbeat: 0, history: 0 };
    this.historyStatus = 200;
    this.reset();
  }

  get heartbeatUrl() {
    return `http://${this.address}:${this.port}/heartbeat`;
  }

  get historyUrl() {
    return `http://${this.address}:${this.port}/history`;
  }

  // ------------------------------------------------------------------ the documents' state

  reset() {
    const now = Date.now();
    const started = now - this.opts.startedMinutesAgo * MINUTE - 17000;
    this.s = {
      startedAt: started,
      status: 'up',
      message: MSG_UP,
      reasons: [],
      alerts: [],
      sf: {
        logged_in: true,
        org_id: '00D5g000004XyZ1EAK',
        instance_url: 'https://acme.my.salesforce.com',
        streaming: 'subscribed',
        last_push_at: now - 12000,
        pushes: 0,
        api_used: 18234,
        api_max: 100000,
        api_calls: 0,
        relogins: 0,
        last_error: null,
        monitored_queues: 4,
      },
      cic: { connected: true, server: 'cic1.acme.test', backup: false, sessions: 1, watched_workgroups: ['Support', 'Billing', 'Sales'], last_error: null },
      routing: { routed: 0, closed: 0, failed: 0, retries: 0, disconnected: 0, push_lost_rows: 0, sweeps: 0, write_calls: 0, last_time_to_route_ms: null, mean_time_to_route_ms: null },
      router: { known_rows: 0, waiting_rows: 0, in_flight: 0, live_interactions: 0, cic_ready: true, watched: ['Support', 'Billing', 'Sales'] },
      minutes: new Map(), // minute number -> {routed, failed, backlog, p50, p95}
      transitions: [],
      incidents: [],
    };
    this.transition(started, 'degraded', null, 'Starting');
    this.transition(started + 2500, 'up', null, MSG_UP);
    this.generateTraffic(started, now);
    if (this.opts.story) this.story(now);
  }

  /** A night to look back on: a switchover, a push loss the sweep found, a re-login, failed rows. */
  story(now) {
    const s = this.s;
    const at = (minutesAgo) => now - minutesAgo * MINUTE;
    const quiet = (from, to, backlog) => {
      for (let m = Math.floor(from / MINUTE), i = 0; m <= Math.floor(to / MINUTE); m++, i++) {
        const b = s.minutes.get(m);
        if (!b) continue;
        s.routing.routed -= b.routed;
        b.routed = 0;
        b.p50 = null;
        b.p95 = null;
        b.backlog = backlog(i);
      }
    };
    const sw = at(432);
    this.incident(sw, 'cic_lost', 'CIC connection lost: cic1.acme.test stopped answering');
    this.transition(sw, 'degraded', 'cic_reconnecting', 'Reconnecting to CIC (switchover in progress)');
    quiet(sw, sw + 3 * MINUTE, (i) => 4 + i * 5);
    this.incident(sw + 3 * MINUTE + 20000, 'switchover', 'CIC switchover: 2 interaction(s) lost, 2 being re-routed, 0 request(s) raised again');
    this.transition(sw + 3 * MINUTE + 20000, 'up', null, MSG_UP);
    s.cic.backup = true;
    s.cic.server = 'cic2.acme.test';
    s.cic.sessions = 2;
    const pl = at(245);
    const plMsg = 'push notifications appear lost: the sweep found 3 row(s) no push announced';
    this.incident(pl, 'push_lost', plMsg);
    this.transition(pl, 'degraded', 'push_loss_suspected', plMsg);
    quiet(pl - 6 * MINUTE, pl, (i) => 2 + i * 3);
    this.incident(pl + 50000, 'push_topic_repaired', 'PushTopic differed and has been repaired');
    this.transition(pl + 70000, 'up', null, MSG_UP);
    const rl = at(150);
    this.incident(rl, 'relogin', 'Re-logged in to Salesforce');
    s.sf.relogins = 1;
    const fr = at(71);
    this.incident(fr, 'failed_rows', 'row a0B5g00000Xk2QEAS failed: the case has no queue');
    const last = s.incidents[s.incidents.length - 1];
    last.count = 2;
    last.last_at = fr + 20000;
    s.incidents.sort((a, b) => a.at - b.at);
    s.transitions.sort((a, b) => a.at - b.at);
    s.alerts = s.incidents
      .filter((i) => i.kind !== 'cic_lost')
      .map((i) => ({ kind: i.kind === 'failed_rows' ? 'failed_row' : i.kind === 'push_topic_repaired' ? 'push_topic' : i.kind, message: i.message, at: i.at }))
      .reverse();
  }

  generateTraffic(from, to) {
    const r = rng(this.opts.seed);
    const s = this.s;
    const rate = this.opts.traffic;
    let ttrSum = 0;
    let ttrN = 0;
    for (let m = Math.floor(from / MINUTE); m <= Math.floor(to / MINUTE); m++) {
      if (!rate) {
        s.minutes.set(m, { routed: 0, failed: 0, backlog: 0, p50: null, p95: null });
        continue;
      }
      const hour = new Date(m * MINUTE).getHours();
      const office = hour >= 8 && hour < 18 ? 1.6 : 0.35;
      const routed = Math.max(0, Math.round(rate * office * (0.4 + r() * 1.2)));
      const failed = r() < 0.02 ? 1 : 0;
      const p50 = routed ? Math.round(600 + r() * 500) : null;
      const p95 = routed ? Math.round(p50 * (1.3 + r() * 1.5)) : null;
      s.minutes.set(m, { routed, failed, backlog: Math.round(r() * 3), p50, p95 });
      s.routing.routed += routed;
      s.routing.failed += failed;
      if (routed) {
        ttrSum += p50 * routed;
        ttrN += routed;
      }
    }
    s.sf.pushes = s.routing.routed + 3;
    s.sf.api_calls = s.routing.routed * 4;
    s.routing.write_calls = s.routing.routed * 2;
    s.routing.mean_time_to_route_ms = ttrN ? Math.round(ttrSum / ttrN) : null;
    s.routing.last_time_to_route_ms = ttrN ? 812 : null;
  }

  transition(at, status, reason, message) {
    const t = this.s.transitions;
    const last = t[t.length - 1];
    if (last && last.status === status && (last.reason === reason || (!last.reason && !reason && last.message === message))) return;
    t.push({ at, status, reason, message });
  }

  incident(at, kind, message) {
    this.s.incidents.push({ at, last_at: at, count: 1, kind, message });
  }

  alert(at, kind, message) {
    this.s.alerts.unshift({ kind, message, at });
    this.s.alerts.length = Math.min(this.s.alerts.length, 50);
  }

  /** Sets the live status from the active reasons (as the service does). */
  settle(now = Date.now()) {
    const s = this.s;
    if (s.reasons.length) {
      s.status = 'degraded';
      s.message = s.reasons[0].message;
      this.transition(now, 'degraded', s.reasons[0].kind, s.reasons[0].message);
    } else if (s.status !== 'down') {
      s.status = 'up';
      s.message = MSG_UP;
      this.transition(now, 'up', null, MSG_UP);
    }
  }

  heartbeat() {
    const s = this.s;
    const doc = {
      tenant: this.name,
      version: '0.1.0',
      started_at: iso(s.startedAt),
      status: s.status,
      message: s.message,
      salesforce: { ...s.sf, last_push_at: iso(s.sf.last_push_at) },
      cic: { ...s.cic },
      routing: { ...s.routing, router: { ...s.router } },
      alerts: s.alerts.map((a) => ({ kind: a.kind, message: a.message, at: iso(a.at) })),
    };
    if (this.opts.typedReasons) doc.reasons = s.reasons.map((r) => ({ kind: r.kind, message: r.message, since: iso(r.since) }));
    return doc;
  }

  history(now = Date.now()) {
    const s = this.s;
    const last = Math.floor(now / MINUTE);
    const first = Math.max(Math.floor(s.startedAt / MINUTE), last - 1439);
    const mm = { start: iso(first * MINUTE), seconds: 60, routed: [], failed: [], backlog: [], p50_ms: [], p95_ms: [] };
    for (let m = first; m <= last; m++) {
      const b = s.minutes.get(m) || { routed: 0, failed: 0, backlog: null, p50: null, p95: null };
      mm.routed.push(b.routed);
      mm.failed.push(b.failed);
      mm.backlog.push(b.backlog);
      mm.p50_ms.push(b.p50);
      mm.p95_ms.push(b.p95);
    }
    return {
      schema: 1,
      now: iso(now),
      started_at: iso(s.startedAt),
      limits: { minutes: 1440, transitions: 500, incidents: 500 },
      minutes: mm,
      transitions: s.transitions.map((t) => ({ at: iso(t.at), status: t.status, reason: t.reason, message: t.message })),
      transitions_dropped: 0,
      incidents: s.incidents.map((i) => ({ at: iso(i.at), last_at: iso(i.last_at), count: i.count, kind: i.kind, message: i.message })),
      incidents_dropped: 0,
    };
  }

  // ------------------------------------------------------------------ scenario steps

  /** Both sides connected, no alert: green. */
  async healthy() {
    this.s.reasons = [];
    if (this.s.status === 'down') this.s.status = 'up';
    this.settle();
  }

  /** Pushes are dropped; the sweep then finds the rows no push announced. */
  async dropPushes(rows = 2) {
    const now = Date.now();
    const message = `push notifications appear lost: the sweep found ${rows} row(s) no push announced`;
    this.s.routing.push_lost_rows += rows;
    this.s.routing.sweeps += 1;
    this.alert(now, 'push_lost', message);
    this.incident(now, 'push_lost', message);
    if (!this.s.reasons.some((r) => r.kind === 'push_loss_suspected')) this.s.reasons.push({ kind: 'push_loss_suspected', message, since: now });
    this.settle(now);
  }

  /** A CIC switchover: the session comes back on the backup server. */
  async switchover() {
    const now = Date.now();
    const c = this.s.cic;
    this.incident(now - 4000, 'cic_lost', 'CIC connection lost: switchover in progress');
    c.backup = !c.backup;
    c.server = c.backup ? 'cic2.acme.test' : 'cic1.acme.test';
    c.sessions += 1;
    const message = 'CIC switchover: 1 interaction(s) lost, 1 being re-routed, 0 request(s) raised again';
    this.alert(now, 'switchover', message);
    this.incident(now, 'switchover', message);
    this.transition(now - 4000, 'degraded', 'cic_reconnecting', 'Reconnecting to CIC');
    this.settle(now);
  }

  /** Some numbers move, as traffic would move them. */
  async traffic(rows = 3) {
    const now = Date.now();
    const m = Math.floor(now / MINUTE);
    const b = this.s.minutes.get(m) || { routed: 0, failed: 0, backlog: 0, p50: null, p95: null };
    b.routed += rows;
    b.p50 = 700;
    b.p95 = 1400;
    b.backlog = 5;
    this.s.minutes.set(m, b);
    this.s.routing.routed += rows;
    this.s.router.waiting_rows = 5;
    this.s.router.in_flight = 2;
    this.s.sf.last_push_at = now;
    this.s.sf.pushes += rows;
  }

  // ------------------------------------------------------------------ the server

  async start() {
    if (this.server) return;
    const server = http.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 2000;
    server.on('connection', (sock) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
    });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port || 0, this.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = server.address().port;
  }

  /** The process stops: connections are refused from now on. */
  async stop() {
    if (!this.server) return;
    const server = this.server;
    this.server = null;
    for (const p of this.pending) clearTimeout(p);
    this.pending.clear();
    await new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections?.();
      for (const s of this.sockets) s.destroy();
    });
  }

  async close() {
    await this.stop();
  }

  /** Every answer from now on comes `ms` late (0 for prompt answers). */
  async slow(ms) {
    this.delayMs = ms;
  }

  handle(req, res) {
    const url = new URL(req.url, 'http://x');
    const cors = { 'Access-Control-Allow-Origin': '*', Vary: 'Origin', 'Cache-Control': 'no-store' };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET', 'Access-Control-Allow-Headers': '*' });
      return res.end();
    }
    let body;
    let status = 200;
    if (url.pathname === '/heartbeat') {
      this.requests.heartbeat++;
      body = this.heartbeat();
    } else if (url.pathname === '/history') {
      this.requests.history++;
      status = this.historyStatus;
      body = status === 200 ? this.history() : { error: 'not found' };
    } else {
      res.writeHead(404, cors);
      return res.end('not found');
    }
    const send = () => {
      if (res.destroyed) return;
      res.writeHead(status, { ...cors, 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (this.delayMs > 0) {
      const t = setTimeout(() => {
        this.pending.delete(t);
        send();
      }, this.delayMs);
      this.pending.add(t);
    } else send();
  }
}

/** The Content-Security-Policy the service will send with the dashboard's files. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml' };

/** Serves `dir`'s index.html, dashboard.css, dashboard.js and favicon.svg at /dashboard/ with the CSP. */
export async function serveDashboard(dir) {
  const files = ['index.html', 'dashboard.css', 'dashboard.js', 'favicon.svg'];
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/dashboard') {
      res.writeHead(308, { Location: '/dashboard/' });
      return res.end();
    }
    const name = p === '/dashboard/' ? 'index.html' : p.startsWith('/dashboard/') ? p.slice('/dashboard/'.length) : null;
    if (!name || !files.includes(name)) {
      res.writeHead(404);
      return res.end('not found');
    }
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(name)],
      'Content-Security-Policy': DASHBOARD_CSP,
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-store',
    });
    res.end(fs.readFileSync(path.join(dir, name)));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/dashboard/`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
