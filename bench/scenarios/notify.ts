// Scenario "notify": notification latency, from a file being published to its v03 message reaching a
// subscriber, on loopback. The daemon runs in this process (its log marks the moment each file
// is published, after the atomic rename), fetching small CCSDS GRIB2 files one at a time from
// a local upstream; a subscriber on its own AMQP connection binds to the daemon's exchange.
// Reference, same broker and subscriber: a bare amqplib publish on a confirm channel, which is
// what the notify stage costs without its on-disk outbox.
import { randomBytes } from 'node:crypto'
import { stat } from 'node:fs/promises'
import amqp from 'amqplib'
import { Daemon } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { loadLoopbackConfig } from '../../test/kit/config.ts'
import { arpegeKey, FakeUpstream } from '../../test/kit/fake-upstream.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { quantile } from '../../test/kit/measure.ts'
import { waitFor } from '../../test/kit/wait.ts'
import { BENCH_BROKER, ensureBroker, FIXTURE_CACHE } from '../lib/services.ts'
import { fmtMB, fmtRatio, progress, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const RUN = '2026-11-23T00:00:00Z'
const TARGET_MS = 50

const fmt = (ms: number) => `${ms.toFixed(1)} ms`

/** A subscriber on its own connection: calls `onMessage` with each body and its arrival time. */
async function subscribe(exchange: string, onMessage: (body: { relPath: string }, at: number) => void) {
  const connection = await amqp.connect(BENCH_BROKER)
  const channel = await connection.createChannel()
  await channel.assertExchange(exchange, 'topic', { durable: true })
  const { queue } = await channel.assertQueue('', { exclusive: true })
  await channel.bindQueue(queue, exchange, 'v03.#')
  await channel.consume(queue, (m) => m && onMessage(JSON.parse(m.content.toString()) as { relPath: string }, performance.now()), {
    noAck: true,
  })
  return async () => {
    await channel.deleteExchange(exchange).catch(() => {})
    await connection.close()
  }
}

export async function benchNotify({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const count = quick ? 10 : 40
  await ensureBroker(res)
  const fixture = await fixtureFor(FIXTURE_CACHE, 'arpege-ccsds-b2-r1.grib2', { bands: 2 })
  const fixtureSize = (await stat(fixture)).size
  const ranges = Array.from({ length: count }, (_, i) => `${String(i).padStart(3, '0')}H${String(i + 1).padStart(3, '0')}H`)
  const upstream = new FakeUpstream()
  for (const range of ranges) await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path: fixture })
  await upstream.start()
  res.defer('stop the upstream', () => upstream.stop())

  const exchange = `xpublic-bench-${randomBytes(4).toString('hex')}`
  const published = new Map<string, number>()
  const received = new Map<string, number>()
  const unsubscribe = await subscribe(exchange, (body, at) => received.set(body.relPath, at))
  res.defer('close the subscriber', unsubscribe)

  const config = await loadLoopbackConfig(await res.tempDir('gribswarm-bench-notify-'), {
    source: { bucketUrl: upstream.bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges, lookbackRuns: 1 },
    fetch: { concurrency: 1 },
    seed: { utp: false },
    notify: { brokerUrl: BENCH_BROKER, exchange, source: 'bench' },
    log: { level: 'warn' },
  })
  // 'published' is emitted right after the store's atomic rename: the moment the file is public.
  const events = new Events()
  events.on('published', ({ item }) => published.set(item.relPath, performance.now()))
  const daemon = await Daemon.start(config, createLogger('warn'), { schedule: false, events })
  res.defer('stop the in-process daemon', () => daemon.stop())
  await waitFor('the notifier to connect', () => daemon.notifier!.status().connected, 30_000)
  progress(`notify: daemon publishing ${count} small files one at a time, subscriber on ${exchange}`)
  const report = await daemon.runPass({ runs: [RUN] })
  if (report?.published.length !== count)
    throw new Error(`the pass published ${report?.published.length ?? 0} of ${count} files: ${JSON.stringify(report?.failed)}`)
  await waitFor(`${count} messages at the subscriber`, () => received.size === count, 30_000)
  const latencies = [...published].map(([relPath, at]) => received.get(relPath)! - at)
  if (latencies.length !== count || latencies.some((ms) => !(ms >= 0)))
    throw new Error(`unmatched messages: published ${published.size}, received ${received.size}`)
  await daemon.stop()

  // Reference: the same subscriber, a bare confirm-channel publish per message, one at a time.
  const refExchange = `xpublic-bench-${randomBytes(4).toString('hex')}`
  const refReceived = new Map<string, number>()
  const refUnsubscribe = await subscribe(refExchange, (body, at) => refReceived.set(body.relPath, at))
  const connection = await amqp.connect(BENCH_BROKER)
  const channel = await connection.createConfirmChannel()
  const refLatencies: number[] = []
  for (let i = 0; i < count; i++) {
    const relPath = `ref/${i}.grib2`
    const sent = performance.now()
    channel.publish(refExchange, 'v03.ref', Buffer.from(JSON.stringify({ relPath })), { contentType: 'application/json', persistent: true })
    await channel.waitForConfirms()
    const at = await waitFor(`reference message ${i}`, () => refReceived.get(relPath), 10_000, 1)
    refLatencies.push(at - sent)
  }
  await connection.close()
  await refUnsubscribe()

  const median = quantile(latencies, 0.5)
  const refMedian = quantile(refLatencies, 0.5)
  progress(`notify: median ${fmt(median)} (p90 ${fmt(quantile(latencies, 0.9))}); bare publish median ${fmt(refMedian)}`)
  return {
    rows: [
      {
        scenario: `Notification latency, file published → v03 message at a subscriber, loopback RabbitMQ (median of ${count})`,
        gribswarm: fmt(median),
        reference: `${fmt(refMedian)} (bare amqplib publish with confirms, no outbox)`,
        ratio: fmtRatio(median / refMedian),
        target: `≤ ${TARGET_MS} ms`,
        met: median <= TARGET_MS ? 'yes' : 'no',
      },
    ],
    notes: [
      `Notifications: ${count} files of ${fmtMB(fixtureSize)} (CCSDS GRIB2) published one at a time; latency from the pipeline's "published" log line (after the atomic rename) ` +
        `to the subscriber's consume callback, same process clock: median ${fmt(median)}, p90 ${fmt(quantile(latencies, 0.9))}, max ${fmt(Math.max(...latencies))}. ` +
        `The path: outbox file written and fsynced, sender woken, publish, confirm. Bare publish: median ${fmt(refMedian)}, max ${fmt(Math.max(...refLatencies))}.`,
    ],
  }
}
