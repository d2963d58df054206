// The web console at /console in headless Debian chromium (puppeteer-core).
// Run by tests/integration/console_browser.sh, which starts `maas serve` with
// a ledger and passes (environment):
//   MAAS_URL      the server, http://127.0.0.1:PORT
//   MAAS_BIN      the program, for `maas admin`; MAAS_DATA its ledger
//   TENANT_KEY    an API key of the account TENANT_ACCOUNT (which made requests)
//   ADMIN_KEY     the admin key
//   XSS_NAME      the name of an account that must show as text
//   CHROMIUM      the browser; SHOTS: a folder for screenshots (optional)
// Prints "ok ..." lines; throws (exit 1) at the first failed check.
import {execFileSync} from 'node:child_process';
import puppeteer from 'puppeteer-core';

const env = (n) => {
  if (!process.env[n])
    throw new Error('missing environment variable ' + n);
  return process.env[n];
};
const URL0 = env('MAAS_URL'), BIN = env('MAAS_BIN'), DATA = env('MAAS_DATA');
const TENANT_KEY = env('TENANT_KEY'), ADMIN_KEY = env('ADMIN_KEY'), ACCOUNT = env('TENANT_ACCOUNT');
const XSS_NAME = env('XSS_NAME'), SHOTS = process.env.SHOTS || '';
const secrets = [TENANT_KEY, ADMIN_KEY];

function check(cond, what) {
  if (!cond)
    throw new Error('FAIL: ' + what);
  console.log('ok ' + what);
}

const admin = (...args) => JSON.parse(execFileSync(BIN, ['admin', '--data', DATA, '--format', 'json', ...args],
                                                   {encoding: 'utf8'}));

// the HTTP status of a chat completion with key, by curl
function curlStatus(key) {
  const body = JSON.stringify({model: 'demo', messages: [{role: 'user', content: 'Hi'}], max_tokens: 2});
  return Number(execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', URL0 + '/v1/chat/completions',
                                      '-H', 'Authorization: Bearer ' + key, '-H', 'Content-Type: application/json',
                                      '-d', body], {encoding: 'utf8'}));
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());

async function waitText(page, sel) {
  await page.waitForFunction((s) => {
    const e = document.querySelector(s);
    return e && e.textContent.trim() !== '';
  }, {timeout: 10000}, sel);
  return text(page, sel);
}

async function login(page, key) {
  await page.type('input[name="api_key"]', key);
  await page.click('button[type="submit"]');
}

async function logout(page) {
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');
  const kept = await page.evaluate(() => JSON.stringify(Object.assign({}, sessionStorage)));
  check(!secrets.some((k) => kept.includes(k)), 'logging out forgets the key (sessionStorage: ' + kept + ')');
}

async function shot(page, name, width, height, scheme) {
  if (!SHOTS)
    return;
  await page.setViewport({width, height});
  await page.emulateMediaFeatures([{name: 'prefers-color-scheme', value: scheme}]);
  await new Promise((r) => setTimeout(r, 150));
  await page.screenshot({path: SHOTS + '/' + name + '.png', fullPage: width < 600 ? false : true});
  await page.setViewport({width: 1280, height: 800});
  await page.emulateMediaFeatures([{name: 'prefers-color-scheme', value: 'light'}]);
}

async function tenant(page) {
  await login(page, TENANT_KEY);
  const balance = await waitText(page, '[data-testid="balance"]');
  const requests = await waitText(page, '[data-testid="requests"]');
  const acct = admin('account', 'show', ACCOUNT);
  check(balance === acct.balance, `tenant balance ${balance} is maas admin's ${acct.balance}`);
  const month = new Date().toISOString().slice(0, 8) + '01';
  const usage = admin('usage', '--account', ACCOUNT, '--from', month);
  check(Number(requests) === usage.total.requests && usage.total.requests > 0,
        `tenant requests ${requests} are maas admin usage's ${usage.total.requests}`);
  check(await text(page, '[data-testid="spend"]') === usage.total.cost, 'tenant spend is maas admin usage\'s cost');
  await page.waitForSelector('[data-testid="usage-chart"] rect');
  const bars = await page.$$eval('[data-testid="usage-chart"] g[data-model]', (g) => g.length);
  check(bars >= 1, `the usage chart has ${bars} bar(s)`);
  const cached = await page.$$eval('[data-testid="usage-chart"] rect.cached', (r) => r.length);
  check(cached >= 1 === usage.total.cached_tokens > 0, `cached tokens (${usage.total.cached_tokens}) are drawn`);
  await page.click('.seg-btn[data-measure="cost"]');
  const costBars = await page.$$eval('[data-testid="usage-chart"] g[data-model]', (g) => g.length);
  check(costBars === bars, 'the chart by cost has the same bars');
  await page.click('.seg-btn[data-measure="tokens"]');
  const rows = await page.$$eval('[data-testid="recent-requests"] tbody tr', (r) => r.length);
  check(rows === Math.min(usage.total.requests, 50), `recent requests lists ${rows} requests`);
  const keys = await page.$$eval('[data-testid="keys"] tbody tr', (r) => r.length);
  check(keys === admin('key', 'list', ACCOUNT).keys.length, `the tenant sees its ${keys} key(s)`);
  await shot(page, 'console-tenant-desktop-light', 1280, 800, 'light');
  await shot(page, 'console-tenant-phone-dark', 390, 844, 'dark');
  await logout(page);
}

async function operator(page, dialogs) {
  await login(page, ADMIN_KEY);
  await page.waitForSelector('[data-testid="accounts"] tbody td.name');
  const names = await page.$$eval('[data-testid="accounts"] tbody td.name', (t) => t.map((e) => e.textContent));
  check(names.includes(XSS_NAME), 'the account named ' + XSS_NAME + ' is shown as text');
  const imgs = await page.$$eval('img', (i) => i.length);
  check(imgs === 0 && dialogs.length === 0, `no <img> made from it (${imgs}) and no alert fired (${dialogs.length})`);
  await page.waitForFunction(() => document.querySelector('#m-running').textContent !== '');
  check(/^\d+$/.test(await text(page, '#m-running')), 'the engine state shows running sequences');

  // a key made in the page works with curl, and fails once revoked there
  await page.select('#key-create select[name="account"]', ACCOUNT);
  await page.click('#key-create button[type="submit"]');
  const newKey = await waitText(page, '[data-testid="new-key"]');
  secrets.push(newKey);
  check(newKey.startsWith('sk-maas-'), 'the page shows the new key once');
  check(curlStatus(newKey) === 200, 'curl with the new key: 200');
  const id = newKey.slice(8, 20);
  await page.waitForSelector(`button[data-revoke="${id}"]`);
  await page.click(`button[data-revoke="${id}"]`);
  await page.waitForFunction((i) => !document.querySelector(`button[data-revoke="${i}"]`), {}, id);
  check(curlStatus(newKey) === 401, 'curl with the key revoked in the page: 401');

  // credit through the page, checked with maas admin
  const before = admin('account', 'show', ACCOUNT).balance;
  await page.select('#account-credit select[name="account"]', ACCOUNT);
  await page.type('#account-credit input[name="amount"]', '1.5');
  await page.click('#account-credit button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#account-credit input[name="amount"]').value === '');
  const after = admin('account', 'show', ACCOUNT).balance;
  check(Math.round((Number(after) - Number(before)) * 1e6) === 1500000, `credit 1.5 in the page: ${before} -> ${after}`);
  // an account and a price made in the page, as maas admin sees them
  await page.type('#account-create input[name="name"]', 'Made in the page');
  await page.type('#account-create input[name="credit"]', '3');
  await page.click('#account-create button[type="submit"]');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="accounts"] td.name')]
    .some((td) => td.textContent === 'Made in the page'));
  const made = admin('account', 'list').accounts.find((a) => a.name === 'Made in the page');
  check(made && made.balance === '3', 'an account created in the page, with its credit');
  for (const [name, v] of [['model', 'mini'], ['input', '0.3'], ['cached_input', '0.15'], ['output', '0.9']])
    await page.type(`#price-set input[name="${name}"]`, v);
  await page.click('#price-set button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#price-set input[name="model"]').value === '');
  const price = admin('price', 'list').prices.filter((p) => p.model === 'mini').pop();
  check(price && price.input === '0.3' && price.output === '0.9', 'a price set in the page: ' + JSON.stringify(price));
  await page.waitForSelector('[data-testid="usage-by-model"] tbody td.name');
  await shot(page, 'console-operator-desktop-dark', 1280, 800, 'dark');
  await shot(page, 'console-operator-phone-light', 390, 844, 'light');
  await logout(page);
}

async function main() {
  const t0 = Date.now();
  const browser = await puppeteer.launch({
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({width: 1280, height: 800});
    const requests = [], dialogs = [], problems = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused/.test(m.text()))
        problems.push('console: ' + m.text());
    });
    const resp = await page.goto(URL0 + '/console', {waitUntil: 'load'});
    const csp = resp.headers()['content-security-policy'] || '';
    check(/script-src 'self'/.test(csp) && !csp.includes('unsafe-inline'), 'the page has a strict CSP: ' + csp);
    check(resp.headers()['x-content-type-options'] === 'nosniff', 'X-Content-Type-Options: nosniff');
    await tenant(page);
    await operator(page, dialogs);
    check(problems.length === 0, 'no page errors or CSP refusals ' + JSON.stringify(problems));
    const origin = new URL(URL0).origin;
    const foreign = requests.filter((u) => !u.startsWith(origin + '/'));
    check(foreign.length === 0, `all ${requests.length} requests of the page went to the server ${JSON.stringify(foreign)}`);
    const leaky = requests.filter((u) => secrets.some((k) => u.includes(k) || u.includes(encodeURIComponent(k))));
    check(leaky.length === 0, 'no request carried a key in its URL');
    console.log(`browser checks done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
