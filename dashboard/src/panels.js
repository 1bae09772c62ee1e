// The side panels: coverage per segment, the water level chart, the alert feed, the issue list and the
// stock per depot. Each is a function that renders its data into its element; app.js fetches.

import { t, fmtTime, fmtAgo, statusLabel, getLang } from './i18n.js';
import { coverageState, esc } from './map.js';

export function renderCoverage(el, segments, coverage) {
  const rows = [];
  for (const f of segments?.features || []) {
    const sp = f.properties;
    const p = coverage.get(sp.code);
    const state = coverageState(p);
    const last = p && p.last_covered
      ? fmtAgo((Date.parse(p.to) || Date.now()) - Date.parse(p.last_covered))
      : t('never');
    rows.push(`<li class="cov-row" data-segment="${esc(sp.code)}" data-state="${state}">
      <button type="button" class="linkish" data-focus="${esc(sp.code)}"><b>${esc(sp.code)}</b></button>
      <span class="chip state-${state}">${t(`state_${state}`)}</span>
      <span class="muted">${esc(sp.start_chainage)}–${esc(sp.end_chainage)}</span>
      <span class="muted">${t('last_covered')}: ${esc(last)}</span></li>`);
  }
  const any = [...coverage.values()][0];
  const stage = any ? `<p class="muted">${t('stage')}: ${t(`stage_${any.stage}`)} · ${t('interval')} ${any.interval_minutes} ${t('minutes')}</p>` : '';
  el.innerHTML = `${stage}<ul class="cov-list">${rows.join('')}</ul>`;
}

const STAGE_COLOURS = { watch_m: '#1565c0', warning_m: '#ef6c00', guarantee_m: '#c62828' };

/**
 * The governing station's level: stage and response badges, then an SVG chart of its readings with
 * the threshold lines. `flood` is /api/v1/flood-level (null when the server has none), `stage` the
 * /api/v1/flood-stage fallback.
 */
export function renderWater(el, { flood, station, readings, stage }) {
  const parts = [];
  // The stage in force (what patrol intervals follow): the gauge's, a declared response or the
  // manual floor, whichever is highest; then the responses declared per river.
  if (stage?.stage) {
    parts.push(`<span class="badge stage-${esc(stage.stage)}" data-stage="${esc(stage.stage)}">${t('stage')}: ${t(`stage_${stage.stage}`)}</span>`);
    parts.push(`<span class="muted">${t('interval')} ${stage.interval_minutes} ${t('minutes')}</span>`);
  }
  for (const r of flood?.responses || []) {
    const level = r.level ? `${r.level}${responseName(r.level)}` : t('response_none');
    parts.push(`<span class="badge response-${esc(r.level || 'none')}">${esc(r.river || '')} ${t('response')}: ${esc(level)}</span>`);
  }
  let body = '';
  if (station) {
    const th = station.thresholds || {};
    const level = station.level_m != null ? `${Number(station.level_m).toFixed(2)} m` : '—';
    const observed = station.observed_at ? `<span class="muted">${t('observed')} ${esc(fmtTime(station.observed_at, 'short'))}</span>` : '';
    const gauge = station.stage ? `<span class="chip gauge-${esc(station.stage)}" data-station-stage="${esc(station.stage)}">${t(`stage_${station.stage}`)}</span>` : '';
    body += `<p class="level-now"><b>${esc(station.name)}</b> ${level} ${gauge} ${observed}</p>`;
    body += chart(readings || [], th, station.level_m);
    body += `<p class="muted">${['watch_m', 'warning_m', 'guarantee_m']
      .filter((k) => th[k] != null)
      .map((k) => `<span data-threshold="${k}">${t(k)} ${Number(th[k]).toFixed(2)} m</span>`)
      .join(' · ')}</p>`;
  } else {
    body += `<p class="muted no-gauge">${t('no_gauge')}</p>`;
  }
  el.innerHTML = `<div class="badges">${parts.join(' ')}</div>${body}`;
  // Colours through the CSSOM: the page's policy refuses inline style attributes.
  el.querySelectorAll('[data-threshold]').forEach((s) => {
    s.style.color = STAGE_COLOURS[s.dataset.threshold];
  });
}

function responseName(level) {
  const zh = { IV: '级（蓝色）', III: '级（黄色）', II: '级（橙色）', I: '级（红色）' };
  const en = { IV: ' (blue)', III: ' (yellow)', II: ' (orange)', I: ' (red)' };
  return (getLang() === 'zh' ? zh : en)[level] || '';
}

function chart(readings, th, current) {
  const W = 340;
  const H = 150;
  const pad = { l: 36, r: 8, t: 8, b: 20 };
  const pts = readings
    .map((r) => [Date.parse(r.observed_at), Number(r.level_m)])
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
    .sort((a, b) => a[0] - b[0]);
  if (pts.length === 0) return `<p class="muted">${t('no_gauge')}</p>`;
  const ys = pts.map((p) => p[1]).concat(Object.values(th).filter((v) => v != null).map(Number));
  if (current != null) ys.push(Number(current));
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (y1 - y0 < 0.5) {
    y0 -= 0.25;
    y1 += 0.25;
  }
  const x0 = pts[0][0];
  const x1 = Math.max(pts[pts.length - 1][0], x0 + 1);
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const sy = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const path = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
  const lines = ['watch_m', 'warning_m', 'guarantee_m']
    .filter((k) => th[k] != null)
    .map((k) => `<line x1="${pad.l}" x2="${W - pad.r}" y1="${sy(th[k]).toFixed(1)}" y2="${sy(th[k]).toFixed(1)}" stroke="${STAGE_COLOURS[k]}" stroke-dasharray="4 3" data-threshold="${k}"/>`)
    .join('');
  const ticks = [y0, (y0 + y1) / 2, y1]
    .map((v) => `<text x="${pad.l - 4}" y="${sy(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`)
    .join('');
  const times = [x0, x1]
    .map((x, i) => `<text x="${sx(x)}" y="${H - 4}" text-anchor="${i ? 'end' : 'start'}">${esc(fmtTime(new Date(x).toISOString(), 'short'))}</text>`)
    .join('');
  const last = pts[pts.length - 1];
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${t('water')}">
    ${lines}<path d="${path}" fill="none" stroke="#0d47a1" stroke-width="2"/>
    <circle cx="${sx(last[0])}" cy="${sy(last[1])}" r="3.5" fill="#0d47a1"/>${ticks}${times}</svg>`;
}

/** The alert feed: newest first; open alerts have an acknowledge button for duty leads. */
export function renderAlerts(el, { available, live, alerts, canAck }) {
  if (!available) {
    el.innerHTML = `<p class="muted" data-alerts="unavailable">${t('alerts_unavailable')}</p>`;
    return;
  }
  const said = live === 'polling' ? t('alerts_polling') : live ? `● ${t('alerts_live')}` : t('alerts_offline');
  const status = `<p class="muted stream-state" data-live="${live === true ? '1' : '0'}">${said}</p>`;
  if (!alerts.length) {
    el.innerHTML = `${status}<p class="muted">${t('no_alerts')}</p>`;
    return;
  }
  const zh = getLang() === 'zh';
  const items = alerts.map((a) => {
    const drill = a.drill ? `<span class="drill">${t('drill')}</span>` : '';
    const kind = t(`kind_${a.kind}`);
    const msg = zh ? a.message : a.message_en || a.message;
    let action = '';
    if (a.state === 'open' && canAck) {
      action = `<button type="button" class="ack" data-ack="${esc(a.id)}">${t('ack')}</button>`;
    } else if (a.state === 'acknowledged') {
      action = `<span class="muted acked">${t('acked_by')} ${esc(a.acknowledged_by_name || '')} ${esc(fmtTime(a.acknowledged_at, 'time'))}</span>`;
    } else if (a.state === 'resolved') {
      action = `<span class="muted">${t('resolved')} ${esc(fmtTime(a.resolved_at, 'time'))}</span>`;
    }
    const link = a.issue_id ? `<button type="button" class="linkish" data-issue-open="${esc(a.issue_id)}">${t('issues')} ›</button>` : '';
    return `<li class="alert level-${esc(a.level)} state-${esc(a.state)}${a.drill ? ' is-drill' : ''}" data-alert="${esc(a.id)}" data-kind="${esc(a.kind)}" data-state="${esc(a.state)}">
      <div class="alert-head">${drill}<b>${esc(kind)}</b> <span class="muted">${esc(fmtTime(a.raised_at, 'short'))}</span></div>
      <div>${esc(msg)}</div><div class="alert-foot">${action} ${link}</div></li>`;
  });
  el.innerHTML = `${status}<ul class="alert-list">${items.join('')}</ul>`;
}

/** The issue list under its filters. */
export function renderIssues(el, issues, segmentsById) {
  if (!issues.length) {
    el.innerHTML = `<p class="muted">${t('no_issues')}</p>`;
    return;
  }
  const zh = getLang() === 'zh';
  el.innerHTML = `<ul class="issue-list">${issues
    .map((i) => {
      const seg = segmentsById.get(i.segment_id);
      return `<li><button type="button" class="issue-row sev-${i.severity}${i.critical ? ' critical' : ''}" data-issue-open="${esc(i.id)}">
        <span class="sev">${t(`severity_${i.severity}`)}</span>
        <b>${esc(zh ? i.category_zh : i.category_en)}</b>
        <span class="muted">${esc(seg?.code || '')} ${esc(i.chainage)}</span>
        <span class="status">${esc(statusLabel(i.status))}${i.overdue ? ` · ${t('issue_overdue')}` : ''}${i.escalated ? ` · ${t('issue_escalated')}` : ''}</span>
        <span class="muted">${esc(fmtTime(i.reported_at, 'short'))}</span>
        <span class="desc">${esc(i.description)}</span></button></li>`;
    })
    .join('')}</ul>`;
}

/** Stock per depot: shortfalls first and in red, then lots past or near their date. */
export function renderStock(el, view, depots) {
  const names = new Map((depots?.features || []).map((f) => [f.properties.code, f.properties]));
  const zh = getLang() === 'zh';
  const byDepot = new Map();
  for (const s of view.stock || []) {
    if (!byDepot.has(s.depot)) byDepot.set(s.depot, []);
    byDepot.get(s.depot).push(s);
  }
  const blocks = [];
  for (const [depot, lines] of byDepot) {
    lines.sort((a, b) => b.shortfall - a.shortfall || a.item.localeCompare(b.item));
    const rows = lines
      .map((s) => `<tr class="${s.shortfall > 0 ? 'short' : ''}" data-item="${esc(s.item)}">
        <td>${esc(s.item_name)}</td><td class="num">${s.on_hand}</td><td class="num">${s.quota}</td>
        <td class="num">${s.shortfall > 0 ? `−${s.shortfall}` : ''}</td><td class="muted">${esc(s.unit)}</td></tr>`)
      .join('');
    const lots = lines
      .flatMap((s) => (s.lots_expiring || []).map((l) => `<li>${esc(s.item_name)} ×${l.quantity} · ${t('expires')} ${esc(l.expires_on)}</li>`))
      .join('');
    const d = names.get(depot);
    const title = d ? `${esc(zh ? d.name : d.name_en || d.name)} <span class="muted">${esc(depot)}</span>` : esc(depot);
    blocks.push(`<section class="depot" data-depot="${esc(depot)}"><h4>${title}</h4>
      <table><thead><tr><th>${t('item')}</th><th>${t('on_hand')}</th><th>${t('quota')}</th><th>${t('shortfall')}</th><th></th></tr></thead>
      <tbody>${rows}</tbody></table>${lots ? `<p class="muted">${t('expiring')}</p><ul class="lots">${lots}</ul>` : ''}</section>`);
  }
  el.innerHTML = blocks.join('');
}
