// Scenario "memory": resident memory of the real daemon (a child process,
// production settings: tracker on, uTP on, torrents with announce URLs and web seeds as the
// pipeline writes them) seeding 40 published files of 80 MB–1 GB, idle and while 16 libtorrent
// clients download, against transmission-daemon seeding the same 40 .torrent files over the same
// files, measured the same way. The files are sparse (all zeros), so 40 × up to 1 GB costs no
// disk (transmission-daemon still reads and hashes them once); the daemon with an empty data
// directory gives its floor. measureMemory() is the smallbox scenario's too, with both seeders in its box.
import { createHash } from 'node:crypto'
import { mkdir, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { announceUrls, loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { DataStore } from '../../src/store.ts'
import { buildTorrent, pieceLengthFor } from '../../src/torrent.ts'
import { webSeedUrl } from '../../src/urls.ts'
import {
  daemonCommand,
  startDaemon,
  writeDaemonConfig,
  type DaemonCommand,
  type DaemonSetup,
  type StatusReport,
} from '../../test/kit/daemon.ts'
import { FakeUpstream } from '../../test/kit/fake-upstream.ts'
import { processCounts, residentBytes } from '../../test/kit/measure.ts'
import { LT_SCRIPTS } from '../../test/kit/peers.ts'
import type { Resources } from '../../test/kit/resources.ts'
import { startTransmission } from '../lib/references.ts'
import { fmtMB, fmtMBs, fmtRatio, MB, progress, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const TARGET = 300 * MB
const COUNT = 40
/** libtorrent clients at once in full mode (quick mode: 4) */
const CLIENTS = 16
const RUN = '2026-11-23T00:00:00Z'

/** Piece hashes of an all-zero file: one SHA-1 per distinct piece length, repeated. */
const zeroDigests = new Map<number, Buffer>()
function zeroDigest(length: number): Buffer {
  let digest = zeroDigests.get(length)
  if (!digest) zeroDigests.set(length, (digest = createHash('sha1').update(Buffer.alloc(length)).digest()))
  return digest
}
function zeroPieces(size: number, pieceLength: number): Buffer {
  const full = Math.floor(size / pieceLength)
  const rest = size - full * pieceLength
  const digests = Array.from({ length: full }, () => zeroDigest(pieceLength))
  if (rest > 0) digests.push(zeroDigest(rest))
  return Buffer.concat(digests)
}

/** A daemon whose startup pass lists an empty bucket. */
function memoryDaemonConfig(res: Resources, name: string, bucketUrl: string): Promise<DaemonSetup> {
  return writeDaemonConfig(res, `mem-${name}`, {
    source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H'], lookbackRuns: 1 },
  })
}

/** Publishes `sizes.length` sparse files into the data directory, as the pipeline would. */
async function publishSparse(setup: DaemonSetup, sizes: number[]): Promise<string[]> {
  const config = loadConfig({ file: setup.configPath, env: {} })
  const store = new DataStore(config.dataDir, createLogger('warn'))
  await store.open()
  const announce = announceUrls(config)
  const now = new Date()
  const relPaths: string[] = []
  for (const [index, size] of sizes.entries()) {
    const fileName = `bench-${String(index + 1).padStart(2, '0')}.grib2`
    const relPath = `20261123T00Z/arpege/01/SP1/${fileName}`
    const temp = store.tempPath(relPath)
    await mkdir(dirname(temp), { recursive: true })
    await writeFile(temp, '')
    await truncate(temp, size)
    const pieceLength = pieceLengthFor(size, config.torrent.minPieces)
    const built = buildTorrent({
      name: fileName,
      length: size,
      pieceLength,
      pieces: zeroPieces(size, pieceLength),
      announce: [...announce, ...config.torrent.extraTrackers],
      webSeeds: [webSeedUrl(config.http.publicBaseUrl, relPath)],
      comment: `bench: sparse file of ${size} zero bytes`,
      createdBy: config.torrent.createdBy,
      creationDate: now,
    })
    await store.publish(temp, built.torrent, {
      version: 1,
      relPath,
      fileName,
      sourceUrl: `bench:sparse/${fileName}`,
      run: RUN,
      model: 'arpege',
      grid: '01',
      package: 'SP1',
      range: `bench${index + 1}`,
      size,
      // Not computed for sparse bench files: nothing reads them while seeding.
      md5: '',
      sha512: '',
      infoHash: built.infoHash,
      pieceLength,
      magnetURI: built.magnetURI,
      publishedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + 365 * 86400_000).toISOString(),
    })
    relPaths.push(relPath)
  }
  return relPaths
}

/** Waits until the daemon seeds `torrents` torrents and its startup pass is over. */
const seeding = (torrents: number, timeoutMs: number) => ({
  what: `seeds ${torrents} torrents after its first pass`,
  check: (s: StatusReport) => s.seeder.torrents === torrents && !s.pass.running && s.pass.lastFinishedAt !== undefined,
  timeoutMs,
})

/** Resident bytes of a seeder's process (residentBytes: its VmRSS), undefined once it is gone. */
type Rss = (pid: number) => Promise<number | undefined>

/** Resident memory of one process, from /proc/PID/status. */
interface Footprint {
  /** max of the VmRSS samples (every 250 ms) over the measuring window */
  rss: number
  /** VmHWM: the peak resident size since the process started */
  hwm: number
  threads: number
  fds: number
}

/**
 * Lets a process settle for `settleMs`, calling `poke` (a status request: it also fails if the
 * process is gone) twice a second as a monitoring page would, then takes the max of VmRSS
 * samples every 250 ms over `sampleMs`.
 */
async function idleFootprint(pid: number, poke: () => Promise<unknown>, settleMs: number, sampleMs: number, rss: Rss): Promise<Footprint> {
  const settleUntil = Date.now() + settleMs
  while (Date.now() < settleUntil) {
    await poke()
    await delay(500)
  }
  let peak = 0
  const sampleUntil = Date.now() + sampleMs
  while (Date.now() < sampleUntil) {
    peak = Math.max(peak, (await rss(pid)) ?? 0)
    await delay(250)
  }
  const hwm = (await residentBytes(pid, 'VmHWM')) ?? 0
  if (peak === 0) throw new Error(`no VmRSS for pid ${pid}`)
  return { rss: peak, hwm, ...(await processCounts(pid)) }
}

/** One torrent a client downloads: its .torrent file, the file inside, and its size. */
interface Download {
  torrentPath: string
  fileName: string
  size: number
}

interface LoadOutcome {
  /** max VmRSS of the seeder, sampled every 250 ms from starting the clients to the last one done */
  peakRss: number
  /** VmHWM of the seeder afterwards (its peak since it started) */
  hwm: number
  /** each client's download time, from the moment all start together to holding the whole file */
  clientSeconds: number[]
  /** when each client got its first payload byte (to within a second) */
  firstByteSeconds: number[]
  /** when the last client was done */
  lastSeconds: number
}

/**
 * One libtorrent client per download (lt-clients.py: one session each, on its own loopback
 * address, all started at once), each given the seeder's address directly, TCP only, its
 * torrent as published (trackers and web seed kept). Samples the seeder's
 * VmRSS every 250 ms until the clients are done.
 */
async function rssWhileDownloading(
  res: Resources,
  seeder: string,
  pid: number,
  peer: string,
  downloads: Download[],
  timeoutS: number,
  rss: Rss,
): Promise<LoadOutcome> {
  const root = await res.tempDir('gribswarm-bench-mem-dl-')
  let peakRss = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      peakRss = Math.max(peakRss, (await rss(pid)) ?? 0)
      await delay(250)
    }
  })()
  const clients = await res
    .run(
      '/usr/bin/python3',
      [LT_SCRIPTS.clients, peer, root, String(timeoutS), ...downloads.map((d) => d.torrentPath)],
      (timeoutS + 30) * 1000,
    )
    .finally(() => (sampling = false))
  await sampler
  const failure = (why: string) =>
    new Error(
      `libtorrent clients (lt-clients.py) downloading from ${seeder} at ${peer}: ${why}\n${clients.stdout.slice(-1500)} ${clients.stderr.slice(-1500)}`,
    )
  let result: {
    done: boolean
    clients: Array<{ first_byte_seconds: number | null; seconds: number | null; bytes: number; error: string | null }>
  }
  try {
    result = JSON.parse(clients.stdout.trim().split('\n').at(-1) ?? '') as typeof result
  } catch {
    throw failure('no result line')
  }
  if (!result.done) throw failure(`not every client finished within ${timeoutS} s`)
  for (const [index, { fileName, size }] of downloads.entries()) {
    const got = await stat(join(root, String(index), fileName))
    if (got.size !== size) throw failure(`client ${index + 1} wrote ${got.size} bytes of ${fileName}, expected ${size}`)
  }
  // The copies are real zeros on disk (GBs in full mode): removed as soon as checked.
  await rm(root, { recursive: true, force: true })
  return {
    peakRss,
    hwm: (await residentBytes(pid, 'VmHWM')) ?? 0,
    clientSeconds: result.clients.map((c) => c.seconds!),
    firstByteSeconds: result.clients.map((c) => c.first_byte_seconds ?? c.seconds!),
    lastSeconds: Math.max(...result.clients.map((c) => c.seconds!)),
  }
}

export const benchMemory = (ctx: ScenarioContext): Promise<ScenarioResult> => measureMemory(ctx)

/** How measureMemory runs and reports: the memory scenario's defaults, or the smallbox scenario's. */
export interface MemoryOptions {
  /** starts the two seeders (the daemon, transmission-daemon); default ctx.res (the smallbox scenario's runs them in its box) */
  seeders?: Resources
  /** the daemon's command; default daemonCommand(ctx.res, ctx.daemon) */
  command?: DaemonCommand
  /** a seeder's resident bytes; default its process's VmRSS */
  rss?: Rss
  /** how long a seeder settles before its idle window; default 3 s (quick: 1 s) */
  settleMs?: number
  /** how the rows start (default: the daemon's own process, its GDAL process not counted), and their targets (default ≤ 300 MB for both) */
  title?: string
  targets?: { idle: number; load: number }
}

/** The memory scenario: its two rows (idle, peak under load) and their notes. */
export async function measureMemory({ res, quick, daemon: runner }: ScenarioContext, options: MemoryOptions = {}): Promise<ScenarioResult> {
  const {
    seeders = res,
    rss = residentBytes,
    title = "Resident memory of the daemon's own process (its GDAL process counts in the small-box rows)",
    targets = { idle: TARGET, load: TARGET },
  } = options
  const [smallest, largest] = quick ? [1 * MB, 10 * MB] : [80 * MB, 1000 * MB]
  const sizes = Array.from({ length: COUNT }, (_, i) => Math.round(smallest + ((largest - smallest) * i) / (COUNT - 1)))
  const total = sizes.reduce((a, b) => a + b, 0)
  const readyTimeoutMs = quick ? 60_000 : 180_000
  const [settleMs, sampleMs] = [options.settleMs ?? (quick ? 1000 : 3000), quick ? 2000 : 5000]
  // One client per torrent. Full mode: the 16 smallest (80–434 MB, like the 0.1° packages people
  // fetch most; 16 spread up to 1 GB would be 8.6 GB, minutes more from transmission-daemon).
  // Quick mode: 4 spread over the sizes.
  const picks = quick ? [0, 13, 26, 39] : Array.from({ length: CLIENTS }, (_, i) => i)
  const clientCount = picks.length
  const clientTimeoutS = quick ? 120 : 600
  const mode = quick
    ? `quick mode: ${COUNT} files of ${fmtMB(smallest)}–${fmtMB(largest)}, ${clientCount} clients`
    : `${COUNT} files of ${fmtMB(smallest)}–${fmtMB(largest)}`

  // The daemons' startup pass lists an empty bucket instead of failing on an unreachable one.
  const upstream = new FakeUpstream()
  await upstream.start()
  res.defer('stop the empty upstream', () => upstream.stop())

  if (!options.command && runner !== 'tsx') progress('memory: compiling the daemon with tsconfig.build.json (into a temp directory)')
  const daemon = options.command ?? (await daemonCommand(res, runner))
  progress(`memory: baseline, the daemon with an empty data directory: ${daemon.how}`)
  const empty = await startDaemon(seeders, daemon, await memoryDaemonConfig(res, 'empty', upstream.bucketUrl), seeding(0, readyTimeoutMs))
  const emptyRss = await idleFootprint(empty.pid, () => empty.status(), settleMs, sampleMs, rss)
  await empty.stop()
  progress(
    `memory: empty daemon VmRSS ${fmtMB(emptyRss.rss)} (peak ${fmtMB(emptyRss.hwm)}, ${emptyRss.threads} threads, ${emptyRss.fds} fds)`,
  )

  progress(`memory: publishing ${COUNT} sparse files, ${fmtMB(smallest)} to ${fmtMB(largest)} (${fmtMB(total)} in all)`)
  const fullSetup = await memoryDaemonConfig(res, 'full', upstream.bucketUrl)
  const relPaths = await publishSparse(fullSetup, sizes)
  // The published .torrent files and data, as both seeders get them.
  const published = relPaths.map((relPath, index) => ({
    torrentPath: join(fullSetup.dataDir, 'pub', `${relPath}.torrent`),
    dataDir: dirname(join(fullSetup.dataDir, 'pub', relPath)),
    fileName: basename(relPath),
    size: sizes[index]!,
  }))
  const downloads: Download[] = picks.map((i) => published[i]!)
  const loadBytes = downloads.reduce((sum, d) => sum + d.size, 0)

  const startedAt = performance.now()
  const full = await startDaemon(seeders, daemon, fullSetup, seeding(COUNT, readyTimeoutMs))
  progress(`memory: daemon seeding ${COUNT} torrents after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`)
  const idle = await idleFootprint(full.pid, () => full.status(), settleMs, sampleMs, rss)
  progress(
    `memory: daemon with ${COUNT} torrents VmRSS ${fmtMB(idle.rss)} (peak ${fmtMB(idle.hwm)}, ${idle.threads} threads, ${idle.fds} fds)`,
  )
  const { seeder } = await full.status()
  progress(
    `memory: ${clientCount} libtorrent clients downloading ${clientCount} torrents (${fmtMB(loadBytes)}) from the daemon at 127.0.0.1:${seeder.port}`,
  )
  const load = await rssWhileDownloading(res, 'the gribswarm daemon', full.pid, `127.0.0.1:${seeder.port}`, downloads, clientTimeoutS, rss)
  progress(
    `memory: daemon: last client done after ${load.lastSeconds.toFixed(1)} s (${fmtMBs(loadBytes / load.lastSeconds)} together), peak VmRSS ${fmtMB(load.peakRss)}`,
  )
  // Stopped before the reference starts: its tracker (the one in the torrents) goes with it, so
  // nothing but transmission-daemon can be in those swarms.
  await full.stop()

  progress(`memory: transmission-daemon adding and verifying the same ${COUNT} torrents over the same files`)
  const transmission = await startTransmission(seeders)
  const verifyStarted = performance.now()
  // One at a time: seed() waits until transmission has verified the files and seeds.
  for (const torrent of published) await transmission.seed(torrent.torrentPath, torrent.dataDir, readyTimeoutMs)
  const verifySeconds = (performance.now() - verifyStarted) / 1000
  progress(`memory: transmission-daemon seeding ${COUNT} torrents after ${verifySeconds.toFixed(1)} s of verifying`)
  const refIdle = await idleFootprint(transmission.pid, () => transmission.uploaded(), settleMs, sampleMs, rss)
  progress(
    `memory: transmission-daemon with ${COUNT} torrents VmRSS ${fmtMB(refIdle.rss)} (peak ${fmtMB(refIdle.hwm)}, ${refIdle.threads} threads, ${refIdle.fds} fds)`,
  )
  const refPeer = `127.0.0.1:${transmission.peerPort}`
  progress(`memory: the same ${clientCount} clients downloading the same torrents from transmission-daemon at ${refPeer}`)
  const refLoad = await rssWhileDownloading(res, transmission.name, transmission.pid, refPeer, downloads, clientTimeoutS, rss)
  progress(
    `memory: transmission-daemon: last client done after ${refLoad.lastSeconds.toFixed(1)} s (${fmtMBs(loadBytes / refLoad.lastSeconds)} together), peak VmRSS ${fmtMB(refLoad.peakRss)}`,
  )
  await transmission.stop()

  const rows: Row[] = [
    {
      scenario: `${title}, seeding ${COUNT} torrents, idle (${mode}; lower is better)`,
      gribswarm: fmtMB(idle.rss),
      reference: `${fmtMB(refIdle.rss)} (${transmission.name})`,
      ratio: fmtRatio(idle.rss / refIdle.rss),
      target: `≤ ${fmtMB(targets.idle)}`,
      met: idle.rss <= targets.idle ? 'yes' : 'no',
    },
    {
      scenario: `${title}, same ${COUNT} torrents while ${clientCount} libtorrent clients download ${clientCount} of them (peak; ${mode}; lower is better)`,
      gribswarm: fmtMB(load.peakRss),
      reference: `${fmtMB(refLoad.peakRss)} (${transmission.name})`,
      ratio: fmtRatio(load.peakRss / refLoad.peakRss),
      target: `≤ ${fmtMB(targets.load)}`,
      met: load.peakRss <= targets.load ? 'yes' : 'no',
    },
  ]
  const range = (values: number[]) => `${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)} s`
  const spread = (o: LoadOutcome) => `first byte after ${range(o.firstByteSeconds)}, done after ${range(o.clientSeconds)}`
  const times = (ratio: number) => `${fmtRatio(ratio)} transmission-daemon's`
  const notes = [
    `Memory${quick ? ' (QUICK MODE: small files and 4 clients, figures not comparable with full mode)' : ''}: ${COUNT} published files of ${fmtMB(smallest)}–${fmtMB(largest)} ` +
      `(${fmtMB(total)}; sparse, all zeros) seeded by the daemon as a child process (${daemon.how}; tracker, uTP and web-seed URLs on as in production, DHT off), ` +
      `then by ${transmission.name} given the same ${COUNT} .torrent files over the same data files. ` +
      `Idle: VmRSS, max of samples every 250 ms over ${sampleMs / 1000} s after ${settleMs / 1000} s of settling, once all ${COUNT} seed ` +
      `(transmission-daemon verifies each when it is added: adding and verifying the ${COUNT}, one at a time, took ${verifySeconds.toFixed(1)} s, before the window). ` +
      `gribswarm ${fmtMB(idle.rss)}, transmission-daemon ${fmtMB(refIdle.rss)}: gribswarm uses ${times(idle.rss / refIdle.rss)} memory. ` +
      `VmHWM ${fmtMB(idle.hwm)} vs ${fmtMB(refIdle.hwm)}; threads ${idle.threads} vs ${refIdle.threads}; open fds ${idle.fds} vs ${refIdle.fds}. ` +
      `Most of gribswarm's share is its floor: the same daemon with an empty data directory holds ${fmtMB(emptyRss.rss)} (Node, webtorrent, GDAL, fastify, the tracker), ` +
      `so the ${COUNT} torrents cost it ${fmtMB(idle.rss - emptyRss.rss)}.`,
    `Memory under load: ${clientCount} libtorrent clients (lt-clients.py: one session each on its own loopback address, TCP only, torrents as published, each given the seeder's address) ` +
      `start together, one per torrent on ${clientCount} of the ${COUNT} (${fmtMB(downloads[0]!.size)}–${fmtMB(downloads.at(-1)!.size)}, ${fmtMB(loadBytes)} in all, copies checked by size); ` +
      `the seeder's VmRSS is sampled every 250 ms until the last is done. ` +
      `gribswarm: peak ${fmtMB(load.peakRss)} (VmHWM ${fmtMB(load.hwm)}), last client done after ${load.lastSeconds.toFixed(1)} s = ${fmtMBs(loadBytes / load.lastSeconds)} together (clients ${spread(load)}). ` +
      `${transmission.name}: peak ${fmtMB(refLoad.peakRss)} (VmHWM ${fmtMB(refLoad.hwm)}), last client done after ${refLoad.lastSeconds.toFixed(1)} s = ${fmtMBs(loadBytes / refLoad.lastSeconds)} (clients ${spread(refLoad)}). ` +
      `gribswarm uses ${times(load.peakRss / refLoad.peakRss)} memory under load, and its clients took ${fmtRatio(load.lastSeconds / refLoad.lastSeconds)} transmission-daemon's time for the same bytes. ` +
      `libtransmission changes which peers are unchoked every 10 s, so a new peer may wait up to 10 s for transmission-daemon's first byte (see the first-byte times).`,
    `Memory, how the clients reach the seeder: the torrents announce to the gribswarm daemon's tracker, and the daemon is stopped before transmission-daemon starts, ` +
      `so no gribswarm seeder can be in the reference's swarms (transmission-daemon's announces to the closed tracker port fail; it seeds regardless). ` +
      `In both runs the clients know only the address they are given, so the bytes come from the seeder under test alone. One client per torrent: ${clientCount} torrents are active in the seeder at once ` +
      `(people fetching different files of a run; the heaviest case for a seeder, as no client can take pieces from another). ` +
      `One loopback address per client, as ${clientCount} machines would have: from a single address, transmission-daemon drops a connection while another handshake from that address is in progress, ` +
      `and libtorrent waits a minute before trying that peer again: the clients would finish a minute apart from each other. ` +
      `transmission-daemon settings: ${transmission.settings}.`,
  ]
  return { rows, notes }
}
