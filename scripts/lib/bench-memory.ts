// Scenario 3: resident memory of the real daemon (a child process, production settings:
// tracker on, uTP on, torrents with announce URLs and web seeds as the pipeline writes them)
// seeding 40 published files, against the same daemon with an empty data directory.
// The files are sparse (all zeros), so 40 × up to 1 GB costs neither disk nor hashing time.
import { createHash } from 'node:crypto'
import { mkdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { announceUrls, loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { DataStore } from '../../src/store.ts'
import { buildTorrent, pieceLengthFor } from '../../src/torrent.ts'
import { dataUrl } from '../../src/urls.ts'
import { daemonCommand, startDaemon, writeDaemonConfig, type DaemonHandle, type DaemonRunner, type DaemonSetup, type DaemonStatus } from './bench-daemon.ts'
import { FakeUpstream } from './fake-upstream.ts'
import { LT_SCRIPT } from './bench-seed.ts'
import { fmtMB, fmtRatio, MB, parseLtResult, processCounts, progress, residentBytes, type Resources, type Row, type ScenarioResult } from './bench-util.ts'

const TARGET = 300 * MB
const COUNT = 40
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
  return writeDaemonConfig(res, `mem-${name}`, { source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H'], lookbackRuns: 1 } })
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
      webSeeds: [dataUrl(config.http.publicBaseUrl, relPath)],
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
  check: (s: DaemonStatus) => s.seeder.torrents === torrents && !s.pass.running && s.pass.lastFinishedAt !== undefined,
  timeoutMs,
})

/** Lets the daemon settle (polling its status), then the max of VmRSS samples over `sampleMs`. */
async function settledRss(daemon: DaemonHandle, settleMs: number, sampleMs: number): Promise<{ rss: number; hwm: number; threads: number; fds: number }> {
  const settleUntil = Date.now() + settleMs
  while (Date.now() < settleUntil) {
    await daemon.status()
    await delay(500)
  }
  let rss = 0
  const sampleUntil = Date.now() + sampleMs
  while (Date.now() < sampleUntil) {
    rss = Math.max(rss, (await residentBytes(daemon.pid)) ?? 0)
    await delay(250)
  }
  const hwm = (await residentBytes(daemon.pid, 'VmHWM')) ?? 0
  if (rss === 0) throw new Error(`no VmRSS for pid ${daemon.pid}`)
  return { rss, hwm, ...(await processCounts(daemon.pid)) }
}

export async function benchMemory(res: Resources, quick: boolean, runner?: DaemonRunner): Promise<ScenarioResult> {
  const [smallest, largest] = quick ? [8 * MB, 100 * MB] : [80 * MB, 1000 * MB]
  const sizes = Array.from({ length: COUNT }, (_, i) => Math.round(smallest + ((largest - smallest) * i) / (COUNT - 1)))
  const total = sizes.reduce((a, b) => a + b, 0)
  const readyTimeoutMs = quick ? 60_000 : 180_000
  const [settleMs, sampleMs] = quick ? [3000, 3000] : [3000, 5000]

  // The daemons' startup pass lists an empty bucket instead of failing on an unreachable one.
  const upstream = new FakeUpstream()
  await upstream.start()
  res.defer('stop the empty upstream', () => upstream.stop())

  if (runner !== 'tsx') progress('memory: compiling the daemon with tsconfig.build.json (into a temp directory)')
  const daemon = await daemonCommand(res, runner)
  progress(`memory: reference daemon, empty data directory: ${daemon.how}`)
  const empty = await startDaemon(res, daemon, await memoryDaemonConfig(res, 'empty', upstream.bucketUrl), seeding(0, readyTimeoutMs))
  const emptyRss = await settledRss(empty, settleMs, sampleMs)
  await empty.stop()
  progress(`memory: empty daemon VmRSS ${fmtMB(emptyRss.rss)} (peak ${fmtMB(emptyRss.hwm)}, ${emptyRss.threads} threads, ${emptyRss.fds} fds)`)

  progress(`memory: publishing ${COUNT} sparse files, ${fmtMB(smallest)} to ${fmtMB(largest)} (${fmtMB(total)} in all)`)
  const fullSetup = await memoryDaemonConfig(res, 'full', upstream.bucketUrl)
  const relPaths = await publishSparse(fullSetup, sizes)
  const startedAt = performance.now()
  const full = await startDaemon(res, daemon, fullSetup, seeding(COUNT, readyTimeoutMs))
  progress(`memory: daemon seeding ${COUNT} torrents after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`)
  const fullRss = await settledRss(full, settleMs, sampleMs)
  progress(`memory: daemon with ${COUNT} torrents VmRSS ${fmtMB(fullRss.rss)} (peak ${fmtMB(fullRss.hwm)}, ${fullRss.threads} threads, ${fullRss.fds} fds)`)

  const rows: Row[] = [
    {
      scenario: `Resident memory, daemon seeding ${COUNT} torrents of ${fmtMB(smallest)}–${fmtMB(largest)} (idle)`,
      gribswarm: fmtMB(fullRss.rss),
      reference: `${fmtMB(emptyRss.rss)} (same daemon, no torrents)`,
      ratio: fmtRatio(fullRss.rss / emptyRss.rss),
      target: `≤ ${fmtMB(TARGET)}`,
      met: fullRss.rss <= TARGET ? 'yes' : 'no',
    },
  ]
  const notes = [
    `Memory: VmRSS of the daemon process (${daemon.how}), max of samples every 250 ms over ${sampleMs / 1000} s after ${settleMs / 1000} s of settling; ` +
      `VmHWM (peak since start) ${fmtMB(fullRss.hwm)} with ${COUNT} torrents, ${fmtMB(emptyRss.hwm)} empty; ` +
      `threads ${fullRss.threads} vs ${emptyRss.threads}, open fds ${fullRss.fds} vs ${emptyRss.fds}. Tracker, uTP and web-seed URLs on as in production; DHT off.`,
  ]

  // Optional: the same daemon while 4 libtorrent clients download 4 different torrents at once.
  const picks = [0, 13, 26, 39]
  const { seeder } = await full.status()
  const dlDir = await res.tempDir('gribswarm-bench-mem-dl-')
  progress(`memory: 4 libtorrent clients downloading ${picks.map((i) => fmtMB(sizes[i]!)).join(', ')} from 127.0.0.1:${seeder.port}`)
  const timeoutS = quick ? 60 : 240
  const downloads = picks.map(async (index) => {
    const relPath = relPaths[index]!
    const torrentPath = join(dlDir, `${index}.torrent`)
    const out = join(dlDir, String(index))
    await mkdir(out)
    await writeFile(torrentPath, await readFile(join(fullSetup.dataDir, 'pub', `${relPath}.torrent`)))
    const lt = await res.run(
      '/usr/bin/python3',
      [LT_SCRIPT, torrentPath, out, String(timeoutS), '--no-utp', '--no-webseed', '--peer', `127.0.0.1:${seeder.port}`],
      (timeoutS + 20) * 1000,
    )
    const result = parseLtResult(lt.stdout)
    if (!result?.done) throw new Error(`libtorrent did not finish ${relPath}: ${lt.stdout.trim()} ${lt.stderr.trim().slice(-500)}`)
    const got = await stat(join(out, relPath.slice(relPath.lastIndexOf('/') + 1)))
    if (got.size !== sizes[index]) throw new Error(`libtorrent wrote ${got.size} bytes of ${relPath}, expected ${sizes[index]}`)
    return result.seconds
  })
  let busyRss = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      busyRss = Math.max(busyRss, (await residentBytes(full.pid)) ?? 0)
      await delay(250)
    }
  })()
  const settled = await Promise.allSettled(downloads)
  sampling = false
  await sampler
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failed) throw failed.reason
  const seconds = settled.map((s) => (s as PromiseFulfilledResult<number>).value)
  const bytes = picks.reduce((sum, i) => sum + sizes[i]!, 0)
  const wall = Math.max(...seconds)
  progress(`memory: 4 downloads done in ${wall.toFixed(1)} s (${fmtMB(bytes / wall)}/s together), peak VmRSS ${fmtMB(busyRss)}`)
  const afterHwm = (await residentBytes(full.pid, 'VmHWM')) ?? 0
  await full.stop()

  rows.push({
    scenario: `Resident memory, same ${COUNT} torrents while 4 libtorrent clients download 4 of them`,
    gribswarm: fmtMB(busyRss),
    reference: `${fmtMB(emptyRss.rss)} (same daemon, no torrents)`,
    ratio: fmtRatio(busyRss / emptyRss.rss),
    target: `≤ ${fmtMB(TARGET)}`,
    met: busyRss <= TARGET ? 'yes' : 'no',
  })
  notes.push(
    `Memory under load: 4 clients fetched ${fmtMB(bytes)} (copies checked by size) in ${wall.toFixed(1)} s; max VmRSS sampled every 250 ms ${fmtMB(busyRss)}, VmHWM ${fmtMB(afterHwm)}.`,
  )
  return { rows, notes }
}
