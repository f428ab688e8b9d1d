// Scenario "metrics": what one /metrics scrape costs a daemon seeding 40 torrents. The daemon
// runs in this process, its 40 small CCSDS GRIB2 files published by one pass from a local
// upstream (tracker, seeder and HTTP as in production). Scrapes are real HTTP requests on
// loopback (keep-alive, as Prometheus makes them), timed from request to last byte; the
// reference is /api/status, which reads the same status report and serializes it as JSON,
// asked for in the same loop (and /health, the cheapest route, in the notes).
import { stat } from 'node:fs/promises'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { loadLoopbackConfig } from '../../test/kit/config.ts'
import { arpegeKey, FakeUpstream } from '../../test/kit/fake-upstream.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { median, quantile } from '../../test/kit/measure.ts'
import { FIXTURE_CACHE } from '../lib/services.ts'
import { fmtMB, fmtRatio, progress, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const RUN = '2026-11-23T00:00:00Z'
const COUNT = 40
const TARGET_MS = 5

const fmt = (ms: number) => `${ms.toFixed(2)} ms`

/** One GET to the last byte: milliseconds and the body's size. */
async function timedGet(url: string): Promise<{ ms: number; bytes: number }> {
  const started = performance.now()
  const response = await fetch(url)
  const body = await response.arrayBuffer()
  const ms = performance.now() - started
  if (!response.ok) throw new Error(`metrics: ${url} answered ${response.status}`)
  return { ms, bytes: body.byteLength }
}

export async function benchMetrics({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const scrapes = quick ? 50 : 300
  const fixture = await fixtureFor(FIXTURE_CACHE, 'arpege-ccsds-b2-r1.grib2', { bands: 2 })
  const fixtureSize = (await stat(fixture)).size
  const ranges = Array.from({ length: COUNT }, (_, i) => `${String(i).padStart(3, '0')}H${String(i + 1).padStart(3, '0')}H`)
  const upstream = new FakeUpstream()
  for (const range of ranges) await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path: fixture })
  await upstream.start()
  res.defer('stop the upstream', () => upstream.stop())

  const config = await loadLoopbackConfig(await res.tempDir('gribswarm-bench-metrics-'), {
    source: { bucketUrl: upstream.bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges, lookbackRuns: 1 },
    fetch: { concurrency: 4 },
    tracker: { enabled: true },
    seed: { utp: false },
    log: { level: 'warn' },
  })
  const daemon = await Daemon.start(config, createLogger('warn'), { schedule: false })
  res.defer('stop the in-process daemon', () => daemon.stop())
  progress(`metrics: publishing ${COUNT} files of ${fmtMB(fixtureSize)}`)
  const report = await daemon.runPass({ runs: [RUN] })
  if (report?.published.length !== COUNT)
    throw new Error(`the pass published ${report?.published.length ?? 0} of ${COUNT} files: ${JSON.stringify(report?.failed)}`)
  if (daemon.seeder.status().torrents !== COUNT)
    throw new Error(`the seeder holds ${daemon.seeder.status().torrents} torrents, not ${COUNT}`)

  const base = config.http.publicBaseUrl
  const routes = { metrics: `${base}/metrics`, status: `${base}/api/status`, health: `${base}/health` }
  const times: Record<keyof typeof routes, number[]> = { metrics: [], status: [], health: [] }
  const sizes: Record<keyof typeof routes, number> = { metrics: 0, status: 0, health: 0 }
  // Warm-up (JIT, connections), then the three routes in turn so that they share the machine's noise.
  for (let i = 0; i < 20; i++) for (const url of Object.values(routes)) await timedGet(url)
  progress(`metrics: ${scrapes} requests to each of /metrics, /api/status, /health`)
  const order = Object.entries(routes) as Array<[keyof typeof routes, string]>
  for (let i = 0; i < scrapes; i++) {
    // Each route first in turn: none always pays for following another.
    for (const [name, url] of [...order.slice(i % 3), ...order.slice(0, i % 3)]) {
      const { ms, bytes } = await timedGet(url)
      times[name].push(ms)
      sizes[name] = bytes
    }
  }
  // The exposition alone, in process: what a scrape costs besides HTTP.
  const renders: number[] = []
  for (let i = 0; i < scrapes; i++) {
    const started = performance.now()
    await daemon.metrics.render()
    renders.push(performance.now() - started)
  }
  const text = await daemon.metrics.render()
  if (!text.includes(`gribswarm_torrents_seeded ${COUNT}`)) throw new Error('metrics: the exposition does not show the 40 torrents')

  const m = median(times.metrics)
  const ref = median(times.status)
  progress(`metrics: /metrics median ${fmt(m)}, /api/status ${fmt(ref)}, /health ${fmt(median(times.health))}`)
  return {
    rows: [
      {
        scenario: `One /metrics scrape over HTTP, daemon seeding ${COUNT} torrents (median of ${scrapes})`,
        gribswarm: `${fmt(m)} (p90 ${fmt(quantile(times.metrics, 0.9))}), ${(sizes.metrics / 1024).toFixed(1)} KiB`,
        reference: `${fmt(ref)} (/api/status, same status report as JSON, ${(sizes.status / 1024).toFixed(1)} KiB)`,
        ratio: fmtRatio(m / ref),
        target: `< ${TARGET_MS} ms`,
        met: m < TARGET_MS ? 'yes' : 'no',
      },
    ],
    notes: [
      `Metrics: ${scrapes} GETs each of /metrics, /api/status and /health in turn, keep-alive, timed to the last byte, after 20 of each to warm up. ` +
        `/metrics median ${fmt(m)}, p90 ${fmt(quantile(times.metrics, 0.9))}, max ${fmt(Math.max(...times.metrics))}; ` +
        `/api/status ${fmt(ref)}; /health ${fmt(median(times.health))} (HTTP alone). ` +
        `The exposition rendered in process (status report + prom-client, default process metrics included): median ${fmt(median(renders))}.`,
    ],
  }
}
