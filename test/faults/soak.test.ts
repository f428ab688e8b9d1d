// Soak: an hour of a daemon's life compressed into ten minutes (SOAK_SECONDS to change it).
// The real daemon (compiled, as `npm start` runs it) does a pass every 5 s, keeps each file
// 45 s, and a new file appears upstream every 10 s, while 16 libtorrent clients download from
// its feed without a pause. Invariants: resident memory and open file descriptors stay flat,
// no expiry is missed or early, every file that appeared upstream is published, the clients'
// downloads complete.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { daemonCommand, startDaemon, writeDaemonConfig } from '../kit/daemon.ts'
import { processCounts, quantile, residentBytes } from '../kit/measure.ts'
import { Resources } from '../kit/resources.ts'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { recentRuns } from '../../src/source.ts'
import { fixture, onCleanup, waitFor } from '../kit/helpers.ts'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600)
const NEW_FILE_EVERY_S = 10
const RETENTION_S = 45
const CHECK_EVERY_S = 2
/** How late an expiry may be on 2 busy cores before it counts as missed. */
const EXPIRY_SLACK_MS = (CHECK_EVERY_S + 8) * 1000
const CLIENTS = 16
const SOAK_CLIENTS = fileURLToPath(new URL('../kit/lt-soak.py', import.meta.url))

const MB = 1e6

test(
  `soak: ${SECONDS} s, a pass every 5 s, ${RETENTION_S} s retention, ${CLIENTS} clients: memory and fds flat, no expiry missed`,
  { timeout: (SECONDS + 300) * 1000 },
  async (t) => {
    const res = new Resources()
    onCleanup(() => res.cleanup())
    const upstream = new FakeUpstream()
    await upstream.start()
    res.defer('stop the upstream', () => upstream.stop())

    const run = recentRuns(new Date(), [0, 6, 12, 18], 1)[0]!
    const fileCount = Math.ceil(SECONDS / NEW_FILE_EVERY_S) + 1
    const ranges = Array.from({ length: fileCount }, (_, i) => `${String(i).padStart(3, '0')}H${String(i + 1).padStart(3, '0')}H`)
    const bodies = await Promise.all([0, 1, 2].map((i) => fixture(`soak-${i}.grib2`, { seed: 70 + i, bands: 4 })))
    let put = 0
    const putNext = () =>
      upstream.put({ key: arpegeKey({ run, grid: '01', pkg: 'SP1', range: ranges[put]! }), path: bodies[put++ % bodies.length]! })
    await putNext()

    const setup = await writeDaemonConfig(res, 'soak', {
      source: { bucketUrl: upstream.bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges, lookbackRuns: 2 },
      schedule: { cron: '*/5 * * * * *' },
      retention: { publishSeconds: RETENTION_S, checkEverySeconds: CHECK_EVERY_S },
    })
    const daemon = await startDaemon(res, await daemonCommand(res), setup, {
      what: 'publishes the first file',
      check: (s) => s.items.length === 1,
      timeoutMs: 120_000,
    })
    const clients = res.start('/usr/bin/python3', [
      SOAK_CLIENTS,
      `${setup.publicBaseUrl}/feed.json`,
      await res.tempDir('gribswarm-soak-clients-'),
      String(CLIENTS),
      String(SECONDS),
    ])

    const samples: Array<{ at: number; rss: number; fds: number }> = []
    const problems: string[] = []
    /** relPath → expiresAt (ms) of everything seen published, and whether it is gone */
    const seen = new Map<string, { expiresAt: number; gone: boolean }>()
    const started = Date.now()
    let nextPut = started + NEW_FILE_EVERY_S * 1000
    let nextSample = started
    while (Date.now() - started < SECONDS * 1000) {
      const now = Date.now()
      if (now >= nextPut && put < fileCount) {
        await putNext()
        nextPut += NEW_FILE_EVERY_S * 1000
      }
      if (now >= nextSample) {
        samples.push({
          at: (now - started) / 1000,
          rss: (await residentBytes(daemon.pid)) ?? NaN,
          fds: (await processCounts(daemon.pid)).fds,
        })
        nextSample += 5000
      }
      const items = (await daemon.status()).items
      const observedAt = Date.now()
      const published = new Set(items.map((item) => item.relPath))
      for (const item of items) if (!seen.has(item.relPath)) seen.set(item.relPath, { expiresAt: Date.parse(item.expiresAt), gone: false })
      for (const [relPath, state] of seen) {
        if (published.has(relPath) && observedAt > state.expiresAt + EXPIRY_SLACK_MS && !state.gone) {
          problems.push(`${relPath} still published ${((observedAt - state.expiresAt) / 1000).toFixed(1)} s after it expired`)
          state.gone = true // reported once
        }
        if (!published.has(relPath) && !state.gone) {
          state.gone = true
          if (observedAt < state.expiresAt)
            problems.push(`${relPath} removed ${((state.expiresAt - observedAt) / 1000).toFixed(1)} s before it expired`)
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 1000)) // the observation period, not a wait for an event
    }

    const { code } = await waitFor('the clients to report', () => clients.exited, 60_000)
    const report = JSON.parse(clients.stdout.trim().split('\n').pop() || '{}') as {
      completed: number
      abandoned: number
      gone: number
      bytes: number
      errors: string[]
    }
    await daemon.stop()

    // Flat: the last fifth against the window after the first fifth (start-up and first files).
    const window = (from: number, to: number) => samples.filter((s) => s.at >= SECONDS * from && s.at < SECONDS * to)
    const [early, late] = [window(0.2, 0.4), window(0.8, 1)]
    const rss = {
      early: quantile(
        early.map((s) => s.rss),
        0.5,
      ),
      late: quantile(
        late.map((s) => s.rss),
        0.5,
      ),
      max: Math.max(...samples.map((s) => s.rss)),
    }
    const fds = { early: Math.max(...early.map((s) => s.fds)), late: Math.max(...late.map((s) => s.fds)) }
    t.diagnostic(`files put ${put}, seen published ${seen.size}; clients: ${JSON.stringify({ ...report, errors: report.errors.length })}`)
    t.diagnostic(
      `RSS median ${(rss.early / MB).toFixed(1)} MB → ${(rss.late / MB).toFixed(1)} MB (max ${(rss.max / MB).toFixed(1)} MB); fds max ${fds.early} → ${fds.late}; ${samples.length} samples`,
    )

    assert.deepEqual(problems, [], 'no expiry missed, none early')
    assert.equal(code, 0, clients.stderr.slice(-2000))
    assert.deepEqual(report.errors, [], 'the clients saw no error')
    assert.ok(report.completed >= CLIENTS, `the clients kept downloading (${report.completed} downloads)`)
    // Files that appeared more than 30 s before the end have had time to be published.
    const expected = ranges.slice(0, Math.max(1, put - Math.ceil(30 / NEW_FILE_EVERY_S)))
    const missing = expected.filter((range) => ![...seen.keys()].some((relPath) => relPath.includes(`__${range}__`)))
    assert.deepEqual(missing, [], 'every file that appeared upstream was published')
    assert.ok(early.length > 0 && late.length > 0, 'samples in both windows')
    assert.ok(
      rss.late <= rss.early * 1.2 + 10 * MB,
      `resident memory flat: ${(rss.early / MB).toFixed(1)} MB → ${(rss.late / MB).toFixed(1)} MB`,
    )
    assert.ok(fds.late <= fds.early + 8, `open file descriptors flat: ${fds.early} → ${fds.late}`)
  },
)
