// The console shell with JavaScript on (the islands bundle loads and hydrates) and off (plain
// HTML with the console's stylesheet), on the pages that exist: `/` signed in (the control
// planes overview, whose sidebar holds the theme toggle) and `/` signed out (sent to log in).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  assertNoProblems, openConsole, problemsOf, requireBundle, screenshot, signUp, waitFor,
} from './harness.js';

// The browser's own defaults (8px margin, transparent background) mean no stylesheet applied.
async function assertStyled(page) {
  const body = await page.locator('body').evaluate((el) => {
    const style = getComputedStyle(el);
    return { margin: style.marginTop, background: style.backgroundColor };
  });
  assert.equal(body.margin, '0px', 'the console stylesheet is not applied');
  assert.notEqual(body.background, 'rgba(0, 0, 0, 0)', 'the console stylesheet is not applied');
}

test('with JavaScript on, the islands bundle loads and hydrates the theme toggle', async (t) => {
  requireBundle();
  const { context, page } = await openConsole(t, {
    javaScript: true, contextOptions: { colorScheme: 'light' },
  });
  await signUp(context, { organization: 'Hydration' });
  const bundleResponses = ['/pkg/console.js', '/pkg/console_bg.wasm'].map((file) =>
    page.waitForResponse((resp) => new URL(resp.url()).pathname === file));

  await page.goto('/');
  for (const resp of await Promise.all(bundleResponses)) {
    assert.equal(resp.status(), 200, `${resp.url()}: ${resp.status()}`);
  }
  assert.equal(new URL(page.url()).pathname, '/', 'signed in, / is the console home');
  await page.locator('h1').waitFor();

  // The toggle only works once the wasm has hydrated it: until then a click does nothing, so
  // click until the theme changes (no data-theme before: no theme was chosen yet).
  const root = page.locator('html');
  assert.equal(await root.getAttribute('data-theme'), null);
  const toggle = page.locator('button.theme-toggle');
  const theme = await waitFor('the theme toggle to be hydrated and set data-theme', async () => {
    await toggle.click();
    return root.getAttribute('data-theme');
  }, { timeout: 20_000, interval: 100 });
  assert.equal(theme, 'dark', 'from the light system theme the first switch is to dark');
  await screenshot(page, 'islands-hydrated-dark-theme');

  await toggle.click();
  assert.equal(await root.getAttribute('data-theme'), 'light');
  // The choice is kept and applied before the first paint of the next page.
  await toggle.click();
  await page.reload();
  assert.equal(await root.getAttribute('data-theme'), 'dark');

  assertNoProblems(page, { httpErrors: true });
});

test('with JavaScript off, pages render and the stylesheet applies', async (t) => {
  const { context, page } = await openConsole(t, { javaScript: false });
  const stylesheet = page.waitForResponse((resp) =>
    new URL(resp.url()).pathname === '/pkg/console.css');

  await page.goto('/');
  const css = await stylesheet;
  assert.equal(css.status(), 200);
  assert.match(css.headers()['content-type'], /^text\/css/);
  assert.equal(new URL(page.url()).pathname, '/login', 'signed out, / sends to log in');
  assert.equal((await page.locator('h1').textContent()).trim(), 'Log in');
  await assertStyled(page);

  await signUp(context, { organization: 'Plain HTML' });
  await page.goto('/');
  assert.equal(new URL(page.url()).pathname, '/');
  assert.ok((await page.locator('h1').textContent()).trim(), 'the signed-in home has a heading');
  await assertStyled(page);

  // Nothing the pages link to is missing, scripts or not.
  assert.deepEqual(problemsOf(page).httpErrors, []);
  assertNoProblems(page);
});
