// gribswarm doctor's checks (src/doctor.ts): the verdicts as pure functions of what was
// measured, and the measurements themselves on loopback and a temp directory: a port in use,
// a data directory that cannot be written, the disk budget against free space, the public URL
// against http.port, a broker that answers or not, the CCSDS decode through gdal-async.
import assert from 'node:assert/strict'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { loadConfig, type Config } from '../../src/config.ts'
import {
  brokerAddress,
  ccsdsResult,
  checkBroker,
  checkCcsds,
  checkDataDir,
  checkPorts,
  diskResult,
  exitStatus,
  formatResult,
  portResult,
  publicUrlResult,
  runChecks,
  tryBind,
  type CheckResult,
} from '../../src/doctor.ts'
import { onCleanup, tempDir } from '../kit/helpers.ts'

/** A TCP server holding a port on 127.0.0.1 until the test ends. */
async function holdPort(): Promise<{ server: Server; port: number }> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onCleanup(function releaseThePort() {
    return new Promise((resolve) => server.close(resolve))
  })
  return { server, port: (server.address() as { port: number }).port }
}

/** A free port on 127.0.0.1 (the system's pick, released). */
async function freeLoopbackPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function loopback(overrides: Record<string, unknown> = {}): Promise<Config> {
  const dataDir = join(await tempDir('gribswarm-doctor-'), 'data')
  return loadConfig({
    env: {},
    overrides: {
      dataDir,
      http: { host: '127.0.0.1', port: await freeLoopbackPort(), publicBaseUrl: '' },
      tracker: { host: '127.0.0.1', port: await freeLoopbackPort() },
      seed: { port: 0 },
      disk: { budgetBytes: 1000, minFreeBytes: 0 },
      ...overrides,
    },
  })
}

const byCheck = (results: CheckResult[], check: string) => results.find((r) => r.check === check)

test('a port in use is a fail naming the port, its key and how to fix it; a free one is ok; port 0 is the system pick', async () => {
  const { port } = await holdPort()
  assert.equal(await tryBind('127.0.0.1', port, 'tcp'), 'EADDRINUSE')
  const taken = portResult('http', 'http.port', '127.0.0.1', port, { tcp: await tryBind('127.0.0.1', port, 'tcp') })
  assert.equal(taken.status, 'fail')
  assert.match(taken.detail, new RegExp(`127\\.0\\.0\\.1:${port} \\(tcp\\) is in use, set by http\\.port`))
  assert.match(taken.fix!, new RegExp(`:${port}`))
  const free = await freeLoopbackPort()
  assert.equal(await tryBind('127.0.0.1', free, 'tcp'), 'free')
  assert.equal(await tryBind('127.0.0.1', free, 'udp'), 'free')
  assert.equal(portResult('tracker', 'tracker.port', '127.0.0.1', free, { tcp: 'free', udp: 'free' }).status, 'ok')
  assert.equal(portResult('seed', 'seed.port', '', 0, {}).status, 'ok')
  const denied = portResult('http', 'http.port', '0.0.0.0', 80, { tcp: 'EACCES' })
  assert.equal(denied.status, 'fail')
  assert.match(denied.fix!, /1024/)
})

test('checkPorts: the HTTP port held by another process fails, the tracker only when enabled, the same port twice fails', async () => {
  const { port } = await holdPort()
  const config = await loopback()
  config.http.port = port
  const results = await checkPorts(config)
  assert.deepEqual(
    results.map((r) => [r.check, r.status]),
    [
      ['port http', 'fail'],
      ['port tracker', 'ok'],
      ['port seed', 'ok'],
    ],
  )
  config.tracker.enabled = false
  assert.deepEqual(
    (await checkPorts(config)).map((r) => r.check),
    ['port http', 'port seed'],
  )
  const twice = await loopback()
  twice.tracker.port = twice.http.port
  assert.equal(byCheck(await checkPorts(twice), 'port tracker')?.status, 'fail')
})

test('the data directory is made if missing and left without the probe file; one that cannot be written fails', async () => {
  const base = await tempDir('gribswarm-doctor-')
  const missing = join(base, 'a', 'b')
  const made = await checkDataDir(missing)
  assert.equal(made.status, 'ok', made.detail)
  assert.deepEqual(await readdir(missing), [], 'the probe file is removed')
  // A file where a directory should be: not writable, whoever runs the test (root included).
  await writeFile(join(base, 'file'), 'x')
  const under = await checkDataDir(join(base, 'file', 'data'))
  assert.equal(under.status, 'fail')
  assert.match(under.detail, /is not writable: (ENOTDIR|EEXIST)/)
  assert.match(under.fix!, /dataDir/)
  if (process.getuid?.() !== 0) {
    const { chmod } = await import('node:fs/promises')
    const locked = join(base, 'locked')
    await mkdir(locked)
    await chmod(locked, 0o500)
    assert.equal((await checkDataDir(locked)).status, 'fail')
  }
})

test('the disk budget: ok when free space and published files cover it, warn when they do not, fail when nothing fits', () => {
  const disk = { budgetBytes: 40e9, minFreeBytes: 2e9 }
  assert.equal(diskResult(disk, 50e9, 0).status, 'ok')
  assert.equal(diskResult(disk, 42e9, 0).status, 'ok')
  // Published files are part of the budget: 30 GB of them and 12 GB free still reach 40 GB.
  assert.equal(diskResult(disk, 12e9, 30e9).status, 'ok')
  const short = diskResult(disk, 20e9, 0)
  assert.equal(short.status, 'warn')
  assert.match(short.detail, /20\.0 GB free/)
  assert.match(short.fix!, /disk\.budgetBytes to 18000000000/)
  const full = diskResult(disk, 1e9, 0)
  assert.equal(full.status, 'fail')
  assert.match(full.detail, /minFreeBytes/)
})

test('http.publicBaseUrl against http.port: the default is fine on loopback only, a different explicit port without a proxy warns', () => {
  const http = (over: Partial<Config['http']>): Config['http'] => ({
    host: '0.0.0.0',
    port: 8080,
    publicBaseUrl: 'http://localhost:8080',
    trustProxy: false,
    accelRedirect: '',
    subsets: { maxBytes: 1, maxConcurrent: 1 },
    ...over,
  })
  // The default loadConfig fills in, for a server listening to all: others cannot follow its links.
  const defaulted = publicUrlResult(http({}))
  assert.equal(defaulted.status, 'warn')
  assert.match(defaulted.detail, /by default http:\/\/localhost:<http\.port>/)
  assert.equal(publicUrlResult(http({ host: '127.0.0.1', publicBaseUrl: 'http://127.0.0.1:8080' })).status, 'ok')
  assert.equal(publicUrlResult(http({ publicBaseUrl: 'http://grib.example.org:8080' })).status, 'ok')
  const mismatch = publicUrlResult(http({ publicBaseUrl: 'http://grib.example.org:8081' }))
  assert.equal(mismatch.status, 'warn')
  assert.match(mismatch.detail, /port 8081 but HTTP listens on 0\.0\.0\.0:8080/)
  // A proxy in between, said (trustProxy, accelRedirect) or implied by the standard port.
  assert.equal(publicUrlResult(http({ publicBaseUrl: 'http://grib.example.org:8081', trustProxy: true })).status, 'ok')
  assert.equal(publicUrlResult(http({ publicBaseUrl: 'https://grib.example.org:8443', accelRedirect: '/_p/' })).status, 'ok')
  assert.equal(publicUrlResult(http({ publicBaseUrl: 'https://grib.example.org' })).status, 'ok')
  assert.equal(publicUrlResult(http({ publicBaseUrl: 'http://grib.example.org:80', port: 80 })).status, 'ok')
})

test('a broker: host and default port by scheme, no credentials shown; reachable is ok, refused is a fail', async () => {
  assert.deepEqual(brokerAddress('amqp://user:secret@broker.example.org/vhost'), {
    host: 'broker.example.org',
    port: 5672,
    shown: 'amqp://broker.example.org:5672',
  })
  assert.equal(brokerAddress('amqps://b').port, 5671)
  assert.equal(brokerAddress('mqtt://b').port, 1883)
  assert.equal(brokerAddress('mqtts://b').port, 8883)
  assert.equal(brokerAddress('mqtt://[::1]:1884').host, '::1')
  const { port } = await holdPort()
  const up = await checkBroker('notify.brokerUrl', `amqp://user:secret@127.0.0.1:${port}/`, 2000)
  assert.equal(up.status, 'ok')
  assert.doesNotMatch(formatResult(up), /secret/)
  const down = await checkBroker('notify.brokerUrl', `mqtt://user:secret@127.0.0.1:${await freeLoopbackPort()}`, 2000)
  assert.equal(down.status, 'fail')
  assert.match(down.detail, /ECONNREFUSED/)
  assert.doesNotMatch(formatResult(down), /secret/)
})

test('gdal-async decodes the embedded CCSDS message to its known values; other values or an error are a fail', async () => {
  const started = Date.now()
  const result = await checkCcsds()
  assert.equal(result.status, 'ok', result.detail)
  assert.ok(Date.now() - started < 5000)
  const expected = Array.from({ length: 12 }, (_, i) => 553.15 + i)
  assert.equal(ccsdsResult(expected).status, 'ok')
  assert.equal(ccsdsResult(expected.map((v) => v - 273.15)).status, 'fail', 'read with normalized units: not what the validator reads')
  assert.equal(ccsdsResult(expected.map((v, i) => (i === 5 ? v + 1 : v))).status, 'fail')
  assert.equal(ccsdsResult(expected.slice(1)).status, 'fail')
  assert.equal(ccsdsResult(undefined, 'unsupported template 5.42').status, 'fail')
})

test('runChecks on loopback: one result per check in order, exit status 0; a port taken makes it 1; ports can be left out', async () => {
  const config = await loopback({ mirror: { brokers: [] } })
  const results = await runChecks(config)
  assert.deepEqual(
    results.map((r) => r.check),
    ['port http', 'port tracker', 'port seed', 'data directory', 'disk budget', 'gdal ccsds', 'public url'],
  )
  assert.deepEqual(
    results.filter((r) => r.status !== 'ok'),
    [],
  )
  assert.equal(exitStatus(results), 0)
  for (const r of results) assert.match(formatResult(r), /^(OK  |WARN|FAIL) [a-z ]+: \S/)
  const { port } = await holdPort()
  config.http.port = port
  assert.equal(exitStatus(await runChecks(config)), 1)
  const withoutPorts = await runChecks(config, { ports: false })
  assert.ok(!withoutPorts.some((r) => r.check.startsWith('port ')))
  assert.equal(exitStatus(withoutPorts), 0)
  assert.equal(exitStatus([{ check: 'x', status: 'warn', detail: 'd' }]), 0)
})
