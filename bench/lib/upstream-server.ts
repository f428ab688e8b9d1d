// A FakeUpstream in its own process, so that serving (and pacing) the bytes does not share an
// event loop with the daemon being measured. Started by the publishing and smallbox benchmarks
// (services.ts startUpstream, startUpstreamProcess):
//   node --import tsx bench/lib/upstream-server.ts [--hidden KEY]... PATH BYTES_PER_SECOND KEY...
// (every KEY serves the file at PATH; a --hidden KEY too, once shown), prints one JSON line
// {"bucketUrl": ..., "controlUrl": ...} once it listens on 127.0.0.1, and stops on SIGTERM/SIGINT.
// The control server, on a port of its own:
//   GET /requests?from=N  the requests the upstream answered so far, from the Nth (UpstreamRequest[],
//                       JSON): when each came, what it asked for, and the bytes written to its socket for it
//   POST /show?key=KEY  a hidden key becomes listable and served
import { subscribe } from 'node:diagnostics_channel'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { FakeUpstream } from '../../test/kit/fake-upstream.ts'
import type { UpstreamRequest } from './services.ts'

const { values, positionals } = parseArgs({ options: { hidden: { type: 'string', multiple: true } }, allowPositionals: true })
const [path, rate, ...keys] = positionals
const hidden = values.hidden ?? []
if (!path || !(Number(rate) > 0) || keys.length + hidden.length === 0) {
  process.stderr.write('usage: upstream-server.ts [--hidden KEY]... PATH BYTES_PER_SECOND KEY...\n')
  process.exit(2)
}

const control = http.createServer()
// Bytes counted on the socket (headers and listings included), per request: HTTP/1.1 answers
// the requests of one connection one after the other.
const requests: UpstreamRequest[] = []
const counting = new Map<UpstreamRequest, { socket: Socket; from: number }>()
const settle = (entry: UpstreamRequest) => {
  const counted = counting.get(entry)
  if (counted) entry.bytes = counted.socket.bytesWritten - counted.from
}
subscribe('http.server.request.start', (message) => {
  const { request, response, socket, server } = message as {
    request: http.IncomingMessage
    response: http.ServerResponse
    socket: Socket
    server: http.Server
  }
  if (server === control) return
  const entry: UpstreamRequest = { at: Date.now(), method: request.method ?? '', url: request.url ?? '', status: 0, bytes: 0, done: false }
  if (request.headers.range !== undefined) entry.range = request.headers.range
  requests.push(entry)
  counting.set(entry, { socket, from: socket.bytesWritten })
  response.once('close', () => {
    settle(entry)
    entry.status = response.statusCode
    entry.endedAt = Date.now()
    entry.done = true
    counting.delete(entry)
  })
})

const upstream = new FakeUpstream({ bytesPerSecond: Number(rate) })
for (const key of keys) await upstream.put({ key, path })
for (const key of hidden) await upstream.put({ key, path, hidden: true })
await upstream.start()

control.on('request', (req, res) => {
  const url = new URL(req.url ?? '/', 'http://control')
  const answer = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  try {
    if (req.method === 'GET' && url.pathname === '/requests') {
      for (const entry of counting.keys()) settle(entry)
      return answer(200, requests.slice(Number(url.searchParams.get('from') ?? 0)))
    }
    if (req.method === 'POST' && url.pathname === '/show') {
      upstream.show(url.searchParams.get('key') ?? '')
      return answer(200, { shown: url.searchParams.get('key') })
    }
    answer(404, { error: `no ${req.method} ${url.pathname}` })
  } catch (err) {
    answer(400, { error: (err as Error).message })
  }
})
await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
const controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`

process.stdout.write(`${JSON.stringify({ bucketUrl: upstream.bucketUrl, controlUrl })}\n`)
const stop = () => {
  control.close()
  void upstream.stop().finally(() => process.exit(0))
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, stop)
// Orphaned (the parent was killed): do not stay behind.
setInterval(() => {
  if (process.ppid === 1) stop()
}, 1000).unref()
