// The browser tests' harness: runs the real `tollgate` binary (`tollgate dev`, its own data dir
// and ports per test), drives Debian's Chromium through playwright-core, signs up through the
// API, and saves a full-page screenshot of every page a test visits. Everything a test starts
// is stopped when the test ends, pass or fail, last started first (`onTestEnd`).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR || '/var/tmp/tollgate-target';
/** The binary under test; `TOLLGATE_BIN` overrides the debug build of the workspace. */
export const TOLLGATE_BIN = process.env.TOLLGATE_BIN || path.join(TARGET_DIR, 'debug', 'tollgate');
/** The islands bundle `scripts/build-console` writes; `TOLLGATE_CONSOLE_DIR` overrides it. */
export const BUNDLE_DIR = process.env.TOLLGATE_CONSOLE_DIR || path.join(REPO, 'console/dist/pkg');
const CHROMIUM = process.env.TOLLGATE_CHROMIUM || '/usr/bin/chromium';
// Outside the repo; scripts/test sets one directory per run for all test files.
export const SCREENSHOTS = process.env.TOLLGATE_SCREENSHOTS ||
  path.join('/var/tmp/tollgate-screenshots', new Date().toISOString().replace(/[:.]/g, '-'));

// Debian's Chromium as root in a sandbox without a network: no setuid sandbox, no GPU, no
// background connections (refused here, many at a time), small /dev/shm.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic',
];

/**
 * Polls `check` (sync or async) until it returns a truthy value, which it returns, or fails
 * with `what` after `timeout` ms. For waiting on anything without a fixed sleep.
 */
export async function waitFor(what, check, { timeout = 10_000, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
        (lastError ? `; last error: ${lastError.message}` : ''));
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

const cleanups = new WeakMap();

/**
 * Runs `fn` when test `t` ends, pass or fail. Unlike plain `t.after` hooks (run in the order
 * they were added) these run last-added first, so a context closes before its browser and the
 * browser before the server it talks to.
 */
export function onTestEnd(t, fn) {
  let stack = cleanups.get(t);
  if (!stack) {
    stack = [];
    cleanups.set(t, stack);
    t.after(async () => {
      const errors = [];
      while (stack.length) {
        try {
          await stack.pop()();
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length) throw errors[0];
    });
  }
  stack.push(fn);
}

let binaryChecked = false;
function ensureBinary() {
  if (binaryChecked) return;
  if (!fs.existsSync(TOLLGATE_BIN)) {
    // scripts/test's cargo test step builds it; a single test file run by hand may come first.
    const built = spawnSync('cargo', ['build', '--locked', '-p', 'tollgate'], {
      cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, CARGO_TARGET_DIR: TARGET_DIR },
    });
    assert.equal(built.status, 0, `cargo build -p tollgate failed; no ${TOLLGATE_BIN}`);
  }
  binaryChecked = true;
}

/**
 * Fails unless the islands bundle exists: a page test that needs hydration must not pass, nor
 * be skipped, because the bundle was not built.
 */
export function requireBundle() {
  const missing = ['console.js', 'console_bg.wasm']
    .filter((name) => !fs.existsSync(path.join(BUNDLE_DIR, name)));
  assert.deepEqual(missing, [],
    `the console's islands bundle is missing from ${BUNDLE_DIR} (${missing.join(', ')}): ` +
    'run scripts/build-console (scripts/test does) before the browser tests');
}

/**
 * Starts `tollgate dev` on port 0 with a data dir of its own, serving the bundle from
 * BUNDLE_DIR, and stops it when test `t` ends. Returns `{ base, dataDir, output, log }`;
 * `base` is the console's URL without the trailing slash.
 */
export async function startTollgate(t, { args = [], timeout = 30_000 } = {}) {
  ensureBinary();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-browser-'));
  const log = path.join(dataDir, 'tollgate.log');
  const stderr = fs.openSync(log, 'w');
  const child = spawn(TOLLGATE_BIN, [
    'dev', '--data-dir', path.join(dataDir, 'data'), '--api-listen', '127.0.0.1:0',
    '--proxy-listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0',
    '--proxy-tls-listen', '127.0.0.1:0',
    '--console-dir', BUNDLE_DIR, ...args,
  ], {
    stdio: ['ignore', 'pipe', stderr],
    env: { ...process.env, TOLLGATE_LOG: process.env.TOLLGATE_LOG || 'info' },
  });
  fs.closeSync(stderr);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = signal || `exit code ${code}`;
    resolve();
  }));
  onTestEnd(t, async () => {
    if (exited === null) {
      child.kill('SIGTERM');
      const stopped = await Promise.race([
        exit.then(() => true),
        new Promise((resolve) => setTimeout(resolve, 10_000, false).unref()),
      ]);
      if (!stopped) {
        child.kill('SIGKILL');
        await exit;
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const output = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => output.push(line));
  const started = await waitFor('tollgate dev to print its console URL', () => {
    const line = output.find((l) => /^\s*console:\s+http:\/\//.test(l));
    if (line) return { base: line.match(/(http:\/\/[^\s/]+)\//)[1] };
    return exited !== null && { exited };
  }, { timeout });
  assert.ok(started.base, `tollgate dev stopped (${started.exited}) before it printed its ` +
    `console URL; log:\n${fs.readFileSync(log, 'utf8')}`);
  const { base } = started;
  return { base, dataDir, output, log };
}

/** Launches headless Chromium with a fresh profile (Playwright makes a new user data dir). */
export async function launchChromium(t) {
  assert.ok(fs.existsSync(CHROMIUM),
    `${CHROMIUM} is missing: scripts/services.sh installs Debian's chromium`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  onTestEnd(t, () => browser.close());
  return browser;
}

/**
 * A browser context for `base` with JavaScript on or off. Every page opened in it records its
 * problems (see `problemsOf`) and has each page it loads saved as a full-page screenshot;
 * those are all written before the context closes at the end of `t`.
 */
export async function newContext(t, browser, { base, javaScript = true, autoShots = true, ...options }) {
  const context = await browser.newContext({
    baseURL: base, javaScriptEnabled: javaScript, ...options,
  });
  const shots = [];
  const label = `${slug(t.name).slice(0, 40)}-js-${javaScript ? 'on' : 'off'}`;
  context.on('page', (page) => watchPage(page, { javaScript }, (name) => {
    // Tests that walk through pages quickly take their own shots, after each page settled.
    if (!autoShots) return;
    shots.push(screenshot(page, () => `${label}-${name()}`).catch((e) => {
      // A page that navigates again mid-shot loses that shot, not the test.
      console.error(`a screenshot of ${label} not saved: ${e.message.split("\n")[0]}`);
    }));
  }));
  onTestEnd(t, async () => {
    await Promise.all(shots);
    await context.close();
  });
  return context;
}

/** JavaScript on, as most people browse; see `newContext`. */
export function jsContext(t, browser, base, options = {}) {
  return newContext(t, browser, { base, javaScript: true, ...options });
}

/** JavaScript off: every page must work as plain HTML forms and links; see `newContext`. */
export function noJsContext(t, browser, base, options = {}) {
  return newContext(t, browser, { base, javaScript: false, ...options });
}

/**
 * The common start of a console test: a fresh `tollgate dev`, Chromium, and a context with
 * JavaScript on or off. Returns `{ server, base, browser, context, page }`.
 */
export async function openConsole(t, { javaScript = true, autoShots = true, contextOptions = {} } = {}) {
  const server = await startTollgate(t);
  const browser = await launchChromium(t);
  const context = await newContext(t, browser, {
    base: server.base, javaScript, autoShots, ...contextOptions,
  });
  const page = await context.newPage();
  return { server, base: server.base, browser, context, page };
}

/**
 * Signs up a new user and organization with `POST /api/v1/signup`; the session cookie it sets
 * goes into `context`, so its pages are signed in. Returns `{ email, password, organization,
 * me }` (`me`: the response body).
 */
export async function signUp(context, {
  email = `${randomUUID().slice(0, 12)}@example.com`,
  password = 'correct horse battery',
  organization = 'Acme',
} = {}) {
  const resp = await context.request.post('/api/v1/signup', {
    data: { email, password, organization },
  });
  assert.equal(resp.status(), 201, `signup: ${resp.status()} ${await resp.text()}`);
  const cookies = await context.cookies();
  assert.ok(cookies.some((c) => c.name === 'tollgate_session'),
    `signup set no session cookie; cookies: ${JSON.stringify(cookies)}`);
  return { email, password, organization, me: await resp.json() };
}

const problems = new WeakMap();

/**
 * What went wrong on `page` so far: `console` (console errors, and warnings about islands),
 * `exceptions` (uncaught), `failedRequests` (network failures) and `httpErrors` (responses
 * >= 400, except a favicon). `assertNoProblems(page)` checks the first three.
 */
export function problemsOf(page) {
  return problems.get(page);
}

export function assertNoProblems(page, { httpErrors = false } = {}) {
  const { console: messages, exceptions, failedRequests, httpErrors: http } = problemsOf(page);
  const found = [...messages, ...exceptions, ...failedRequests, ...(httpErrors ? http : [])];
  assert.deepEqual(found, [], `problems on ${page.url()}:\n  ${found.join('\n  ')}`);
}

function watchPage(page, { javaScript }, onLoad) {
  const found = { console: [], exceptions: [], failedRequests: [], httpErrors: [] };
  problems.set(page, found);
  page.on('console', (msg) => {
    // Chromium asks for /favicon.ico on its own and logs the 404; the console has none yet.
    if (msg.location()?.url?.endsWith('/favicon.ico')) return;
    if (msg.type() === 'error' || (msg.type() === 'warning' && /island/i.test(msg.text()))) {
      found.console.push(`console ${msg.type()}: ${msg.text()}`);
    }
  });
  page.on('pageerror', (e) => found.exceptions.push(`uncaught: ${e.message}`));
  page.on('requestfailed', (req) => {
    // With JavaScript off Chromium refuses the bundle's preloads, as a content security policy.
    if (!javaScript && req.failure()?.errorText === 'csp') return;
    // Leaving a page cancels what it was still loading (the bundle's preloads): not a failure.
    if (req.failure()?.errorText === 'net::ERR_ABORTED') return;
    found.failedRequests.push(`${req.method()} ${req.url()} failed: ${req.failure()?.errorText}`);
  });
  page.on('response', (resp) => {
    if (resp.status() >= 400 && !resp.url().endsWith('/favicon.ico')) {
      found.httpErrors.push(`${resp.request().method()} ${resp.url()}: ${resp.status()}`);
    }
  });
  let loads = 0;
  page.on('load', () => {
    loads += 1;
    // Named when the shot is taken, so the name says what the picture shows even when the
    // page has moved on while an earlier shot was being taken.
    const n = loads;
    onLoad(() => `load-${n}-${slug(new URL(page.url()).pathname) || 'root'}`);
  });
}

// Test files run in processes of their own: the file's name keeps their screenshots apart.
const FILE_LABEL = slug(path.basename(process.argv[1] || 'browser', '.js'));
let shotCount = 0;
/**
 * Saves a full-page screenshot of `page` as `<SCREENSHOTS>/<name>.png` (pages are saved on
 * each load already; this is for states after an interaction). `name` may be a function, called
 * when the shot is taken. Returns the file's path.
 */
export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  // One shot at a time per page: a shot taken while another is in progress can stall.
  const previous = shotQueues.get(page) || Promise.resolve();
  const shot = previous.catch(() => {}).then(async () => {
    shotCount += 1;
    const label = typeof name === 'function' ? name() : name;
    const file = path.join(SCREENSHOTS,
      `${FILE_LABEL}-${String(shotCount).padStart(2, '0')}-${slug(label)}.png`);
    // A page that navigates on mid-shot never finishes one; do not wait long for it.
    await page.screenshot({ path: file, fullPage: true, timeout: 10_000 });
    return file;
  });
  shotQueues.set(page, shot);
  return shot;
}

const shotQueues = new WeakMap();

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 120);
}
