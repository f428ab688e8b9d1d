// The Prometheus metrics (src/metrics.ts) without a daemon: a Metrics fed a fake status report
// and events emitted by the test, checked through its exposition, parsed. A real Prometheus
// scraping the real daemon is in test/integration/metrics.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Events } from '../../src/events.ts'
import { noCounts } from '../../src/http.ts'
import { expiryReason, Metrics } from '../../src/metrics.ts'
import type { PassReport } from '../../src/pipeline.ts'
import { swarmSummary, type ItemStatus, type StatusReport } from '../../src/status.ts'
import { itemRecord, statusReport } from '../kit/records.ts'

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The text exposition format: TYPE lines and samples (label values here have no escaped quotes). */
function parse(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ')
      types.set(name!, type!)
      continue
    }
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(match, `not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of match[2]?.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g) ?? []) labels[key!] = value!
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return { types, samples }
}

/** A Metrics over a status report the test changes between scrapes, and a scrape function. */
function setup(initial: Partial<StatusReport> = {}) {
  const events = new Events()
  let report = statusReport(initial)
  const metrics = new Metrics({ events, status: async () => report })
  const scrape = async () => {
    const { samples, types } = parse(await metrics.render())
    /** The value of one sample, `labels` matching exactly; undefined when there is none. */
    const value = (name: string, labels: Record<string, string> = {}) =>
      samples.find(
        (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort()),
      )?.value
    return { samples, types, value }
  }
  const setStatus = (fields: Partial<StatusReport>) => (report = statusReport(fields))
  return { events, metrics, scrape, setStatus }
}

function passReport(fields: Partial<PassReport> = {}): PassReport {
  return { runs: [], available: 0, alreadyDone: 0, todo: [], published: [], failed: [], fetchedBytes: 0, deferred: [], ...fields }
}

function itemStatus(fields: Partial<ItemStatus> = {}): ItemStatus {
  return {
    ...itemRecord(),
    ageSeconds: 0,
    expiresInSeconds: 0,
    torrentUrl: '',
    httpUrl: '',
    peers: 0,
    seeders: 0,
    leechers: 0,
    completed: 0,
    uploaded: 0,
    http: noCounts(),
    ...fields,
  } as ItemStatus
}

test('published files are counted by package, grid and from (a copied one is from "mirror", whatever node it came from)', async () => {
  const { events, scrape } = setup()
  events.emit('published', { item: itemRecord({ package: 'SP1', grid: '01' }), from: 'upstream' })
  events.emit('published', { item: itemRecord({ package: 'SP1', grid: '01' }), from: 'upstream' })
  events.emit('published', { item: itemRecord({ package: 'SP2', grid: '025' }), from: 'http://node-b.test:8080' })
  const { value } = await scrape()
  assert.equal(value('gribswarm_files_published_total', { package: 'SP1', grid: '01', from: 'upstream' }), 2)
  assert.equal(value('gribswarm_files_published_total', { package: 'SP2', grid: '025', from: 'mirror' }), 1)
})

test('the upstream → published delay is observed for upstream files with a Last-Modified, and only those', async () => {
  const { events, scrape } = setup()
  const publishedAt = '2026-11-23T03:00:00.000Z'
  events.emit('published', { item: itemRecord({ publishedAt, upstreamMtime: '2026-11-23T02:58:00.000Z' }), from: 'upstream' })
  events.emit('published', { item: itemRecord({ publishedAt, upstreamMtime: '2026-11-23T02:00:00.000Z' }), from: 'http://node-b.test' })
  events.emit('published', { item: itemRecord({ publishedAt }), from: 'upstream' })
  events.emit('published', { item: itemRecord({ publishedAt: 'garbage', upstreamMtime: 'garbage' }), from: 'upstream' })
  const { value } = await scrape()
  assert.equal(value('gribswarm_upstream_publish_delay_seconds_count'), 1)
  assert.equal(value('gribswarm_upstream_publish_delay_seconds_sum'), 120)
  assert.equal(value('gribswarm_upstream_publish_delay_seconds_bucket', { le: '60' }), 0)
  assert.equal(value('gribswarm_upstream_publish_delay_seconds_bucket', { le: '120' }), 1)
})

test('a pass counts its outcome, duration, available files, failures by kind, deferrals and fetched bytes', async () => {
  const { events, scrape } = setup()
  const before = await scrape()
  // Zero before the first pass, so that increase() over them works from the start.
  assert.equal(before.value('gribswarm_passes_total', { outcome: 'ok' }), 0)
  assert.equal(before.value('gribswarm_passes_total', { outcome: 'error' }), 0)
  for (const kind of ['http', 'transfer', 'integrity', 'invalid', 'error'])
    assert.equal(before.value('gribswarm_files_failed_total', { kind }), 0)

  const failure = (kind: PassReport['failed'][number]['kind']) => ({ relPath: 'a/b.grib2', url: 'http://up.test/b', reason: 'x', kind })
  const candidate = { relPath: 'a/c.grib2' } as PassReport['deferred'][number]
  events.emit('pass', {
    report: passReport({
      available: 12,
      failed: [failure('http'), failure('invalid'), failure('invalid')],
      deferred: [candidate],
      fetchedBytes: 5000,
    }),
    durationSeconds: 2.5,
  })
  events.emit('pass', { report: passReport({ available: 14, fetchedBytes: 700 }), durationSeconds: 40 })
  events.emit('pass', { error: new Error('listing failed'), durationSeconds: 0.5 })
  const { value } = await scrape()
  assert.equal(value('gribswarm_passes_total', { outcome: 'ok' }), 2)
  assert.equal(value('gribswarm_passes_total', { outcome: 'error' }), 1)
  assert.equal(value('gribswarm_pass_duration_seconds_count'), 3)
  assert.equal(value('gribswarm_pass_duration_seconds_sum'), 43)
  assert.equal(value('gribswarm_pass_duration_seconds_bucket', { le: '1' }), 1)
  assert.equal(value('gribswarm_pass_files_available'), 14, 'the last pass that listed')
  assert.equal(value('gribswarm_files_failed_total', { kind: 'http' }), 1)
  assert.equal(value('gribswarm_files_failed_total', { kind: 'invalid' }), 2)
  assert.equal(value('gribswarm_files_failed_total', { kind: 'transfer' }), 0)
  assert.equal(value('gribswarm_files_deferred_total'), 1)
  assert.equal(value('gribswarm_upstream_fetched_bytes_total'), 5700)
})

test('gauges are read from the status report at each scrape', async () => {
  const items = [itemStatus({ infoHash: 'a'.repeat(40), size: 100, completed: 3, peers: 4, seeders: 2, leechers: 5, uploaded: 150 })]
  const { scrape, setStatus } = setup({
    pass: { running: false, lastSucceededAt: '2026-11-23T05:00:00.000Z' },
    disk: { publishedBytes: 900, inFlightBytes: 100, budgetBytes: 2000, freeBytes: 5000 },
    seeder: { port: 1, torrents: 1, rehashed: 0, uploaded: 150 },
    notify: { broker: 'amqp://b.test', connected: true, backlog: 7, sent: 3, dropped: 1 },
    items,
    swarm: swarmSummary(items),
  })
  const { value } = await scrape()
  assert.equal(value('gribswarm_last_successful_pass_timestamp_seconds'), Date.parse('2026-11-23T05:00:00.000Z') / 1000)
  assert.equal(value('gribswarm_source_enabled'), 1)
  assert.equal(value('gribswarm_disk_published_bytes'), 900)
  assert.equal(value('gribswarm_disk_in_flight_bytes'), 100)
  assert.equal(value('gribswarm_disk_budget_bytes'), 2000)
  assert.equal(value('gribswarm_disk_free_bytes'), 5000)
  assert.equal(value('gribswarm_swarm_peers'), 4)
  assert.equal(value('gribswarm_swarm_seeders'), 2)
  assert.equal(value('gribswarm_swarm_leechers'), 5)
  assert.equal(value('gribswarm_downloads_completed_total'), 3)
  assert.equal(value('gribswarm_offload_delivered_bytes'), 300)
  assert.equal(value('gribswarm_offload_origin_bytes'), 150)
  assert.equal(value('gribswarm_offload_ratio'), 2)
  assert.equal(value('gribswarm_torrents_seeded'), 1)
  assert.equal(value('gribswarm_published_files'), 1)
  assert.equal(value('gribswarm_notify_backlog'), 7)
  assert.equal(value('gribswarm_notify_connected'), 1)
  assert.equal(value('gribswarm_notify_sent_total'), 3)
  assert.equal(value('gribswarm_notify_dropped_total'), 1)

  // A node without a notifier, nothing published, no pass yet: zeros, not stale values.
  setStatus({})
  const after = await scrape()
  assert.equal(after.value('gribswarm_last_successful_pass_timestamp_seconds'), 0)
  assert.equal(after.value('gribswarm_notify_backlog'), 0)
  assert.equal(after.value('gribswarm_swarm_peers'), 0)
  assert.equal(after.value('gribswarm_notify_sent_total'), 3, 'a counter keeps what it counted')
})

test('counters of totals read at scrape time never go back, even when the total does (a part restarted, a file expired)', async () => {
  const http = (dataBytes: number, webSeedBytes: number, subsetBytes: number) => ({ ...noCounts(), dataBytes, webSeedBytes, subsetBytes })
  const seeder = (uploaded: number) => ({ port: 1, torrents: 2, rehashed: 0, uploaded })
  const hashA = 'a'.repeat(40)
  const hashB = 'b'.repeat(40)
  const withItems = (fields: Partial<StatusReport>, items: ItemStatus[]) => ({ ...fields, items, swarm: swarmSummary(items) })
  const { scrape, setStatus } = setup()
  const steps: Array<{ status: Partial<StatusReport>; uploaded: number; webSeed: number; completed: number; copied: number }> = [
    {
      status: withItems({ seeder: seeder(1000), http: http(10, 400, 5) }, [
        itemStatus({ infoHash: hashA, completed: 3 }),
        itemStatus({ infoHash: hashB, completed: 2 }),
      ]),
      uploaded: 1000,
      webSeed: 400,
      completed: 5,
      copied: 0,
    },
    {
      status: withItems(
        {
          seeder: seeder(1500),
          http: http(10, 900, 5),
          mirror: { copied: 4, dropped: 0, failed: 1, refused: 0, conflicts: 0, copying: [], follows: [], brokers: 0, following: 0 },
        },
        [itemStatus({ infoHash: hashA, completed: 3 }), itemStatus({ infoHash: hashB, completed: 2 })],
      ),
      uploaded: 1500,
      webSeed: 900,
      completed: 5,
      copied: 4,
    },
    {
      // The seeder and the mirror restarted: their totals count again from zero; file A
      // expired (its 3 downloads left the sum) while B got 2 more.
      status: withItems(
        {
          seeder: seeder(200),
          http: http(10, 950, 5),
          mirror: { copied: 1, dropped: 0, failed: 0, refused: 0, conflicts: 0, copying: [], follows: [], brokers: 0, following: 0 },
        },
        [itemStatus({ infoHash: hashB, completed: 4 })],
      ),
      uploaded: 1700,
      webSeed: 950,
      completed: 7,
      copied: 5,
    },
  ]
  let previous: Sample[] = []
  for (const [i, step] of steps.entries()) {
    setStatus(step.status)
    const { samples, types, value } = await scrape()
    assert.equal(value('gribswarm_bittorrent_sent_bytes_total'), step.uploaded, `step ${i}`)
    assert.equal(value('gribswarm_http_sent_bytes_total', { channel: 'webseed' }), step.webSeed, `step ${i}`)
    assert.equal(value('gribswarm_http_sent_bytes_total', { channel: 'data' }), 10, `step ${i}`)
    assert.equal(value('gribswarm_http_sent_bytes_total', { channel: 'subset' }), 5, `step ${i}`)
    assert.equal(value('gribswarm_downloads_completed_total'), step.completed, `step ${i}`)
    if (step.copied) assert.equal(value('gribswarm_mirror_copies_total', { outcome: 'copied' }), step.copied, `step ${i}`)
    // Every gribswarm counter, whatever it is: never lower than at the scrape before.
    for (const before of previous.filter((s) => types.get(s.name) === 'counter' && s.name.startsWith('gribswarm_'))) {
      const now = samples.find((s) => s.name === before.name && JSON.stringify(s.labels) === JSON.stringify(before.labels))
      assert.ok(
        now && now.value >= before.value,
        `${before.name}${JSON.stringify(before.labels)} went from ${before.value} to ${now?.value}`,
      )
    }
    previous = samples
  }
  // A total that is not a count at all: the scrape still answers, the counter does not move.
  setStatus(withItems({ seeder: seeder(Number.NaN) }, []))
  assert.equal((await scrape()).value('gribswarm_bittorrent_sent_bytes_total'), 1700)
  setStatus(withItems({ seeder: seeder(250) }, []))
  assert.equal((await scrape()).value('gribswarm_bittorrent_sent_bytes_total'), 1750)
})

test('label values stay few: packages and grids past 32 distinct values are "other", expiry reasons are one word', async () => {
  const { events, scrape } = setup()
  for (let i = 0; i < 100; i++) {
    const item = itemRecord({ relPath: `x/f${i}.grib2`, package: `P${i}`, grid: `G${i}`, infoHash: i.toString(16).padStart(40, '0') })
    events.emit('published', { item, from: `http://node-${i}.test` })
    events.emit('expired', { item, reason: i % 2 ? 'retention over' : `removed by its origin (http://node-${i}.test)` })
  }
  events.emit('expired', { item: itemRecord(), reason: 'something new' })
  const { samples, value } = await scrape()
  const published = samples.filter((s) => s.name === 'gribswarm_files_published_total')
  assert.equal(new Set(published.map((s) => s.labels.package)).size, 33)
  assert.equal(new Set(published.map((s) => s.labels.grid)).size, 33)
  assert.equal(
    published.reduce((sum, s) => sum + s.value, 0),
    100,
  )
  assert.equal(value('gribswarm_files_published_total', { package: 'other', grid: 'other', from: 'mirror' }), 68)
  assert.equal(value('gribswarm_files_expired_total', { reason: 'retention' }), 50)
  assert.equal(value('gribswarm_files_expired_total', { reason: 'origin' }), 50)
  assert.equal(value('gribswarm_files_expired_total', { reason: 'other' }), 1)
  assert.deepEqual(['retention over', 'removed by its origin (http://a.test)', 'disk full'].map(expiryReason), [
    'retention',
    'origin',
    'other',
  ])

  // No label anywhere says which file: no path, no infohash, no node address.
  const allowed = new Set(['package', 'grid', 'from', 'kind', 'outcome', 'reason', 'channel', 'le'])
  for (const s of samples.filter((s) => s.name.startsWith('gribswarm_'))) {
    for (const [label, labelValue] of Object.entries(s.labels)) {
      assert.ok(allowed.has(label), `${s.name} has a label ${label}`)
      assert.doesNotMatch(labelValue, /[/:]|[0-9a-f]{40}/, `${s.name}{${label}="${labelValue}"}`)
    }
  }
})

test('names follow the conventions: gribswarm_ prefix, base units, _total on counters and only there', async () => {
  const { events, scrape } = setup()
  events.emit('published', { item: itemRecord({ upstreamMtime: '2026-11-23T02:00:00.000Z' }), from: 'upstream' })
  events.emit('notified', { latencySeconds: 0.2 })
  const { types } = await scrape()
  const ours = [...types].filter(([name]) => name.startsWith('gribswarm_'))
  assert.ok(ours.length >= 35, `${ours.length} gribswarm metrics`)
  for (const [name, type] of ours) {
    assert.match(name, /^gribswarm_[a-z][a-z0-9_]*[a-z]$/, name)
    assert.doesNotMatch(name, /_(ms|milliseconds|minutes|hours|kb|mb|kib|mib|percent)(_|$)/, `${name}: not a base unit`)
    if (type === 'counter') assert.match(name, /_total$/, `counter ${name}`)
    else assert.doesNotMatch(name, /_total$/, `${type} ${name}`)
    if (type === 'histogram') assert.match(name, /_seconds$/, `histogram ${name}`)
  }
  // Process metrics come with every registry, under their standard names.
  assert.equal(types.get('process_cpu_seconds_total'), 'counter')
  assert.equal(types.get('nodejs_heap_size_used_bytes'), 'gauge')
})

test('the notification latency is observed as the notifier reports it; nonsense is left out', async () => {
  const { events, scrape } = setup()
  for (const latencySeconds of [0.03, 2, Number.NaN, -1]) events.emit('notified', { latencySeconds }) // -1: a clock stepped back, counted as immediate
  const { value } = await scrape()
  assert.equal(value('gribswarm_notify_latency_seconds_count'), 3)
  assert.equal(value('gribswarm_notify_latency_seconds_bucket', { le: '0.05' }), 2)
  assert.equal(value('gribswarm_notify_latency_seconds_sum'), 2.03)
})

test('several Metrics in one process keep their own registries; a listener never throws into the stage that emits', async () => {
  const a = setup()
  const b = setup()
  a.events.emit('published', { item: itemRecord(), from: 'upstream' })
  // An event the metrics cannot make sense of: the emitter must not see an exception.
  assert.doesNotThrow(() => a.events.emit('published', { item: undefined as never, from: 'upstream' }))
  assert.doesNotThrow(() => a.events.emit('pass', { report: { failed: null } as never, durationSeconds: Number.NaN }))
  assert.equal((await a.scrape()).value('gribswarm_files_published_total', { package: 'SP1', grid: '01', from: 'upstream' }), 1)
  assert.equal((await b.scrape()).value('gribswarm_files_published_total', { package: 'SP1', grid: '01', from: 'upstream' }), undefined)
  assert.equal(a.metrics.contentType, 'text/plain; version=0.0.4; charset=utf-8')
})
