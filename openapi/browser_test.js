// The browser test: layer 1's /docs in headless Chromium (Debian's), driven over the DevTools
// protocol with the npm package `ws` (Node 18 has no WebSocket of its own).
//
//   node openapi/browser_test.js API_URL NPM_DIR SCREENSHOT.png
//
// It checks that Swagger UI lists every operation of the server's /openapi.json, then does what
// a learner does: "Try it out" on GET /read/{key} with the prefilled example key (user:1,
// written here first), "Execute", and reads the status and the value from the page. Saves a
// screenshot. Every wait has a deadline; exit 0 = passed, 1 = failed (the reason on stderr).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const [apiUrl, npmDir, screenshotPath] = process.argv.slice(2);
const WebSocket = require(path.join(npmDir, 'node_modules', 'ws'));
const VALUE = 'written before the browser test';
const DEADLINE_MS = 90000;

function fail(message) {
  console.error(`browser test: ${message}`);
  process.exit(1);
}
setTimeout(() => fail(`not done after ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'Content-Type': 'application/json' }, timeout: 10000 }, (res) => {
      let data = '';
      res.on('data', (chunk) => (data += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

// Starts Chromium and resolves with its browser-wide DevTools WebSocket URL.
function startChromium(profile) {
  const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--no-first-run', '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'];
  // detached: its own process group, so that the clean-up reaches its helper processes too
  const chromium = spawn(process.env.CHROMIUM || 'chromium', args,
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  return new Promise((resolve, reject) => {
    let seen = '';
    chromium.stderr.on('data', (chunk) => {
      seen += chunk;
      const m = seen.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) resolve({ chromium, endpoint: m[1] });
    });
    chromium.on('exit', (code) => reject(new Error(`chromium exited (${code}): ${seen.slice(-500)}`)));
  });
}

// A minimal DevTools client: send(method, params, sessionId) -> result.
function devtools(endpoint) {
  const ws = new WebSocket(endpoint, { perMessageDeflate: false });
  let next = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params, sessionId }));
  });
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve({ send, close: () => ws.close() }));
    ws.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const doc = JSON.parse((await request('GET', `${apiUrl}/openapi.json`)).body);
  const documented = [];
  for (const [p, item] of Object.entries(doc.paths))
    for (const m of ['get', 'post', 'put', 'delete', 'patch'])
      if (item[m]) documented.push(`${m.toUpperCase()} ${p}`);
  const written = await request('POST', `${apiUrl}/write`, JSON.stringify({ key: 'user:1', value: VALUE }));
  if (written.status !== 200) fail(`POST /write: ${written.status} ${written.body}`);

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-chromium-'));
  const { chromium, endpoint } = await startChromium(profile);
  try {
    const dt = await devtools(endpoint);
    const { targetId } = await dt.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await dt.send('Target.attachToTarget', { targetId, flatten: true });
    const page = (method, params) => dt.send(method, params, sessionId);
    const evaluate = async (expression) => {
      const r = await page('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
      if (r.exceptionDetails) throw new Error(`${expression}: ${JSON.stringify(r.exceptionDetails)}`);
      return r.result.value;
    };
    const waitFor = async (what, expression, ms = 30000) => {
      const until = Date.now() + ms;
      for (;;) {
        const value = await evaluate(expression);
        if (value) return value;
        if (Date.now() > until) {
          if (process.env.BROWSER_TEST_DEBUG) console.error(await evaluate("document.querySelector('#operations-data-read') ? document.querySelector('#operations-data-read').outerHTML.slice(0, 3000) : document.body.innerHTML.slice(0, 3000)"));
          fail(`waited ${ms} ms for ${what}`);
        }
        await sleep(200);
      }
    };
    await page('Emulation.setDeviceMetricsOverride', { width: 1280, height: 2000, deviceScaleFactor: 1, mobile: false });
    // The deep link #/data/read opens GET /read/{key} (tag data, operationId read).
    await page('Page.navigate', { url: `${apiUrl}/docs#/data/read` });
    await waitFor('Swagger UI to list the operations', "document.querySelectorAll('.opblock').length > 0");

    // Every operation of the document is listed on the page, and nothing else.
    const listed = await evaluate(`Array.from(document.querySelectorAll('.opblock')).map((b) =>
      b.querySelector('.opblock-summary-method').textContent.trim() + ' ' +
      b.querySelector('.opblock-summary-path').getAttribute('data-path'))`);
    const missing = documented.filter((op) => !listed.includes(op));
    const extra = listed.filter((op) => !documented.includes(op));
    if (missing.length || extra.length)
      fail(`the page lists ${listed.length} operations; missing ${missing}; not documented ${extra}`);

    // "Try it out" on GET /read/{key}: the key field holds the first example (user:1).
    const block = "document.querySelector('#operations-data-read')";
    await waitFor('the read operation to open', `!!${block}.querySelector('.try-out__btn')`);
    await evaluate(`${block}.querySelector('.try-out__btn').click()`);
    await waitFor('the key field', `(${block}.querySelector('input[type=text]') || {}).value === 'user:1'`);
    await evaluate(`${block}.querySelector('.execute').click()`);
    const answer = await waitFor('the answer on the page', `(() => {
      const live = ${block}.querySelector('.live-responses-table');
      const status = live && live.querySelector('tbody .response-col_status');
      const body = live && live.querySelector('tbody .response-col_description pre');
      return status && body && body.textContent.includes('"value"') ?
        { status: status.textContent.trim(), body: body.textContent } : null;
    })()`);
    if (!answer.status.startsWith('200')) fail(`Try it out answered ${answer.status}`);
    const reply = JSON.parse(answer.body);
    if (reply.key !== 'user:1' || reply.value !== VALUE || reply.success !== true)
      fail(`the page shows ${answer.body}`);

    await evaluate(`${block}.scrollIntoView()`);
    await evaluate('window.scrollTo(0, 0)');
    const shot = await page('Page.captureScreenshot', { format: 'png' });
    fs.writeFileSync(screenshotPath, Buffer.from(shot.data, 'base64'));
    console.log(`browser test: ${listed.length} operations listed; Try it out on GET /read/{key} ` +
      `answered ${answer.status.split(/\s/)[0]} with value "${reply.value}"; screenshot ${screenshotPath}`);
    dt.close();
  } finally {
    const exited = new Promise((r) => chromium.on('exit', r));
    try {
      process.kill(-chromium.pid, 'SIGKILL'); // the whole group: browser, renderers, GPU, crashpad
    } catch (e) {
      chromium.kill('SIGKILL');
    }
    await Promise.race([exited, sleep(5000)]);
    try { // a profile still being written by a dying helper is not a failure of the test
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    } catch (e) {
      console.log(`browser test: could not remove ${profile} (${e.code}); left behind`);
    }
  }
}

main().then(() => process.exit(0), (e) => fail(e.stack || e));
