// test/kit/: the support code of the tests, which the demo (scripts/demo.ts) and the benchmark
// (bench/) use too. The tests own it: a change here is checked by the tests first.
//   helpers.ts       this file, for test files only (it registers a node:test after() hook):
//                    onCleanup/tempDir, fixture, testConfig, upstreamServing, freePort(s), waitFor
//   resources.ts     the one cleanup registry and child-process runner (Resources)
//   config.ts        the one configuration builder: gribswarm on loopback, callers' sections over it
//   daemon.ts        the one way to start a gribswarm CLI as a child (startCli), the daemon
//                    among them (daemonCommand, writeDaemonConfig, startDaemon: ready by /api/status)
//   fake-upstream.ts a local stand-in for Météo-France's object store, with scripted faults
//   grib-fixtures.ts CCSDS GRIB2 files made with GDAL + ecCodes, and broken variants
//   peers.ts         Debian's BitTorrent clients (aria2c, libtorrent through lt-*.py, lt_clients_common.py)
//   wait.ts          free loopback ports, polling with a deadline
//   measure.ts       /proc readers (memory, threads, fds, CPU), median and quantiles
//   amqp.ts          the RabbitMQ the notification tests use
//   sr3.ts           the vendored MetPX sr3 (../shared/vendor/) as a peer: subscribe, sr3_post, watch
//   crash-hook.ts    loaded into a daemon child to stop it at a chosen step
//   netns.ts, ns-bridge.mjs, ns-clients.ts, ns-origin.ts, nginx-front.ts, stock-tools.ts
//                    stock clients and the origin as separate hosts (network namespaces, or
//                    loopback), nginx in front with the shipped nginx.conf, the tools' config files
// Tests wait for events or conditions, never a bare sleep.
import { after } from 'node:test'
import type { Config } from '../../src/config.ts'
import { loadLoopbackConfig, type ConfigSections } from './config.ts'
import { arpegeKey, FakeUpstream } from './fake-upstream.ts'
import type { GribFixtureOptions } from './grib-fixtures.ts'
import { Resources } from './resources.ts'

// What a test file started, undone when it ends, last made first undone: daemons stop before
// their data directories go. One hook for all (root after() hooks run in the order they were
// registered, so a test file's own hook would run after this module's). Every step runs even
// if one fails; the hook then fails with all of them. No time limit per step: the test's own.
const resources = new Resources({ stepTimeoutMs: 0 })
after(async () => {
  await resources.cleanup()
  if (resources.failures.length) throw new Error(resources.failures.join('\n'))
})

export function onCleanup(cleanup: () => Promise<unknown>): void {
  resources.defer(cleanup.name || 'a test cleanup', cleanup)
}

export function tempDir(prefix = 'gribswarm-test-'): Promise<string> {
  return resources.tempDir(prefix)
}

export { freePort, freePorts, waitFor } from './wait.ts'

/**
 * Fixtures are made once per machine and reused (GDAL + grib_set take a moment). Loaded on
 * first use: gdal-async costs the unit tests, which need no fixture, half a second per file.
 */
export async function fixture(name: string, options?: GribFixtureOptions): Promise<string> {
  return (await import('./grib-fixtures.ts')).sharedFixture(name, options)
}

export const RUN = '2026-11-23T00:00:00Z'

/** Everything on loopback, no DHT, short timeouts and backoffs. */
export async function testConfig(dataDir: string, bucketUrl: string, overrides: ConfigSections = {}): Promise<Config> {
  const tests = {
    source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H', '013H024H'], lookbackRuns: 1 },
    fetch: {
      concurrency: 2,
      connectTimeoutMs: 2000,
      idleTimeoutMs: 1500,
      transferAttempts: 3,
      validationAttempts: 2,
      backoffMs: 20,
      maxBackoffMs: 100,
    },
    seed: { utp: true },
    disk: { budgetBytes: 10_000_000_000, minFreeBytes: 0 },
    log: { level: 'warn' },
  }
  return loadLoopbackConfig(dataDir, tests, overrides)
}

/** A local object store serving one small CCSDS fixture per range of RUN (package SP1). */
export async function upstreamServing(ranges: string[]): Promise<FakeUpstream> {
  const upstream = new FakeUpstream()
  await upstream.start()
  for (const [i, range] of ranges.entries()) {
    await upstream.put({
      key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }),
      path: await fixture(`notify-${i}.grib2`, { seed: 40 + i, bands: 2 }),
    })
  }
  return upstream
}
