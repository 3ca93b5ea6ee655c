// Live targets: real sors services, each with its own fake Salesforce and fake CIC pair, run by
// the test bed example `fakes/testbed/examples/dashboard_bed.rs` (build it first:
// `cargo build -p sors-testbed --example dashboard_bed`). Chosen with
// SORS_DASHBOARD_TARGETS=tests/lib/live-targets.mjs; exports the same names as
// fixture-targets.mjs. One bed process per test file, spawned on first use and ended by
// `dashboardPages().close()` (or when this process exits: the bed stops when its stdin closes).
// Everything listens on 127.0.0.1 only.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dashboardDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const repo = path.resolve(dashboardDir, '..');

/** The bed binary: $SORS_DASHBOARD_BED, else the debug example in the cargo target directory. */
export const BED = process.env.SORS_DASHBOARD_BED || path.join(process.env.CARGO_TARGET_DIR || path.join(repo, 'target'), 'debug', 'examples', 'dashboard_bed');

export const kind = 'live';

/** Live services cannot be slowed down, serve no older heartbeat and always serve /history. */
export const capabilities = { slow: false, withoutReasons: false, history404: false, live: true };

/** The service's own words once the sweep has found rows no push announced (status.rs). */
export const pushLossPattern = /Push notifications appear lost: the sweep found \d+ row\(s\) no push announced/;

/** The test bed sweeps every 2 s with 1 s of grace; a switchover reconnects within about a second. */
export const timeouts = { pushLoss: 20000, switchover: 20000 };

/** A new case this often while pushes are dropped, so every sweep finds rows no push announced. */
const LOST_TRAFFIC_MS = 800;
const COMMAND_TIMEOUT = 90000;

class BedProcess {
  constructor() {
    if (!fs.existsSync(BED)) throw new Error(`${BED} is missing: build it with \`cargo build -p sors-testbed --example dashboard_bed\``);
    this.child = spawn(BED, ['host'], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.waiting = [];
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then(({ code, signal }) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`the test bed exited (${signal || code}) before answering ${w.command}`));
    });
    this.child.stdin.on('error', () => {});
    const lines = readline.createInterface({ input: this.child.stdout });
    lines.on('line', (line) => this.onLine(line));
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout]) s.unref?.();
    this.ready = this.expect('start-up');
  }

  onLine(line) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      process.stderr.write(`dashboard_bed said: ${line}\n`);
      return;
    }
    const w = this.waiting.shift();
    if (!w) return;
    clearTimeout(w.timer);
    if (msg.ok === false || msg.ready === false) w.reject(new Error(`${w.command}: ${msg.error}`));
    else w.resolve(msg);
  }

  /** The next answer; its timer also keeps this process alive while the bed works. */
  expect(command) {
    return new Promise((resolve, reject) => {
      const w = { command, resolve, reject };
      w.timer = setTimeout(() => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`the test bed did not answer ${command} within ${COMMAND_TIMEOUT} ms`));
      }, COMMAND_TIMEOUT);
      this.waiting.push(w);
    });
  }

  async send(command) {
    await this.ready;
    const answer = this.expect(command);
    this.child.stdin.write(`${command}\n`);
    return answer;
  }

  async close() {
    this.child.stdin.end();
    const deadline = setTimeout(() => this.child.kill('SIGKILL'), 30000);
    await this.exited;
    clearTimeout(deadline);
  }
}

let bed = null;
function theBed() {
  if (!bed) bed = new BedProcess();
  return bed;
}

let serial = 0;

async function getJson(url) {
  const r = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

/** Waits until the tenant's heartbeat satisfies `cond` (deadline `timeout` ms); returns it. */
async function waitHeartbeat(t, what, cond, timeout = 30000) {
  const deadline = Date.now() + timeout;
  let last = null;
  for (;;) {
    try {
      last = await getJson(t.heartbeatUrl);
      if (cond(last)) return last;
    } catch (e) {
      last = String(e);
    }
    if (Date.now() > deadline) throw new Error(`${t.name}: ${what} did not happen within ${timeout} ms; last heartbeat: ${JSON.stringify(last)?.slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

class LiveTenant {
  constructor(name, described) {
    this.name = name;
    this.key = described.tenant;
    this.describe(described);
  }

  describe(d) {
    this.address = d.address;
    this.port = d.port;
    this.dashboardUrl = d.dashboard_url;
    this.salesforceControl = d.salesforce_control;
    this.cicControl = d.cic_control;
  }

  get heartbeatUrl() {
    return `http://${this.address}:${this.port}/heartbeat`;
  }

  get historyUrl() {
    return `http://${this.address}:${this.port}/history`;
  }

  command(verb, ...args) {
    return theBed().send([verb, this.key, ...args].join(' '));
  }

  /** Pushes arrive, nothing is wrong: resolves once the heartbeat says `up`. */
  async healthy() {
    await this.command('traffic', 'off');
    await this.command('drop_pushes', 'off');
    return waitHeartbeat(this, 'status up', (hb) => hb.status === 'up');
  }

  /** The service stops (gracefully): its status port refuses connections. */
  async stop() {
    await this.command('stop');
  }

  /** The service is killed abruptly. */
  async kill() {
    await this.command('kill');
  }

  /** A fresh service on the same status port; resolves once it is up. */
  async start() {
    const r = await this.command('start');
    this.describe(r.tenant);
  }

  /** The fake Salesforce swallows pushes while cases keep coming; the sweep finds their rows. */
  async dropPushes() {
    await this.command('drop_pushes', 'on');
    await this.command('traffic', String(LOST_TRAFFIC_MS));
  }

  /**
   * The fake CIC's standby becomes active; the service reconnects to it. With
   * `{ loseInteractions: true }` the interactions do not survive it (the service re-routes them).
   */
  async switchover({ loseInteractions = false } = {}) {
    return loseInteractions ? this.command('switchover', 'lose') : this.command('switchover');
  }

  /** `rows` new cases, resolved once the service has routed them all. */
  async traffic(rows = 3) {
    const before = (await getJson(this.heartbeatUrl)).routing.routed;
    await this.command('new_case', String(rows));
    await waitHeartbeat(this, `${rows} rows routed`, (hb) => hb.routing.routed >= before + rows && hb.routing.router.in_flight === 0 && hb.routing.router.waiting_rows === 0, 20000);
  }

  /** The routing rows by status, as the fake Salesforce holds them. */
  async rows() {
    return (await this.command('rows')).rows;
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    await this.command('close');
  }
}

export async function createTenant(name, _opts = {}) {
  const key = `${name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'tenant'}-${++serial}`;
  const r = await theBed().send(`add ${key} ${name}`);
  return new LiveTenant(name, r.tenant);
}

/** The page as a file, and as served by a live service at /dashboard/ (with its own CSP). */
export async function dashboardPages() {
  const b = theBed();
  const first = await b.ready;
  const host = first.tenants[0];
  return {
    file: pathToFileURL(path.join(dashboardDir, 'index.html')).href,
    http: host.dashboard_url,
    host,
    close: async () => {
      if (bed === b) bed = null;
      await b.close();
    },
  };
}
