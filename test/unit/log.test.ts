// Log lines (src/log.ts): one line per call, time, level and message first, then key=value
// pairs a grep or a log shipper can split; levels below the configured one are dropped.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLogger, silentLogger, type LogLevel } from '../../src/log.ts'

function capture(level?: LogLevel) {
  const lines: string[] = []
  return { lines, log: createLogger(level, (line) => lines.push(line)) }
}

/** The part after the time stamp. */
const rest = (line: string | undefined) => line?.replace(/^\S+ /, '')

test('a line is: ISO time, level padded to five, message, then the context as key=value', () => {
  const { lines, log } = capture('debug')
  const before = Date.now()
  log.info('published', { relPath: 'a/b.grib2', size: 1234, ok: true })
  const [line] = lines
  const time = line!.split(' ')[0]!
  assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  assert.ok(Date.parse(time) >= before - 1 && Date.parse(time) <= Date.now())
  assert.equal(rest(line), 'INFO  published relPath=a/b.grib2 size=1234 ok=true')
  log.debug('d')
  log.warn('w')
  log.error('e')
  assert.deepEqual(lines.slice(1).map(rest), ['DEBUG d', 'WARN  w', 'ERROR e'])
})

test('messages below the configured level are dropped; the default level is info', () => {
  const levels: LogLevel[] = ['debug', 'info', 'warn', 'error']
  for (const [i, level] of levels.entries()) {
    const { lines, log } = capture(level)
    for (const at of levels) log[at](at)
    assert.deepEqual(
      lines.map((l) => rest(l)?.split(' ').pop()),
      levels.slice(i),
      level,
    )
  }
  const { lines, log } = capture()
  log.debug('hidden')
  log.info('shown')
  assert.deepEqual(lines.map(rest), ['INFO  shown'])
})

test('values with spaces, quotes, = or line breaks are quoted, so that every call is one line', () => {
  const { lines, log } = capture()
  log.warn('odd values', { a: 'two words', b: 'say "hi"', c: 'k=v', d: 'line\nbreak', e: 'tab\there', f: '' })
  assert.equal(lines.length, 1)
  assert.equal(rest(lines[0]), 'WARN  odd values a="two words" b="say \\"hi\\"" c="k=v" d="line\\nbreak" e="tab\\there" f=')
})

test('numbers, booleans, null, arrays and objects are JSON; undefined values are left out', () => {
  const { lines, log } = capture()
  log.info('m', { n: 1.5, t: false, z: null, list: [1, 2], gone: undefined })
  assert.equal(rest(lines[0]), 'INFO  m n=1.5 t=false z=null list=[1,2]')
  log.info('m', { o: { a: 1 } })
  // JSON with quotes in it is quoted once more: still one field, read back with two JSON.parse.
  const field = rest(lines[1])!.slice('INFO  m o='.length)
  assert.deepEqual(JSON.parse(JSON.parse(field)), { a: 1 })
})

test('an error is logged as its quoted message', () => {
  const { lines, log } = capture()
  log.error('failed', { error: new Error('connect ECONNREFUSED 127.0.0.1:1') })
  log.error('failed', { error: new TypeError('x') })
  assert.deepEqual(lines.map(rest), ['ERROR failed error="connect ECONNREFUSED 127.0.0.1:1"', 'ERROR failed error="x"'])
})

test('a child logger adds its context to every line; a call can override it', () => {
  const { lines, log } = capture()
  const stage = log.child({ stage: 'fetch' })
  const file = stage.child({ relPath: 'a.grib2' })
  file.info('started')
  file.info('retry', { stage: 'fetch-retry', attempt: 2 })
  stage.info('idle')
  assert.deepEqual(lines.map(rest), [
    'INFO  started stage=fetch relPath=a.grib2',
    'INFO  retry stage=fetch-retry relPath=a.grib2 attempt=2',
    'INFO  idle stage=fetch',
  ])
  const quiet = capture('warn')
  quiet.log.child({ x: 1 }).info('dropped by the parent level')
  assert.deepEqual(quiet.lines, [])
})

test('silentLogger writes nothing and takes any call', () => {
  silentLogger.error('nothing', { error: new Error('x') })
  silentLogger.child({ a: 1 }).debug('nothing')
})

test('a value JSON cannot write does not make the log call throw', () => {
  const { lines, log } = capture()
  const circular: Record<string, unknown> = {}
  circular.self = circular
  assert.doesNotThrow(() => log.info('odd', { big: 10n }))
  assert.doesNotThrow(() => log.info('odd', { circular }))
  assert.equal(lines.length, 2)
})
