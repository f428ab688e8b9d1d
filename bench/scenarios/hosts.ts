// Scenario "hosts": what the origin sends, and how long its clients wait, when stock
// BitTorrent clients download the torrent exactly as the daemon publishes it (web seed
// included), each at its defaults and on a host of its own: a network namespace (netns.ts),
// the origin in another whose uplink tc caps at 80 Mbit/s for BitTorrent and HTTP together,
// as a VPS has. For each client kind (libtorrent, qbittorrent-nox, transmission-daemon, aria2c)
// and N (8 and 32; 4 in quick mode), N clients of that kind start together. Reference row: the
// same torrent with its url-list removed (no web seed), same run. Plus a lone client with the
// seeder stopped (the daemon down, nginx serving the published tree), against plain HTTP.
// Where namespaces cannot be made (not root), the same on the loopback fallback, saying so:
// the daemon's own uplink budget stands in for tc, and Transmission (which never dials peers in
// 127.0.0.0/8) is left out.
import { readFile, rm, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import bencode from 'bencode'
import { daemonCommand, type DaemonCommand } from '../../test/kit/daemon.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { cpuSeconds } from '../../test/kit/measure.ts'
import { createLan, runInNs, type Lan, type NetHost } from '../../test/kit/netns.ts'
import { CLIENT_KINDS, startNsClient, startNsNginx, type ClientKind, type NsClient } from '../../test/kit/ns-clients.ts'
import { prepareNsOrigin, startNsOrigin, type NsOriginSetup } from '../../test/kit/ns-origin.ts'
import { Resources } from '../../test/kit/resources.ts'
import { waitFor } from '../../test/kit/wait.ts'
import { FIXTURE_CACHE } from '../lib/services.ts'
import { fmtMB, fmtRatio, progress, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const UPLINK_MBIT = 80
const CAP = (UPLINK_MBIT * 1e6) / 8
const [BYTES_TARGET, TIME_TARGET, WEB_SEED_SPEED_TARGET] = [1.2, 1.1, 0.8]
/** Clients started at once: 32 qbittorrent-nox starting together would make the machine, not the swarm, the subject. */
const START_BATCH = 8

type Variant = 'published' | 'no web seed'

interface HostsRun {
  kind: ClientKind
  name: string
  clients: number
  variant: Variant
  /** seconds from the adds to each client's completion, sorted; null: not done by the deadline */
  seconds: Array<number | null>
  bittorrent: number
  http: number
  declined: number
  /** what the clients uploaded, by their own counters */
  clientsUploaded: number
  cpu: { origin: number; wall: number }
}

const last = (run: HostsRun) => (run.seconds.every((s) => s !== null) ? Math.max(...(run.seconds as number[])) : undefined)

async function startClients(res: Resources, kind: ClientKind, hosts: NetHost[], dir: string): Promise<NsClient[]> {
  const clients: NsClient[] = []
  for (let i = 0; i < hosts.length; i += START_BATCH) {
    clients.push(...(await Promise.all(hosts.slice(i, i + START_BATCH).map((host) => startNsClient(res, kind, host, dir)))))
  }
  return clients
}

/** N clients of one kind start together on `torrentUrl`; a fresh daemon serves it (fresh counters, tracker and swarm). */
async function swarmRun(
  lan: Lan,
  setup: NsOriginSetup,
  command: DaemonCommand,
  kind: ClientKind,
  clients: number,
  variant: Variant,
  torrentUrl: string,
  timeoutS: number,
): Promise<HostsRun> {
  const scoped = new Resources({ report: progress })
  try {
    const origin = await startNsOrigin(scoped, setup, command)
    const dir = await scoped.tempDir('gribswarm-bench-hosts-')
    const peers = await startClients(scoped, kind, lan.hosts.slice(1, clients + 1), dir)
    progress(`hosts: ${clients} × ${peers[0]!.name}, torrent ${variant}`)
    const before = await origin.sent()
    const cpuBefore = (await cpuSeconds(origin.pid)) ?? 0
    const started = performance.now()
    const seconds: Array<number | null> = peers.map(() => null)
    await Promise.all(peers.map((peer) => peer.add(torrentUrl)))
    await waitFor(
      `${clients} ${kind} clients to complete (${variant})`,
      async () => {
        const states = await Promise.all(peers.map((peer, i) => (seconds[i] === null ? peer.progress() : undefined)))
        states.forEach((state, i) => state?.done && (seconds[i] = (performance.now() - started) / 1000))
        return seconds.every((s) => s !== null)
      },
      timeoutS * 1000,
      250,
    ).catch((err: Error) => progress(`hosts: ${err.message}`))
    const wall = (performance.now() - started) / 1000
    // qBittorrent's counters lag by its refresh interval: one more before they are read.
    await delay(Math.max(...peers.map((p) => p.statsLagMs)) + 500)
    const after = await origin.sent()
    const uploaded = (await Promise.all(peers.map((peer) => peer.progress()))).reduce((sum, p) => sum + p.uploaded, 0)
    const cpu = ((await cpuSeconds(origin.pid)) ?? 0) - cpuBefore
    return {
      kind,
      name: peers[0]!.name,
      clients,
      variant,
      seconds: seconds.sort((a, b) => (a ?? Infinity) - (b ?? Infinity)),
      bittorrent: after.bittorrent - before.bittorrent,
      http: after.http + after.webSeed - before.http - before.webSeed,
      declined: after.webSeedDeclined - before.webSeedDeclined,
      clientsUploaded: uploaded,
      cpu: { origin: cpu, wall },
    }
  } finally {
    await scoped.cleanup()
  }
}

/** The published .torrent without its url-list, served from the origin's host on another port. */
async function strippedTorrent(res: Resources, setup: NsOriginSetup): Promise<string> {
  const meta = bencode.decode(await readFile(join(setup.dataDir, 'pub', `${setup.relPath}.torrent`)))
  delete meta['url-list']
  const dir = await res.tempDir('gribswarm-bench-stripped-')
  const name = `${basename(setup.relPath)}.torrent`
  await writeFile(join(dir, name), bencode.encode(meta))
  const server = await startNsNginx(res, setup.host, dir, 8000)
  return `${server.url}/${encodeURIComponent(name)}`
}

/** A lone libtorrent client with the daemon down, against curl, both from one host through the shipped nginx.conf. */
async function webSeedOnly(res: Resources, lan: Lan, file: string, command: DaemonCommand, timeoutS: number) {
  const setup = await prepareNsOrigin(res, lan.hosts[0]!, { file, nginx: true })
  const origin = await startNsOrigin(res, setup, command)
  await origin.stop()
  const host = lan.hosts[1]!
  const dir = await res.tempDir('gribswarm-bench-webseed-')
  const client = await startNsClient(res, 'libtorrent', host, dir)
  const started = performance.now()
  await client.add(setup.torrentUrl)
  await waitFor('a lone libtorrent client to complete from the web seed', async () => (await client.progress()).done, timeoutS * 1000, 100)
  const webSeedSeconds = (performance.now() - started) / 1000
  await client.stop()
  const url = setup.torrentUrl.replace(/\.torrent$/, '')
  const httpStarted = performance.now()
  await runInNs(host, 'curl', ['-s', '-S', '-f', '-o', join(dir, 'plain'), url], timeoutS * 1000)
  const httpSeconds = (performance.now() - httpStarted) / 1000
  await rm(dir, { recursive: true, force: true })
  return { webSeedSeconds, httpSeconds, size: setup.size }
}

export async function benchHosts({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const counts = quick ? [4] : [8, 32]
  const [bands, repeat] = quick ? [8, 3] : [8, 20] // ~14 MB or ~93 MB of CCSDS GRIB2
  const file = await fixtureFor(FIXTURE_CACHE, `arpege-ccsds-b${bands}-r${repeat}.grib2`, { bands, repeat })
  const lan = await createLan({ hosts: Math.max(...counts) + 1, uplinkMbit: { 0: UPLINK_MBIT }, tag: 'bench' })
  res.defer(`remove the namespaces of ${lan.name}`, () => lan.destroy())
  const kinds = (quick ? (['libtorrent', 'transmission'] as const) : CLIENT_KINDS).filter(
    (kind) => !lan.loopback || kind !== 'transmission',
  )
  const command = await daemonCommand(res, quick ? 'tsx' : undefined)
  const setup = await prepareNsOrigin(res, lan.hosts[0]!, { file })
  const stripped = await strippedTorrent(res, setup)
  const ideal = setup.size / CAP
  const timeoutS = Math.ceil(Math.max(120, 20 * ideal))

  const runs: HostsRun[] = []
  for (const clients of counts) {
    for (const kind of kinds) {
      for (const [variant, url] of [
        ['published', setup.torrentUrl],
        ['no web seed', stripped],
      ] as const) {
        const run = await swarmRun(lan, setup, command, kind, clients, variant, url, timeoutS)
        progress(
          `hosts: N=${clients} ${kind} ${variant}: origin sent ${fmtRatio((run.bittorrent + run.http) / setup.size)} the file (${fmtMB(run.http)} over HTTP), last client ${last(run)?.toFixed(1) ?? 'not done'} s`,
        )
        runs.push(run)
      }
    }
  }
  const lone = await webSeedOnly(res, lan, file, command, timeoutS)
  return report(runs, lone, setup.size, ideal, quick, lan.loopback)
}

function report(
  runs: HostsRun[],
  lone: { webSeedSeconds: number; httpSeconds: number; size: number },
  size: number,
  ideal: number,
  quick: boolean,
  loopback: string | undefined,
): ScenarioResult {
  const rows: Row[] = []
  const notes: string[] = []
  for (const published of runs.filter((r) => r.variant === 'published')) {
    const reference = runs.find((r) => r.variant === 'no web seed' && r.kind === published.kind && r.clients === published.clients)!
    const setting = loopback
      ? `N = ${published.clients} ${published.name} clients on loopback (fallback), ${fmtMB(size)}, origin uplink ${UPLINK_MBIT} Mbit/s (its own budget)`
      : `N = ${published.clients} ${published.name} clients as separate hosts, ${fmtMB(size)}, origin uplink ${UPLINK_MBIT} Mbit/s (tc)`
    const bytes = (run: HostsRun) => (run.bittorrent + run.http) / size
    rows.push({
      scenario: `Origin bytes (BitTorrent + HTTP) / file, torrent as published (${setting})`,
      gribswarm: `${fmtRatio(bytes(published))} (HTTP ${fmtRatio(published.http / size)})`,
      reference: `${fmtRatio(bytes(reference))} without the web seed`,
      ratio: fmtRatio(bytes(published) / bytes(reference)),
      target: `≤ ${BYTES_TARGET}×`,
      met: bytes(published) <= BYTES_TARGET ? 'yes' : 'no',
    })
    const [ours, theirs] = [last(published), last(reference)]
    rows.push({
      scenario: `Last client done, torrent as published (${setting})`,
      gribswarm: ours === undefined ? 'not all done' : `${ours.toFixed(1)} s = ${fmtRatio(ours / ideal)} file/cap`,
      reference: theirs === undefined ? 'not all done' : `${theirs.toFixed(1)} s without the web seed`,
      ratio: ours !== undefined && theirs !== undefined ? fmtRatio(ours / theirs) : 'n/a',
      target: `≤ ${TIME_TARGET}× without the web seed`,
      met: ours !== undefined && (theirs === undefined || ours / theirs <= TIME_TARGET) ? 'yes' : 'no',
    })
  }
  const speed = lone.httpSeconds / lone.webSeedSeconds
  rows.push({
    scenario: `A lone libtorrent client, seeder stopped (daemon down, nginx serves the published tree), ${fmtMB(lone.size)} from the web seed`,
    gribswarm: `${lone.webSeedSeconds.toFixed(1)} s`,
    reference: `curl over plain HTTP ${lone.httpSeconds.toFixed(1)} s`,
    ratio: `${fmtRatio(speed)} the speed`,
    target: `≥ ${WEB_SEED_SPEED_TARGET}× the speed`,
    met: speed >= WEB_SEED_SPEED_TARGET ? 'yes' : 'no',
  })
  if (loopback)
    notes.push(
      `Hosts: on the loopback fallback (${loopback}): each host an address of its own in 127.0.0.0/8 and ports of its own, the origin's uplink capped by the daemon's own budget (uplink.bytesPerSec) instead of tc, so plain HTTP from nginx is not capped, and Transmission left out (it never dials peers in 127.0.0.0/8).`,
    )
  const hosts = loopback
    ? `each client and the origin (the daemon as npm start runs it, default settings: super-seeding, web-seed fallback) at an address of their own on loopback, the origin's uplink capped at ${UPLINK_MBIT} Mbit/s by its own budget. `
    : `each client in a network namespace of its own, with an address of its own, routed by a hub namespace; the origin (the daemon as npm start runs it, default settings: super-seeding, web-seed fallback, no uplink budget of its own) in another, its uplink capped at ${UPLINK_MBIT} Mbit/s by tc tbf for BitTorrent and HTTP together. `
  notes.push(
    `Hosts, how: ${hosts}` +
      `Clients at their defaults except no DHT, LSD, UPnP or NAT-PMP (a closed network); they add the torrent by its URL (the published .torrent, or the same without url-list), start within a second of each other, and keep seeding until the last is done. ` +
      `A fresh daemon per run (fresh counters, tracker and swarm); origin bytes from its /api/status (BitTorrent upload of the file + HTTP data and web-seed bytes). Ideal = file / cap = ${ideal.toFixed(1)} s.`,
    'Hosts, per run: ' +
      runs
        .map(
          (r) =>
            `N=${r.clients} ${r.kind} (${r.variant}): done ${r.seconds.filter((s) => s !== null).length}/${r.clients}, ` +
            `last ${last(r)?.toFixed(1) ?? '-'} s; origin BitTorrent ${fmtMB(r.bittorrent)}, HTTP ${fmtMB(r.http)}, ${r.declined} web-seed requests left to peers; ` +
            `clients uploaded ${fmtMB(r.clientsUploaded)} to each other; origin CPU ${r.cpu.origin.toFixed(1)} s in ${r.cpu.wall.toFixed(1)} s`,
        )
        .join('; ') +
      '.',
  )
  if (quick)
    notes.push(
      'Hosts (quick mode): N = 4, libtorrent and transmission only, a 14 MB file; the full mode runs the four client kinds at N = 8 and 32 on 93 MB.',
    )
  return { rows, notes }
}
