// The dashboard's history: per-minute growth of the cumulative counters (a restart takes the new
// value), gauges as they are, publish latencies from the published events, the 24 h bounds, the
// file it is kept in (missing, corrupt or of a future version: a fresh start) and /api/history.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { Events } from '../../src/events.ts'
import { History, MAX_LATENCIES, MAX_SAMPLES, type HistoryReport } from '../../src/history.ts'
import { noCounts } from '../../src/http.ts'
import { swarmSummary, type ItemStatus, type StatusReport } from '../../src/status.ts'
import { tempDir } from '../kit/helpers.ts'
import { itemRecord, itemStatus, statusReport } from '../kit/records.ts'

const T0 = Date.parse('2026-11-23T06:00:00Z')

/** A report whose counters are the given ones. */
function report({ bittorrent = 0, http = 0, items = [] as ItemStatus[], peers = 0, used = 0 } = {}): StatusReport {
  const swarm = swarmSummary(items)
  return statusReport({
    seeder: { port: 1, torrents: items.length, rehashed: 0, uploaded: bittorrent },
    http: { ...noCounts(), dataBytes: http },
    swarm: { ...swarm, peers },
    disk: { publishedBytes: used, inFlightBytes: 0, budgetBytes: 1000, freeBytes: 5000 },
    items,
  })
}

async function history(options: { file?: string; intervalMs?: number } = {}) {
  const clock = { now: T0 }
  let next = report()
  const events = new Events()
  const h = new History({
    file: options.file ?? join(await tempDir(), 'history.json'),
    events,
    status: async () => next,
    now: () => clock.now,
    intervalMs: options.intervalMs,
  })
  /** One sample of `status`, a minute after the previous one. */
  const sample = async (status: StatusReport) => {
    next = status
    await h.sample()
    clock.now += 60_000
  }
  return { h, clock, events, sample }
}

test('a sample holds what the counters grew by in its minute, gauges as they are; a restart takes the new value', async () => {
  const { h, sample } = await history()
  await sample(report({ bittorrent: 1000, http: 200, peers: 3, used: 50 }))
  await sample(report({ bittorrent: 1500, http: 200, peers: 5, used: 70 }))
  await sample(report({ bittorrent: 300, http: 40, peers: 1, used: 70 })) // the daemon restarted
  const { samples } = h.report()
  assert.deepEqual(samples.t, [T0 / 1000, T0 / 1000 + 60, T0 / 1000 + 120])
  assert.deepEqual(samples.bittorrentBytes, [1000, 500, 300])
  assert.deepEqual(samples.httpBytes, [200, 0, 40])
  assert.deepEqual(samples.peers, [3, 5, 1])
  assert.deepEqual(samples.diskUsedBytes, [50, 70, 70])
  assert.deepEqual(samples.diskBudgetBytes, [1000, 1000, 1000])
})

test('delivered is counted per file: an expired file takes nothing back, a new one counts in full', async () => {
  const { h, sample } = await history()
  const a = (completed: number) => itemStatus({ infoHash: 'a'.repeat(40), size: 100, completed })
  const b = (completed: number) => itemStatus({ infoHash: 'b'.repeat(40), size: 10, completed })
  await sample(report({ items: [a(2)] }))
  await sample(report({ items: [a(3), b(1)] }))
  await sample(report({ items: [b(4)] })) // a expired
  await sample(report({ items: [b(1)] })) // restart: the tracker counts from zero
  assert.deepEqual(h.report().samples.deliveredBytes, [200, 110, 30, 10])
})

test('failures: files that failed and failed passes, per minute', async () => {
  const { h, events, sample } = await history()
  const failed = [{ relPath: 'x', url: 'u', reason: 'bad GRIB', kind: 'validation' }] as never
  events.emit('pass', { report: { failed } as never, durationSeconds: 1 })
  events.emit('pass', { error: new Error('listing failed'), durationSeconds: 1 })
  await sample(report())
  await sample(report())
  assert.deepEqual(h.report().samples.failures, [0, 0], 'not listening before start')
  await h.start()
  try {
    events.emit('pass', { report: { failed } as never, durationSeconds: 1 })
    events.emit('pass', { error: new Error('listing failed'), durationSeconds: 1 })
    await sample(report())
    await sample(report())
    assert.deepEqual(h.report().samples.failures, [0, 0, 2, 0])
  } finally {
    await h.stop()
  }
})

test('publish latency: upstream Last-Modified → published, per file, from the published events', async () => {
  const { h, events } = await history()
  await h.start()
  try {
    const publishedAt = '2026-11-23T03:10:00.000Z'
    events.emit('published', { item: itemRecord({ publishedAt, upstreamMtime: '2026-11-23T03:05:30.000Z' }), from: 'upstream' })
    events.emit('published', { item: itemRecord({ publishedAt }), from: 'upstream' }) // no Last-Modified: no point
    const { latency } = h.report()
    assert.deepEqual(latency, { t: [Date.parse(publishedAt) / 1000], seconds: [270], file: [itemRecord().fileName] })
  } finally {
    await h.stop()
  }
})

test('bounded: at most 1440 samples and 2000 latencies, none older than 24 h', async () => {
  const { h, clock, events, sample } = await history()
  for (let i = 0; i < MAX_SAMPLES + 10; i++) await sample(report({ bittorrent: i }))
  let { samples } = h.report()
  assert.equal(samples.t.length, MAX_SAMPLES)
  for (const column of Object.values(samples)) assert.equal(column.length, MAX_SAMPLES)
  assert.equal(samples.t[0], T0 / 1000 + 10 * 60, 'the oldest went first')
  await h.start()
  try {
    for (let i = 0; i < MAX_LATENCIES + 5; i++) {
      const at = new Date(clock.now - 1000 + i).toISOString()
      events.emit('published', { item: itemRecord({ publishedAt: at, upstreamMtime: at }), from: 'upstream' })
    }
    assert.equal(h.report().latency.t.length, MAX_LATENCIES)
    // Six hours without samples (the daemon was down): what is older than 24 h goes.
    clock.now += 6 * 3600_000
    await sample(report())
    samples = h.report().samples
    assert.ok(samples.t[0]! >= (clock.now - 60_000 - 86_400_000) / 1000)
    assert.equal(samples.t.length, MAX_SAMPLES - 6 * 60 + 1)
  } finally {
    await h.stop()
  }
})

test('the file: written on sample() and at stop, restored at start, a missing, corrupt or future one is a fresh start', async () => {
  const dir = await tempDir()
  const file = join(dir, 'history.json')
  const first = await history({ file })
  await first.h.start() // no file yet
  assert.equal(first.h.status().samples, 0)
  await first.sample(report({ bittorrent: 10, peers: 2 }))
  await first.sample(report({ bittorrent: 15, peers: 3 }))
  const written = JSON.parse(await readFile(file, 'utf8')) as HistoryReport
  assert.deepEqual(written, first.h.report())
  await first.h.stop()

  const second = await history({ file })
  await second.h.start()
  try {
    assert.deepEqual(second.h.report(), first.h.report())
    // A new process: its counters start from zero, the restored minutes stay as they were.
    second.clock.now = T0 + 5 * 60_000
    await second.sample(report({ bittorrent: 4 }))
    assert.deepEqual(second.h.report().samples.bittorrentBytes, [10, 5, 4])
  } finally {
    await second.h.stop()
  }

  for (const content of [
    '{"version":1,"samples":', // cut short
    'null',
    JSON.stringify({ ...first.h.report(), version: 2 }), // a later version's
    JSON.stringify({ ...first.h.report(), samples: { ...first.h.report().samples, peers: [1] } }), // ragged columns
    JSON.stringify({ ...first.h.report(), latency: { t: ['x'], seconds: [1], file: ['f'] } }),
  ]) {
    await writeFile(file, content)
    const fresh = await history({ file })
    await fresh.h.start()
    assert.equal(fresh.h.status().samples, 0, content)
    assert.equal(fresh.h.status().latencies, 0, content)
    await fresh.h.stop()
  }
})

test('start() samples on its own every intervalMs; stop() ends it', async () => {
  const { h } = await history({ intervalMs: 20 })
  await h.start()
  try {
    const deadline = Date.now() + 5000
    while (h.status().samples < 2 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve))
    assert.ok(h.status().samples >= 2)
  } finally {
    await h.stop()
  }
  const after = h.status().samples
  await new Promise((resolve) => setTimeout(resolve, 60))
  assert.equal(h.status().samples, after)
})

test('report(): the columns uPlot takes, one entry per sample each', async () => {
  const { h, sample } = await history()
  await sample(report({ bittorrent: 1 }))
  const r = h.report()
  assert.equal(r.version, 1)
  assert.equal(r.intervalSeconds, 60)
  assert.deepEqual(Object.keys(r.samples), [
    't',
    'bittorrentBytes',
    'httpBytes',
    'deliveredBytes',
    'peers',
    'seeders',
    'leechers',
    'diskUsedBytes',
    'diskBudgetBytes',
    'failures',
  ])
  for (const column of Object.values(r.samples)) assert.equal(column.length, 1)
  assert.deepEqual(Object.keys(r.latency), ['t', 'seconds', 'file'])
  assert.doesNotThrow(() => JSON.parse(JSON.stringify(r)))
})

test('json(): report() as UTF-8 JSON, made once per change', async () => {
  const { h, events, sample } = await history()
  await sample(report({ bittorrent: 5 }))
  const first = h.json()
  assert.deepEqual(JSON.parse(first.toString('utf8')), h.report())
  assert.equal(h.json(), first, 'the same bytes while nothing changed')
  await sample(report({ bittorrent: 9 }))
  assert.notEqual(h.json(), first)
  assert.deepEqual(JSON.parse(h.json().toString('utf8')).samples.bittorrentBytes, [5, 4])
  await h.start()
  try {
    const before = h.json()
    const at = '2026-11-23T05:00:00.000Z'
    events.emit('published', { item: itemRecord({ publishedAt: at, upstreamMtime: at }), from: 'upstream' })
    assert.notEqual(h.json(), before, 'a published file changes it too')
  } finally {
    await h.stop()
  }
})
