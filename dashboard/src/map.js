// The map: segments coloured by coverage state, the stretches nobody walked, labels with code and
// chainage, open issues by severity, depots, and (without a base map) a schematic river between the
// banks. Leaflet is loaded by index.html as the global `L`.

import { t, fmtTime, fmtAgo } from './i18n.js';

const L = window.L;

export const STATE_COLOURS = {
  covered: '#2e7d32',
  due: '#f9a825',
  overdue: '#c62828',
  nodata: '#78909c',
};

const SEVERITY_COLOURS = { 1: '#fbc02d', 2: '#ef6c00', 3: '#b71c1c' };

/**
 * A segment's state from its coverage properties: `nodata` (never covered), `overdue` (the server
 * says so, by its clock), `due` (less than a quarter of the interval left) or `covered`. "Now" is the
 * server's: the window's end (`to`), which defaults to the time of the request.
 */
export function coverageState(p) {
  if (!p || !p.last_covered) return 'nodata';
  if (p.overdue) return 'overdue';
  const interval = p.interval_minutes * 60000;
  const due = Date.parse(p.last_covered) + interval;
  const now = Date.parse(p.to) || Date.now();
  if (due - now <= interval / 4) return 'due';
  return 'covered';
}

export class BankMap {
  constructor(el, { tileUrl, tileAttribution, onIssue, onSegment }) {
    this.onIssue = onIssue;
    this.onSegment = onSegment;
    this.map = L.map(el, { zoomControl: true, attributionControl: true, zoomSnap: 0.25 });
    this.map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    this.hasTiles = Boolean(tileUrl);
    if (tileUrl) {
      L.tileLayer(tileUrl, { maxZoom: 19, attribution: tileAttribution || '' }).addTo(this.map);
    } else {
      el.classList.add('no-basemap');
    }
    this.riverLayer = L.layerGroup().addTo(this.map);
    this.segmentLayer = L.layerGroup().addTo(this.map);
    this.uncoveredLayer = L.layerGroup().addTo(this.map);
    this.issueLayer = L.layerGroup().addTo(this.map);
    this.depotLayer = L.layerGroup().addTo(this.map);
    this.segments = new Map(); // code -> {feature, line, casing, label, props}
    this.coverage = new Map(); // code -> coverage properties
    this.fitted = false;
    this.map.on('zoomend', () => this.sizeRiver());
    this.addLayerControl();
    this.legend = L.control({ position: 'bottomleft' });
    this.legend.onAdd = () => {
      const div = L.DomUtil.create('div', 'legend');
      this.legendEl = div;
      this.renderLegend();
      return div;
    };
    this.legend.addTo(this.map);
  }

  /** The layer switcher, labelled in the language of the moment. */
  addLayerControl() {
    if (this.layerControl) this.layerControl.remove();
    const overlays = {
      [t('legend_uncovered')]: this.uncoveredLayer,
      [t('issues')]: this.issueLayer,
      [t('depot')]: this.depotLayer,
    };
    if (!this.hasTiles) overlays[t('legend_river')] = this.riverLayer;
    this.layerControl = L.control.layers(null, overlays, { collapsed: true }).addTo(this.map);
  }

  /** Everything on the map that has words, after a change of language. */
  relabel() {
    this.addLayerControl();
    this.renderLegend();
    this.restyle();
  }

  renderLegend() {
    if (!this.legendEl) return;
    const items = Object.entries(STATE_COLOURS)
      .map(([s]) => `<span><i data-state-key="${s}"></i>${t(`state_${s}`)}</span>`)
      .join('');
    this.legendEl.innerHTML = `${items}<span><i class="uncovered-key"></i>${t('legend_uncovered')}</span>`;
    // Colours through the CSSOM: the page's policy refuses inline style attributes.
    this.legendEl.querySelectorAll('[data-state-key]').forEach((i) => {
      i.style.background = STATE_COLOURS[i.dataset.stateKey];
    });
  }

  /** Draws the segments (GeoJSON from /api/v1/segments) once. */
  setSegments(fc) {
    this.segmentLayer.clearLayers();
    this.riverLayer.clearLayers();
    this.segments.clear();
    const bounds = L.latLngBounds([]);
    for (const f of fc.features || []) {
      const p = f.properties;
      const latlngs = (f.geometry?.coordinates || []).map(([lon, lat]) => [lat, lon]);
      if (latlngs.length < 2) continue;
      latlngs.forEach((ll) => bounds.extend(ll));
      const casing = L.polyline(latlngs, { color: '#ffffff', weight: 12, opacity: 0.9, interactive: false });
      const line = L.polyline(latlngs, { color: STATE_COLOURS.nodata, weight: 7, opacity: 0.95, lineCap: 'butt' });
      line.on('click', () => this.onSegment && this.onSegment(p.code));
      casing.addTo(this.segmentLayer);
      line.addTo(this.segmentLayer);
      const mid = latlngs[Math.floor(latlngs.length / 2)];
      const label = L.tooltip({ permanent: true, direction: p.bank === 'right' ? 'right' : 'left', className: 'seg-label', offset: [p.bank === 'right' ? 10 : -10, 0] })
        .setLatLng(mid)
        .setContent(`<b>${esc(p.code)}</b> ${esc(p.start_chainage)}–${esc(p.end_chainage)}`);
      label.addTo(this.segmentLayer);
      this.segments.set(p.code, { feature: f, line, casing, label, props: p });
      if (!this.hasTiles) this.addRiver(latlngs, p.bank);
    }
    if (!this.fitted && bounds.isValid()) {
      this.map.fitBounds(bounds, { padding: [30, 30] });
      this.fitted = true;
    }
    this.sizeRiver();
    this.restyle();
  }

  /** A schematic river: the bank line moved ~45 m towards the water (right of a left bank facing downstream). */
  addRiver(latlngs, bank) {
    const side = bank === 'right' ? -1 : 1;
    const offset = latlngs.map((ll, i) => {
      const a = latlngs[Math.max(0, i - 1)];
      const b = latlngs[Math.min(latlngs.length - 1, i + 1)];
      const kx = Math.cos((ll[0] * Math.PI) / 180);
      const dx = (b[1] - a[1]) * kx;
      const dy = b[0] - a[0];
      const len = Math.hypot(dx, dy) || 1;
      const deg = 45 / 111320; // metres to degrees of latitude
      // Right-hand normal of the direction (dx, dy) is (dy, -dx).
      return [ll[0] + (side * -dx * deg) / len, ll[1] + (side * dy * deg) / len / kx];
    });
    // Opaque, so that where two banks' bands overlap nothing darker shows.
    L.polyline(offset, { color: '#c4e0f6', weight: 20, opacity: 1, interactive: false, className: 'river' }).addTo(this.riverLayer);
  }

  /** Keeps the river about 80 m wide on screen at any zoom. */
  sizeRiver() {
    const lat = this.map.getCenter().lat;
    const mpp = (40075016.686 * Math.cos((lat * Math.PI) / 180)) / 2 ** (this.map.getZoom() + 8);
    const w = Math.max(6, Math.min(120, 80 / mpp));
    this.riverLayer.eachLayer((l) => l.setStyle({ weight: w }));
  }

  /** Colours the segments and draws the uncovered pieces from /api/v1/coverage. */
  setCoverage(fc) {
    this.coverage.clear();
    this.uncoveredLayer.clearLayers();
    for (const f of fc.features || []) {
      const p = f.properties;
      this.coverage.set(p.code, p);
      const lines = f.geometry?.type === 'MultiLineString' ? f.geometry.coordinates : [];
      for (const piece of lines) {
        if (piece.length < 2) continue;
        L.polyline(
          piece.map(([lon, lat]) => [lat, lon]),
          { color: '#212121', weight: 3, opacity: 0.9, dashArray: '6 6', interactive: false, className: 'uncovered' },
        ).addTo(this.uncoveredLayer);
      }
    }
    this.restyle();
  }

  restyle() {
    for (const [code, s] of this.segments) {
      const p = this.coverage.get(code);
      const state = coverageState(p);
      s.line.setStyle({ color: STATE_COLOURS[state], dashArray: state === 'nodata' ? '10 6' : null });
      // Leaflet creates the SVG path only once the map has a view: mark it here, not when adding.
      const path = s.line.getElement();
      if (path) {
        path.setAttribute('data-segment', code);
        path.setAttribute('data-state', state);
      }
      s.line.unbindTooltip();
      s.line.bindTooltip(this.segmentTip(s.props, p, state), { sticky: true });
    }
  }

  segmentTip(sp, p, state) {
    const name = sp.name;
    const last = p && p.last_covered
      ? `${fmtTime(p.last_covered)} (${fmtAgo((Date.parse(p.to) || Date.now()) - Date.parse(p.last_covered))})`
      : t('never');
    const ratio = p ? `${Math.round(p.ratio * 100)}%` : '—';
    const interval = p ? `${p.interval_minutes} ${t('minutes')}` : '—';
    return `<b>${esc(sp.code)}</b> ${esc(name)}<br>${esc(sp.start_chainage)}–${esc(sp.end_chainage)}<br>`
      + `<span class="chip state-${state}">${t(`state_${state}`)}</span><br>`
      + `${t('last_covered')}: ${esc(last)}<br>${t('ratio')} (24h): ${ratio} · ${t('interval')}: ${esc(interval)}`;
  }

  /** Open issues as circles sized and coloured by severity; a critical hazard gets a dark ring. */
  setIssues(issues) {
    this.issueLayer.clearLayers();
    for (const i of issues) {
      const m = L.circleMarker([i.location.lat, i.location.lon], {
        radius: 6 + 2 * i.severity,
        color: i.critical ? '#000000' : '#ffffff',
        weight: i.critical ? 3 : 2,
        fillColor: SEVERITY_COLOURS[i.severity] || '#616161',
        fillOpacity: 0.95,
        className: 'issue-marker',
      });
      m.bindTooltip(`${esc(i.category_zh)} ${esc(i.category_en)} · ${esc(i.chainage)}`);
      m.on('click', () => this.onIssue && this.onIssue(i.id));
      m.addTo(this.issueLayer);
      const el = m.getElement();
      if (el) {
        el.setAttribute('data-issue', i.id);
        el.setAttribute('data-severity', String(i.severity));
      }
    }
  }

  /** Depots (GeoJSON points) as square markers, with what they are short of. */
  setDepots(fc, stock) {
    this.depotLayer.clearLayers();
    for (const f of fc.features || []) {
      if (!f.geometry || f.geometry.type !== 'Point') continue;
      const [lon, lat] = f.geometry.coordinates;
      const p = f.properties;
      const lines = (stock || []).filter((s) => s.depot === p.code);
      const short = lines.filter((s) => s.shortfall > 0);
      const icon = L.divIcon({
        className: `depot-icon${short.length ? ' short' : ''}`,
        html: '<span>仓</span>',
        iconSize: [22, 22],
      });
      const m = L.marker([lat, lon], { icon, title: p.name, keyboard: true });
      const rows = short.map((s) => `<li>${esc(s.item_name)}: ${s.on_hand}/${s.quota} (−${s.shortfall})</li>`).join('');
      m.bindPopup(`<b>${esc(p.name)}</b><br>${esc(p.name_en || '')}<br><small>${esc(p.owner)}</small>`
        + (short.length ? `<ul class="short-list">${rows}</ul>` : `<p>${t('no_shortfall')}</p>`));
      m.addTo(this.depotLayer);
    }
  }

  focusSegment(code) {
    const s = this.segments.get(code);
    if (s) this.map.fitBounds(s.line.getBounds(), { padding: [40, 40], maxZoom: 17 });
  }

  invalidate() {
    this.map.invalidateSize();
  }
}

export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
