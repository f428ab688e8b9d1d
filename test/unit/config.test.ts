import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { announceUrls, ConfigError, envOverrides, loadConfig } from '../../src/config.ts'
import { tempDir } from '../kit/helpers.ts'

test('the embedded defaults are valid: ARPEGE 0.1° Europe, SP1 and SP2, nine ranges, 12 h', () => {
  const config = loadConfig({ env: {} })
  assert.equal(config.source.bucketUrl, 'https://meteofrance-pnt.s3.rbx.io.cloud.ovh.net')
  assert.deepEqual(config.source.packages, ['SP1', 'SP2'])
  assert.equal(config.source.ranges.length, 9)
  assert.equal(config.retention.publishSeconds, 12 * 3600)
  assert.equal(config.schedule.cron, '*/5 * * * *')
  assert.deepEqual(announceUrls(config), ['http://localhost:6969/announce', 'udp://localhost:6969'])
})

test('environment variables override keys at any depth, lists by comma', () => {
  const config = loadConfig({
    env: {
      GRIBSWARM_HTTP__PORT: '8081',
      GRIBSWARM_SOURCE__PACKAGES: 'SP1,HP1',
      GRIBSWARM_SEED__DHT: 'false',
      GRIBSWARM_DATADIR: '/srv/grib',
    },
  })
  assert.equal(config.http.port, 8081)
  assert.deepEqual(config.source.packages, ['SP1', 'HP1'])
  assert.equal(config.seed.dht, false)
  assert.equal(config.dataDir, '/srv/grib')
})

test('http.publicBaseUrl follows http.port unless it is set', async () => {
  assert.equal(loadConfig({ env: {} }).http.publicBaseUrl, 'http://localhost:8080')
  const moved = loadConfig({ env: { GRIBSWARM_HTTP__PORT: '18080' } })
  assert.equal(moved.http.publicBaseUrl, 'http://localhost:18080')
  const dir = await tempDir()
  const file = join(dir, 'public.json')
  await writeFile(file, JSON.stringify({ http: { publicBaseUrl: 'https://grib.example.org/' } }))
  const set = loadConfig({ file, env: { GRIBSWARM_HTTP__PORT: '18080' } })
  assert.equal(set.http.publicBaseUrl, 'https://grib.example.org')
  assert.deepEqual(announceUrls(set), ['http://grib.example.org:6969/announce', 'udp://grib.example.org:6969'])
})

test('a config file is merged over the defaults, then the environment over it', async () => {
  const dir = await tempDir()
  const file = join(dir, 'local.json')
  await writeFile(file, JSON.stringify({ source: { grid: '025', packages: ['SP3'] }, http: { port: 9000 } }))
  const config = loadConfig({ file, env: { GRIBSWARM_HTTP__PORT: '9001' } })
  assert.equal(config.source.grid, '025')
  assert.deepEqual(config.source.packages, ['SP3'])
  assert.equal(config.source.model, 'arpege')
  assert.equal(config.http.port, 9001)
})

test('a bad value stops with one message naming the key and what was expected', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ http: { port: 70000 } }, /http\.port: .*65535/],
    [{ http: { port: 'eighty' } }, /http\.port: .*number/],
    [{ source: { discovery: 'guess' } }, /source\.discovery: .*"auto"/],
    [{ schedule: { cron: 'every minute' } }, /schedule\.cron: not a valid cron expression/],
    [{ source: { packages: [] } }, /source\.packages: /],
    [{ source: { bucketUrl: 'ftp://x' } }, /source\.bucketUrl: /],
    [{ http: { publicBaseUrl: 'grib.example.org' } }, /http\.publicBaseUrl: /],
    [{ retention: { publishSeconds: -1 } }, /retention\.publishSeconds: /],
    [{ http: { prot: 1 } }, /http: unknown key "prot"/],
    [{ colour: 'blue' }, /unknown key "colour"/],
  ]
  for (const [overrides, message] of cases) {
    assert.throws(
      () => loadConfig({ env: {}, overrides: overrides as never }),
      (err: Error) => {
        assert.ok(err instanceof ConfigError, `${JSON.stringify(overrides)}: ${err}`)
        assert.match(err.message, message)
        return true
      },
    )
  }
})

test('a broken config file is named in the error', async () => {
  const dir = await tempDir()
  const file = join(dir, 'broken.json')
  await writeFile(file, '{ "http": ')
  assert.throws(() => loadConfig({ file, env: {} }), new RegExp(`config file ${file}`))
})

test('env names are matched case-insensitively against the defaults', () => {
  assert.deepEqual(envOverrides({ GRIBSWARM_FETCH__IDLETIMEOUTMS: '5' }, { fetch: { idleTimeoutMs: 1 } }), { fetch: { idleTimeoutMs: 5 } })
})
