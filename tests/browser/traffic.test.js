// The Traffic dashboard end to end, with JavaScript on and off: requests sent through the real
// edge of `tollgate dev` reach its analytics store, and the dashboard (reloaded until they do)
// shows their counts per route and a chart; following a route's link, or picking a route in the
// filter form, narrows the numbers to that route; its CSV export carries the same rows.

import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';

import { assertNoProblems, openConsole, requireBundle, screenshot, signUp, waitFor } from './harness.js';

/** Every answer the edge gave, by `<path> <status>`: the counts the dashboard must show. */
function edgeClient(proxyUrl) {
  const url = new URL(proxyUrl);
  const answered = new Map();
  const get = (path) => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: url.port, path, headers: { host: url.host } }, (res) => {
      res.resume();
      res.on('end', () => {
        const key = `${path} ${res.statusCode}`;
        answered.set(key, (answered.get(key) || 0) + 1);
        resolve(res.statusCode);
      });
    });
    req.on('error', () => resolve(0));
  });
  return { get, answered: (path, status) => answered.get(`${path} ${status}`) || 0 };
}

/** The number in a dashboard figure, `<dd data-stat="name">`. */
async function stat(page, name) {
  const text = await page.locator(`[data-stat="${name}"]`).textContent();
  return Number(text.replace(/,/g, ''));
}

/** Reloads `path` until the requests figure is `expected` (logs arrive a batch at a time). */
async function reloadUntil(page, path, expected, what) {
  let seen;
  await waitFor(`${what}: ${expected} requests on the dashboard`, async () => {
    await page.goto(path);
    // Until the store answers, the page may say that analytics are unavailable instead.
    if (await page.locator('[data-stat="requests"]').count() === 0) return false;
    seen = await stat(page, 'requests');
    return seen === expected;
  }, { timeout: 30_000, interval: 500 }).catch((e) => {
    throw new Error(`${e.message} (last seen: ${seen})`);
  });
}

for (const javaScript of [true, false]) {
  test(`the traffic dashboard with JavaScript ${javaScript ? 'on' : 'off'}`, async (t) => {
    if (javaScript) requireBundle();
    const { base, context, page } = await openConsole(t, { javaScript, autoShots: false });
    const mode = javaScript ? 'js-on' : 'js-off';
    await signUp(context, { organization: 'Traffic' });

    // A control plane whose two routes reach the dev API's health endpoint.
    const api = async (path, data) => {
      const resp = await context.request.post(`/api/v1${path}`, { data });
      assert.equal(resp.status(), 201, `${path}: ${await resp.text()}`);
      return resp.json();
    };
    const plane = await api('/control-planes', { name: 'shop' });
    const service = await api(`/control-planes/${plane.id}/services`, {
      name: 'health-svc', url: `${base}/api/v1/health`,
    });
    const orders = await api(`/control-planes/${plane.id}/routes`, {
      name: 'orders-route', paths: ['/orders'], service: { id: service.id },
    });
    const other = await api(`/control-planes/${plane.id}/routes`, {
      name: 'other-route', paths: ['/other'], service: { id: service.id },
    });

    // Through the edge: wait until it routes both paths, then a known number more.
    const edge = edgeClient(plane.proxy_url);
    await waitFor('the edge to route /orders and /other', async () =>
      (await edge.get('/orders')) === 200 && (await edge.get('/other')) === 200,
    { timeout: 15_000, interval: 100 });
    for (let i = 0; i < 7; i += 1) await edge.get('/orders');
    for (let i = 0; i < 2; i += 1) await edge.get('/other');
    // Only answers a route gave are attributed to it; earlier 404s (config not there yet) are not.
    const ordersCount = edge.answered('/orders', 200);
    const otherCount = edge.answered('/other', 200);
    assert.ok(ordersCount >= 8 && otherCount >= 3, `${ordersCount} ${otherCount}`);

    // The dashboard, filtered to each route by URL, shows exactly what the edge answered.
    await reloadUntil(page, `/traffic?route=${orders.id}`, ordersCount, 'orders-route');
    await reloadUntil(page, `/traffic?route=${other.id}`, otherCount, 'other-route');

    // The whole organization: at least both routes' requests, a chart, the top routes by name.
    await page.goto('/traffic');
    assert.ok(await stat(page, 'requests') >= ordersCount + otherCount);
    const chart = page.locator('figure.chart', { hasText: 'Requests and errors' });
    await chart.locator('svg path.line').first().waitFor();
    assert.ok(await chart.locator('svg rect.hit title').count() >= 60, 'a tooltip per minute');
    const ordersRow = page.locator('#top_routes tr', { hasText: 'orders-route' });
    assert.equal(Number(await ordersRow.locator('td.num').first().textContent()), ordersCount);
    await screenshot(page, `${mode}-traffic-dashboard`);

    // Drill down: the route's link reloads the dashboard filtered by it.
    await Promise.all([
      page.waitForNavigation(),
      ordersRow.getByRole('link', { name: 'orders-route' }).click(),
    ]);
    assert.equal(new URL(page.url()).searchParams.get('route'), orders.id);
    assert.equal(await stat(page, 'requests'), ordersCount);
    await page.locator('[data-filters]', { hasText: 'orders-route' }).waitFor();
    await screenshot(page, `${mode}-traffic-drilled-to-route`);

    // The filter form (a plain GET form): pick the other route, apply.
    await page.selectOption('#f-route', { label: 'shop / other-route' });
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Apply' }).click()]);
    assert.equal(new URL(page.url()).searchParams.get('route'), other.id);
    assert.equal(await stat(page, 'requests'), otherCount);
    await screenshot(page, `${mode}-traffic-filtered-by-form`);

    // The route's CSV export: one row, the same count.
    const csvHref = await page.locator('#top_routes').locator('..').getByRole('link', { name: 'CSV' }).getAttribute('href');
    const csv = await context.request.get(csvHref);
    assert.equal(csv.status(), 200);
    assert.match(csv.headers()['content-disposition'], /^attachment; filename="traffic-top_routes-.*\.csv"$/);
    const rows = (await csv.text()).trim().split('\r\n');
    assert.equal(rows.length, 2, rows.join('\n'));
    assert.deepEqual(rows[1].split(',').slice(0, 3), [other.id, 'other-route', String(otherCount)]);

    // The control plane's own Traffic tab, and the overview's requests today.
    await page.goto(`/control-planes/${plane.id}/traffic?route=${orders.id}`);
    assert.equal(await stat(page, 'requests'), ordersCount);
    await page.goto('/');
    assert.ok(await stat(page, 'requests_today') >= ordersCount + otherCount);
    await screenshot(page, `${mode}-overview-requests-today`);

    assertNoProblems(page);
  });
}
