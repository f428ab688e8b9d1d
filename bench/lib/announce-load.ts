// A BitTorrent tracker load generator, in its own process so that it does not share an event
// loop with the tracker it measures. Started by the tracker benchmark:
//   node --import tsx bench/lib/announce-load.ts '<LoadOptions as JSON>'
// It simulates `peers` peers spread evenly over the given infohashes, each with its own peer_id,
// port and key, announcing in turn (event=started until one succeeds, then periodic announces
// with no event; compact=1, numwant=50, left 0 for one peer in five), with `inFlight` announces
// always outstanding (a closed loop: a finished announce starts the next one). After a warm-up
// (every peer started, and at least `warmupSeconds`), it counts the announces that complete
// during `measureSeconds`, then prints one JSON line (LoadResult) on stdout.
//
// HTTP: one TCP connection per announce with "Connection: close", as libtorrent (qBittorrent,
// Deluge) sends every tracker request, and as any client's announces come minutes apart, long
// after an idle connection is closed (opentracker closes after every response anyway);
// `keepAlive` reuses one connection per outstanding announce instead. Raw sockets rather than node:http, to keep the
// generator's own CPU cost low: it shares the machine's cores with the tracker it measures.
// UDP (BEP 15): one socket; a connect request gets a connection id, reused for up to one minute,
// then announces. No answer within `timeoutMs` counts as a failure (no retransmission).
import bencode from 'bencode'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect, type Socket } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { cpuSeconds } from '../../test/kit/measure.ts'

export interface LoadOptions {
  protocol: 'http' | 'udp'
  host: string
  port: number
  infoHashes: string[]
  peers: number
  warmupSeconds: number
  measureSeconds: number
  inFlight: number
  timeoutMs: number
  /** HTTP only: reuse connections instead of one per announce. */
  keepAlive?: boolean
  /** The tracker's pid, to read its CPU time over the measured window. */
  trackerPid: number
}

export interface LoadResult {
  protocol: 'http' | 'udp'
  /** Successful announces completed in the measured window. */
  ok: number
  /** Failed ones: refused, unparsable, connection errors, timeouts (counted apart too). */
  errors: number
  timeouts: number
  /** A few distinct error messages, for the report. */
  errorSamples: string[]
  seconds: number
  perSecond: number
  p50Ms: number
  p99Ms: number
  /** Average number of peers in a successful answer (numwant is 50). */
  peersPerAnswer: number
  warmupSeconds: number
  /** Peers whose event=started announce succeeded during the warm-up. */
  startedPeers: number
  generatorCpuSeconds: number
  trackerCpuSeconds: number
}

const NUMWANT = 50
const FILE_SIZE = 78_000_000
/** BEP 15 lets a client use a connection id for one minute after it got it. */
const CONNECTION_ID_LIFETIME_MS = 60_000

interface SimulatedPeer {
  infoHash: Buffer
  peerId: Buffer
  port: number
  key: number
  left: number
  started: boolean
}

function simulatedPeers(count: number, infoHashes: string[]): SimulatedPeer[] {
  return Array.from({ length: count }, (_, i) => ({
    infoHash: Buffer.from(infoHashes[i % infoHashes.length]!, 'hex'),
    // Azureus-style id: client "GS" version 0100, then a per-peer number.
    peerId: Buffer.from(`-GS0100-${String(i).padStart(12, '0')}`, 'latin1'),
    // Distinct ports: both trackers tell peers apart by address and port, and all come from 127.0.0.1.
    port: 10_000 + i,
    key: (Math.random() * 2 ** 32) >>> 0,
    left: i % 5 === 0 ? 0 : FILE_SIZE - ((i * 7919) % FILE_SIZE),
    started: false,
  }))
}

/** An announce that was answered: how many peers the tracker gave. */
type Announce = (peer: SimulatedPeer) => Promise<number>

class Timeout extends Error {}

// ---- HTTP -----------------------------------------------------------------------------------

const percentEncode = (bytes: Buffer) => Array.from(bytes, (b) => `%${b.toString(16).padStart(2, '0')}`).join('')

function httpRequest(peer: SimulatedPeer, host: string, port: number, keepAlive: boolean): string {
  const downloaded = FILE_SIZE - peer.left
  const query =
    `info_hash=${percentEncode(peer.infoHash)}&peer_id=${percentEncode(peer.peerId)}&port=${peer.port}` +
    `&uploaded=0&downloaded=${downloaded}&left=${peer.left}&corrupt=0&key=${peer.key.toString(16)}` +
    `${peer.started ? '' : '&event=started'}&numwant=${NUMWANT}&compact=1&no_peer_id=1`
  return `GET /announce?${query} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: gribswarm-bench/1\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`
}

/** The body of a complete HTTP response in `data`, or undefined while more bytes are needed. */
function httpBody(data: Buffer): Buffer | undefined {
  const headerEnd = data.indexOf('\r\n\r\n')
  if (headerEnd < 0) return undefined
  const head = data.toString('latin1', 0, headerEnd)
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]
  if (status !== '200') throw new Error(`HTTP status ${status ?? `unreadable: ${head.slice(0, 40)}`}`)
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1]
  if (length === undefined) throw new Error('HTTP response without Content-Length')
  const end = headerEnd + 4 + Number(length)
  return data.length >= end ? data.subarray(headerEnd + 4, end) : undefined
}

/** Sends `request` on `socket` and resolves with the response body. */
function httpExchange(socket: Socket, request: string, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let data: Buffer = Buffer.alloc(0)
    const finish = (err: Error | undefined, body?: Buffer) => {
      clearTimeout(timer)
      socket.off('data', onData).off('end', onEnd).off('error', finish)
      if (err) {
        socket.destroy()
        reject(err)
      } else resolve(body!)
    }
    const onData = (chunk: Buffer) => {
      data = data.length ? Buffer.concat([data, chunk]) : chunk
      try {
        const body = httpBody(data)
        if (body) finish(undefined, body)
      } catch (err) {
        finish(err as Error)
      }
    }
    const onEnd = () => finish(new Error('connection closed before a complete response'))
    const timer = setTimeout(() => finish(new Timeout(`no HTTP response within ${timeoutMs} ms`)), timeoutMs)
    socket.on('data', onData).once('end', onEnd).once('error', finish)
    socket.write(request)
  })
}

/** Peers in a bencoded announce answer; throws on a `failure reason` or a malformed answer. */
function httpPeers(body: Buffer): number {
  let answer: Record<string, unknown>
  try {
    answer = bencode.decode(body) as Record<string, unknown>
  } catch {
    throw new Error(`not bencoded: ${body.toString('latin1', 0, 60)}`)
  }
  const failure = answer['failure reason']
  if (failure instanceof Uint8Array) throw new Error(`failure reason: ${Buffer.from(failure).toString()}`)
  const peers = answer.peers
  if (!(peers instanceof Uint8Array) || peers.length % 6 !== 0) throw new Error('answer without compact peers')
  return peers.length / 6
}

/** One announce function per outstanding request: with keep-alive, each holds its connection. */
function httpAnnouncer(options: LoadOptions): () => Announce {
  const keepAlive = options.keepAlive ?? false
  const open = () => connect({ host: options.host, port: options.port, noDelay: true })
  return () => {
    let kept: Socket | undefined
    return async (peer) => {
      const socket = keepAlive ? (kept = kept && !kept.destroyed ? kept : open()) : open()
      const body = await httpExchange(socket, httpRequest(peer, options.host, options.port, keepAlive), options.timeoutMs)
      if (!keepAlive) {
        // The tracker closes the connection after its answer (we asked it to): let it, so that
        // the TIME_WAIT state stays on its side, as with real clients; never hang on to it.
        socket.once('error', () => {}).setTimeout(5000, () => socket.destroy())
      }
      return httpPeers(body)
    }
  }
}

// ---- UDP (BEP 15) ---------------------------------------------------------------------------

const PROTOCOL_ID = 0x41727101980n
const enum Action {
  Connect = 0,
  Announce = 1,
  Error = 3,
}

class UdpTracker {
  private readonly socket: UdpSocket = createSocket('udp4')
  private readonly pending = new Map<
    number,
    { action: Action; resolve: (msg: Buffer) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }
  >()
  private nextTransactionId = (Math.random() * 2 ** 32) >>> 0
  private connection: { id: Buffer; at: number } | undefined
  private connecting: Promise<Buffer> | undefined

  constructor(private readonly options: LoadOptions) {
    this.socket.on('message', (msg) => this.onMessage(msg))
  }

  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve))
  }

  close(): void {
    this.socket.close()
  }

  readonly announce: Announce = async (peer) => {
    const connectionId = await this.connectionId()
    const packet = Buffer.alloc(98)
    connectionId.copy(packet, 0)
    packet.writeUInt32BE(Action.Announce, 8)
    peer.infoHash.copy(packet, 16)
    peer.peerId.copy(packet, 36)
    packet.writeBigUInt64BE(BigInt(FILE_SIZE - peer.left), 56) // downloaded
    packet.writeBigUInt64BE(BigInt(peer.left), 64)
    packet.writeBigUInt64BE(0n, 72) // uploaded
    packet.writeUInt32BE(peer.started ? 0 : 2, 80) // event: none, or started
    packet.writeUInt32BE(0, 84) // IP: the sender's
    packet.writeUInt32BE(peer.key, 88)
    packet.writeInt32BE(NUMWANT, 92)
    packet.writeUInt16BE(peer.port, 96)
    const answer = await this.request(Action.Announce, packet)
    if (answer.length < 20 || (answer.length - 20) % 6 !== 0) throw new Error(`UDP announce answer of ${answer.length} bytes`)
    return (answer.length - 20) / 6
  }

  /** The current connection id; a new one (one connect request, shared) once it is a minute old. */
  private connectionId(): Promise<Buffer> {
    if (this.connection && Date.now() - this.connection.at < CONNECTION_ID_LIFETIME_MS) return Promise.resolve(this.connection.id)
    this.connecting ??= (async () => {
      const packet = Buffer.alloc(16)
      packet.writeBigUInt64BE(PROTOCOL_ID, 0)
      packet.writeUInt32BE(Action.Connect, 8)
      const answer = await this.request(Action.Connect, packet)
      if (answer.length < 16) throw new Error(`UDP connect answer of ${answer.length} bytes`)
      this.connection = { id: Buffer.from(answer.subarray(8, 16)), at: Date.now() }
      return this.connection.id
    })().finally(() => (this.connecting = undefined))
    return this.connecting
  }

  /** Sends `packet` with a fresh transaction id and resolves with the matching answer. */
  private request(action: Action, packet: Buffer): Promise<Buffer> {
    const transactionId = (this.nextTransactionId = (this.nextTransactionId + 1) >>> 0)
    packet.writeUInt32BE(transactionId, 12)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(transactionId)
        reject(new Timeout(`no UDP answer within ${this.options.timeoutMs} ms`))
      }, this.options.timeoutMs)
      this.pending.set(transactionId, { action, resolve, reject, timer })
      this.socket.send(packet, this.options.port, this.options.host)
    })
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 8) return
    const waiting = this.pending.get(msg.readUInt32BE(4))
    if (!waiting) return // a late answer to a request already counted as timed out
    this.pending.delete(msg.readUInt32BE(4))
    clearTimeout(waiting.timer)
    const action = msg.readUInt32BE(0)
    if (action === waiting.action) waiting.resolve(msg)
    else if (action === Action.Error) waiting.reject(new Error(`UDP error: ${msg.toString('utf8', 8)}`))
    else waiting.reject(new Error(`UDP answer with action ${action}, expected ${waiting.action}`))
  }
}

// ---- the closed loop ------------------------------------------------------------------------

const percentile = (sorted: Float64Array, q: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : NaN

async function main(options: LoadOptions): Promise<LoadResult> {
  const peers = simulatedPeers(options.peers, options.infoHashes)
  let udp: UdpTracker | undefined
  let newAnnouncer: () => Announce
  if (options.protocol === 'udp') {
    const tracker = (udp = new UdpTracker(options))
    await tracker.open()
    newAnnouncer = () => tracker.announce
  } else newAnnouncer = httpAnnouncer(options)

  let running = true
  let measuring = false
  let cursor = 0
  let startedPeers = 0
  let ok = 0
  let errors = 0
  let timeouts = 0
  let peersAnswered = 0
  const latencies: number[] = []
  const errorSamples = new Set<string>()

  const outstanding = Array.from({ length: options.inFlight }, async () => {
    const announce = newAnnouncer()
    while (running) {
      const peer = peers[cursor++ % peers.length]!
      const begin = performance.now()
      try {
        const got = await announce(peer)
        if (!peer.started) {
          peer.started = true
          startedPeers++
        }
        if (measuring) {
          ok++
          peersAnswered += got
          latencies.push(performance.now() - begin)
        }
      } catch (err) {
        if (measuring) {
          errors++
          if (err instanceof Timeout) timeouts++
        }
        if (errorSamples.size < 5) errorSamples.add((err as Error).message)
      }
    }
  })

  const warmupStart = performance.now()
  const warmupDeadline = warmupStart + (options.warmupSeconds + 120) * 1000
  while (
    performance.now() < warmupStart + options.warmupSeconds * 1000 ||
    (startedPeers < peers.length && performance.now() < warmupDeadline)
  ) {
    await delay(50)
  }
  const warmupSeconds = (performance.now() - warmupStart) / 1000

  const trackerCpuBefore = (await cpuSeconds(options.trackerPid)) ?? NaN
  const cpuBefore = process.cpuUsage()
  const measureStart = performance.now()
  measuring = true
  await delay(options.measureSeconds * 1000)
  measuring = false
  const seconds = (performance.now() - measureStart) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  const trackerCpuAfter = (await cpuSeconds(options.trackerPid)) ?? NaN
  running = false
  await Promise.all(outstanding)
  udp?.close()

  const sorted = Float64Array.from(latencies).sort()
  return {
    protocol: options.protocol,
    ok,
    errors,
    timeouts,
    errorSamples: [...errorSamples],
    seconds,
    perSecond: ok / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    peersPerAnswer: ok ? peersAnswered / ok : 0,
    warmupSeconds,
    startedPeers,
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
    trackerCpuSeconds: trackerCpuAfter - trackerCpuBefore,
  }
}

const [json] = process.argv.slice(2)
if (!json) {
  process.stderr.write("usage: announce-load.ts '<LoadOptions as JSON>'\n")
  process.exit(2)
}
main(JSON.parse(json) as LoadOptions).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    process.exit(0)
  },
  (err: unknown) => {
    process.stderr.write(`announce-load: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  },
)
