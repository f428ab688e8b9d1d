// Scenario "smallbox": the daemon on a cheap VPS, pinned to one core (taskset -c 0) inside a
// 1 GiB memory cgroup (bench/lib/small-box.ts), each figure against a reference in the same box:
//   publish time:  the daemon as a child process, schedule.cron every second, a file made listable
//                  upstream (a hidden key shown) between two ticks; from the start of the pass that
//                  lists it to its item in /rss.xml, against curl's download of the same file from
//                  the same upstream at the same rate (100 Mbit/s, 1 Gbit/s), in a box of its own;
//   CPU-s per GB:  the daemon's process and its children (GDAL) over the same window, against curl's;
//   crash:         SIGKILL at 60 % of a large file (its .part under <dataDir>/tmp), restart, upstream
//                  bytes sent after the restart ÷ the file's size, against curl killed at 60 % and
//                  resumed with `curl -C -`;
//   memory:        the memory scenario (measureMemory) with both seeders in the box, counting their
//                  child processes;
//   tracker:       the tracker scenario (benchTracker) with both trackers in the box.
// The upstream (its own process), the libtorrent clients and the announce generator run outside the
// box, on the other core(s): the benchmark's process is pinned there for the scenario and they inherit it.
import { readdir, rm, stat } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { basename, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { loadConfig } from '../../src/config.ts'
import { xml } from '../../src/feed.ts'
import { expectedFiles, objectUrl, recentRuns } from '../../src/source.ts'
import { daemonCommand, startDaemon, writeDaemonConfig, type DaemonCommand, type DaemonHandle } from '../../test/kit/daemon.ts'
import { arpegeKey } from '../../test/kit/fake-upstream.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { median } from '../../test/kit/measure.ts'
import type { Resources } from '../../test/kit/resources.ts'
import { waitFor } from '../../test/kit/wait.ts'
import { FIXTURE_CACHE, startUpstreamProcess, type UpstreamProcess, type UpstreamRequest } from '../lib/services.ts'
import {
  BOX_CORE,
  openSmallBox,
  pinOutside,
  smallBoxUnavailable,
  treeCpuSeconds,
  treeResidentBytes,
  type SmallBox,
} from '../lib/small-box.ts'
import {
  fmtMB,
  fmtMBs,
  fmtMs,
  fmtRatio,
  freeDiskBytes,
  MB,
  progress,
  type Row,
  type ScenarioContext,
  type ScenarioResult,
} from '../lib/util.ts'
import { measureMemory } from './memory.ts'
import { benchTracker } from './tracker.ts'

const BANDS = 8
const RANGE = '000H012H'
/** The daemon looks at the newest 4 runs (config/default.json's run hours): a sample's run stays among them for 18 h. */
const RUN_HOURS = [0, 6, 12, 18]
const LOOKBACK = 4
const MBIT = 1_000_000 / 8
/** src/decoder.ts stops the daemon's GDAL process after a minute without a message to decode. */
const GDAL_IDLE_MS = 60_000
const TARGETS = { publishRatio: 1.05, cpuPerGB: 8, refetched: 0.45, idle: 150 * MB, load: 250 * MB }

interface Size {
  /** upstream rate, Mbit/s */
  mbit: number
  /** repeats of the 8 CCSDS messages (~4.66 MB each) */
  repeat: number
  samples: number
}

/** One file through the daemon: ms since the epoch, and CPU seconds of its process tree. */
interface DaemonSample {
  shownAt: number
  passStart: number
  get: UpstreamRequest
  inRss: number
  cpuSeconds: number
  /** the daemon's CPU seconds per second over the 2 s before it (its per-second passes over the bucket, its timers) */
  idleRate: number
  /** resident memory of the daemon's process and of its children (GDAL) just after */
  rss?: { process: number; children: number }
}

interface CurlSample {
  ms: number
  cpuSeconds: number
}

interface RateFigures {
  size: Size
  fileSize: number
  label: string
  daemon: DaemonSample[]
  curl: CurlSample[]
  boxPeak?: number
}

const fixtureOf = async (repeat: number) => {
  const name = `arpege-ccsds-b${BANDS}-r${repeat}.grib2`
  progress(`smallbox: GRIB2 fixture ${name} (cached in ${FIXTURE_CACHE})`)
  const path = await fixtureFor(FIXTURE_CACHE, name, { bands: BANDS, repeat })
  const size = (await stat(path)).size
  return { path, size, label: `${fmtMB(size)} CCSDS GRIB2` }
}

const urlKey = (url: string) => decodeURIComponent(url.split('?')[0]!.replace(/^\/+/, ''))
const sent = (requests: UpstreamRequest[]) => requests.reduce((sum, r) => sum + r.bytes, 0)
const pct = (fraction: number) => `${(fraction * 100).toFixed(1)} %`
const fmtRate = (mbit: number) => (mbit >= 1000 ? `${mbit / 1000} Gbit/s` : `${mbit} Mbit/s`)
const skippedRow = (name: string): Row => ({
  scenario: `Small box: ${name}`,
  gribswarm: 'skipped',
  reference: 'skipped',
  ratio: '-',
  target: '-',
  met: 'n/a',
})
const cpuPerGB = (cpuSeconds: number, bytes: number) => (cpuSeconds / bytes) * 1e9
/** The daemon's CPU seconds for the file: over the sample, less what it used idle at the rate measured just before. */
const netCpu = (d: DaemonSample) => d.cpuSeconds - d.idleRate * ((d.inRss - d.shownAt) / 1000)

/** A daemon config of the scenario's: the upstream's packages `pkg`, every default else (child daemon, tracker on, loopback). */
async function daemonSetup(res: Resources, name: string, bucketUrl: string, pkg: string, cron?: string) {
  const setup = await writeDaemonConfig(res, `smallbox-${name}`, {
    source: { bucketUrl, fallbackBucketUrls: [], packages: [pkg], ranges: [RANGE], runHours: RUN_HOURS, lookbackRuns: LOOKBACK },
    ...(cron ? { schedule: { cron } } : {}),
  })
  return { setup, config: loadConfig({ file: setup.configPath, env: {} }) }
}

/** The upstream's GET of `key` once it is over. */
async function finishedGet(upstream: UpstreamProcess, key: string, from: number, timeoutMs: number): Promise<UpstreamRequest> {
  return waitFor(
    `the upstream to have sent ${key}`,
    async () => (await upstream.requests(from)).find((r) => r.method === 'GET' && urlKey(r.url) === key && r.done),
    timeoutMs,
    20,
  )
}

/** One file through the daemon: shown upstream between two cron ticks, timed from the start of the pass that lists it to its item in the feed. */
async function daemonSample(
  daemon: DaemonHandle,
  upstream: UpstreamProcess,
  key: string,
  fileName: string,
  timeoutMs: number,
): Promise<DaemonSample> {
  // The idle daemon's CPU for 2 s, then between two ticks of the per-second cron, with no pass
  // running: the next tick's pass is the one that lists the file.
  const idleFrom = { cpu: (await treeCpuSeconds(daemon.pid)) ?? 0, at: Date.now() }
  await delay(2000)
  for (let tries = 0; ; tries++) {
    await delay((1450 - (Date.now() % 1000)) % 1000)
    if (!(await daemon.status()).pass.running) break
    if (tries > 10) throw new Error('the daemon is always in a pass')
  }
  const from = (await upstream.requests()).length
  const cpuBefore = (await treeCpuSeconds(daemon.pid)) ?? 0
  const shownAt = Date.now()
  const idleRate = (cpuBefore - idleFrom.cpu) / ((shownAt - idleFrom.at) / 1000)
  await upstream.show(key)
  const passStart = await waitFor(
    `the daemon to start the pass that lists ${key}`,
    async () => {
      const { pass } = await daemon.status()
      const at = pass.lastStartedAt ? Date.parse(pass.lastStartedAt) : 0
      return at > shownAt && (pass.running || (pass.lastReport?.published ?? 0) > 0) ? at : undefined
    },
    10_000,
    50,
  )
  // Nothing asks the daemon anything while it downloads; from the last byte on, the feed every 10 ms.
  const get = await finishedGet(upstream, key, from, timeoutMs)
  const marker = `<fileName>${xml(fileName)}</fileName>`
  const rssUrl = `${daemon.setup.publicBaseUrl}/rss.xml`
  const inRss = await waitFor(
    `${fileName} in ${rssUrl}`,
    async () => ((await (await fetch(rssUrl)).text()).includes(marker) ? Date.now() : undefined),
    timeoutMs,
    10,
  )
  const cpuSeconds = ((await treeCpuSeconds(daemon.pid)) ?? 0) - cpuBefore
  const rss = await treeResidentBytes(daemon.pid)
  if (get.status !== 200) throw new Error(`the daemon's GET of ${key} got HTTP ${get.status}`)
  if (get.at < passStart) throw new Error(`the daemon's GET of ${key} came before the pass it was timed from (a tick as the key was shown)`)
  return { shownAt, passStart, get, inRss, cpuSeconds, idleRate, rss }
}

/** curl's download of the file, in its own box. */
async function curlSample(
  res: Resources,
  box: SmallBox,
  url: string,
  out: string,
  fileSize: number,
  timeoutMs: number,
): Promise<CurlSample> {
  const run = await box.runTimed(res, 'curl', ['-sS', '--fail', '-o', out, '-w', '%{time_total} %{size_download}', url], timeoutMs)
  const [seconds, size] = run.stdout.trim().split(' ').map(Number) as [number, number]
  if (run.code !== 0 || size !== fileSize)
    throw new Error(`curl ${url} (exit ${run.code ?? run.signal}, ${size} bytes of ${fileSize}): ${run.stderr.slice(-1000)}`)
  await rm(out, { force: true })
  return { ms: seconds * 1000, cpuSeconds: run.cpuSeconds }
}

/** Publish time and CPU at one rate: the daemon and curl taking turns, each in its own box. */
async function publishAtRate(res: Resources, command: DaemonCommand, size: Size): Promise<RateFigures | string> {
  const { path, size: fileSize, label } = await fixtureOf(size.repeat)
  const rate = size.mbit * MBIT
  const dir = await res.tempDir('gribswarm-bench-smallbox-')
  const needed = 2 * size.samples * fileSize + 2_000_000_000
  const free = await freeDiskBytes(dir)
  if (free < needed) return `${fmtMB(free)} free on the disk of ${dir}, needs ${fmtMB(needed)}`

  const runs = recentRuns(new Date(), RUN_HOURS, LOOKBACK).slice(0, size.samples)
  const keys = runs.map((run) => arpegeKey({ run, grid: '01', pkg: 'SP1', range: RANGE }))
  const curlKey = `curl/${basename(path)}`
  const upstream = await startUpstreamProcess(res, path, rate, [curlKey], keys)
  const { setup, config } = await daemonSetup(res, `publish-${size.mbit}`, upstream.bucketUrl, 'SP1', '* * * * * *')
  const files = runs.map((run) => expectedFiles(config.source, run)[0]!)
  for (const [i, file] of files.entries())
    if (file.key !== keys[i]) throw new Error(`the daemon expects ${file.key}, the upstream has ${keys[i]}`)

  const daemonBox = await openSmallBox(res, `publish-${size.mbit}`)
  const curlBox = await openSmallBox(res, `curl-${size.mbit}`)
  progress(`smallbox: the daemon in the box (${daemonBox.how}), passes every second over an empty bucket`)
  const daemon = await startDaemon(daemonBox.resources(res), command, setup, {
    what: 'has listed the empty bucket',
    check: (s) => s.pass.lastFinishedAt !== undefined,
    timeoutMs: 120_000,
  })
  const timeoutMs = Math.max(120_000, (20 * fileSize * 1000) / rate)
  const figures: RateFigures = { size, fileSize, label, daemon: [], curl: [] }
  for (const [i, file] of files.entries()) {
    for (const which of i % 2 === 0 ? (['daemon', 'curl'] as const) : (['curl', 'daemon'] as const)) {
      progress(`smallbox: ${label} at ${size.mbit} Mbit/s, sample ${i + 1}/${files.length}: ${which}`)
      if (which === 'daemon') figures.daemon.push(await daemonSample(daemon, upstream, file.key, file.fileName, timeoutMs))
      else
        figures.curl.push(
          await curlSample(res, curlBox, objectUrl(upstream.bucketUrl, curlKey), join(dir, 'curl.grib2'), fileSize, timeoutMs),
        )
    }
    const [d, c] = [figures.daemon.at(-1)!, figures.curl.at(-1)!]
    progress(
      `smallbox: daemon ${fmtMs(d.inRss - d.passStart)} from pass start to RSS (download ${fmtMBs(fileSize / ((d.get.endedAt! - d.get.at) / 1000))}, ` +
        `${d.cpuSeconds.toFixed(1)} CPU-s, ${netCpu(d).toFixed(1)} net of its idle ${d.idleRate.toFixed(3)} CPU-s/s), curl ${fmtMs(c.ms)} (${c.cpuSeconds.toFixed(2)} CPU-s)`,
    )
  }
  figures.boxPeak = await daemonBox.peakBytes()
  await daemon.stop()
  await daemonBox.close()
  await curlBox.close()
  return figures
}

interface CrashFigures {
  label: string
  fileSize: number
  daemon: { killedAt: number; refetched: number; requests: number }
  curl: { killedAt: number; refetched: number; requests: number }
}

/** Waits until `path` holds `bytes` or more, polling every 10 ms. */
async function grownTo(path: () => Promise<string | undefined>, bytes: number, timeoutMs: number): Promise<void> {
  await waitFor(
    `a partial download of ${fmtMB(bytes)}`,
    async () => {
      const file = await path()
      const size = file
        ? await stat(file).then(
            (s) => s.size,
            () => 0,
          )
        : 0
      return size >= bytes || undefined
    },
    timeoutMs,
    10,
  )
}

/** SIGKILL at 60 % of a large file, then a restart: what the upstream sends after it, the daemon against curl -C -. */
async function crashAndResume(res: Resources, command: DaemonCommand, mbit: number, repeat: number): Promise<CrashFigures> {
  const { path, size: fileSize, label } = await fixtureOf(repeat)
  const rate = mbit * MBIT
  const timeoutMs = Math.max(120_000, (20 * fileSize * 1000) / rate)
  const at = Math.ceil(0.6 * fileSize)
  const [run] = recentRuns(new Date(), RUN_HOURS, 1) as [string]
  const key = arpegeKey({ run, grid: '01', pkg: 'SP2', range: RANGE })
  const curlKey = `curl/${basename(path)}`
  const upstream = await startUpstreamProcess(res, path, rate, [key, curlKey])
  const { setup } = await daemonSetup(res, 'crash', upstream.bucketUrl, 'SP2')
  const box = await openSmallBox(res, 'crash')
  const boxed = box.resources(res)
  const partFile = async () => {
    const tmp = join(setup.dataDir, 'tmp')
    const part = (await readdir(tmp).catch(() => [])).find((f) => f.endsWith('.part'))
    return part && join(tmp, part)
  }

  progress(`smallbox: crash: the daemon fetching ${label} at ${mbit} Mbit/s, SIGKILL at 60 %`)
  const first = await startDaemon(boxed, command, setup, { what: 'runs its first pass', check: (s) => s.pass.running, timeoutMs: 120_000 })
  await grownTo(partFile, at, timeoutMs)
  first.child.kill('SIGKILL')
  await first.exited
  const daemonKilledAt = (await stat((await partFile())!)).size
  const before = (await upstream.requests()).length
  progress(`smallbox: crash: killed at ${pct(daemonKilledAt / fileSize)}; restarting the daemon`)
  const second = await startDaemon(boxed, command, setup, { what: 'has published the file', check: (s) => s.items.length === 1, timeoutMs })
  await second.stop()
  const afterDaemon = await upstream.requests(before)
  if (afterDaemon.some((r) => !r.done)) throw new Error('the upstream is still answering the stopped daemon')
  const daemonRefetched = sent(afterDaemon)

  progress(`smallbox: crash: curl fetching ${label} at ${mbit} Mbit/s, SIGKILL at 60 %, then curl -C -`)
  const dir = await res.tempDir('gribswarm-bench-smallbox-crash-')
  const out = join(dir, 'curl.grib2')
  const url = objectUrl(upstream.bucketUrl, curlKey)
  const curl = boxed.start('curl', ['-sS', '--fail', '-o', out, url])
  await grownTo(async () => out, at, timeoutMs)
  curl.child.kill('SIGKILL')
  await curl.exited
  const curlKilledAt = (await stat(out)).size
  const curlBefore = (await upstream.requests()).length
  const resumed = await boxed.run('curl', ['-sS', '--fail', '-C', '-', '-o', out, url], timeoutMs)
  const resumedSize = (await stat(out)).size
  if (resumed.code !== 0 || resumedSize !== fileSize)
    throw new Error(
      `curl -C - ${url} (exit ${resumed.code ?? resumed.signal}, ${resumedSize} bytes of ${fileSize}): ${resumed.stderr.slice(-1000)}`,
    )
  const afterCurl = await upstream.requests(curlBefore)
  await box.close()
  return {
    label,
    fileSize,
    daemon: { killedAt: daemonKilledAt / fileSize, refetched: daemonRefetched / fileSize, requests: afterDaemon.length },
    curl: { killedAt: curlKilledAt / fileSize, refetched: sent(afterCurl) / fileSize, requests: afterCurl.length },
  }
}

const ROW_NAMES = [
  'publish time ÷ curl download time, 100 Mbit/s',
  'publish time ÷ curl download time, 1 Gbit/s',
  'CPU-s per GB',
  'bytes re-fetched after a crash',
  'resident memory, 40 torrents, idle',
  'resident memory, 40 torrents, peak under 16 clients',
  'tracker announces/s, HTTP',
  'tracker announces/s, UDP',
]

export async function benchSmallbox(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { res, quick } = ctx
  const unavailable = await smallBoxUnavailable(res)
  if (unavailable) {
    progress(`smallbox: skipped: ${unavailable}`)
    return {
      rows: ROW_NAMES.map(skippedRow),
      notes: [`Small box: skipped, ${unavailable}.`],
    }
  }
  // Quick: small files, one sample each. Full: ~279 MB at 100 Mbit/s, ~931 MB at 1 Gbit/s, median of 3.
  const sizes: Size[] = quick
    ? [
        { mbit: 100, repeat: 4, samples: 1 },
        { mbit: 1000, repeat: 8, samples: 1 },
      ]
    : [
        { mbit: 100, repeat: 60, samples: 3 },
        { mbit: 1000, repeat: 200, samples: 3 },
      ]
  const crash = quick ? { mbit: 100, repeat: 8 } : { mbit: 1000, repeat: 200 }
  const loadBefore = loadavg()[0]!
  const outside = await pinOutside(res)
  progress(`smallbox: the box is core ${BOX_CORE} and 1 GiB; the benchmark and what it starts outside the box run on core(s) ${outside}`)
  if (ctx.daemon !== 'tsx') progress('smallbox: compiling the daemon with tsconfig.build.json (into a temp directory)')
  const command = await daemonCommand(res, ctx.daemon)

  const rows: Row[] = []
  const notes: string[] = []
  const rates: RateFigures[] = []
  for (const size of sizes) {
    const figures = await publishAtRate(res, command, size)
    const name = `publish time ÷ curl download time, ${fmtRate(size.mbit)}`
    if (typeof figures === 'string') {
      rows.push(skippedRow(name))
      notes.push(`Small box, ${name}: skipped, ${figures}.`)
      continue
    }
    rates.push(figures)
    const publish = median(figures.daemon.map((d) => d.inRss - d.passStart))
    const curl = median(figures.curl.map((c) => c.ms))
    const ratio = publish / curl
    const gated = size.mbit >= 1000
    const of = figures.daemon.length > 1 ? `median of ${figures.daemon.length}` : '1 sample'
    rows.push({
      scenario: `Small box: ${name}, ${figures.label} (pass start → item in RSS, ${of}; lower is better)`,
      gribswarm: fmtMs(publish),
      reference: `${fmtMs(curl)} (curl, same core and rate)`,
      ratio: fmtRatio(ratio),
      target: gated ? `≤ ${TARGETS.publishRatio.toFixed(2)}×` : 'none (compared only)',
      met: gated ? (ratio <= TARGETS.publishRatio ? 'yes' : 'no') : 'n/a',
    })
    const each = figures.daemon
      .map((d, i) => {
        const dl = (d.get.endedAt! - d.get.at) / 1000
        return (
          `${fmtMs(d.inRss - d.passStart)} (pass start → GET ${fmtMs(d.get.at - d.passStart)}, download ${fmtMBs(figures.fileSize / dl)}, ` +
          `last byte → RSS ${fmtMs(d.inRss - d.get.endedAt!)}; ${d.cpuSeconds.toFixed(1)} CPU-s from the key shown to RSS, ${netCpu(d).toFixed(1)} net of the ` +
          `${d.idleRate.toFixed(3)} CPU-s/s it used idle just before) vs curl ${fmtMs(figures.curl[i]!.ms)} (${figures.curl[i]!.cpuSeconds.toFixed(2)} CPU-s)`
        )
      })
      .join('; ')
    const last = figures.daemon.at(-1)!.rss
    notes.push(
      `Small box, ${figures.label} at ${size.mbit} Mbit/s: ${each}. ` +
        (last
          ? `Just after its last file was in the feed, the daemon's process held ${fmtMB(last.process)} and its children (GDAL) ${fmtMB(last.children)}; `
          : '') +
        `its box peaked at ${figures.boxPeak === undefined ? '?' : fmtMB(figures.boxPeak)} (the cgroup's peak, page cache included).`,
    )
  }
  if (rates.length) {
    const all = rates.flatMap((r) => r.daemon.map((d) => cpuPerGB(netCpu(d), r.fileSize)))
    const curlAll = rates.flatMap((r) => r.curl.map((c) => cpuPerGB(c.cpuSeconds, r.fileSize)))
    const [g, c] = [median(all), median(curlAll)]
    const perRate = rates
      .map((r) => `${r.size.mbit} Mbit/s ${median(r.daemon.map((d) => cpuPerGB(netCpu(d), r.fileSize))).toFixed(1)}`)
      .join(', ')
    rows.push({
      scenario: `Small box: CPU-s per GB, fetched, validated and published (the daemon's process and its children, net of their idle rate; median of ${all.length}: ${perRate}; lower is better)`,
      gribswarm: `${g.toFixed(1)} CPU-s/GB`,
      reference: `${c.toFixed(2)} CPU-s/GB (curl's download)`,
      ratio: fmtRatio(g / c),
      target: `≤ ${TARGETS.cpuPerGB}`,
      met: g <= TARGETS.cpuPerGB ? 'yes' : 'no',
    })
  }

  const crashed = await crashAndResume(res, command, crash.mbit, crash.repeat)
  rows.push({
    scenario: `Small box: bytes re-fetched after a crash, SIGKILL at 60 % of ${crashed.label} at ${fmtRate(crash.mbit)}, restart (upstream bytes after the restart ÷ file size; lower is better)`,
    gribswarm: pct(crashed.daemon.refetched),
    reference: `${pct(crashed.curl.refetched)} (curl -C -)`,
    ratio: fmtRatio(crashed.daemon.refetched / crashed.curl.refetched),
    target: `≤ ${pct(TARGETS.refetched)}`,
    met: crashed.daemon.refetched <= TARGETS.refetched ? 'yes' : 'no',
  })
  notes.push(
    `Small box, crash: the daemon (schedule.cron as shipped, so only its startup pass) was killed with its .part at ${pct(crashed.daemon.killedAt)} of ${crashed.label}; ` +
      `restarted, it made ${crashed.daemon.requests} requests to the upstream (listings included) until the file was published: ${pct(crashed.daemon.refetched)} of the file's size. ` +
      `curl was killed with ${pct(crashed.curl.killedAt)} on disk; \`curl -C -\` then asked for the rest (${crashed.curl.requests} request): ${pct(crashed.curl.refetched)}. ` +
      `Bytes are what the upstream wrote to the sockets, headers included.`,
  )

  // A seeder's memory is its process's and its children's: the daemon's GDAL process, started by its
  // start-up check, ends after a minute without work. Full mode lets it end before the idle window.
  const memoryBox = await openSmallBox(res, 'memory')
  const children = new Map<number, { max: number; count: number }>() // by seeder pid, in the order measured
  const rss = async (pid: number) => {
    const tree = await treeResidentBytes(pid)
    const seen = children.get(pid) ?? { max: 0, count: 0 }
    if (tree) children.set(pid, { max: Math.max(seen.max, tree.children), count: Math.max(seen.count, tree.count) })
    return tree && tree.process + tree.children
  }
  const settleMs = quick ? undefined : GDAL_IDLE_MS + 5000
  const memory = await measureMemory(ctx, {
    seeders: memoryBox.resources(res),
    command,
    rss,
    settleMs,
    title: 'Small box: resident memory',
    targets: { idle: TARGETS.idle, load: TARGETS.load },
  })
  await memoryBox.close()
  rows.push(...memory.rows)
  const seeders = ['the daemon with an empty data directory', 'the daemon with 40 torrents (idle, then under load)', 'transmission-daemon']
  const childFigures = [...children.values()].map(
    ({ max, count }, i) => `${seeders[i] ?? `seeder ${i + 1}`}: ${count ? `${count} child process(es), at most ${fmtMB(max)}` : 'none'}`,
  )
  notes.push(
    `Small box, memory: both seeders in the box (${memoryBox.how}), one after the other. A seeder's resident memory is its process's VmRSS plus its child processes' ` +
      `(the daemon's GDAL process, which its start-up check starts and which ends after a minute without work); ` +
      (settleMs
        ? `each seeder settles ${settleMs / 1000} s before its idle window, so that the daemon's GDAL process has ended and the idle row is the daemon with nothing to do. `
        : "quick mode: the daemon's GDAL process is still there in the idle window. ") +
      `Child processes seen in the samples: ${childFigures.join('; ')}. ` +
      memory.notes.join(' '),
  )

  const trackerBox = await openSmallBox(res, 'tracker')
  const inBox = trackerBox.resources(
    res,
    (command, args) => command === 'opentracker' || args.some((a) => /tracker-server\.[jt]s$/.test(a)),
  )
  const tracker = await benchTracker({ res: inBox, quick })
  await inBox.cleanup()
  await trackerBox.close()
  if ((inBox.boxed.get('opentracker') ?? 0) < 2 || (inBox.boxed.get(process.execPath) ?? 0) < 2)
    throw new Error(`the tracker scenario did not start both trackers as expected: boxed ${JSON.stringify([...inBox.boxed])}`)
  for (const [protocol, prefix] of [
    ['HTTP', 'Tracker, HTTP announces/s'],
    ['UDP', 'Tracker, UDP (BEP 15) announces/s'],
  ] as const) {
    const row = tracker.rows.find((r) => r.scenario.startsWith(prefix))
    if (!row) throw new Error(`the tracker scenario has no row "${prefix}…": ${tracker.rows.map((r) => r.scenario).join('; ')}`)
    rows.push({ ...row, scenario: `Small box: tracker, ${protocol} announces/s${row.scenario.slice(prefix.length)}` })
  }
  const perCpu = tracker.rows
    .filter((r) => /announces per CPU-second/.test(r.scenario))
    .map((r) => `${r.scenario.split(',')[1]?.trim() ?? r.scenario}: ${r.gribswarm} vs ${r.reference} (${r.ratio})`)
  notes.push(
    `Small box, tracker: the tracker scenario as it is (bench/scenarios/tracker.ts: 5 runs, each tracker started fresh), with gribswarm's tracker and opentracker each in the box ` +
      `and the announce generator outside it. Announces per CPU-second of the tracker process in the same runs, which other work on core ${BOX_CORE} affects less: ` +
      `${perCpu.join('; ') || 'none reported'}.`,
  )
  const loadAfter = loadavg()[0]!
  notes.push(
    `Small box, noise: the box pins its processes to core ${BOX_CORE} but does not keep anything else off it; the 1-minute load average was ${loadBefore.toFixed(1)} ` +
      `as the scenario started and ${loadAfter.toFixed(1)} as it ended, on ${cpus().length} cores.`,
  )
  notes.unshift(
    `Small box: every measured process (the daemon, curl, transmission-daemon, the trackers) runs in a box: \`taskset -c ${BOX_CORE}\` and a 1 GiB memory cgroup of its own, ` +
      `entered before the process starts. The upstream (a FakeUpstream in its own process), the libtorrent clients and the announce generator run on core(s) ${outside}. ` +
      `Publish time: the daemon (${command.how}) passes every second over the upstream's bucket; a hidden key is shown between two ticks, and the time runs from the start of the pass ` +
      `that lists it (the daemon's /api/status pass.lastStartedAt) to its item in /rss.xml (polled every 10 ms from the last byte the upstream sent). curl: \`curl -sS --fail -o FILE\` of the same file ` +
      `from the same upstream at the same rate, its own time_total. CPU: the daemon's process and its children (/proc) from the key shown to the item in the feed, less their idle rate ` +
      `(measured over the 2 s before: the per-second passes of this setup, timers) times that window; curl's from the shell's \`times\`.`,
  )
  return { rows, notes }
}
