// wasmon's web UI: one page, a tab per view (location hash), each view
// rendered from the JSON API. No framework and no build step: this file is
// served as-is from the binary.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);

// Element builder: h('td', {class: 'x'}, 'text', child...). Text is always
// set as text (never HTML), so label values cannot inject markup.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function setStatus(msg) { $('#status').textContent = msg; }

async function api(path, opts = {}) {
  const r = await fetch(path, Object.assign({ headers: { 'Content-Type': 'application/json' } }, opts));
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!r.ok) {
    const why = body && (body.error || body.message) || text || r.statusText;
    throw new Error(`${opts.method || 'GET'} ${path}: ${r.status} ${why}`);
  }
  return body;
}

const labelChips = (labels) => Object.entries(labels || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}="${v}"`));
// Go's zero time (`0001-01-01T00:00:00Z`, a target not scraped yet) is no time.
const fmtTime = (t) => t && !String(t).startsWith('0001-') ? new Date(t).toLocaleString() : '';
const emptyRow = (cols, msg) => h('tr', {}, h('td', { class: 'empty', colspan: cols }, msg));
function fill(tbody, rows, cols, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [emptyRow(cols, empty)]));
}

// ---- Targets ----
// Discovery status per job (`discoveryStatus`, when the agent reports it),
// active and dropped targets; any target's relabeling can be traced rule by
// rule (/api/v1/targets/relabel_steps), dropped ones included.
async function targets() {
  const d = (await api('/api/v1/targets')).data;
  renderDiscovery(d.discoveryStatus);
  const active = d.activeTargets || [];
  const rows = active.map((t) => h('tr', { 'data-job': t.scrapePool, class: 'target' },
    h('td', {}, t.scrapePool),
    h('td', { class: 'mono' }, t.scrapeUrl),
    h('td', {}, h('span', { class: `badge health ${t.health}` }, t.health)),
    h('td', {}, labelChips(t.labels)),
    h('td', {}, fmtTime(t.lastScrape)),
    h('td', {}, t.lastScrapeDuration != null ? `${(t.lastScrapeDuration * 1000).toFixed(1)} ms` : ''),
    h('td', { class: 'error' }, t.lastError || ''),
    h('td', {}, traceButton(t.scrapePool, t.discoveredLabels, 8))));
  fill($('#targets-table tbody'), rows, 8, 'No targets.');
  $('#targets-count').textContent = `(${active.length})`;

  const dropped = d.droppedTargets || [];
  const counts = d.droppedTargetCounts || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0) || dropped.length;
  $('#dropped-count').textContent = `(${total})`;
  const drows = dropped.map((t) => h('tr', { 'data-job': t.scrapePool, class: 'dropped' },
    h('td', {}, t.scrapePool),
    h('td', { class: 'mono' }, (t.discoveredLabels || {}).__address__ || ''),
    h('td', {}, labelChips(t.discoveredLabels)),
    h('td', {}, traceButton(t.scrapePool, t.discoveredLabels, 4, 'Why dropped?'))));
  fill($('#dropped-table tbody'), drows, 4, 'No dropped targets.');
}

function renderDiscovery(status) {
  const box = $('#discovery');
  if (!Array.isArray(status) || !status.length) { box.hidden = true; return; }
  box.hidden = false;
  const rows = status.map((s) => h('tr', { 'data-job': s.scrapePool, class: `mechanism ${s.health}` },
    h('td', {}, s.scrapePool),
    h('td', {}, s.mechanism),
    h('td', { class: 'mono' }, s.config != null ? String(s.config) : ''),
    h('td', {}, h('span', { class: `badge health ${s.health}` }, s.health)),
    h('td', {}, s.targets != null ? String(s.targets) : ''),
    h('td', {}, fmtTime(s.lastSuccess)),
    h('td', { class: 'error' }, s.health === 'down' ? (s.lastError || 'down (no error given)') : '')));
  fill($('#discovery-table tbody'), rows, 7, '');
}

// A button that opens (or closes) the trace under its row.
function traceButton(pool, labels, cols, text = 'Relabeling') {
  return h('button', { class: 'secondary trace', type: 'button',
    onclick: (ev) => toggleTrace(ev.target.closest('tr'), pool, labels, cols).catch(showError) }, text);
}

async function toggleTrace(tr, pool, labels, cols) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains('trace-row')) { next.remove(); return; }
  const q = new URLSearchParams({ scrapePool: pool, labels: JSON.stringify(labels || {}) });
  const t = (await api(`/api/v1/targets/relabel_steps?${q}`)).data;
  tr.after(h('tr', { class: 'trace-row' }, h('td', { colspan: cols }, renderTrace(t))));
}

// Labels after a step, each marked against the labels before it:
// added, changed (old value shown) or removed.
function labelDiff(before, after) {
  const out = [];
  for (const [k, v] of Object.entries(after)) {
    if (!(k in before)) out.push(h('span', { class: 'label added', title: 'added' }, `+ ${k}="${v}"`));
    else if (before[k] !== v) out.push(h('span', { class: 'label changed', title: 'changed' }, `~ ${k}="${before[k]}" → "${v}"`));
  }
  for (const [k, v] of Object.entries(before)) {
    if (!(k in after)) out.push(h('span', { class: 'label removed', title: 'removed' }, `- ${k}="${v}"`));
  }
  return out.length ? out : [h('span', { class: 'muted' }, 'no change')];
}

function ruleText(r) {
  const parts = [`action: ${r.action}`];
  if (r.source_labels) parts.push(`source_labels: [${r.source_labels.join(', ')}]`);
  if (r.separator !== ';') parts.push(`separator: ${JSON.stringify(r.separator)}`);
  parts.push(`regex: ${r.regex}`);
  if (r.modulus) parts.push(`modulus: ${r.modulus}`);
  if (r.target_label) parts.push(`target_label: ${r.target_label}`);
  if (['replace', 'labelmap'].includes(r.action)) parts.push(`replacement: ${r.replacement}`);
  return parts.join('  ');
}

// What a rule compared: its source labels' values joined by its separator.
const sourceValue = (r, labels) => (r.source_labels || []).map((n) => labels[n] || '').join(r.separator);

function renderTrace(t) {
  const rows = [h('tr', { class: 'step defaults' },
    h('td', {}, 'job defaults'),
    h('td', { class: 'mono' }, 'job, __scheme__, __metrics_path__, __scrape_interval__, __scrape_timeout__, __param_*'),
    h('td', {}, labelDiff(t.discoveredLabels, t.input)),
    h('td', {}, ''))];
  let before = t.input;
  t.steps.forEach((s, i) => {
    const applied = t.droppedBy == null || i <= t.droppedBy;
    const verdict = !applied ? h('span', { class: 'muted' }, 'not applied')
      : s.keep ? h('span', { class: 'badge up' }, 'kept') : h('span', { class: 'badge down' }, 'dropped here');
    rows.push(h('tr', { class: `step${applied ? '' : ' skipped'}${t.droppedBy === i ? ' dropping' : ''}` },
      h('td', {}, `rule ${i}`),
      h('td', { class: 'mono' }, ruleText(s.rule)),
      h('td', {}, applied && s.keep ? labelDiff(before, s.output)
        : t.droppedBy === i ? h('span', { class: 'muted' }, `source value ${JSON.stringify(sourceValue(s.rule, before))}`) : ''),
      h('td', {}, verdict)));
    if (applied && s.keep) before = s.output;
  });
  let result;
  if (t.target) {
    result = [h('span', { class: 'badge up' }, 'KEPT'), ' scraped at ', h('span', { class: 'mono' }, t.target.scrapeUrl),
      ' with ', ...labelChips(t.target.labels)];
  } else if (t.droppedBy != null) {
    result = [h('span', { class: 'badge down' }, 'DROPPED'), ` by rule ${t.droppedBy} (${t.steps[t.droppedBy].rule.action})`];
  } else {
    result = [h('span', { class: 'badge down' }, 'NO TARGET'), ` ${t.error || ''}`];
  }
  return h('div', { class: 'trace' },
    h('div', { class: 'trace-in' }, 'Discovered: ', labelChips(t.discoveredLabels)),
    h('table', { class: 'steps' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Step'), h('th', {}, 'Rule'), h('th', {}, 'Labels changed'), h('th', {}, 'Result'))),
      h('tbody', {}, rows)),
    h('div', { class: 'trace-out' }, result));
}

// ---- Alerts ----
// Alertmanager's group key: the route's matchers and the group labels.
const groupKey = (g) => g.groupKey || `{}:{${Object.entries(g.labels || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;

async function ack(g) {
  const comment = prompt(`Acknowledge ${groupKey(g)}\nComment:`);
  if (comment === null) return;
  const expires = prompt('Expires in:', '1h');
  if (expires === null) return;
  await api('/api/v1/acks', { method: 'POST', body: JSON.stringify({ group_key: groupKey(g), by: 'ui', comment, expires_in: expires }) });
  setStatus('Acknowledged.');
  await alerts();
}

async function unack(a) {
  await api(`/api/v1/acks/${encodeURIComponent(a.id)}`, { method: 'DELETE' });
  setStatus('Acknowledgement removed.');
  await alerts();
}

async function alerts() {
  const groups = await api('/api/v2/alerts/groups');
  const box = $('#alert-groups');
  if (!groups.length) { box.replaceChildren(h('p', { class: 'empty' }, 'No alerts.')); return; }
  box.replaceChildren(...groups.map((g) => h('div', { class: 'group' },
    h('div', { class: 'group-head' }, labelChips(g.labels),
      h('span', { class: 'receiver' }, `receiver: ${g.receiver && g.receiver.name}`),
      g.ack
        ? [h('span', { class: 'acked' }, `acked by ${g.ack.by}${g.ack.comment ? `: ${g.ack.comment}` : ''}${g.ack.expires_at ? ` (until ${fmtTime(g.ack.expires_at)})` : ''}`),
          h('button', { class: 'secondary unack', type: 'button', onclick: () => unack(g.ack).catch(showError) }, 'Unack')]
        : h('button', { class: 'secondary ack', type: 'button', onclick: () => ack(g).catch(showError) }, 'Ack')),
    h('table', {}, h('tbody', {}, g.alerts.map((a) => h('tr', { class: 'alert' },
      h('td', {}, labelChips(a.labels)),
      h('td', {}, Object.values(a.annotations || {}).join(' — ')),
      h('td', {}, `since ${fmtTime(a.startsAt)}`))))))));
}

// ---- Silences ----
// Parses `name="v", other=~"re.*"` into API matchers.
function parseMatchers(text) {
  const out = [];
  const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("((?:[^"\\]|\\.)*)"|[^,\s]+)\s*(,|$)/y;
  let m;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    const value = m[4] !== undefined ? JSON.parse(`"${m[4]}"`) : m[3];
    out.push({ name: m[1], value, isRegex: m[2].includes('~'), isEqual: !m[2].startsWith('!') });
  }
  if (!out.length || re.lastIndex !== text.length) throw new Error(`cannot read matchers ${JSON.stringify(text)}: write name="value", separated by commas`);
  return out;
}

function parseDuration(s) {
  const units = { ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0, rest = s.trim();
  const re = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/;
  while (rest) {
    const m = re.exec(rest);
    if (!m) throw new Error(`cannot read duration ${JSON.stringify(s)} (e.g. 2h, 30m, 1d)`);
    total += parseFloat(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length);
  }
  if (total <= 0) throw new Error('duration must be positive');
  return total;
}

const matcherText = (m) => `${m.name}${m.isEqual === false ? '!' : '='}${m.isRegex ? '~' : ''}"${m.value}"`;

async function silences() {
  const list = await api('/api/v2/silences');
  list.sort((a, b) => (a.status.state === 'expired') - (b.status.state === 'expired') || b.startsAt.localeCompare(a.startsAt));
  const rows = list.map((s) => h('tr', { 'data-id': s.id, class: `silence ${s.status.state}` },
    h('td', { class: 'mono' }, s.id),
    h('td', {}, h('span', { class: `badge state ${s.status.state}` }, s.status.state)),
    h('td', {}, s.matchers.map((m) => h('span', { class: 'label' }, matcherText(m)))),
    h('td', {}, fmtTime(s.startsAt)),
    h('td', {}, fmtTime(s.endsAt)),
    h('td', {}, s.createdBy),
    h('td', {}, s.comment),
    h('td', {}, s.status.state === 'expired' ? '' :
      h('button', { class: 'secondary expire', type: 'button', onclick: () => expire(s.id).catch(showError) }, 'Expire'))));
  fill($('#silences-table tbody'), rows, 8, 'No silences.');
}

async function expire(id) {
  await api(`/api/v2/silence/${encodeURIComponent(id)}`, { method: 'DELETE' });
  setStatus(`Expired silence ${id}.`);
  await silences();
}

async function createSilence(ev) {
  ev.preventDefault();
  const f = ev.target;
  const now = new Date();
  const body = {
    matchers: parseMatchers(f.matchers.value),
    startsAt: now.toISOString(),
    endsAt: new Date(now.getTime() + parseDuration(f.duration.value) * 1000).toISOString(),
    createdBy: f.createdBy.value,
    comment: f.comment.value,
  };
  const r = await api('/api/v2/silences', { method: 'POST', body: JSON.stringify(body) });
  setStatus(`Created silence ${r.silenceID}.`);
  f.comment.value = '';
  await silences();
}

// ---- Plugins ----
async function plugins() {
  const list = (await api('/api/v1/plugins')).data || [];
  const rows = list.map((p) => h('tr', { 'data-plugin': p.name },
    h('td', {}, p.name),
    h('td', {}, p.kind || ''),
    h('td', { class: 'mono', title: p.hash || '' }, p.hash ? p.hash.slice(0, 16) : '—'),
    h('td', {}, p.size != null ? `${(p.size / 1024).toFixed(0)} KiB` : ''),
    h('td', {}, p.loaded_at ? `${fmtTime(p.loaded_at)}${p.load_ms != null ? ` (${p.load_ms.toFixed(0)} ms${p.from_cache ? ', cached' : ''})` : ''}` : '',
      p.loading ? ` compiling ${p.loading.version.slice(0, 12)} since ${fmtTime(p.loading.since)}` : ''),
    h('td', {}, (p.instances || []).map((i) => h('div', { 'data-instance': i.instance },
      `${i.instance} `, h('span', { class: `badge circuit ${i.state}` }, i.state),
      i.state === 'open' ? ` until ${fmtTime(i.open_until)}` : '',
      i.short_circuited ? `, ${i.short_circuited} refused` : '',
      i.last_error && i.state !== 'closed' ? ` (${i.last_error})` : ''))),
    h('td', { class: 'error' }, p.error || '')));
  fill($('#plugins-table tbody'), rows, 7, 'No plugins loaded.');
}

// ---- Rollouts ----
async function rollouts() {
  const list = (await api('/api/v1/rollouts')).data || [];
  const rows = list.map((r) => {
    const last = (r.history || [])[((r.history || []).length) - 1];
    return h('tr', { 'data-rollout': r.name },
      h('td', {}, r.name),
      h('td', {}, r.target || ''),
      h('td', {}, h('span', { class: `badge ${r.phase}` }, r.phase)),
      h('td', {}, r.version || ''),
      h('td', {}, r.stableVersion || ''),
      h('td', {}, `${r.failures} / ${r.threshold}`),
      h('td', {}, last ? `${fmtTime(last.at)} ${last.event}: ${last.message}` : ''));
  });
  fill($('#rollouts-table tbody'), rows, 7, 'No rollouts configured.');
}

// ---- Query ----
const seriesName = (metric) => {
  const { __name__: name, ...rest } = metric || {};
  const ls = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(', ');
  return `${name || ''}{${ls}}`;
};
const COLORS = ['#2457c5', '#c5342b', '#1d7a3a', '#9a6700', '#7b3fb5', '#0a7d8c', '#a8326f', '#5f6b78'];
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// Draws a matrix result as an SVG line chart: one polyline and one circle per
// point for each series, time on x, value on y.
function drawGraph(result, start, end) {
  const box = $('#graph');
  const series = result.map((r) => ({ name: seriesName(r.metric), pts: r.values.map(([t, v]) => [t, parseFloat(v)]).filter(([, v]) => isFinite(v)) }))
    .filter((x) => x.pts.length);
  if (!series.length) { box.replaceChildren(h('p', { class: 'empty' }, 'No data points in range.')); return; }
  const W = 1000, H = 320, L = 60, R = 10, T = 10, B = 24;
  let lo = Math.min(...series.flatMap((x) => x.pts.map((p) => p[1])));
  let hi = Math.max(...series.flatMap((x) => x.pts.map((p) => p[1])));
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = (t) => L + (t - start) / (end - start || 1) * (W - L - R);
  const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'query graph' });
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, Number(v.toPrecision(4)).toString()));
  }
  for (let i = 0; i <= 4; i++) {
    const t = start + (end - start) * i / 4;
    svg.append(s('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, new Date(t * 1000).toLocaleTimeString()));
  }
  svg.append(s('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }), s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  series.forEach((ser, i) => {
    const color = COLORS[i % COLORS.length];
    const g = s('g', { class: 'series', 'data-name': ser.name });
    g.append(s('polyline', { points: ser.pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5, 'vector-effect': 'non-scaling-stroke' }));
    for (const [t, v] of ser.pts) g.append(s('circle', { class: 'point', cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2, fill: color }, s('title', {}, `${ser.name} ${v} @ ${new Date(t * 1000).toLocaleTimeString()}`)));
    svg.append(g);
  });
  const legend = h('div', { class: 'legend' }, series.map((ser, i) => h('div', {}, h('span', { style: `background:${COLORS[i % COLORS.length]}` }), ser.name)));
  box.replaceChildren(svg, legend);
}

async function runQuery(ev) {
  if (ev) ev.preventDefault();
  const f = $('#query-form');
  const expr = f.expr.value.trim();
  if (!expr) return;
  const err = $('#query-error');
  err.hidden = true;
  history.replaceState(null, '', `#query?expr=${encodeURIComponent(expr)}&range=${f.range.value}`);
  try {
    const inst = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)).data;
    const rows = inst.resultType === 'vector' ? inst.result.map((r) => h('tr', {}, h('td', { class: 'mono' }, seriesName(r.metric)), h('td', {}, r.value[1])))
      : [h('tr', {}, h('td', { class: 'mono' }, inst.resultType), h('td', {}, Array.isArray(inst.result) ? inst.result[1] : JSON.stringify(inst.result)))];
    fill($('#query-table tbody'), rows, 2, 'Empty result.');
    const end = Date.now() / 1000, start = end - parseDuration(f.range.value);
    const step = Math.max(1, Math.ceil((end - start) / 250));
    const rng = (await api(`/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=${step}`)).data;
    drawGraph(rng.result, start, end);
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
}

// ---- Navigation ----
const PAGES = { targets, alerts, silences, plugins, rollouts, query: async () => {
  const p = new URLSearchParams(location.hash.split('?')[1] || '');
  const f = $('#query-form');
  if (p.get('expr') && f.expr.value !== p.get('expr')) { f.expr.value = p.get('expr'); if (p.get('range')) f.range.value = p.get('range'); await runQuery(); }
} };

// Bad input and API refusals are shown to the user, not thrown as page errors.
function showError(e) { setStatus(`Error: ${e.message}`); console.warn(e); }

async function show() {
  const name = (location.hash.slice(1).split('?')[0]) || 'targets';
  const page = PAGES[name] ? name : 'targets';
  document.querySelectorAll('.page').forEach((p) => { p.hidden = p.id !== `page-${page}`; });
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === `#${page}`));
  setStatus('Loading…');
  try {
    await PAGES[page]();
    setStatus(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (e) { showError(e); }
}

$('#silence-form').addEventListener('submit', (ev) => createSilence(ev).catch(showError));
$('#query-form').addEventListener('submit', (ev) => runQuery(ev));
window.addEventListener('hashchange', show);
// Clicking the tab already shown reloads it (no hashchange fires then).
$('#nav').addEventListener('click', (ev) => {
  if (ev.target.getAttribute('href') === location.hash) show();
});
show();
