// Scenario "pump": following a plain Sarracenia pump, on loopback. A v03 post exactly as a stock
// sr3_post sends it (../shared/vendor/sr3-post-v03.txt: no gribswarm fields) goes to an exchange
// a daemon in this process follows; the file is served by a plain HTTP server, unlimited (the
// CPU is the limit) and then at 50 MB/s (a pump across a network). Measured: from the post to
// the file seeding (the 'seeding' event: downloaded, checked against its sha512, validated by
// GDAL, torrent made, published, seeded). Reference, same run, server and rate: a plain HTTP
// download of the same file to disk, which the copy cannot do without.
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import amqp from 'amqplib'
import got from 'got'
import { Daemon } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { v03Time } from '../../src/v03.ts'
import { loadLoopbackConfig } from '../../test/kit/config.ts'
import { FakeUpstream } from '../../test/kit/fake-upstream.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { quantile } from '../../test/kit/measure.ts'
import { waitFor } from '../../test/kit/wait.ts'
import { BENCH_BROKER, ensureBroker, FIXTURE_CACHE } from '../lib/services.ts'
import { fmtMB, fmtMBs, fmtMs, fmtRatio, MB, progress, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const TARGET_OVERHEAD_MS = 1000
const REL_DIR = '20261123/pump/arpege'

export async function benchPump({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  await ensureBroker(res)
  // ~100 MB (43 copies of 4 CCSDS bands), ~12 MB in quick mode.
  const repeat = quick ? 5 : 43
  const fixture = await fixtureFor(FIXTURE_CACHE, `arpege-ccsds-b4-r${repeat}.grib2`, { bands: 4, repeat })
  const size = (await stat(fixture)).size
  const sha512 = createHash('sha512')
    .update(await readFile(fixture))
    .digest('base64')
  const pump = new FakeUpstream()
  await pump.start()
  res.defer('stop the pump', () => pump.stop())
  const scratch = await res.tempDir('gribswarm-bench-pump-')
  const connection = await amqp.connect(BENCH_BROKER)
  res.defer('close the posting connection', () => connection.close())
  const channel = await connection.createConfirmChannel()

  /** One file posted to a new follower with the pump at `rate`: post → seeding, and the plain download. */
  async function measure(rate: number | undefined) {
    pump.setRate(rate)
    const name = `pump-${randomBytes(3).toString('hex')}.grib2`
    const relPath = `${REL_DIR}/${name}`
    await pump.put({ key: relPath, path: fixture })
    const url = `${pump.bucketUrl}/${relPath}`
    const downloads: number[] = []
    for (let i = 0; i < 3; i++) {
      const target = join(scratch, 'reference')
      const started = performance.now()
      await pipeline(got.stream(url), createWriteStream(target))
      downloads.push(performance.now() - started)
      await rm(target)
    }

    const exchange = `xs_bench-pump-${randomBytes(4).toString('hex')}`
    await channel.assertExchange(exchange, 'topic', { durable: true })
    const config = await loadLoopbackConfig(join(scratch, exchange), {
      source: { enabled: false },
      seed: { utp: false },
      mirror: { brokers: [{ url: BENCH_BROKER, exchange, topics: ['v03.#'] }], concurrency: 1 },
      log: { level: 'warn' },
    })
    const [published, seeding] = [new Map<string, number>(), new Map<string, number>()]
    const events = new Events()
    events.on('published', ({ item }) => published.set(item.relPath, performance.now()))
    events.on('seeding', ({ item }) => seeding.set(item.relPath, performance.now()))
    const daemon = await Daemon.start(config, createLogger('warn'), { schedule: false, events })
    try {
      await waitFor('the follower to bind', () => daemon.brokers.every((b) => b.status().following), 30_000)
      const now = v03Time(new Date())
      const body = {
        pubTime: now,
        relPath,
        baseUrl: `${pump.bucketUrl}/`,
        source: 'guest',
        mode: '644',
        size,
        mtime: now,
        atime: now,
        identity: { method: 'sha512', value: sha512 },
      }
      const posted = performance.now()
      channel.publish(exchange, `v03.${REL_DIR.replaceAll('/', '.')}`, Buffer.from(JSON.stringify(body)), {
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        persistent: true,
      })
      await channel.waitForConfirms()
      const seeded = await waitFor('the copy to be seeding', () => seeding.get(relPath), quick ? 60_000 : 180_000, 5)
      return { download: quantile(downloads, 0.5), downloads, total: seeded - posted, toPublished: published.get(relPath)! - posted }
    } finally {
      await daemon.stop()
      await channel.deleteExchange(exchange).catch(() => {})
    }
  }

  const rows: Row[] = []
  const notes: string[] = []
  for (const rate of [undefined, 50 * MB]) {
    const where = rate ? `pump at ${fmtMBs(rate)}` : 'pump unlimited'
    progress(`pump: an sr3-style post of ${fmtMB(size)}, ${where}`)
    const m = await measure(rate)
    const overhead = m.total - m.download
    progress(`pump: ${where}: post → seeding ${fmtMs(m.total)}, plain download ${fmtMs(m.download)}`)
    rows.push({
      scenario: `Following a Sarracenia pump: sr3-style post → seeding on the follower, ${fmtMB(size)} GRIB2, ${where}, loopback`,
      gribswarm: fmtMs(m.total),
      reference: `${fmtMs(m.download)} (plain HTTP download to disk, median of 3)`,
      ratio: fmtRatio(m.total / m.download),
      target: `≤ download + ${TARGET_OVERHEAD_MS} ms`,
      met: overhead <= TARGET_OVERHEAD_MS ? 'yes' : 'no',
    })
    notes.push(
      `Pump (${where}): one file of ${fmtMB(size)} (CCSDS GRIB2) announced by a v03 post with sr3_post's fields and no gribswarm fields; ` +
        `post → 'published' ${fmtMs(m.toPublished)}, → 'seeding' ${fmtMs(m.total)}: the download with its sha512, MD5 and piece hashes on the way, ` +
        `GDAL decoding every message as it arrives (at most one decode per core), the torrent, the atomic publish, seeding. ` +
        `Plain downloads: ${m.downloads.map(fmtMs).join(', ')}. Overhead ${fmtMs(overhead)}.`,
    )
  }
  return { rows, notes }
}
