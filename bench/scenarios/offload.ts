// Scenario "offload": how much a small origin capped at 10 MB/s upload has
// to send, and how long its clients wait, when N libtorrent clients start together on one
// ~257 MB CCSDS GRIB2 file (N = 8 and 32; 4 and a ~33 MB file in quick mode). The origin is, in
// turn and on the same file, .torrent and tracker:
//   - gribswarm: the real daemon as a child process, which fetched and published the file, its
//     uplink capped with uplink.bytesPerSec (BitTorrent and HTTP together);
//   - transmission-daemon and qbittorrent-nox seeding the very same file, capped the same way;
//   - nginx over HTTP, each connection limited to cap / N so that the N together get the cap.
// The tracker is always the code and port in the .torrent's announce URLs: the daemon's own
// while gribswarm seeds, and the same src/tracker.ts on the same port, started on its own in this
// process, while the daemon is stopped and a reference tool seeds (so the daemon never seeds to a
// reference's clients). In full mode, one extra run: gribswarm's origin with two mirrors
// following it over AMQP, N = 8, against the origin alone.
import { randomBytes } from 'node:crypto'
import { readdir, rm, stat, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import bencode from 'bencode'
import { silentLogger } from '../../src/log.ts'
import { recentRuns } from '../../src/source.ts'
import { Tracker } from '../../src/tracker.ts'
import {
  daemonCommand,
  startDaemon,
  writeDaemonConfig,
  type DaemonCommand,
  type DaemonHandle,
  type DaemonSetup,
} from '../../test/kit/daemon.ts'
import { arpegeKey } from '../../test/kit/fake-upstream.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { cpuSeconds } from '../../test/kit/measure.ts'
import { LT_SCRIPTS } from '../../test/kit/peers.ts'
import type { Resources } from '../../test/kit/resources.ts'
import { waitFor } from '../../test/kit/wait.ts'
import { writeOffloadChart, type OffloadRun } from '../lib/offload-chart.ts'
import { startNginx, startQbittorrent, startTransmission, type ReferenceSeeder } from '../lib/references.ts'
import { BENCH_BROKER, ensureBroker, FIXTURE_CACHE, startUpstream } from '../lib/services.ts'
import { fmtMB, fmtRatio, MB, progress, resultsDir, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const CAP = 10 * MB
const [UPLOAD_TARGET, TIME_TARGET] = [1.5, 1.3]

/** The published file every origin serves: gribswarm's .torrent and the data file it published. */
interface Target {
  torrentPath: string
  infoHash: string
  /** the data file, inside the origin daemon's data directory */
  dataPath: string
  size: number
  trackerPort: number
}

interface Origin {
  tool: string
  pids: number[]
  /** payload bytes sent so far, by the origin's own counter */
  uploaded: () => Promise<number>
  /** how long the counter may lag behind the bytes (qBittorrent refreshes it every 1.5 s) */
  lagMs: number
}

/** Polls the tracker's scrape until it counts a seeder: the origin has announced, clients will find it. */
async function waitForSeeder(trackerPort: number, infoHash: string, who: string): Promise<void> {
  const hashParam = infoHash.replace(/../g, (byte) => `%${byte}`)
  await waitFor(
    `${who} to announce itself as a seeder to the tracker on port ${trackerPort}`,
    async () => {
      const response = await fetch(`http://127.0.0.1:${trackerPort}/scrape?info_hash=${hashParam}`, { signal: AbortSignal.timeout(2000) })
      const files =
        (bencode.decode(new Uint8Array(await response.arrayBuffer())) as { files?: Record<string, { complete?: number }> }).files ?? {}
      return Object.values(files).some((swarm) => (swarm.complete ?? 0) >= 1)
    },
    60_000,
    100,
  )
}

/** N libtorrent clients (lt-swarm.py) start together on the target; returns when all are done or the deadline passed. */
async function swarm(res: Resources, origin: Origin, target: Target, clients: number, timeoutS: number): Promise<OffloadRun> {
  const dir = await res.tempDir('gribswarm-bench-offload-clients-')
  const before = await origin.uploaded()
  const cpuBefore = await Promise.all(origin.pids.map((pid) => cpuSeconds(pid)))
  progress(`offload: ${clients} libtorrent clients start together, origin ${origin.tool}`)
  const started = performance.now()
  const child = res.start('/usr/bin/python3', [
    LT_SCRIPTS.swarm,
    target.torrentPath,
    dir,
    String(clients),
    String(timeoutS),
    '--no-webseed',
  ])
  // Sampled while they run: the clients' CPU time (the process is gone once it has reported) and the origin's counter.
  let clientsCpu = 0
  const counter: Array<[number, number]> = []
  const sampler = setInterval(
    () => void cpuSeconds(child.child.pid!).then((seconds) => seconds !== undefined && (clientsCpu = seconds)),
    250,
  )
  const counterSampler = setInterval(
    () =>
      void origin.uploaded().then(
        (bytes) => counter.push([performance.now(), bytes]),
        () => {},
      ),
    1000,
  )
  const deadline = setTimeout(() => void child.stop(2000), (timeoutS + 60) * 1000)
  await child.exited
  clearInterval(sampler)
  clearInterval(counterSampler)
  clearTimeout(deadline)
  const wallSeconds = (performance.now() - started) / 1000
  const line = child.stdout.trim().split('\n').at(-1) ?? ''
  let result: { done: boolean; clients: Array<{ seconds: number | null; downloaded: number; uploaded: number; error: string | null }> }
  try {
    result = JSON.parse(line) as typeof result
  } catch {
    throw new Error(`lt-swarm.py (origin ${origin.tool}) printed no result: ${child.stdout.slice(-1000)} ${child.stderr.slice(-1000)}`)
  }
  const cpuAfter = await Promise.all(origin.pids.map((pid) => cpuSeconds(pid)))
  // Documented wait: a counter refreshed on a timer (qBittorrent) shows the last bytes one refresh later.
  if (origin.lagMs) await delay(origin.lagMs + 500)
  const originBytes = (await origin.uploaded()) - before
  if (result.done) {
    for (const [index, client] of result.clients.entries()) {
      if (client.error) throw new Error(`client ${index} (origin ${origin.tool}): ${client.error}`)
      const copy = await stat(join(dir, String(index), basename(target.dataPath)))
      if (copy.size !== target.size)
        throw new Error(`client ${index} (origin ${origin.tool}) wrote ${copy.size} bytes, expected ${target.size}`)
    }
  }
  // 32 copies of the file: give the disk back now rather than at the end of the benchmark.
  await rm(dir, { recursive: true, force: true })
  let peakRate = 0
  for (const [at, bytes] of counter) {
    const earlier = counter.find(([t]) => at - t >= 10_000 && at - t < 11_000)
    if (earlier) peakRate = Math.max(peakRate, (bytes - earlier[1]) / ((at - earlier[0]) / 1000))
  }
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0)
  return {
    tool: origin.tool,
    clients,
    clientSeconds: result.clients.map((c) => c.seconds).sort((a, b) => (a ?? Infinity) - (b ?? Infinity)),
    done: result.done,
    originBytes,
    clientsView: sum(result.clients.map((c) => c.downloaded)) - sum(result.clients.map((c) => c.uploaded)),
    peakRate,
    cpu: {
      origin: sum(cpuAfter.map((after, i) => (after ?? 0) - (cpuBefore[i] ?? 0))),
      clients: clientsCpu,
      wallSeconds,
    },
  }
}

/** The gribswarm origin: one daemon config, fetching the fixture from the local upstream, capped at CAP. */
async function originSetup(res: Resources, bucketUrl: string, name: string, notify?: { exchange: string }): Promise<DaemonSetup> {
  return writeDaemonConfig(res, name, {
    source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H'], lookbackRuns: 1 },
    uplink: { bytesPerSec: CAP },
    ...(notify ? { notify: { brokerUrl: BENCH_BROKER, exchange: notify.exchange, source: 'bench-origin' } } : {}),
  })
}

/** Starts the origin daemon and waits until it has published the file and announced it. */
async function startOrigin(
  res: Resources,
  command: DaemonCommand,
  setup: DaemonSetup,
  quick: boolean,
): Promise<{ daemon: DaemonHandle; target: Target }> {
  const daemon = await startDaemon(res, command, setup, {
    what: 'publishes the file',
    check: (s) => s.items.length === 1,
    timeoutMs: quick ? 120_000 : 300_000,
  })
  const item = (await daemon.status()).items[0]!
  const torrentPath = join(setup.dataDir, '..', `${basename(item.relPath)}.torrent`)
  await writeFile(torrentPath, Buffer.from(await (await fetch(item.torrentUrl)).arrayBuffer()))
  const dataPath = join(setup.dataDir, 'pub', item.relPath)
  const target = { torrentPath, infoHash: item.infoHash, dataPath, size: (await stat(dataPath)).size, trackerPort: setup.trackerPort }
  await waitForSeeder(setup.trackerPort, item.infoHash, 'the gribswarm daemon')
  return { daemon, target }
}

function daemonOrigin(daemon: DaemonHandle): Origin {
  return {
    tool: 'gribswarm',
    pids: [daemon.pid],
    // BitTorrent upload plus HTTP data bytes (plain and web seed).
    uploaded: async () => {
      const status = await daemon.status()
      return (status.items[0]?.uploaded ?? 0) + status.http.dataBytes + status.http.webSeedBytes
    },
    lagMs: 0,
  }
}

/** A reference BitTorrent client seeds the target, with the same tracker code on the same port. */
async function referenceRun(
  res: Resources,
  start: typeof startTransmission,
  target: Target,
  clients: number,
  timeoutS: number,
): Promise<{ run: OffloadRun; settings: string }> {
  const tracker = new Tracker({ host: '127.0.0.1', port: target.trackerPort }, { log: silentLogger })
  tracker.allow(target.infoHash)
  await tracker.start()
  res.defer(`stop the tracker on port ${target.trackerPort}`, () => tracker.stop())
  let seeder: ReferenceSeeder | undefined
  try {
    seeder = await start(res, { uploadLimitBytesPerSec: CAP })
    await seeder.seed(target.torrentPath, dirname(target.dataPath))
    await waitForSeeder(target.trackerPort, target.infoHash, seeder.name)
    const run = await swarm(
      res,
      { tool: seeder.name, pids: [seeder.pid], uploaded: seeder.uploaded, lagMs: seeder.statsLagMs },
      target,
      clients,
      timeoutS,
    )
    return { run, settings: seeder.settings }
  } finally {
    await seeder?.stop()
    await tracker.stop()
  }
}

/**
 * nginx serves the file to N curl clients at once, each connection limited to cap / N. A full run
 * takes N × file / cap (over 13 minutes for N = 32), so the aggregate rate is measured over a
 * window and the figures are extrapolated from it: every client gets the whole file from the
 * origin (N × the file) at the measured rate.
 */
async function httpRun(res: Resources, target: Target, clients: number, quick: boolean): Promise<{ run: OffloadRun; settings: string }> {
  const nginx = await startNginx(res, { root: dirname(target.dataPath), limitRateBytesPerSec: Math.floor(CAP / clients) })
  const dir = await res.tempDir('gribswarm-bench-offload-http-')
  const url = `${nginx.url}/${encodeURIComponent(basename(target.dataPath))}`
  progress(`offload: ${clients} curl clients start together on ${url} (limit_rate ${fmtMB(CAP / clients)}/s each)`)
  const started = performance.now()
  const curls = Array.from({ length: clients }, (_, i) => res.start('curl', ['-s', '-S', '-f', '-o', join(dir, String(i)), url]))
  const received = async () => {
    let total = 0
    for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size
    return total
  }
  // The window starts after nginx's head start (its allowance begins one second ahead) and the connections are up.
  const [warmupMs, windowMs] = quick ? [1500, 4000] : [2500, 20_000]
  await delay(warmupMs)
  const [t1, b1] = [performance.now(), await received()]
  await delay(windowMs)
  const [t2, b2] = [performance.now(), await received()]
  const failed = curls.find((curl) => curl.child.exitCode !== null)
  if (failed) throw new Error(`curl ${url} exited early (${failed.child.exitCode}): ${failed.stderr.slice(-500)}`)
  await Promise.all(curls.map((curl) => curl.stop(2000)))
  await nginx.stop()
  await rm(dir, { recursive: true, force: true })
  const seconds = (t2 - t1) / 1000
  const aggregateRate = (b2 - b1) / seconds
  const eachDone = (clients * target.size) / aggregateRate
  return {
    run: {
      tool: 'nginx (HTTP)',
      clients,
      clientSeconds: Array.from({ length: clients }, () => eachDone),
      done: true,
      originBytes: clients * target.size,
      window: { seconds, aggregateRate },
      cpu: undefined,
    },
    settings: `${nginx.settings}; ${clients} curl clients; measured ${((t2 - started) / 1000).toFixed(0)} s in all`,
  }
}

/** Issue 3's figure: a fresh origin and 2 mirrors following its AMQP notifications, N clients. */
async function mirrorsRun(res: Resources, command: DaemonCommand, bucketUrl: string, clients: number, timeoutS: number) {
  await ensureBroker(res)
  const exchange = `xpublic-bench-${randomBytes(4).toString('hex')}`
  const mirrors: DaemonHandle[] = []
  for (let i = 0; i < 2; i++) {
    const setup = await writeDaemonConfig(res, `offload-mirror${i + 1}`, {
      source: { enabled: false, bucketUrl: 'http://127.0.0.1:9', fallbackBucketUrls: [] },
      // Volunteers' mirrors are not capped. The web seed (the origin's HTTP) is only a late fallback.
      mirror: {
        brokers: [{ url: BENCH_BROKER, exchange, topics: ['v03.#'] }],
        concurrency: 1,
        downloadTimeoutSeconds: 600,
        webSeedAfterSeconds: 120,
      },
    })
    mirrors.push(
      await startDaemon(res, command, setup, {
        what: 'follows the origin broker',
        check: (s) => s.mirror?.following === 1,
        timeoutMs: 60_000,
      }),
    )
  }
  progress('offload: a fresh origin publishing, 2 mirrors following its notifications')
  const { daemon, target } = await startOrigin(
    res,
    command,
    await originSetup(res, bucketUrl, 'offload-meshed-origin', { exchange }),
    false,
  )
  const origin = daemonOrigin(daemon)
  const measured = await swarm(
    res,
    { ...origin, tool: 'gribswarm + 2 mirrors', pids: [daemon.pid, ...mirrors.map((m) => m.pid)] },
    target,
    clients,
    timeoutS,
  )
  // The clients' view counts what the mirrors sent too: it is no check of the origin's counter here.
  const run = { ...measured, clientsView: undefined }
  // A mirror still copying shows its upload under mirror.copying, a finished one under items.
  const mirrorUploads = await Promise.all(
    mirrors.map(async (m) => {
      const status = await m.status()
      return (status.items[0] ?? status.mirror?.copying[0])?.uploaded ?? 0
    }),
  )
  await waitFor(
    'every mirror to publish its copy',
    async () => (await Promise.all(mirrors.map((m) => m.status()))).every((s) => s.mirror?.copied === 1),
    120_000,
    500,
  )
  for (const d of [daemon, ...mirrors]) await d.stop()
  return { run, mirrorUploads }
}

export async function benchOffload({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const counts = quick ? [4] : [8, 32]
  const [bands, repeat] = quick ? [8, 7] : [8, 55] // ~33 MB or ~257 MB of CCSDS GRIB2 (4.67 MB per copy of 8 bands)
  progress(`offload: GRIB2 fixture (${bands} bands × ${repeat}, cached in ${FIXTURE_CACHE})`)
  const fixture = await fixtureFor(FIXTURE_CACHE, `arpege-ccsds-b${bands}-r${repeat}.grib2`, { bands, repeat })
  // The daemon's startup pass looks at the newest run: the upstream serves the file under it.
  const runTime = recentRuns(new Date(), [0, 6, 12, 18], 1)[0]!
  const key = arpegeKey({ run: runTime, grid: '01', pkg: 'SP1', range: '000H012H' })
  const bucketUrl = await startUpstream(res, fixture, 1000 * MB, [key])
  // Quick mode runs the daemon from src/ (tsx): compiling it would take longer than the runs.
  const command = await daemonCommand(res, quick ? 'tsx' : undefined)
  progress(`offload: gribswarm origin fetching and publishing the file (${command.how})`)
  const setup = await originSetup(res, bucketUrl, 'offload-origin')
  let { daemon, target } = await startOrigin(res, command, setup, quick)
  const { size } = target
  const ideal = size / CAP
  const timeoutS = Math.ceil(6 * ideal) + 60

  const runs = new Map<number, OffloadRun[]>()
  const settings = new Map<string, string>()
  for (const [index, clients] of counts.entries()) {
    // Each count gets a fresh daemon process (and so a fresh tracker); the first one is the daemon that just published.
    if (index > 0) {
      daemon = await startDaemon(res, command, setup, {
        what: 'seeds the published file again',
        check: (s) => s.items.length === 1,
        timeoutMs: 120_000,
      })
      await waitForSeeder(target.trackerPort, target.infoHash, 'the restarted gribswarm daemon')
    }
    const sameN: OffloadRun[] = [await swarm(res, daemonOrigin(daemon), target, clients, timeoutS)]
    await daemon.stop()
    // Quick mode leaves transmission out (its first unchoke alone waits up to 10 s): it keeps CI's run short, and
    // transmission still runs in the quick seeding scenario.
    for (const start of quick ? [startQbittorrent] : [startTransmission, startQbittorrent]) {
      const { run, settings: used } = await referenceRun(res, start, target, clients, timeoutS)
      sameN.push(run)
      settings.set(run.tool, used)
    }
    const http = await httpRun(res, target, clients, quick)
    sameN.push(http.run)
    settings.set(`${http.run.tool} N=${clients}`, http.settings)
    for (const run of sameN)
      progress(
        `offload: N=${clients}, ${run.tool}: origin sent ${fmtRatio(run.originBytes / size)} the file, last client ${describeLast(run)}`,
      )
    runs.set(clients, sameN)
  }
  const meshed = quick ? undefined : await mirrorsRun(res, command, bucketUrl, counts[0]!, timeoutS)

  const date = new Date()
  const chart = join(resultsDir(quick), 'offload.svg')
  await writeOffloadChart(chart, {
    title: `Origin offload: ${fmtMB(size)} CCSDS GRIB2, origin capped at ${fmtMB(CAP)}/s`,
    date,
    fileBytes: size,
    capBytesPerSec: CAP,
    // Issue 3's run with mirrors joins the panel with the same N.
    panels: counts.map((clients) => ({ clients, runs: [...runs.get(clients)!, ...(meshed?.run.clients === clients ? [meshed.run] : [])] })),
  })
  progress(`offload: chart written to ${chart}`)
  return report(runs, size, meshed, settings, quick)
}

function lastSeconds(run: OffloadRun): number | undefined {
  return run.done ? Math.max(...run.clientSeconds.map((s) => s ?? Infinity)) : undefined
}

function describeLast(run: OffloadRun): string {
  const last = lastSeconds(run)
  const finished = run.clientSeconds.filter((s) => s !== null).length
  return last === undefined
    ? `not all done (${finished} of ${run.clients} by the deadline)`
    : `after ${last.toFixed(1)} s${run.window ? ' (extrapolated)' : ''}`
}

/** The tool's name as the rows show it. */
const short = (tool: string) => tool.replace(/ [\d.]+$/, '')

function report(
  runs: Map<number, OffloadRun[]>,
  size: number,
  meshed: { run: OffloadRun; mirrorUploads: number[] } | undefined,
  settings: Map<string, string>,
  quick: boolean,
): ScenarioResult {
  const ideal = size / CAP
  const rows: Row[] = []
  const notes: string[] = []
  const losses: string[] = []
  for (const [clients, [ours, ...references]] of runs) {
    const setting = `N = ${clients} libtorrent clients start together on ${fmtMB(size)}, origin capped at ${fmtMB(CAP)}/s`
    const bytesRatio = ours!.originBytes / size
    rows.push({
      scenario: `Origin offload: bytes the origin sent / file size, lower is better (${setting})`,
      gribswarm: `${fmtRatio(bytesRatio)} the file`,
      reference: references.map((r) => `${short(r.tool)} ${fmtRatio(r.originBytes / size)}`).join('; '),
      ratio: references.map((r) => `${fmtRatio(ours!.originBytes / r.originBytes)} vs ${short(r.tool)}`).join('; '),
      target: `≤ ${UPLOAD_TARGET}×`,
      met: bytesRatio <= UPLOAD_TARGET ? 'yes' : 'no',
    })
    const ourLast = lastSeconds(ours!)
    rows.push({
      scenario: `Origin offload: last client done / (file size / cap), lower is better (${setting})`,
      gribswarm: timeCell(ours!, ideal),
      reference: references.map((r) => `${short(r.tool)} ${timeCell(r, ideal)}`).join('; '),
      ratio: references
        .map((r) => {
          const theirs = lastSeconds(r)
          return `${ourLast !== undefined && theirs !== undefined ? fmtRatio(ourLast / theirs) : 'n/a'} vs ${short(r.tool)}`
        })
        .join('; '),
      target: `≤ ${TIME_TARGET}× (${(TIME_TARGET * ideal).toFixed(1)} s)`,
      met: ourLast !== undefined && ourLast / ideal <= TIME_TARGET ? 'yes' : 'no',
    })
    for (const r of references) {
      if (ours!.originBytes > r.originBytes)
        losses.push(`N=${clients}: the origin sent ${fmtRatio(ours!.originBytes / r.originBytes)} what ${r.tool} sent`)
      const theirs = lastSeconds(r)
      if (ourLast === undefined || (theirs !== undefined && ourLast > theirs)) {
        losses.push(
          `N=${clients}: the last client was done ${ourLast === undefined ? 'never (deadline)' : `${(((ourLast - theirs!) / theirs!) * 100).toFixed(0)} % later`} than with ${r.tool}`,
        )
      }
    }
    notes.push(`Offload, N=${clients}: ` + [ours!, ...references].map((run) => runNote(run, size)).join(' '))
  }
  if (meshed) {
    const clients = meshed.run.clients
    const alone = runs.get(clients)![0]!
    const last = lastSeconds(meshed.run)
    const setting = `N = ${clients}, ${fmtMB(size)}, origin capped at ${fmtMB(CAP)}/s, 2 mirrors on the same machine`
    rows.push(
      {
        scenario: `Origin offload with mirrors: bytes the origin sent / file size (${setting})`,
        gribswarm: `${fmtRatio(meshed.run.originBytes / size)} the file (mirrors sent ${meshed.mirrorUploads.map(fmtMB).join(' and ')})`,
        reference: `${fmtRatio(alone.originBytes / size)} without mirrors (same run)`,
        ratio: fmtRatio(meshed.run.originBytes / alone.originBytes),
        target: `≤ ${UPLOAD_TARGET}×`,
        met: meshed.run.originBytes / size <= UPLOAD_TARGET ? 'yes' : 'no',
      },
      {
        scenario: `Origin offload with mirrors: last client done / (file size / cap) (${setting})`,
        gribswarm: timeCell(meshed.run, ideal),
        reference: `${timeCell(alone, ideal)} without mirrors (same run)`,
        ratio: last !== undefined && lastSeconds(alone) !== undefined ? fmtRatio(last / lastSeconds(alone)!) : 'n/a',
        target: `≤ ${TIME_TARGET}× (${(TIME_TARGET * ideal).toFixed(1)} s)`,
        met: last !== undefined && last / ideal <= TIME_TARGET ? 'yes' : 'no',
      },
    )
    notes.push(
      `Offload with 2 mirrors (a fresh origin, and 2 mirrors following its AMQP notifications; the mirrors are webtorrent daemons on the same 2 cores): ${runNote(meshed.run, size)} The mirrors sent ${meshed.mirrorUploads.map(fmtMB).join(' and ')}.`,
    )
  }
  notes.unshift(
    `Offload, how: the clients are libtorrent 2.0 sessions in one process (lt-swarm.py), each on its own loopback address (127.0.0.2, .3, ...: as N machines; ` +
      `qBittorrent accepts one connection per address by default and transmission keys peers by address, so with one shared address they would see a single peer), ` +
      `added paused and resumed together, TCP and uTP, tracker announces only (no DHT/LSD), web seeds removed so that every byte moves over BitTorrent; they keep seeding each other until the last is done, as real clients do. ` +
      `Times run from that start to each client's last verified piece; ideal = file / cap = ${ideal.toFixed(1)} s. ` +
      `Every origin uses gribswarm's .torrent and data file and the tracker in its announce URLs: the gribswarm daemon's own tracker while the daemon seeds; while a reference seeds, the daemon is stopped (so that it cannot seed too) ` +
      `and the same tracker code (src/tracker.ts) runs on the same port, started afresh for each run, as the daemon's is. Each origin announces itself as a seeder (checked by scrape) before the clients start. ` +
      `Origin bytes come from each origin's own counter (gribswarm /api/status, transmission uploadedEver, qBittorrent torrents/info uploaded); "clients' view" = what the clients downloaded minus what they uploaded to each other.`,
    `Offload, caps and settings: gribswarm uplink.bytesPerSec ${CAP} (BitTorrent and HTTP together), super-seeding (its default); ` +
      [...settings.entries()].map(([tool, used]) => `${tool}: ${used}`).join('; ') +
      '. ' +
      ([...settings.keys()].some((tool) => tool.startsWith('transmission'))
        ? 'transmission counts speed limits in kB of 1000 bytes: its counter rose by the cap per second (see the peak rates). '
        : '') +
      'Neither transmission (no such mode) nor qBittorrent (per torrent, off by default) super-seeds here.',
  )
  notes.push(
    losses.length
      ? `Offload: where gribswarm loses: ${losses.join('; ')}.`
      : 'Offload: gribswarm sent no more bytes and finished no later than any reference at every N.',
  )
  if (quick) {
    notes.push(
      `Offload (quick mode): N = 4 on a ${fmtMB(size)} file, where start-up delays (python, tracker announces, a seeder's first unchoke) weigh more than on the full-size file; ` +
        'transmission-daemon is left out to keep the run short (its first unchoke alone can wait 10 s); the full mode has it.',
    )
  }
  return { rows, notes }
}

function timeCell(run: OffloadRun, ideal: number): string {
  const last = lastSeconds(run)
  return last === undefined ? describeLast(run) : `${last.toFixed(1)} s = ${fmtRatio(last / ideal)}${run.window ? ' (extrapolated)' : ''}`
}

function runNote(run: OffloadRun, size: number): string {
  const done = run.clientSeconds.filter((s): s is number => s !== null)
  if (run.window) {
    return (
      `${run.tool}: aggregate ${fmtMB(run.window.aggregateRate)}/s over ${run.window.seconds.toFixed(1)} s measured, ` +
      `so each client's ${fmtMB(size)} takes ${(done[0] ?? 0).toFixed(0)} s (extrapolated, not run to the end) and the origin sends ${run.clients} × the file.`
    )
  }
  const cores = cpus().length
  const cpu = run.cpu
    ? ` In those ${run.cpu.wallSeconds.toFixed(1)} s the clients used ${run.cpu.clients.toFixed(1)} s of CPU and the origin${run.tool.includes('mirrors') ? ' and mirrors' : ''} ${run.cpu.origin.toFixed(1)} s ` +
      `(${(((run.cpu.clients + run.cpu.origin) / (run.cpu.wallSeconds * cores)) * 100).toFixed(0)} % of ${cores} cores).`
    : ''
  return (
    `${run.tool}: clients done in ${done.length ? `${done[0]!.toFixed(1)}–${done.at(-1)!.toFixed(1)} s` : '-'}${run.done ? '' : ` (${done.length} of ${run.clients} by the deadline)`}; ` +
    `origin sent ${fmtMB(run.originBytes)} by its counter` +
    (run.clientsView !== undefined ? `, ${fmtMB(run.clientsView)} in the clients' view` : '') +
    (run.peakRate ? `, at most ${fmtMB(run.peakRate)}/s over 10 s` : '') +
    `.${cpu}`
  )
}
