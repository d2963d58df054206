// maas web console: one page, two views. Everything shown comes from the
// server's JSON routes, fetched with the key in the Authorization header;
// every value is put in the page with textContent (never as HTML). The key
// lives in sessionStorage (this tab only) and is forgotten at logout.
'use strict';

const KEY_SLOT = 'maas.console.key';
const CHART_DAYS = 14;
const SVG_NS = 'http://www.w3.org/2000/svg';

let key = null;
let pollTimer = null;
let lastTokens = null;   // {t, n}: the completion-token counter at the last /metrics poll
let chartData = null;    // {days, models, cells}
let chartMeasure = 'tokens';

const $ = (sel) => document.querySelector(sel);

// ---- talking to the server ----

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// fetch(path) with the key; the parsed JSON (or text), or an ApiError.
async function api(path, opts = {}) {
  const headers = {Authorization: 'Bearer ' + key};
  const init = {method: opts.method || 'GET', headers, cache: 'no-store', credentials: 'omit'};
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  if (opts.text && resp.ok)
    return text;
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON: reported below */ }
  if (!resp.ok) {
    const err = json && json.error ? json.error : {};
    throw new ApiError(resp.status, err.code || null, err.message || ('HTTP ' + resp.status));
  }
  if (json === null)
    throw new ApiError(resp.status, null, path + ': the answer is not JSON');
  return json;
}

// ---- building the page (text only) ----

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null)
    e.textContent = String(text);
  if (cls)
    e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {}))
    e.setAttribute(k, String(v));
  if (text !== undefined)
    e.textContent = String(text);
  return e;
}

// Fills table's body with rows; a cell is a string/number, or {text, cls}, or a Node.
function fillTable(testid, rows, emptyText) {
  const body = document.querySelector('[data-testid="' + testid + '"] tbody');
  body.replaceChildren();
  if (!rows.length) {
    const td = el('td', emptyText || 'Nothing yet.', 'empty');
    td.colSpan = body.parentElement.querySelectorAll('thead th').length;
    const tr = el('tr');
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el('tr');
    for (const c of cells) {
      if (c instanceof Node) {
        const td = el('td');
        td.append(c);
        tr.append(td);
      } else if (c !== null && typeof c === 'object') {
        tr.append(el('td', c.text, c.cls));
      } else {
        tr.append(el('td', c));
      }
    }
    body.append(tr);
  }
}

function setText(sel, text) {
  $(sel).textContent = text === undefined || text === null ? '' : String(text);
}

function showError(msg) {
  const box = $('#error');
  box.textContent = msg || '';
  box.hidden = !msg;
}

const num = (v, cls) => ({text: v === null || v === undefined ? '—' : Number(v).toLocaleString('en-US'),
                          cls: 'num' + (cls ? ' ' + cls : '')});
const money = (v) => ({text: v === null || v === undefined ? '—' : String(v), cls: 'num'});
const when = (v) => (v ? String(v).replace('T', ' ').replace('Z', '') : '—');
const tokensOf = (r) => r.prompt_tokens + r.completion_tokens;

// "YYYY-MM-DD" of a Date in UTC
const ymd = (d) => d.toISOString().slice(0, 10);
const monthStart = () => ymd(new Date()).slice(0, 8) + '01';

function keyState(k) {
  if (k.revoked)
    return {text: 'revoked', cls: 'state-bad'};
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now())
    return {text: 'expired', cls: 'state-bad'};
  return {text: 'active', cls: 'state-ok'};
}

const keyModels = (k) => (k.models ? k.models.join(', ') : 'all');
const keyBudget = (k) => (k.budget ? k.budget + ' / ' + k.budget_period : '—');

// ---- tenant view ----

async function loadTenant(me) {
  setText('[data-testid="balance"]', me.account.balance);
  setText('#t-account', me.account.name + ' · ' + me.account.id);
  setText('#who', me.account.name);
  fillTable('keys', me.keys.map((k) => [
    {text: 'sk-maas-' + k.id + '…', cls: 'mono'}, keyModels(k), num(k.rpm || null), num(k.tpm || null),
    keyBudget(k), when(k.expires_at), when(k.last_used_at), keyState(k)]), 'No keys.');
  const from = monthStart();
  const [period, recent] = await Promise.all([
    api('/v1/usage?from=' + from + '&by=model'),
    api('/v1/me/requests?limit=50'),
  ]);
  setText('[data-testid="spend"]', period.total.cost);
  setText('[data-testid="requests"]', period.total.requests);
  setText('#t-period', 'since ' + from);
  setText('#t-tokens', Number(tokensOf(period.total)).toLocaleString('en-US') + ' tokens, ' +
          Number(period.total.cached_tokens).toLocaleString('en-US') + ' cached');
  fillTable('recent-requests', recent.requests.map((r) => [
    when(r.time), r.model, num(r.prompt_tokens), num(r.cached_tokens), num(r.completion_tokens), money(r.cost),
    r.status]), 'No requests yet.');
  await loadChart();
}

// usage by model for each of the last CHART_DAYS days (one /v1/usage per day)
async function loadChart() {
  const days = [];
  const today = Date.parse(ymd(new Date()) + 'T00:00:00Z');
  for (let i = CHART_DAYS - 1; i >= 0; i--)
    days.push(ymd(new Date(today - i * 86400000)));
  const reports = await Promise.all(days.map((d) => api('/v1/usage?from=' + d + '&to=' + d + '&by=model')));
  const models = [];
  const cells = reports.map((rep) => {
    const byModel = new Map();
    for (const row of rep.rows) {
      if (!models.includes(row.model))
        models.push(row.model);
      byModel.set(row.model, row);
    }
    return byModel;
  });
  models.sort();
  chartData = {days, models, cells};
  drawChart();
}

function measureOf(row) {
  if (!row)
    return {all: 0, cached: 0};
  if (chartMeasure === 'cost')
    return {all: Number(row.cost), cached: 0};
  return {all: tokensOf(row), cached: row.cached_tokens};
}

function drawChart() {
  const root = $('#usage-chart');
  root.replaceChildren();
  if (!chartData)
    return;
  const {days, models, cells} = chartData;
  // drawn in CSS pixels: the viewBox is the element's size, so text is never stretched
  const W = Math.max(280, Math.round(root.clientWidth || 720)), H = Math.max(160, Math.round(root.clientHeight || 240));
  const left = 52, bottom = 22, top = 8;
  root.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  const totals = cells.map((m) => models.reduce((s, name) => s + measureOf(m.get(name)).all, 0));
  const max = Math.max(...totals, 0) || 1;
  const plotH = H - bottom - top;
  const slot = (W - left) / days.length;
  const barW = Math.max(4, slot * 0.62);
  for (const f of [0, 0.5, 1]) {   // grid lines and their labels
    const y = top + plotH * (1 - f);
    root.append(svg('line', {x1: left, x2: W, y1: y, y2: y, class: 'axis'}));
    const v = max * f;
    root.append(svg('text', {x: left - 6, y: y + 4, 'text-anchor': 'end'},
                    chartMeasure === 'cost' ? v.toFixed(v < 1 ? 4 : 2) : Math.round(v).toLocaleString('en-US')));
  }
  days.forEach((day, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let y = top + plotH;
    models.forEach((name, mi) => {
      const row = cells[i].get(name);
      const m = measureOf(row);
      if (!m.all)
        return;
      const h = (m.all / max) * plotH, ch = (m.cached / max) * plotH;
      const cls = 'c' + (mi % 6);
      const g = svg('g', {'data-model': name, 'data-day': day});
      if (ch)   // the cached prompt tokens: the lighter bottom part of the model's segment
        g.append(svg('rect', {x, y: y - ch, width: barW, height: ch, class: cls + ' cached'}));
      g.append(svg('rect', {x, y: y - h, width: barW, height: h - ch, class: cls}));
      g.append(svg('title', {}, day + ' · ' + name + ': ' + row.requests + ' requests, ' +
                   tokensOf(row) + ' tokens (' + row.cached_tokens + ' cached), cost ' + row.cost));
      root.append(g);
      y -= h;
    });
    if (i % 2 === (days.length - 1) % 2)
      root.append(svg('text', {x: x + barW / 2, y: H - 6, 'text-anchor': 'middle'}, day.slice(5)));
  });
  drawLegend(models);
}

function drawLegend(models) {
  const box = $('#chart-legend');
  box.replaceChildren();
  if (!models.length) {
    box.append(el('span', 'No usage in the last ' + CHART_DAYS + ' days.'));
    return;
  }
  models.forEach((name, mi) => {
    const item = el('span');
    item.append(el('span', null, 'sw c' + (mi % 6)), document.createTextNode(name));
    box.append(item);
  });
  if (chartMeasure === 'tokens') {
    const item = el('span');
    item.append(el('span', null, 'sw cached'), document.createTextNode('cached tokens (lighter part)'));
    box.append(item);
  }
}

// CSV of the latest 1000 requests, made in the page (nothing is sent anywhere)
async function exportCsv() {
  const data = await api('/v1/me/requests?limit=1000');
  const cols = ['id', 'time', 'model', 'prompt_tokens', 'cached_tokens', 'completion_tokens', 'cost', 'status'];
  const cell = (v) => {
    let s = String(v);
    if (/^[=+\-@\t\r]/.test(s) && !/^-?[0-9.]+$/.test(s))
      s = "'" + s;   // no formulas when a spreadsheet opens it
    return '"' + s.replace(/"/g, '""') + '"';
  };
  const lines = [cols.join(',')].concat(data.requests.map((r) => cols.map((c) => cell(r[c])).join(',')));
  const url = URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], {type: 'text/csv'}));
  const a = el('a');
  a.href = url;
  a.download = 'maas-requests-' + ymd(new Date()) + '.csv';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- operator view ----

async function loadOperator() {
  const from = monthStart();
  const [accounts, keys, prices, byAccount, byModel] = await Promise.all([
    api('/admin/accounts'), api('/admin/keys'), api('/admin/prices'),
    api('/admin/usage?from=' + from + '&by=account'), api('/admin/usage?from=' + from + '&by=model'),
  ]);
  setText('#who', 'operator');
  const spend = new Map(byAccount.rows.map((r) => [r.account, r.cost]));
  const names = new Map(accounts.accounts.map((a) => [a.id, a.name]));
  fillTable('accounts', accounts.accounts.map((a) => [
    {text: a.name, cls: 'name'}, {text: a.id, cls: 'mono'}, money(a.balance), num(a.weight),
    money(spend.get(a.id) || '0'), num(a.keys)]), 'No accounts.');
  for (const sel of document.querySelectorAll('select[data-accounts]')) {
    const keep = sel.value;
    sel.replaceChildren(...accounts.accounts.map((a) => {
      const o = el('option', a.name + ' (' + a.id + ')');
      o.value = a.id;
      return o;
    }));
    if (keep)
      sel.value = keep;
  }
  fillTable('admin-keys', keys.keys.map((k) => [
    {text: 'sk-maas-' + k.id + '…', cls: 'mono'}, {text: names.get(k.account) || k.account, cls: 'name'},
    keyModels(k), num(k.rpm || null), num(k.tpm || null), keyBudget(k), when(k.expires_at), keyState(k),
    k.revoked ? '' : revokeButton(k.id)]), 'No keys.');
  fillTable('prices', prices.prices.map((p) => [
    p.model, money(p.input), money(p.cached_input), money(p.output), when(p.from)]), 'No prices.');
  const usageRow = (label) => (r) => [
    {text: label(r), cls: 'name'}, num(r.requests), num(tokensOf(r)), money(r.cost), money(r.compute_cost),
    money(r.margin)];
  fillTable('usage-by-account', byAccount.rows.map(usageRow((r) => names.get(r.account) || r.account)),
            'No usage this month.');
  fillTable('usage-by-model', byModel.rows.map(usageRow((r) => r.model)), 'No usage this month.');
  await pollMetrics();
}

function revokeButton(id) {
  const b = el('button', 'Revoke', 'danger');
  b.type = 'button';
  b.dataset.revoke = id;
  b.setAttribute('aria-label', 'Revoke key ' + id);
  b.addEventListener('click', () => act(() => api('/admin/keys/' + encodeURIComponent(id) + '/revoke',
                                                  {method: 'POST', body: {}})));
  return b;
}

// the sum over all label sets of each metric in names
function parseMetrics(text, names) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#')
      continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && names.includes(m[1]))
      out[m[1]] = (out[m[1]] || 0) + Number(m[3]);
  }
  return out;
}

async function pollMetrics() {
  const text = await api('/metrics', {text: true});
  const m = parseMetrics(text, ['maas_running_sequences', 'maas_queue_length', 'maas_kv_blocks_used',
                                'maas_kv_blocks', 'maas_completion_tokens_total']);
  setText('#m-running', m.maas_running_sequences ?? '—');
  setText('#m-queued', m.maas_queue_length ?? '—');
  const total = m.maas_kv_blocks || 0;
  setText('#m-kv', total ? Math.round((100 * (m.maas_kv_blocks_used || 0)) / total) + '%' : '—');
  setText('#m-kv-sub', (m.maas_kv_blocks_used ?? 0) + ' of ' + total + ' blocks');
  const now = performance.now(), n = m.maas_completion_tokens_total || 0;
  if (lastTokens && now > lastTokens.t)
    setText('#m-tps', ((n - lastTokens.n) / ((now - lastTokens.t) / 1000)).toFixed(1));
  else
    setText('#m-tps', '—');
  lastTokens = {t: now, n};
}

// runs an operator action, then reloads the view; errors are shown
async function act(fn) {
  showError('');
  try {
    const r = await fn();
    await loadOperator();
    return r;
  } catch (e) {
    showError(e.message);
    return null;
  }
}

const formValue = (form, name) => form.elements[name].value.trim();

function countOf(form, name, body) {
  const v = formValue(form, name);
  if (!v)
    return;
  if (!/^[0-9]+$/.test(v))
    throw new ApiError(0, null, name + ': a whole number, not ' + JSON.stringify(v));
  body[name] = Number(v);
}

function keyBody(form) {
  const body = {account: formValue(form, 'account')};
  const models = formValue(form, 'models');
  if (models)
    body.models = models.split(',').map((s) => s.trim()).filter(Boolean);
  countOf(form, 'rpm', body);
  countOf(form, 'tpm', body);
  for (const name of ['budget', 'budget_period', 'expires'])
    if (formValue(form, name))
      body[name] = formValue(form, name);
  return body;
}

function wireOperatorForms() {
  $('#account-create').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = {name: f.elements.name.value};
    if (formValue(f, 'credit'))
      body.credit = formValue(f, 'credit');
    act(() => api('/admin/accounts', {method: 'POST', body})).then((r) => r && f.reset());
  });
  $('#account-credit').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    act(() => api('/admin/accounts/' + encodeURIComponent(formValue(f, 'account')) + '/credit',
                  {method: 'POST', body: {amount: formValue(f, 'amount')}})).then((r) => {
      if (r)
        f.elements.amount.value = '';
    });
  });
  $('#key-create').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    act(() => api('/admin/keys', {method: 'POST', body: keyBody(f)})).then((r) => {
      if (!r)
        return;
      setText('#new-key', r.key);
      $('#new-key-box').hidden = false;
    });
  });
  $('#price-set').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = {};
    for (const name of ['model', 'input', 'cached_input', 'output'])
      body[name] = formValue(f, name);
    act(() => api('/admin/prices', {method: 'PUT', body})).then((r) => r && f.reset());
  });
}

// ---- logging in and out ----

function show(view) {
  $('#login-view').hidden = view !== 'login';
  $('#tenant-view').hidden = view !== 'tenant';
  $('#operator-view').hidden = view !== 'operator';
  $('#logout').hidden = view === 'login';
  document.body.dataset.view = view;
}

// Which view the key opens: a tenant key reads /v1/me, the admin key gets a
// 403 there and reads /admin/accounts.
async function open() {
  showError('');
  try {
    const me = await api('/v1/me');
    show('tenant');
    await loadTenant(me);
    return;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403) {
      failLogin(e);
      return;
    }
  }
  try {
    show('operator');
    await loadOperator();
    pollTimer = setInterval(() => pollMetrics().catch((e) => showError(e.message)), 2000);
  } catch (e) {
    failLogin(e);
  }
}

function failLogin(e) {
  const why = e instanceof ApiError && e.status === 401 ? 'This key was not accepted (unknown, revoked or expired).'
                                                        : e.message;
  logout();
  showError(why);
}

function logout() {
  key = null;
  sessionStorage.removeItem(KEY_SLOT);
  if (pollTimer)
    clearInterval(pollTimer);
  pollTimer = null;
  lastTokens = null;
  chartData = null;
  for (const body of document.querySelectorAll('tbody'))
    body.replaceChildren();
  for (const v of document.querySelectorAll('.value, .sub, #who, #new-key'))
    v.textContent = '';
  $('#new-key-box').hidden = true;
  $('#usage-chart').replaceChildren();
  $('#chart-legend').replaceChildren();
  showError('');
  show('login');
}

function init() {
  $('#login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = ev.target.elements.api_key;
    key = input.value.trim();
    input.value = '';
    if (!key)
      return;
    sessionStorage.setItem(KEY_SLOT, key);
    open();
  });
  $('#logout').addEventListener('click', logout);
  $('#csv').addEventListener('click', () => exportCsv().catch((e) => showError(e.message)));
  for (const b of document.querySelectorAll('.seg-btn')) {
    b.addEventListener('click', () => {
      chartMeasure = b.dataset.measure;
      for (const o of document.querySelectorAll('.seg-btn'))
        o.classList.toggle('on', o === b);
      drawChart();
    });
  }
  wireOperatorForms();
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawChart, 100);
  });
  key = sessionStorage.getItem(KEY_SLOT);
  if (key)
    open();
  else
    show('login');
}

init();
