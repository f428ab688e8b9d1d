// Fault injection, the disk: the data directory on a small tmpfs that another process fills
// while a file is downloading, so that a write fails with ENOSPC. Fetching that file fails
// with a message naming the problem, nothing partial is published or left behind, what was
// published stays published and served, and once there is room again the file is published.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { open, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { test } from 'node:test'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig } from '../kit/helpers.ts'

const run = promisify(execFile)

/** Writes zeros until the filesystem is full. */
async function fill(path: string): Promise<void> {
  const file = await open(path, 'w')
  const block = Buffer.alloc(64 * 1024)
  try {
    for (;;) await file.write(block)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  } finally {
    await file.close()
  }
}

test('ENOSPC mid-download: a clear failure, nothing partial, published files untouched, published once there is room', async (t) => {
  const mountPoint = await tempDir()
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mountPoint])
  } catch (err) {
    // Without the right to mount, pipeline.test.ts covers the disk budget instead.
    t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`)
    return
  }
  onCleanup(() => run('umount', ['-l', mountPoint]))

  const ranges = ['000H012H', '013H024H']
  const paths = [await fixture('disk-a.grib2', { seed: 70, bands: 2 }), await fixture('disk-b.grib2', { seed: 71, bands: 2 })]
  // Slow enough that the filesystem fills while the second file is on its way.
  const upstream = new FakeUpstream({ bytesPerSecond: 2_000_000 })
  await upstream.start()
  onCleanup(() => upstream.stop())
  const keys = ranges.map((range) => arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }))
  // The second file appears upstream only after the first is published.
  for (const [i, key] of keys.entries()) await upstream.put({ key, path: paths[i]!, hidden: i === 1 })
  const dataDir = join(mountPoint, 'data')
  const config = await testConfig(dataDir, upstream.bucketUrl, {
    source: { ranges },
    fetch: { concurrency: 1, transferAttempts: 2, validationAttempts: 1, backoffMs: 20, maxBackoffMs: 50 },
  })
  const daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  onCleanup(() => daemon.stop())
  const first = await daemon.runPass({ runs: [RUN] })
  assert.equal(first?.published.length, 1)
  const published = first!.published[0]!

  // The second file: the filesystem fills up as soon as its first bytes are on disk.
  upstream.show(keys[1]!)
  const filler = join(mountPoint, 'filler')
  let filling: Promise<void> | undefined
  const second = await daemon.runPass(
    { runs: [RUN] },
    {
      progress: () => void (filling ??= fill(filler)),
    },
  )
  await filling
  assert.equal(second?.published.length, 0)
  const failure = second?.failed.map((f) => JSON.stringify(f)).join(' ') ?? ''
  assert.match(failure, /ENOSPC|no space left/i, 'the failure names the problem')
  assert.match(failure, /013H024H/, 'and the file')
  assert.deepEqual(await readdir(join(dataDir, 'tmp')), [], 'nothing partial left behind')
  assert.deepEqual(
    daemon.store.list().map((i) => i.relPath),
    [published.relPath],
    'only the complete file is published',
  )
  const served = Buffer.from(await (await fetch(`${config.http.publicBaseUrl}/data/${published.relPath}`)).arrayBuffer())
  assert.ok(served.equals(await readFile(paths[0]!)), 'what was published is still served')

  await rm(filler)
  const third = await daemon.runPass({ runs: [RUN] })
  assert.equal(third?.published.length, 1, 'published once there is room again')
})
