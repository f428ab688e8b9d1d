// Stock BitTorrent clients as separate hosts (network namespaces, netns.ts) against the real
// daemon in a namespace of its own whose uplink tc caps for BitTorrent and HTTP together, as a
// VPS has: the torrent as published, web seed included, each client at its defaults. Where
// namespaces cannot be made (not root), on the loopback fallback, saying so: the daemon's own
// uplink budget stands in for tc, and Transmission, which never dials peers in 127.0.0.0/8,
// is left out.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { before, test } from 'node:test'
import { daemonCommand, type DaemonCommand } from '../kit/daemon.ts'
import { Resources } from '../kit/resources.ts'
import { createLan, netnsUnavailable, type Lan } from '../kit/netns.ts'
import { startNsClient, type ClientKind, type NsClient } from '../kit/ns-clients.ts'
import { prepareNsOrigin, startNsOrigin, type NsOriginSetup } from '../kit/ns-origin.ts'
import { fixture, onCleanup, tempDir, waitFor } from '../kit/helpers.ts'

const loopback = await netnsUnavailable()
/** On loopback, Transmission would take everything from the web seed: it never dials a peer there. */
const SWARM: ClientKind[] = loopback ? ['libtorrent', 'qbittorrent', 'aria2'] : ['libtorrent', 'qbittorrent', 'transmission', 'aria2']
const where = loopback ? ` (loopback fallback without Transmission: ${loopback})` : ''
const UPLINK_MBIT = 80
let res: Resources
let command: DaemonCommand
let file: string
let data: Buffer

before(async () => {
  res = new Resources()
  onCleanup(() => res.cleanup())
  command = await daemonCommand(res, 'tsx')
  file = await fixture('webseed-clients.grib2', { seed: 90, bands: 8, repeat: 3 })
  data = await readFile(file)
})

async function lan(hosts: number): Promise<Lan> {
  const made = await createLan({ hosts, uplinkMbit: { 0: UPLINK_MBIT }, tag: 'ws' })
  // Registered before the processes inside it, so undone after them.
  res.defer(`remove the namespaces of ${made.name}`, () => made.destroy())
  return made
}

/** Starts one client per kind on hosts 1.., adds the origin's torrent URL to each, waits for all. */
async function download(origin: NsOriginSetup, network: Lan, kinds: ClientKind[], firstHost = 1): Promise<NsClient[]> {
  const work = await tempDir()
  const clients = await Promise.all(kinds.map((kind, i) => startNsClient(res, kind, network.hosts[firstHost + i]!, work)))
  await Promise.all(clients.map((client) => client.add(origin.torrentUrl)))
  await waitFor(
    `${kinds.join(', ')} to complete ${origin.relPath}`,
    async () => (await Promise.all(clients.map((c) => c.progress()))).every((p) => p.done),
    180_000,
    500,
  )
  for (const client of clients) {
    assert.ok((await readFile(join(client.downloadDir, basename(origin.relPath)))).equals(data), `${client.name}: byte for byte`)
  }
  return clients
}

test(`a swarm of stock clients (${SWARM.join(', ')}) takes the file from peers, the web seed backing off${where}`, async () => {
  const network = await lan(1 + SWARM.length)
  const origin = await startNsOrigin(res, await prepareNsOrigin(res, network.hosts[0]!, { file }), command)
  const clients = await download(origin, network, SWARM)
  const sent = await origin.sent()
  assert.ok(sent.webSeedDeclined > 0, 'web-seed requests were declined while peers could serve')
  // A copy per client left the origin's host; less than half of one came from its web seed.
  assert.ok(sent.webSeed < origin.size / 2, `the web seed sent ${sent.webSeed} bytes of a ${origin.size}-byte file`)
  assert.ok(sent.bittorrent > 0, 'the seeder uploaded')
  const uploaded = await Promise.all(clients.map(async (c) => (await c.progress()).uploaded))
  assert.ok(uploaded.reduce((a, b) => a + b, 0) > origin.size / 2, `the clients uploaded to each other: ${uploaded.join(', ')}`)
  await origin.stop()
})

test(
  'behind the shipped nginx.conf: Transmission gets the file over BitTorrent; with the daemon down, a lone client completes from the web seed',
  { skip: loopback && `needs network namespaces (Transmission never dials peers in 127.0.0.0/8): ${loopback}` },
  async () => {
    const network = await lan(4)
    const origin = await startNsOrigin(res, await prepareNsOrigin(res, network.hosts[0]!, { file, nginx: true }), command)
    await download(origin, network, ['transmission', 'libtorrent'])
    const sent = await origin.sent()
    assert.ok(sent.webSeed < origin.size, `the web seed sent ${sent.webSeed} bytes: less than one copy for two clients`)
    assert.ok(sent.bittorrent >= origin.size / 2, `the seeder uploaded ${sent.bittorrent} bytes`)
    // The seeder goes away with the daemon; nginx serves the web seed from disk, and a client alone completes from it.
    await origin.stop()
    await download(origin, network, ['libtorrent'], 3)
  },
)
