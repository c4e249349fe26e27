// The console end to end in Chromium, once with JavaScript on and once off: sign up; create a
// control plane, a service and a route through the forms; see the field error for a path
// without a leading '/'; send a request through the edge; restore an older config version and
// see the edge follow; create and revoke a token; a viewer cannot edit; log out and back in.
// A screenshot of every page is saved once the page has settled (see harness.js).

import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';

import {
  assertNoProblems, newContext, openConsole, problemsOf, requireBundle, screenshot, waitFor,
} from './harness.js';

/** GET through the edge: `proxyUrl` is a control plane's `http://<slug>.localhost:<port>`. */
function throughEdge(proxyUrl, path) {
  const url = new URL(proxyUrl);
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: url.port, path, headers: { host: url.host } }, (res) => {
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
  });
}

async function edgeServes(proxyUrl, served, gone) {
  await waitFor(`the edge to serve ${served}${gone ? ` and not ${gone}` : ''}`, async () => {
    const ok = await throughEdge(proxyUrl, served);
    const old = gone ? await throughEdge(proxyUrl, gone) : { status: 404 };
    return ok.status === 200 && ok.body.includes('"status":"ok"') && old.status === 404;
  }, { timeout: 15_000 });
}

/** Submits with the button named `label`; waits for the navigation it causes. */
async function submit(page, label) {
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: label, exact: true }).click()]);
}

/**
 * Clicks a destructive button: with JavaScript the browser asks (accepted here); without, the
 * server shows a confirmation page whose button is `confirmLabel`.
 */
async function confirmAndSubmit(page, button, confirmLabel, javaScript) {
  if (javaScript) {
    page.once('dialog', (dialog) => dialog.accept());
    await Promise.all([page.waitForNavigation(), button.click()]);
  } else {
    await Promise.all([page.waitForNavigation(), button.click()]);
    await page.getByRole('heading', { level: 2 }).waitFor();
    await screenshot(page, `js-off-confirm-${confirmLabel}`);
    await submit(page, confirmLabel);
  }
}

/** A screenshot of the page as it is now (the test waits, so it shows what the name says). */
async function snap(page, name) {
  await screenshot(page, name);
}

async function whenInteractive(page, javaScript) {
  if (javaScript) await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
}

for (const javaScript of [true, false]) {
  test(`the console flow with JavaScript ${javaScript ? 'on' : 'off'}`, async (t) => {
    if (javaScript) requireBundle();
    const { base, browser, page } = await openConsole(t, { javaScript, autoShots: false });
    const mode = javaScript ? 'js-on' : 'js-off';
    const shot = (name) => snap(page, `${mode}-${name}`);
    const email = `owner-${javaScript ? 'js' : 'nojs'}@example.com`;
    const password = 'a long password';

    // Sign up.
    await page.goto('/signup');
    await shot('signup');
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.fill('#organization', 'Acme');
    await submit(page, 'Create account');
    assert.equal(new URL(page.url()).pathname, '/');
    await page.getByText('Welcome to Tollgate').waitFor();
    await shot('overview-empty');

    // A control plane, a service, a route.
    await page.fill('#name', 'shop');
    await submit(page, 'Create control plane');
    const cpPath = new URL(page.url()).pathname.replace(/\/services$/, '');
    assert.match(cpPath, /^\/control-planes\/[0-9a-f-]{36}$/);
    const proxyUrl = (await page.locator('.facts code').first().textContent()).trim();
    assert.match(proxyUrl, /^http:\/\/shop\.localhost:\d+$/);
    await page.fill('#name', 'health');
    await page.fill('#url', `${base}/api/v1/health`);
    await submit(page, 'Create service');
    await page.getByText('Service health created').waitFor();
    await shot('services');

    await page.goto(`${cpPath}/routes`);
    await page.fill('#name', 'r1');
    await page.selectOption('#service', { label: 'health' });
    await page.fill('#paths', 'health');
    await submit(page, 'Create route');
    const pathError = page.locator('#paths-error');
    await pathError.waitFor();
    await shot('routes-field-error');
    assert.match(await pathError.textContent(), /line 1: should start with: \/ \(fixed path\)/);
    assert.equal(await page.locator('#paths').inputValue(), 'health', 'the typed value is kept');
    await page.fill('#paths', '/health');
    await submit(page, 'Create route');
    await page.getByText('Route r1 created').waitFor();
    await shot('routes');
    const curl = await page.locator('td.curl code').first().textContent();
    assert.equal(curl, `curl -i ${proxyUrl}/health`);

    // Through the edge.
    await edgeServes(proxyUrl, '/health');

    // Change the route, then restore the version before the change: the edge follows both.
    await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'r1', exact: true }).click()]);
    await page.fill('#paths', '/v2');
    await submit(page, 'Save route');
    await page.getByText('Route saved').waitFor();
    await shot('route-page');
    await edgeServes(proxyUrl, '/v2', '/health');
    await page.goto(`${cpPath}/history`);
    await whenInteractive(page, javaScript);
    const version3 = page.locator('tr', { has: page.locator('td.num', { hasText: /^3$/ }) });
    await confirmAndSubmit(page, version3.getByRole('button', { name: 'Restore' }), 'Yes, restore', javaScript);
    await page.getByText('Version 3 restored as version 5').waitFor();
    await shot('history-restored');
    await edgeServes(proxyUrl, '/health', '/v2');
    await page.goto(`${cpPath}/history?from=4&to=5`);
    await page.getByText('Changes from version 4 to 5').waitFor();
    await shot('history-diff');

    // Nodes: the dev edge reports the restored version.
    await waitFor('the node list to show version 5', async () => {
      await page.goto(`${cpPath}/nodes`);
      return (await page.locator('td.num').first().textContent()) === '5';
    }, { timeout: 15_000 });
    assert.equal(await page.locator('.badge').first().textContent(), 'up to date');
    await shot('nodes');
    await page.goto('/');
    await page.getByText('1 of 1 nodes current · applied v5').waitFor();
    await shot('overview');

    // A token: shown once, works, revoked, stops working.
    await page.goto('/tokens');
    await page.fill('#name', 'ci');
    await submit(page, 'Create token');
    const token = (await page.locator('code.secret').textContent()).trim();
    await shot('token-shown-once');
    assert.match(token, /^tgp_[0-9a-f]{64}$/);
    const me = (bearer) => fetch(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${bearer}` } });
    assert.equal((await me(token)).status, 200);
    await page.goto('/tokens');
    await whenInteractive(page, javaScript);
    const ciRow = page.locator('tr', { has: page.locator('td', { hasText: /^ci$/ }) });
    await confirmAndSubmit(page, ciRow.getByRole('button', { name: 'Revoke' }), 'Yes, revoke', javaScript);
    await page.getByText('Token revoked').waitFor();
    await shot('tokens-revoked');
    assert.equal((await me(token)).status, 401);

    // A viewer, invited through the Members page, sees everything and can change nothing.
    await page.goto('/members');
    await page.fill('#email', 'viewer@example.com');
    await page.selectOption('#role', 'viewer');
    await submit(page, 'Create invitation link');
    const link = (await page.locator('code.secret').textContent()).trim();
    assert.ok(link.startsWith(`${base}/invite/`), link);
    await shot('members-invitation-link');
    const viewerContext = await newContext(t, browser, { base, javaScript, autoShots: false });
    const viewer = await viewerContext.newPage();
    await viewer.goto(link);
    await snap(viewer, `${mode}-invite-accept`);
    await viewer.fill('#password', 'viewer password');
    await submit(viewer, 'Accept invitation');
    assert.equal(new URL(viewer.url()).pathname, '/');
    for (const tab of ['services', 'routes', 'history']) {
      await viewer.goto(`${cpPath}/${tab}`);
      await viewer.getByText('You have read-only access').waitFor();
      await snap(viewer, `${mode}-viewer-${tab}`);
      assert.equal(await viewer.locator('form[method="post"] button.btn:not(.btn-ghost)').count(), 0,
        `no write forms on ${tab} for a viewer`);
    }
    await viewer.goto(`${cpPath}/routes/r1`);
    await viewer.getByText('Viewers cannot edit routes').waitFor();
    const forged = await viewerContext.request.post(`${base}/api/v1${cpPath}/routes`, {
      data: { name: 'x', paths: ['/x'] },
    });
    assert.equal(forged.status(), 403, 'the API refuses a viewer');

    // Log out and back in.
    await submit(page, 'Log out');
    assert.equal(new URL(page.url()).pathname, '/login');
    await shot('login');
    await page.goto(`${cpPath}/routes`);
    assert.equal(new URL(page.url()).pathname, '/login', 'signed out, pages send you to log in');
    await page.fill('#email', email);
    await page.fill('#password', password);
    await submit(page, 'Log in');
    assert.equal(new URL(page.url()).pathname, `${cpPath}/routes`, 'back where you were going');
    await page.getByText('r1').first().waitFor();
    await shot('back-in');

    if (javaScript) {
      // The refused route form answers 400 on purpose; Chromium logs that as an error.
      const { console: messages, exceptions, failedRequests } = problemsOf(page);
      const unexpected = [...messages.filter((m) => !m.includes('status of 400')), ...exceptions, ...failedRequests];
      assert.deepEqual(unexpected, [], `problems on the owner's pages:\n  ${unexpected.join('\n  ')}`);
      assertNoProblems(viewer);
    }
  });
}
