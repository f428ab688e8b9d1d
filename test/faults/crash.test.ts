// Fault injection, crashes: the real daemon (a child process) is killed with SIGKILL at each
// step between a download and a deletion, then started again. test/crash.test.ts covers a kill
// mid-download; here crash-hook.ts stops the daemon exactly at the step under test. After the
// restart the invariants are:
//   - no temp or partial file is left, and the published set is consistent: every item has its
//     data (the upstream bytes), its .torrent and its sidecar, and nothing else is in pub/;
//   - every file valid upstream is published exactly once: what was published before the crash
//     keeps its publication and expiry times and is not fetched again; what was journalled is
//     finished, not fetched again; what was downloaded whole but not journalled is resumed from
//     its partial file (read back, validated again), not fetched again;
//   - what was published is seeded again without a re-download or re-hash;
//   - an expiry cut short is finished at the next start, nothing is deleted before its time and
//     an expired file is never fetched again.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import type { StatusReport } from '../../src/status.ts'
import type { ItemRecord } from '../../src/store.ts'
import type { CrashPoint } from '../kit/crash-hook.ts'
import { recentRuns } from '../../src/source.ts'
import { cliCommand, startCli } from '../kit/daemon.ts'
import { fixture, onCleanup, tempDir, testConfig, waitFor } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

const HOOK = new URL('../kit/crash-hook.ts', import.meta.url).href
const RANGES = ['000H012H', '013H024H']
/** GRIB messages per fixture file: a GDAL open per message. */
const MESSAGES = 3
/** The daemon's passes look at the latest runs: the files belong to the current one. */
const RUN = recentRuns(new Date(), [0, 6, 12, 18], 1)[0]!
const rel = (range: string) =>
  `${RUN.slice(0, 10).replaceAll('-', '')}T${RUN.slice(11, 13)}Z/arpege/01/SP1/arpege__01__SP1__${range}__${RUN.replaceAll(':', '')}.grib2`
const FIRST = rel(RANGES[0]!)

interface Setup {
  upstream: FakeUpstream
  dataDir: string
  configFile: string
  statusUrl: string
  bodies: Map<string, { sha1: string; size: number }> // relPath → the upstream body
}

async function setup(retention?: { publishSeconds: number; checkEverySeconds: number }): Promise<Setup> {
  const upstream = new FakeUpstream()
  await upstream.start()
  const bodies: Setup['bodies'] = new Map()
  for (const [i, range] of RANGES.entries()) {
    const path = await fixture(`crash-stage-${range}.grib2`, { seed: 60 + i, bands: MESSAGES })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path })
    const body = await readFile(path)
    bodies.set(rel(range), { sha1: sha1(body), size: body.length })
  }
  const dataDir = await tempDir()
  // One file at a time, so that the file that reaches the step under test is the first one.
  const config = await testConfig(dataDir, upstream.bucketUrl, {
    source: { ranges: RANGES, lookbackRuns: 2 }, // 2: the test may straddle the start of a new run
    fetch: { concurrency: 1 },
    schedule: { cron: '0 0 1 1 *' }, // the pass at start only
    log: { level: 'info' },
    ...(retention ? { retention } : {}),
  })
  const configFile = join(await tempDir(), 'config.json')
  await writeFile(configFile, JSON.stringify(config))
  return { upstream, dataDir, configFile, statusUrl: `${config.http.publicBaseUrl}/api/status`, bodies }
}

const sha1 = (data: Buffer) => createHash('sha1').update(data).digest('hex')

function startDaemon(s: Setup, crashAt?: CrashPoint) {
  // Its own registry, stopped by the test file's cleanup before the directories made so far go.
  const res = new Resources()
  onCleanup(function stopTheDaemon() {
    return res.cleanup()
  })
  const daemon = startCli(res, cliCommand('start', crashAt ? [HOOK] : []), ['--config', s.configFile], {
    env: { CRASH_HOOK_AT: crashAt ? JSON.stringify(crashAt) : '' },
  })
  let exited = false
  void daemon.exited.then(() => (exited = true))
  /** Fails a wait at once when the daemon died on its own. */
  const alive = () => {
    if (exited) throw new Error(`the daemon exited:\n${daemon.output}`)
  }
  return Object.assign(daemon, { alive })
}

const status = async (s: Setup) => (await (await fetch(s.statusUrl)).json()) as StatusReport

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

async function sidecars(s: Setup, under: 'pub' | 'expired'): Promise<Map<string, ItemRecord>> {
  const records = new Map<string, ItemRecord>()
  for (const file of (await files(s.dataDir)).filter((f) => f.startsWith(`${under}/`) && f.endsWith('.json'))) {
    const record = JSON.parse(await readFile(join(s.dataDir, file), 'utf8')) as ItemRecord
    records.set(record.relPath, record)
  }
  return records
}

const dataGets = (s: Setup) => s.upstream.requests.filter((r) => r.method === 'GET' && r.url.endsWith('.grib2')).length
/** GETs of the upstream file of forecast range `range`. */
const getsOf = (s: Setup, range: string) => s.upstream.requests.filter((r) => r.method === 'GET' && r.url.includes(`__${range}__`)).length

/** Runs the daemon until it reaches `crashAt`, SIGKILLs it, and returns what was published then. */
async function crashAt(s: Setup, point: Omit<CrashPoint, 'marker'>) {
  const marker = join(await tempDir(), 'reached')
  const daemon = startDaemon(s, { ...point, marker })
  try {
    await waitFor(
      `the daemon to reach ${JSON.stringify(point)}`,
      () => (
        daemon.alive(),
        stat(marker).then(
          () => true,
          () => false,
        )
      ),
      60_000,
    )
  } catch (err) {
    daemon.child.kill('SIGKILL')
    throw new Error(`${(err as Error).message}\n${daemon.output}`)
  }
  daemon.child.kill('SIGKILL')
  await daemon.exited
  return { publishedBefore: await sidecars(s, 'pub'), reached: await readFile(marker, 'utf8'), getsBefore: dataGets(s) }
}

/** What the data directory holds besides items: the lock and the dashboard's history. */
const NOT_PUBLISHED = new Set(['lock', 'history.json'])

/** The invariants once the restarted daemon has finished its pass. */
async function assertConsistent(s: Setup, before: Map<string, ItemRecord>, afterRestart: StatusReport) {
  const tree = await files(s.dataDir)
  const published = await sidecars(s, 'pub')
  const expected = [...published.keys()].flatMap((rel) => [`pub/${rel}`, `pub/${rel}.idx`, `pub/${rel}.json`, `pub/${rel}.torrent`])
  assert.deepEqual(
    tree.filter((f) => !NOT_PUBLISHED.has(f) && !f.startsWith('expired/')),
    expected.sort(),
    'only complete items in pub/, nothing in tmp/',
  )
  for (const [rel, record] of published) {
    assert.equal(sha1(await readFile(join(s.dataDir, 'pub', rel))), s.bodies.get(rel)?.sha1, `${rel}: the upstream bytes`)
    const earlier = before.get(rel)
    if (earlier) {
      assert.equal(record.publishedAt, earlier.publishedAt, `${rel}: published once`)
      assert.equal(record.expiresAt, earlier.expiresAt, `${rel}: expiry time unchanged`)
    }
  }
  assert.equal(afterRestart.seeder.rehashed, 0, 'no re-hash of what was published')
}

async function restartAndFinish(s: Setup) {
  const daemon = startDaemon(s)
  try {
    await waitFor(
      'the pass after the restart',
      async () => {
        daemon.alive()
        const st = await status(s).catch(() => undefined)
        return st?.pass.lastReport && !st.pass.running ? st : undefined
      },
      60_000,
      100,
    )
    return { daemon, status: await status(s) }
  } catch (err) {
    daemon.child.kill('SIGKILL')
    throw new Error(`${(err as Error).message}\n${daemon.output}`)
  }
}

async function stopDaemon(daemon: ReturnType<typeof startDaemon>) {
  daemon.child.kill('SIGTERM')
  await daemon.exited
}

/** `after`: what becomes of the first file at the restart, resumed from its whole partial file or its publication finished; neither fetches it again. */
const PUBLISH_STEPS: Array<{ step: string; point: Omit<CrashPoint, 'marker'>; after: 'resumed' | 'finished' }> = [
  {
    step: 'mid-validation: every byte on disk, the last GRIB message being decoded',
    point: { step: 'gdal-open', nth: MESSAGES },
    after: 'resumed',
  },
  {
    step: 'after the .torrent is written, before the journal entry',
    point: { step: 'rename-after', match: '\\.torrent$' },
    after: 'resumed',
  },
  {
    step: 'after the journal entry, before the data rename',
    point: { step: 'rename-after', match: '\\.intent\\.json$' },
    after: 'finished',
  },
  { step: 'between the data rename and the sidecar', point: { step: 'rename-after', match: '/pub/.*\\.grib2$' }, after: 'finished' },
  // The feeds are rendered from the sidecars on each request: a sidecar half written is a feed half written.
  {
    step: 'mid sidecar write (what the feeds are made from), temp file written, not renamed',
    point: { step: 'rename-before', match: '/pub/.*\\.grib2\\.json$' },
    after: 'finished',
  },
]

for (const { step, point, after } of PUBLISH_STEPS) {
  test(`SIGKILL ${step}: after a restart, everything published once, consistent, seeded`, async () => {
    const s = await setup()
    try {
      const crash = await crashAt(s, point)
      assert.match(
        crash.reached,
        point.step === 'gdal-open' ? /^\/vsisubfile\// : new RegExp(point.match!),
        'the hook stopped the step under test',
      )
      if (point.step === 'gdal-open') {
        const [offset, length] = /^\/vsisubfile\/(\d+)_(\d+),/.exec(crash.reached)!.slice(1).map(Number)
        assert.equal(offset! + length!, s.bodies.get(FIRST)!.size, 'stopped while decoding the last message, every byte downloaded')
      }
      assert.deepEqual([...crash.publishedBefore.keys()], [], 'nothing was published yet when the first file crashed')
      const tmp = (await files(s.dataDir)).filter((f) => f.startsWith('tmp/'))
      if (after === 'resumed')
        assert.equal(tmp.filter((f) => /\.part(\.resume\.json)?$/.test(f)).length, 2, 'a partial file and its record')
      const firstGets = getsOf(s, RANGES[0]!)
      const { daemon, status: st } = await restartAndFinish(s)
      try {
        assert.deepEqual(st.pass.lastReport?.failed, [])
        assert.deepEqual(st.items.map((i) => i.relPath).sort(), [...s.bodies.keys()].sort(), 'both files published')
        assert.equal(st.seeder.torrents, 2)
        // The first file was whole on disk: not fetched again (resumed, or its publication finished); the second once.
        assert.equal(getsOf(s, RANGES[0]!), firstGets, `${after}: the first file not fetched again (crashed at ${crash.reached})`)
        assert.equal(dataGets(s) - crash.getsBefore, 1, `GETs after the restart (crashed at ${crash.reached})`)
        await stopDaemon(daemon)
        await assertConsistent(s, crash.publishedBefore, st)
      } finally {
        daemon.child.kill('SIGKILL')
      }
    } finally {
      await s.upstream.stop()
    }
  })
}

test('SIGKILL mid-expiry (tombstone written, files not deleted): finished at restart, nothing early, nothing fetched again', async () => {
  const retention = { publishSeconds: 4, checkEverySeconds: 1 }
  const s = await setup(retention)
  try {
    const crash = await crashAt(s, { step: 'rename-after', match: '/expired/' })
    assert.equal(crash.getsBefore, 2)
    const first = [...s.bodies.keys()].find((relPath) => crash.reached.endsWith(`${relPath}.json`))!
    assert.ok(first, `the hook stopped at a tombstone (${crash.reached})`)
    assert.deepEqual(
      [...crash.publishedBefore.keys()],
      [...s.bodies.keys()].filter((r) => r !== first),
      'the other one still published',
    )
    assert.ok((await files(s.dataDir)).includes(`pub/${first}`), 'its data not deleted yet')
    const daemon = startDaemon(s)
    try {
      await waitFor(
        'both items expired',
        async () => {
          const tree = await files(s.dataDir)
          for (const [relPath, record] of crash.publishedBefore) {
            if (!tree.includes(`pub/${relPath}`))
              assert.ok(Date.now() >= Date.parse(record.expiresAt), `${relPath} deleted before its time`)
          }
          return (await sidecars(s, 'expired')).size === 2 && tree.every((f) => !f.startsWith('pub/'))
        },
        30_000,
        100,
      )
      const expired = await sidecars(s, 'expired')
      for (const [relPath, record] of crash.publishedBefore) {
        assert.equal(expired.get(relPath)?.expiresAt, record.expiresAt, `${relPath}: expiry time unchanged`)
      }
      await waitFor('the pass after the restart', async () => (await status(s).catch(() => undefined))?.pass.lastReport, 30_000, 100)
      assert.equal(dataGets(s), crash.getsBefore, 'an expired file is not fetched again')
      assert.deepEqual(
        (await files(s.dataDir)).filter((f) => !NOT_PUBLISHED.has(f)).sort(),
        RANGES.map((r) => `expired/${rel(r)}.json`),
        'no orphan data, torrent or temp file',
      )
    } finally {
      await stopDaemon(daemon)
    }
  } finally {
    await s.upstream.stop()
  }
})
