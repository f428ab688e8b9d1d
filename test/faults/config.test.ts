// Fault injection, configuration: every key of config/default.json given a value of the wrong
// type, and every number an out-of-range one, is refused with one message that names the key;
// the CLIs then exit non-zero having started nothing (no data directory, no port).
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { ConfigError, loadConfig } from '../../src/config.ts'
import { cliCommand, startCli } from '../kit/daemon.ts'
import { onCleanup, tempDir } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const defaults = JSON.parse(readFileSync(join(ROOT, 'config/default.json'), 'utf8')) as Record<string, unknown>

/** Every leaf of the defaults (arrays are leaves), with its dotted path. */
function leaves(value: unknown, path: string[] = []): Array<{ path: string[]; value: unknown }> {
  if (value && typeof value === 'object' && !Array.isArray(value))
    return Object.entries(value).flatMap(([key, v]) => leaves(v, [...path, key]))
  return [{ path, value }]
}

/** `overrides` with `value` at `path`. */
function at(path: string[], value: unknown): Record<string, unknown> {
  return path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>
}

function wrongType(value: unknown): unknown {
  if (typeof value === 'number') return 'twelve'
  if (typeof value === 'boolean') return 'yes'
  if (typeof value === 'string') return 12
  if (Array.isArray(value)) return 'not a list'
  return 12
}

function refused(overrides: Record<string, unknown>, key: string): void {
  assert.throws(
    () => loadConfig({ env: {}, overrides: overrides as never }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError, `${key}: ${err}`)
      assert.ok(err.message.includes(key), `${key}: the message names the key: ${err.message}`)
      assert.equal(err.message.split('\n').length, 1, `${key}: one line`)
      return true
    },
    `${key} = ${JSON.stringify(overrides)} was accepted`,
  )
}

const all = leaves(defaults)

test('every key given a value of the wrong type is refused, naming the key', () => {
  assert.ok(all.length > 50, `only ${all.length} keys found`)
  for (const { path, value } of all) refused(at(path, wrongType(value)), path.join('.'))
})

test('every number given an out-of-range value is refused, naming the key', () => {
  const numbers = all.filter(({ value }) => typeof value === 'number')
  for (const { path } of numbers) {
    refused(at(path, -1), path.join('.'))
    refused(at(path, Number.MAX_SAFE_INTEGER * 4), path.join('.'))
  }
})

test('durations beyond what a Node.js timer can hold are refused (they would fire every millisecond)', () => {
  for (const path of ['fetch.connectTimeoutMs', 'fetch.idleTimeoutMs', 'fetch.backoffMs', 'fetch.maxBackoffMs'])
    refused(at(path.split('.'), 2 ** 31), path)
  for (const path of ['retention.checkEverySeconds', 'mirror.pollSeconds', 'mirror.downloadTimeoutSeconds', 'mirror.webSeedAfterSeconds']) {
    refused(at(path.split('.'), 30 * 86400), path)
  }
})

test('an unknown key at any level is refused, naming it', () => {
  refused({ shedule: { cron: '* * * * *' } }, 'shedule')
  for (const section of Object.keys(defaults).filter((k) => typeof defaults[k] === 'object')) {
    refused({ [section]: { colour: 'blue' } }, `${section}: unknown key "colour"`)
  }
})

for (const cli of ['start', 'fetch', 'mirror']) {
  test(`src/cli/${cli}.ts with a bad value exits 2 with one line and starts nothing`, async () => {
    const dataDir = join(await tempDir(), 'data')
    const args = cli === 'mirror' ? ['http://127.0.0.1:9/feed.json', '--data-dir', dataDir] : []
    const res = new Resources()
    onCleanup(function stopTheCli() {
      return res.cleanup()
    })
    // startCli leaves this process's GRIBSWARM_* variables out.
    const result = await startCli(res, cliCommand(cli), args, {
      env: { GRIBSWARM_DATADIR: dataDir, GRIBSWARM_FETCH__CONCURRENCY: 'lots' },
    }).finished(60_000)
    assert.equal(result.code, 2, `exit status; stderr: ${result.stderr}`)
    const lines = result.stderr.trim().split('\n')
    assert.equal(lines.length, 1, result.stderr)
    assert.match(lines[0]!, /fetch\.concurrency/)
    await assert.rejects(access(dataDir), 'the data directory was not created')
  })
}
