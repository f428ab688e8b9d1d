// /metrics scraped by a real Prometheus (Debian's prometheus 2.42): the daemon with its real
// parts publishes two files from a local object store (notifications to the RabbitMQ the
// integration tier runs), one file is downloaded over HTTP, and what Prometheus stored must
// match what /api/status says. promtool checks the exposition and the example alert rules,
// which Prometheus also loads and evaluates against the daemon's series.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { before, test } from 'node:test'
import type { Config } from '../../src/config.ts'
import { Daemon, type StatusReport } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { BROKER } from '../kit/amqp.ts'
import { onCleanup, RUN, tempDir, testConfig, upstreamServing, waitFor } from '../kit/helpers.ts'
import { promtool, startPrometheus, type PrometheusHandle } from '../kit/prometheus.ts'
import { Resources } from '../kit/resources.ts'

const ALERT_RULES = fileURLToPath(new URL('../../config/prometheus-alerts.yml', import.meta.url))

const res = new Resources()
let daemon: Daemon
let config: Config
let prometheus: PrometheusHandle

before(async () => {
  const upstream = await upstreamServing(['000H012H', '013H024H'])
  onCleanup(() => upstream.stop())
  config = await testConfig(await tempDir(), upstream.bucketUrl, {
    notify: { brokerUrl: BROKER, exchange: `xpublic-metrics-${randomBytes(3).toString('hex')}`, source: 'test-origin', maxBacklog: 100 },
  })
  daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  onCleanup(() => daemon.stop())
  // Prometheus (and promtool's files) go first: it stops scraping before the daemon stops.
  onCleanup(function stopPrometheus() {
    return res.cleanup()
  })
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 2, JSON.stringify(report?.failed))
  // One plain HTTP download, so that the HTTP counters have something to say.
  const item = daemon.store.list()[0]!
  const body = await (await fetch(`${config.http.publicBaseUrl}/data/${item.relPath}`)).arrayBuffer()
  assert.equal(body.byteLength, item.size)
  // Both notifications accepted by the broker before anything is compared: the figures stay put.
  await waitFor('both notifications sent', () => daemon.notifier!.status().sent === 2 && daemon.notifier!.status().backlog === 0, 20_000)
  prometheus = await startPrometheus(res, { targets: [`127.0.0.1:${daemon.httpPort}`], ruleFiles: [ALERT_RULES] })
})

async function status(): Promise<StatusReport> {
  return (await (await fetch(`${config.http.publicBaseUrl}/api/status`)).json()) as StatusReport
}

/** Polls Prometheus until `expr` has one series whose value is `expected`. */
async function expectValue(expr: string, expected: number): Promise<void> {
  let last: unknown
  await waitFor(
    `Prometheus: ${expr} = ${expected}`,
    async () => {
      const result = await prometheus.query(expr)
      last = result
      return result.length === 1 && Math.abs(result[0]!.value - expected) <= 1e-9 * Math.max(1, Math.abs(expected))
    },
    20_000,
    250,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last answer ${JSON.stringify(last)}`)
  })
}

test('Prometheus scrapes /metrics and its figures match /api/status', async () => {
  await waitFor(
    'the gribswarm target up',
    async () => {
      const { activeTargets } = await prometheus.api<{ activeTargets: Array<{ health: string; scrapePool: string; lastError: string }> }>(
        'targets',
      )
      return activeTargets.length === 1 && activeTargets[0]!.scrapePool === 'gribswarm' && activeTargets[0]!.health === 'up'
    },
    20_000,
    250,
  )
  const s = await status()
  assert.equal(s.items.length, 2)
  const totalSize = s.items.reduce((sum, item) => sum + item.size, 0)

  await expectValue('sum(gribswarm_files_published_total)', s.items.length)
  await expectValue('gribswarm_files_published_total{package="SP1",grid="01",from="upstream"}', 2)
  await expectValue('gribswarm_published_files', s.items.length)
  await expectValue('gribswarm_torrents_seeded', s.seeder.torrents)
  await expectValue('gribswarm_passes_total{outcome="ok"}', 1)
  await expectValue('gribswarm_passes_total{outcome="error"}', 0)
  await expectValue('gribswarm_pass_duration_seconds_count', 1)
  await expectValue('gribswarm_pass_files_available', s.pass.lastReport!.available)
  await expectValue('sum(gribswarm_files_failed_total)', s.pass.lastReport!.failed.length)
  await expectValue('gribswarm_upstream_fetched_bytes_total', totalSize)
  await expectValue('gribswarm_upstream_publish_delay_seconds_count', 2)
  await expectValue('gribswarm_last_successful_pass_timestamp_seconds', Date.parse(s.pass.lastSucceededAt!) / 1000)
  await expectValue('gribswarm_disk_published_bytes', s.disk.publishedBytes)
  await expectValue('gribswarm_disk_budget_bytes', s.disk.budgetBytes)
  await expectValue('gribswarm_http_sent_bytes_total{channel="data"}', s.http.dataBytes)
  await expectValue('gribswarm_http_requests_total{channel="data"}', s.http.dataRequests)
  await expectValue('gribswarm_http_sent_bytes_total{channel="webseed"}', s.http.webSeedBytes)
  await expectValue('gribswarm_bittorrent_sent_bytes_total', s.seeder.uploaded)
  await expectValue('gribswarm_offload_origin_bytes', s.swarm.originBytes)
  await expectValue('gribswarm_notify_sent_total', s.notify!.sent)
  await expectValue('gribswarm_notify_backlog', s.notify!.backlog)
  await expectValue('gribswarm_notify_connected', 1)
  await expectValue('gribswarm_notify_latency_seconds_count', 2)
  assert.equal(s.http.dataBytes, s.items.find((item) => item.http.dataBytes > 0)!.size, 'the download was counted once')
  // Process metrics come along, under their standard names.
  assert.ok((await prometheus.query('process_resident_memory_bytes{job="gribswarm"}'))[0]!.value > 0)
})

test('promtool finds nothing to say about the exposition', async () => {
  const response = await fetch(`${config.http.publicBaseUrl}/metrics`)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
  const text = await response.text()
  const checked = await promtool(res, ['check', 'metrics'], text)
  assert.equal(checked.code, 0, checked.output)
  assert.equal(checked.output.trim(), '', 'no lint problem')
})

test('the example alert rules are valid, load into Prometheus and evaluate without error; none fires on a healthy node', async () => {
  const checked = await promtool(res, ['check', 'rules', ALERT_RULES])
  assert.equal(checked.code, 0, checked.output)
  assert.match(checked.stdout, /SUCCESS: 5 rules found/)

  type Rule = { name: string; health: string; lastError?: string; lastEvaluation: string; state: string }
  const rules = await waitFor(
    'every rule evaluated',
    async () => {
      const { groups } = await prometheus.api<{ groups: Array<{ rules: Rule[] }> }>('rules')
      const all = groups.flatMap((g) => g.rules)
      return all.length === 5 && all.every((r) => r.health !== 'unknown') ? all : undefined
    },
    20_000,
    250,
  )
  assert.deepEqual(rules.map((r) => r.name).sort(), [
    'GribswarmDiskNearBudget',
    'GribswarmLowOffload',
    'GribswarmNoSuccessfulPass',
    'GribswarmNotifyBacklogGrowing',
    'GribswarmPublishFailures',
  ])
  for (const rule of rules) {
    assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError}`)
    assert.equal(rule.state, 'inactive', rule.name)
  }
})
