// The live bed: `fakes/testbed/examples/admin_bed.rs` (the fakes in its own process, the real
// `sors serve` binary as its child). Spawned once; it answers one JSON line per command on
// stdout and stops everything when its stdin closes.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../../..');
export const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');
/** The bed binary: $ADMIN_BED, else the debug example. */
export const BED = process.env.ADMIN_BED || path.join(targetDir, 'debug', 'examples', 'admin_bed');
/** The service binary the bed starts: $SORS_BIN, else target/debug/sors (the full binary). */
export const SORS_BIN = path.resolve(repo, process.env.SORS_BIN || path.join(targetDir, 'debug', 'sors'));

const START_TIMEOUT = 60000;
const COMMAND_TIMEOUT = 30000;

export class AdminBed {
  /**
   * Starts the bed on the (missing or empty) tenant directory `dir`; its own stderr goes to
   * `stderrFile`. Resolves with the bed once it printed its description (`bed.info`).
   */
  static async start({ dir, stderrFile }) {
    for (const [f, how] of [
      [BED, 'cargo build -p sors-testbed --example admin_bed'],
      [SORS_BIN, 'cargo build -p sors-cli --bin sors'],
    ]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: build it with \`${how}\``);
    }
    const bed = new AdminBed(dir, stderrFile);
    bed.info = await bed.expect('start-up', START_TIMEOUT);
    return bed;
  }

  constructor(dir, stderrFile) {
    this.stderrFd = fs.openSync(stderrFile, 'w');
    this.child = spawn(BED, ['--dir', dir], {
      cwd: repo,
      env: { ...process.env, SORS_BIN },
      stdio: ['pipe', 'pipe', this.stderrFd],
    });
    this.waiting = [];
    this.events = [];
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then(({ code, signal }) => {
      fs.closeSync(this.stderrFd);
      for (const w of this.waiting.splice(0)) w.reject(new Error(`the bed exited (${signal || code}) before answering ${w.what}; see ${stderrFile}`));
    });
    this.child.stdin.on('error', () => {});
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => this.onLine(line));
  }

  onLine(line) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      process.stderr.write(`admin_bed said: ${line}\n`);
      return;
    }
    if (msg.event) {
      this.events.push(msg);
      process.stderr.write(`admin_bed: ${line}\n`);
      return;
    }
    const w = this.waiting.shift();
    if (!w) return;
    clearTimeout(w.timer);
    if (msg.ok === false || msg.ready === false) w.reject(new Error(`admin_bed ${w.what}: ${msg.error}`));
    else w.resolve(msg);
  }

  expect(what, timeout = COMMAND_TIMEOUT) {
    return new Promise((resolve, reject) => {
      const w = { what, resolve, reject };
      w.timer = setTimeout(() => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`admin_bed did not answer ${what} within ${timeout} ms`));
      }, timeout);
      this.waiting.push(w);
    });
  }

  send(command) {
    const answer = this.expect(command);
    this.child.stdin.write(`${command}\n`);
    return answer;
  }

  /** A new case in the bed's monitored queue; resolves with its id. */
  async newCase() {
    return (await this.send('new_case 1')).cases[0];
  }

  /** Whether the sors child still runs, and its pid. */
  sors() {
    return this.send('sors');
  }

  /** Closes stdin: the bed stops sors (SIGTERM) and the fakes, then exits. */
  async close() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.stdin.end();
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 20000);
    const r = await this.exited;
    clearTimeout(kill);
    return r;
  }
}
