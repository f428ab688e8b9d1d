// Scenario "dashboard": what the status page's 24 h history costs. Target: < 5 MB of resident memory.
//   Resident: the real daemon (a child process, as memory.ts runs it) started over a data
//   directory whose history.json holds a full day (1440 samples, 2000 publish latencies), the page
//   and /api/history served a few dozen times, against the same daemon started with no history
//   and served the same requests: the difference of their VmRSS, each the median of a few reads
//   after the load.
//   Heap: in this process, the V8 heap History retains with a full day of samples and
//   latencies (after a forced GC), against this process's heap before it.
//   Answer: /api/history with a full day, its size and time, against /api/status on the same daemon.
import { setTimeout as delay } from 'node:timers/promises'
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import { join } from 'node:path'
import { Events } from '../../src/events.ts'
import { History, MAX_LATENCIES, MAX_SAMPLES, type HistoryReport } from '../../src/history.ts'
import { writeFileAtomic } from '../../src/store.ts'
import { daemonCommand, startDaemon, writeDaemonConfig, type DaemonHandle, type StatusReport } from '../../test/kit/daemon.ts'
import { FakeUpstream } from '../../test/kit/fake-upstream.ts'
import { median, residentBytes } from '../../test/kit/measure.ts'
import { itemRecord, statusReport } from '../../test/kit/records.ts'
import { fmtMB, fmtMs, MB, progress, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const TARGET = 5 * MB

/** A full day of history as the daemon writes it: one sample a minute up to now, realistic values. */
export function fullHistory(now = Date.now()): HistoryReport {
  const t0 = Math.floor(now / 1000) - (MAX_SAMPLES - 1) * 60
  const samples: HistoryReport['samples'] = {
    t: [],
    bittorrentBytes: [],
    httpBytes: [],
    deliveredBytes: [],
    peers: [],
    seeders: [],
    leechers: [],
    diskUsedBytes: [],
    diskBudgetBytes: [],
    failures: [],
  }
  for (let i = 0; i < MAX_SAMPLES; i++) {
    samples.t.push(t0 + i * 60)
    samples.bittorrentBytes.push(Math.round(1e9 * Math.random()))
    samples.httpBytes.push(Math.round(1e8 * Math.random()))
    samples.deliveredBytes.push(Math.round(5e9 * Math.random()))
    samples.peers.push(Math.round(200 * Math.random()))
    samples.seeders.push(Math.round(150 * Math.random()))
    samples.leechers.push(Math.round(80 * Math.random()))
    samples.diskUsedBytes.push(Math.round(3e10 + 1e10 * Math.random()))
    samples.diskBudgetBytes.push(40e9)
    samples.failures.push(i % 97 === 0 ? 1 : 0)
  }
  const latency: HistoryReport['latency'] = { t: [], seconds: [], file: [] }
  for (let i = 0; i < MAX_LATENCIES; i++) {
    latency.t.push(t0 + Math.floor((i * (MAX_SAMPLES - 1) * 60) / MAX_LATENCIES))
    latency.seconds.push(300 + Math.round(1200 * Math.random()))
    latency.file.push(
      `arpege__01__SP1__${String(i % 103).padStart(3, '0')}H${String((i % 103) + 11).padStart(3, '0')}H__2026-11-23T000000Z.grib2`,
    )
  }
  return { version: 1, intervalSeconds: 60, samples, latency }
}

/** Serves the dashboard's requests `rounds` times, then the median VmRSS of a few reads. */
async function servedRss(daemon: DaemonHandle, rounds: number): Promise<{ started: number; served: number }> {
  const base = daemon.setup.publicBaseUrl
  const started = await medianRss(daemon.pid)
  for (let i = 0; i < rounds; i++) {
    for (const path of ['/', '/api/history', '/api/status', '/static/status.js', '/static/uPlot.iife.min.js']) {
      const response = await fetch(`${base}${path}`)
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`)
      await response.arrayBuffer()
    }
  }
  return { started, served: await medianRss(daemon.pid) }
}

/** The median of 8 reads of VmRSS, 250 ms apart. */
async function medianRss(pid: number): Promise<number> {
  const reads: number[] = []
  for (let i = 0; i < 8; i++) {
    reads.push((await residentBytes(pid)) ?? 0)
    await delay(250)
  }
  return median(reads)
}

async function timed(url: string, times: number): Promise<{ ms: number; bytes: number }> {
  const ms: number[] = []
  let bytes = 0
  for (let i = 0; i < times; i++) {
    const started = performance.now()
    bytes = (await (await fetch(url)).arrayBuffer()).byteLength
    ms.push(performance.now() - started)
  }
  return { ms: median(ms), bytes }
}

/** The V8 heap History retains with a full day, in this process: forced GCs before and after. */
async function historyHeap(dir: string): Promise<{ before: number; retained: number }> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heap = () => {
    gc()
    gc()
    const usage = process.memoryUsage()
    return usage.heapUsed + usage.external + usage.arrayBuffers
  }
  const before = heap()
  const full = fullHistory()
  // Filled through its public paths: a status report a minute, a published event a latency.
  let clock = full.samples.t[0]! * 1000
  const events = new Events()
  const history = new History({ file: join(dir, 'history.json'), events, status: async () => statusReport(), now: () => clock })
  let bittorrent = 0
  for (let i = 0; i < MAX_SAMPLES; i++) {
    clock = full.samples.t[i]! * 1000
    bittorrent += full.samples.bittorrentBytes[i]!
    history.add(statusReport({ seeder: { port: 1, torrents: 40, rehashed: 0, uploaded: bittorrent } }))
  }
  await history.start() // no file yet: it keeps what it holds, and listens
  for (let i = 0; i < MAX_LATENCIES; i++) {
    const publishedAt = new Date(full.latency.t[i]! * 1000).toISOString()
    const upstreamMtime = new Date((full.latency.t[i]! - full.latency.seconds[i]!) * 1000).toISOString()
    events.emit('published', { item: itemRecord({ fileName: full.latency.file[i]!, publishedAt, upstreamMtime }), from: 'upstream' })
  }
  const retained = heap() - before
  const { samples, latencies } = history.status()
  await history.stop()
  if (samples !== MAX_SAMPLES || latencies !== MAX_LATENCIES) throw new Error(`history not filled: ${samples}, ${latencies}`)
  return { before, retained }
}

export async function benchDashboard({ res, quick, daemon: runner }: ScenarioContext): Promise<ScenarioResult> {
  const rows: Row[] = []
  const notes: string[] = []
  const rounds = quick ? 5 : 30

  const heap = await historyHeap(await res.tempDir('gribswarm-bench-history-'))
  progress(`dashboard: History with ${MAX_SAMPLES} samples and ${MAX_LATENCIES} latencies retains ${fmtMB(heap.retained)} of heap`)
  rows.push({
    scenario: `dashboard: heap retained by the history (${MAX_SAMPLES} samples, ${MAX_LATENCIES} latencies)`,
    gribswarm: fmtMB(heap.retained),
    reference: `${fmtMB(heap.before)} (this process's heap before)`,
    ratio: `${((100 * heap.retained) / heap.before).toFixed(1)} %`,
    target: `< ${fmtMB(TARGET)}`,
    met: heap.retained < TARGET ? 'yes' : 'no',
  })

  const upstream = new FakeUpstream()
  await upstream.start()
  res.defer('stop the empty upstream', () => upstream.stop())
  const command = await daemonCommand(res, runner)
  const ready = {
    what: 'the daemon',
    check: (s: StatusReport) => s.pass.lastFinishedAt !== undefined || !s.pass.running,
    timeoutMs: 60_000,
  }
  const setup = (name: string) =>
    writeDaemonConfig(res, `dashboard-${name}`, {
      source: { bucketUrl: upstream.bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H'], lookbackRuns: 1 },
    })

  // Daemons with and without a history, interleaved (the noise of VmRSS between two identical
  // daemons is of the order of the target): the median of each kind.
  const pairs = quick ? 1 : 3
  const rss: Record<'empty' | 'full', number[]> = { empty: [], full: [] }
  let timing: { history: { ms: number; bytes: number }; status: { ms: number }; page: { ms: number } } | undefined
  progress(
    `dashboard: ${pairs} daemons with no history and ${pairs} with a full day (${command.how}), each served the page's requests ${rounds} times`,
  )
  for (let pair = 0; pair < pairs; pair++) {
    for (const kind of ['empty', 'full'] as const) {
      const daemonSetup = await setup(`${kind}-${pair}`)
      if (kind === 'full') await writeFileAtomic(join(daemonSetup.dataDir, 'history.json'), JSON.stringify(fullHistory()))
      const daemon = await startDaemon(res, command, daemonSetup, ready)
      const base = daemonSetup.publicBaseUrl
      if (kind === 'full') {
        const served = (await (await fetch(`${base}/api/history`)).json()) as HistoryReport
        if (served.samples.t.length < MAX_SAMPLES - 1 || served.latency.t.length !== MAX_LATENCIES) {
          throw new Error(`the full history was not restored: ${served.samples.t.length} samples, ${served.latency.t.length} latencies`)
        }
      }
      const measured = await servedRss(daemon, rounds)
      rss[kind].push(measured.served)
      progress(
        `dashboard: ${kind === 'full' ? 'a full day' : 'no history'}: VmRSS ${fmtMB(measured.started)} started, ${fmtMB(measured.served)} after the requests`,
      )
      if (kind === 'full' && pair === pairs - 1) {
        timing = {
          history: await timed(`${base}/api/history`, rounds),
          status: await timed(`${base}/api/status`, rounds),
          page: await timed(`${base}/`, rounds),
        }
      }
      await daemon.stop()
    }
  }
  const emptyRss = median(rss.empty)
  const fullRss = median(rss.full)
  const noise = Math.max(...rss.empty) - Math.min(...rss.empty)
  const added = fullRss - emptyRss
  progress(`dashboard: VmRSS ${fmtMB(fullRss)} with a full history, ${fmtMB(emptyRss)} without (medians): ${fmtMB(added)} added`)
  rows.push({
    scenario: `dashboard: resident memory a full day of history adds, page and /api/history served (median of ${pairs})`,
    gribswarm: `${fmtMB(added)} (${fmtMB(fullRss)} in all)`,
    reference: `${fmtMB(emptyRss)} (the daemon with no history, same requests; spread ${fmtMB(noise)})`,
    ratio: `${((100 * added) / emptyRss).toFixed(1)} %`,
    target: `< ${fmtMB(TARGET)}`,
    met: added < TARGET ? 'yes' : 'no',
  })
  const { history, status, page } = timing!
  rows.push({
    scenario: `dashboard: /api/history with a full day (${(history.bytes / 1000).toFixed(0)} kB)`,
    gribswarm: fmtMs(history.ms),
    reference: `${fmtMs(status.ms)} (/api/status, same daemon); the page ${fmtMs(page.ms)}`,
    ratio: `${(history.ms / status.ms).toFixed(1)}×`,
    target: 'n/a',
    met: 'n/a',
  })
  notes.push(
    `dashboard: VmRSS (each daemon's the median of 8 reads) after ${rounds} rounds of the page's requests (/, /api/history, /api/status, status.js, uPlot), ` +
      `each daemon started over an empty bucket (${command.how}); the heap figure is this process's V8 heap after forced GCs.`,
  )
  return { rows, notes }
}
