// Real crashes: `npm run fetch` killed with SIGKILL in the middle of a download, then run
// again. Nothing partial is ever published, nothing valid is lost, no temp file survives.
import assert from 'node:assert/strict'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { cliCommand, startCli } from '../kit/daemon.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

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

test('SIGKILL mid-download, then a new pass: no partial file published, everything published once', async () => {
  const upstream = new FakeUpstream({ bytesPerSecond: 400_000 })
  await upstream.start()
  const bodies: Buffer[] = []
  for (const [range, seed] of [
    ['000H012H', 31],
    ['013H024H', 32],
  ] as const) {
    const path = await fixture(`crash-${range}.grib2`, { seed, bands: 3 })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path })
    bodies.push(await readFile(path))
  }
  const dataDir = await tempDir()
  const config = await testConfig(dataDir, upstream.bucketUrl)
  const configFile = join(await tempDir(), 'config.json')
  await writeFile(configFile, JSON.stringify(config))
  try {
    const first = runFetch(configFile)
    await waitFor(
      'a partial download on disk',
      async () => {
        const parts = (await readdir(join(dataDir, 'tmp')).catch(() => [])).filter((f) => f.endsWith('.part'))
        for (const part of parts) if ((await stat(join(dataDir, 'tmp', part))).size > 100_000) return true
        return false
      },
      30_000,
    )
    first.child.kill('SIGKILL')
    await first.exited
    assert.ok(!(await listAll(dataDir)).some((f) => f.startsWith('pub/') && f.endsWith('.grib2')), 'nothing published yet')

    upstream.setRate(undefined)
    const second = await runFetch(configFile).finished()
    assert.equal(second.code, 0, second.output)
    assert.match(second.output, /published 2, failed 0/)
    const files = await listAll(dataDir)
    assert.deepEqual(
      files.filter((f) => !f.startsWith('pub/')),
      [],
      'no temp file, no lock left',
    )
    const published = files.filter((f) => f.endsWith('.grib2'))
    assert.equal(published.length, 2)
    for (const [i, file] of published.entries()) assert.ok((await readFile(join(dataDir, file))).equals(bodies[i]!), file)

    const third = await runFetch(configFile, ['--dry-run']).finished()
    assert.equal(third.code, 0)
    assert.match(third.output, /0 to fetch, 2 already done/)
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
