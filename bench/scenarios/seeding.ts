// Scenario "seeding": seeding throughput to one standard BitTorrent client
// (libtorrent, lt-download.py) over loopback TCP, 1 GiB of random bytes (64 MiB in quick mode),
// no cap: from gribswarm's seeder (src/seed.ts, in this process, as the daemon runs it), then from
// transmission-daemon and from qbittorrent-nox seeding the same file and .torrent. The same client
// connects straight to each seeder (no tracker). For scale, the same bytes over one HTTP
// connection (nginx, curl) are in the notes: BitTorrent's point is not one fast stream.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { Seeder } from '../../src/seed.ts'
import { Uplink } from '../../src/uplink.ts'
import type { ItemRecord } from '../../src/store.ts'
import { buildTorrent, pieceLengthFor, PieceHasher } from '../../src/torrent.ts'
import { LT_SCRIPTS, parseLtResult } from '../../test/kit/peers.ts'
import type { Resources } from '../../test/kit/resources.ts'
import { startNginx, startQbittorrent, startTransmission, type ReferenceSeeder } from '../lib/references.ts'
import { fmtMBs, fmtRatio, fmtSize, MB, progress, sha1File, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const TARGET = 100 * MB

/** Writes `size` random bytes, hashing pieces and the whole file on the way. */
async function writeRandomFile(path: string, size: number, pieceLength: number): Promise<{ pieces: Buffer; sha1: string }> {
  const hasher = new PieceHasher(pieceLength)
  const whole = createHash('sha1')
  const file = await open(path, 'w')
  try {
    for (let written = 0; written < size;) {
      const chunk = randomBytes(Math.min(8 << 20, size - written))
      await file.write(chunk, 0, chunk.length, written)
      hasher.update(chunk)
      whole.update(chunk)
      written += chunk.length
    }
  } finally {
    await file.close()
  }
  return { pieces: hasher.digest(), sha1: whole.digest('hex') }
}

/** One download by lt-download.py, as the client saw it. */
interface Measured {
  tool: string
  done: boolean
  /** from starting the client to the whole file verified */
  seconds: number
  /** size / seconds (or what arrived / seconds, for a download cut by the deadline) */
  rate: number
  /** when the first payload byte arrived, and the rate from then to the last */
  firstByte?: number
  streaming?: number
  rc4: boolean
}

/** libtorrent downloads the torrent from one seeder given by address, over TCP; the copy is checked by SHA-1, then removed. */
async function downloadFrom(
  res: Resources,
  tool: string,
  port: number,
  file: { torrentPath: string; outDir: string; name: string; size: number; sha1: string },
  timeoutS: number,
): Promise<Measured> {
  progress(`seeding: libtorrent downloading ${fmtSize(file.size)} from ${tool} (127.0.0.1:${port}, TCP)`)
  const outDir = join(file.outDir, tool.split(' ')[0]!)
  await mkdir(outDir, { recursive: true })
  const lt = await res.run(
    '/usr/bin/python3',
    [LT_SCRIPTS.download, file.torrentPath, outDir, String(timeoutS), '--no-utp', '--no-webseed', '--peer', `127.0.0.1:${port}`],
    (timeoutS + 20) * 1000,
  )
  const result = parseLtResult(lt.stdout)
  if (!result) throw new Error(`lt-download.py (seeder ${tool}) printed no result: ${lt.stdout.trim()} ${lt.stderr.trim().slice(-500)}`)
  if (result.transports && result.transports.join() !== 'tcp')
    throw new Error(`expected one TCP connection to ${tool}, libtorrent used ${result.transports.join('+') || 'none'}`)
  if (result.done) {
    const copy = join(outDir, file.name)
    const got = await stat(copy)
    if (got.size !== file.size) throw new Error(`libtorrent wrote ${got.size} bytes from ${tool}, expected ${file.size}`)
    const gotSha1 = await sha1File(copy)
    if (gotSha1 !== file.sha1) throw new Error(`libtorrent's copy from ${tool} differs from the source (sha1 ${gotSha1} ≠ ${file.sha1})`)
  }
  await rm(outDir, { recursive: true, force: true })
  const firstByte = result.first_byte_seconds ?? undefined
  const measured: Measured = {
    tool,
    done: result.done,
    seconds: result.seconds,
    rate: (result.done ? file.size : result.bytes) / result.seconds,
    firstByte,
    streaming: result.done && firstByte !== undefined && result.seconds > firstByte ? file.size / (result.seconds - firstByte) : undefined,
    rc4: result.rc4 ?? false,
  }
  progress(`seeding: from ${tool}: ${describe(measured, file.size)}`)
  return measured
}

function describe(m: Measured, size: number): string {
  const total = m.done
    ? `${m.seconds.toFixed(2)} s = ${fmtMBs(m.rate)}`
    : `not done in ${m.seconds.toFixed(0)} s (${fmtMBs(m.rate)} on average, ${((m.rate * m.seconds * 100) / size).toFixed(0)} % of the file)`
  const stream = m.streaming ? `; first byte after ${m.firstByte!.toFixed(2)} s, then ${fmtMBs(m.streaming)}` : ''
  return `${total}${stream}${m.rc4 ? '; RC4-encrypted connection' : ''}`
}

export async function benchSeeding({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const size = quick ? 64 * 1024 * 1024 : 1024 * 1024 * 1024
  const dir = await res.tempDir('gribswarm-bench-seed-')
  const seedDir = join(dir, 'seed')
  await mkdir(seedDir)
  const name = 'bench-random.bin'
  const path = join(seedDir, name)
  const pieceLength = pieceLengthFor(size, 1000)

  progress(`seeding: writing ${fmtSize(size)} of random bytes (piece length ${pieceLength / 1024} KiB)`)
  const { pieces, sha1 } = await writeRandomFile(path, size, pieceLength)
  const built = buildTorrent({ name, length: size, pieceLength, pieces, announce: [], webSeeds: [], createdBy: 'gribswarm-bench' })
  const torrentPath = join(dir, `${name}.torrent`)
  await writeFile(torrentPath, built.torrent)
  const file = { torrentPath, outDir: join(dir, 'out'), name, size, sha1 }
  const now = new Date()
  const item: ItemRecord = {
    version: 1,
    relPath: `bench/${name}`,
    fileName: name,
    sourceUrl: 'bench:random',
    run: now.toISOString(),
    model: 'bench',
    grid: '-',
    package: '-',
    range: '-',
    size,
    mtimeMs: (await stat(path)).mtimeMs, // size and mtime match: trusted without a re-hash, as after publishing
    md5: '',
    sha512: '',
    infoHash: built.infoHash,
    pieceLength,
    magnetURI: built.magnetURI,
    publishedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + 86400_000).toISOString(),
  }
  // Deadlines: gribswarm's seeder moves 1 GiB in seconds; transmission took about a minute here.
  const timeoutS = quick ? 60 : 300

  const seeder = new Seeder(
    { port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, superSeed: true },
    { uplink: new Uplink(0), dataPath: () => path, events: new Events(), log: createLogger('warn').child({ bench: 'seed' }) },
  )
  await seeder.start()
  res.defer('stop the seeder', () => seeder.stop())
  await seeder.published(item, built.torrent)
  const ours = await downloadFrom(res, 'gribswarm', seeder.port, file, timeoutS)
  await seeder.stop()
  if (!ours.done) throw new Error(`libtorrent did not finish downloading from gribswarm's seeder in ${timeoutS} s`)

  const references: Measured[] = []
  const settings: string[] = []
  for (const start of [startTransmission, startQbittorrent]) {
    let tool: ReferenceSeeder | undefined
    try {
      tool = await start(res)
      progress(`seeding: ${tool.name} verifying the file before seeding`)
      await tool.seed(torrentPath, seedDir, 300_000)
      references.push(await downloadFrom(res, tool.name, tool.peerPort, file, timeoutS))
      settings.push(`${tool.name}: ${tool.settings}`)
    } finally {
      await tool?.stop()
    }
  }

  // For scale: the same bytes over one plain HTTP connection, nginx to curl (to /dev/null).
  const nginx = await startNginx(res, { root: seedDir })
  const curl = await res.run(
    'curl',
    ['-s', '-o', '/dev/null', '-w', '%{time_total} %{size_download} %{http_code}', `${nginx.url}/${name}`],
    timeoutS * 1000,
  )
  await nginx.stop()
  const [httpSeconds, httpBytes, httpStatus] = curl.stdout.trim().split(' ').map(Number)
  if (curl.code !== 0 || httpStatus !== 200 || httpBytes !== size || !httpSeconds)
    throw new Error(`curl from nginx failed: code ${curl.code} output "${curl.stdout}" ${curl.stderr}`)
  progress(`seeding: HTTP (nginx → curl) ${httpSeconds.toFixed(2)} s = ${fmtMBs(size / httpSeconds)}`)

  const losses = references
    .filter((r) => r.rate > ours.rate)
    .map(
      (r) =>
        `${r.tool} seeded ${fmtRatio(r.rate / ours.rate)} as fast (gribswarm ${(((r.rate - ours.rate) / r.rate) * 100).toFixed(0)} % slower)`,
    )
  return {
    rows: [
      {
        scenario: `Seeding throughput, 1 libtorrent client, loopback TCP, ${fmtSize(size)}, no cap, higher is better`,
        gribswarm: fmtMBs(ours.rate),
        reference: references
          .map((r) => `${r.tool.split(' ')[0]} ${r.done ? fmtMBs(r.rate) : `< ${fmtMBs(r.rate)} (not done in ${timeoutS} s)`}`)
          .join('; '),
        ratio: references.map((r) => `${fmtRatio(ours.rate / r.rate)} vs ${r.tool.split(' ')[0]}`).join('; '),
        target: `≥ ${fmtMBs(TARGET)}`,
        met: ours.rate >= TARGET ? 'yes' : 'no',
      },
    ],
    notes: [
      `Seeding: the same libtorrent client (lt-download.py, TCP only, copy written to disk and checked by SHA-1) connects straight to each seeder; ${fmtSize(size)} of random bytes, piece length ${pieceLength / 1024} KiB. ` +
        `Throughput = file size / time from starting the client to the last piece verified. ` +
        [ours, ...references].map((m) => `${m.tool}: ${describe(m, size)}`).join('. ') +
        `. gribswarm's seeder is src/seed.ts (webtorrent, super-seeding on, as the daemon runs it) in the benchmark's process; ${settings.join('; ')}. ` +
        "libtorrent's default handshake is encrypted and lets the seeder pick RC4 or plaintext for the data (noted above where it was RC4); webtorrent has no encryption, so gribswarm's connection is plaintext. " +
        `transmission unchokes a new peer only at its next rechoke pass (every 10 s), hence its late first byte. ` +
        `For scale, one HTTP connection (nginx, sendfile, to curl writing to /dev/null) moved the same file in ${httpSeconds.toFixed(2)} s = ${fmtMBs(size / httpSeconds)}.`,
      losses.length ? `Seeding: where gribswarm loses: ${losses.join('; ')}.` : 'Seeding: gribswarm seeded faster than both references.',
    ],
  }
}
