// Drives wasmon's web UI in headless Chromium, as a person would: reads the
// targets, alerts, plugins and query pages, and creates then expires a
// silence through the form, checking the API agrees. Run by tests/e2e_ui.rs:
//   WASMON_URL=http://127.0.0.1:PORT WASMON_USER=u WASMON_PASSWORD=p \
//   CHROMIUM=/usr/bin/chromium node tests/ui/ui.test.mjs
// Exits non-zero (with what failed) on the first failed check.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.WASMON_URL;
assert.ok(base, 'WASMON_URL is not set');
const user = process.env.WASMON_USER;
const password = process.env.WASMON_PASSWORD;
const auth = user ? { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } : {};
const shots = process.env.SCREENSHOT_DIR;
const TIMEOUT = 15000;

async function apiGet(path) {
  const r = await fetch(base + path, { headers: auth });
  assert.equal(r.status, 200, `GET ${path}`);
  return r.json();
}

function step(name) { console.log(`ui: ${name}`); }

// A fresh profile, never the user's; only Debian's browser, never a download.
const profile = mkdtempSync(join(tmpdir(), 'wasmon-ui-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  httpCredentials: user ? { username: user, password } : undefined,
  viewport: { width: 1280, height: 800 },
  timeout: 60000,
});
const errors = [];
let failed = false;
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  // Chromium logs every non-2xx fetch; the bad-input steps cause those on purpose.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console error: ${m.text()}`);
  });
  // Prompts are answered from this queue (a step pushes its answers first);
  // any other dialog is dismissed.
  const answers = [];
  page.on('dialog', (d) => (answers.length ? d.accept(answers.shift()) : d.dismiss()));
  const shot = async (name) => { if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true }); };
  // One part of a long page (hundreds of targets), as a person scrolled to it sees it.
  const shotOf = async (locator, name) => {
    if (!shots) return;
    await locator.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, `${name}.png`) });
  };

  step('targets page shows the scrape target up');
  await page.goto(`${base}/#targets`);
  const target = page.locator('#targets-table tr[data-job="app"]');
  await target.locator('.health', { hasText: 'up' }).waitFor();
  assert.match(await target.textContent(), /127\.0\.0\.1:\d+\/metrics/);
  await shot('targets');

  const pods = Number(process.env.WASMON_PODS || 0);
  step(`targets page lists ${pods} discovered pods, half dropped, and says why one was dropped`);
  const dropped = page.locator('#dropped-table tr.dropped[data-job="pods"]');
  await page.locator('#dropped summary').click();
  await dropped.first().waitFor();
  assert.equal(await dropped.count(), pods / 2);
  assert.equal(await page.locator('#targets-table tr.target[data-job="pods"]').count(), pods / 2);
  assert.equal(await page.locator('#dropped-count').textContent(), `(${pods / 2})`);
  const one = dropped.filter({ hasText: '"web-1"' });
  await one.locator('button.trace').click();
  const trace = page.locator('#dropped-table tr.trace-row .trace');
  await trace.locator('.trace-out', { hasText: 'DROPPED by rule 0 (keep)' }).waitFor();
  // Rule 0 is where it was dropped; the rules after it were not applied.
  assert.match(await trace.locator('tr.step.dropping').textContent(), /rule 0.*action: keep.*__meta_pod_annotation_scrape.*source value "false"dropped here/);
  assert.equal(await trace.locator('tr.step.skipped').count(), 3);
  // The job defaults went in before the rules.
  assert.match(await trace.locator('tr.step.defaults').textContent(), /\+ __scrape_interval__="1h".*\+ job="pods"/);
  // The page shows what the API says.
  const droppedLabels = (await apiGet('/api/v1/targets?state=dropped')).data.droppedTargets
    .find((t) => t.discoveredLabels.__meta_pod_name === 'web-1').discoveredLabels;
  const steps = (await apiGet(`/api/v1/targets/relabel_steps?${new URLSearchParams({ scrapePool: 'pods', labels: JSON.stringify(droppedLabels) })}`)).data;
  assert.deepEqual(steps.steps.map((s) => s.keep), [false, false, false, false]);
  assert.equal(steps.droppedBy, 0);
  await shotOf(trace, 'targets-dropped-trace');
  await one.locator('button.trace').click();
  assert.equal(await page.locator('#dropped-table tr.trace-row').count(), 0);

  step('a kept pod\'s trace shows each change and the scrape URL');
  const kept = page.locator('#targets-table tr.target[data-job="pods"]', { hasText: 'pod="web-2"' });
  await kept.locator('button.trace').click();
  const ktrace = page.locator('#targets-table tr.trace-row .trace');
  await ktrace.locator('.trace-out', { hasText: 'KEPT' }).waitFor();
  assert.match(await ktrace.locator('.trace-out').textContent(), /scraped at http:\/\/127\.0\.0\.1:30002\/metrics with app="web"instance="127\.0\.0\.1:30002"/);
  assert.match(await ktrace.locator('tr.step').nth(2).textContent(), /~ __address__="127\.0\.0\.1:20002" → "127\.0\.0\.1:30002"/);
  assert.match(await ktrace.locator('tr.step').nth(3).textContent(), /\+ app="web"/);
  assert.equal(await ktrace.locator('tr.step.skipped').count(), 0);
  await shotOf(ktrace, 'targets-kept-trace');

  step('discovery status is shown per job, with the error of a mechanism that is down');
  // The agent's own status first: the file SD of job pods, up, with its targets.
  const real = page.locator('#discovery-table tr.mechanism.up[data-job="pods"]');
  await real.waitFor();
  assert.match(await real.textContent(), new RegExp(`file_sd_configs\\[0\\].*up${pods}`));
  // Then a mechanism that is down, as the API would report it.
  await page.route('**/api/v1/targets', async (route) => {
    const r = await route.fetch();
    const body = await r.json();
    body.data.discoveryStatus = [
      { scrapePool: 'pods', config: 0, mechanism: 'file', health: 'up', lastError: '', lastSuccess: new Date().toISOString(), targets: pods },
      { scrapePool: 'k8s', config: 0, mechanism: 'kubernetes', health: 'down', lastError: 'list pods: 403 Forbidden: add get/list/watch on pods to the ClusterRole', lastSuccess: null, targets: 0 },
    ];
    await route.fulfill({ response: r, json: body });
  });
  await page.click('#nav a[href="#targets"]');
  const down = page.locator('#discovery-table tr.mechanism.down[data-job="k8s"]');
  await down.waitFor();
  assert.match(await down.textContent(), /kubernetes.*down.*403 Forbidden: add get\/list\/watch on pods/);
  const up = page.locator('#discovery-table tr.mechanism.up[data-job="pods"]');
  assert.match(await up.textContent(), new RegExp(`file.*up${pods}`));
  assert.equal(await up.locator('.error').textContent(), '');
  await shotOf(page.locator('#page-targets h1'), 'targets-discovery');
  await page.unroute('**/api/v1/targets');

  step('alerts page shows the firing alert in its group');
  await page.click('#nav a[href="#alerts"]');
  const alert = page.locator('#alert-groups .group .alert', { hasText: 'alertname="UiTestAlert"' });
  await alert.waitFor();
  assert.match(await alert.textContent(), /raised by the UI test/);
  await shot('alerts');

  step('acknowledging the group from the UI records who, why and until when');
  answers.push('looking into it', '45m');
  await page.locator('#alert-groups .group', { hasText: 'UiTestAlert' }).locator('button.ack').click();
  const acked = page.locator('#alert-groups .group .acked', { hasText: 'acked by ui: looking into it' });
  await acked.waitFor();
  const acks = await apiGet('/api/v1/acks');
  assert.equal(acks.length, 1, JSON.stringify(acks));
  assert.equal(acks[0].by, 'ui');
  assert.equal(acks[0].comment, 'looking into it');
  const ackMinutes = (Date.parse(acks[0].expires_at) - Date.parse(acks[0].created_at)) / 60000;
  assert.ok(Math.abs(ackMinutes - 45) < 0.1, `ack lasts ${ackMinutes} min`);
  const groups = await apiGet('/api/v2/alerts/groups');
  assert.ok(groups.some((g) => g.ack && g.ack.id === acks[0].id), JSON.stringify(groups));
  await shot('acked');

  step('unack from the UI removes it');
  await page.locator('#alert-groups .group', { hasText: 'UiTestAlert' }).locator('button.unack').click();
  await page.locator('#alert-groups .group', { hasText: 'UiTestAlert' }).locator('button.ack').waitFor();
  assert.deepEqual(await apiGet('/api/v1/acks'), []);

  step('a silence created from the form appears in the API');
  await page.click('#nav a[href="#silences"]');
  await page.fill('#silence-form input[name=matchers]', 'alertname="UiTestAlert", severity=~"page|crit"');
  await page.fill('#silence-form input[name=duration]', '30m');
  await page.fill('#silence-form input[name=comment]', 'silenced by the UI test');
  await page.click('#silence-form button[type=submit]');
  const row = page.locator('#silences-table tr.silence', { hasText: 'silenced by the UI test' });
  await row.locator('.state', { hasText: 'active' }).waitFor();
  const id = await row.getAttribute('data-id');
  let s = await apiGet(`/api/v2/silence/${id}`);
  assert.equal(s.status.state, 'active');
  assert.equal(s.comment, 'silenced by the UI test');
  assert.deepEqual(s.matchers.map((m) => [m.name, m.value, m.isRegex, m.isEqual]),
    [['alertname', 'UiTestAlert', false, true], ['severity', 'page|crit', true, true]]);
  const minutes = (Date.parse(s.endsAt) - Date.parse(s.startsAt)) / 60000;
  assert.ok(Math.abs(minutes - 30) < 1, `silence lasts ${minutes} min, not 30`);
  await shot('silences');

  step('expiring it from the UI expires it in the API');
  await row.locator('button.expire').click();
  await page.locator(`#silences-table tr.silence[data-id="${id}"] .state`, { hasText: 'expired' }).waitFor();
  s = await apiGet(`/api/v2/silence/${id}`);
  assert.equal(s.status.state, 'expired');

  step('a bad matcher is reported, not sent');
  await page.fill('#silence-form input[name=matchers]', 'not a matcher');
  await page.fill('#silence-form input[name=comment]', 'bad');
  await page.click('#silence-form button[type=submit]');
  await page.locator('#status', { hasText: 'cannot read matchers' }).waitFor();

  step('plugins page lists the receiver plugin with its version');
  await page.click('#nav a[href="#plugins"]');
  const plugin = page.locator('#plugins-table tr[data-plugin="webhook"]');
  await plugin.waitFor();
  const cells = await plugin.locator('td').allTextContents();
  assert.equal(cells[1], 'receiver');
  const plugins = (await apiGet('/api/v1/plugins')).data;
  const hash = plugins.find((p) => p.name === 'webhook').hash;
  assert.equal(cells[2], hash.slice(0, 16));
  await shot('plugins');

  step('rollouts page renders');
  await page.click('#nav a[href="#rollouts"]');
  await page.locator('#rollouts-table tbody tr').first().waitFor();

  step('query page: table and a graph with points for `up`');
  await page.click('#nav a[href="#query"]');
  await page.fill('#expr', 'up');
  await page.selectOption('#query-form select[name=range]', '5m');
  await page.click('#query-form button[type=submit]');
  await page.locator('#graph svg g.series circle.point').nth(1).waitFor();
  const points = await page.locator('#graph svg g.series[data-name*="job=\\"app\\""] circle.point').count();
  assert.ok(points >= 2, `only ${points} points for up{job="app"}`);
  const ys = await page.locator('#graph svg g.series[data-name*="job=\\"app\\""] circle.point')
    .evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('cy'))));
  assert.ok(ys.every((y) => Number.isFinite(y) && y >= 0 && y <= 320), `points off the chart: ${ys}`);
  const tableRow = page.locator('#query-table tbody tr', { hasText: 'job="app"' });
  assert.equal((await tableRow.locator('td').nth(1).textContent()).trim(), '1');
  assert.match(page.url(), /#query\?expr=up/);
  await shot('query');

  step('a bad expression shows the API error');
  await page.fill('#expr', 'sum(');
  await page.click('#query-form button[type=submit]');
  await page.locator('#query-error:not([hidden])').waitFor();

  assert.deepEqual(errors, [], 'the page logged errors');
  console.log(`ui: all checks passed (${points} points drawn for up{job="app"})`);
} catch (e) {
  failed = true;
  console.error(`ui: FAILED: ${e.stack || e}`);
  if (errors.length) console.error(errors.join('\n'));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
