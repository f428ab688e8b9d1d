// Real crashes: `npm run fetch` killed with SIGKILL in the middle of a download, then run
// again. Nothing partial is ever published, nothing valid is lost, the download goes on from
// the bytes on disk (no byte fetched twice), no temp file survives.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { test } from 'node:test'
import { openPipeline } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { cliCommand, startCli } from '../kit/daemon.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

const log = createLogger('error')

/** `npm run fetch -- --run RUN <args>`; finished() runs it to its exit. */
function runFetch(configFile: string, args: string[] = []) {
  // Its own registry, stopped by the test file's cleanup before the directories made so far go.
  const res = new Resources()
  onCleanup(function stopTheFetch() {
    return res.cleanup()
  })
  return startCli(res, cliCommand('fetch'), ['--run', RUN, ...args], { env: { GRIBSWARM_CONFIG: configFile } })
}

async function listAll(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

/** Two ~21 MB CCSDS files (12 copies of 3 messages) of run RUN on an upstream sending 4 MB/s. */
async function bigFilesUpstream() {
  const upstream = new FakeUpstream({ bytesPerSecond: 4_000_000 })
  await upstream.start()
  const files: Array<{ range: string; body: Buffer; etag: string }> = []
  for (const [range, seed] of [
    ['000H012H', 31],
    ['013H024H', 32],
  ] as const) {
    const path = await fixture(`crash-big-${range}.grib2`, { seed, bands: 3, repeat: 12 })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path })
    const body = await readFile(path)
    files.push({ range, body, etag: createHash('md5').update(body).digest('hex') })
  }
  return { upstream, files }
}

test('SIGKILL at 60 % of large downloads, then a new pass: it resumes where it stopped, nothing partial published, everything once', async (t) => {
  const { upstream, files } = await bigFilesUpstream()
  const dataDir = await tempDir()
  const config = await testConfig(dataDir, upstream.bucketUrl) // fetch.concurrency 2: both at once, at the same pace
  const configFile = join(await tempDir(), 'config.json')
  await writeFile(configFile, JSON.stringify(config))
  try {
    const first = runFetch(configFile)
    const killAt = 0.6 * Math.max(...files.map((f) => f.body.length))
    await waitFor(
      'both partial downloads at 60 %',
      async () => {
        const parts = (await readdir(join(dataDir, 'tmp')).catch(() => [])).filter((f) => f.endsWith('.part'))
        const sizes = await Promise.all(parts.map(async (part) => (await stat(join(dataDir, 'tmp', part))).size))
        return sizes.filter((size) => size >= killAt).length === files.length
      },
      60_000,
      20,
    )
    first.child.kill('SIGKILL')
    await first.exited
    assert.ok(!(await listAll(dataDir)).some((f) => f.startsWith('pub/') && f.endsWith('.grib2')), 'nothing published yet')

    upstream.setRate(undefined)
    const before = upstream.requests.length
    const second = await runFetch(configFile).finished()
    assert.equal(second.code, 0, second.output)
    assert.match(second.output, /published 2, failed 0/)
    const all = await listAll(dataDir)
    assert.deepEqual(
      all.filter((f) => !f.startsWith('pub/')),
      [],
      'no temp file, no resume record, no lock left',
    )
    const published = all.filter((f) => f.endsWith('.grib2'))
    assert.equal(published.length, 2)
    for (const [i, file] of published.entries()) assert.ok((await readFile(join(dataDir, file))).equals(files[i]!.body), file)

    // What the second run asked for: the rest of each file, from where the first stopped, if unchanged.
    for (const { range, body, etag } of files) {
      const gets = upstream.requests.slice(before).filter((r) => r.method === 'GET' && r.url.includes(range))
      assert.equal(gets.length, 1, `${range}: one GET after the restart`)
      const get = gets[0]!
      const from = Number(/^bytes=(\d+)-$/.exec(get.range ?? '')?.[1])
      assert.ok(from >= 0.6 * body.length, `${range}: resumed from byte ${from} of ${body.length} (${get.range})`)
      assert.equal(get.ifRange, `"${etag}"`, `${range}: only if the object is the one on disk`)
      assert.equal(get.status, 206)
      assert.equal(get.bytes, body.length - from, `${range}: the rest, nothing more`)
      assert.ok(get.bytes <= 0.45 * body.length, `${range}: ${get.bytes} of ${body.length} bytes fetched again`)
      t.diagnostic(
        `${range}: fetched again after the restart ${get.bytes} of ${body.length} bytes (${((100 * get.bytes) / body.length).toFixed(1)} %)`,
      )
    }

    const third = await runFetch(configFile, ['--dry-run']).finished()
    assert.equal(third.code, 0)
    assert.match(third.output, /0 to fetch, 2 already done/)
  } finally {
    await upstream.stop()
  }
})

test('a stopped pass (SIGINT, SIGTERM) keeps its partial downloads; the next start resumes them, fetching only the rest', async () => {
  const { upstream, files } = await bigFilesUpstream()
  // relPath → upstream body
  const bodies = new Map(files.map((f) => [`20261123T00Z/arpege/01/SP1/arpege__01__SP1__${f.range}__2026-11-23T000000Z.grib2`, f.body]))
  const config = await testConfig(await tempDir(), upstream.bucketUrl)
  const tmp = join(config.dataDir, 'tmp')
  const parts = async () => (await readdir(tmp)).filter((f) => f.endsWith('.part'))
  try {
    const first = await openPipeline(config, log)
    const stop = new AbortController()
    const stopped = first.pipeline.runPass({ runs: [RUN], signal: stop.signal })
    await waitFor('both downloads under way', async () => {
      const sizes = await Promise.all((await parts()).map(async (part) => (await stat(join(tmp, part))).size))
      return sizes.filter((size) => size >= 4_000_000).length === 2
    })
    stop.abort()
    assert.equal((await stopped).published.length, 0)
    await first.unlock()
    const left = new Map<string, number>()
    for (const part of await parts()) left.set(part, (await stat(join(tmp, part))).size)
    assert.deepEqual(
      (await readdir(tmp)).sort(),
      [...left.keys()].flatMap((p) => [p, `${p}.resume.json`]).sort(),
      'each partial and its record kept',
    )

    upstream.setRate(undefined)
    const events = new Events()
    const resumed: Array<{ relPath: string; offset: number; size: number }> = []
    events.on('resumed', (e) => resumed.push(e))
    const second = await openPipeline(config, log, { events })
    try {
      const report = await second.pipeline.runPass({ runs: [RUN] })
      assert.equal(report.published.length, 2)
      assert.deepEqual(report.failed, [])
      for (const [relPath, body] of bodies) {
        assert.ok((await readFile(join(config.dataDir, 'pub', relPath))).equals(body), `${relPath} byte for byte`)
      }
      assert.deepEqual(
        resumed.map((e) => [e.offset, e.size]).sort(),
        [...resumed.map((e) => e.relPath)]
          .map((relPath) => [left.get(basename(second.store.tempPath(relPath)))!, bodies.get(relPath)!.length])
          .sort(),
        'each download went on from the bytes on disk',
      )
      assert.equal(resumed.length, 2)
      const rest = resumed.reduce((sum, e) => sum + e.size - e.offset, 0)
      assert.equal(report.fetchedBytes, rest, 'only the rest counted as fetched')
      assert.deepEqual(await readdir(tmp), [], 'no temp file, no record left')
    } finally {
      await second.unlock()
    }
  } finally {
    await upstream.stop()
  }
})

test('fetch --help explains the options; a bad --run or config value exits non-zero with one clear line', async () => {
  const dir = await tempDir()
  const help = await runFetch('/nonexistent', ['--help']).finished()
  assert.equal(help.code, 0)
  assert.match(help.output, /--dry-run/)
  const badRun = await runFetch(join(dir, 'none.json'), ['--run', 'yesterday']).finished()
  assert.equal(badRun.code, 1)
  assert.match(badRun.output, /run "yesterday": expected a UTC run time/)
  const badConfig = join(dir, 'bad.json')
  await writeFile(badConfig, JSON.stringify({ fetch: { concurrency: 0 } }))
  const bad = await runFetch(badConfig).finished()
  assert.equal(bad.code, 2)
  assert.match(bad.output, /^gribswarm: invalid configuration: fetch\.concurrency: .*\n$/)
})
