// What the browser tests share: a usherd of their own (demo catalog, the web root built from
// web/src by web/build.sh), headless Debian Chromium driven by playwright-core (no browser
// download: executablePath), API calls from Node for "another client", screenshots, and
// failure reports with usherd's log and the page's console.
//
// Environment: USHERD (the usherd binary), CHROMIUM (default /usr/bin/chromium), ARTIFACTS
// (where screenshots go; default a temp dir, printed), BROWSER_SLOWMO (ms, for debugging).

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
const requireWeb = createRequire(path.join(repo, 'web', 'package.json'));

export class Harness {
  constructor(name) {
    this.name = name;
    this.t0 = Date.now();
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `usher-${name}-`));
    this.artifacts = process.env.ARTIFACTS || path.join(this.tmp, 'artifacts');
    fs.mkdirSync(this.artifacts, { recursive: true });
    this.procs = [];
    this.browser = null;
    this.pages = [];
    this.console = [];
    // An error outside a step (a bug in the test itself) still stops what the test started:
    // usherd, the exporter, PostgreSQL and Chromium must not outlive it.
    const crash = (e) => this.fail(`uncaught: ${(e && e.stack) || e}`);
    process.on('uncaughtException', crash);
    process.on('unhandledRejection', crash);
  }

  log(msg) {
    console.log(`[${((Date.now() - this.t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
  }

  // Builds the web root from the working tree (web/build.sh), so the test serves the
  // sources it was run with.
  buildWebRoot() {
    const root = path.join(this.tmp, 'web-root');
    execFileSync(path.join(repo, 'web', 'build.sh'), [root], { stdio: 'inherit' });
    return root;
  }

  // Starts usherd on a free port with the demo catalog; resolves to {base, admin, demo}
  // where admin and demo are {email, password}.
  async startUsherd(extra = []) {
    const bin = process.env.USHERD;
    if (!bin) throw new Error('USHERD is not set (the usherd binary to test)');
    const data = path.join(this.tmp, 'data');
    const webRoot = this.buildWebRoot();
    const logPath = path.join(this.tmp, 'usherd.log');
    this.usherdLog = logPath;
    const errFd = fs.openSync(logPath, 'a');
    const args = [
      '--listen', '127.0.0.1:0', '--data-dir', data, '--demo', '--web-root', webRoot,
      '--rate-limit', 'off', '--password-cost', 'min', '--shards', '2', ...extra,
    ];
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', errFd] });
    this.procs.push(proc);
    this.usherd = proc;
    let out = '';
    const info = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`usherd did not listen in 30 s:\n${out}`)), 30000);
      proc.on('exit', (code) => reject(new Error(`usherd exited (${code}) before listening:\n${out}`)));
      proc.stdout.on('data', (d) => {
        out += d.toString();
        const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (!port) return;
        const admin = /admin@usher\.local\s+(\S+)/.exec(out);
        const demo = /demo@usher\.local\s+(\S+)/.exec(out);
        clearTimeout(timer);
        resolve({
          base: `http://127.0.0.1:${port[1]}`,
          admin: { email: 'admin@usher.local', password: admin && admin[1] },
          demo: { email: 'demo@usher.local', password: demo && demo[1] },
        });
      });
    });
    proc.removeAllListeners('exit');
    proc.on('exit', (code, sig) => {
      if (!this.stopping) this.log(`usherd exited unexpectedly (code ${code}, signal ${sig})`);
    });
    this.base = info.base;
    this.log(`usherd at ${info.base}, data ${data}`);
    return info;
  }

  // A throwaway PostgreSQL cluster on a Unix socket in the temp dir (initdb + pg_ctl, as the
  // postgres user when run as root: initdb refuses root). Resolves to {dir, conninfo(db),
  // sql(db, query) -> rows of strings}. Stopped by cleanup().
  async startPostgres() {
    const bins = fs.existsSync('/usr/lib/postgresql')
      ? fs.readdirSync('/usr/lib/postgresql').map((v) => `/usr/lib/postgresql/${v}/bin`).filter((b) => fs.existsSync(`${b}/initdb`))
      : [];
    if (!bins.length) throw new Error('no PostgreSQL server binaries (tools/install-deps --test installs them)');
    const bin = bins.sort().pop();
    const dir = path.join(this.tmp, 'pg');
    fs.chmodSync(this.tmp, 0o755);
    fs.mkdirSync(dir);
    const asUser = process.getuid() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
    if (asUser.length) execFileSync('chown', ['postgres:postgres', dir]);
    const run = (argv) => {
      const [cmd, ...args] = [...asUser, ...argv];
      execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    };
    run([`${bin}/initdb`, '-D', `${dir}/data`, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    const opts = `-c listen_addresses='' -c unix_socket_directories=${dir} -c fsync=off -c synchronous_commit=off`;
    run([`${bin}/pg_ctl`, '-D', `${dir}/data`, '-o', opts, '-l', `${dir}/server.log`, '-w', 'start']);
    this.pgStop = () => {
      try {
        run([`${bin}/pg_ctl`, '-D', `${dir}/data`, '-m', 'immediate', 'stop']);
      } catch (_) {
        /* already down */
      }
    };
    const sql = (db, query) =>
      execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-F', '\t', '-h', dir, '-U', 'postgres', '-d', db, '-c', query], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.split('\t'));
    this.log(`PostgreSQL up on socket dir ${dir}`);
    return { dir, sql, conninfo: (db) => `postgresql:///${db}?host=${dir}&user=postgres` };
  }

  // Starts another program of ours (stderr to TMP/NAME.log); stopped by cleanup().
  spawnLogged(name, bin, args, env = {}) {
    const logPath = path.join(this.tmp, `${name}.log`);
    const fd = fs.openSync(logPath, 'a');
    const proc = spawn(bin, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    this.procs.push(proc);
    this.extraLogs = [...(this.extraLogs || []), logPath];
    return proc;
  }

  // Headless Debian Chromium. The flags keep it from reaching out to the network (this
  // machine's network is closed; see docs/web.md).
  async launch() {
    const { chromium } = requireWeb('playwright-core');
    this.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      slowMo: Number(process.env.BROWSER_SLOWMO || 0),
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    });
    return this.browser;
  }

  // A new browser context (its own sessionStorage) and page, with console errors recorded.
  async newPage(label, viewport = { width: 1280, height: 860 }) {
    const ctx = await this.browser.newContext({ viewport, baseURL: this.base });
    const page = await ctx.newPage();
    page.setDefaultTimeout(10000);
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') this.console.push(`[${label}] ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => this.console.push(`[${label}] pageerror: ${e.message}`));
    this.pages.push({ label, page });
    return page;
  }

  async screenshot(page, name) {
    const file = path.join(this.artifacts, `${name}.png`);
    await page.screenshot({ path: file, fullPage: false });
    this.log(`screenshot ${file}`);
    return file;
  }

  // API calls from Node: "another client".
  async api(method, p, { token, body, headers = {} } = {}) {
    const h = { Accept: 'application/json', ...headers };
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const res = await fetch(this.base + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = text;
    }
    return { status: res.status, json, headers: res.headers };
  }

  async login(who) {
    const r = await this.api('POST', '/api/auth/login', { body: who });
    if (r.status !== 200) throw new Error(`login ${who.email}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json.token;
  }

  // Logs a page in through the login form.
  async uiLogin(page, who) {
    await page.goto('/#/login');
    await page.getByLabel('Email').fill(who.email);
    await page.getByLabel('Password').fill(who.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('button', { name: 'Log out' }).waitFor();
  }

  // Runs one named step; on failure: screenshots of every page, the console, usherd's log.
  async step(name, fn) {
    this.log(`step: ${name}`);
    try {
      return await fn();
    } catch (e) {
      await this.fail(`${name}: ${e.stack || e}`);
    }
  }

  check(cond, msg) {
    if (!cond) throw new Error(msg);
  }

  async fail(msg) {
    if (this.failing) return;
    this.failing = true;
    console.log(`FAIL: ${msg}`);
    for (const { label, page } of this.pages) {
      try {
        const f = path.join(this.artifacts, `FAILED-${this.name}-${label}.png`);
        await page.screenshot({ path: f, fullPage: true });
        console.log(`page ${label} at ${page.url()}, screenshot ${f}`);
      } catch (_) {
        /* the page may be gone */
      }
    }
    if (this.console.length) console.log(`--- browser console\n${this.console.slice(-40).join('\n')}`);
    for (const f of [this.usherdLog, ...(this.extraLogs || [])]) {
      if (!f || !fs.existsSync(f)) continue;
      console.log(`--- ${path.basename(f)} (last 3000 bytes)\n${fs.readFileSync(f, 'utf8').slice(-3000)}`);
    }
    await this.cleanup();
    process.exit(1);
  }

  async cleanup() {
    this.stopping = true;
    if (this.browser) await this.browser.close().catch(() => {});
    for (const p of this.procs) {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            p.kill('SIGKILL');
            r();
          }, 10000);
          p.on('exit', () => {
            clearTimeout(t);
            r();
          });
        });
        if (p === this.usherd && p.exitCode !== 0) {
          console.log(`usherd exited with ${p.exitCode} (signal ${p.signalCode}) on SIGTERM`);
          console.log(fs.readFileSync(this.usherdLog, 'utf8').slice(-3000));
          process.exitCode = 1;
        }
      }
    }
    if (this.pgStop) this.pgStop();
    if (!process.env.KEEP_TMP) {
      for (const d of ['data', 'pg', 'web-root']) fs.rmSync(path.join(this.tmp, d), { recursive: true, force: true });
    }
  }

  // A step that provokes refusals on purpose takes the browser's console lines about them off
  // the list that fails the test at its end: the lines matching `re` (from page `label`, if
  // given), exactly `n` of them, or at least `n` with atLeast.
  expectConsole(re, n, { label = null, atLeast = false } = {}) {
    let found = 0;
    this.console = this.console.filter((l) => {
      const hit = (!label || l.startsWith(`[${label}] `)) && re.test(l) && (atLeast || found < n);
      if (hit) found++;
      return !hit;
    });
    this.check(atLeast ? found >= n : found === n, `expected ${atLeast ? 'at least ' : ''}${n} console lines matching ${re}, found ${found}`);
  }

  // The test's end: closes everything; console errors from the pages fail the test.
  async finish() {
    const errors = this.console.filter((l) => /error/i.test(l) && !/status of (401|404|409|410|429)/.test(l));
    if (errors.length) await this.fail(`the pages logged errors:\n${errors.join('\n')}`);
    await this.cleanup();
    this.log(`${this.name}: ok`);
  }
}

// Waits until fn() returns a truthy value (polling every 50 ms) or throws after ms.
export async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
