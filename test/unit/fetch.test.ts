// Downloading one upstream file (src/fetch.ts) from a small HTTP server on 127.0.0.1 that
// answers as scripted: digests computed on the way, resuming with Range after a cut, starting
// again when the server ignores the Range, which statuses are retried and which are not, and
// the checks against the listing (size, MD5 ETag).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, test } from 'node:test'
import got from 'got'
import {
  backoff,
  currentBootId,
  FatalHttpError,
  fetchFile,
  IntegrityError,
  isoTime,
  NotFoundError,
  TransferError,
  type ChunkWatcher,
  type FetchOptions,
} from '../../src/fetch.ts'
import type { LogContext, Logger } from '../../src/log.ts'
import type { Candidate } from '../../src/source.ts'
import { resumeRecordPath, type ResumeRecord } from '../../src/store.ts'
import { PieceHasher } from '../../src/torrent.ts'
import { tempDir } from '../kit/helpers.ts'

test('backoff doubles from the base at each attempt, up to the maximum', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((attempt) => backoff(attempt, 100, 1000)),
    [100, 200, 400, 800, 1000, 1000],
  )
  assert.equal(backoff(60, 2000, 60_000), 60_000, 'no overflow far out')
  assert.equal(backoff(3, 0, 1000), 0)
  assert.equal(backoff(3, 500, 100), 100, 'the maximum wins over the base')
})

// ---------------------------------------------------------------------------------------------

const http = got.extend({ retry: { limit: 0 }, timeout: { connect: 2000, socket: 5000 } })
const DATA = randomBytes(100_000)
const MD5 = createHash('md5').update(DATA).digest('hex')
const PIECE = 16384
const OPTIONS: FetchOptions = { pieceLength: PIECE, attempts: 4, backoffMs: 1, maxBackoffMs: 5 }

type Answer = (req: IncomingMessage, res: ServerResponse) => void

/** A server answering its n-th request with answers[n] (the last one again after that). */
async function upstream(...answers: Answer[]): Promise<{ url: string; requests: IncomingHttpHeaders[] }> {
  const requests: IncomingHttpHeaders[] = []
  const server = createServer((req, res) => {
    requests.push(req.headers)
    answers[Math.min(requests.length, answers.length) - 1]!(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  after(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/pnt/f.grib2`, requests }
}

const whole: Answer = (_req, res) => void res.writeHead(200, { 'content-length': DATA.length, etag: `"${MD5}"` }).end(DATA)
const status =
  (code: number): Answer =>
  (_req, res) =>
    void res.writeHead(code).end()
/** Sends the first `bytes` of the file, then drops the connection. */
const cutAfter =
  (bytes: number): Answer =>
  (_req, res) => {
    res.writeHead(200, { 'content-length': DATA.length })
    res.write(DATA.subarray(0, bytes), () => res.destroy())
  }
/** Answers the Range asked for, as a 206. */
const ranged: Answer = (req, res) => {
  const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1])
  if (!(start > 0 && start < DATA.length)) return void res.writeHead(400).end(`bad range ${req.headers.range}`)
  res
    .writeHead(206, { 'content-length': DATA.length - start, 'content-range': `bytes ${start}-${DATA.length - 1}/${DATA.length}` })
    .end(DATA.subarray(start))
}

function candidate(url: string, over: Partial<Candidate> = {}): Candidate {
  return {
    key: 'pnt/f.grib2',
    url,
    relPath: 'r/f.grib2',
    fileName: 'f.grib2',
    run: '2026-11-23T00:00:00Z',
    model: 'arpege',
    grid: '01',
    package: 'SP1',
    range: '000H012H',
    size: DATA.length,
    etag: MD5,
    ...over,
  }
}

async function target(): Promise<string> {
  return join(await tempDir(), 'f.grib2.part')
}

/** The digests of DATA, as fetchFile must have computed them. */
function expected(path: string) {
  const pieces = new PieceHasher(PIECE)
  pieces.update(DATA)
  return {
    path,
    size: DATA.length,
    md5: MD5,
    sha512: createHash('sha512').update(DATA).digest('base64'),
    pieceLength: PIECE,
    pieces: pieces.digest(),
  }
}

async function fetched(path: string, result: Awaited<ReturnType<typeof fetchFile>>) {
  const { watcher: _, lastModified: __, ...rest } = result
  assert.deepEqual(rest, expected(path))
  assert.ok((await readFile(path)).equals(DATA), 'the file on disk is the upstream file')
}

test('a download writes the file and computes MD5, SHA-512 and the piece hashes on the way', async () => {
  const server = await upstream(whole)
  const path = await target()
  const progress: Array<[number, number | undefined]> = []
  const result = await fetchFile(http, candidate(server.url), path, {
    ...OPTIONS,
    onProgress: (received, total) => progress.push([received, total]),
  })
  await fetched(path, result)
  assert.equal(server.requests.length, 1)
  assert.equal(server.requests[0]!.range, undefined)
  assert.deepEqual(progress.at(-1), [DATA.length, DATA.length])
  assert.ok(
    progress.every(([received], i) => i === 0 || received > progress[i - 1]![0]),
    'progress only grows',
  )
})

test('without a size from the listing, the Content-Length is the size', async () => {
  const server = await upstream(whole)
  const path = await target()
  await fetched(path, await fetchFile(http, candidate(server.url, { size: undefined, etag: undefined }), path, OPTIONS))
})

test("the server's Last-Modified comes back as an ISO 8601 time, to be posted as the file's mtime", async () => {
  const server = await upstream((_req, res) =>
    res.writeHead(200, { 'content-length': DATA.length, 'last-modified': 'Mon, 23 Nov 2026 03:01:02 GMT' }).end(DATA),
  )
  const path = await target()
  const result = await fetchFile(http, { url: server.url }, path, OPTIONS)
  assert.equal(result.lastModified, '2026-11-23T03:01:02.000Z')
  assert.equal(isoTime('not a date'), undefined)
})

test('a broken transfer resumes where it stopped, with Range and If-Range', async () => {
  const server = await upstream(cutAfter(40_000), ranged)
  const path = await target()
  await fetched(path, await fetchFile(http, candidate(server.url), path, OPTIONS))
  assert.equal(server.requests.length, 2)
  const offset = Number(/^bytes=(\d+)-$/.exec(server.requests[1]!.range ?? '')?.[1])
  assert.ok(offset > 0 && offset <= 40_000, `resumed from byte ${offset}`)
  assert.equal(server.requests[1]!['if-range'], `"${MD5}"`, 'only if the object is still the same')
})

test('a server that ignores the Range is read again from byte 0, and a new watcher sees every byte', async () => {
  const server = await upstream(cutAfter(40_000), whole, whole)
  const path = await target()
  const watchers: Array<{ bytes: number } & ChunkWatcher> = []
  const watch = () => {
    const watcher = { bytes: 0, error: undefined, update: (chunk: Buffer) => void (watcher.bytes += chunk.length) }
    watchers.push(watcher)
    return watcher
  }
  const result = await fetchFile(http, candidate(server.url), path, { ...OPTIONS, watch })
  await fetched(path, result)
  assert.deepEqual(
    server.requests.map((h) => h.range),
    [undefined, server.requests[1]!.range, undefined],
  )
  assert.equal(watchers.length, 2)
  assert.equal(result.watcher, watchers[1])
  assert.equal(watchers[1]!.bytes, DATA.length)
})

/** A Logger that keeps what it is given: the entries are the test's to read, not text. */
function recordingLogger(entries: Array<{ level: string; message: string; context: LogContext }>, bound: LogContext = {}): Logger {
  const at =
    (level: string) =>
    (message: string, context: LogContext = {}) =>
      void entries.push({ level, message, context: { ...bound, ...context } })
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => recordingLogger(entries, { ...bound, ...more }),
  }
}

test('every retry and every resume is logged once, with its reason and the byte offset it goes on from', async () => {
  const server = await upstream(status(500), cutAfter(40_000), ranged)
  const path = await target()
  const entries: Array<{ level: string; message: string; context: LogContext }> = []
  await fetched(path, await fetchFile(http, candidate(server.url), path, { ...OPTIONS, log: recordingLogger(entries) }))
  assert.equal(entries.length, 2, 'one entry per retried transfer, nothing for the one that succeeded')
  const [retry, resume] = entries
  assert.equal(retry!.level, 'warn')
  assert.equal(retry!.context.offset, 0)
  assert.equal(retry!.context.attempt, 1)
  assert.match(String(retry!.context.reason), /HTTP 500$/)
  assert.equal(retry!.context.url, server.url)
  assert.equal(resume!.context.attempt, 2)
  const offset = Number(/^bytes=(\d+)-$/.exec(server.requests[2]!.range ?? '')?.[1])
  assert.equal(resume!.context.offset, offset, 'the offset the next request asks from')
  assert.ok(offset > 0)
  assert.notEqual(resume!.message, retry!.message, 'a resume says so')
  assert.ok(typeof resume!.context.retryInMs === 'number')
})

test('giving up after every transfer attempt is a TransferError; a refused file is a FatalHttpError', async () => {
  const failing = await upstream(status(502))
  await assert.rejects(fetchFile(http, candidate(failing.url), await target(), { ...OPTIONS, attempts: 2 }), TransferError)
  const refused = await upstream(status(403))
  await assert.rejects(fetchFile(http, candidate(refused.url), await target(), OPTIONS), FatalHttpError)
})

test('a 206 that does not start where we asked is not taken', async () => {
  const wrongStart: Answer = (_req, res) =>
    void res.writeHead(206, { 'content-range': `bytes 0-${DATA.length - 1}/${DATA.length}` }).end(DATA)
  const server = await upstream(cutAfter(40_000), wrongStart, ranged)
  const path = await target()
  await fetched(path, await fetchFile(http, candidate(server.url), path, OPTIONS))
  assert.equal(server.requests.length, 3)
})

test('404 and 410 mean "not published yet": NotFoundError at once', async () => {
  for (const code of [404, 410]) {
    const server = await upstream(status(code))
    await assert.rejects(
      fetchFile(http, candidate(server.url), await target(), OPTIONS),
      (err: Error) => err instanceof NotFoundError && err.message.includes(`HTTP ${code}`),
    )
    assert.equal(server.requests.length, 1, String(code))
  }
})

test('other client errors fail at once; 408, 429 and 5xx are retried', async () => {
  for (const code of [400, 401, 403, 416]) {
    const server = await upstream(status(code))
    await assert.rejects(
      fetchFile(http, candidate(server.url), await target(), OPTIONS),
      (err: Error) => !(err instanceof NotFoundError) && err.message.endsWith(`HTTP ${code}`),
    )
    assert.equal(server.requests.length, 1, String(code))
  }
  const server = await upstream(status(408), status(429), status(503), whole)
  const path = await target()
  await fetched(path, await fetchFile(http, candidate(server.url), path, OPTIONS))
  assert.equal(server.requests.length, 4)
})

test('after `attempts` failed transfers it gives up, saying why', async () => {
  const server = await upstream(status(500))
  await assert.rejects(fetchFile(http, candidate(server.url), await target(), { ...OPTIONS, attempts: 3 }), (err: Error) => {
    assert.match(err.message, /gave up after 3 attempts: GET .* HTTP 500$/)
    assert.ok(err.cause instanceof Error)
    return true
  })
  assert.equal(server.requests.length, 3)
})

test('a body whose MD5 is not the plain-MD5 ETag of the listing is an IntegrityError', async () => {
  const server = await upstream(whole)
  await assert.rejects(
    fetchFile(http, candidate(server.url, { etag: 'f'.repeat(32) }), await target(), OPTIONS),
    (err: Error) => err instanceof IntegrityError && /does not match the upstream ETag/.test(err.message),
  )
  // Case does not matter; a multipart ETag (md5-of-parts "-N") is not an MD5 of the body and is not checked.
  for (const etag of [MD5.toUpperCase(), `${'f'.repeat(32)}-3`, 'W/"weak"']) {
    const path = await target()
    await fetched(path, await fetchFile(http, candidate(server.url, { etag }), path, OPTIONS))
  }
})

test('no size anywhere: the download is refused, a cut file could not be told from a whole one', async () => {
  const chunked: Answer = (_req, res) => void res.writeHead(200).end(DATA) // no Content-Length: chunked
  const server = await upstream(chunked)
  await assert.rejects(fetchFile(http, candidate(server.url, { size: undefined }), await target(), OPTIONS), /no Content-Length/)
  assert.equal(server.requests.length, 1, 'not retried')
  // With the listing's size, a chunked body is fine.
  const path = await target()
  await fetched(path, await fetchFile(http, candidate(server.url), path, OPTIONS))
})

test('a Content-Length other than the listed size is an IntegrityError at once', async () => {
  const server = await upstream(whole)
  await assert.rejects(
    fetchFile(http, candidate(server.url, { size: DATA.length + 1 }), await target(), OPTIONS),
    (err: Error) => err instanceof IntegrityError,
  )
  assert.equal(server.requests.length, 1)
})

test("the watcher's error stops the download and is what fetchFile throws, without retries", async () => {
  const server = await upstream(whole)
  const invalid = new Error('not GRIB')
  const watch = () => ({
    error: undefined as Error | undefined,
    update(this: ChunkWatcher & { error?: Error }) {
      this.error = invalid
    },
  })
  await assert.rejects(fetchFile(http, candidate(server.url), await target(), { ...OPTIONS, watch }), (err) => err === invalid)
  assert.equal(server.requests.length, 1)
})

test('aborting stops the download at once, without retries', async () => {
  const controller = new AbortController()
  const hang: Answer = (_req, res) => {
    res.writeHead(200, { 'content-length': DATA.length })
    res.write(DATA.subarray(0, 10_000), () => controller.abort()) // and nothing more
  }
  const server = await upstream(hang)
  const started = performance.now()
  const download = fetchFile(http, candidate(server.url), await target(), { ...OPTIONS, signal: controller.signal })
  await assert.rejects(download)
  assert.ok(performance.now() - started < 2500, 'before the idle timeout')
  assert.ok(controller.signal.aborted)
  assert.equal(server.requests.length, 1)
})

// ---------------------------------------------------------------------------------------------
// Resuming across runs: a partial file and its resume record, as a killed or stopped run left them.

const NOW = new Date().toISOString()

/** Leaves what an earlier run would have: the first `bytes` of DATA at `path`, and its resume record. */
async function leavePartial(path: string, url: string, bytes: number, over: Partial<ResumeRecord> = {}): Promise<ResumeRecord> {
  await writeFile(path, DATA.subarray(0, bytes))
  const bootId = await currentBootId()
  const record: ResumeRecord = {
    version: 1,
    url,
    size: DATA.length,
    etag: MD5,
    pieceLength: PIECE,
    ...(bootId && { bootId }),
    startedAt: NOW,
    syncedBytes: 0,
    ...over,
  }
  await writeFile(resumeRecordPath(path), JSON.stringify(record))
  return record
}

const readRecord = async (path: string) => JSON.parse(await readFile(resumeRecordPath(path), 'utf8')) as ResumeRecord

/** A watcher that counts the bytes it sees, and the list of those made. */
function countingWatchers() {
  const made: Array<{ bytes: number } & ChunkWatcher> = []
  const watch = () => {
    const watcher = { bytes: 0, error: undefined, update: (chunk: Buffer) => void (watcher.bytes += chunk.length) }
    made.push(watcher)
    return watcher
  }
  return { made, watch }
}

test('a partial file with its record resumes from the end of the file; hashes and watcher are those of a whole download', async () => {
  const server = await upstream(ranged)
  const path = await target()
  await leavePartial(path, server.url, 60_000)
  const { made, watch } = countingWatchers()
  const resumed: number[] = []
  const progress: number[] = []
  const entries: Array<{ level: string; message: string; context: LogContext }> = []
  const result = await fetchFile(http, candidate(server.url), path, {
    ...OPTIONS,
    watch,
    resumable: true,
    resumed: (offset) => resumed.push(offset),
    onProgress: (received) => progress.push(received),
    log: recordingLogger(entries),
  })
  await fetched(path, result)
  assert.deepEqual(
    server.requests.map((h) => [h.range, h['if-range']]),
    [['bytes=60000-', `"${MD5}"`]],
    'one request, for the bytes not on disk, only if the object is the same',
  )
  assert.deepEqual(resumed, [60_000])
  assert.equal(progress[0], 60_000, 'progress starts from the bytes on disk')
  assert.equal(made.length, 1)
  assert.equal(made[0]!.bytes, DATA.length, 'the watcher saw the bytes on disk, then the rest')
  assert.deepEqual(
    entries.map((e) => [e.level, e.context.offset]),
    [['info', 60_000]],
    'one line says so',
  )
  const record = await readRecord(path)
  assert.equal(record.syncedBytes, DATA.length, 'the record stays, for the caller to remove with the file, every byte synced')
  assert.equal(record.startedAt, NOW, 'the age of a partial is that of its first run')
})

test('a download that is stopped keeps its file and a record written before its first byte; the next run goes on from it', async () => {
  // Over 1 MiB: the bytes are written in batches of 1 MiB, progress is told after each.
  const big = Buffer.concat([DATA, randomBytes(1_500_000)])
  const bigMd5 = createHash('md5').update(big).digest('hex')
  const headers = { etag: `"${bigMd5}"`, 'last-modified': 'Mon, 23 Nov 2026 03:01:02 GMT' }
  const hang: Answer = (_req, res) => {
    res.writeHead(200, { 'content-length': big.length, ...headers })
    res.write(big.subarray(0, 1_200_000)) // and nothing more
  }
  const rest: Answer = (req, res) => {
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1])
    res
      .writeHead(206, {
        'content-length': big.length - start,
        'content-range': `bytes ${start}-${big.length - 1}/${big.length}`,
        ...headers,
      })
      .end(big.subarray(start))
  }
  const server = await upstream(hang, rest)
  const path = await target()
  const controller = new AbortController()
  const target_ = candidate(server.url, { size: big.length, etag: bigMd5 })
  await assert.rejects(
    fetchFile(http, target_, path, { ...OPTIONS, resumable: true, signal: controller.signal, onProgress: () => controller.abort() }),
  )
  const left = (await stat(path)).size
  assert.ok(left >= 1024 * 1024 && left <= 1_200_000, `what arrived is kept (${left} bytes)`)
  const bootId = await currentBootId()
  const record = await readRecord(path)
  assert.deepEqual(record, {
    version: 1,
    url: server.url,
    size: big.length,
    etag: bigMd5,
    lastModified: '2026-11-23T03:01:02.000Z',
    pieceLength: PIECE,
    ...(bootId && { bootId }),
    startedAt: record.startedAt,
    syncedBytes: 0,
  })
  const result = await fetchFile(http, target_, path, { ...OPTIONS, resumable: true })
  assert.equal(result.md5, bigMd5)
  assert.ok((await readFile(path)).equals(big))
  assert.equal(result.lastModified, '2026-11-23T03:01:02.000Z', "the upstream's Last-Modified, from the record")
  assert.deepEqual(
    server.requests.map((h) => [h.range, h['if-range']]),
    [
      [undefined, undefined],
      [`bytes=${left}-`, `"${bigMd5}"`],
    ],
  )
})

test('a record from another boot trusts only the synced bytes: the file is cut there and resumed from there', async () => {
  const server = await upstream(ranged)
  const path = await target()
  await leavePartial(path, server.url, 60_000, { bootId: 'another-boot', syncedBytes: 32_768 })
  const { made, watch } = countingWatchers()
  await fetched(path, await fetchFile(http, candidate(server.url), path, { ...OPTIONS, watch, resumable: true }))
  assert.deepEqual(
    server.requests.map((h) => h.range),
    ['bytes=32768-'],
  )
  assert.equal(made[0]!.bytes, DATA.length)
  // Unknown boot (no /proc): the same.
  const again = await upstream(ranged)
  const other = await target()
  const { bootId: _, ...noBoot } = await leavePartial(other, again.url, 60_000, { syncedBytes: 16_384 })
  await writeFile(resumeRecordPath(other), JSON.stringify(noBoot))
  await fetched(other, await fetchFile(http, candidate(again.url), other, { ...OPTIONS, resumable: true }))
  assert.deepEqual(
    again.requests.map((h) => h.range),
    ['bytes=16384-'],
  )
})

test('a record of another object (ETag, size, URL, piece length) or none: the download starts from byte 0 and the record is rewritten', async () => {
  const cases: Array<[string, Partial<ResumeRecord> | 'no record']> = [
    ['another ETag', { etag: 'f'.repeat(32) }],
    ['another size', { size: DATA.length + 1 }],
    ['another URL', { url: 'http://127.0.0.1:1/elsewhere.grib2' }],
    ['another piece length', { pieceLength: PIECE * 2 }],
    ['no validator for If-Range', { etag: undefined, lastModified: undefined }],
    ['no record', 'no record'],
  ]
  for (const [what, over] of cases) {
    const server = await upstream(whole)
    const path = await target()
    await leavePartial(path, server.url, 60_000, over === 'no record' ? {} : over)
    if (over === 'no record') await rm(resumeRecordPath(path))
    const resumed: number[] = []
    await fetched(
      path,
      await fetchFile(http, candidate(server.url), path, { ...OPTIONS, resumable: true, resumed: (o) => resumed.push(o) }),
    )
    assert.deepEqual(
      server.requests.map((h) => h.range),
      [undefined],
      what,
    )
    assert.deepEqual(resumed, [], what)
    const record = await readRecord(path)
    assert.equal(record.etag, MD5, what)
    assert.equal(record.size, DATA.length, what)
    assert.equal(record.url, server.url, what)
  }
})

test('an object changed since (200 to the If-Range on its Last-Modified): the download starts again from zero', async () => {
  const NEW_DATE = 'Tue, 24 Nov 2026 00:00:00 GMT'
  // Honours If-Range by date: a 206 only for the current Last-Modified.
  const byDate: Answer = (req, res) => {
    if (req.headers.range && req.headers['if-range'] === NEW_DATE) return ranged(req, res)
    res.writeHead(200, { 'content-length': DATA.length, 'last-modified': NEW_DATE }).end(DATA)
  }
  const server = await upstream(byDate)
  const path = await target()
  // No strong ETag (a weak one may not go in an If-Range): the validator is the Last-Modified.
  await leavePartial(path, server.url, 60_000, { etag: 'W/abc', lastModified: '2026-11-23T00:00:00.000Z' })
  await writeFile(path, Buffer.alloc(60_000, 0xee)) // the bytes of the old version
  const { made, watch } = countingWatchers()
  const result = await fetchFile(http, candidate(server.url, { etag: undefined }), path, { ...OPTIONS, watch, resumable: true })
  await fetched(path, result)
  assert.deepEqual(
    server.requests.map((h) => [h.range, h['if-range']]),
    [
      ['bytes=60000-', 'Mon, 23 Nov 2026 00:00:00 GMT'],
      [undefined, undefined],
    ],
  )
  assert.equal(made.length, 2)
  assert.equal(made[1]!.bytes, DATA.length, 'a new watcher sees every byte of the new version')
  assert.equal((await readRecord(path)).lastModified, '2026-11-24T00:00:00.000Z', 'the record is of the new version')
})

test('a whole file on disk: nothing to fetch when the listing has its ETag; else only the last byte, with If-Range', async () => {
  const server = await upstream(ranged)
  const path = await target()
  await leavePartial(path, server.url, DATA.length)
  const resumed: number[] = []
  await fetched(path, await fetchFile(http, candidate(server.url), path, { ...OPTIONS, resumable: true, resumed: (o) => resumed.push(o) }))
  assert.deepEqual(server.requests, [], 'no request')
  assert.deepEqual(resumed, [DATA.length])

  const other = await upstream(ranged)
  const path2 = await target()
  await leavePartial(path2, other.url, DATA.length, { etag: undefined, lastModified: '2026-11-23T00:00:00.000Z' })
  await fetched(path2, await fetchFile(http, candidate(other.url, { etag: undefined }), path2, { ...OPTIONS, resumable: true }))
  assert.deepEqual(
    other.requests.map((h) => [h.range, h['if-range']]),
    [[`bytes=${DATA.length - 1}-`, 'Mon, 23 Nov 2026 00:00:00 GMT']],
  )
})

test('without `resumable`, no record is written and a partial file is overwritten', async () => {
  const server = await upstream(whole)
  const path = await target()
  await leavePartial(path, server.url, 60_000)
  await rm(resumeRecordPath(path))
  await fetched(path, await fetchFile(http, candidate(server.url), path, OPTIONS))
  assert.equal(server.requests[0]!.range, undefined)
  await assert.rejects(stat(resumeRecordPath(path)), { code: 'ENOENT' })
})
