// Log lines (src/log.ts): one line per call. In text, time, level and message first, then
// key=value pairs a grep can split; in json, one object per line for a log shipper. Levels below
// the configured one are dropped, in both formats.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLogger, silentLogger, type LogFormat, type LogLevel } from '../../src/log.ts'

function capture(level?: LogLevel, format: LogFormat = 'text') {
  const lines: string[] = []
  return { lines, log: createLogger(level, format, (line) => lines.push(line)) }
}

/** The lines of a json logger, parsed. */
const parsed = (lines: string[]) => lines.map((line) => JSON.parse(line) as Record<string, unknown>)

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

test('text stays the default format, and a writer as second argument still means text', () => {
  const lines: string[] = []
  createLogger('info', (line) => lines.push(line)).info('m', { a: 1 })
  assert.equal(rest(lines[0]), 'INFO  m a=1')
})

test('json: one object per line, time, level and msg first, then the context', () => {
  const { lines, log } = capture('debug', 'json')
  const before = Date.now()
  log.info('published', { relPath: 'a/b.grib2', size: 1234, ok: true, list: [1, 2], o: { a: 'x y' }, gone: undefined })
  log.warn('two\nlines', { text: 'say "hi"' })
  assert.equal(lines.length, 2)
  for (const line of lines) assert.ok(!line.includes('\n'), 'one line per call')
  const [first, second] = parsed(lines)
  assert.deepEqual(Object.keys(first!), ['time', 'level', 'msg', 'relPath', 'size', 'ok', 'list', 'o'])
  assert.match(first!.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  assert.ok(Date.parse(first!.time as string) >= before - 1 && Date.parse(first!.time as string) <= Date.now())
  assert.deepEqual(
    { ...first, time: 'T' },
    {
      time: 'T',
      level: 'info',
      msg: 'published',
      relPath: 'a/b.grib2',
      size: 1234,
      ok: true,
      list: [1, 2],
      o: { a: 'x y' },
    },
  )
  assert.deepEqual({ ...second, time: 'T' }, { time: 'T', level: 'warn', msg: 'two\nlines', text: 'say "hi"' })
})

test('json: levels below the configured one are dropped; level names are lower case', () => {
  const levels: LogLevel[] = ['debug', 'info', 'warn', 'error']
  for (const [i, level] of levels.entries()) {
    const { lines, log } = capture(level, 'json')
    for (const at of levels) log[at](`at ${at}`)
    assert.deepEqual(
      parsed(lines).map((l) => [l.level, l.msg]),
      levels.slice(i).map((at) => [at, `at ${at}`]),
      level,
    )
  }
})

test('json: a child adds its context, a call overrides it, time, level and msg cannot be overwritten', () => {
  const { lines, log } = capture('info', 'json')
  const stage = log.child({ stage: 'fetch' })
  stage.child({ relPath: 'a.grib2' }).info('retry', { stage: 'fetch-retry', attempt: 2 })
  stage.info('idle', { level: 'debug', msg: 'other', time: 0 })
  const [retry, idle] = parsed(lines)
  assert.deepEqual(
    { ...retry, time: 'T' },
    { time: 'T', level: 'info', msg: 'retry', stage: 'fetch-retry', relPath: 'a.grib2', attempt: 2 },
  )
  assert.equal(idle!.level, 'info')
  assert.equal(idle!.msg, 'idle')
  assert.equal(typeof idle!.time, 'string')
  const quiet = capture('warn', 'json')
  quiet.log.child({ x: 1 }).info('dropped by the parent level')
  assert.deepEqual(quiet.lines, [])
})

test('json: errors are their message, BigInts their digits, cycles a marker, and nothing throws', () => {
  const { lines, log } = capture('info', 'json')
  const circular: Record<string, unknown> = { name: 'c' }
  circular.self = circular
  const bare = Object.create(null) as Record<string, unknown>
  bare.inner = bare
  assert.doesNotThrow(() =>
    log.error('odd', {
      error: new Error('connect ECONNREFUSED 127.0.0.1:1'),
      nested: { cause: new TypeError('x'), big: [10n] },
      big: 2n ** 70n,
      circular,
      bare,
      fn: function named() {},
      when: new Date('2026-11-23T00:00:00Z'),
      throwing: {
        toJSON() {
          throw new Error('no')
        },
      },
    }),
  )
  assert.equal(lines.length, 1)
  const [line] = parsed(lines)
  assert.equal(line!.error, 'connect ECONNREFUSED 127.0.0.1:1')
  assert.deepEqual(line!.nested, { cause: 'x', big: ['10'] })
  assert.equal(line!.big, (2n ** 70n).toString())
  assert.deepEqual(line!.circular, { name: 'c', self: '[Circular]' })
  assert.deepEqual(line!.bare, { inner: '[Circular]' })
  assert.equal(typeof line!.fn, 'string')
  assert.equal(line!.when, '2026-11-23T00:00:00.000Z')
  assert.equal(typeof line!.throwing, 'string')
  // The same values in text do not throw either.
  const text = capture()
  assert.doesNotThrow(() => text.log.info('odd', { bare, big: 1n, circular }))
  assert.equal(text.lines.length, 1)
})
