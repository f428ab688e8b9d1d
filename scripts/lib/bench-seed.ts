// Scenario 1: seeding throughput to one standard BitTorrent client (libtorrent) over loopback
// TCP, against the same bytes from one plain HTTP origin (node:http + createReadStream, curl).
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, stat, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger } from '../../src/log.ts'
import { Seeder } from '../../src/seed.ts'
import type { ItemRecord } from '../../src/store.ts'
import { buildTorrent, pieceLengthFor, PieceHasher } from '../../src/torrent.ts'
import { fmtMBs, fmtRatio, fmtSize, MB, parseLtResult, progress, sha1File, type Resources, type ScenarioResult } from './bench-util.ts'

export const LT_SCRIPT = fileURLToPath(new URL('./lt-download.py', import.meta.url))
const TARGET = 100 * MB

/** Writes `size` random bytes, hashing pieces and the whole file on the way. */
async function writeRandomFile(path: string, size: number, pieceLength: number): Promise<{ pieces: Buffer; sha1: string }> {
  const hasher = new PieceHasher(pieceLength)
  const whole = createHash('sha1')
  const file = await open(path, 'w')
  try {
    for (let written = 0; written < size; ) {
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

export async function benchSeeding(res: Resources, quick: boolean): Promise<ScenarioResult> {
  const size = quick ? 128 * 1024 * 1024 : 1024 * 1024 * 1024
  const dir = await res.tempDir('gribswarm-bench-seed-')
  const seedDir = join(dir, 'seed')
  const outDir = join(dir, 'out')
  await mkdir(seedDir)
  await mkdir(outDir)
  const name = 'bench-random.bin'
  const path = join(seedDir, name)
  const pieceLength = pieceLengthFor(size, 1000)

  progress(`seeding: writing ${fmtSize(size)} of random bytes (piece length ${pieceLength / 1024} KiB)`)
  const { pieces, sha1 } = await writeRandomFile(path, size, pieceLength)
  const built = buildTorrent({ name, length: size, pieceLength, pieces, announce: [], webSeeds: [], createdBy: 'gribswarm-bench' })
  const torrentPath = join(dir, `${name}.torrent`)
  await writeFile(torrentPath, built.torrent)
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

  const seeder = new Seeder(
    { port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, uploadLimitBytesPerSec: 0, superSeed: true },
    createLogger('warn').child({ bench: 'seed' }),
  )
  await seeder.start()
  res.defer('stop the seeder', () => seeder.stop())
  await seeder.add(item, built.torrent, path)
  progress(`seeding: webtorrent seeder on 127.0.0.1:${seeder.port}, libtorrent downloading over TCP`)

  const timeoutS = quick ? 60 : 180
  // The seeder side, sampled every 10 ms: when the first and the last byte went out.
  let firstUpload: number | undefined
  let lastUpload: number | undefined
  const sampler = setInterval(() => {
    const { uploaded } = seeder.stats(built.infoHash)
    if (uploaded > 0) firstUpload ??= performance.now()
    if (uploaded >= size) lastUpload ??= performance.now()
  }, 10)
  const launched = performance.now()
  const lt = await res.run(
    '/usr/bin/python3',
    [LT_SCRIPT, torrentPath, outDir, String(timeoutS), '--no-utp', '--no-webseed', '--peer', `127.0.0.1:${seeder.port}`],
    (timeoutS + 20) * 1000,
  ).finally(() => clearInterval(sampler))
  const result = parseLtResult(lt.stdout)
  if (!result?.done) throw new Error(`libtorrent did not finish: ${lt.stdout.trim()} ${lt.stderr.trim().slice(-500)}`)
  const downloaded = join(outDir, name)
  const got = await stat(downloaded)
  if (got.size !== size) throw new Error(`libtorrent wrote ${got.size} bytes, expected ${size}`)
  const gotSha1 = await sha1File(downloaded)
  if (gotSha1 !== sha1) throw new Error(`libtorrent's copy differs from the source (sha1 ${gotSha1} ≠ ${sha1})`)
  if (result.transports && result.transports.join() !== 'tcp') throw new Error(`expected one TCP connection, libtorrent used ${result.transports.join('+') || 'none'}`)
  const btRate = size / result.seconds
  // libtorrent connects the peer given with connect_peer() only on a later tick of its own: a fixed delay before the first byte.
  const untilFirstByte = firstUpload === undefined ? undefined : (firstUpload - launched) / 1000
  const streaming = firstUpload !== undefined && lastUpload !== undefined && lastUpload > firstUpload ? size / ((lastUpload - firstUpload) / 1000) : undefined
  progress(
    `seeding: BitTorrent ${result.seconds.toFixed(2)} s = ${fmtMBs(btRate)} (copy verified, sha1 ${sha1.slice(0, 12)}…)` +
      (streaming ? `; first byte out ${untilFirstByte!.toFixed(2)} s after starting the client, then ${fmtMBs(streaming)} to the last byte` : ''),
  )
  await seeder.stop()

  // The reference: one plain HTTP origin streaming the same file.
  const server = http.createServer((req, reply) => {
    if (req.url !== `/${name}`) return void reply.writeHead(404).end()
    reply.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
    createReadStream(path).pipe(reply)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const closeServer = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve()
      server.close(() => resolve())
      server.closeAllConnections()
    })
  res.defer('stop the HTTP origin', closeServer)
  const port = (server.address() as AddressInfo).port
  const curl = await res.run('curl', ['-s', '-o', '/dev/null', '-w', '%{time_total} %{size_download} %{http_code}', `http://127.0.0.1:${port}/${name}`], timeoutS * 1000)
  const [seconds, bytes, status] = curl.stdout.trim().split(' ').map(Number)
  if (curl.code !== 0 || status !== 200 || bytes !== size || !seconds) throw new Error(`curl failed: code ${curl.code} output "${curl.stdout}" ${curl.stderr}`)
  const httpRate = size / seconds
  progress(`seeding: HTTP ${seconds.toFixed(2)} s = ${fmtMBs(httpRate)}`)
  await closeServer()

  return {
    rows: [
      {
        scenario: `Seeding throughput, 1 libtorrent client, loopback TCP, ${fmtSize(size)}`,
        gribswarm: fmtMBs(btRate),
        reference: `${fmtMBs(httpRate)} (1 HTTP origin, curl)`,
        ratio: fmtRatio(btRate / httpRate),
        target: `≥ ${fmtMBs(TARGET)}`,
        met: btRate >= TARGET ? 'yes' : 'no',
      },
    ],
    notes: [
      `Seeding: libtorrent ${result.seconds.toFixed(2)} s from the webtorrent seeder (piece length ${pieceLength / 1024} KiB, copy written to disk and verified by SHA-1); curl ${seconds.toFixed(2)} s to /dev/null from node:http. ` +
        (streaming
          ? `Seen from the seeder, the first byte left ${untilFirstByte!.toFixed(2)} s after the client started (python start-up, then libtorrent connects the given peer on its next tick), ` +
            `then ${fmtMBs(streaming)} from first to last byte: that fixed delay weighs on small files (quick mode).`
          : ''),
    ],
  }
}
