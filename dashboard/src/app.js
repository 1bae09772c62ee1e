// The duty lead's dashboard: log in, then keep the map and the panels current. Coverage is polled
// every few seconds and refreshed when an alert arrives; alerts come live over SSE when the server
// has them; everything else is polled less often. Every /api/ request carries the bearer token.

import * as api from './api.js';
import { t, setLang, getLang, fmtTime, statusLabel, actionLabel, NEXT_ACTIONS, OPEN_STATUSES, ALL_STATUSES } from './i18n.js';
import { BankMap, esc } from './map.js';
import { renderCoverage, renderWater, renderAlerts, renderIssues, renderStock } from './panels.js';

const COVERAGE_POLL_MS = 5000;
const ISSUES_POLL_MS = 15000;
const ALERTS_POLL_MS = 5000;
const SLOW_POLL_MS = 60000;
const READINGS_HOURS = 72;

const $ = (sel) => document.querySelector(sel);

const state = {
  config: { tile_url: null, tile_attribution: null },
  user: null,
  map: null,
  segments: null,
  segmentsById: new Map(),
  coverage: new Map(),
  openIssues: [],
  alerts: [],
  alertsAvailable: null,
  alertsLive: false,
  stream: null,
  timers: [],
  stock: null,
  depots: null,
  water: {},
  issueFilter: { status: 'open', severity: '', category: '', segment: '' },
  detail: null,
  photoUrls: [],
};

function status(msg, kind = 'info') {
  const el = $('#status');
  el.textContent = msg || '';
  el.dataset.kind = kind;
}

function translateStatic() {
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  $('#lang').textContent = t('lang_toggle');
}

// ---- login ----------------------------------------------------------------------------------------

function showLogin(message) {
  stopAll();
  api.clearSession();
  state.user = null;
  document.body.classList.remove('signed-in');
  $('#login').hidden = false;
  $('#app').hidden = true;
  $('#login-error').textContent = message || '';
  $('#username').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    await api.login($('#username').value.trim(), $('#password').value);
    $('#password').value = '';
    await start();
  } catch (e) {
    $('#login-error').textContent = e.status === 401 ? t('login_failed') : `${t('network_error')}: ${e.message}`;
  }
}

// ---- the running dashboard ------------------------------------------------------------------------

async function start() {
  const s = api.session();
  if (!s) return showLogin();
  state.user = s.user;
  $('#login').hidden = true;
  $('#app').hidden = false;
  document.body.classList.add('signed-in');
  $('#who').textContent = s.user.display_name;
  if (!state.map) {
    state.map = new BankMap($('#map'), {
      tileUrl: state.config.tile_url,
      tileAttribution: state.config.tile_attribution,
      onIssue: (id) => openIssue(id),
      onSegment: (code) => {
        state.issueFilter.segment = code;
        $('#f-segment').value = code;
        loadIssues();
      },
    });
  }
  try {
    state.segments = await api.api('/api/v1/segments');
  } catch (e) {
    if (e.status !== 401) status(`${t('network_error')}: ${e.message}`, 'error');
    return;
  }
  state.segmentsById = new Map(state.segments.features.map((f) => [f.properties.id, f.properties]));
  fillSegmentFilter();
  state.map.setSegments(state.segments);
  await Promise.all([loadCoverage(), loadIssues(), loadOpenIssues(), loadStock(), loadWater(), startAlerts()]);
  every(COVERAGE_POLL_MS, loadCoverage);
  every(ISSUES_POLL_MS, () => Promise.all([loadOpenIssues(), loadIssues()]));
  every(SLOW_POLL_MS, () => Promise.all([loadStock(), loadWater()]));
  document.body.dataset.ready = '1';
}

function every(ms, f) {
  state.timers.push(setInterval(() => {
    if (document.visibilityState !== 'hidden' || ms <= COVERAGE_POLL_MS) f();
  }, ms));
}

function stopAll() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.alerts = [];
  state.alertsLoaded = false;
  state.alertsPolling = false;
  state.alertsLive = false;
  delete document.body.dataset.ready;
  closeIssue();
}

/** Runs a loader, reporting failures on the status line (never to the console). */
async function guarded(f) {
  try {
    await f();
    return true;
  } catch (e) {
    if (e.status !== 401 && e.name !== 'AbortError') status(`${t('network_error')}: ${e.message}`, 'error');
    return false;
  }
}

function loadCoverage() {
  return guarded(async () => {
    const fc = await api.api('/api/v1/coverage');
    state.map.setCoverage(fc);
    state.coverage = state.map.coverage;
    renderCoverage($('#coverage-body'), state.segments, state.coverage);
    $('#updated').textContent = `${t('updated')} ${fmtTime(new Date().toISOString(), 'time')}`;
    status('');
  });
}

function loadOpenIssues() {
  return guarded(async () => {
    const body = await api.api(`/api/v1/issues?status=${OPEN_STATUSES.join(',')}`);
    state.openIssues = body.issues;
    state.map.setIssues(body.issues);
  });
}

function issueQuery() {
  const f = state.issueFilter;
  const q = new URLSearchParams();
  if (f.status === 'open') q.set('status', OPEN_STATUSES.join(','));
  else if (f.status) q.set('status', f.status);
  if (f.severity) q.set('severity', f.severity);
  if (f.category) q.set('category', f.category);
  if (f.segment) q.set('segment', f.segment);
  return q.toString();
}

function loadIssues() {
  return guarded(async () => {
    const body = await api.api(`/api/v1/issues?${issueQuery()}`);
    state.issues = body.issues;
    fillCategoryFilter(body.issues);
    renderIssues($('#issues-body'), body.issues, state.segmentsById);
  });
}

function loadStock() {
  return guarded(async () => {
    const [view, depots] = await Promise.all([api.api('/api/v1/stock'), api.optional('/api/v1/depots')]);
    state.stock = view;
    state.depots = depots;
    renderStock($('#stock-body'), view, depots);
    if (depots) state.map.setDepots(depots, view.stock);
  });
}

/** The governing station: the one most segments name, else the first the server lists. */
function governingStation(stations) {
  const counts = new Map();
  for (const f of state.segments?.features || []) {
    const code = f.properties.gauge_station;
    if (code) counts.set(code, (counts.get(code) || 0) + 1);
  }
  const best = [...counts.entries()].sort((a, b) => b[1] - a[1])[0];
  return (best && stations.find((s) => s.code === best[0])) || stations[0] || null;
}

function loadWater() {
  return guarded(async () => {
    const [flood, stage] = await Promise.all([
      state.water.floodMissing ? null : api.optional('/api/v1/flood-level'),
      api.optional('/api/v1/flood-stage'),
    ]);
    if (!flood) state.water.floodMissing = true;
    let station = null;
    let readings = [];
    if (flood && Array.isArray(flood.stations)) {
      station = governingStation(flood.stations);
      if (station) {
        const to = new Date();
        const from = new Date(to.getTime() - READINGS_HOURS * 3600 * 1000);
        const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
        const r = await api.optional(`/api/v1/stations/${encodeURIComponent(station.id || station.code)}/readings?${q}`);
        readings = r?.readings || [];
      }
    }
    state.water = { ...state.water, flood, station, readings, stage };
    renderWater($('#water-body'), state.water);
  });
}

// ---- alerts ---------------------------------------------------------------------------------------

function canAct() {
  return state.user && (state.user.role === 'duty_lead' || state.user.role === 'admin');
}

function drawAlerts() {
  renderAlerts($('#alerts-body'), {
    available: state.alertsAvailable !== false,
    live: state.alertsPolling ? 'polling' : state.alertsLive,
    alerts: state.alerts,
    canAck: canAct(),
  });
  const open = state.alerts.filter((a) => a.state === 'open').length;
  $('#alert-count').textContent = open ? String(open) : '';
}

async function loadAlerts() {
  const body = await api.optional('/api/v1/alerts?state=active&limit=50');
  if (!body) {
    state.alertsAvailable = false;
    return false;
  }
  state.alertsAvailable = true;
  const before = new Map(state.alerts.map((a) => [a.id, a.updated_at]));
  const first = !state.alertsLoaded;
  state.alertsLoaded = true;
  state.alerts = body.alerts || [];
  drawAlerts();
  if (!first) {
    for (const a of state.alerts) if (before.get(a.id) !== a.updated_at) reactTo(a);
  }
  return true;
}

/** What else an alert's change may have changed on the page. */
function reactTo(alert) {
  loadCoverage();
  if (alert.kind === 'critical_hazard' || alert.issue_id) {
    loadOpenIssues();
    loadIssues();
  }
  if (alert.kind === 'stage_changed' || alert.kind === 'rapid_rise') loadWater();
  if (alert.kind === 'stock_below_quota' || alert.kind === 'lot_expiring') loadStock();
}

function upsertAlert(a) {
  const i = state.alerts.findIndex((x) => x.id === a.id);
  if (i >= 0) state.alerts[i] = a;
  else state.alerts.unshift(a);
  state.alerts.sort((x, y) => Date.parse(y.raised_at) - Date.parse(x.raised_at));
  // Resolved alerts stay a little while so that the lead sees them go, then drop out.
  state.alerts = state.alerts.filter((x) => x.state !== 'resolved' || Date.now() - Date.parse(x.updated_at) < 10 * 60000).slice(0, 100);
  drawAlerts();
}

async function startAlerts() {
  const ok = await guarded(loadAlerts);
  if (!ok || state.alertsAvailable === false) {
    drawAlerts();
    return;
  }
  const controller = new AbortController();
  state.stream = controller;
  api
    .readEventStream('/api/v1/alerts/stream', {
      signal: controller.signal,
      onState: (live) => {
        const reconnected = live && !state.alertsLive;
        state.alertsLive = live;
        drawAlerts();
        // Whatever happened while the stream was down: read the list again.
        if (reconnected) guarded(loadAlerts);
      },
      onEvent: (ev) => {
        if (ev.event !== 'alert') return;
        let alert;
        try {
          alert = JSON.parse(ev.data);
        } catch {
          return;
        }
        upsertAlert(alert);
        reactTo(alert);
      },
    })
    .then((had) => {
      // Alerts but no stream: read the list every few seconds instead.
      if (had === false && !controller.signal.aborted) {
        state.alertsPolling = true;
        drawAlerts();
        every(ALERTS_POLL_MS, () => guarded(loadAlerts));
      }
    })
    .catch(() => {});
}

async function acknowledge(id, button) {
  button.disabled = true;
  const ok = await guarded(async () => {
    const a = await api.api(`/api/v1/alerts/${encodeURIComponent(id)}/ack`, { method: 'POST', body: {} });
    upsertAlert(a);
  });
  if (!ok) button.disabled = false;
}

// ---- issues: filters and detail -------------------------------------------------------------------

function fillSegmentFilter() {
  const sel = $('#f-segment');
  sel.innerHTML = `<option value="">${t('all')}</option>${state.segments.features
    .map((f) => `<option value="${esc(f.properties.code)}">${esc(f.properties.code)}</option>`)
    .join('')}`;
  sel.value = state.issueFilter.segment;
}

function fillStatusFilter() {
  const sel = $('#f-status');
  sel.innerHTML = `<option value="open">${t('open_issues')}</option><option value="">${t('all')}</option>${ALL_STATUSES.map(
    (s) => `<option value="${s}">${esc(statusLabel(s))}</option>`,
  ).join('')}`;
  sel.value = state.issueFilter.status;
  const sev = $('#f-severity');
  sev.innerHTML = `<option value="">${t('all')}</option>${[1, 2, 3].map((n) => `<option value="${n}">${t(`severity_${n}`)}</option>`).join('')}`;
  sev.value = state.issueFilter.severity;
}

const knownCategories = new Map();
function fillCategoryFilter(issues) {
  let added = false;
  for (const i of issues) {
    if (!knownCategories.has(i.category)) {
      knownCategories.set(i.category, [i.category_zh, i.category_en]);
      added = true;
    }
  }
  const sel = $('#f-category');
  if (!added && sel.options.length) return;
  const zh = getLang() === 'zh';
  sel.innerHTML = `<option value="">${t('all')}</option>${[...knownCategories.entries()]
    .map(([c, [lz, le]]) => `<option value="${esc(c)}">${esc(zh ? lz : le)}</option>`)
    .join('')}`;
  sel.value = state.issueFilter.category;
}

function closeIssue() {
  state.photoUrls.forEach((u) => URL.revokeObjectURL(u));
  state.photoUrls = [];
  state.detail = null;
  const el = $('#issue');
  if (el) el.hidden = true;
}

async function openIssue(id) {
  closeIssue();
  let issue;
  try {
    issue = await api.api(`/api/v1/issues/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status !== 401) status(`${t('network_error')}: ${e.message}`, 'error');
    return;
  }
  state.detail = issue;
  drawIssue(issue);
  $('#issue').hidden = false;
  // Photos: fetched with the token, shown as blob URLs.
  const box = $('#issue-photos');
  for (const p of issue.photos || []) {
    const fig = document.createElement('figure');
    box.append(fig);
    if (!p.arrived) {
      fig.textContent = t('photo_pending');
      fig.className = 'pending';
      continue;
    }
    try {
      const url = await api.photoUrl(p.sha256);
      if (state.detail !== issue) {
        URL.revokeObjectURL(url);
        return;
      }
      state.photoUrls.push(url);
      const img = document.createElement('img');
      img.src = url;
      img.alt = `${issue.category_zh} ${p.sha256.slice(0, 8)}`;
      img.dataset.sha256 = p.sha256;
      fig.append(img);
    } catch {
      fig.textContent = '—';
    }
  }
}

function drawIssue(i) {
  const zh = getLang() === 'zh';
  const seg = state.segmentsById.get(i.segment_id);
  const outflow = i.outflow ? ` · ${t(`outflow_${i.outflow}`)}` : '';
  const events = (i.events || [])
    .map((e) => `<li${e.rejected ? ' class="refused"' : ''}><b>${esc(statusLabel(e.kind))}</b> <span class="muted">${esc(fmtTime(e.at))}</span>${e.note ? `<div>${esc(e.note)}</div>` : ''}${e.rejected ? `<div class="error">${t('event_refused')}: ${esc(e.rejected)}</div>` : ''}</li>`)
    .join('');
  const actions = canAct()
    ? (NEXT_ACTIONS[i.status] || [])
        .map((k) => `<button type="button" data-action="${k}">${esc(actionLabel(k))}</button>`)
        .join('')
    : '';
  $('#issue-body').innerHTML = `
    <h3>${esc(i.category_zh)} <span class="muted">${esc(i.category_en)}</span></h3>
    <p><span class="sevtag sev-${i.severity}">${t(`severity_${i.severity}`)}</span>${i.critical ? ` <span class="sevtag critical">${t('critical')}</span>` : ''}
      <span class="status">${esc(statusLabel(i.status))}</span>${i.overdue ? ` <span class="sevtag critical">${t('issue_overdue')}</span>` : ''}${i.escalated ? ` <span class="sevtag critical">${t('issue_escalated')}</span>` : ''}</p>
    ${i.due_at ? `<p class="muted">${t('due_at')} ${esc(fmtTime(i.due_at))}</p>` : ''}
    <p>${esc(seg ? `${seg.code} ${zh ? seg.name : seg.name_en || seg.name}` : '')} · ${t('chainage')} ${esc(i.chainage)}${outflow}</p>
    <p>${esc(i.description)}</p>
    <p class="muted">${t('reported_at')} ${esc(fmtTime(i.reported_at))} · ${t('photos')} ${i.photos_arrived}/${i.photos_expected}</p>
    <div id="issue-photos" class="photos"></div>
    <h4>${t('history')}</h4><ol class="events">${events}</ol>
    ${actions ? `<h4>${t('actions')}</h4><label class="note">${t('note')} <textarea id="issue-note" rows="2" maxlength="2000"></textarea></label>
      <div id="assignee-box" hidden><label>${t('assignee')} <select id="issue-assignee"></select></label></div>
      <div class="actions">${actions}</div><p id="issue-msg" class="muted"></p>` : ''}`;
}

/**
 * The people a duty lead can dispatch to: the server's user list (duty leads and admins read it),
 * else those who patrolled the issue's segment in the last week.
 */
async function people(issue) {
  if (state.user?.role === 'admin' || state.user?.role === 'duty_lead') {
    try {
      const body = await api.optional('/api/v1/users');
      const list = body ? (Array.isArray(body) ? body : body.users || []) : [];
      const active = list.filter((u) => u.active !== false && u.role !== 'admin');
      if (active.length) return active.map((u) => ({ id: u.id, name: u.display_name || u.username }));
    } catch {
      // Fall through to the segment's patrollers.
    }
  }
  const from = new Date(Date.now() - 7 * 86400_000).toISOString();
  try {
    const timeline = await api.api(`/api/v1/segments/${encodeURIComponent(issue.segment_id)}/coverage?from=${encodeURIComponent(from)}`);
    const seen = new Map();
    for (const p of timeline.patrols || []) seen.set(p.patroller, p.patroller_name);
    return [...seen.entries()].map(([id, name]) => ({ id, name }));
  } catch {
    return [];
  }
}

async function act(kind) {
  const issue = state.detail;
  if (!issue) return;
  const note = $('#issue-note')?.value.trim() || undefined;
  let assignee;
  if (kind === 'dispatched') {
    const box = $('#assignee-box');
    const sel = $('#issue-assignee');
    if (box.hidden) {
      const list = await people(issue);
      if (!list.length) {
        $('#issue-msg').textContent = getLang() === 'zh' ? '近7天无人巡查此堤段，无可派遣人员' : 'Nobody patrolled this segment in the last 7 days to send';
        return;
      }
      sel.innerHTML = list.map((u) => `<option value="${esc(u.id)}">${esc(u.name)}</option>`).join('');
      box.hidden = false;
      return; // the second click sends
    }
    assignee = sel.value;
  }
  const buttons = document.querySelectorAll('#issue-body .actions button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await api.issueEvent(issue.id, kind, { note, assignee });
    await Promise.all([openIssue(issue.id), loadOpenIssues(), loadIssues()]);
    const msg = $('#issue-msg');
    if (msg) msg.textContent = `${t('done')}: ${actionLabel(kind)}`;
  } catch (e) {
    buttons.forEach((b) => { b.disabled = false; });
    const msg = $('#issue-msg');
    if (msg && e.status !== 401) msg.textContent = e.message;
  }
}

// ---- wiring ---------------------------------------------------------------------------------------

function rerender() {
  translateStatic();
  fillStatusFilter();
  if (state.segments) {
    fillSegmentFilter();
    knownCategories.size && fillCategoryFilter([]);
    renderCoverage($('#coverage-body'), state.segments, state.coverage);
    state.map.relabel();
    renderIssues($('#issues-body'), state.issues || [], state.segmentsById);
    if (state.stock) renderStock($('#stock-body'), state.stock, state.depots);
    renderWater($('#water-body'), state.water);
    drawAlerts();
    if (state.detail) drawIssue(state.detail);
  }
}

function wire() {
  $('#login-form').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', () => showLogin());
  $('#lang').addEventListener('click', () => {
    setLang(getLang() === 'zh' ? 'en' : 'zh');
    const sel = $('#f-category');
    sel.innerHTML = '';
    rerender();
  });
  for (const [id, key] of [['#f-status', 'status'], ['#f-severity', 'severity'], ['#f-category', 'category'], ['#f-segment', 'segment']]) {
    $(id).addEventListener('change', (e) => {
      state.issueFilter[key] = e.target.value;
      loadIssues();
    });
  }
  document.addEventListener('click', (e) => {
    const target = e.target.closest('button');
    if (!target) return;
    if (target.dataset.ack) acknowledge(target.dataset.ack, target);
    else if (target.dataset.issueOpen) openIssue(target.dataset.issueOpen);
    else if (target.dataset.focus) {
      state.map.focusSegment(target.dataset.focus);
      if (window.matchMedia('(max-width: 800px)').matches) $('#map').scrollIntoView({ behavior: 'smooth' });
    } else if (target.dataset.action) act(target.dataset.action);
  });
  $('#issue-close').addEventListener('click', closeIssue);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeIssue();
  });
  window.addEventListener('resize', () => state.map && state.map.invalidate());
  window.addEventListener('unhandledrejection', (e) => {
    // Failures are shown on the status line; an aborted stream on logout is expected.
    if (e.reason && e.reason.name === 'AbortError') e.preventDefault();
  });
}

async function boot() {
  setLang(getLang());
  api.setUnauthorizedHandler(() => {
    if (state.user) showLogin(t('session_expired'));
  });
  wire();
  translateStatic();
  fillStatusFilter();
  try {
    const res = await fetch('/config.json', { cache: 'no-store' });
    if (res.ok) state.config = await res.json();
  } catch {
    // No config: no base map.
  }
  if (api.session()) await start();
  else showLogin();
}

boot();
