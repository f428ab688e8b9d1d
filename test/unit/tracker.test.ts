// The tracker's view of who is in a swarm, by address: what the web-seed policy asks about
// clients that are not connected to our seeder; and the addresses its UDP tracker answers on.
// Real HTTP and UDP announces on loopback (127.0.0.1 and ::1).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { test } from 'node:test'
import { silentLogger } from '../../src/log.ts'
import { Tracker } from '../../src/tracker.ts'
import { freePort, onCleanup, waitFor } from '../kit/helpers.ts'

const encode = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')

test('the tracker knows which addresses announced a published torrent, and when they last gained pieces', async () => {
  const tracker = new Tracker({ host: '127.0.0.1', port: await freePort() }, { log: silentLogger })
  await tracker.start()
  onCleanup(() => tracker.stop())
  const published = 'ab'.repeat(20)
  const other = 'cd'.repeat(20)
  tracker.allow(published)
  const announce = (infoHash: string, left: number, event = '') =>
    fetch(
      `http://127.0.0.1:${tracker.port}/announce?info_hash=${encode(infoHash)}&peer_id=${encode('ef'.repeat(20))}&port=6881&left=${left}&compact=1${event ? `&event=${event}` : ''}`,
    ).then((r) => r.arrayBuffer())

  await announce(other, 100, 'started')
  assert.equal(tracker.client(other, '127.0.0.1'), undefined, 'an unpublished infohash leaves no trace')

  await announce(published, 1000, 'started')
  await waitFor('the announce to be recorded', () => tracker.client(published, '127.0.0.1'))
  const at = (address: string, now: number) => tracker.client(published, address, now)?.progressAt
  // One announce says nothing of its progress since: it counts as gaining pieces.
  const now = Date.now() + 60_000
  assert.equal(at('127.0.0.1', now), now)
  assert.equal(at('::ffff:127.0.0.1', now), now, 'one address, one spelling')

  const later = Date.now() + 1
  await waitFor('the clock to move on', () => Date.now() > later)
  await announce(published, 1000)
  const stuck = at('127.0.0.1', now)!
  assert.ok(stuck < later, 'nothing gained between two announces: progress dates from the first')
  await announce(published, 400)
  assert.equal(at('127.0.0.1', now), now, 'less left: gaining again')
  assert.equal(tracker.client(published, '127.0.0.1', Date.now() + 11 * 60_000), undefined, 'silent for two intervals: gone')

  await announce(published, 400, 'stopped')
  assert.equal(tracker.client(published, '127.0.0.1'), undefined, 'stopped: gone')
})

test('completed downloads are counted per published torrent, seeders aside, and forgotten with it', async () => {
  const tracker = new Tracker({ host: '127.0.0.1', port: await freePort() }, { log: silentLogger })
  await tracker.start()
  onCleanup(() => tracker.stop())
  const published = 'ab'.repeat(20)
  tracker.allow(published)
  const announce = (peer: string, left: number, event: string) =>
    fetch(
      `http://127.0.0.1:${tracker.port}/announce?info_hash=${encode(published)}&peer_id=${encode(peer.repeat(20))}&port=6881&left=${left}&compact=1&event=${event}`,
    ).then((r) => r.arrayBuffer())
  await announce('01', 1000, 'started')
  await announce('01', 0, 'completed')
  await announce('02', 1000, 'started')
  await announce('02', 0, 'completed')
  // A seeder from the start (the origin's own seeder) announces `completed` too: it downloaded nothing.
  await announce('03', 0, 'started')
  await announce('03', 0, 'completed')
  await announce('04', 0, 'completed')
  await waitFor('both completions', () => tracker.stats(published).completed === 2)
  await announce('01', 0, 'completed')
  assert.equal(tracker.stats(published).completed, 2, 'a completion counts once per download')
  // aria2c --seed-time=0 says `stopped` with nothing left, never `completed`; a client that gives up says `stopped` with bytes left.
  await announce('05', 1000, 'started')
  await announce('05', 0, 'stopped')
  await announce('06', 1000, 'started')
  await announce('06', 400, 'stopped')
  assert.equal(tracker.stats(published).completed, 3)
  tracker.forget(published)
  tracker.allow(published)
  assert.equal(tracker.stats(published).completed, 0)
})

const PROTOCOL_ID = Buffer.from('0000041727101980', 'hex')

/** A BEP 15 request: connect (action 0), or announce (1) of `infoHash` as a leecher on port 6881. */
function udpRequest(connectionId: Buffer, action: 0 | 1, transactionId: Buffer, infoHash = ''): Buffer {
  const head = Buffer.concat([connectionId, Buffer.alloc(4), transactionId])
  head.writeUInt32BE(action, 8)
  if (action === 0) return head
  const body = Buffer.alloc(82)
  Buffer.from(infoHash, 'hex').copy(body, 0)
  randomBytes(20).copy(body, 20) // peer id
  body.writeBigUInt64BE(1000n, 48) // left
  body.writeInt32BE(-1, 76) // numwant: default
  body.writeUInt16BE(6881, 80)
  return Buffer.concat([head, body])
}

/**
 * Sends BEP 15 requests to address:port from one connected socket, each built with the reply to
 * the one before: the last reply; 'refused' when nothing listens there (the kernel's ICMP port
 * unreachable, at once); or 'silent' when `withinMs` passed without either, the bound on how
 * long an absence is waited for.
 */
async function udpExchange(address: string, port: number, requests: Array<(previous?: Buffer) => Buffer>, withinMs = 2000) {
  const socket = createSocket(isIPv6(address) ? 'udp6' : 'udp4')
  const outcome = new Promise<Buffer | 'refused' | 'silent'>((resolve, reject) => {
    const timer = setTimeout(() => resolve('silent'), withinMs)
    let next = 0
    const send = (previous?: Buffer) => socket.send(requests[next++]!(previous))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      if (err.code === 'ECONNREFUSED') resolve('refused')
      else reject(err)
    })
    socket.on('message', (msg) => {
      if (next < requests.length) return send(msg)
      clearTimeout(timer)
      resolve(msg)
    })
    socket.connect(port, address, () => send())
  })
  try {
    return await outcome
  } finally {
    socket.close()
  }
}

test('the UDP tracker answers on tracker.host only, not on every address of the other family', async () => {
  const published = 'ab'.repeat(20)
  const transactionId = randomBytes(4)
  const connect = () => udpRequest(PROTOCOL_ID, 0, transactionId)
  const announce = (connected?: Buffer) => udpRequest(connected!.subarray(8, 16), 1, transactionId, published)
  const cases: Array<[host: string, answers: string[], silent: string[]]> = [
    ['127.0.0.1', ['127.0.0.1'], ['::1']],
    ['::1', ['::1'], ['127.0.0.1']],
    ['0.0.0.0', ['127.0.0.1', '::1'], []],
  ]
  for (const [host, answers, silent] of cases) {
    const tracker = new Tracker({ host, port: await freePort() }, { log: silentLogger })
    await tracker.start()
    onCleanup(() => tracker.stop())
    tracker.allow(published)
    for (const address of answers) {
      const reply = await udpExchange(address, tracker.port, [connect, announce])
      assert.ok(Buffer.isBuffer(reply), `tracker.host ${host}: an announce to ${address} got ${reply}`)
      assert.equal(reply.readUInt32BE(0), 1, `tracker.host ${host}: an announce reply from ${address}, not an error`)
    }
    for (const address of silent) {
      const reply = await udpExchange(address, tracker.port, [connect])
      assert.ok(!Buffer.isBuffer(reply), `tracker.host ${host}: a connect to ${address} was answered`)
    }
  }
})
