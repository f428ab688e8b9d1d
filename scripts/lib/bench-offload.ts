// Scenario "offload" (issue 3): how little a small origin has to send when mirrors and the
// swarm carry the load. The real daemons run as child processes: an origin whose upload is
// capped at 10 MB/s, fetching one CCSDS GRIB2 file from a local upstream and announcing it over
// AMQP, and two mirrors following those notifications. As soon as the origin publishes, 16
// libtorrent clients start together from its .torrent. Reference, in the same run: the same
// origin and clients without mirrors; plain HTTP from the same capped origin needs N × the
// file and N × the time by construction.
import { randomBytes } from 'node:crypto'
import { stat, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { recentRuns } from '../../src/source.ts'
import { daemonCommand, startDaemon, writeDaemonConfig, type DaemonCommand, type DaemonHandle } from './bench-daemon.ts'
import { BENCH_BROKER, ensureBroker, FIXTURE_CACHE, startUpstream } from './bench-services.ts'
import { cpuSeconds, fmtMB, fmtRatio, MB, progress, waitFor, type Resources, type Row, type ScenarioResult } from './bench-util.ts'
import { arpegeKey } from './fake-upstream.ts'
import { fixtureFor } from './grib-fixtures.ts'

const SWARM_SCRIPT = fileURLToPath(new URL('./lt-swarm.py', import.meta.url))
const CAP = 10 * MB
const [UPLOAD_TARGET, TIME_TARGET] = [1.5, 1.3]

interface SwarmResult {
  clients: Array<{ seconds: number | null; downloaded: number; uploaded: number; error: string | null }>
  done: boolean
}

interface Outcome {
  size: number
  /** what left the origin: BitTorrent upload plus HTTP data bytes */
  originBytes: number
  originHttpBytes: number
  mirrorUploads: number[]
  lastClientSeconds: number
  clientSeconds: number[]
  /** CPU seconds each daemon (origin first) and the clients used while the clients ran, and for how long they ran */
  cpu: { daemons: number[]; clients: number; wallSeconds: number }
}

/** One measured run: an origin, `mirrorCount` mirrors, `clients` libtorrent clients. */
async function swarmRun(res: Resources, command: DaemonCommand, bucketUrl: string, mirrorCount: number, clients: number, quick: boolean): Promise<Outcome> {
  const exchange = `xpublic-bench-${randomBytes(4).toString('hex')}`
  const mirrors: DaemonHandle[] = []
  for (let i = 0; i < mirrorCount; i++) {
    const setup = await writeDaemonConfig(res, `offload-mirror${i + 1}`, {
      source: { enabled: false, bucketUrl: 'http://127.0.0.1:9', fallbackBucketUrls: [] },
      // Volunteers' mirrors are not capped. The web seed (the origin's HTTP) is only a late fallback.
      mirror: { brokers: [{ url: BENCH_BROKER, exchange, topics: ['v03.#'] }], concurrency: 1, downloadTimeoutSeconds: 600, webSeedAfterSeconds: 120 },
    })
    mirrors.push(await startDaemon(res, command, setup, { what: 'follows the origin broker', check: (s) => s.mirror?.following === 1, timeoutMs: 60_000 }))
  }
  const originSetup = await writeDaemonConfig(res, 'offload-origin', {
    source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H'], lookbackRuns: 1 },
    seed: { uploadLimitBytesPerSec: CAP },
    notify: { brokerUrl: BENCH_BROKER, exchange, source: 'bench-origin' },
  })
  progress(`offload: origin fetching and publishing (${mirrorCount} mirror(s) following its notifications)`)
  const origin = await startDaemon(res, command, originSetup, { what: 'publishes the file', check: (s) => s.items.length === 1, timeoutMs: quick ? 120_000 : 300_000 })
  const item = (await origin.status()).items[0]!
  const torrent = Buffer.from(await (await fetch(item.torrentUrl)).arrayBuffer())
  const dir = await res.tempDir('gribswarm-bench-offload-')
  const torrentPath = join(dir, 'file.torrent')
  await writeFile(torrentPath, torrent)
  const size = (await stat(join(originSetup.dataDir, 'pub', item.relPath))).size

  const timeoutS = Math.ceil((quick ? 6 : 4) * (size / CAP)) + 60
  progress(`offload: ${clients} libtorrent clients start together on ${fmtMB(size)} (origin capped at ${fmtMB(CAP)}/s)`)
  const daemons = [origin, ...mirrors]
  const cpuBefore = await Promise.all(daemons.map((d) => cpuSeconds(d.pid)))
  const started = performance.now()
  const swarm = res.start('/usr/bin/python3', [SWARM_SCRIPT, torrentPath, join(dir, 'clients'), String(clients), String(timeoutS), '--no-webseed'])
  // The clients' CPU time, sampled while they run (the process is gone once it has reported).
  let clientsCpu = 0
  const sampler = setInterval(() => void cpuSeconds(swarm.child.pid!).then((seconds) => seconds !== undefined && (clientsCpu = seconds)), 250)
  const deadline = setTimeout(() => void swarm.stop(2000), (timeoutS + 60) * 1000)
  await swarm.exited
  clearInterval(sampler)
  clearTimeout(deadline)
  const wallSeconds = (performance.now() - started) / 1000
  const line = swarm.stdout.trim().split('\n').at(-1) ?? ''
  let result: SwarmResult
  try {
    result = JSON.parse(line) as SwarmResult
  } catch {
    throw new Error(`lt-swarm.py printed no result: ${swarm.stdout.slice(-1000)} ${swarm.stderr.slice(-1000)}`)
  }
  const cpuAfter = await Promise.all(daemons.map((d) => cpuSeconds(d.pid)))
  const cpu = { daemons: cpuAfter.map((after, i) => (after ?? 0) - (cpuBefore[i] ?? 0)), clients: clientsCpu, wallSeconds }
  if (!result.done) throw new Error(`not every client finished within ${timeoutS} s: ${line}`)
  for (const [index, client] of result.clients.entries()) {
    const copy = await stat(join(dir, 'clients', String(index), item.relPath.slice(item.relPath.lastIndexOf('/') + 1)))
    if (copy.size !== size) throw new Error(`client ${index} wrote ${copy.size} bytes, expected ${size}`)
    if (client.error) throw new Error(`client ${index}: ${client.error}`)
  }
  const finalOrigin = await origin.status()
  const originBt = finalOrigin.items[0]?.uploaded ?? 0
  // A mirror still copying shows its upload under mirror.copying, a finished one under items.
  const mirrorUploads = await Promise.all(
    mirrors.map(async (m) => {
      const status = await m.status()
      return (status.items[0] ?? status.mirror?.copying[0])?.uploaded ?? 0
    }),
  )
  if (mirrors.length) await waitFor('every mirror to publish its copy', async () => (await Promise.all(mirrors.map((m) => m.status()))).every((s) => s.mirror?.copied === 1), 120_000, 500)
  for (const daemon of daemons) await daemon.stop()
  const clientSeconds = result.clients.map((c) => c.seconds!)
  return {
    size,
    originBytes: originBt + finalOrigin.http.dataBytes,
    originHttpBytes: finalOrigin.http.dataBytes,
    mirrorUploads,
    lastClientSeconds: Math.max(...clientSeconds),
    clientSeconds,
    cpu,
  }
}

export async function benchOffload(res: Resources, quick: boolean): Promise<ScenarioResult> {
  const clients = quick ? 4 : 16
  const [bands, repeat] = quick ? [8, 7] : [8, 55] // ~33 MB or ~257 MB of CCSDS GRIB2 (4.67 MB per copy of 8 bands)
  await ensureBroker(res)
  progress(`offload: GRIB2 fixture (${bands} bands × ${repeat}, cached in ${FIXTURE_CACHE})`)
  const fixture = await fixtureFor(FIXTURE_CACHE, `arpege-ccsds-b${bands}-r${repeat}.grib2`, { bands, repeat })
  // The daemon's startup pass looks at the newest run: the upstream serves the file under it.
  const run = recentRuns(new Date(), [0, 6, 12, 18], 1)[0]!
  const key = arpegeKey({ run, grid: '01', pkg: 'SP1', range: '000H012H' })
  const bucketUrl = await startUpstream(res, fixture, 1000 * MB, [key])
  progress('offload: compiling the daemon (tsconfig.build.json, into a temp directory)')
  const command = await daemonCommand(res)

  const meshed = await swarmRun(res, command, bucketUrl, 2, clients, quick)
  progress(`offload: with 2 mirrors: origin sent ${fmtRatio(meshed.originBytes / meshed.size)} the file, last client after ${meshed.lastClientSeconds.toFixed(1)} s`)
  const alone = await swarmRun(res, command, bucketUrl, 0, clients, quick)
  progress(`offload: origin alone: origin sent ${fmtRatio(alone.originBytes / alone.size)} the file, last client after ${alone.lastClientSeconds.toFixed(1)} s`)

  const size = meshed.size
  const ideal = size / CAP
  const uploadRatio = meshed.originBytes / size
  const timeRatio = meshed.lastClientSeconds / ideal
  const setting = `origin capped at ${fmtMB(CAP)}/s, ${clients} libtorrent clients at once, ${fmtMB(size)}`
  const rows: Row[] = [
    {
      scenario: `Origin offload: bytes the origin sent / file size (${setting}, 2 mirrors)`,
      gribswarm: `${fmtRatio(uploadRatio)} the file`,
      reference: `${fmtRatio(alone.originBytes / size)} without mirrors; ${clients}× over HTTP`,
      ratio: fmtRatio(uploadRatio / clients),
      target: `≤ ${UPLOAD_TARGET}×`,
      met: uploadRatio <= UPLOAD_TARGET ? 'yes' : 'no',
    },
    {
      scenario: `Origin offload: last client done / (file size / cap) (${setting}, 2 mirrors)`,
      gribswarm: `${meshed.lastClientSeconds.toFixed(1)} s = ${fmtRatio(timeRatio)}`,
      reference: `${alone.lastClientSeconds.toFixed(1)} s = ${fmtRatio(alone.lastClientSeconds / ideal)} without mirrors; ${fmtRatio(clients)} over HTTP`,
      ratio: fmtRatio(timeRatio / clients),
      target: `≤ ${TIME_TARGET}× (${(TIME_TARGET * ideal).toFixed(1)} s)`,
      met: timeRatio <= TIME_TARGET ? 'yes' : 'no',
    },
  ]
  const spread = (o: Outcome) => `${Math.min(...o.clientSeconds).toFixed(1)}–${o.lastClientSeconds.toFixed(1)} s`
  const load = ({ cpu }: Outcome) => {
    const used = cpu.clients + cpu.daemons.reduce((a, b) => a + b, 0)
    return (
      `in those ${cpu.wallSeconds.toFixed(1)} s the clients used ${cpu.clients.toFixed(1)} s of CPU, the origin ${cpu.daemons[0]!.toFixed(1)} s` +
      (cpu.daemons.length > 1 ? `, the mirrors ${cpu.daemons.slice(1).map((s) => s.toFixed(1)).join(' s and ')} s` : '') +
      ` (together ${((used / (cpu.wallSeconds * cpus().length)) * 100).toFixed(0)} % of the machine's ${cpus().length} cores)`
    )
  }
  const notes = [
    `Offload: ${clients} libtorrent 2.0 sessions in one process (lt-swarm.py), each with its own port, tracker announces only (no DHT/LSD), web seeds removed so that every byte moves over BitTorrent; ` +
      `clients keep seeding each other until the last one is done, as real clients do. With 2 mirrors: clients done in ${spread(meshed)}; ` +
      `the origin sent ${fmtMB(meshed.originBytes)} (HTTP ${fmtMB(meshed.originHttpBytes)}), the mirrors ${meshed.mirrorUploads.map(fmtMB).join(' and ')}; ${load(meshed)}. ` +
      `Without mirrors: clients done in ${spread(alone)}, the origin sent ${fmtMB(alone.originBytes)}; ${load(alone)}. Plain HTTP from the same capped origin: ${clients} × ${fmtMB(size)} and ${(clients * ideal).toFixed(0)} s.`,
  ]
  return { rows, notes }
}
