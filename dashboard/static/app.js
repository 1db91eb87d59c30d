// hvnet dashboard: reads the daemon through the dashboard's read-only
// requests (/api/v1/...) and draws what it finds. Plain JS, no framework;
// every value from the daemon goes into the page as text (textContent),
// never as markup.
//
// For tests and scripts the page states what it has drawn in data-
// attributes: <body data-polls data-samples>, each port row's
// data-rx-bps and data-tx-bps, the FDB table's data-shown, the trace
// result's data-verdict.
'use strict';

const HISTORY = 60;          // samples kept per port: a minute at 1 s
const PORTS_EVERY = 1000;    // ms between polls of the ports' counters
const FDB_EVERY = 5000;
const FLOWS_EVERY = 2000;
const SWITCH_EVERY = 30000;
const FDB_ROWS = 500;        // FDB rows drawn at most; the search narrows
const TOP_FLOWS = 10;

const $ = (sel) => document.querySelector(sel);

// el makes an element with text, and an optional class.
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function getJSON(path, opts) {
  const r = await fetch('api' + path, Object.assign({ cache: 'no-store' }, opts));
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const msg = body && body.error ? body.error : r.status + ' ' + r.statusText;
    throw new Error(msg);
  }
  return body;
}

// Polls run one after another: a slow daemon is not sent a second request
// before it answered the first.
function every(ms, f) {
  const tick = async () => {
    try { await f(); } catch (e) { setStatus('error', e.message); }
    setTimeout(tick, ms);
  };
  tick();
}

function setStatus(state, text) {
  const s = $('#status');
  s.dataset.state = state;
  s.textContent = text;
}

// ---- formatting

function fmtBits(bps) {
  const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
  let i = 0;
  while (bps >= 1000 && i < units.length - 1) { bps /= 1000; i++; }
  return (i === 0 ? bps.toFixed(0) : bps.toFixed(bps < 10 ? 2 : 1)) + ' ' + units[i];
}

function fmtCount(n) {
  n = Number(n) || 0;
  if (n < 10000) return String(n);
  const units = ['k', 'M', 'G', 'T', 'P'];
  let i = -1;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(n < 10 ? 2 : 1) + units[i];
}

function fmtBytes(n) {
  n = Number(n) || 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[i];
}

function fmtAge(ns) {
  const s = (Number(ns) || 0) / 1e9;
  return s < 60 ? s.toFixed(0) + ' s' : (s / 60).toFixed(1) + ' min';
}

// ranges writes a sorted VLAN list compactly: 10-12,20.
function ranges(list) {
  const v = [...list].map(Number).sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < v.length; i++) {
    let j = i;
    while (j + 1 < v.length && v[j + 1] === v[j] + 1) j++;
    out.push(j > i ? v[i] + '-' + v[j] : String(v[i]));
    i = j;
  }
  return out.join(',');
}

// ---- ports

function vlansOf(p) {
  const c = p.config || {};
  switch (c.vlan_mode) {
    case 'trunk': {
      let s = 'trunk ' + (c.trunk && c.trunk.length ? ranges(c.trunk) : '(none)');
      if (c.native) s += ', native ' + c.native;
      return s;
    }
    case 'dot1q-tunnel': return 'S-VLAN ' + (c.vlan || 1);
    default: return 'access ' + (c.vlan || 1);
  }
}

function vnisOf(p) {
  const t = p.tunnel;
  if (!t || !Array.isArray(t.vnis) || !t.vnis.length) return '';
  return t.vnis.map((v) => v.vni + '→' + v.vlan).join(', ');
}

// stateOf sums up a port's backend: a guest's state, a vhost-user
// frontend, a bond's members, a tunnel's neighbours.
function stateOf(p) {
  if (p.guest) {
    const g = p.guest;
    if (g.state === 'exited') return ['exited ' + (g.status ?? '') + (g.error ? ': ' + g.error : ''), g.status === 0 ? '' : 'bad'];
    return [g.state, g.state === 'running' ? 'ok' : ''];
  }
  if (p.bond) {
    const m = p.bond.members || [];
    const up = m.filter((x) => x.carrying).length;
    return [p.bond.mode + ', ' + up + '/' + m.length + ' members carrying', up ? 'ok' : 'bad'];
  }
  if (p.tunnel) {
    const n = p.tunnel.bgp_neighbors || [];
    if (n.length) {
      const est = n.filter((x) => x.state === 'established').length;
      return [est + '/' + n.length + ' BGP established', est === n.length ? 'ok' : 'bad'];
    }
    const vteps = new Set();
    for (const v of p.tunnel.vnis || []) for (const t of v.vteps || []) vteps.add(t);
    return [vteps.size + (vteps.size === 1 ? ' remote VTEP' : ' remote VTEPs'), ''];
  }
  const d = p.device;
  if (d && 'connected' in d) return d.connected ? ['frontend attached', 'ok'] : ['no frontend', 'bad'];
  if (d && 'attaches' in d) return ['attached', 'ok'];
  return ['up', 'ok'];
}

// Per-port history: the last counters seen and the rates computed from
// them, by name.
const hist = new Map();
let samples = 0;
let polls = 0;
let lastPorts = [];

function sample(p, now) {
  const c = p.counters || {};
  let h = hist.get(p.name);
  if (!h) { h = { rx: [], tx: [], last: null }; hist.set(p.name, h); }
  const cur = { t: now, rx: Number(c.rx_bytes) || 0, tx: Number(c.tx_bytes) || 0, drops: c.drops || {} };
  const prev = h.last;
  h.last = cur;
  if (!prev) return;
  const dt = (cur.t - prev.t) / 1000;
  // Counters that went back: the port was removed and added again.
  if (dt <= 0 || cur.rx < prev.rx || cur.tx < prev.tx) return;
  h.rx.push((cur.rx - prev.rx) * 8 / dt);
  h.tx.push((cur.tx - prev.tx) * 8 / dt);
  if (h.rx.length > HISTORY) { h.rx.shift(); h.tx.shift(); }
  h.prev = prev;
  samples++;
}

function drawChart(canvas, h) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 260, ht = canvas.clientHeight || 44;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(ht * dpr); }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, ht);
  const top = Math.max(1000, ...h.rx, ...h.tx);
  g.strokeStyle = '#e5e7eb';
  g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, ht - 0.5); g.lineTo(w, ht - 0.5); g.stroke();
  const line = (vals, color) => {
    if (!vals.length) return;
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    vals.forEach((v, i) => {
      const x = w - (vals.length - 1 - i) * (w / (HISTORY - 1));
      const y = ht - 2 - (v / top) * (ht - 14);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  line(h.rx, '#2563eb');
  line(h.tx, '#ea580c');
  g.fillStyle = '#6b7280';
  g.font = '10px system-ui, sans-serif';
  g.fillText(fmtBits(top), 2, 10);
}

// portRow returns the port's row, made once and kept across polls (its
// canvas keeps its size).
const rows = new Map();
function portRow(name) {
  let r = rows.get(name);
  if (r) return r;
  const tr = el('tr');
  tr.dataset.port = name;
  const cells = {};
  for (const k of ['name', 'kind', 'vlans', 'vnis', 'state', 'in', 'out']) {
    cells[k] = el('td', '', k === 'in' || k === 'out' ? 'num' : (k === 'name' ? 'mono' : ''));
    tr.append(cells[k]);
  }
  const canvas = el('canvas', null, 'chart');
  canvas.setAttribute('aria-label', 'throughput of ' + name);
  const td = el('td');
  td.append(canvas);
  tr.append(td);
  r = { tr, cells, canvas };
  rows.set(name, r);
  return r;
}

function renderPorts(ports) {
  const tbody = $('#ports tbody');
  const seen = new Set();
  const order = [];
  for (const p of ports) {
    seen.add(p.name);
    const r = portRow(p.name);
    const h = hist.get(p.name);
    const rx = h && h.rx.length ? h.rx[h.rx.length - 1] : 0;
    const tx = h && h.tx.length ? h.tx[h.tx.length - 1] : 0;
    const [state, cls] = stateOf(p);
    r.cells.name.textContent = p.name;
    r.cells.kind.textContent = p.kind || '—';
    r.cells.vlans.textContent = vlansOf(p);
    r.cells.vnis.textContent = vnisOf(p);
    r.cells.state.textContent = state;
    r.cells.state.className = cls;
    r.cells.in.textContent = fmtBits(rx);
    const c = p.counters || {};
    r.cells.in.title = fmtCount(c.rx_packets) + ' packets, ' + fmtBytes(c.rx_bytes);
    r.cells.out.textContent = fmtBits(tx);
    r.cells.out.title = fmtCount(c.tx_packets) + ' packets, ' + fmtBytes(c.tx_bytes);
    r.tr.dataset.rxBps = rx.toFixed(0);
    r.tr.dataset.txBps = tx.toFixed(0);
    if (h) drawChart(r.canvas, h);
    order.push(r.tr);
  }
  for (const [name, r] of rows) {
    if (!seen.has(name)) { r.tr.remove(); rows.delete(name); hist.delete(name); }
  }
  tbody.replaceChildren(...order);
  fillTracePorts(ports);
}

function renderDrops(ports) {
  const total = new Map();  // reason -> {n, rate, ports: [[name, n]]}
  for (const p of ports) {
    const h = hist.get(p.name);
    const drops = (p.counters && p.counters.drops) || {};
    for (const [reason, n] of Object.entries(drops)) {
      if (!n) continue;
      let t = total.get(reason);
      if (!t) { t = { n: 0, rate: 0, ports: [] }; total.set(reason, t); }
      t.n += n;
      t.ports.push([p.name, n]);
      if (h && h.prev && h.last) {
        const before = Number(h.prev.drops[reason]) || 0;
        const dt = (h.last.t - h.prev.t) / 1000;
        if (dt > 0 && n >= before) t.rate += (n - before) / dt;
      }
    }
  }
  const tbody = $('#drops tbody');
  const list = [...total.entries()].sort((a, b) => b[1].n - a[1].n);
  tbody.replaceChildren(...list.map(([reason, t]) => {
    const tr = el('tr');
    tr.dataset.reason = reason;
    tr.append(el('td', reason, 'mono'), el('td', fmtCount(t.n), 'num'), el('td', t.rate.toFixed(t.rate < 10 ? 1 : 0), 'num'),
      el('td', t.ports.sort((a, b) => b[1] - a[1]).map(([n, c]) => n + ' ' + fmtCount(c)).join(', ')));
    return tr;
  }));
  $('#drops').hidden = list.length === 0;
  $('#drops-none').hidden = list.length !== 0;
}

async function pollPorts() {
  const ports = await getJSON('/v1/ports');
  const now = performance.now();
  lastPorts = Array.isArray(ports) ? ports : [];
  for (const p of lastPorts) sample(p, now);
  renderPorts(lastPorts);
  renderDrops(lastPorts);
  polls++;
  document.body.dataset.polls = polls;
  document.body.dataset.samples = samples;
  setStatus('ok', lastPorts.length + ' ports · updated ' + new Date().toLocaleTimeString());
}

// ---- switch

async function pollSwitch() {
  const s = await getJSON('/v1/switch');
  const parts = [];
  if (s.version) parts.push(s.version);
  if (s.revision) parts.push(String(s.revision).slice(0, 12));
  if (s.aging) parts.push('aging ' + s.aging);
  $('#build').textContent = parts.join(' · ');
}

// ---- FDB

let fdb = [];

async function pollFDB() {
  const f = await getJSON('/v1/fdb');
  fdb = Array.isArray(f) ? f : [];
  renderFDB();
}

function renderFDB() {
  const q = $('#fdb-search').value.trim().toLowerCase();
  const terms = q ? q.split(/\s+/) : [];
  const match = (e) => {
    const hay = [e.mac, 'vlan ' + e.vlan, String(e.vlan), e.port, e.vtep || '', e.static ? 'static' : 'learned'].join(' ').toLowerCase();
    return terms.every((t) => hay.includes(t));
  };
  const found = fdb.filter(match);
  found.sort((a, b) => (a.vlan - b.vlan) || String(a.mac).localeCompare(String(b.mac)));
  const shown = found.slice(0, FDB_ROWS);
  $('#fdb tbody').replaceChildren(...shown.map((e) => {
    const tr = el('tr');
    tr.append(el('td', e.mac), el('td', e.vlan, 'num'), el('td', e.port), el('td', e.static ? '' : fmtAge(e.age_ns), 'num'),
      el('td', e.static ? 'static' : (e.pinned ? 'pinned' : 'learned')), el('td', e.vtep || ''));
    return tr;
  }));
  $('#fdb').dataset.shown = shown.length;
  $('#fdb').dataset.matched = found.length;
  let c = found.length + ' of ' + fdb.length + ' entries';
  if (found.length > shown.length) c += ' (first ' + shown.length + ' shown: narrow the search)';
  $('#fdb-count').textContent = c;
}

// ---- flows

// The flow cache's answer is read loosely: a list of flows, or an object
// with one under "flows" (and "enabled": false when export is off). A
// flow's fields are the IPFIX record's, under the names below or their
// obvious variants; whatever is missing is left blank.
function pick(o, ...keys) {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null && o[k] !== '') return o[k];
  return undefined;
}

// IANA protocol numbers the API gives, by their names.
const PROTOCOLS = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp', 132: 'sctp' };

function flowText(f) {
  let proto = pick(f, 'protocol', 'proto', 'ip_protocol');
  if (typeof proto === 'number') proto = PROTOCOLS[proto] ?? String(proto);
  const sip = pick(f, 'src_ip', 'src_addr', 'source_ip');
  const dip = pick(f, 'dst_ip', 'dst_addr', 'destination_ip');
  const sp = pick(f, 'src_port', 'source_port');
  const dp = pick(f, 'dst_port', 'destination_port');
  const end = (ip, port) => (String(ip).includes(':') && port !== undefined ? '[' + ip + ']' : ip) + (port !== undefined ? ':' + port : '');
  if (sip !== undefined || dip !== undefined) {
    return end(sip ?? '?', sp) + ' → ' + end(dip ?? '?', dp) + (proto !== undefined ? ' ' + proto : '');
  }
  return (pick(f, 'src_mac') ?? '?') + ' → ' + (pick(f, 'dst_mac') ?? '?') + (pick(f, 'ethertype') ? ' ' + f.ethertype : '');
}

async function pollFlows() {
  const note = $('#flows-note');
  let a;
  try {
    a = await getJSON('/v1/flows?limit=' + TOP_FLOWS);
  } catch (e) {
    note.textContent = 'Flows unavailable: ' + e.message;
    note.hidden = false;
    $('#flows').hidden = true;
    return;
  }
  const list = Array.isArray(a) ? a : (a && (a.flows || a.top)) || [];
  const off = a && !Array.isArray(a) && a.enabled === false;
  $('#flows-section').dataset.enabled = off ? 'false' : 'true';
  if (off || !list.length) {
    note.textContent = off ? 'Flow export is off.' : 'No flows in the cache.';
    note.hidden = false;
    $('#flows').hidden = true;
    return;
  }
  note.hidden = true;
  const bytes = (f) => Number(pick(f, 'bytes', 'octets', 'octet_delta_count')) || 0;
  const top = [...list].sort((x, y) => bytes(y) - bytes(x)).slice(0, TOP_FLOWS);
  $('#flows tbody').replaceChildren(...top.map((f) => {
    const vlan = pick(f, 'vlan', 'vlan_id');
    const vni = pick(f, 'vni');
    const inp = pick(f, 'in', 'in_port', 'ingress_port', 'input');
    // The API leaves "out" out for a flooded frame.
    const outp = pick(f, 'out', 'out_port', 'egress_port', 'output') ??
      (f.in !== undefined && !Array.isArray(f.out_ports) ? 'flood' : undefined);
    const tr = el('tr');
    tr.append(el('td', flowText(f), 'mono'),
      el('td', [vlan !== undefined ? 'VLAN ' + vlan : '', vni !== undefined ? 'VNI ' + vni : ''].filter(Boolean).join(' · ')),
      el('td', (inp ?? '?') + ' → ' + (outp ?? (Array.isArray(f.out_ports) ? f.out_ports.join(',') : '?'))),
      el('td', fmtCount(pick(f, 'packets', 'pkts', 'packet_delta_count') || 0), 'num'),
      el('td', fmtBytes(bytes(f)), 'num'));
    return tr;
  }));
  $('#flows').hidden = false;
}

// ---- trace

let tracePorts = '';
function fillTracePorts(ports) {
  const names = ports.map((p) => p.name);
  const key = names.join('\n');
  if (key === tracePorts) return;
  tracePorts = key;
  const sel = $('#trace-in');
  const keep = sel.value;
  sel.replaceChildren(...names.map((n) => el('option', n)));
  if (names.includes(keep)) sel.value = keep;
}

function traceRequest(form) {
  const req = {};
  for (const [k, v] of new FormData(form)) {
    const s = String(v).trim();
    if (s === '') continue;
    req[k] = (k === 'vlan' || k === 'dst_port') ? Number(s) : s;
  }
  return req;
}

function renderTrace(res) {
  const out = $('#trace-result');
  const outs = res.outputs || [];
  let verdict, text, cls;
  if (res.drop) {
    verdict = 'drop:' + res.drop; text = 'Dropped: ' + res.drop; cls = 'bad';
  } else if (!outs.length) {
    verdict = 'none'; text = 'Leaves by no port'; cls = 'bad';
  } else {
    verdict = res.flooded ? 'flood' : 'forward';
    text = (res.flooded ? 'Flooded to ' : 'Forwarded to ') +
      outs.map((o) => o.port + (o.tagged ? ' (tagged ' + o.vlan + ')' : ' (untagged)')).join(', ');
    cls = 'ok';
  }
  out.dataset.verdict = verdict;
  const ol = el('ol');
  for (const s of res.steps || []) {
    ol.append(el('li', s.stage + ': ' + s.verdict + (s.detail ? ' — ' + s.detail : '')));
  }
  const parts = [el('p', text, 'verdict ' + cls)];
  if (res.vlan !== undefined) parts.push(el('p', 'In VLAN ' + res.vlan + ' on ' + res.in_port + '.', 'hint'));
  parts.push(ol);
  for (const d of res.egress_denied || []) {
    parts.push(el('p', 'Denied on the way out of ' + d.port + ': ' + d.reason + (d.rule ? ' (rule ' + d.rule + ')' : ''), 'bad'));
  }
  out.replaceChildren(...parts);
}

async function submitTrace(ev) {
  ev.preventDefault();
  const out = $('#trace-result');
  out.dataset.verdict = 'pending';
  try {
    const res = await getJSON('/v1/trace', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(traceRequest(ev.target)),
    });
    renderTrace(res);
  } catch (e) {
    out.dataset.verdict = 'error';
    out.replaceChildren(el('p', 'Trace refused: ' + e.message, 'bad'));
  }
}

// ---- start

document.addEventListener('DOMContentLoaded', () => {
  $('#fdb-search').addEventListener('input', renderFDB);
  $('#trace-form').addEventListener('submit', submitTrace);
  every(SWITCH_EVERY, pollSwitch);
  every(PORTS_EVERY, pollPorts);
  every(FDB_EVERY, pollFDB);
  every(FLOWS_EVERY, pollFlows);
});
