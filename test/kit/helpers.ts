// Shared by the tests: temp directories, free loopback ports, a test configuration, fixtures,
// and polling with a deadline (tests wait for events or conditions, never a bare sleep).
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import type { Config } from '../../src/config.ts'
import { loadLoopbackConfig, type ConfigSections } from './config.ts'
import { arpegeKey, FakeUpstream } from './fake-upstream.ts'
import { fixtureFor, type GribFixtureOptions } from './grib-fixtures.ts'

// What a test file started, undone when it ends, last made first undone: daemons stop before
// their data directories go. One hook for all (root after() hooks run in the order they were
// registered, so a test file's own hook would run after this module's).
const cleanups: Array<() => Promise<unknown>> = []
after(async () => {
  for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) await cleanup()
})

export function onCleanup(cleanup: () => Promise<unknown>): void {
  cleanups.push(cleanup)
}

export async function tempDir(prefix = 'gribswarm-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  onCleanup(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export { freePort, waitFor } from './wait.ts'

/** Fixtures are made once per machine and reused (GDAL + grib_set take a moment). */
const FIXTURE_DIR = join(tmpdir(), 'gribswarm-fixtures-v1')
export async function fixture(name: string, options?: GribFixtureOptions): Promise<string> {
  await mkdir(FIXTURE_DIR, { recursive: true })
  return fixtureFor(FIXTURE_DIR, name, options)
}

export const RUN = '2026-11-23T00:00:00Z'

/** Everything on loopback, no DHT, short timeouts and backoffs. */
export async function testConfig(dataDir: string, bucketUrl: string, overrides: ConfigSections = {}): Promise<Config> {
  const tests = {
    source: { bucketUrl, fallbackBucketUrls: [], packages: ['SP1'], ranges: ['000H012H', '013H024H'], lookbackRuns: 1 },
    fetch: { concurrency: 2, connectTimeoutMs: 2000, idleTimeoutMs: 1500, transferAttempts: 3, validationAttempts: 2, backoffMs: 20, maxBackoffMs: 100 },
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
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path: await fixture(`notify-${i}.grib2`, { seed: 40 + i, bands: 2 }) })
  }
  return upstream
}
