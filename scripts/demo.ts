// `npm run demo`: the whole flow offline, on loopback. A local object store laid out like
// Météo-France's serves CCSDS GRIB2 files; the real daemon (npm start) fetches, validates,
// torrents, seeds and publishes them; we wait for the RSS feed, then two BitTorrent clients
// from Debian (aria2c, libtorrent) download from it, and the bytes are compared. Then the
// distributed half: a volunteer's mirror (npm run mirror) copies everything over BitTorrent,
// and, when a RabbitMQ broker runs on loopback, the Sarracenia v03 messages are shown.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import amqp from 'amqplib'
import type { Catalog } from '../src/catalog.ts'
import type { StatusReport } from '../src/daemon.ts'
import { recentRuns } from '../src/source.ts'
import type { ItemRecord } from '../src/store.ts'
import { loopbackConfig } from '../test/kit/config.ts'
import { cliCommand, startCli } from '../test/kit/daemon.ts'
import { arpegeKey, FakeUpstream } from '../test/kit/fake-upstream.ts'
import { sharedFixture } from '../test/kit/grib-fixtures.ts'
import { aria2Download, libtorrentDownload } from '../test/kit/peers.ts'
import { Resources } from '../test/kit/resources.ts'
import { freePort, waitFor } from '../test/kit/wait.ts'

const { values: args } = parseArgs({ options: { keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } })
if (args.help) {
  process.stdout.write(
    `Usage: npm run demo [-- --keep]\n\nRuns the whole gribswarm flow offline and prints a summary.\n--keep leaves the daemon running so you can open its status page (Ctrl-C to stop).\n`,
  )
  process.exit(0)
}

const say = (text: string) => process.stdout.write(`\n== ${text}\n`)
// Undone at the end, children first: the daemon and the mirror, the subscriber, the upstream, the work directory.
const res = new Resources()
const work = await res.tempDir('gribswarm-demo-')
const upstream = new FakeUpstream()
res.defer('stop the upstream', () => upstream.stop())
const BROKER = 'amqp://guest:guest@127.0.0.1:5672'
const EXCHANGE = 'xpublic-demo'
let subscriber: amqp.ChannelModel | undefined
res.defer('close the subscriber', () => subscriber?.close().catch(() => {}))

/** Runs one of the project's CLIs (src/cli/NAME.ts), its output on ours; rejects if it exits. */
function runCli(name: string, args: string[], env: Record<string, string>): Promise<never> {
  const child = startCli(res, cliCommand(name), args, { env, keepGribswarmEnv: true, output: 'inherit' })
  return child.exited.then(({ code }) => {
    throw new Error(`${name} exited (${code})`)
  })
}

/** The v03 messages the origin posts, if a broker runs here (scripts/broker.sh start). */
async function subscribe(): Promise<Array<{ topic: string; body: Record<string, unknown> }> | undefined> {
  try {
    subscriber = await amqp.connect(BROKER, { timeout: 2000 })
  } catch {
    return undefined
  }
  subscriber.on('error', () => {})
  const received: Array<{ topic: string; body: Record<string, unknown> }> = []
  const channel = await subscriber.createChannel()
  await channel.assertExchange(EXCHANGE, 'topic', { durable: true })
  const { queue } = await channel.assertQueue('', { exclusive: true })
  await channel.bindQueue(queue, EXCHANGE, 'v03.#')
  await channel.consume(queue, (m) => m && received.push({ topic: m.fields.routingKey, body: JSON.parse(m.content.toString()) }), {
    noAck: true,
  })
  return received
}

try {
  const run = recentRuns(new Date(), [0, 6, 12, 18], 1)[0]!
  say(`1. A local object store with ARPEGE 0.1° files for run ${run} (CCSDS-packed GRIB2 made with GDAL + ecCodes)`)
  await upstream.start()
  const files = new Map<string, Buffer>()
  let seed = 1
  for (const pkg of ['SP1', 'SP2']) {
    for (const range of ['000H012H', '013H024H']) {
      const path = await sharedFixture(`demo-${pkg}-${range}.grib2`, { seed: seed++, bands: 8 })
      const key = arpegeKey({ run, grid: '01', pkg, range })
      await upstream.put({ key, path })
      files.set(key.split('/').pop()!.replaceAll(':', ''), await readFile(path))
      process.stdout.write(`   ${upstream.bucketUrl}/${key} (${(await readFile(path)).length} bytes)\n`)
    }
  }

  say('2. The daemon (npm start) against it: tracker, seeder, HTTP, a pass at start')
  const notifications = await subscribe()
  process.stdout.write(
    notifications
      ? `   RabbitMQ found on 127.0.0.1:5672: the daemon posts v03 messages to exchange ${EXCHANGE}\n`
      : '   (no RabbitMQ on 127.0.0.1:5672, so no notifications: scripts/broker.sh start to see them)\n',
  )
  const { values, publicBaseUrl: base } = await loopbackConfig(join(work, 'data'), {
    source: { bucketUrl: upstream.bucketUrl, fallbackBucketUrls: [], ranges: ['000H012H', '013H024H'], lookbackRuns: 1 },
    disk: { minFreeBytes: 0 },
    ...(notifications ? { notify: { brokerUrl: BROKER, exchange: EXCHANGE, source: 'demo-origin' } } : {}),
  })
  const configFile = join(work, 'config.json')
  await writeFile(configFile, JSON.stringify(values))
  const exited = runCli('start', [], { GRIBSWARM_CONFIG: configFile })

  say(`3. Waiting for the 4 files in ${base}/rss.xml`)
  const rss = await Promise.race([
    exited,
    waitFor(
      '4 items in the RSS feed',
      async () => {
        const text = await fetch(`${base}/rss.xml`).then((r) => r.text())
        return (text.match(/<item>/g)?.length ?? 0) >= 4 ? text : undefined
      },
      120_000,
    ),
  ])
  const items = [
    ...rss.matchAll(/<item>[\s\S]*?<enclosure url="([^"]+)"[\s\S]*?<fileName>([^<]+)<\/fileName>[\s\S]*?<magnetURI>([^<]+)<\/magnetURI>/g),
  ].map((m) => ({
    torrentUrl: m[1]!,
    fileName: m[2]!,
    magnet: m[3]!.replaceAll('&amp;', '&'),
  }))
  for (const item of items) process.stdout.write(`   ${item.fileName}\n     torrent ${item.torrentUrl}\n`)

  const check = async (label: string, path: string, fileName: string) => {
    const same = (await readFile(path)).equals(files.get(fileName)!)
    process.stdout.write(
      `   ${label}: ${fileName} ${same ? 'identical to the upstream file, byte for byte' : 'DIFFERS from the upstream file'}\n`,
    )
    if (!same) throw new Error(`${label}: downloaded ${fileName} differs`)
  }

  say('4. aria2c (Debian) downloads the first RSS enclosure: .torrent → tracker → our seeder (its web seed only if peers cannot serve it)')
  const first = items[0]!
  const aria = await aria2Download(first.torrentUrl, join(work, 'aria2'), 60_000)
  if (!aria.ok) throw new Error(`aria2c failed: ${aria.output}`)
  await check(`aria2c, ${aria.seconds.toFixed(1)} s`, join(work, 'aria2', first.fileName), first.fileName)

  say("5. libtorrent (Debian; qBittorrent's engine) downloads the second from its magnet link alone, web seed ignored")
  const second = items[1]!
  const lt = await libtorrentDownload(second.magnet.replace(/&ws=[^&]*/g, ''), join(work, 'libtorrent'), 60_000)
  if (!lt.ok) throw new Error(`libtorrent failed: ${lt.output}`)
  await check(`libtorrent, ${lt.seconds.toFixed(1)} s`, join(work, 'libtorrent', second.fileName), second.fileName)

  say('6. A meteorologist wants 2 m temperature and 10 m wind, not whole files: the catalog, then one field subset')
  const catalog = (await fetch(`${base}/api/catalog?q=${encodeURIComponent('10 m wind, latest run')}`).then((r) => r.json())) as Catalog
  const windFile = catalog.runs[0]!.files[0]!
  process.stdout.write(
    `   ${base}/api/catalog?q=10 m wind, latest run → ${windFile.fileName}: ${windFile.fields.map((f) => `${f.param} ${f.levelText} ${f.ftime}`).join('; ')}\n`,
  )
  const subsetUrl = `${windFile.links.http}?param=TMP,UGRD,VGRD&level=2-HTGL,10-HTGL&step=0`
  const subset = Buffer.from(await (await fetch(subsetUrl)).arrayBuffer())
  const sidecar = (await fetch(windFile.links.sidecar).then((r) => r.json())) as ItemRecord
  const original = files.get(windFile.fileName)!
  const expected = Buffer.concat(
    sidecar
      .inventory!.filter(
        (f) => ['TMP@2-HTGL', 'UGRD@10-HTGL', 'VGRD@10-HTGL'].includes(`${f.param.shortName}@${f.level.shortName}`) && f.step.end === 0,
      )
      .map((f) => original.subarray(f.offset, f.offset + f.length)),
  )
  process.stdout.write(`   curl '${subsetUrl}'\n`)
  process.stdout.write(
    `   ${subset.length} bytes of ${original.length} (${((100 * subset.length) / original.length).toFixed(0)} %): ` +
      `${subset.equals(expected) ? 'the 3 matching GRIB2 messages of the upstream file, byte for byte' : 'DIFFERS from the matching messages'}\n`,
  )
  if (!subset.equals(expected)) throw new Error(`the subset ${subsetUrl} differs from the matching messages`)
  process.stdout.write(`   its inventory: ${windFile.links.idx}\n`)

  say("7. A volunteer's mirror: npm run mirror -- <the origin's feed URL> copies every file over BitTorrent")
  const mirrorPort = await freePort()
  const mirrorBase = `http://127.0.0.1:${mirrorPort}`
  const mirrorExited = runCli(
    'mirror',
    [`${base}/feed.json`, '--port', String(mirrorPort), '--public-url', mirrorBase, '--data-dir', join(work, 'mirror')],
    {
      GRIBSWARM_HTTP__HOST: '127.0.0.1',
      GRIBSWARM_TRACKER__HOST: '127.0.0.1',
      GRIBSWARM_TRACKER__PORT: String(await freePort()),
      GRIBSWARM_SEED__PORT: '0',
      GRIBSWARM_SEED__DHT: 'false',
    },
  )
  const mirrored = await Promise.race([
    exited,
    mirrorExited,
    waitFor(
      '4 files on the mirror',
      async () => {
        const s = (await fetch(`${mirrorBase}/api/status`).then((r) => r.json())) as StatusReport
        return s.items.length >= 4 ? s.items : undefined
      },
      120_000,
    ),
  ])
  for (const item of mirrored) {
    const path = join(work, `mirrored-${item.fileName}`)
    await writeFile(path, Buffer.from(await (await fetch(item.httpUrl)).arrayBuffer()))
    await check(`mirror ${mirrorBase}, same infohash ${item.infoHash.slice(0, 12)}…`, path, item.fileName)
  }

  if (notifications) {
    say(`8. The v03 messages a data centre subscribed to v03.# on exchange ${EXCHANGE} received`)
    await waitFor('a v03 message per file', () => notifications.length >= 4, 10_000)
    for (const { topic, body } of notifications) process.stdout.write(`   ${topic}  ${body.relPath}\n`)
    process.stdout.write(`   the first in full:\n${JSON.stringify(notifications[0]!.body, null, 2).replace(/^/gm, '     ')}\n`)
  }

  const status = (await fetch(`${base}/api/status`).then((r) => r.json())) as StatusReport
  say('Summary')
  process.stdout.write(`   ${status.items.length} files published, validated with GDAL, seeded, listed in RSS/Atom/JSON feeds\n`)
  for (const item of status.items)
    process.stdout.write(`   ${item.fileName}: uploaded ${item.uploaded} bytes over BitTorrent, ${item.seeders} seeder(s) on the tracker\n`)
  process.stdout.write(`   Status page: ${base}/   Feeds: ${base}/rss.xml ${base}/atom.xml ${base}/feed.json\n`)
  process.stdout.write(`   The mirror: ${mirrorBase}/ serves the same ${mirrored.length} files, seeds them in the same swarms\n`)
  process.stdout.write('\nDEMO OK\n')
  if (args.keep) {
    process.stdout.write('\n--keep: the origin and the mirror keep running; Ctrl-C to stop.\n')
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()))
  }
} catch (err) {
  process.stderr.write(`\nDEMO FAILED: ${(err as Error).message}\n`)
  process.exitCode = 1
} finally {
  await res.cleanup()
}
