// Qdrant's official JavaScript client (@qdrant/js-client-rest, pinned in package-lock.json)
// against `fathom serve`, unchanged: each test is a call a Qdrant application makes, with the
// answer checked for the shape and the values Qdrant gives (issue 14).
//
// Run: npm ci --prefix tests/qdrant-js && node --test tests/qdrant-js/
// FATHOM_BIN names the binary (default build/src/cli/fathom from the repository root).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QdrantClient } from '@qdrant/js-client-rest';
import { startFathom } from '../fathom_server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.FATHOM_BIN || join(root, 'build', 'src', 'cli', 'fathom');
let server, dataDir, client, url;
const warnings = [];

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'fathom-qdrant-js-'));
  ({ server, url } = await startFathom(bin, ['--data', dataDir]));
  const warn = console.warn;
  console.warn = (...args) => { warnings.push(args.join(' ')); };
  client = new QdrantClient({ url });
  // The constructor checks the server's version in the background.
  await new Promise((r) => setTimeout(r, 300));
  console.warn = warn;
});

after(() => {
  server?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// 12 points in 4-d: colours cycle red/green/blue, every third has no 'tag'.
const colours = ['red', 'green', 'blue'];
function points() {
  const out = [];
  for (let i = 1; i <= 12; ++i) {
    const payload = { color: colours[i % 3], n: i, text: `point number ${i}` };
    if (i % 3 !== 0) payload.tag = i % 2 ? 'odd' : 'even';
    out.push({ id: i, vector: [i, 1, (i % 4) + 1, 2], payload });
  }
  return out;
}
const norm = (v) => { const n = Math.hypot(...v); return v.map((x) => x / n); };
const cosineScore = (a, b) => norm(a).reduce((s, x, j) => s + x * norm(b)[j], 0);

test('the version check passes and versionInfo answers', async () => {
  assert.deepEqual(warnings, []);
  const info = await client.versionInfo();
  assert.match(info.version, /^\d+\.\d+\.\d+/);
});

test('create, exists, get a collection with Qdrant options', async () => {
  assert.equal(await client.createCollection('things', {
    vectors: { size: 4, distance: 'Cosine', on_disk: false },
    hnsw_config: { m: 16, ef_construct: 100 },
    on_disk_payload: true,
  }), true);
  assert.deepEqual(await client.collectionExists('things'), { exists: true });
  assert.deepEqual(await client.collectionExists('nothing'), { exists: false });
  const info = await client.getCollection('things');
  assert.equal(info.config.params.vectors.size, 4);
  assert.equal(info.config.params.vectors.distance, 'Cosine');
  assert.equal(info.config.params.on_disk_payload, true);
  assert.equal(info.config.hnsw_config.m, 16);
  assert.equal(info.config.hnsw_config.ef_construct, 100);
  assert.equal(info.status, 'green');
  const list = await client.getCollections();
  assert.deepEqual(list.collections.map((c) => c.name), ['things']);
});

test('upsert answers with an operation id; retrieve gives cosine vectors normalised', async () => {
  const r = await client.upsert('things', { wait: true, points: points() });
  assert.equal(r.status, 'completed');
  assert.equal(typeof r.operation_id, 'number');
  const again = await client.upsert('things', { wait: false, points: points().slice(11) });
  assert.equal(again.status, 'acknowledged');
  assert.ok(again.operation_id > r.operation_id);
  const got = await client.retrieve('things', { ids: [5], with_vector: true, with_payload: true });
  assert.equal(got.length, 1);
  assert.equal(got[0].payload.color, 'blue');
  const expected = norm([5, 1, 2, 2]);
  got[0].vector.forEach((x, j) => assert.ok(Math.abs(x - expected[j]) < 1e-6, `${x} vs ${expected[j]}`));
  assert.equal((await client.count('things', { exact: true })).count, 12);
});

test('search: scores, score_threshold, exact, payload selectors', async () => {
  const q = [3, 1, 4, 2];
  const all = points().map((p) => ({ id: p.id, score: cosineScore(q, p.vector) }))
    .sort((a, b) => b.score - a.score);
  const hits = await client.search('things', { vector: q, limit: 5, params: { exact: true } });
  assert.deepEqual(hits.map((h) => h.id), all.slice(0, 5).map((h) => h.id));
  hits.forEach((h, i) => assert.ok(Math.abs(h.score - all[i].score) < 1e-5));
  const threshold = all[3].score - 1e-6;
  const above = await client.search('things', { vector: q, limit: 10, score_threshold: threshold });
  assert.deepEqual(above.map((h) => h.id), all.slice(0, 4).map((h) => h.id));
  const some = await client.search('things', { vector: q, limit: 1, with_payload: ['color', 'n'] });
  assert.deepEqual(Object.keys(some[0].payload).sort(), ['color', 'n']);
  const rest = await client.search('things', { vector: q, limit: 1, with_payload: { exclude: ['text', 'tag'] } });
  assert.deepEqual(Object.keys(rest[0].payload).sort(), ['color', 'n']);
  const batch = await client.searchBatch('things', { searches: [{ vector: q, limit: 2 }, { vector: [1, 1, 1, 1], limit: 3 }] });
  assert.equal(batch.length, 2);
  assert.equal(batch[1].length, 3);
});

test('recommend: average_vector and best_score, examples excluded, filter honoured', async () => {
  const vec = Object.fromEntries(points().map((p) => [p.id, p.vector]));
  // average_vector: one search for 2 * mean(positives) - mean(negatives).
  const pos = [vec[2], vec[6]].map(norm), neg = norm(vec[11]);
  const query = pos[0].map((x, j) => 2 * (x + pos[1][j]) / 2 - neg[j]);
  const expected = points().filter((p) => ![2, 6, 11].includes(p.id))
    .map((p) => ({ id: p.id, score: cosineScore(query, p.vector) }))
    .sort((a, b) => b.score - a.score).slice(0, 3).map((h) => h.id);
  const hits = await client.recommend('things', { positive: [2, 6], negative: [11], limit: 3, params: { exact: true } });
  assert.deepEqual(hits.map((h) => h.id), expected);
  // best_score, with a vector as an example and a filter.
  const best = await client.recommend('things', {
    positive: [4, [12, 1, 1, 2]], negative: [1], strategy: 'best_score', limit: 4,
    filter: { must: [{ key: 'color', match: { value: 'green' } }] }, with_payload: true,
  });
  assert.ok(best.length > 0);
  best.forEach((h) => { assert.equal(h.payload.color, 'green'); assert.notEqual(h.id, 4); assert.notEqual(h.id, 1); });
  for (let i = 1; i < best.length; ++i) assert.ok(best[i - 1].score >= best[i].score);
  await assert.rejects(client.recommend('things', { positive: [999], limit: 1 }), /Not Found/);
});

test('filters: is_empty, match any / except / text, range, must_not', async () => {
  const ids = async (filter) => (await client.scroll('things', { filter, limit: 100 })).points.map((p) => p.id).sort((a, b) => a - b);
  assert.deepEqual(await ids({ must: [{ is_empty: { key: 'tag' } }] }), [3, 6, 9, 12]);
  assert.deepEqual(await ids({ must: [{ key: 'color', match: { except: ['red', 'green'] } }] }), [2, 5, 8, 11]);
  assert.deepEqual(await ids({ must: [{ key: 'color', match: { any: ['red'] } }] }), [3, 6, 9, 12]);
  assert.deepEqual(await ids({ must: [{ key: 'text', match: { text: 'number 1' } }] }), [1, 10, 11, 12]);
  assert.deepEqual(await ids({ must: [{ key: 'n', range: { gte: 10 } }], must_not: [{ key: 'n', match: { value: 11 } }] }), [10, 12]);
  assert.deepEqual(await ids({ must: [{ has_id: [2, 5, 99] }] }), [2, 5]);
  assert.deepEqual(await ids({ must: [{ has_id: [2, 5, 6] }], must_not: [{ key: 'color', match: { value: 'red' } }] }), [2, 5]);
});

test('filters: geo radius / box / polygon, values_count, nested, min_should, datetime range, has_vector', async () => {
  await client.createCollection('places', { vectors: { size: 2, distance: 'Euclid' } });
  const placePoints = [];
  for (let i = 1; i <= 6; ++i) {
    placePoints.push({ id: i, vector: [i, 0], payload: {
      loc: { lon: i, lat: 0 },  // i degrees east along the equator: i x 111.2 km from (0, 0)
      when: `2024-05-0${i}T12:00:00Z`,
      tags: Array.from({ length: i % 4 }, (_, j) => `t${j}`),
      reviews: [{ stars: i, ok: i % 2 === 0 }, { stars: 7 - i, ok: i % 2 === 1 }] } });
  }
  await client.upsert('places', { wait: true, points: placePoints });
  const ids = async (filter) => (await client.scroll('places', { filter, limit: 100 })).points.map((p) => p.id).sort((a, b) => a - b);
  const pt = (lon, lat) => ({ lon, lat });
  assert.deepEqual(await ids({ must: [{ key: 'loc', geo_radius: { center: pt(0, 0), radius: 350000 } }] }), [1, 2, 3]);
  assert.deepEqual(await ids({ must: [{ key: 'loc', geo_bounding_box: { top_left: pt(1.5, 1), bottom_right: pt(4.5, -1) } }] }), [2, 3, 4]);
  assert.deepEqual(await ids({ must: [{ key: 'loc', geo_polygon: {
    exterior: { points: [pt(2.5, -1), pt(5.5, -1), pt(5.5, 1), pt(2.5, 1), pt(2.5, -1)] },
    interiors: [{ points: [pt(3.5, -0.5), pt(4.5, -0.5), pt(4.5, 0.5), pt(3.5, 0.5), pt(3.5, -0.5)] }] } }] }), [3, 5]);
  assert.deepEqual(await ids({ must: [{ key: 'tags', values_count: { gte: 2 } }] }), [2, 3, 6]);
  // nested: both conditions on the same review; the flat form lets them hold on different ones.
  const good = [{ key: 'stars', range: { gte: 5 } }, { key: 'ok', match: { value: true } }];
  assert.deepEqual(await ids({ must: [{ nested: { key: 'reviews', filter: { must: good } } }] }), [1, 6]);
  assert.deepEqual(await ids({ must: [{ key: 'reviews[].stars', range: { gte: 5 } }, { key: 'reviews[].ok', match: { value: true } }] }), [1, 2, 5, 6]);
  // Datetime range (RFC 3339 bounds; 14:00+02:00 is 12:00 UTC, so the 5th is excluded by lt).
  assert.deepEqual(await ids({ must: [{ key: 'when', range: { gte: '2024-05-03', lt: '2024-05-05T14:00:00+02:00' } }] }), [3, 4]);
  // min_should: at least 2 of (within 350 km, 2+ tags, a good review).
  assert.deepEqual(await ids({ min_should: { min_count: 2, conditions: [
    { key: 'loc', geo_radius: { center: pt(0, 0), radius: 350000 } }, { key: 'tags', values_count: { gte: 2 } },
    { nested: { key: 'reviews', filter: { must: good } } }] } }), [1, 2, 3, 6]);
  // has_vector: every point has the collection's (unnamed) vector; an unknown name is a 400.
  assert.deepEqual(await ids({ must: [{ has_vector: '' }, { key: 'tags', values_count: { lt: 1 } }] }), [4]);
  await assert.rejects(client.scroll('places', { filter: { must: [{ has_vector: 'image' }] } }), /Bad Request/);
  // A search with a geo filter: the nearest allowed points, in order.
  const hits = await client.search('places', { vector: [6, 0], limit: 2, filter: { must: [{ key: 'loc', geo_radius: { center: pt(0, 0), radius: 350000 } }] } });
  assert.deepEqual(hits.map((h) => h.id), [3, 2]);
  await assert.rejects(client.scroll('places', { filter: { must: [{ key: 'loc', geo_radius: { center: pt(0, 95), radius: 1 } }] } }), /Bad Request/);
  await client.deleteCollection('places');
});

test('scroll pages through every point', async () => {
  const seen = [];
  let offset;
  for (let page = 0; page < 10; ++page) {
    const r = await client.scroll('things', { limit: 5, offset, with_payload: false });
    seen.push(...r.points.map((p) => p.id));
    r.points.forEach((p) => assert.equal(p.payload, undefined));
    offset = r.next_page_offset;
    if (offset === null || offset === undefined) break;
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

test('query: by vector (as search), by id (itself excluded), recommend, batch', async () => {
  const byVector = await client.query('things', { query: [1, 0, 0, 0], limit: 3 });
  const search = await client.search('things', { vector: [1, 0, 0, 0], limit: 3 });
  assert.deepEqual(byVector.points.map((p) => p.id), search.map((p) => p.id));
  const byId = await client.query('things', { query: 4, limit: 3 });
  assert.equal(byId.points.length, 3);
  assert.ok(byId.points.every((p) => p.id !== 4));
  const rec = await client.query('things', { query: { recommend: { positive: [4], negative: [5] } }, limit: 2 });
  assert.equal(rec.points.length, 2);
  const batch = await client.queryBatch('things', { searches: [{ query: [1, 0, 0, 0], limit: 1 }, { query: 4, limit: 1 }] });
  assert.equal(batch.length, 2);
  assert.deepEqual(batch[0].points.map((p) => p.id), [search[0].id]);
});

test('query: hybrid prefetch over two named vectors, fused by RRF and DBSF, re-scored by a vector', async () => {
  await client.createCollection('hybrid', { vectors: { image: { size: 2, distance: 'Euclid' }, text: { size: 3, distance: 'Cosine' } } });
  const points = [];
  for (let i = 1; i <= 20; ++i) {
    points.push({ id: i, vector: { image: [i % 7, Math.floor(i / 7)], text: [1, (i * 37) % 11, (i * 13) % 5] }, payload: { i } });
  }
  await client.upsert('hybrid', { wait: true, points });
  const qi = [3.2, 1.1], qt = [1, 4, 2];
  const prefetch = [{ query: qi, using: 'image', limit: 6 }, { query: qt, using: 'text', limit: 6 }];
  // The two ranked lists as plain searches see them, fused here (Qdrant's RRF: 1 / (2 + rank)).
  const lists = [await client.search('hybrid', { vector: { name: 'image', vector: qi }, limit: 6 }),
    await client.search('hybrid', { vector: { name: 'text', vector: qt }, limit: 6 })];
  const rrf = new Map();
  lists.forEach((l) => l.forEach((h, rank) => rrf.set(h.id, (rrf.get(h.id) ?? 0) + 1 / (2 + rank))));
  const best = [...rrf.entries()].sort((a, b) => b[1] - a[1]);
  const fused = await client.query('hybrid', { prefetch, query: { fusion: 'rrf' }, limit: 4, with_payload: true });
  assert.equal(fused.points.length, 4);
  fused.points.forEach((p, i) => {
    assert.ok(Math.abs(p.score - best[i][1]) < 1e-6, `${p.id}: ${p.score} vs ${best[i][1]}`);
    assert.equal(rrf.get(p.id), best[i][1]);
    assert.equal(p.payload.i, p.id);
  });
  const dbsf = await client.query('hybrid', { prefetch, query: { fusion: 'dbsf' }, limit: 4 });
  assert.equal(dbsf.points.length, 4);
  assert.ok(dbsf.points.every((p) => rrf.has(p.id) && p.score >= 0 && p.score <= 2));
  // Re-scored by the text vector: the image prefetch's 6 points in text order.
  const rescored = await client.query('hybrid', { prefetch: prefetch[0], query: qt, using: 'text', limit: 6 });
  const imageIds = new Set(lists[0].map((h) => h.id));
  assert.equal(rescored.points.length, 6);
  assert.ok(rescored.points.every((p) => imageIds.has(p.id)));
  for (let i = 1; i < rescored.points.length; ++i) assert.ok(rescored.points[i - 1].score >= rescored.points[i].score);
  await assert.rejects(client.query('hybrid', { query: { fusion: 'rrf' } }), /Bad Request/);
  await client.deleteCollection('hybrid');
});

test('Manhattan distance: search agrees with brute force L1', async () => {
  await client.createCollection('taxicab', { vectors: { size: 3, distance: 'Manhattan' } });
  const points = [];
  for (let i = 0; i < 40; ++i) points.push({ id: i + 1, vector: [(i * 7) % 11, (i * 5) % 13 - 6, (i * 3) % 5] });
  await client.upsert('taxicab', { wait: true, points });
  assert.equal((await client.getCollection('taxicab')).config.params.vectors.distance, 'Manhattan');
  const q = [4, 1, 2];
  const l1 = (v) => v.reduce((s, x, j) => s + Math.abs(x - q[j]), 0);
  const truth = points.map((p) => l1(p.vector)).sort((a, b) => a - b).slice(0, 5);
  const hits = await client.search('taxicab', { vector: q, limit: 5 });
  assert.deepEqual(hits.map((h) => h.score), truth);  // scores are the L1 distances, nearest first
  hits.forEach((h) => assert.equal(l1(points[h.id - 1].vector), h.score));
  await client.deleteCollection('taxicab');
});

test('payload indexes: created and deleted on a live collection', async () => {
  await client.createCollection('indexed', { vectors: { size: 2, distance: 'Dot' } });
  await client.upsert('indexed', { wait: true, points: [
    { id: 1, vector: [1, 0], payload: { n: 1, at: '2024-01-02T03:04:05Z' } },
    { id: 2, vector: [0, 1], payload: { n: 2, at: '2025-01-01T00:00:00Z' } }] });
  let r = await client.createPayloadIndex('indexed', { field_name: 'n', field_schema: 'integer', wait: true });
  assert.equal(r.status, 'completed');
  await client.createPayloadIndex('indexed', { field_name: 'at', field_schema: 'datetime', wait: true });
  const info = await client.getCollection('indexed');
  assert.equal(info.payload_schema.n.data_type, 'integer');
  assert.equal(info.payload_schema.at.data_type, 'datetime');
  const count = await client.count('indexed', { filter: { must: [{ key: 'at', range: { gte: '2024-12-31' } }] } });
  assert.equal(count.count, 1);
  await assert.rejects(client.upsert('indexed', { wait: true, points: [{ id: 3, vector: [1, 1], payload: { n: 'three' } }] }), /Bad Request/);
  r = await client.deletePayloadIndex('indexed', 'n', { wait: true });
  assert.equal(r.status, 'completed');
  await client.upsert('indexed', { wait: true, points: [{ id: 3, vector: [1, 1], payload: { n: 'three' } }] });
  assert.equal((await client.getCollection('indexed')).payload_schema.n, undefined);
  await client.deleteCollection('indexed');
});

test('payload: set, overwrite, delete keys, clear', async () => {
  const payload = async (id) => (await client.retrieve('things', { ids: [id] }))[0].payload;
  let r = await client.setPayload('things', { wait: true, payload: { reviewed: true }, points: [2, 3] });
  assert.equal(r.status, 'completed');
  assert.equal((await payload(2)).reviewed, true);
  assert.equal((await payload(2)).color, 'blue');  // merged, not replaced
  await client.overwritePayload('things', { wait: true, payload: { color: 'red', n: 3 }, points: [3] });
  assert.deepEqual(await payload(3), { color: 'red', n: 3 });
  await client.deletePayload('things', { wait: true, keys: ['reviewed'], filter: { must: [{ key: 'reviewed', match: { value: true } }] } });
  assert.equal((await payload(2)).reviewed, undefined);
  await client.clearPayload('things', { wait: true, points: [5] });
  assert.deepEqual(await payload(5), {});
  await assert.rejects(client.setPayload('things', { payload: { x: 1 }, points: [999] }), (e) => e.status === 404);
});

test('delete by id and by filter; update the collection', async () => {
  const r = await client.delete('things', { wait: true, points: [1] });
  assert.equal(r.status, 'completed');
  await client.delete('things', { wait: true, filter: { must: [{ key: 'color', match: { value: 'green' } }] } });
  assert.equal((await client.count('things')).count, 8);  // 1, then 4, 7, 10
  assert.equal(await client.updateCollection('things', { optimizers_config: { indexing_threshold: 20000 } }), true);
});

test('snapshots: create, list, download, recover from a location, delete', async () => {
  const snap = await client.createSnapshot('things');
  const list = await client.listSnapshots('things');
  assert.ok(list.some((s) => s.name === snap.name));
  // The download is one tar file (POSIX: "ustar" at byte 257).
  const location = `${url}/collections/things/snapshots/${snap.name}`;
  const download = await fetch(location);
  assert.equal(download.status, 200);
  assert.equal(download.headers.get('content-type'), 'application/x-tar');
  const bytes = Buffer.from(await download.arrayBuffer());
  assert.equal(bytes.subarray(257, 262).toString(), 'ustar');
  // Recovered from its URL (as another server would) and from the file, under new names.
  const count = (await client.count('things')).count;
  await client.recoverSnapshot('things_copy', { location });
  assert.equal((await client.count('things_copy')).count, count);
  const hits = await client.search('things_copy', { vector: [1, 0, 0, 0], limit: 3 });
  assert.deepEqual(hits.map((h) => h.id), (await client.search('things', { vector: [1, 0, 0, 0], limit: 3 })).map((h) => h.id));
  await client.recoverSnapshot('things_copy2', { location: `file://${dataDir}/snapshots/things/${snap.name}` });
  assert.equal((await client.count('things_copy2')).count, count);
  await assert.rejects(client.recoverSnapshot('things_copy3', { location: 'file:///etc/passwd' }), /Bad Request/);
  await assert.rejects(client.recoverSnapshot('things_copy3', { location: `${url}/collections/things/snapshots/nope` }), /Bad Request/);
  await assert.rejects(client.recoverSnapshot('things_copy', { location }), /Conflict/);
  await client.deleteCollection('things_copy');
  await client.deleteCollection('things_copy2');
  assert.equal(await client.deleteSnapshot('things', snap.name), true);
  assert.equal((await fetch(location)).status, 404);
});

test('aliases: the re-embedding switch in one request, with no failed read', async () => {
  await client.createCollection('things_v2', { vectors: { size: 4, distance: 'Cosine' } });
  await client.upsert('things_v2', { wait: true, points: [{ id: 100, vector: [1, 2, 3, 4], payload: { v: 2 } }] });
  assert.equal(await client.updateCollectionAliases({ actions: [{ create_alias: { collection_name: 'things', alias_name: 'live' } }] }), true);
  assert.deepEqual((await client.getAliases()).aliases, [{ alias_name: 'live', collection_name: 'things' }]);
  assert.equal((await client.count('live')).count, 8);
  assert.deepEqual(await client.collectionExists('live'), { exists: true });
  // Readers keep searching through the alias while it is switched.
  let failures = 0, reads = 0, stop = false;
  const reader = (async () => {
    while (!stop) {
      try { await client.search('live', { vector: [1, 2, 3, 4], limit: 1 }); ++reads; } catch { ++failures; }
    }
  })();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await client.updateCollectionAliases({ actions: [
    { delete_alias: { alias_name: 'live' } },
    { create_alias: { collection_name: 'things_v2', alias_name: 'live' } },
  ] }), true);
  await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await reader;
  assert.equal(failures, 0);
  assert.ok(reads > 0);
  assert.equal((await client.count('live')).count, 1);
  assert.deepEqual((await client.getCollectionAliases('things_v2')).aliases, [{ alias_name: 'live', collection_name: 'things_v2' }]);
  assert.deepEqual((await client.getCollectionAliases('things')).aliases, []);
  await client.updateCollectionAliases({ actions: [{ rename_alias: { old_alias_name: 'live', new_alias_name: 'current' } }] });
  assert.equal((await client.count('current')).count, 1);
  // All or none: a failing action leaves the aliases as they were.
  await assert.rejects(client.updateCollectionAliases({ actions: [
    { delete_alias: { alias_name: 'current' } }, { create_alias: { collection_name: 'nothing', alias_name: 'current' } },
  ] }), /Not Found/);
  assert.deepEqual((await client.getAliases()).aliases, [{ alias_name: 'current', collection_name: 'things_v2' }]);
  assert.equal(await client.deleteCollection('things_v2'), true);  // its aliases go with it
  assert.deepEqual((await client.getAliases()).aliases, []);
});

test('drop the collection', async () => {
  assert.equal(await client.deleteCollection('things'), true);
  assert.deepEqual(await client.collectionExists('things'), { exists: false });
});
