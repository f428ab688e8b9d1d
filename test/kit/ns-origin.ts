// The gribswarm origin as one host of a Lan (netns.ts): the real daemon, started as `npm start`
// does, inside host 0's namespace, alone or behind the shipped nginx.conf, seeding a file that
// the pipeline published with this host's public address in its torrent (tracker, web seed).
// The tests and the benchmark give its torrents to stock clients in the other namespaces, as
// published, and read what it sent from its own /api/status.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfig } from '../../src/config.ts'
import { openPipeline, type StatusReport } from '../../src/daemon.ts'
import { silentLogger } from '../../src/log.ts'
import { mergeSections } from './config.ts'
import { startCli, type DaemonCommand } from './daemon.ts'
import { arpegeKey, FakeUpstream } from './fake-upstream.ts'
import { daemonInNs, nsHttp, openBridge, portOf, type NetHost } from './netns.ts'
import { startNginxFront } from './nginx-front.ts'
import type { Resources } from './resources.ts'
import { waitFor } from './wait.ts'

/** The origin's ports in its namespace; portOf moves them on a loopback Lan, where they are the only ones of theirs on any address. */
const PORTS = { http: 80, daemonBehindNginx: 8080, tracker: 6969, peer: 51413 } as const

/**
 * Where the tracker listens. On loopback, its own address: a UDP socket bound to every address
 * answers from 127.0.0.1 whatever address it was asked at, and libtorrent drops an answer from
 * another address than it asked, so every announce waited 10 s for its HTTP fallback, past the
 * web seed's hold.
 */
const trackerHost = (host: NetHost) => (host.ns ? '0.0.0.0' : host.address)

export interface NsOriginOptions {
  /** the GRIB2 file to publish, as upstream serves it */
  file: string
  /** the daemon's configuration sections, merged over the ones made here (uplink, webSeed, seed ...) */
  config?: Record<string, Record<string, unknown>>
  /** the shipped nginx.conf in front of the daemon, which then sends its bytes by X-Accel-Redirect */
  nginx?: boolean
}

/** A data directory with the file published for `host`, and the daemon's config file for it. */
export interface NsOriginSetup {
  host: NetHost
  nginx: boolean
  dataDir: string
  configPath: string
  daemonPort: number
  /** the published file */
  relPath: string
  size: number
  infoHash: string
  /** its .torrent, as its feeds give it to clients */
  torrentUrl: string
}

export interface NsOrigin extends NsOriginSetup {
  pid: number
  status(): Promise<StatusReport>
  /** what the origin sent of the file so far, by its own counters */
  sent(): Promise<{ bittorrent: number; http: number; webSeed: number; webSeedDeclined: number }>
  /** the end of the daemon's log (stderr), for error messages */
  logTail(): string
  stop(): Promise<void>
}

/**
 * Publishes `file` into a fresh data directory with the pipeline (fetched from a local upstream
 * on loopback, validated, torrent made), as the origin at `host` would have, and writes the
 * daemon's configuration: source passes off (the upstream is not reachable from there).
 */
export async function prepareNsOrigin(res: Resources, host: NetHost, options: NsOriginOptions): Promise<NsOriginSetup> {
  const dir = await res.tempDir('gribswarm-ns-origin-')
  const dataDir = join(dir, 'data')
  const httpPort = portOf(host, PORTS.http)
  const publicBaseUrl = `http://${host.address}${httpPort === 80 ? '' : `:${httpPort}`}`
  const nginx = options.nginx ?? false
  const daemonPort = nginx ? portOf(host, PORTS.daemonBehindNginx) : httpPort
  const origin = {
    source: { enabled: false },
    tracker: { enabled: true, host: trackerHost(host), port: portOf(host, PORTS.tracker) },
    seed: { port: portOf(host, PORTS.peer), dht: false },
    http: nginx
      ? { host: '127.0.0.1', port: daemonPort, publicBaseUrl, trustProxy: true, accelRedirect: '/_published/' }
      : { host: '0.0.0.0', port: daemonPort, publicBaseUrl },
    disk: { budgetBytes: 100_000_000_000, minFreeBytes: 0 },
    log: { level: 'warn' },
    // Without tc (loopback), the daemon's own budget caps its uplink, BitTorrent and HTTP together.
    ...(host.unshapedUplinkMbit ? { uplink: { bytesPerSec: (host.unshapedUplinkMbit * 1_000_000) / 8 } } : {}),
  }
  const sections = mergeSections(origin, options.config ?? {})
  const item = await publish(dataDir, options.file, sections)
  const configPath = join(dir, 'config.json')
  await writeFile(configPath, JSON.stringify({ dataDir, ...sections }, null, 2))
  const { relPath, size, infoHash } = item
  return { host, nginx, dataDir, configPath, daemonPort, relPath, size, infoHash, torrentUrl: `${publicBaseUrl}/data/${relPath}.torrent` }
}

/** Starts the daemon on a prepared data directory inside its host, as `npm start` does, and nginx in front if asked. */
export async function startNsOrigin(res: Resources, setup: NsOriginSetup, command: DaemonCommand): Promise<NsOrigin> {
  const { host, daemonPort } = setup
  const daemon = startCli(res, command, [], {
    env: { GRIBSWARM_CONFIG: setup.configPath },
    wrap: (cmd, args) => daemonInNs(host, cmd, args),
  })
  const bridge = await openBridge(res, host, '127.0.0.1', daemonPort)
  const status = async () => {
    if (daemon.child.exitCode !== null || daemon.child.signalCode !== null)
      throw new Error(`the daemon in ${host.name} exited: ${daemon.stderr.slice(-2000)}`)
    const response = await nsHttp(bridge, { path: '/api/status' })
    if (response.status !== 200) throw new Error(`/api/status in ${host.name}: HTTP ${response.status}`)
    return JSON.parse(response.body.toString('utf8')) as StatusReport
  }
  await waitFor(`the daemon in ${host.name} to seed ${setup.relPath}`, async () => (await status()).seeder.torrents === 1, 120_000, 200)
  if (setup.nginx) {
    const httpPort = portOf(host, PORTS.http)
    const front = await openBridge(res, host, host.address, httpPort)
    await startNginxFront(res, {
      listen: `${host.address}:${httpPort}`,
      httpPort: daemonPort,
      trackerPort: portOf(host, PORTS.tracker),
      trackerHost: host.ns ? undefined : trackerHost(host),
      pubDir: join(setup.dataDir, 'pub'),
      wrap: (cmd, args) => daemonInNs(host, cmd, args),
      ready: async () => (await nsHttp(front, { path: '/health' })).status === 200,
    })
    await front.close()
  }
  const sent = async () => {
    const s = await status()
    const file = s.items.find((i) => i.infoHash === setup.infoHash)
    return {
      bittorrent: file?.uploaded ?? 0,
      http: s.http.dataBytes,
      webSeed: s.http.webSeedBytes,
      webSeedDeclined: s.http.webSeedDeclined,
    }
  }
  return {
    ...setup,
    pid: daemon.child.pid!,
    status,
    sent,
    logTail: () => daemon.stderr,
    stop: async () => {
      await daemon.stop(10_000)
      await bridge.close()
    },
  }
}

/** One pass of the real pipeline, in this process, over a local upstream serving `file`. */
async function publish(dataDir: string, file: string, sections: Record<string, Record<string, unknown>>) {
  const run = '2026-11-23T00:00:00Z'
  const upstream = new FakeUpstream()
  await upstream.start()
  try {
    await upstream.put({ key: arpegeKey({ run, grid: '01', pkg: 'SP1', range: '000H012H' }), path: file })
    const config = loadConfig({
      env: {},
      overrides: {
        ...sections,
        dataDir,
        source: {
          enabled: true,
          bucketUrl: upstream.bucketUrl,
          fallbackBucketUrls: [],
          packages: ['SP1'],
          ranges: ['000H012H'],
          lookbackRuns: 1,
        },
      },
    })
    const { pipeline, store, unlock } = await openPipeline(config, silentLogger)
    try {
      const report = await pipeline.runPass({ runs: [run] })
      const item = store.list()[0]
      if (!item) throw new Error(`publishing ${file} for the origin failed: ${JSON.stringify(report.failed)}`)
      return item
    } finally {
      await unlock()
    }
  } finally {
    await upstream.stop()
  }
}
