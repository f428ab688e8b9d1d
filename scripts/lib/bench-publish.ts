// Scenario 2: publishing latency. The daemon fetches big CCSDS GRIB2 files, one after the
// other, from a local upstream limited to 50 MB/s; for each we time the last byte arriving and
// the item appearing in /rss.xml, and report the median. Reference: what a download-then-
// process pipeline does after the last byte (validate the whole file with GDAL, then hash it
// into a torrent with mktorrent), on the same file.
import { stat } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { loadConfig } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import { xml } from '../../src/feed.ts'
import { createLogger } from '../../src/log.ts'
import { validateGrib } from '../../src/validate.ts'
import { FIXTURE_CACHE, startUpstream } from './bench-services.ts'
import { arpegeKey } from './fake-upstream.ts'
import { fixtureFor } from './grib-fixtures.ts'
import { fmtMB, fmtMBs, fmtMs, fmtRatio, freePort, MB, progress, type Resources, type ScenarioResult } from './bench-util.ts'

const RUN = '2026-11-23T00:00:00Z'
/** Three files of one run, fetched one at a time (fetch.concurrency 1): three latency samples. */
const RANGES = ['000H012H', '013H024H', '025H036H']
const RATE = 50 * MB

/** What we learn about one file while the daemon handles it (performance.now() times). */
interface Timeline {
  fileName: string
  size: number
  firstByte: number
  lastByte?: number
  validated?: number
  stored?: number
  seeding?: number
  publishedEvent?: number
  inRss?: number
  infoHash?: string
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export async function benchPublishing(res: Resources, quick: boolean): Promise<ScenarioResult> {
  // One copy of 8 CCSDS bands on the EURAT01 grid is about 4.67 MB.
  const bands = 8
  const repeat = quick ? 13 : 107
  progress(`publishing: GRIB2 fixture (${bands} bands × ${repeat}, cached in ${FIXTURE_CACHE})`)
  const fixture = await fixtureFor(FIXTURE_CACHE, `arpege-ccsds-b${bands}-r${repeat}.grib2`, { bands, repeat })
  const fixtureSize = (await stat(fixture)).size

  // Paced at 50 MB/s by a process of its own, not by the daemon's event loop.
  const keys = RANGES.map((range) => arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }))
  const bucketUrl = await startUpstream(res, fixture, RATE, keys)

  const dataDir = await res.tempDir('gribswarm-bench-publish-')
  const httpPort = await freePort()
  const trackerPort = await freePort()
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: RANGES, lookbackRuns: 1 },
      fetch: { concurrency: 1, connectTimeoutMs: 5000, idleTimeoutMs: 10_000, transferAttempts: 2, validationAttempts: 1, backoffMs: 100, maxBackoffMs: 500 },
      tracker: { host: '127.0.0.1', port: trackerPort },
      seed: { port: 0, dht: false, utp: false },
      http: { host: '127.0.0.1', port: httpPort, publicBaseUrl: `http://127.0.0.1:${httpPort}` },
      disk: { budgetBytes: 100_000_000_000, minFreeBytes: 0 },
      log: { level: 'warn' },
    },
  })

  const files = new Map<string, Timeline>() // by relPath
  // The daemon's own log lines mark the steps after the last byte (warnings and errors still shown).
  const log = createLogger('debug', (line) => {
    const now = performance.now()
    const file = files.get(/ relPath=(\S+)/.exec(line)?.[1] ?? '')
    if (file && line.includes(' DEBUG valid GRIB ')) file.validated ??= now
    else if (file && line.includes(' INFO  published ')) file.stored ??= now
    else if (file && line.includes(' DEBUG seeding ')) file.seeding ??= now
    else if (/ (WARN |ERROR) /.test(line)) process.stderr.write(`${line}\n`)
  })
  const daemon = await Daemon.start(config, log, { schedule: false })
  let stopped = false
  const stopDaemon = async () => {
    if (stopped) return
    stopped = true
    await daemon.stop()
  }
  res.defer('stop the in-process daemon', stopDaemon)
  const rssUrl = `${config.http.publicBaseUrl}/rss.xml`
  const deadline = Date.now() + (quick ? 90_000 : 300_000)

  /** From a file's last byte on, polls the feed as fast as it answers (every ~5 ms) until the file is in it. */
  const watchFeed = async (file: Timeline): Promise<void> => {
    while (file.inRss === undefined) {
      if (Date.now() > deadline) throw new Error(`${file.fileName} did not appear in ${rssUrl} in time (pass: ${JSON.stringify(daemon.passState)})`)
      const text = await fetch(rssUrl).then((r) => r.text())
      if (text.includes(`<fileName>${xml(file.fileName)}</fileName>`)) {
        file.inRss = performance.now()
        file.infoHash = /<infoHash>([0-9a-f]{40})<\/infoHash>/.exec(text.slice(text.indexOf(`<fileName>${xml(file.fileName)}</fileName>`)))?.[1]
      } else {
        await delay(5)
      }
    }
  }
  const watchers: Array<Promise<void>> = []

  progress(`publishing: daemon fetching ${RANGES.length} × ${fmtMB(fixtureSize)}, one at a time, at ${fmtMBs(RATE)}`)
  const report = await daemon.runPass(
    { runs: [RUN] },
    {
      progress(candidate, received, total) {
        const now = performance.now()
        let file = files.get(candidate.relPath)
        if (!file) files.set(candidate.relPath, (file = { fileName: candidate.fileName, size: total ?? 0, firstByte: now }))
        if (total !== undefined && received === total && file.lastByte === undefined) {
          file.lastByte = now
          file.size = total
          const watcher = watchFeed(file)
          watcher.catch(() => {}) // awaited below; this only keeps an early failure from being unhandled
          watchers.push(watcher)
        }
      },
      finished(candidate, outcome) {
        const file = files.get(candidate.relPath)
        if (file && outcome === 'published') file.publishedEvent = performance.now()
      },
    },
  )
  if (!report || report.published.length !== RANGES.length) {
    throw new Error(`the pass published ${report?.published.length ?? 0} of ${RANGES.length} files: ${JSON.stringify(report?.failed ?? daemon.passState.lastError)}`)
  }
  await Promise.all(watchers)

  const timelines = [...files.values()]
  for (const item of report.published) {
    const file = files.get(item.relPath)
    if (!file?.inRss || file.lastByte === undefined) throw new Error(`no timing for ${item.relPath}`)
    if (file.infoHash !== item.infoHash) throw new Error(`the feed lists ${file.fileName} with infohash ${file.infoHash}, published as ${item.infoHash}`)
  }
  const latencies = timelines.map((f) => f.inRss! - f.lastByte!)
  const latencyMs = median(latencies)
  const size = timelines[0]!.size
  const downloadMs = median(timelines.map((f) => f.lastByte! - f.firstByte))
  const nominalDownloadMs = (size / RATE) * 1000
  const budgetMs = 0.1 * nominalDownloadMs
  const typical = timelines.find((f) => f.inRss! - f.lastByte! === latencyMs) ?? timelines[0]!
  const since = (at: number | undefined) => (at === undefined ? '?' : `+${Math.round(at - typical.lastByte!)}`)
  const breakdown =
    `GRIB validated (fsync, MD5 check, last messages decoded) ${since(typical.validated)} ms, ` +
    `stored (torrent, journal, rename, sidecar) ${since(typical.stored)} ms, seeder ready ${since(typical.seeding)} ms, ` +
    `'published' event ${since(typical.publishedEvent)} ms, seen in RSS ${since(typical.inRss)} ms`
  progress(
    `publishing: downloads took ${timelines.map((f) => fmtMs(f.lastByte! - f.firstByte)).join(', ')} ` +
      `(median ${fmtMBs(size / (downloadMs / 1000))}); last byte → RSS ${latencies.map(fmtMs).join(', ')}`,
  )
  progress(`publishing: median file, after its last byte: ${breakdown}`)

  // The reference, on one of the same files (warm page cache, daemon stopped so it has the machine).
  const item = report.published[0]!
  const dataPath = daemon.store.dataPath(item.relPath)
  const pieceLength = item.pieceLength
  await stopDaemon()
  progress('publishing: reference: validateGrib() on the whole file, then mktorrent')
  const refDir = await res.tempDir('gribswarm-bench-mktorrent-')
  const t0 = performance.now()
  const grib = await validateGrib(dataPath)
  const t1 = performance.now()
  const mk = await res.run(
    'mktorrent',
    ['-l', String(Math.log2(pieceLength)), '-t', String(cpus().length), '-o', join(refDir, 'reference.torrent'), dataPath],
    120_000,
  )
  const t2 = performance.now()
  if (mk.code !== 0) throw new Error(`mktorrent failed: ${mk.stdout} ${mk.stderr}`)
  const referenceMs = t2 - t0
  progress(`publishing: reference ${fmtMs(referenceMs)} (validate ${fmtMs(t1 - t0)}, ${grib.messages} messages; mktorrent ${fmtMs(t2 - t1)})`)

  return {
    rows: [
      {
        scenario: `Publishing latency, last byte → item in RSS, ${fmtMB(size)} CCSDS GRIB2 at ${fmtMBs(RATE)} (median of ${timelines.length})`,
        gribswarm: `${fmtMs(latencyMs)} (${((latencyMs / nominalDownloadMs) * 100).toFixed(1)} % of ${fmtMs(nominalDownloadMs)})`,
        reference: `${fmtMs(referenceMs)} (validate after download + mktorrent)`,
        ratio: fmtRatio(latencyMs / referenceMs),
        target: `≤ 10 % of download = ${fmtMs(budgetMs)}`,
        met: latencyMs <= budgetMs ? 'yes' : 'no',
      },
    ],
    notes: [
      `Publishing: ${timelines.length} files of ${fmtMB(size)} (${grib.messages} GRIB messages, piece length ${pieceLength / 1024} KiB) fetched one at a time; ` +
        `last byte → RSS ${latencies.map(fmtMs).join(', ')}. Measured downloads ${timelines.map((f) => fmtMs(f.lastByte! - f.firstByte)).join(', ')} ` +
        `(median ${fmtMBs(size / (downloadMs / 1000))}: the rate-limited upstream and the daemon share ${cpus().length} cores); the target uses the nominal ${fmtMs(nominalDownloadMs)} at ${fmtMBs(RATE)}. ` +
        `Median file after its last byte: ${breakdown}. ` +
        `Reference after download: validateGrib ${fmtMs(t1 - t0)} + mktorrent -t ${cpus().length} ${fmtMs(t2 - t1)}, i.e. ${fmtRatio(referenceMs / latencyMs)} gribswarm's latency.`,
    ],
  }
}
