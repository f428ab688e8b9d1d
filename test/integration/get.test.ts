// The consumer command, `gribswarm get`, run as a child against a real daemon (in this process)
// that published two 6-band CCSDS files: subsets through the subset endpoint and through .idx
// ranges, byte for byte; whole files over BitTorrent from the daemon's seeder, then seeded by
// the command; a parameter no file has; bad options; a first node that refuses connections.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import type { Config } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { cliCommand, startCli } from '../kit/daemon.ts'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { fixture, freePort, onCleanup, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

const RANGES = ['000H012H', '013H024H']
const SUBSET = ['--param', 'TMP,UGRD', '--level', '2-HTGL,10-HTGL', '--steps', '0-48']
let daemon: Daemon
let config: Config

const commands = new Resources()
onCleanup(function stopTheCommands() {
  return commands.cleanup()
})

before(async () => {
  const upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  for (const [i, range] of RANGES.entries()) {
    const path = await fixture(`get-${range}.grib2`, { seed: 80 + i, bands: 6 })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path })
  }
  // webtorrent to webtorrent over TCP, as in mirror.test.ts: utp-native can hold a process open.
  config = await testConfig(await tempDir(), upstream.bucketUrl, { seed: { port: 0, dht: false, utp: false } })
  daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  onCleanup(() => daemon.stop())
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 2, JSON.stringify(report?.failed))
})

const node = () => config.http.publicBaseUrl
const published = () => daemon.store.list().sort((a, b) => a.relPath.localeCompare(b.relPath))

function get(args: string[]) {
  return startCli(commands, cliCommand('get'), args).finished(120_000)
}

/** TMP at 2 m and UGRD at 10 m of a published file: its messages, located by the .idx the daemon wrote beside it. */
async function expectedSubset(relPath: string): Promise<Buffer> {
  const data = await readFile(daemon.store.dataPath(relPath))
  const lines = (await readFile(daemon.store.idxPath(relPath), 'utf8')).trim().split('\n')
  const offsets = lines.map((line) => Number(line.split(':')[1]))
  const messages = lines.flatMap((line, i) => {
    const [, , , param, level] = line.split(':')
    const wanted = (param === 'TMP' && level === '2 m above ground') || (param === 'UGRD' && level === '10 m above ground')
    return wanted ? [data.subarray(offsets[i], offsets[i + 1] ?? data.length)] : []
  })
  assert.equal(messages.length, 2, `${relPath}: TMP at 2 m and UGRD at 10 m in its .idx`)
  return Buffer.concat(messages)
}

/** The subset files in `dir`, each byte for byte what the published file holds, and nothing else left there. */
async function assertSubsets(dir: string, stdout: string) {
  const items = published()
  const names = items.map((item) => item.fileName.replace(/\.grib2$/, '.subset.grib2'))
  assert.deepEqual((await readdir(dir)).sort(), names)
  const lines: string[] = []
  for (const [i, item] of items.entries()) {
    const body = await readFile(join(dir, names[i]!))
    assert.ok(body.equals(await expectedSubset(item.relPath)), `${names[i]} is the messages of ${item.relPath}`)
    lines.push(`${join(dir, names[i]!)}\t${body.length} bytes\t2 fields`)
  }
  assert.deepEqual(stdout.trim().split('\n'), lines)
}

for (const via of ['subset', 'idx'] as const) {
  test(`--via ${via}: one subset per file, byte for byte the messages of the published files`, async () => {
    const dir = await tempDir()
    const before = { ...daemon.httpTraffic.total }
    const result = await get(['--from', node(), ...SUBSET, '--via', via, '--out', dir])
    assert.equal(result.code, 0, result.output)
    await assertSubsets(dir, result.stdout)
    const after = daemon.httpTraffic.total
    // The subset endpoint once per file, or one Range request per file (its two messages are adjacent).
    const requests = { subset: after.subsetRequests - before.subsetRequests, data: after.dataRequests - before.dataRequests }
    assert.deepEqual(requests, via === 'subset' ? { subset: 2, data: 0 } : { subset: 0, data: 2 })
  })
}

test('--whole SP1: every file of the run over BitTorrent from the daemon, identical to the published one, then seeded', async () => {
  const dir = await tempDir()
  const items = published()
  const before = items.map((item) => ({ uploaded: daemon.seeder.stats(item.infoHash).uploaded, http: daemon.httpTraffic.of(item.relPath) }))
  const command = startCli(commands, cliCommand('get'), ['--from', node(), '--whole', 'SP1', '--seed-minutes', '0.25', '--out', dir])
  // Once both files are written, the command seeds them: the tracker counts it as a second seeder.
  const seeders = async () => {
    const status = (await (await fetch(`${node()}/api/status`)).json()) as { items: Array<{ infoHash: string; seeders: number }> }
    return items.every((item) => status.items.find((i) => i.infoHash === item.infoHash)?.seeders === 2)
  }
  await waitFor('the command to seed both files', async () => command.stdout.split('\n').length > items.length && (await seeders()), 30_000)
  const result = await command.finished(60_000)
  assert.equal(result.code, 0, result.output)
  assert.deepEqual((await readdir(dir)).sort(), items.map((item) => item.fileName).sort())
  for (const [i, item] of items.entries()) {
    assert.ok((await readFile(join(dir, item.fileName))).equals(await readFile(daemon.store.dataPath(item.relPath))), item.fileName)
    assert.ok(daemon.seeder.stats(item.infoHash).uploaded - before[i]!.uploaded >= item.size, `${item.fileName} came from the seeder`)
    const http = daemon.httpTraffic.of(item.relPath)
    assert.deepEqual(
      [http.webSeedRequests, http.dataBytes],
      [before[i]!.http.webSeedRequests, before[i]!.http.dataBytes],
      'nothing over HTTP',
    )
  }
  assert.deepEqual(
    result.stdout.trim().split('\n'),
    items.map((item) => `${join(dir, item.fileName)}\t${item.size} bytes\t6 fields`),
  )
})

test('a parameter no file has: exit 1, naming it and listing the parameters the node has', async () => {
  const dir = await tempDir()
  const result = await get(['--from', node(), '--param', 'RH', '--out', dir])
  assert.equal(result.code, 1, result.output)
  assert.ok(
    result.stderr.includes(`no published file has param RH; ${node()} has params: PRMSL, TMP, UGRD, VGRD, var0_1_200;`),
    result.stderr,
  )
  assert.deepEqual(await readdir(dir), [])
})

test('bad options exit 2', async () => {
  for (const args of [['--via', 'ftp', '--param', 'TMP'], ['--steps', '48-0'], [], ['--from', 'ftp://x', '--param', 'TMP']]) {
    const result = await get(args)
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.output}`)
  }
})

test('a first node that refuses connections: the next one serves', async () => {
  const dir = await tempDir()
  const closed = `http://127.0.0.1:${await freePort()}`
  const result = await get(['--from', closed, '--from', node(), ...SUBSET, '--out', dir])
  assert.equal(result.code, 0, result.output)
  await assertSubsets(dir, result.stdout)
  // Each file tried the nodes in order, and says so.
  for (const item of published()) assert.match(result.stderr, new RegExp(`${item.fileName}: attempt 1/2, ${closed}: .*ECONNREFUSED`))
})
