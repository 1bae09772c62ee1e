// The duty lead's dashboard in a real browser (Debian's headless Chromium, driven by playwright-core,
// which never downloads a browser of its own). Run by the Rust e2e test `dashboard`, which starts a
// demo server and passes:
//
//   RC_BASE_URL       the server, e.g. http://127.0.0.1:41234 (demo world seeded)
//   RC_CLIENT_BIN     the riverchief client CLI (a patroller's phone)
//   RC_DEMO_PASSWORD  every demo user's password
//   RC_WORK_DIR       a scratch folder (the phone's data, GPX files, a photo)
//   RC_SCREENSHOTS    where to save the screenshots (default ../../target/screenshots)
//   RC_CHROMIUM       the browser (default /usr/bin/chromium)
//
// The story: QHL-02 was last walked two hours ago and the flood stage is warning (every 30 minutes), so
// the map shows it overdue; a patroller walks it now and the map turns it covered without a reload;
// a muddy sand boil is reported with a photo and the lead opens it and accepts it; when the server has
// alerts, the critical-hazard alert appears live and the lead acknowledges it by clicking. No console
// errors; every /api/ request but login carries the bearer token. Exits non-zero on any failure.

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = need('RC_BASE_URL').replace(/\/$/, '');
const CLIENT = need('RC_CLIENT_BIN');
const PASSWORD = need('RC_DEMO_PASSWORD');
const WORK = need('RC_WORK_DIR');
const SHOTS = process.env.RC_SCREENSHOTS || path.resolve(here, '../../target/screenshots');
const CHROMIUM = process.env.RC_CHROMIUM || '/usr/bin/chromium';
const WAIT = 45_000; // generous: two shared cores, other builds running
const OVERDUE = '#c62828';
const COVERED = '#2e7d32';

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`dashboard.mjs: ${name} must be set`);
    process.exit(2);
  }
  return v;
}

function log(...a) {
  console.log('[dashboard]', ...a);
}

function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

// ---- the server, as a script would speak to it --------------------------------------------------

async function login(username) {
  const r = await fetch(`${BASE}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD, device_name: 'browser-test' }),
  });
  check(r.ok, `login ${username}: ${r.status}`);
  return (await r.json()).token;
}

async function call(token, method, p, body) {
  const r = await fetch(`${BASE}${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// ---- a patroller's phone: the real client CLI --------------------------------------------------

const PHONE = path.join(WORK, 'phone');

function phone(...args) {
  const out = execFileSync(CLIENT, ['--server', BASE, '--data', PHONE, ...args], {
    encoding: 'utf8',
    env: { ...process.env, RIVERCHIEF_PASSWORD: PASSWORD },
  });
  log(`riverchief ${args.join(' ')} → ${out.trim().split('\n').slice(-1)[0]}`);
  return out;
}

/** Points every ~10 m along a line ([[lon, lat]...]), 8 s apart from t0, as a GPX track. */
function gpxAlong(line, t0, name) {
  const R = 6371008.8;
  const rad = (d) => (d * Math.PI) / 180;
  const pts = [];
  for (let i = 0; i + 1 < line.length; i++) {
    const [a, b] = [line[i], line[i + 1]];
    const dx = rad(b[0] - a[0]) * Math.cos(rad((a[1] + b[1]) / 2)) * R;
    const dy = rad(b[1] - a[1]) * R;
    const n = Math.max(1, Math.ceil(Math.hypot(dx, dy) / 10));
    for (let k = 0; k < n; k++) pts.push([a[0] + ((b[0] - a[0]) * k) / n, a[1] + ((b[1] - a[1]) * k) / n]);
  }
  pts.push(line[line.length - 1]);
  const trkpts = pts
    .map(([lon, lat], i) => `<trkpt lat="${lat.toFixed(7)}" lon="${lon.toFixed(7)}"><time>${new Date(t0 + i * 8000).toISOString()}</time></trkpt>`)
    .join('\n      ');
  const file = path.join(WORK, `${name}.gpx`);
  writeFileSync(file, `<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="riverchief browser test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>${name}</name><trkseg>
      ${trkpts}
  </trkseg></trk>
</gpx>
`);
  return { file, seconds: pts.length * 8 };
}

/** A real JPEG (muddy water rising through grass), drawn by the browser itself. */
async function drawPhoto(browser) {
  const page = await browser.newPage();
  const dataUrl = await page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 320;
    c.height = 240;
    const g = c.getContext('2d');
    g.fillStyle = '#5d7f3a';
    g.fillRect(0, 0, 320, 240);
    const boil = g.createRadialGradient(160, 130, 5, 160, 130, 70);
    boil.addColorStop(0, '#8d6e4c');
    boil.addColorStop(1, '#5d7f3a');
    g.fillStyle = boil;
    g.beginPath();
    g.arc(160, 130, 70, 0, 2 * Math.PI);
    g.fill();
    return c.toDataURL('image/jpeg', 0.85);
  });
  await page.close();
  return Buffer.from(dataUrl.split(',')[1], 'base64');
}

// ---- the page, watched --------------------------------------------------------------------------

const problems = [];
let lastPage = null; // for a screenshot when something fails
const apiRequests = [];

// Contexts where a 401 is what the step is about (a token the server does not know).
const expecting401 = new Set();

function watch(page, label) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = msg.location()?.url || '';
    const p = url.startsWith(BASE) ? new URL(url).pathname : '';
    if (/status of 401/.test(msg.text()) && expecting401.has(label)) return;
    problems.push(`${label} console error: ${msg.text()} (${url})`);
  });
  page.on('pageerror', (e) => problems.push(`${label} page error: ${e.message}`));
  lastPage = page;
  page.on('request', async (req) => {
    const u = new URL(req.url());
    if (!u.pathname.startsWith('/api/')) return;
    const headers = await req.allHeaders();
    apiRequests.push({ label, method: req.method(), path: u.pathname, auth: headers.authorization || null });
  });
}

async function signIn(page, username) {
  await page.goto(BASE, { waitUntil: 'domcontentloaded' });
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('body[data-ready="1"]', { timeout: WAIT });
}

const segPath = (code, state) => `path[data-segment="${code}"]${state ? `[data-state="${state}"]` : ''}`;

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  mkdirSync(WORK, { recursive: true });
  const admin = await login('admin');
  const lead = await login('chen');

  // The stream must answer as Server-Sent Events (the page reads it with fetch).
  {
    const aborter = new AbortController();
    const r = await fetch(`${BASE}/api/v1/alerts/stream`, {
      headers: { authorization: `Bearer ${lead}`, accept: 'text/event-stream' }, signal: aborter.signal,
    });
    aborter.abort();
    check(r.ok && (r.headers.get('content-type') || '').startsWith('text/event-stream'),
      `GET /api/v1/alerts/stream: ${r.status} ${r.headers.get('content-type')}`);
  }

  // Arrange: high water (every segment every 30 minutes), and QHL-02 last walked two hours ago.
  const stage = await call(admin, 'POST', '/api/v1/flood-stage', { stage: 'warning', note: 'browser test' });
  check(stage.status === 200, `set flood stage: ${stage.status} ${JSON.stringify(stage.body)}`);
  // A day of Dongshan readings rising past the warning level.
  {
    const t0 = Date.now() - 24 * 3600 * 1000;
    const readings = Array.from({ length: 24 }, (_, i) => ({
      observed_at: new Date(t0 + i * 3600 * 1000).toISOString(),
      level_m: Math.round((7.9 + 1.2 * (i / 23) ** 1.5) * 100) / 100,
    }));
    const r = await call(lead, 'POST', '/api/v1/stations/DONGSHAN/readings', { readings });
    check(r.status >= 200 && r.status < 300, `readings for DONGSHAN: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const segments = (await call(lead, 'GET', '/api/v1/segments')).body;
  const qhl02 = segments.features.find((f) => f.properties.code === 'QHL-02');
  check(qhl02, 'QHL-02 in the demo');
  phone('login', '--username', 'zhangwei');
  const old = gpxAlong(qhl02.geometry.coordinates, Date.now() - 2 * 3600 * 1000, 'two-hours-ago');
  phone('patrol', 'import', old.file, '--segment', 'QHL-02');
  phone('sync');
  const before = (await call(lead, 'GET', '/api/v1/coverage')).body.features.find((f) => f.properties.code === 'QHL-02').properties;
  check(before.last_covered && before.overdue, `QHL-02 should be covered long ago and overdue: ${JSON.stringify(before)}`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  try {
    // ---- desktop ----
    const desk = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'zh-CN', timezoneId: 'Europe/London' });
    const page = await desk.newPage();
    watch(page, 'desktop');
    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });
    await signIn(page, 'chen');
    const line = page.locator(segPath('QHL-02', 'overdue'));
    await line.waitFor({ timeout: WAIT });
    check((await line.getAttribute('stroke')) === OVERDUE, 'QHL-02 drawn in the overdue colour');
    check(await page.locator('.cov-row[data-segment="QHL-02"][data-state="overdue"]').count() === 1, 'coverage panel says overdue');
    log('QHL-02 is overdue on the map');
    {
      await page.locator('#water-body svg.chart path').waitFor({ timeout: WAIT });
      check((await page.locator('#water-body line[data-threshold]').count()) === 3, 'three threshold lines on the chart');
      check((await page.textContent('#water-body .level-now')).includes('9.10 m'), 'the latest level');
      log('the water level chart shows the day\'s rise against the thresholds');
    }
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-desktop-overdue.png') });
    // The four states from coverage properties, as the page judges them (now = the window's end).
    const states = await page.evaluate(async () => {
      const { coverageState } = await import('/assets/map.js');
      const to = '2024-07-03T12:00:00Z';
      const at = (min) => new Date(Date.parse(to) - min * 60000).toISOString();
      return [
        coverageState({ last_covered: at(5), interval_minutes: 30, overdue: false, to }),
        coverageState({ last_covered: at(25), interval_minutes: 30, overdue: false, to }),
        coverageState({ last_covered: at(45), interval_minutes: 30, overdue: true, to }),
        coverageState({ last_covered: null, interval_minutes: 30, overdue: true, to }),
        coverageState(undefined),
      ];
    });
    check(JSON.stringify(states) === JSON.stringify(['covered', 'due', 'overdue', 'nodata', 'nodata']), `coverage states: ${states}`);
    const navsBefore = navigations;
    await page.evaluate(() => { window.__sameDocument = 'still here'; });

    // A patroller walks QHL-02 now; the page turns it covered by itself.
    const fresh = gpxAlong(qhl02.geometry.coordinates, Date.now() - 15 * 60_000, 'now');
    phone('patrol', 'import', fresh.file, '--segment', 'QHL-02');
    phone('sync');
    await page.locator(segPath('QHL-02', 'covered')).waitFor({ timeout: WAIT });
    check((await page.locator(segPath('QHL-02')).getAttribute('stroke')) === COVERED, 'QHL-02 drawn in the covered colour');
    check(navigations === navsBefore && (await page.evaluate(() => window.__sameDocument)) === 'still here', 'no reload');
    log('QHL-02 turned covered without a reload');

    // A muddy sand boil with a photo, reported from the phone.
    const photo = path.join(WORK, 'boil.jpg');
    writeFileSync(photo, await drawPhoto(browser));
    const [a, b] = [qhl02.geometry.coordinates[1], qhl02.geometry.coordinates[2]];
    phone('issue', 'report', '--segment', 'QHL-02', '--lon', String((a[0] + b[0]) / 2 + 0.0002), '--lat', String((a[1] + b[1]) / 2),
      '--category', 'piping', '--outflow', 'muddy', '--severity', '3', '--description', '背水坡脚浑水管涌（浏览器测试）', '--photo', photo);
    phone('sync');

    {
      const alert = page.locator('li.alert[data-kind="critical_hazard"][data-state="open"]').first();
      await alert.waitFor({ timeout: WAIT });
      log('the critical-hazard alert arrived live, over the stream');
      await alert.locator('button.ack').click();
      await page.locator('li.alert[data-kind="critical_hazard"][data-state="acknowledged"]').first().waitFor({ timeout: WAIT });
      const alerts = (await call(lead, 'GET', '/api/v1/alerts?state=acknowledged&limit=10')).body.alerts;
      check(alerts.some((x) => x.kind === 'critical_hazard' && x.acknowledged_by_name), 'the server has it acknowledged');
      log('acknowledged by a click');
    }

    // A drill: a short hydrograph crossing the warning level, replayed fast. Its alert arrives over
    // the same stream, marked as a drill; the real alerts stay as they were.
    {
      const t0 = Date.parse('2024-06-29T08:00:00Z');
      const series = [8.5, 8.7, 8.9, 9.0].map((level_m, i) => ({ observed_at: new Date(t0 + i * 3600_000).toISOString(), level_m }));
      const d = await call(lead, 'POST', '/api/v1/drills', { station: 'DONGSHAN', speed: 36000, series });
      check(d.status === 201, `start a drill: ${d.status} ${JSON.stringify(d.body)}`);
      const drillAlert = page.locator('li.alert[data-kind="stage_changed"] .drill').first();
      await drillAlert.waitFor({ timeout: WAIT });
      check((await drillAlert.textContent()) === '演练', 'the drill alert is marked 演练');
      const all = (await call(lead, 'GET', '/api/v1/alerts?state=all&limit=100')).body.alerts;
      check(all.some((x) => x.drill && x.kind === 'stage_changed'), 'the server raised the drill\'s stage change as a drill alert');
      check(all.some((x) => !x.drill && x.kind === 'critical_hazard'), 'the real hazard stays a real alert');
      log('a drill alert arrived live, marked 演练');
    }

    // The boil appears on the map (polled); the lead opens it, sees the photo, and accepts it.
    const marker = page.locator('path.issue-marker[data-severity="3"]').first();
    await marker.waitFor({ timeout: WAIT });
    await marker.click();
    await page.locator('#issue:not([hidden]) #issue-body h3').waitFor({ timeout: WAIT });
    check((await page.textContent('#issue-body h3')).includes('管涌'), 'the issue drawer names the category');
    const img = page.locator('#issue-photos img[src^="blob:"]');
    await img.waitFor({ timeout: WAIT });
    await page.waitForFunction(() => document.querySelector('#issue-photos img')?.naturalWidth === 320, null, { timeout: WAIT });
    log('issue opened with its photo');
    // Times are Asia/Shanghai whatever the browser's zone (this context's is Europe/London).
    const reported = (await call(lead, 'GET', '/api/v1/issues?segment=QHL-02&category=piping')).body.issues[0];
    const shanghai = new Intl.DateTimeFormat('zh-CN', {
      timeZone: 'Asia/Shanghai', hour12: false, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    }).format(new Date(reported.reported_at));
    check((await page.textContent('#issue-body')).includes(shanghai), `the report time shown as ${shanghai} (Asia/Shanghai)`);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-desktop-issue.png') });
    await page.click('#issue-body button[data-action="accepted"]');
    await page.locator('#issue-body .events li', { hasText: '已受理' }).waitFor({ timeout: WAIT });
    log('accepted from the drawer');
    // Dispatch: the first click offers the people who patrolled the segment, the second sends.
    await page.click('#issue-body button[data-action="dispatched"]');
    await page.locator('#issue-assignee option', { hasText: '张伟' }).waitFor({ state: 'attached', timeout: WAIT });
    await page.fill('#issue-note', '请立即抢护（浏览器测试）');
    await page.click('#issue-body button[data-action="dispatched"]');
    await page.locator('#issue-body .events li', { hasText: '已派遣' }).waitFor({ timeout: WAIT });
    const issues = (await call(lead, 'GET', '/api/v1/issues?segment=QHL-02')).body.issues;
    check(issues.some((i) => i.status === 'dispatched' && i.assignee), `the server has it dispatched: ${JSON.stringify(issues.map((i) => i.status))}`);
    log('dispatched to the patroller from the drawer');
    await page.click('#issue-close');

    // English by the toggle, remembered.
    await page.click('#lang');
    await page.locator('#coverage-panel h2', { hasText: 'Patrol coverage' }).waitFor({ timeout: WAIT });
    check((await page.evaluate(() => localStorage.getItem('rc.lang'))) === 'en', 'language remembered');
    await page.click('#lang');
    await page.locator('#coverage-panel h2', { hasText: '巡查覆盖' }).waitFor({ timeout: WAIT });
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-desktop.png') });

    // ---- phone ----
    const mobile = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN' });
    const ph = await mobile.newPage();
    watch(ph, 'phone');
    await signIn(ph, 'chen');
    await ph.locator(segPath('QHL-02', 'covered')).waitFor({ timeout: WAIT });
    await ph.screenshot({ path: path.join(SHOTS, 'dashboard-phone.png') });
    await ph.screenshot({ path: path.join(SHOTS, 'dashboard-phone-full.png'), fullPage: true });
    log(`screenshots in ${SHOTS}`);

    // Logging out returns to the form; the session is gone.
    await ph.click('#logout');
    await ph.locator('#login:not([hidden])').waitFor({ timeout: WAIT });
    check((await ph.evaluate(() => sessionStorage.getItem('rc.token'))) === null, 'token dropped on logout');

    // A token the server no longer honours: the next poll's 401 brings the login form back.
    await signIn(ph, 'chen');
    expecting401.add('phone');
    await ph.evaluate(() => sessionStorage.setItem('rc.token', '00'.repeat(32)));
    await ph.locator('#login:not([hidden])').waitFor({ timeout: WAIT });
    check((await ph.textContent('#login-error')).includes('登录已过期'), 'the form says the session ended');
    log('a 401 returns to the login form');
    await desk.close();
    await mobile.close();
  } catch (e) {
    await capture();
    throw e;
  } finally {
    await browser.close();
  }

  // Every request the page made to the API carried the token, but the login itself.
  const bare = apiRequests.filter((r) => !r.auth && r.path !== '/api/v1/auth/login');
  const withBearer = apiRequests.filter((r) => r.auth && r.auth.startsWith('Bearer '));
  check(withBearer.length > 10, `the page made authenticated API requests (${withBearer.length})`);
  check(bare.length === 0, `requests without a token: ${JSON.stringify(bare)}`);
  check(problems.length === 0, `console/page errors:\n  ${problems.join('\n  ')}`);
  log(`${apiRequests.length} API requests, all authenticated; no console errors`);
  log('PASSED');
}

/** What the page looked like when something failed: a screenshot and the panels' text. */
async function capture() {
  if (!lastPage || lastPage.isClosed()) return;
  const shot = path.join(SHOTS, 'dashboard-FAILED.png');
  await lastPage.screenshot({ path: shot }).then(() => console.error(`[dashboard] the page at failure: ${shot}`), () => {});
  const text = await lastPage.evaluate(() => document.body.innerText).catch(() => '');
  console.error(`[dashboard] the page said:\n${text}`);
}

main().catch((e) => {
  console.error(`[dashboard] FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`[dashboard] console/page errors so far:\n  ${problems.join('\n  ')}`);
  process.exit(1);
});
