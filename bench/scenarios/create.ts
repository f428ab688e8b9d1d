// Scenario `create`: making a .torrent from a file already on disk. gribswarm's hashing (its
// PieceHasher fed from a read stream, then buildTorrent: the code that runs on every downloaded
// byte in the pipeline) against mktorrent with one thread per core, same piece length, on the
// same random file; both must give the same infohash. Cold page cache when we may drop it (root),
// and warm (file in the page cache, as right after a download) in every case.
import { randomFill } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, rm, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { basename, join } from 'node:path'
import { promisify } from 'node:util'
import { loadConfig } from '../../src/config.ts'
import { buildTorrent, pieceLengthFor, PieceHasher } from '../../src/torrent.ts'
import { median } from '../../test/kit/measure.ts'
import type { Resources } from '../../test/kit/resources.ts'
import { runMktorrent, type MadeTorrent } from '../lib/references.ts'
import { fmtMBs, fmtRatio, freeDiskBytes, MB, progress, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const fillRandom = promisify(randomFill)

/** Any URL will do: neither tool contacts the tracker, it is only written into the .torrent. */
const BENCH_ANNOUNCE = 'http://127.0.0.1:6969/announce'
/** Room left on the disk besides the test files, so that the benchmark never fills it. */
const DISK_MARGIN = 2_000_000_000
/** Median of this many runs per tool, size and cache state; the order of the tools alternates. */
const RUNS = 3

const sizeLabel = (bytes: number): string => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${Math.round(bytes / MB)} MB`)
/** Wall seconds, with three decimals below one second (quick mode's small files). */
const secs = (s: number): string => `${s.toFixed(s < 1 ? 3 : 2)} s`

/** gribswarm's way: the file's bytes through PieceHasher (as fetch.ts does while downloading), then buildTorrent. */
async function gribswarmTorrent(file: string, size: number, pieceLength: number): Promise<MadeTorrent> {
  const begin = performance.now()
  const hasher = new PieceHasher(pieceLength)
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hasher.update(chunk as Buffer)
  const pieces = hasher.digest()
  const built = buildTorrent({ name: basename(file), length: size, pieceLength, pieces, announce: [BENCH_ANNOUNCE], webSeeds: [] })
  const seconds = (performance.now() - begin) / 1000
  const hex = Array.from({ length: pieces.length / 20 }, (_, i) => pieces.subarray(i * 20, i * 20 + 20).toString('hex'))
  return { infoHash: built.infoHash, pieces: hex, seconds }
}

/** `size` random bytes, written once and flushed to disk so that no write-back runs during the measurements. */
async function writeRandomFile(path: string, size: number): Promise<void> {
  const buffer = Buffer.alloc(16 << 20)
  const file = await open(path, 'w')
  try {
    for (let written = 0; written < size;) {
      const chunk = buffer.subarray(0, Math.min(buffer.length, size - written))
      await fillRandom(chunk)
      await file.write(chunk, 0, chunk.length, written)
      written += chunk.length
    }
    await file.sync()
  } finally {
    await file.close()
  }
}

/** Empties the kernel's page cache (needs root); false when this process may not. */
export async function dropPageCache(res: Resources): Promise<boolean> {
  await res.run('sync', [], 120_000)
  return writeFile('/proc/sys/vm/drop_caches', '3\n').then(
    () => true,
    () => false,
  )
}

/** Reads the whole file once, so that it sits in the page cache. */
async function warmUp(file: string): Promise<void> {
  for await (const _ of createReadStream(file, { highWaterMark: 1 << 20 })) {
    // only reading
  }
}

interface Measured {
  state: 'cold' | 'warm'
  gribswarm: number[]
  mktorrent: number[]
}

export async function benchCreate({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const sizes = quick ? [64 * MB, 200 * MB] : [1000 * MB, 3600 * MB]
  const minPieces = loadConfig({ env: {} }).torrent.minPieces
  const threads = cpus().length
  const dir = await res.tempDir('gribswarm-bench-create-')
  const canDrop = await dropPageCache(res)
  const rows: Row[] = []
  const notes: string[] = []
  const summary: string[] = []

  for (const size of sizes) {
    const label = sizeLabel(size)
    const free = await freeDiskBytes(dir)
    if (free < size + DISK_MARGIN) {
      progress(`create: ${label} skipped: ${sizeLabel(free)} free in ${dir}, needs ${sizeLabel(size + DISK_MARGIN)}`)
      rows.push({
        scenario: `Torrent creation, ${label} file`,
        gribswarm: 'skipped',
        reference: 'skipped',
        ratio: '-',
        target: 'none',
        met: 'n/a',
      })
      notes.push(
        `Torrent creation, ${label}: skipped, only ${sizeLabel(free)} free on the disk of ${dir} (needs the file plus ${sizeLabel(DISK_MARGIN)} to spare).`,
      )
      continue
    }
    const file = join(dir, `random-${label.replace(/\W+/g, '')}.bin`)
    const out = join(dir, 'mktorrent.torrent')
    const pieceLength = pieceLengthFor(size, minPieces)
    progress(`create: writing ${label} of random bytes`)
    await writeRandomFile(file, size)

    const states: Measured[] = []
    for (const state of canDrop ? (['cold', 'warm'] as const) : (['warm'] as const)) {
      const measured: Measured = { state, gribswarm: [], mktorrent: [] }
      if (state === 'warm') await warmUp(file)
      let reference: MadeTorrent | undefined
      for (let run = 0; run < RUNS; run++) {
        // Alternate which tool goes first, so neither always runs on a machine just made busy.
        const order = run % 2 === 0 ? (['gribswarm', 'mktorrent'] as const) : (['mktorrent', 'gribswarm'] as const)
        for (const tool of order) {
          if (state === 'cold') await dropPageCache(res)
          const made =
            tool === 'gribswarm'
              ? await gribswarmTorrent(file, size, pieceLength)
              : await runMktorrent(res, file, pieceLength, [BENCH_ANNOUNCE], out)
          measured[tool].push(made.seconds)
          // Correctness: both tools must describe the same bytes the same way.
          if (!reference) reference = made
          else if (made.infoHash !== reference.infoHash) {
            const firstDiff = made.pieces.findIndex((p, i) => p !== reference!.pieces[i])
            throw new Error(
              `create: ${tool} gave infohash ${made.infoHash} for ${file}, the other tool ${reference.infoHash} ` +
                `(${made.pieces.length} vs ${reference.pieces.length} pieces, first differing piece ${firstDiff})`,
            )
          }
        }
      }
      progress(
        `create: ${label}, ${state} cache: gribswarm ${measured.gribswarm.map(secs).join(', ')}; ` +
          `mktorrent -t ${threads} ${measured.mktorrent.map(secs).join(', ')}`,
      )
      states.push(measured)
    }
    await rm(file, { force: true })

    for (const { state, gribswarm, mktorrent } of states) {
      const g = median(gribswarm)
      const m = median(mktorrent)
      rows.push({
        scenario: `Torrent creation from a file on disk, ${label} random bytes, piece length ${pieceLength / 1024} KiB, ${state} page cache (seconds, median of ${RUNS}; lower is better)`,
        gribswarm: `${secs(g)} (${fmtMBs(size / g)})`,
        reference: `${secs(m)} (${fmtMBs(size / m)}) mktorrent -t ${threads}`,
        ratio: fmtRatio(g / m),
        target: 'none (compared only)',
        met: 'n/a',
      })
      summary.push(
        `${label} ${state}: gribswarm ${gribswarm.map(secs).join(', ')}, mktorrent ${mktorrent.map(secs).join(', ')}` +
          (g > m ? ` (gribswarm ${((g / m - 1) * 100).toFixed(0)} % slower)` : ` (gribswarm ${((1 - g / m) * 100).toFixed(0)} % faster)`),
      )
    }
  }

  notes.push(
    `Torrent creation${quick ? " (quick mode: small files, not the full run's 1 GB and 3.6 GB)" : ''}: one file of random bytes per size, written once and fsynced. ` +
      `gribswarm = src/torrent.ts PieceHasher fed by a 1 MiB read stream, then buildTorrent, in the benchmark's own Node process ` +
      `(one thread: Node hashes on the main thread); mktorrent 1.1 as a child, \`mktorrent -t ${threads} -l <log2 piece length> -a <url> -o out.torrent FILE\`. ` +
      `Piece length from gribswarm's pieceLengthFor(size, minPieces ${minPieces}) for both; both gave the same infohash (checked on every run). ` +
      `Median of ${RUNS} runs, the tools alternating which goes first. ` +
      (canDrop
        ? 'Cold: page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every run of either tool, so the file is read from disk; warm: the file read once beforehand and kept in the page cache. '
        : 'Warm page cache only (not root: the page cache cannot be dropped here); the file read once beforehand. ') +
      `Runs: ${summary.join('; ')}. ` +
      'In production gribswarm never hashes a file after the fact: the pipeline feeds each downloaded chunk to PieceHasher (with MD5, SHA-512 and the GRIB check) ' +
      'as it arrives, so the torrent is ready at the last byte (see the publishing rows); a restart re-uses the stored .torrent (webtorrent re-checks the pieces only of a file whose size or mtime changed) ' +
      "and a mirror re-uses its origin's .torrent. This row measures the on-disk case anyway, for comparison.",
  )
  return { rows, notes }
}
