// Fathom's web console: plain modern JavaScript, no build step. `fathom serve` embeds this folder
// and serves it at /console. Every call it makes is a documented REST call (docs/API.md) with the
// API key the user gives it, which stays in this tab's session storage.
//
// Views (hash routes): #/ collections, #/c/NAME/points|map|search|info, #/c/NAME/p/ID a point and
// its neighbours, #/health live charts from /metrics.

const KEY_STORAGE = 'fathom-api-key';
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || '',
  access: null,          // 'read_write' | 'read_only' | null (unknown: no valid key yet)
  keyRequired: false,
  infos: new Map(),      // collection name -> GET /collections/{name} result
  stopTimers: [],        // cleanup for the current view (polling)
};
const canWrite = () => state.access === 'read_write';

// ---------------------------------------------------------------------------------------------
// DOM helpers: elements are built with textContent and properties only, so payload values and
// server messages can never become markup.

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k in el && !k.includes('-')) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
function formatBytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
const formatMs = (ms) => (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)) + ' ms';
const formatNumber = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'));
function formatValue(v) {
  if (v === null) return 'null';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
const enc = encodeURIComponent;
// Point ids are unsigned integers or strings; the URL holds them as text.
const parseId = (text) => (/^\d+$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : text);

// ---------------------------------------------------------------------------------------------
// REST calls

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = {};
  const key = state.key;
  if (key) headers['api-key'] = key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const t0 = performance.now();
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server: ${e.message}`);
  }
  const text = await res.text();
  const ms = performance.now() - t0;
  let json = null;
  try { json = JSON.parse(text); } catch { /* /metrics is text */ }
  if (!res.ok) {
    const message = (json && json.status && json.status.error) || text || res.statusText;
    // A refusal of a key this tab has since replaced (forget, then a new key typed before the
    // old request came back) says nothing about the key now in use.
    if (res.status === 401 && key === state.key) onUnauthorized(message);
    throw new ApiError(res.status, message);
  }
  return { result: json && 'result' in json ? json.result : json ?? text, ms, serverMs: json && json.time ? json.time * 1e3 : null };
}
const collectionPath = (name) => `/collections/${enc(name)}`;

async function collectionInfo(name, fresh = false) {
  if (!fresh && state.infos.has(name)) return state.infos.get(name);
  const { result } = await api('GET', collectionPath(name));
  state.infos.set(name, result);
  return result;
}
// The vector spaces of a collection: [{name: '' | 'image', size, distance, index, on_disk}].
function vectorSpaces(info) {
  const v = (info.config && info.config.params && info.config.params.vectors) || (info.config && info.config.vectors) || {};
  if (typeof v.size === 'number') return [{ name: '', ...v }];
  return Object.entries(v).map(([name, spec]) => ({ name, ...spec }));
}
// A point's vector in space `space` ('' for an unnamed vector).
function vectorOf(point, space) {
  const v = point.vector;
  if (!v) return null;
  if (Array.isArray(v)) return v;
  return v[space] || null;
}
const queryVector = (space, vector) => (space ? { name: space, vector } : vector);
// The collection's metadata (Qdrant's collection metadata: {model: {name, version, dimension},
// image_field, description, ...}), or {}.
const metadataOf = (info) => (info.config && info.config.metadata) || {};
const modelText = (model) => (model ? [model.name, model.version].filter(Boolean).join(' ') : '');

// ---------------------------------------------------------------------------------------------
// Access: which key, and what it may do

function setBadge() {
  const badge = $('#access-badge');
  badge.classList.toggle('ro', state.access === 'read_only');
  if (state.access === null) badge.textContent = 'no key';
  else if (!state.keyRequired) badge.textContent = 'open (no API key)';
  else badge.textContent = state.access === 'read_only' ? 'read-only key' : 'read-write key';
  $('#key-button').hidden = !state.keyRequired && state.access !== null;
}

async function checkAccess() {
  const key = state.key;
  try {
    const { result } = await api('GET', '/access');
    if (key !== state.key) return state.access !== null;  // answered for a replaced key
    state.access = result.access;
    state.keyRequired = result.api_key_required;
  } catch (e) {
    if (key !== state.key) return state.access !== null;
    state.access = null;
    state.keyRequired = true;
    if (e.status !== 401) showError($('#view'), e);
  }
  setBadge();
  return state.access !== null;
}

let keyPromptOpen = false;
function onUnauthorized(message) {
  if (keyPromptOpen) return;
  state.access = null;
  setBadge();
  openKeyDialog(state.key ? `The key was refused: ${message}` : 'This server needs an API key. It is kept only in this tab (session storage).');
}
function openKeyDialog(message) {
  const dialog = $('#key-dialog');
  $('#key-message').textContent = message;
  $('#key-input').value = '';
  keyPromptOpen = true;
  if (!dialog.open) dialog.showModal();
}
function setupKeyDialog() {
  const dialog = $('#key-dialog');
  dialog.addEventListener('close', () => { keyPromptOpen = false; });
  $('#key-button').addEventListener('click', () => openKeyDialog('The key is kept only in this tab (session storage).'));
  $('#key-cancel').addEventListener('click', () => dialog.close());
  $('#key-forget').addEventListener('click', async () => {
    state.key = '';
    sessionStorage.removeItem(KEY_STORAGE);
    dialog.close();
    await checkAccess();
    render();
  });
  $('#key-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    state.key = $('#key-input').value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    dialog.close();
    keyPromptOpen = false;  // so a refusal of this key asks again ('close' fires later)
    state.infos.clear();
    if (await checkAccess()) render();
  });
}

// ---------------------------------------------------------------------------------------------
// Pictures: a payload field holding an image (URL or base64 PNG), else vectors that are pixels.

const IMAGE_FIELD_NAMES = ['image', 'image_url', 'thumbnail', 'picture', 'img', 'url'];
function imageSource(value) {
  if (typeof value !== 'string' || value.length < 8) return null;
  if (/^data:image\//.test(value) || /^https?:\/\//.test(value) || value.startsWith('/')) return value;
  if (/^iVBORw0KGgo[A-Za-z0-9+/=]+$/.test(value)) return `data:image/png;base64,${value}`;
  if (/^\/9j\/[A-Za-z0-9+/=]+$/.test(value)) return `data:image/jpeg;base64,${value}`;
  return null;
}
// How a collection's points are drawn: {kind: 'field', field} | {kind: 'pixels', side, channels} |
// {kind: 'none'}, decided from the collection and a sample of its points, remembered per tab.
const pictureModes = new Map();
function pictureMode(name, info, sample, space) {
  const key = `${name}\u0000${space}`;
  if (pictureModes.has(key)) return pictureModes.get(key);
  let mode = { kind: 'none' };
  const chosen = metadataOf(info).image_field || sessionStorage.getItem(`fathom-image-field:${name}`);
  const fields = new Set();
  for (const p of sample) for (const k of Object.keys(p.payload || {})) fields.add(k);
  const isImageField = (f) => sample.some((p) => imageSource((p.payload || {})[f]));
  if (chosen && fields.has(chosen)) mode = { kind: 'field', field: chosen };
  else {
    const named = [...fields].find((f) => IMAGE_FIELD_NAMES.includes(f.toLowerCase()) && isImageField(f)) ||
                  [...fields].find((f) => sample.some((p) => /^data:image\//.test(String((p.payload || {})[f]))));
    if (named) mode = { kind: 'field', field: named };
  }
  if (mode.kind === 'none') {
    const spec = vectorSpaces(info).find((s) => s.name === space);
    const dim = spec ? spec.size : 0;
    const vectors = sample.map((p) => vectorOf(p, space)).filter(Boolean);
    // Pixels are never negative; a grey image is a square, a colour one three squares (planar).
    const nonNegative = vectors.length > 0 && vectors.every((v) => v.every((x) => x >= 0));
    for (const channels of [1, 3]) {
      const side = Math.round(Math.sqrt(dim / channels));
      if (nonNegative && side >= 8 && side * side * channels === dim) { mode = { kind: 'pixels', side, channels }; break; }
    }
  }
  pictureModes.set(key, mode);
  return mode;
}
function drawPixels(vector, mode, cls) {
  const { side, channels } = mode;
  const canvas = h('canvas', { class: `pixels ${cls}`, width: side, height: side, 'data-picture': 'pixels' });
  let max = 0;
  for (const x of vector) max = Math.max(max, x);
  const scale = max <= 1 ? 255 : max <= 255 ? 1 : 255 / max;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(side, side);
  const plane = side * side;
  for (let i = 0; i < plane; ++i) {
    for (let c = 0; c < 3; ++c) img.data[i * 4 + c] = vector[channels === 3 ? c * plane + i : i] * scale;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
// The picture of a point, or null.
function picture(point, mode, space, cls = 'thumb') {
  if (mode.kind === 'field') {
    const src = imageSource((point.payload || {})[mode.field]);
    return src ? h('img', { class: cls, src, alt: `point ${point.id}`, 'data-picture': 'field' }) : null;
  }
  if (mode.kind === 'pixels') {
    const v = vectorOf(point, space);
    return v ? drawPixels(v, mode, cls) : null;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Views

function showError(container, error) {
  container.append(h('p', { class: 'error', role: 'alert', text: error.message || String(error) }));
}
let renderToken = 0;
async function render() {
  const token = ++renderToken;
  for (const stop of state.stopTimers.splice(0)) stop();
  const view = $('#view');
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter((p) => p !== '').map(decodeURIComponent);
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('current', a.dataset.nav === (parts[0] === 'health' ? 'health' : 'collections'));
  }
  view.replaceChildren(h('p', { class: 'muted', text: 'Loading…' }));
  const stale = () => token !== renderToken;
  const content = h('div');
  try {
    if (state.access === null && !(await checkAccess())) {
      if (stale()) return;  // a newer render (e.g. after a key was entered) owns the view
      view.replaceChildren(h('p', { class: 'muted', text: 'Enter an API key to continue.' }),
                           h('button', { type: 'button', text: 'Enter API key', onclick: () => openKeyDialog('This server needs an API key.') }));
      return;
    }
    if (parts[0] === 'health') await healthView(content, stale);
    else if (parts[0] === 'c' && parts[1] && parts[2] === 'p' && parts[3] !== undefined) await pointView(content, parts[1], parseId(parts[3]), stale);
    else if (parts[0] === 'c' && parts[1]) await collectionView(content, parts[1], parts[2] || 'points', stale);
    else await collectionsView(content, stale);
  } catch (e) {
    if (stale()) return;
    showError(content, e);
  }
  if (stale()) return;
  view.replaceChildren(content);
}

// --- Collections ------------------------------------------------------------------------------

function recallEstimate(name) {
  try { return JSON.parse(sessionStorage.getItem(`fathom-recall:${name}`)); } catch { return null; }
}
// What the list shows for recall: the server's online estimate (a share of live searches re-run
// exactly) once it rests on 100 samples, else this tab's last measurement, else a thinner online
// estimate. {value, title} or null.
function recallShown(name, info) {
  const live = info.recall_estimate && info.recall_estimate.samples > 0 ? info.recall_estimate : null;
  const liveShown = live && {
    value: live.recall,
    title: `online estimate: ${live.samples} sampled live searches re-run exactly${live.from_store ? ' (before the last restart)' : ''}`,
  };
  const mine = recallEstimate(name);
  const mineShown = mine && { value: mine.value, title: `recall@${mine.k} of the index vs exact search, ${mine.queries} sample queries (this tab)` };
  if (live && live.samples >= 100) return liveShown;
  return mineShown || liveShown || null;
}

async function collectionsView(root, stale) {
  const { result } = await api('GET', '/collections');
  const names = result.collections.map((c) => c.name).sort();
  const infos = await Promise.all(names.map((n) => collectionInfo(n, true).catch((e) => ({ error: e.message }))));
  if (stale()) return;
  root.append(h('div', { class: 'row' }, h('h1', { text: 'Collections' }), h('span', { class: 'spacer' }),
                canWrite() ? h('button', { type: 'button', 'data-testid': 'create', text: 'Create collection', onclick: () => createDialog() }) : null));
  if (names.length === 0) {
    root.append(h('p', { class: 'muted', text: 'No collections yet.' }));
    return;
  }
  const rows = names.map((name, i) => {
    const info = infos[i];
    if (info.error) return h('tr', {}, h('td', { text: name }), h('td', { colSpan: 8, class: 'error', text: info.error }));
    const spaces = vectorSpaces(info);
    const recall = recallShown(name, info);
    const meta = metadataOf(info);
    const model = meta.model;
    return h('tr', { 'data-collection': name },
      h('td', {}, h('a', { href: `#/c/${enc(name)}/points`, text: name })),
      h('td', { class: 'num', 'data-testid': 'points-count', text: formatNumber(info.points_count) }),
      h('td', { class: 'num', text: spaces.map((s) => s.size).join(', ') }),
      h('td', { text: spaces.map((s) => s.distance).join(', ') }),
      h('td', { class: 'mono', text: spaces.map((s) => (s.name ? `${s.name}: ` : '') + (s.index || '')).join(', ') }),
      h('td', { class: 'num', text: formatBytes(info.memory_bytes) }),
      h('td', { title: meta.description || null, text: modelText(model) || '—' }),
      h('td', { class: 'num', title: recall ? recall.title : 'not measured yet (Info tab: Estimate recall)',
               text: recall ? recall.value.toFixed(3) : '—' }),
      canWrite() ? h('td', {}, h('button', { type: 'button', class: 'danger', 'data-testid': 'drop', text: 'Drop', onclick: () => dropDialog(name) })) : null);
  });
  root.append(h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'collections' },
    h('thead', {}, h('tr', {}, ['Name', 'Points', 'Dim', 'Metric', 'Index', 'Memory', 'Model', 'Recall', canWrite() ? '' : null]
      .filter((t) => t !== null).map((t, i) => h('th', { class: i >= 1 && i <= 2 || i === 5 || i === 7 ? 'num' : '', text: t }))) ),
    h('tbody', {}, rows))));
}

function modal(title, body, confirmLabel, onConfirm, danger = false) {
  const error = h('p', { class: 'error', role: 'alert' });
  const confirm = h('button', { type: 'submit', class: danger ? 'danger' : '', text: confirmLabel });
  const dialog = h('dialog', { 'aria-label': title },
    h('form', { method: 'dialog' }, h('h2', { text: title }), body, error,
      h('div', { class: 'row' }, confirm, h('button', { type: 'button', class: 'ghost', text: 'Cancel', onclick: () => dialog.close() }))));
  dialog.addEventListener('close', () => dialog.remove());
  dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    confirm.disabled = true;
    error.textContent = '';
    try {
      await onConfirm();
      dialog.close();
      render();
    } catch (e) {
      error.textContent = e.message;
      confirm.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

function createDialog() {
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9_.\\-]+', placeholder: 'images' });
  const dim = h('input', { name: 'dim', type: 'number', min: 1, max: 65536, value: 128, required: true });
  const distance = h('select', { name: 'distance' }, ['Cosine', 'Euclid', 'Dot', 'Manhattan'].map((d) => h('option', { text: d })));
  const index = h('input', { name: 'index', value: 'HNSW32', placeholder: 'HNSW32,SQ8' });
  modal('Create collection', [h('label', {}, 'Name', name), h('label', {}, 'Dimension', dim), h('label', {}, 'Distance', distance),
    h('label', {}, 'Index (factory string)', index)], 'Create', async () => {
    await api('PUT', collectionPath(name.value), { vectors: { size: Number(dim.value), distance: distance.value, index: index.value } });
  });
}

function dropDialog(name) {
  const input = h('input', { 'aria-label': 'collection name', autocomplete: 'off', required: true });
  modal(`Drop ${name}?`, [h('p', { text: `This deletes the collection and all its points. Type "${name}" to confirm.` }), input], 'Drop', async () => {
    if (input.value !== name) throw new Error(`type "${name}" exactly to drop it`);
    await api('DELETE', collectionPath(name));
    state.infos.delete(name);
  }, true);
}

// --- One collection ---------------------------------------------------------------------------

const TABS = [['points', 'Points'], ['map', 'Map'], ['search', 'Search'], ['info', 'Info']];
const viewState = new Map();  // per collection: filter, page offsets, page size, vector space
function collectionState(name, info) {
  if (!viewState.has(name)) viewState.set(name, { filter: '', offsets: [null], page: 0, pageSize: 20, space: vectorSpaces(info)[0]?.name ?? '' });
  return viewState.get(name);
}

async function collectionView(root, name, tab, stale) {
  const info = await collectionInfo(name, true);
  const cs = collectionState(name, info);
  const spaces = vectorSpaces(info);
  const meta = metadataOf(info);
  root.append(h('div', { class: 'row' }, h('h1', { text: name }), h('span', { class: 'muted', text: `${formatNumber(info.points_count)} points` }),
    meta.model ? h('span', { class: 'badge', 'data-testid': 'model', title: JSON.stringify(meta.model), text: modelText(meta.model) }) : null,
    h('span', { class: 'spacer' }),
    spaces.length > 1 ? h('label', {}, 'Vector', h('select', { onchange: (e) => { cs.space = e.target.value; render(); } },
      spaces.map((s) => h('option', { value: s.name, text: s.name, selected: s.name === cs.space })))) : null));
  if (meta.description) root.append(h('p', { class: 'muted', 'data-testid': 'description', text: meta.description }));
  root.append(h('nav', { class: 'tabs', 'aria-label': 'Collection' },
    TABS.map(([id, label]) => h('a', { href: `#/c/${enc(name)}/${id}`, class: id === tab ? 'current' : '', 'aria-current': id === tab ? 'page' : null, text: label }))));
  if (tab === 'map') await mapTab(root, name, info, cs, stale);
  else if (tab === 'search') await searchTab(root, name, info, cs);
  else if (tab === 'info') infoTab(root, name, info, cs);
  else await pointsTab(root, name, info, cs, stale);
}

async function scrollPage(name, cs, offset, limit, withVector = true) {
  const body = { limit, with_payload: true, with_vector: withVector ? (cs.space ? [cs.space] : true) : false };
  if (offset !== null && offset !== undefined) body.offset = offset;
  if (cs.filter) body.filter = cs.filter;
  return (await api('POST', `${collectionPath(name)}/points/scroll`, body)).result;
}

async function pointsTab(root, name, info, cs, stale) {
  const filterInput = h('input', { class: 'grow mono', 'data-testid': 'filter', value: cs.filter, 'aria-label': 'filter',
    placeholder: "text filter, e.g. label = 3 AND split = 'test'" });
  const filterError = h('p', { class: 'error', role: 'alert', 'data-testid': 'filter-error' });
  const body = h('div');
  const form = h('form', { class: 'row panel', onsubmit: async (e) => {
    e.preventDefault();
    const previous = cs.filter;
    cs.filter = filterInput.value.trim();
    cs.offsets = [null];
    cs.page = 0;
    filterError.textContent = '';
    try {
      await loadPage();
    } catch (err) {
      filterError.textContent = err.message;
      cs.filter = previous;
    }
  } }, filterInput, h('button', { type: 'submit', 'data-testid': 'apply-filter', text: 'Filter' }),
  h('button', { type: 'button', class: 'ghost', text: 'Clear', onclick: () => { filterInput.value = ''; form.requestSubmit(); } }));
  root.append(form, filterError, body);

  async function loadPage() {
    const countBody = { exact: true };
    if (cs.filter) countBody.filter = cs.filter;
    const [page, count] = await Promise.all([scrollPage(name, cs, cs.offsets[cs.page], cs.pageSize),
                                             api('POST', `${collectionPath(name)}/points/count`, countBody)]);
    if (page.next_page_offset !== null && page.next_page_offset !== undefined) cs.offsets[cs.page + 1] = page.next_page_offset;
    else cs.offsets.length = cs.page + 1;
    drawTable(page.points, count.result.count, page.next_page_offset);
  }
  function drawTable(points, total, next) {
    const mode = pictureMode(name, info, points, cs.space);
    const fields = [];
    for (const p of points) for (const k of Object.keys(p.payload || {})) if (!fields.includes(k) && fields.length < 8) fields.push(k);
    const rows = points.map((p) => h('tr', { 'data-id': String(p.id) },
      h('td', { class: 'mono' }, h('a', { href: `#/c/${enc(name)}/p/${enc(String(p.id))}`, text: String(p.id) })),
      mode.kind !== 'none' ? h('td', {}, picture(p, mode, cs.space)) : null,
      fields.map((f) => h('td', { class: 'payload', text: p.payload && f in p.payload ? formatValue(p.payload[f]) : '' }))));
    const first = cs.page * cs.pageSize;
    const pageSize = h('select', { 'aria-label': 'page size', onchange: (e) => { cs.pageSize = Number(e.target.value); cs.offsets = [null]; cs.page = 0; loadPage().catch(showErr); } },
      [10, 20, 50, 100].map((n) => h('option', { value: n, text: `${n} per page`, selected: n === cs.pageSize })));
    body.replaceChildren(
      h('p', { class: 'stats', 'data-testid': 'match-count', text: `${formatNumber(total)} point${total === 1 ? '' : 's'} ${cs.filter ? 'match' : 'in total'}` }),
      h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'points' },
        h('thead', {}, h('tr', {}, h('th', { text: 'ID' }), mode.kind !== 'none' ? h('th', { text: 'Picture' }) : null, fields.map((f) => h('th', { text: f })))),
        h('tbody', {}, rows))),
      h('div', { class: 'pager' },
        h('button', { type: 'button', class: 'ghost', 'data-testid': 'prev', text: '← Previous', disabled: cs.page === 0,
          onclick: () => { cs.page -= 1; loadPage().catch(showErr); } }),
        h('span', { 'data-testid': 'page', text: points.length ? `${formatNumber(first + 1)}–${formatNumber(first + points.length)}` : 'no points' }),
        h('button', { type: 'button', class: 'ghost', 'data-testid': 'next', text: 'Next →', disabled: next === null || next === undefined,
          onclick: () => { cs.page += 1; loadPage().catch(showErr); } }),
        h('span', { class: 'spacer' }), pageSize));
  }
  const showErr = (e) => { filterError.textContent = e.message; };
  try {
    await loadPage();
  } catch (e) {
    if (stale()) return;
    // A filter kept from before that no longer parses (the schema changed): say so, show all.
    if (cs.filter && e.status === 400) {
      filterError.textContent = e.message;
      cs.filter = '';
      await loadPage();
    } else {
      throw e;
    }
  }
}

// --- A point and its neighbours ---------------------------------------------------------------

function vectorSummary(v) {
  let min = Infinity, max = -Infinity, sum = 0, sq = 0, nonzero = 0;
  for (const x of v) { min = Math.min(min, x); max = Math.max(max, x); sum += x; sq += x * x; if (x !== 0) ++nonzero; }
  const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toPrecision(4));
  return [['dimension', v.length], ['min', fmt(min)], ['max', fmt(max)], ['mean', fmt(sum / v.length)], ['L2 norm', fmt(Math.sqrt(sq))],
          ['non-zero', nonzero], ['first values', v.slice(0, 8).map(fmt).join(', ') + (v.length > 8 ? ', …' : '')]];
}
function vectorPlot(v) {
  const w = 320, hgt = 60;
  const canvas = h('canvas', { width: w, height: hgt, class: 'plot', 'aria-label': 'vector values' });
  const ctx = canvas.getContext('2d');
  let min = Math.min(0, ...v), max = Math.max(0, ...v);
  if (max === min) max = min + 1;
  ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#2456c8';
  const bw = w / v.length;
  const zero = hgt - ((0 - min) / (max - min)) * hgt;
  for (let i = 0; i < v.length; ++i) {
    const y = hgt - ((v[i] - min) / (max - min)) * hgt;
    ctx.fillRect(i * bw, Math.min(y, zero), Math.max(bw, 1), Math.abs(zero - y) || 1);
  }
  return canvas;
}

async function pointView(root, name, id, stale) {
  const info = await collectionInfo(name);
  const cs = collectionState(name, info);
  const { result: point } = await api('GET', `${collectionPath(name)}/points/${enc(String(id))}`);
  if (stale()) return;
  const mode = pictureMode(name, info, [point], cs.space);
  const vector = vectorOf(point, cs.space);
  root.append(h('p', {}, h('a', { href: `#/c/${enc(name)}/points`, text: `← ${name}` })),
              h('h1', { text: `Point ${point.id}` }));
  const payloadList = h('dl', { class: 'kv', 'data-testid': 'payload' },
    Object.entries(point.payload || {}).map(([k, v]) => [h('dt', { text: k }), h('dd', { text: formatValue(v) })]));
  root.append(h('div', { class: 'detail panel', 'data-testid': 'detail' },
    h('div', {}, picture(point, mode, cs.space, 'big') || h('p', { class: 'muted', text: 'no picture' })),
    h('div', {}, h('h2', { text: 'Payload' }), Object.keys(point.payload || {}).length ? payloadList : h('p', { class: 'muted', text: 'none' }),
      vector ? [h('h2', { text: `Vector${cs.space ? ` "${cs.space}"` : ''}` }), h('dl', { class: 'kv', 'data-testid': 'vector-summary' },
        vectorSummary(vector).map(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v) })])), vectorPlot(vector)] : null)));
  if (!vector) return;
  const panel = neighboursPanel(name, info, cs, { vector, selfId: point.id, title: 'Similar points' });
  root.append(panel.element);
  panel.run();
}

// Search controls and a grid of results: approximate search at the chosen ef, the same search
// exact, and how many ids they share; + / − picks feed a recommend call.
function neighboursPanel(name, info, cs, { vector, selfId, title }) {
  const k = h('input', { type: 'number', min: 1, max: 100, value: 10, 'aria-label': 'k', 'data-testid': 'k' });
  const ef = h('input', { type: 'number', min: 1, max: 4096, value: 64, 'aria-label': 'ef', 'data-testid': 'ef' });
  const filter = h('input', { class: 'grow mono', value: cs.filter, placeholder: 'optional filter', 'aria-label': 'search filter' });
  const stats = h('p', { class: 'stats', 'data-testid': 'search-stats' });
  const error = h('p', { class: 'error', role: 'alert' });
  const grid = h('div', { class: 'grid', 'data-testid': 'results' });
  const votes = new Map();  // id -> +1 / -1
  if (selfId !== undefined) votes.set(selfId, 1);
  const recommendButton = h('button', { type: 'button', class: 'ghost', 'data-testid': 'recommend', text: 'Recommend from picks', onclick: () => recommend() });
  const searchButton = h('button', { type: 'button', 'data-testid': 'similar', text: 'Find similar', onclick: () => run() });
  const element = h('section', { class: 'panel' }, h('h2', { text: title }),
    h('div', { class: 'row' }, h('label', {}, 'k', k), h('label', {}, 'ef', ef), filter, searchButton, recommendButton), stats, error, grid);

  function baseBody() {
    const body = { limit: Number(k.value), with_payload: true, with_vector: true };
    if (filter.value.trim()) body.filter = filter.value.trim();
    return body;
  }
  async function run() {
    error.textContent = '';
    searchButton.disabled = true;
    try {
      const body = { ...baseBody(), vector: queryVector(cs.space, vector), params: { hnsw_ef: Number(ef.value) } };
      const approx = await api('POST', `${collectionPath(name)}/points/search`, body);
      const exact = await api('POST', `${collectionPath(name)}/points/search`,
        { ...body, with_vector: false, with_payload: false, params: { exact: true } });
      const exactIds = new Set(exact.result.map((p) => String(p.id)));
      const shared = approx.result.filter((p) => exactIds.has(String(p.id))).length;
      stats.textContent = `approximate (ef ${ef.value}): ${formatMs(approx.ms)} (server ${formatMs(approx.serverMs)}) · ` +
        `exact: ${formatMs(exact.ms)} (server ${formatMs(exact.serverMs)}) · ` +
        `same ids as exact: ${shared} of ${exact.result.length}`;
      stats.dataset.overlap = String(shared);
      drawGrid(approx.result);
    } catch (e) {
      error.textContent = e.message;
    } finally {
      searchButton.disabled = false;
    }
  }
  async function recommend() {
    const positive = [...votes].filter(([, v]) => v > 0).map(([id]) => id);
    const negative = [...votes].filter(([, v]) => v < 0).map(([id]) => id);
    error.textContent = '';
    if (positive.length === 0) { error.textContent = 'pick at least one point with +'; return; }
    try {
      const body = { ...baseBody(), positive, negative, params: { hnsw_ef: Number(ef.value) } };
      if (cs.space) body.using = cs.space;
      const r = await api('POST', `${collectionPath(name)}/points/recommend`, body);
      stats.textContent = `recommend (${positive.length} positive, ${negative.length} negative): ${formatMs(r.ms)} (server ${formatMs(r.serverMs)})`;
      drawGrid(r.result);
    } catch (e) {
      error.textContent = e.message;
    }
  }
  function drawGrid(points) {
    const mode = pictureMode(name, info, points.length ? points : [], cs.space);
    grid.replaceChildren(...points.map((p) => {
      const plus = h('button', { type: 'button', class: votes.get(p.id) > 0 ? 'ghost on' : 'ghost', text: '+', title: 'more like this', 'aria-pressed': String(votes.get(p.id) > 0) });
      const minus = h('button', { type: 'button', class: votes.get(p.id) < 0 ? 'ghost on' : 'ghost', text: '−', title: 'less like this', 'aria-pressed': String(votes.get(p.id) < 0) });
      const vote = (v) => {
        if (votes.get(p.id) === v) votes.delete(p.id); else votes.set(p.id, v);
        plus.className = votes.get(p.id) > 0 ? 'ghost on' : 'ghost';
        minus.className = votes.get(p.id) < 0 ? 'ghost on' : 'ghost';
        plus.setAttribute('aria-pressed', String(votes.get(p.id) > 0));
        minus.setAttribute('aria-pressed', String(votes.get(p.id) < 0));
      };
      plus.addEventListener('click', () => vote(1));
      minus.addEventListener('click', () => vote(-1));
      const fields = Object.entries(p.payload || {}).filter(([f]) => mode.kind !== 'field' || f !== mode.field).slice(0, 2);
      return h('div', { class: `card${p.id === selfId ? ' self' : ''}`, 'data-id': String(p.id) },
        picture(p, mode, cs.space),
        h('a', { class: 'id', href: `#/c/${enc(name)}/p/${enc(String(p.id))}`, text: String(p.id) }),
        h('div', { class: 'muted', text: `score ${Number(p.score).toPrecision(5)}` }),
        fields.map(([f, v]) => h('div', { class: 'payload', text: `${f}: ${formatValue(v)}` })),
        h('div', { class: 'votes' }, plus, minus));
    }));
  }
  return { element, run };
}

// --- Search by a vector ----------------------------------------------------------------------

// A vector from text (JSON array, or numbers separated by commas / white space) or a file:
// .npy (float32/float64/int, first row), .fvecs (first vector), else text.
function parseVectorText(text) {
  const t = text.trim();
  if (!t) throw new Error('paste a vector: a JSON array or numbers separated by commas or spaces');
  let values;
  if (t.startsWith('[')) {
    values = JSON.parse(t);
    if (Array.isArray(values[0])) values = values[0];
  } else {
    values = t.split(/[\s,;]+/).filter(Boolean).map(Number);
  }
  if (!Array.isArray(values) || values.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw new Error('the vector must contain only finite numbers');
  }
  return values;
}
function parseVectorFile(name, buffer) {
  const bytes = new Uint8Array(buffer);
  if (name.endsWith('.npy')) {
    if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== 'NUMPY') throw new Error(`${name} is not a .npy file`);
    const headerLen = bytes[8] | (bytes[9] << 8);
    const header = new TextDecoder().decode(bytes.slice(10, 10 + headerLen));
    const descr = (header.match(/'descr':\s*'([^']+)'/) || [])[1];
    const shape = ((header.match(/'shape':\s*\(([^)]*)\)/) || [])[1] || '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    if (/True/.test((header.match(/'fortran_order':\s*(\w+)/) || [])[1] || '')) throw new Error('Fortran-ordered .npy files are not supported');
    const dim = shape.length >= 2 ? shape[shape.length - 1] : shape[0];
    const start = 10 + headerLen;
    const types = { '<f4': Float32Array, '<f8': Float64Array, '<i4': Int32Array, '|u1': Uint8Array, '<i8': null };
    const Type = types[descr];
    if (!Type) throw new Error(`.npy element type ${descr} is not supported (float32, float64, int32 or uint8)`);
    return Array.from(new Type(buffer.slice(start, start + dim * Type.BYTES_PER_ELEMENT)));
  }
  if (name.endsWith('.fvecs')) {
    const dim = new DataView(buffer).getInt32(0, true);
    return Array.from(new Float32Array(buffer.slice(4, 4 + 4 * dim)));
  }
  return parseVectorText(new TextDecoder().decode(bytes));
}

async function searchTab(root, name, info, cs) {
  const spec = vectorSpaces(info).find((s) => s.name === cs.space) || {};
  const text = h('textarea', { 'data-testid': 'vector-input', 'aria-label': 'query vector', placeholder: `[${spec.size} numbers] — a JSON array, or numbers separated by commas or spaces` });
  const file = h('input', { type: 'file', accept: '.json,.txt,.csv,.npy,.fvecs', 'aria-label': 'vector file' });
  const error = h('p', { class: 'error', role: 'alert', 'data-testid': 'vector-error' });
  const holder = h('div');
  file.addEventListener('change', async () => {
    error.textContent = '';
    const f = file.files[0];
    if (!f) return;
    try {
      const v = parseVectorFile(f.name.toLowerCase(), await f.arrayBuffer());
      text.value = JSON.stringify(v);
    } catch (e) {
      error.textContent = e.message;
    }
  });
  const go = h('button', { type: 'button', 'data-testid': 'search-vector', text: 'Use this vector', onclick: () => {
    error.textContent = '';
    try {
      const v = parseVectorText(text.value);
      if (spec.size && v.length !== spec.size) throw new Error(`the vector has ${v.length} numbers; this collection's vectors have ${spec.size}`);
      const panel = neighboursPanel(name, info, cs, { vector: v, title: 'Nearest points' });
      holder.replaceChildren(panel.element);
      panel.run();
    } catch (e) {
      error.textContent = e.message;
    }
  } });
  root.append(h('section', { class: 'panel' }, h('h2', { text: 'Search by a vector' }),
    h('p', { class: 'muted', text: `Paste a vector of ${spec.size} numbers, or load one from a file (.json, .txt, .npy, .fvecs: the first vector).` }),
    text, h('div', { class: 'row' }, file, h('span', { class: 'spacer' }), go), error), holder);
}

// --- Map: a 2-D PCA projection of a sample ----------------------------------------------------

// The top two principal components of `rows` (arrays of equal length) by power iteration with
// deflation; returns [[x, y] per row].
function pca2(rows) {
  const n = rows.length, d = rows[0].length;
  const mean = new Float64Array(d);
  for (const r of rows) for (let j = 0; j < d; ++j) mean[j] += r[j] / n;
  const X = rows.map((r) => Float64Array.from(r, (x, j) => x - mean[j]));
  const components = [];
  for (let c = 0; c < 2; ++c) {
    let v = Float64Array.from({ length: d }, (_, j) => Math.sin(j * 12.9898 + c * 78.233) + 0.5);
    for (let iter = 0; iter < 60; ++iter) {
      const next = new Float64Array(d);
      for (const x of X) {
        let dot = 0;
        for (let j = 0; j < d; ++j) dot += x[j] * v[j];
        for (let j = 0; j < d; ++j) next[j] += dot * x[j];
      }
      for (const u of components) {  // stay orthogonal to the components found
        let dot = 0;
        for (let j = 0; j < d; ++j) dot += next[j] * u[j];
        for (let j = 0; j < d; ++j) next[j] -= dot * u[j];
      }
      let norm = 0;
      for (let j = 0; j < d; ++j) norm += next[j] * next[j];
      norm = Math.sqrt(norm) || 1;
      v = next.map((x) => x / norm);
    }
    components.push(v);
  }
  return X.map((x) => components.map((u) => { let s = 0; for (let j = 0; j < d; ++j) s += x[j] * u[j]; return s; }));
}
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac',
                 '#1f77b4', '#d62728'];

async function mapTab(root, name, info, cs, stale) {
  const size = h('select', { 'aria-label': 'sample size' }, [500, 1000, 2000, 5000].map((n) => h('option', { value: n, text: `${n} points`, selected: n === 1000 })));
  const colour = h('select', { 'aria-label': 'colour by' }, h('option', { value: '', text: 'one colour' }));
  const status = h('p', { class: 'stats', 'data-testid': 'map-status' });
  const canvas = h('canvas', { width: 1000, height: 500, 'data-testid': 'map', tabindex: 0,
    'aria-label': 'map of a sample of the points: arrow keys move between dots (left to right), Enter opens one' });
  const tip = h('div', { class: 'tip', hidden: true });
  const legend = h('div', { class: 'legend' });
  root.append(h('div', { class: 'row panel' }, h('label', {}, 'Sample', size), h('label', {}, 'Colour by', colour),
    h('button', { type: 'button', text: 'Draw', onclick: () => load() }), h('span', { class: 'spacer' }),
    h('span', { class: 'muted', text: cs.filter ? `filter: ${cs.filter}` : 'first points in id order' })),
    status, h('div', { class: 'map-wrap' }, canvas, tip), legend);
  let sample = [], xy = [];

  async function load() {
    status.textContent = 'Reading the sample…';
    sample = [];
    let offset = null;
    const want = Number(size.value);
    while (sample.length < want) {
      const page = await scrollPage(name, cs, offset, Math.min(500, want - sample.length));
      sample.push(...page.points.filter((p) => vectorOf(p, cs.space)));
      offset = page.next_page_offset;
      if (offset === null || offset === undefined) break;
    }
    if (stale()) return;
    if (sample.length < 3) { status.textContent = 'Too few points to draw a map.'; return; }
    const fields = new Set();
    for (const p of sample) for (const [k, v] of Object.entries(p.payload || {})) if (typeof v !== 'object' || v === null) fields.add(k);
    const previous = colour.value || ([...fields].find((f) => /name|label|class|category/i.test(f)) ?? '');
    colour.replaceChildren(h('option', { value: '', text: 'one colour' }), ...[...fields].sort().map((f) => h('option', { value: f, text: f })));
    colour.value = previous;
    status.textContent = 'Projecting…';
    await new Promise((r) => setTimeout(r));
    const t0 = performance.now();
    xy = pca2(sample.map((p) => vectorOf(p, cs.space)));
    status.textContent = `${sample.length} points, first two principal components (computed in ${formatMs(performance.now() - t0)}). Click a dot to open its point.`;
    draw();
  }
  function colours() {
    const f = colour.value;
    if (!f) return { of: () => PALETTE[0], legend: [] };
    const values = sample.map((p) => (p.payload || {})[f]);
    const numeric = values.every((v) => typeof v === 'number');
    const distinct = [...new Set(values.map((v) => formatValue(v ?? null)))].sort((a, b) => (numeric ? Number(a) - Number(b) : a.localeCompare(b)));
    if (distinct.length <= PALETTE.length) {
      const index = new Map(distinct.map((v, i) => [v, i]));
      return { of: (p) => PALETTE[index.get(formatValue((p.payload || {})[f] ?? null))], legend: distinct.map((v, i) => [v, PALETTE[i]]) };
    }
    if (numeric) {
      const min = Math.min(...values), max = Math.max(...values);
      const of = (p) => `hsl(${240 - 240 * (((p.payload || {})[f] - min) / (max - min || 1))} 70% 50%)`;
      return { of, legend: [[`${min}`, of({ payload: { [f]: min } })], [`${max}`, of({ payload: { [f]: max } })]] };
    }
    return { of: () => PALETTE[0], legend: [[`${distinct.length} distinct values: one colour`, PALETTE[0]]] };
  }
  let screen = [];
  function draw() {
    const ctx = canvas.getContext('2d');
    const w = canvas.width, hgt = canvas.height, pad = 16;
    ctx.clearRect(0, 0, w, hgt);
    const xs = xy.map((p) => p[0]), ys = xy.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    screen = xy.map(([x, y]) => [pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad), hgt - pad - ((y - y0) / (y1 - y0 || 1)) * (hgt - 2 * pad)]);
    const c = colours();
    ctx.globalAlpha = 0.75;
    sample.forEach((p, i) => {
      ctx.fillStyle = c.of(p);
      ctx.beginPath();
      ctx.arc(screen[i][0], screen[i][1], 3.5, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.globalAlpha = 1;
    legend.replaceChildren(...c.legend.map(([label, col]) => {
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = col;
      return h('span', {}, swatch, label);
    }));
  }
  function nearest(event) {
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * canvas.width;
    const y = ((event.clientY - rect.top) / rect.height) * canvas.height;
    let best = -1, bestD = 12 * 12 * (canvas.width / rect.width) ** 2;
    screen.forEach(([sx, sy], i) => { const d = (sx - x) ** 2 + (sy - y) ** 2; if (d < bestD) { bestD = d; best = i; } });
    return best;
  }
  canvas.addEventListener('click', (e) => {
    const i = nearest(e);
    if (i >= 0) location.hash = `#/c/${enc(name)}/p/${enc(String(sample[i].id))}`;
  });
  canvas.addEventListener('mousemove', (e) => {
    const i = nearest(e);
    tip.hidden = i < 0;
    if (i < 0) return;
    const f = colour.value;
    tip.textContent = `${sample[i].id}${f ? ` · ${f}: ${formatValue((sample[i].payload || {})[f] ?? null)}` : ''}`;
    const rect = canvas.getBoundingClientRect();
    tip.style.left = `${e.clientX - rect.left + 12}px`;
    tip.style.top = `${e.clientY - rect.top + 12}px`;
  });
  canvas.addEventListener('mouseleave', () => { tip.hidden = true; });
  // The keyboard walks the dots from left to right; Enter opens the one selected.
  let selected = -1;
  canvas.addEventListener('keydown', (e) => {
    if (!screen.length) return;
    const order = screen.map((p, i) => i).sort((a, b) => screen[a][0] - screen[b][0]);
    const at = order.indexOf(selected);
    if (e.key === 'ArrowRight' || e.key === 'ArrowDown') selected = order[Math.min(order.length - 1, at + 1)];
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') selected = order[Math.max(0, at < 0 ? 0 : at - 1)];
    else if (e.key === 'Enter' && selected >= 0) { location.hash = `#/c/${enc(name)}/p/${enc(String(sample[selected].id))}`; return; }
    else return;
    e.preventDefault();
    draw();
    const ctx = canvas.getContext('2d');
    ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--fg') || '#000';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(screen[selected][0], screen[selected][1], 7, 0, 2 * Math.PI);
    ctx.stroke();
    const f = colour.value;
    tip.hidden = false;
    tip.textContent = `${sample[selected].id}${f ? ` · ${f}: ${formatValue((sample[selected].payload || {})[f] ?? null)}` : ''}`;
    const rect = canvas.getBoundingClientRect();
    tip.style.left = `${(screen[selected][0] / canvas.width) * rect.width + 12}px`;
    tip.style.top = `${(screen[selected][1] / canvas.height) * rect.height + 12}px`;
  });
  colour.addEventListener('change', () => { if (sample.length) draw(); });
  await load();
}

// --- Info: configuration, storage, recall estimate ---------------------------------------------

function infoTab(root, name, info, cs) {
  const spaces = vectorSpaces(info);
  const storage = info.storage || {};
  const recall = h('p', { class: 'stats', 'data-testid': 'recall' });
  const online = info.recall_estimate || {};
  const onlineText = online.samples > 0
    ? `Online estimate: ${online.recall.toFixed(4)} over the last ${formatNumber(online.samples)} sampled searches` +
      (online.from_store ? ' (kept from before the last restart)' : ` (${formatNumber(online.total_samples)} re-run exactly since the server started, ${formatNumber(online.dropped)} dropped to stay within the monitor's CPU share)`)
    : 'Online estimate: none yet (the server re-runs a share of live searches exactly: fathom serve --recall-sample-rate).';
  const shown = recallEstimate(name);
  if (shown) recall.textContent = `last estimate: recall@${shown.k} ${shown.value.toFixed(4)} over ${shown.queries} queries (${new Date(shown.at).toLocaleTimeString()})`;
  const measure = h('button', { type: 'button', 'data-testid': 'estimate-recall', text: 'Estimate recall', onclick: async () => {
    measure.disabled = true;
    recall.textContent = 'Measuring…';
    try {
      const r = await estimateRecall(name, cs, 10, 20);
      sessionStorage.setItem(`fathom-recall:${name}`, JSON.stringify(r));
      recall.textContent = `recall@10 ${r.value.toFixed(4)}: the index's answers vs exact search for ${r.queries} queries made from stored points (each moved off itself by its nearest-neighbour distance)`;
    } catch (e) {
      recall.textContent = e.message;
    } finally {
      measure.disabled = false;
    }
  } });
  const meta = metadataOf(info);
  const model = meta.model || {};
  const fieldInputs = {
    modelName: h('input', { value: model.name || '', placeholder: 'resnet50', 'aria-label': 'model name' }),
    modelVersion: h('input', { value: model.version || '', placeholder: 'v2', 'aria-label': 'model version' }),
    description: h('input', { class: 'grow', value: meta.description || '', placeholder: 'what the vectors are', 'aria-label': 'description' }),
    imageField: h('input', { class: 'mono', value: meta.image_field || sessionStorage.getItem(`fathom-image-field:${name}`) || '',
                             placeholder: 'payload field', 'aria-label': 'image field' }),
  };
  const describeError = h('p', { class: 'error', role: 'alert' });
  const describe = h('form', { class: 'row', onsubmit: async (e) => {
    e.preventDefault();
    describeError.textContent = '';
    const v = (input) => input.value.trim() || null;
    const imageField = v(fieldInputs.imageField);
    for (const k of pictureModes.keys()) if (k.startsWith(`${name}\u0000`)) pictureModes.delete(k);
    if (!canWrite()) {  // a read-only key: this tab only
      if (imageField) sessionStorage.setItem(`fathom-image-field:${name}`, imageField);
      else sessionStorage.removeItem(`fathom-image-field:${name}`);
      return;
    }
    const spec = vectorSpaces(info).find((sp) => sp.name === cs.space) || {};
    const newModel = v(fieldInputs.modelName) || v(fieldInputs.modelVersion)
      ? { name: v(fieldInputs.modelName), version: v(fieldInputs.modelVersion), dimension: spec.size } : null;
    try {
      await api('PATCH', collectionPath(name), { metadata: { model: newModel, description: v(fieldInputs.description), image_field: imageField } });
      render();
    } catch (err) {
      describeError.textContent = err.message;
    }
  } }, canWrite() ? [h('label', {}, 'Model', fieldInputs.modelName), h('label', {}, 'Version', fieldInputs.modelVersion),
                     h('label', { class: 'grow' }, 'Description', fieldInputs.description)] : null,
  h('label', {}, 'Image field', fieldInputs.imageField),
  h('button', { type: 'submit', class: 'ghost', 'data-testid': 'save-description', text: canWrite() ? 'Save' : 'Use in this tab' }));
  root.append(
    h('section', { class: 'panel' }, h('h2', { text: 'Vectors' }), h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'Dim', 'Distance', 'Index', 'On disk'].map((t) => h('th', { text: t })))),
      h('tbody', {}, spaces.map((s) => h('tr', {}, h('td', { text: s.name || '(default)' }), h('td', { text: s.size }), h('td', { text: s.distance }),
        h('td', { class: 'mono', text: s.index || '' }), h('td', { text: s.on_disk ? 'yes' : 'no' }))))))),
    h('section', { class: 'panel' }, h('h2', { text: 'Storage' }), h('dl', { class: 'kv' },
      [['points', formatNumber(info.points_count)], ['memory', formatBytes(info.memory_bytes)], ['disk', formatBytes(storage.disk_bytes)],
       ['index files', formatBytes(storage.index_files_bytes)], ['records', formatBytes(storage.records_disk_bytes)],
       ['indexed fields', Object.entries(info.payload_schema || {}).map(([f, s]) => `${f} (${s.data_type})`).join(', ') || 'none']]
        .map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]))),
    h('section', { class: 'panel' }, h('h2', { text: 'Recall' }),
      h('p', { 'data-testid': 'online-recall', text: onlineText }),
      h('p', { class: 'muted', text: 'Or measure now: 20 queries made from stored points (each moved off itself by its nearest-neighbour distance, as a new query would be) are searched with the index and exactly; the share of the exact top 10 the index found.' }),
      measure, recall),
    tunePanel(name, info, cs),
    h('section', { class: 'panel' }, h('h2', { text: 'Description' }),
      h('p', { class: 'muted', text: 'Kept in the collection\'s metadata (shown in the list and above the tabs). The image field names a payload field that holds an image (URL or base64 PNG) to show for each point; empty: detect one, or draw vectors that are pixels.' }),
      describe, describeError),
    h('section', { class: 'panel' }, h('h2', { text: 'Raw' }), h('pre', { class: 'mono', text: JSON.stringify(info, null, 2) })));
}

// The collection's default search setting (what POST /tune kept) and, for a read-write key, a
// form that tunes it to a target recall.
function tunePanel(name, info, cs) {
  const defaults = (info.search_defaults || {})[cs.space];
  const knobText = (d) => (d.ef ? `ef ${d.ef}` : d.nprobe ? `nprobe ${d.nprobe}` : d.checks ? `checks ${d.checks}` : 'exact');
  const current = h('p', { 'data-testid': 'search-defaults', text: defaults
    ? `Default: ${knobText(defaults)}, tuned for recall ${defaults.target_recall} (measured ${defaults.recall.toFixed(4)}).`
    : 'Default: the index\'s own (never tuned).' });
  const section = h('section', { class: 'panel' }, h('h2', { text: 'Speed and recall' }), current);
  if (!canWrite()) return section;
  const target = h('input', { type: 'number', min: 0.5, max: 1, step: 0.005, value: defaults ? defaults.target_recall : 0.95, 'aria-label': 'target recall', 'data-testid': 'target-recall' });
  const out = h('p', { class: 'stats', 'data-testid': 'tune-result' });
  const button = h('button', { type: 'submit', 'data-testid': 'tune', text: 'Tune' });
  section.append(
    h('p', { class: 'muted', text: 'Finds the cheapest ef (nprobe, checks) whose recall@10 against exact search reaches the target, on 500 queries made from this collection\'s points, and keeps it as the default.' }),
    h('form', { class: 'row', onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      out.textContent = 'Measuring…';
      try {
        const body = { target_recall: Number(target.value) };
        if (cs.space) body.using = cs.space;
        const { result: r, ms } = await api('POST', `${collectionPath(name)}/tune`, body);
        // The default line first, then the result: whoever sees the result sees the new default.
        const fresh = await collectionInfo(name, true);
        const d = (fresh.search_defaults || {})[cs.space];
        if (d) current.textContent = `Default: ${knobText(d)}, tuned for recall ${d.target_recall} (measured ${d.recall.toFixed(4)}).`;
        out.textContent = r.knob === '' ? 'The index is exact: nothing to tune.'
          : `${r.reached ? 'Reached' : 'Not reached; kept the most accurate tried'}: ${r.knob} ${r.value} (recall ${r.recall.toFixed(4)} on ${r.queries} queries) in ${formatMs(ms)}. Tried: ` +
            r.tried.map((t) => `${t.value} → ${t.recall.toFixed(3)}`).join(', ');
      } catch (err) {
        out.textContent = err.message;
      } finally {
        button.disabled = false;
      }
    } }, h('label', {}, 'Target recall', target), button), out);
  return section;
}

async function estimateRecall(name, cs, k, queries) {
  const page = await scrollPage(name, { ...cs, filter: '' }, null, 500);
  const points = page.points.filter((p) => vectorOf(p, cs.space));
  if (points.length === 0) throw new Error('the collection has no points to use as queries');
  const step = Math.max(1, Math.floor(points.length / queries));
  const picked = points.filter((_, i) => i % step === 0).slice(0, queries);
  const path = `${collectionPath(name)}/points/search/batch`;
  // A stored point is a node of the graph and flatters it as a query: move each off itself by
  // its nearest-neighbour distance in a random direction (as the server's tune does).
  const near = await api('POST', path, { searches: picked.map((p) => ({ vector: queryVector(cs.space, vectorOf(p, cs.space)), limit: 2,
                                                                         with_vector: true, params: { exact: true } })) });
  const moved = picked.map((p, i) => {
    const v = vectorOf(p, cs.space);
    const other = near.result[i].find((hit) => String(hit.id) !== String(p.id));
    const w = other && vectorOf(other, cs.space);
    if (!w) return v;
    const radius = Math.hypot(...v.map((x, j) => x - w[j]));
    // Box-Muller normals for a random direction.
    const u = v.map(() => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()));
    const norm = Math.hypot(...u) || 1;
    return v.map((x, j) => x + (u[j] * radius) / norm);
  });
  const body = (exact) => ({ searches: moved.map((v) => ({ vector: queryVector(cs.space, v), limit: k, params: exact ? { exact: true } : {} })) });
  const [approx, exact] = await Promise.all([api('POST', path, body(false)), api('POST', path, body(true))]);
  let found = 0, total = 0;
  exact.result.forEach((hits, i) => {
    const ids = new Set(approx.result[i].map((p) => String(p.id)));
    found += hits.filter((p) => ids.has(String(p.id))).length;
    total += hits.length;
  });
  return { value: total ? found / total : 1, k, queries: picked.length, at: Date.now() };
}

// --- Health: live charts from /metrics --------------------------------------------------------

// Prometheus text format -> [{name, labels, value}]
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
// Requests the console itself makes to draw this page are left out of the numbers.
const OWN_ROUTES = new Set(['/metrics', '/console', '/console/{file}', '/access']);
function summarize(metrics) {
  const s = { requests: 0, errors5xx: 0, errors4xx: 0, buckets: new Map(), checkpoint: {}, memory: 0, rss: null, points: {}, recall: {}, uptime: null };
  for (const m of metrics) {
    if (m.labels.route && OWN_ROUTES.has(m.labels.route)) continue;
    if (m.name === 'fathom_http_requests_total') {
      s.requests += m.value;
      if (m.labels.code >= '500') s.errors5xx += m.value; else if (m.labels.code >= '400') s.errors4xx += m.value;
    } else if (m.name === 'fathom_http_request_duration_seconds_bucket') {
      const le = m.labels.le === '+Inf' ? Infinity : Number(m.labels.le);
      s.buckets.set(le, (s.buckets.get(le) || 0) + m.value);
    } else if (m.name === 'fathom_checkpoint_age_seconds') s.checkpoint[m.labels.collection] = m.value;
    else if (m.name === 'fathom_collection_memory_bytes') s.memory += m.value;
    else if (m.name === 'fathom_collection_points') s.points[m.labels.collection] = m.value;
    else if (m.name === 'fathom_recall_estimate') s.recall[m.labels.collection] = m.value;
    else if (m.name === 'process_resident_memory_bytes') s.rss = m.value;
    else if (m.name === 'fathom_uptime_seconds') s.uptime = m.value;
  }
  return s;
}
// A quantile from the difference of two cumulative histograms (linear within a bucket).
function quantile(now, before, q) {
  const bounds = [...now.buckets.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => now.buckets.get(b) - (before.buckets.get(b) || 0));
  const total = counts[counts.length - 1];
  if (!total) return null;
  const target = q * total;
  for (let i = 0; i < bounds.length; ++i) {
    if (counts[i] >= target) {
      const lower = i === 0 ? 0 : bounds[i - 1], below = i === 0 ? 0 : counts[i - 1];
      if (bounds[i] === Infinity) return lower;
      return lower + (bounds[i] - lower) * ((target - below) / ((counts[i] - below) || 1));
    }
  }
  return null;
}
function lineChart(title, format) {
  const value = h('div', { class: 'value', text: '—' });
  const canvas = h('canvas', { width: 300, height: 70 });
  const el = h('div', { class: 'panel chart', 'data-chart': title }, h('h3', { text: title }), value, canvas);
  const series = [];
  return {
    el,
    push(v) {
      series.push(v);
      if (series.length > 90) series.shift();
      value.textContent = v === null ? '—' : format(v);
      const ctx = canvas.getContext('2d');
      const w = canvas.width, hgt = canvas.height;
      ctx.clearRect(0, 0, w, hgt);
      const vals = series.filter((x) => x !== null);
      if (vals.length < 2) return;
      const max = Math.max(...vals) || 1;
      ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#2456c8';
      ctx.lineWidth = 2;
      ctx.beginPath();
      series.forEach((x, i) => {
        if (x === null) return;
        const px = (i / 89) * w, py = hgt - 4 - (x / max) * (hgt - 8);
        if (i === 0 || series[i - 1] === null) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      ctx.stroke();
    },
  };
}

async function healthView(root, stale) {
  root.append(h('h1', { text: 'Health' }), h('p', { class: 'muted', text: 'From this server\'s /metrics every 2 s; requests this page makes are not counted.' }));
  const charts = {
    qps: lineChart('Requests / s', (v) => v.toFixed(1)),
    p50: lineChart('Latency p50', (v) => formatMs(v * 1e3)),
    p99: lineChart('Latency p99', (v) => formatMs(v * 1e3)),
    errors: lineChart('Errors / s (5xx)', (v) => v.toFixed(2)),
    rejected: lineChart('Rejected / s (4xx)', (v) => v.toFixed(2)),
    memory: lineChart('Memory', (v) => formatBytes(v)),
  };
  const table = h('tbody');
  const uptime = h('p', { class: 'stats', 'data-testid': 'uptime' });
  root.append(h('div', { class: 'charts', 'data-testid': 'charts' }, Object.values(charts).map((c) => c.el)), uptime,
    h('section', { class: 'panel' }, h('h2', { text: 'Collections' }), h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { text: 'Collection' }), h('th', { class: 'num', text: 'Points' }), h('th', { class: 'num', text: 'Recall (online)' }),
        h('th', { class: 'num', text: 'Last checkpoint' }))), table))));
  let before = null, beforeAt = 0;
  async function tick() {
    const { result: text } = await api('GET', '/metrics');
    const now = summarize(parseMetrics(text));
    const at = performance.now();
    if (before) {
      const dt = (at - beforeAt) / 1e3;
      charts.qps.push(Math.max(0, now.requests - before.requests) / dt);
      charts.p50.push(quantile(now, before, 0.5));
      charts.p99.push(quantile(now, before, 0.99));
      charts.errors.push(Math.max(0, now.errors5xx - before.errors5xx) / dt);
      charts.rejected.push(Math.max(0, now.errors4xx - before.errors4xx) / dt);
    }
    charts.memory.push(now.rss ?? now.memory);
    uptime.textContent = `up ${Math.round(now.uptime ?? 0)} s · ${formatNumber(now.requests)} requests · collections hold ${formatBytes(now.memory)} in memory` +
      (now.rss ? ` · process ${formatBytes(now.rss)} resident` : '');
    table.replaceChildren(...Object.keys(now.points).sort().map((c) => h('tr', {}, h('td', {}, h('a', { href: `#/c/${enc(c)}/points`, text: c })),
      h('td', { class: 'num', text: formatNumber(now.points[c]) }),
      h('td', { class: 'num', text: now.recall[c] === undefined ? '—' : now.recall[c].toFixed(3) }),
      h('td', { class: 'num', text: now.checkpoint[c] === undefined ? '—' : `${Math.round(now.checkpoint[c])} s ago` }))));
    before = now;
    beforeAt = at;
  }
  await tick();
  if (stale()) return;
  const timer = setInterval(() => { tick().catch(() => {}); }, 2000);
  state.stopTimers.push(() => clearInterval(timer));
}

// ---------------------------------------------------------------------------------------------

setupKeyDialog();
window.addEventListener('hashchange', render);
render();
