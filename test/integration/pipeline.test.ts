// The pipeline against a misbehaving upstream: every file valid upstream ends up published
// once, byte for byte, and nothing partial or invalid is ever published.
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { before, test } from 'node:test'
import { arpegeKey, FakeUpstream, type Fault } from '../kit/fake-upstream.ts'
import type { Config } from '../../src/config.ts'
import { openPipeline } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { fixture, freePort, RUN, tempDir, testConfig } from '../kit/helpers.ts'

const log = createLogger('error')
const RANGES = ['000H012H', '013H024H']
let bodies: Buffer[]
let paths: string[]

before(async () => {
  paths = [await fixture('pipe-a.grib2', { seed: 11, bands: 3 }), await fixture('pipe-b.grib2', { seed: 12, bands: 3 })]
  bodies = await Promise.all(paths.map((p) => readFile(p)))
})

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string) => {
    for (const entry of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) await walk(join(d, entry.name))
      else out.push(relative(dir, join(d, entry.name)))
    }
  }
  await walk(dir)
  return out.sort()
}

interface Setup {
  upstream: FakeUpstream
  config: Config
  pass: (
    options?: Parameters<Awaited<ReturnType<typeof openPipeline>>['pipeline']['runPass']>[0],
  ) => ReturnType<Awaited<ReturnType<typeof openPipeline>>['pipeline']['runPass']>
  close: () => Promise<void>
}

async function setup(
  options: {
    upstream?: ConstructorParameters<typeof FakeUpstream>[0]
    etags?: string[]
    config?: Record<string, unknown>
    hidden?: boolean
  } = {},
): Promise<Setup> {
  const upstream = new FakeUpstream(options.upstream)
  await upstream.start()
  for (const [i, range] of RANGES.entries()) {
    await upstream.put({
      key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }),
      path: paths[i],
      etag: options.etags?.[i],
      hidden: options.hidden,
    })
  }
  const config = await testConfig(await tempDir(), upstream.bucketUrl, options.config)
  const opened = await openPipeline(config, log)
  return {
    upstream,
    config,
    pass: (o) => opened.pipeline.runPass({ runs: [RUN], ...o }),
    close: async () => {
      await opened.unlock()
      await upstream.stop()
    },
  }
}

const key = (range: string) => arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range })
const rel = (range: string) => `20261123T00Z/arpege/01/SP1/arpege__01__SP1__${range}__2026-11-23T000000Z.grib2`

/** Both files published byte for byte, with .torrent and sidecar, and no temp file left. */
async function assertAllPublished(s: Setup): Promise<void> {
  for (const [i, range] of RANGES.entries()) {
    assert.ok((await readFile(join(s.config.dataDir, 'pub', rel(range)))).equals(bodies[i]!), `${range} published byte for byte`)
  }
  assert.deepEqual(
    await listTree(join(s.config.dataDir, 'pub')),
    RANGES.flatMap((r) => [rel(r), `${rel(r)}.idx`, `${rel(r)}.json`, `${rel(r)}.torrent`]).sort(),
  )
  assert.deepEqual(await listTree(join(s.config.dataDir, 'tmp')), [])
}

async function withFaults(
  faults: Fault[],
  check: (s: Setup, report: Awaited<ReturnType<Setup['pass']>>) => void | Promise<void>,
  options?: Parameters<typeof setup>[0],
) {
  const s = await setup(options)
  try {
    s.upstream.inject(key('000H012H'), ...faults)
    const report = await s.pass()
    await check(s, report)
  } finally {
    await s.close()
  }
}

test("passes leave no listener on the daemon's stop signal, even after retried transfers", async () => {
  const s = await setup()
  try {
    const stopping = new AbortController()
    s.upstream.inject(key('000H012H'), { kind: 'status', status: 503 }, { kind: 'truncate', afterBytes: 100_000 })
    const report = await s.pass({ signal: stopping.signal })
    assert.equal(report.published.length, 2)
    // got.stream() keeps the listener it adds; one per request would grow for the daemon's lifetime.
    assert.equal(getEventListeners(stopping.signal, 'abort').length, 0)
  } finally {
    await s.close()
  }
})

test('5xx bursts are retried with backoff and the file is published', () =>
  withFaults(
    [
      { kind: 'status', status: 500 },
      { kind: 'status', status: 503 },
    ],
    async (s, report) => {
      assert.equal(report.published.length, 2, JSON.stringify(report.failed))
      assert.equal(s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET' && r.status >= 500).length, 2)
      await assertAllPublished(s)
    },
  ))

for (const reset of [false, true]) {
  test(`a connection ${reset ? 'reset (RST)' : 'closed (FIN)'} mid-body is resumed with a Range request`, () =>
    withFaults([{ kind: 'truncate', afterBytes: 100_000, reset }], async (s, report) => {
      assert.equal(report.published.length, 2, JSON.stringify(report.failed))
      // It resumes from what reached the disk: bytes received but not yet written when the
      // connection broke (or that an RST discarded) are fetched again.
      const gets = s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET')
      assert.equal(gets.length, 2)
      const resumedFrom = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1])
      assert.ok(resumedFrom > 0 && resumedFrom <= 100_000, `resumed with ${gets[1]!.range}`)
      assert.equal(gets[1]!.status, 206)
      await assertAllPublished(s)
    }))
}

test('a slow trickle that never stalls completes in one request (the idle timeout is not a total timeout)', () =>
  withFaults(
    [],
    async (s, report) => {
      assert.equal(report.published.length, 2, JSON.stringify(report.failed))
      // 2 files at 400 KB/s last several times the 1.5 s idle timeout, without a retry.
      assert.equal(s.upstream.requests.filter((r) => r.method === 'GET' && r.url.endsWith('.grib2')).length, 2)
      await assertAllPublished(s)
    },
    { upstream: { bytesPerSecond: 400_000 } },
  ))

test('a stalled body hits the idle timeout and is resumed', () =>
  withFaults([{ kind: 'stall', afterBytes: 50_000 }], async (s, report) => {
    assert.equal(report.published.length, 2, JSON.stringify(report.failed))
    assert.ok(s.upstream.requests.some((r) => r.url.includes('000H012H') && r.range === 'bytes=50000-'))
    await assertAllPublished(s)
  }))

test('a corrupted body (same length) fails the MD5 ETag check, is deleted and fetched again', () =>
  withFaults([{ kind: 'corrupt' }], async (s, report) => {
    assert.equal(report.published.length, 2, JSON.stringify(report.failed))
    assert.equal(s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET' && !r.range).length, 2)
    await assertAllPublished(s)
  }))

test('an HTML error page with status 200 is rejected as not GRIB and fetched again', () =>
  withFaults(
    [{ kind: 'status', status: 200, body: '<!DOCTYPE html><html><body>Service unavailable</body></html>', contentType: 'text/html' }],
    async (s, report) => {
      assert.equal(report.published.length, 2, JSON.stringify(report.failed))
      await assertAllPublished(s)
    },
    { upstream: {}, etags: ['multipart', 'multipart'] },
  ))

// Damage that breaks the GRIB structure is caught by validation alone. Damage inside a data
// section that still decodes is caught only by a checksum (MD5 ETag, piece hashes): see the
// README's known limits.
test('a GRIB of the right size with a damaged message header, without an MD5 ETag, fails validation and is fetched again', () =>
  withFaults(
    [{ kind: 'corrupt', bytes: 16, at: Number(bodies[0]!.readBigUInt64BE(8)) }],
    async (s, report) => {
      assert.equal(report.published.length, 2, JSON.stringify(report.failed))
      assert.equal(s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET' && !r.range).length, 2)
      await assertAllPublished(s)
    },
    { etags: ['multipart', 'multipart'] },
  ))

/** The middle of a GRIB2 file's second message: inside its data section. */
function secondMessageMiddle(body: Buffer): number {
  const second = Number(body.readBigUInt64BE(8))
  return second + Math.floor(Number(body.readBigUInt64BE(second + 8)) / 2)
}

test('a corrupt CCSDS stream in a message that "vouched" validation would not sample is decoded when no MD5 ETag vouches for it', () =>
  withFaults(
    [{ kind: 'corrupt', bytes: 40_000, at: secondMessageMiddle(bodies[0]!) }],
    async (s, report) => {
      assert.equal(s.config.fetch.validation, 'vouched')
      assert.equal(report.published.length, 2, JSON.stringify(report.failed))
      assert.equal(s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET' && !r.range).length, 2)
      await assertAllPublished(s)
    },
    { etags: ['multipart', 'multipart'] },
  ))

test('a file whose MD5 never matches its ETag is given up for this pass, and nothing of it is published', () =>
  withFaults(
    [],
    async (s, report) => {
      assert.equal(report.published.length, 1)
      assert.equal(report.failed.length, 1)
      assert.match(report.failed[0]!.reason, /MD5 [0-9a-f]{32} does not match the upstream ETag 0{32}/)
      assert.match(report.failed[0]!.reason, new RegExp(key('000H012H').replaceAll(':', ':')))
      assert.equal(report.failed[0]!.kind, 'integrity')
      const sizes = bodies.map((body) => body.length)
      assert.ok(
        report.fetchedBytes >= sizes[1]! + s.config.fetch.validationAttempts * sizes[0]!,
        'every byte received counts as fetched, the rejected downloads too',
      )
      assert.equal(
        s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET').length,
        s.config.fetch.validationAttempts,
      )
      const tree = await listTree(join(s.config.dataDir, 'pub'))
      assert.ok(!tree.some((f) => f.includes('000H012H')), 'nothing of the bad file is published')
      assert.deepEqual(await listTree(join(s.config.dataDir, 'tmp')), [])
    },
    { etags: ['0'.repeat(32), undefined!] },
  ))

test('a redirect loop fails that file with a clear error; the others are published', () =>
  withFaults(Array(10).fill({ kind: 'redirectLoop' }), (_s, report) => {
    assert.equal(report.published.length, 1)
    assert.match(report.failed[0]!.reason, /redirect/i)
  }))

test('a 403 is not retried', () =>
  withFaults([{ kind: 'status', status: 403 }], (s, report) => {
    assert.match(report.failed[0]?.reason ?? '', /HTTP 403/)
    assert.equal(report.failed[0]?.kind, 'http')
    assert.equal(s.upstream.requests.filter((r) => r.url.includes('000H012H') && r.method === 'GET').length, 1)
  }))

test('a file not there yet (404) is simply not published, and is on the next pass', async () => {
  const s = await setup({ hidden: true })
  try {
    const first = await s.pass()
    assert.equal(first.available, 0)
    s.upstream.show(key('000H012H'))
    s.upstream.show(key('013H024H'))
    s.upstream.inject(key('013H024H'), { kind: 'status', status: 404 }) // listed, then gone for a moment
    const second = await s.pass()
    assert.equal(second.published.length, 1)
    assert.equal(second.failed.length, 0)
    const third = await s.pass()
    assert.equal(third.published.length, 1)
    assert.equal(third.alreadyDone, 1)
    await assertAllPublished(s)
  } finally {
    await s.close()
  }
})

test('listing: paginated with continuation tokens, or HEAD probing where listing is forbidden', async () => {
  for (const upstream of [{ pageSize: 1 }, { listing: false }]) {
    const s = await setup({ upstream })
    try {
      const dry = await s.pass({ dryRun: true })
      assert.equal(dry.todo.length, 2, JSON.stringify(upstream))
      assert.equal(dry.todo[0]!.size, bodies[0]!.length)
      assert.deepEqual(await listTree(join(s.config.dataDir, 'pub')), [], 'a dry run fetches nothing')
      if (upstream.pageSize) assert.ok(s.upstream.requests.filter((r) => r.url.includes('list-type=2')).length >= 2)
      else assert.ok(s.upstream.requests.some((r) => r.method === 'HEAD'))
    } finally {
      await s.close()
    }
  }
})

test('a malformed listing, or one whose continuation token loops, is named and HEAD probing takes over', async () => {
  for (const fault of ['malformed', 'tokenLoop'] as const) {
    const s = await setup()
    try {
      s.upstream.setListingFault(fault)
      const report = await s.pass()
      assert.equal(report.published.length, 2, `${fault}: ${JSON.stringify(report.failed)}`)
      assert.ok(s.upstream.requests.filter((r) => r.url.includes('list-type=2')).length <= 2, `${fault}: a loop is cut at once`)
      assert.ok(
        s.upstream.requests.some((r) => r.method === 'HEAD'),
        `${fault}: probed`,
      )
      await assertAllPublished(s)
      s.upstream.setListingFault(undefined)
    } finally {
      await s.close()
    }
  }
})

test('a dead bucket URL falls back to the next one', async () => {
  const deadPort = await freePort()
  const s = await setup()
  try {
    const config = {
      ...s.config,
      source: { ...s.config.source, bucketUrl: `http://127.0.0.1:${deadPort}`, fallbackBucketUrls: [s.upstream.bucketUrl] },
    }
    const opened = await openPipeline(config, log).catch((e) => e as Error)
    assert.ok(opened instanceof Error && /in use by process/.test(opened.message), 'one process per data directory')
    const other = await openPipeline({ ...config, dataDir: await tempDir() }, log)
    try {
      const report = await other.pipeline.runPass({ runs: [RUN] })
      assert.equal(report.published.length, 2)
      assert.ok(report.published[0]!.sourceUrl.startsWith(s.upstream.bucketUrl))
    } finally {
      await other.unlock()
    }
  } finally {
    await s.close()
  }
})

test('the disk budget stops fetching with a clear reason and publishes nothing partial', async () => {
  const s = await setup({ config: { disk: { budgetBytes: bodies[0]!.length + 10, minFreeBytes: 0 } } })
  try {
    const report = await s.pass()
    assert.equal(report.published.length, 1)
    assert.equal(report.deferred.length, 1)
    const again = await s.pass()
    assert.equal(again.deferred.length, 1, 'still deferred while the budget is used')
    assert.deepEqual(await listTree(join(s.config.dataDir, 'tmp')), [])
  } finally {
    await s.close()
  }
})
