// Smoke test of the separate-hosts harness (test/kit/netns.ts, ns-clients.ts): a LAN of
// network namespaces with the origin's uplink capped, nginx in the origin serving one file and a
// trackerless .torrent whose url-list points at it, and each stock client (libtorrent,
// qbittorrent-nox, transmission-daemon, aria2c) in its own host completing the file from that
// web seed, byte for byte. Where namespaces cannot be made (not root), the same on the loopback
// fallback, saying so; what only namespaces give (tc, isolation) is then skipped.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Resources } from '../kit/resources.ts'
import { waitFor } from '../kit/wait.ts'
import { createLan, netnsUnavailable, portOf, runCommand, runInNs, startInNs, type Lan, type NetHost } from '../kit/netns.ts'
import { CLIENT_KINDS, startNsClient, startNsNginx } from '../kit/ns-clients.ts'
import { buildTorrent, pieceLengthFor, PieceHasher } from '../../src/torrent.ts'

const SIZE = 4 * 1024 * 1024 + 12_345 // a last piece shorter than the others
const NAME = 'smoke.grib2'
const UPLINK_MBIT = 80

const loopback = await netnsUnavailable()
const onlyInNamespaces = loopback && `on the loopback fallback: ${loopback}`

/** A TCP connection from inside `from` to address:port (python: present wherever libtorrent is). */
async function tcpReachable(from: NetHost, address: string, port: number): Promise<boolean> {
  const script = 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()'
  await runInNs(from, '/usr/bin/python3', ['-c', script, address, String(port)], 10_000)
  return true
}

describe(
  `stock clients as separate hosts (${loopback ? `loopback fallback: ${loopback}` : 'network namespaces'})`,
  { timeout: 150_000 },
  () => {
    const res = new Resources()
    let lan: Lan
    let data: Buffer
    let torrentUrl: string
    let work: string

    before(async () => {
      // Host 0: origin; hosts 1–4: one client each, all downloading at once.
      lan = await createLan({ hosts: 1 + CLIENT_KINDS.length, uplinkMbit: { 0: UPLINK_MBIT }, tag: 'smoke' })
      res.defer(`destroy ${lan.name}`, () => lan.destroy())
      const origin = lan.hosts[0]!
      const root = await res.tempDir('gribswarm-netns-origin-')
      work = await res.tempDir('gribswarm-netns-clients-')
      data = randomBytes(SIZE)
      await writeFile(join(root, NAME), data)
      const server = await startNsNginx(res, origin, root)
      const pieceLength = pieceLengthFor(SIZE, 100)
      const hasher = new PieceHasher(pieceLength)
      hasher.update(data)
      // No tracker: the web seed is the only source.
      const built = buildTorrent({
        name: NAME,
        length: SIZE,
        pieceLength,
        pieces: hasher.digest(),
        announce: [],
        webSeeds: [`${server.url}/${NAME}`],
        createdBy: 'netns smoke test',
      })
      await writeFile(join(root, `${NAME}.torrent`), built.torrent)
      torrentUrl = `${server.url}/${NAME}.torrent`
    })

    after(() => res.cleanup())

    it('gives each host an address of its own', () => {
      const addresses = lan.hosts.map((h) => h.address)
      assert.equal(new Set(addresses).size, addresses.length)
      for (const address of addresses) assert.match(address, loopback ? /^127\.\d+\.\d+\.\d+$/ : /^10\.\d+\.\d+\.\d+$/)
      assert.equal(lan.loopback, loopback)
    })

    it('caps the origin uplink with tc, and leaks no address into the root namespace', { skip: onlyInNamespaces }, async () => {
      const addresses = lan.hosts.map((h) => h.address)
      const qdisc = await runCommand('tc', ['-n', lan.hosts[0]!.ns!, 'qdisc', 'show', 'dev', 'eth0'])
      assert.match(qdisc, new RegExp(`tbf .*rate ${UPLINK_MBIT}Mbit`), qdisc)
      // The root namespace holds none of these addresses.
      const rootAddresses = await runCommand('ip', ['-4', '-o', 'addr', 'show'])
      for (const address of addresses) assert.ok(!rootAddresses.includes(`${address}/`), `${address} leaked into the root namespace`)
    })

    it('lets hosts reach each other over TCP', async () => {
      const [origin, a, b] = [lan.hosts[0]!, lan.hosts[1]!, lan.hosts[2]!]
      for (const host of [a, b]) await tcpReachable(host, origin.address, portOf(origin, 80)) // nginx
      // A listener in each of two client hosts, dialled from the other one.
      const listen = 'import socket, sys; s = socket.create_server((sys.argv[1], 7000)); print("up", flush=True); s.accept()'
      for (const [server, client] of [
        [a, b],
        [b, a],
      ] as const) {
        const handle = startInNs(res, server, '/usr/bin/python3', ['-c', listen, server.address])
        await waitFor(`a listener on ${server.address}:7000 in ${server.name}`, () => handle.stdout.includes('up'), 10_000)
        assert.ok(await tcpReachable(client, server.address, 7000))
        await handle.stop(2000)
      }
    })

    it('has every stock client complete the file from the web seed, byte for byte', async () => {
      const clients = await Promise.all(CLIENT_KINDS.map((kind, i) => startNsClient(res, kind, lan.hosts[i + 1]!, work)))
      await Promise.all(clients.map((c) => c.add(torrentUrl)))
      await Promise.all(
        clients.map(async (client) => {
          const where = `${client.name} in ${client.host.name} (${client.host.address})`
          const done = await waitFor(
            `${where} to complete ${NAME}`,
            async () => {
              const p = await client.progress()
              return p.done ? p : undefined
            },
            60_000,
            200,
          )
          assert.equal(done.size, SIZE, `${where}: size`)
          assert.equal(done.have, SIZE, `${where}: bytes verified`)
          if (client.kind === 'libtorrent')
            assert.ok((done.webSeedDownloaded ?? 0) > 0, `${where}: nothing counted from the web seed: ${JSON.stringify(done)}`)
          // Transmission renames its .part file on completion: wait for the final name.
          const file = join(client.downloadDir, NAME)
          await waitFor(
            `${where}: ${file} complete on disk`,
            async () => (await readFile(file).catch(() => Buffer.alloc(0))).equals(data),
            10_000,
            100,
          )
          process.stderr.write(`# ${where}: ${JSON.stringify(done)}\n`)
        }),
      )
    })

    it('removes every namespace it made on destroy', { skip: onlyInNamespaces }, async () => {
      await res.cleanup() // stops the clients and servers, then destroys the LAN
      const left = await runCommand('ip', ['netns', 'list'])
      for (const ns of [lan.hub!, ...lan.hosts.map((h) => h.ns!)]) assert.ok(!left.includes(ns), `${ns} is still there:\n${left}`)
      await lan.destroy() // idempotent
    })
  },
)
