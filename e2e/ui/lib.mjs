// The harness of the browser end-to-end tests: demo servers, Chromium sessions (one fresh
// --user-data-dir each), RFC 6238 codes, axe on every visited page, and the check reporter.

import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

export const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
// The flags of shared/TESTING.md; Playwright adds the fresh --user-data-dir it is given.
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Failure extends Error {}
export function expect(cond, msg) {
  if (!cond) throw new Failure(msg);
}

// ---- RFC 6238 (TOTP, SHA-1, 30 s, 6 digits) --------------------------------------------------

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = s.toUpperCase().replace(/[\s=]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function totpAt(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = crypto.createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const off = h[h.length - 1] & 0x0f;
  const n = ((h[off] & 0x7f) << 24) | (h[off + 1] << 16) | (h[off + 2] << 8) | h[off + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

/** A code of a step this user has not used yet on this server (a code works once per step),
 * not in the last 3 s of its step (so it is still current when it arrives). */
export async function freshCode(user) {
  for (;;) {
    const now = Date.now() / 1000;
    const step = Math.floor(now / 30);
    const left = 30 - (now % 30);
    if (step > user.lastStep && left > 3) {
      user.lastStep = step;
      return totpAt(user.secret, step);
    }
    await sleep((left + 0.4) * 1000);
  }
}

// ---- small synthetic files ---------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** A valid w×h RGB PNG (a diagonal gradient), made here: no file from outside. */
export function makePng(w = 16, h = 16) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc(h * (1 + w * 3));
  for (let y = 0; y < h; y++) {
    raw[y * (1 + w * 3)] = 0; // filter: none
    for (let x = 0; x < w; x++) {
      const o = y * (1 + w * 3) + 1 + x * 3;
      raw[o] = (x * 255) / w;
      raw[o + 1] = (y * 255) / h;
      raw[o + 2] = 160;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A minimal one-page PDF with `text` on it (correct xref offsets). */
export function makePdf(text) {
  const esc = text.replace(/[\\()]/g, (c) => '\\' + c);
  const stream = `BT /F1 14 Tf 72 720 Td (${esc}) Tj ET`;
  const objs = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offs = [];
  objs.forEach((o, i) => {
    offs.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n`;
  for (const o of offs) out += `${String(o).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

// ---- the demo server ---------------------------------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function httpsStatus(url) {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => {
      req.destroy();
      resolve(0);
    });
  });
}

const running = new Set();
function killAll() {
  for (const p of running) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** `carevault demo` on a fresh data folder and a free loopback port. */
export class DemoServer {
  constructor(bin, work, name, env = {}) {
    this.bin = bin;
    this.name = name;
    this.dir = path.join(work, name);
    this.extraEnv = env;
    this.users = {};
  }

  get base() {
    return `https://localhost:${this.port}`;
  }

  async start() {
    fs.mkdirSync(this.dir, { recursive: true });
    this.port = await freePort();
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAREVAULT_')));
    // WebAuthn's relying party is the public origin: the address the browser uses.
    env.CAREVAULT_PUBLIC_ORIGIN = this.base;
    env.CAREVAULT_LOG = process.env.E2E_CAREVAULT_LOG || 'info';
    Object.assign(env, this.extraEnv);
    // E2E_PG_URL=postgres://user@host:port/db runs each server on its own fresh PostgreSQL
    // database (made with psql next to that one, dropped at stop); otherwise embedded SQLite.
    if (process.env.E2E_PG_URL) {
      const base = process.env.E2E_PG_URL;
      this.pgDb = `cv_ui_${process.pid}_${this.port}`;
      execFileSync('psql', [base, '-qc', `CREATE DATABASE ${this.pgDb}`], { stdio: 'ignore' });
      env.CAREVAULT_DATABASE_URL = `${base.slice(0, base.lastIndexOf('/'))}/${this.pgDb}`;
    }
    this.out = fs.openSync(path.join(this.dir, 'server.stdout'), 'w');
    this.err = fs.openSync(path.join(this.dir, 'server.stderr'), 'w');
    this.proc = spawn(this.bin, ['demo', '--data-dir', path.join(this.dir, 'data'), '--listen', `127.0.0.1:${this.port}`], {
      env,
      stdio: ['ignore', this.out, this.err],
    });
    running.add(this.proc);
    this.exited = null;
    this.proc.on('exit', (code, sig) => {
      this.exited = { code, sig };
      running.delete(this.proc);
    });
    const deadline = Date.now() + 120_000;
    const accountsFile = path.join(this.dir, 'data', 'DEMO-ACCOUNTS.txt');
    for (;;) {
      if (this.exited) throw new Error(`${this.name}: carevault exited (${JSON.stringify(this.exited)}): ${this.tail()}`);
      if (fs.existsSync(accountsFile) && (await httpsStatus(`https://127.0.0.1:${this.port}/api/v1/health`)) === 204) break;
      if (Date.now() > deadline) throw new Error(`${this.name}: not up within 120 s: ${this.tail()}`);
      await sleep(250);
    }
    // "  demo.frontdesk   role front_desk   password demo-frontdesk-...  TOTP secret BASE32"
    for (const line of fs.readFileSync(accountsFile, 'utf8').split('\n')) {
      const m = line.match(/^\s+(\S+)\s+role\s+(\S+)\s+password\s+(\S+)\s+TOTP secret\s+([A-Z2-7]+)/);
      if (m) this.users[m[1]] = { username: m[1], role: m[2], password: m[3], secret: m[4], lastStep: -1 };
    }
    expect(Object.keys(this.users).length >= 8, `${this.name}: DEMO-ACCOUNTS.txt lists ${Object.keys(this.users).length} accounts`);
  }

  tail() {
    try {
      return fs.readFileSync(path.join(this.dir, 'server.stderr'), 'utf8').slice(-1500);
    } catch {
      return '';
    }
  }

  async stop() {
    if (!this.proc || this.exited) return;
    this.proc.kill('SIGTERM');
    for (let i = 0; i < 100 && !this.exited; i++) await sleep(100);
    if (!this.exited) this.proc.kill('SIGKILL');
    if (this.pgDb && process.env.E2E_PG_URL) {
      try {
        execFileSync('psql', [process.env.E2E_PG_URL, '-qc', `DROP DATABASE IF EXISTS ${this.pgDb}`], { stdio: 'ignore' });
      } catch (e) {
        process.stderr.write(`could not drop ${this.pgDb}: ${e.message}\n`);
      }
    }
  }
}

// ---- the run: reporter, axe, screenshots -------------------------------------------------------

export class Run {
  constructor({ work, screenshots, shotDir }) {
    this.work = work;
    this.screenshots = screenshots;
    this.shotDir = shotDir;
    this.passed = 0;
    this.failed = 0;
    this.skipped = 0;
    this.current = null; // the check running: its axe findings and notes
    this.shotsTaken = new Set();
    this.axeSeen = new Map(); // url path pattern -> number of axe runs (for the summary)
    this.tablet = []; // {label, url, scrollWidth, innerWidth}
    this.stripNullOrigin = false; // set when the server refuses the browser's same-origin posts (check 0b)
  }

  /** Runs one check; prints one line (plus indented details when it fails). */
  async check(id, title, fn, { needs = [] } = {}) {
    const missing = needs.filter(([ok]) => !ok).map(([, what]) => what);
    if (missing.length) {
      this.skipped++;
      console.log(`skip ${id} ${title}: needs ${missing.join(', ')}`);
      return false;
    }
    this.current = { id, axe: [], notes: [], storage: [], soft: [] };
    const t0 = Date.now();
    let err = null;
    try {
      await fn();
    } catch (e) {
      err = e;
    }
    const c = this.current;
    this.current = null;
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const problems = [];
    if (err) problems.push(this.describe(err));
    problems.push(...c.soft);
    if (c.storage.length) problems.push(`web storage not empty on ${c.storage.join(', ')}`);
    if (c.axe.length) problems.push(`axe: serious/critical violations on ${c.axe.length} page(s)`);
    const notes = c.notes.length ? ` [${c.notes.join('; ')}]` : '';
    if (!problems.length) {
      this.passed++;
      console.log(`ok   ${id} ${title} (${secs} s)${notes}`);
      return true;
    }
    this.failed++;
    console.log(`FAIL ${id} ${title} (${secs} s): ${problems.join('; ')}${notes}`);
    if (err && !(err instanceof Failure) && process.env.E2E_DEBUG) console.log(err.stack);
    for (const a of c.axe) {
      console.log(`       axe on ${a.label} (${a.url}):`);
      for (const v of a.violations) {
        console.log(`         - ${v.id} [${v.impact}] ${v.help}: ${v.nodes.join(' | ')}`);
      }
    }
    return false;
  }

  /** An error in one line: Playwright's first line, what it waited for, and the page it was on. */
  describe(e) {
    if (e instanceof Failure) return e.message;
    const lines = String(e.message).replace(/\x1b\[[0-9;]*m/g, '').split('\n');
    const waiting = lines.map((l) => l.match(/waiting for (.*)/)).find(Boolean);
    return `${e.name}: ${lines[0]}${waiting ? ` (waiting for ${waiting[1].trim()})` : ''}${this.lastNav ? ` [${this.lastNav}]` : ''}`;
  }

  /** A part of a journey whose failure is reported but does not stop the rest of it. */
  async part(what, fn) {
    try {
      await fn();
      return true;
    } catch (e) {
      const msg = this.describe(e);
      if (this.current) this.current.soft.push(`${what}: ${msg}`);
      else throw e;
      return false;
    }
  }

  note(text) {
    if (this.current) this.current.notes.push(text);
  }

  /** Every visited page: web storage must be empty and axe must find nothing serious or
   * critical; optionally a screenshot for docs/screenshots/. */
  async look(page, label, shot = null) {
    await page.waitForLoadState('load');
    const url = new URL(page.url());
    const where = `${label} (${url.pathname})`;
    try {
      const [ls, ss] = await page.evaluate(() => [window.localStorage.length, window.sessionStorage.length]);
      if ((ls || ss) && this.current) this.current.storage.push(`${where}: localStorage ${ls}, sessionStorage ${ss}`);
    } catch (e) {
      if (this.current) this.current.storage.push(`${where}: could not read storage (${e.message.split('\n')[0]})`);
    }
    const res = await new AxeBuilder({ page }).analyze();
    const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    const key = url.pathname.replace(/\/[0-9a-f-]{8,}/gi, '/{id}');
    this.axeSeen.set(key, (this.axeSeen.get(key) || 0) + 1);
    if (bad.length && this.current) {
      this.current.axe.push({
        label,
        url: url.pathname + url.search,
        violations: bad.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) })),
      });
    }
    if (shot && this.screenshots) {
      fs.mkdirSync(this.shotDir, { recursive: true });
      // The whole page, but at most 2400 px of a long one (the audit log).
      const [w, h] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]);
      const clip = h > 2400 ? { x: 0, y: 0, width: w, height: 2400 } : undefined;
      await page.screenshot({ path: path.join(this.shotDir, `${shot}.png`), fullPage: true, clip });
      this.shotsTaken.add(shot);
    }
  }

  /** No horizontal scrolling of the page at the current viewport. */
  async measureWidth(page, label) {
    const [sw, iw] = await page.evaluate(() => [document.scrollingElement.scrollWidth, window.innerWidth]);
    this.tablet.push({ label, url: new URL(page.url()).pathname, scrollWidth: sw, innerWidth: iw, ok: sw <= iw + 1 });
    return sw <= iw + 1;
  }
}

// ---- a browser session of one staff member -----------------------------------------------------

export class Person {
  constructor(run, server, username, { viewport = { width: 1280, height: 900 }, extraArgs = [] } = {}) {
    this.extraArgs = extraArgs;
    this.run = run;
    this.srv = server;
    this.user = server.users[username];
    expect(this.user, `no demo account ${username}`);
    this.viewport = viewport;
    this.fetched = new Map(); // "METHOD /path" -> headers, of posts sent by the 0b workaround
  }

  async open() {
    this.profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-ui-profile-'));
    this.ctx = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...this.extraArgs],
      ignoreHTTPSErrors: true,
      viewport: this.viewport,
      locale: 'en-US',
      timezoneId: 'UTC',
    });
    if (this.run.stripNullOrigin) {
      // Test-side workaround while the server refuses the browser's own POSTs (check 0b): such a
      // post (form: `Origin: null`; fetch over HTTP/2: no Host header) is sent without Origin.
      // Chrome does not let a route change Origin, so such a request is sent from Node
      // (Playwright's request client, same cookie jar) without it and its answer given to the page.
      await this.ctx.route('**/*', async (route) => {
        const req = route.request();
        const h = req.headers();
        if (req.method() === 'GET' || req.method() === 'HEAD' || !h.origin) return route.continue();
        const headers = Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'origin' && k !== 'cookie' && !k.startsWith(':')));
        const resp = await route.fetch({ headers, maxRedirects: 0 });
        // What the server answered (a fulfilled response loses e.g. Clear-Site-Data on its way).
        this.fetched.set(`${req.method()} ${new URL(req.url()).pathname}`, resp.headers());
        return route.fulfill({ response: resp });
      });
    }
    this.ctx.setDefaultTimeout(15_000);
    this.ctx.setDefaultNavigationTimeout(30_000);
    this.page = this.ctx.pages()[0] || (await this.ctx.newPage());
    // The last page loaded, for the failure messages.
    this.page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === this.page.mainFrame()) {
        this.run.lastNav = `${this.user.username} at ${new URL(r.url()).pathname}${new URL(r.url()).search}, HTTP ${r.status()}`;
      }
    });
    return this;
  }

  url(p) {
    return this.srv.base + p;
  }

  async close() {
    try {
      await this.ctx?.close();
    } catch {
      /* the browser may be gone */
    }
    if (this.profile) fs.rmSync(this.profile, { recursive: true, force: true });
  }

  /** Password, then the first-sign-in enrollment (a new TOTP key from the page) or the TOTP
   * code, to the home page. `shots` names screenshots of the pages on the way. */
  async signIn({ shots = {} } = {}) {
    const p = this.page;
    const u = this.user;
    await p.goto(this.url('/ui/signin'));
    await this.run.look(p, 'sign-in', shots.signin);
    await p.getByLabel('Username', { exact: true }).fill(u.username);
    await p.getByLabel('Password', { exact: true }).fill(u.password);
    await p.getByRole('button', { name: 'Continue', exact: true }).click();
    await p.waitForURL(/\/ui\/signin\/(enroll|mfa)$/);
    if (p.url().endsWith('/enroll')) {
      await this.run.look(p, 'enrollment');
      await p.getByRole('button', { name: 'Show my QR code' }).click();
      const key = p.locator('#totp-secret[data-secret]');
      await key.waitFor();
      await p.getByRole('img', { name: 'QR code for your authenticator app' }).waitFor();
      await this.run.look(p, 'enrollment QR code', shots.enroll);
      const secret = await key.getAttribute('data-secret');
      expect(/^[A-Z2-7]{16,}$/.test(secret || ''), `enrollment key is not base32: ${secret}`);
      expect(secret !== u.secret, 'enrollment gave the same key as the printed one');
      u.secret = secret; // the printed key stops working; the steps used stay used
      await p.getByLabel('Code from the app').fill(await freshCode(u));
      await p.getByRole('button', { name: 'Confirm and continue' }).click();
      await p.getByRole('heading', { level: 1, name: 'Save your recovery codes' }).waitFor();
      const codes = await p.locator('#recovery-codes li').allTextContents();
      expect(codes.length >= 5, `only ${codes.length} recovery codes shown`);
      u.recovery = codes.map((c) => c.trim());
      await this.run.look(p, 'recovery codes');
      await p.getByRole('link', { name: 'I have saved them, continue' }).click();
    } else {
      await this.run.look(p, 'second factor');
      await p.getByLabel('6-digit code').fill(await freshCode(u));
      await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    }
    await p.waitForURL(/\/ui\/$/);
    await p.getByRole('heading', { level: 1, name: /^Welcome/ }).waitFor();
    await this.run.look(p, 'home', shots.home);
  }

  async signOut() {
    const p = this.page;
    const [resp] = await Promise.all([
      p.waitForResponse((r) => new URL(r.url()).pathname === '/ui/signout' && r.request().method() === 'POST'),
      p.getByRole('button', { name: 'Sign out', exact: true }).click(),
    ]);
    await p.getByRole('heading', { level: 1, name: 'You are signed out' }).waitFor();
    // allHeaders(): headers() leaves out security-related ones such as Clear-Site-Data.
    return this.fetched.get('POST /ui/signout') || (await resp.allHeaders());
  }

  /** Opens `p` and checks the page (axe, storage); returns the response. */
  async visit(pathname, label, shot) {
    const r = await this.page.goto(this.url(pathname));
    await this.run.look(this.page, label, shot);
    return r;
  }

  /** Confirms with password + code when a page sent us to "Confirm it's you" (`/ui/reauth`). */
  async reauthIfAsked() {
    const p = this.page;
    if (!new URL(p.url()).pathname.startsWith('/ui/reauth')) return false;
    await this.run.look(p, 'reauth');
    await p.getByLabel('Password', { exact: true }).fill(this.user.password);
    await p.getByLabel('Code', { exact: true }).fill(await freshCode(this.user));
    await p.getByRole('button', { name: 'Confirm', exact: true }).click();
    await p.waitForLoadState('load');
    return true;
  }
}

/** Picks an option of a select by value or visible text (case-insensitive regexp or string);
 * with no match, the first option with a non-empty value. Returns the chosen option's text. */
export async function choose(select, want) {
  const opts = await select.locator('option').evaluateAll((os) => os.map((o) => ({ v: o.value, t: o.textContent.trim(), d: o.disabled })));
  const usable = opts.filter((o) => o.v !== '' && !o.d);
  expect(usable.length > 0, 'the list has no options');
  const re = want instanceof RegExp ? want : want ? new RegExp(String(want).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i') : null;
  const pick = (re && usable.find((o) => re.test(o.v) || re.test(o.t))) || usable[0];
  await select.selectOption(pick.v);
  return pick.t;
}
