// Stock BitTorrent clients from Debian as hosts of a Lan (netns.ts), each in its host's network
// namespace, with one interface: add a .torrent by URL, read progress by the client's own
// counters, stop. Each runs at its defaults except what a closed test network needs: no DHT, no
// local peer discovery, no UPnP/NAT-PMP; its RPC or Web UI bound to 127.0.0.1 inside the
// namespace (reached from the root namespace through a unix-socket bridge); downloads under the
// caller's work directory. uTP, encryption, PEX and web seeds stay as shipped, and the
// torrent's url-list is used as it is. One client of each kind per host (fixed ports).
// On a loopback Lan, each binds its host's 127.x address instead, on the host's ports (portOf).
// Plus nginx as a plain HTTP origin inside a host.
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { daemonInNs, localAddress, nsHttp, openBridge, portOf, startInNs, type Bridge, type NetHost, type NsRequest } from './netns.ts'
import { LT_SCRIPTS } from './peers.ts'
import type { ChildHandle, Resources } from './resources.ts'
import { runNginx, writeQbittorrentProfile, writeTransmissionSettings } from './stock-tools.ts'
import { waitFor } from './wait.ts'

export type ClientKind = 'libtorrent' | 'qbittorrent' | 'transmission' | 'aria2'
export const CLIENT_KINDS: readonly ClientKind[] = ['libtorrent', 'qbittorrent', 'transmission', 'aria2']

export interface ClientProgress {
  /** every torrent added is complete and verified */
  done: boolean
  /** bytes verified */
  have: number
  /** bytes wanted in total */
  size: number
  /** payload bytes uploaded */
  uploaded: number
  /** payload bytes downloaded (aria2: its completed length; it has no separate counter) */
  downloaded: number
  /** payload bytes from web seeds, for the clients that count them apart (libtorrent) */
  webSeedDownloaded?: number
}

export interface NsClient {
  kind: ClientKind
  host: NetHost
  /** e.g. 'transmission-daemon 3.00' */
  name: string
  pid: number
  /** where the downloaded files land */
  downloadDir: string
  /** how long its counters may lag behind the transfer (qBittorrent refreshes them on a timer) */
  statsLagMs: number
  /** Adds the torrent given as a URL of the .torrent (http://10.x.../x.torrent) and starts downloading. */
  add(torrentUrl: string): Promise<void>
  /** Summed over the torrents added, by the client's own counters. */
  progress(): Promise<ClientProgress>
  stop(): Promise<void>
}

/** Each client's ports inside its namespace: the tool's defaults (qBittorrent's peer port is random unless set). */
const PORTS = {
  libtorrentPeer: 6881,
  qbittorrentWebUi: 8080,
  qbittorrentPeer: 8999,
  transmissionRpc: 9091,
  transmissionPeer: 51413,
  aria2Rpc: 6800,
  aria2Peer: 6881,
} as const

const tail = (text: string, max = 2000) => (text.length > max ? `…${text.slice(-max)}` : text)

/** A client that must still be running while we talk to it: its exit ends the wait, with its stderr. */
function ensureRunning(what: string, handle: ChildHandle, extra = ''): void {
  if (handle.child.exitCode !== null || handle.child.signalCode !== null) {
    throw new Error(`${what} exited (${handle.child.exitCode ?? handle.child.signalCode}): ${tail(handle.stderr || handle.stdout)}${extra}`)
  }
}

/** One request whose status must be 2xx; the error names the client, host and path. */
async function call(what: string, endpoint: Bridge | { socketPath: string }, req: NsRequest): Promise<Buffer> {
  const response = await nsHttp(endpoint, req)
  if (response.status < 200 || response.status > 299) {
    throw new Error(`${what}: ${req.method ?? 'GET'} ${req.path}: HTTP ${response.status} ${tail(response.body.toString('utf8'), 500)}`)
  }
  return response.body
}

/**
 * Starts `kind` inside `host`'s namespace, its configuration and downloads under
 * workDir/<kind>-<namespace>/ (so clients may share one workDir), and waits until it answers.
 */
export async function startNsClient(res: Resources, kind: ClientKind, host: NetHost, workDir: string): Promise<NsClient> {
  const dir = join(workDir, `${kind}-${host.ns ?? host.address}`)
  const downloadDir = join(dir, 'downloads')
  await mkdir(downloadDir, { recursive: true })
  switch (kind) {
    case 'libtorrent':
      return startLibtorrent(res, host, downloadDir)
    case 'qbittorrent':
      return startQbittorrent(res, host, dir, downloadDir)
    case 'transmission':
      return startTransmission(res, host, dir, downloadDir)
    case 'aria2':
      return startAria2(res, host, dir, downloadDir)
  }
}

/** lt-host.py: libtorrent at its defaults minus DHT/LSD/UPnP/NAT-PMP, driven over its own unix socket (no bridge needed). */
async function startLibtorrent(res: Resources, host: NetHost, downloadDir: string): Promise<NsClient> {
  // A short path of its own: unix socket paths are limited to 107 bytes.
  const socketPath = join(await res.tempDir('gribswarm-lthost-'), 'sock')
  // On loopback: its own address for listening and for dialling out, so that peers tell the clients apart.
  const listen = host.ns ? [] : [`${host.address}:${portOf(host, PORTS.libtorrentPeer)}`]
  const handle = startInNs(res, host, '/usr/bin/python3', [LT_SCRIPTS.host, socketPath, downloadDir, ...listen])
  const what = `libtorrent (lt-host.py) in ${host.name}`
  const ready = await waitFor(
    `${what} to listen on ${socketPath}`,
    () => {
      ensureRunning(what, handle)
      const first = handle.stdout.split('\n')[0]
      return first && handle.stdout.includes('\n') ? (JSON.parse(first) as { version: string }) : undefined
    },
    30_000,
    50,
  )
  const endpoint = { socketPath, where: host.name, target: 'lt-host' }
  return {
    kind: 'libtorrent',
    host,
    name: `libtorrent ${ready.version.replace(/\.0$/, '')}`,
    pid: handle.child.pid!,
    downloadDir,
    statsLagMs: 0,
    async add(torrentUrl) {
      ensureRunning(what, handle)
      await call(what, endpoint, {
        method: 'POST',
        path: '/add',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: torrentUrl }),
        timeoutMs: 40_000,
      })
    },
    async progress() {
      ensureRunning(what, handle)
      const s = JSON.parse((await call(what, endpoint, { path: '/status' })).toString('utf8')) as ClientProgress & { errors: string[] }
      if (s.errors.length) throw new Error(`${what}: torrent error: ${s.errors.join('; ')}`)
      return {
        done: s.done,
        have: s.have,
        size: s.size,
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        webSeedDownloaded: s.webSeedDownloaded,
      }
    },
    stop: () => handle.stop(5000),
  }
}

/**
 * qbittorrent-nox with a qBittorrent.conf of ours: legal notice accepted (else it asks on the
 * terminal), Web UI on 127.0.0.1:8080 without login from localhost, no DHT, LSD or UPnP/NAT-PMP.
 * Peers on every interface and its own default (random) port.
 */
async function startQbittorrent(res: Resources, host: NetHost, dir: string, downloadDir: string): Promise<NsClient> {
  const profile = join(dir, 'profile')
  const webPort = portOf(host, PORTS.qbittorrentWebUi)
  const peers = host.ns ? [] : [`Session\\Port=${portOf(host, PORTS.qbittorrentPeer)}`, `Session\\InterfaceAddress=${host.address}`]
  await writeQbittorrentProfile(profile, { webPort, webAddress: localAddress(host), savePath: downloadDir, bittorrent: peers })
  const handle = startInNs(res, host, 'qbittorrent-nox', [`--profile=${profile}`, `--webui-port=${webPort}`])
  const what = `qbittorrent-nox in ${host.name}`
  const logTail = async () =>
    `\nqbittorrent.log: ${tail(await readFile(join(profile, 'qBittorrent', 'data', 'logs', 'qbittorrent.log'), 'utf8').catch(() => ''))}`
  const bridge = await openBridge(res, host, localAddress(host), webPort)
  const api = (path: string, req: Omit<NsRequest, 'path'> = {}) => call(what, bridge, { ...req, path: `/api/v2/${path}` })
  const version = await waitFor(
    `${what}: its Web API on ${bridge.target}`,
    async () => {
      ensureRunning(what, handle, await logTail())
      return (await api('app/version')).toString('utf8').trim()
    },
    30_000,
    100,
  )

  interface TorrentInfo {
    state: string
    completed: number
    size: number
    amount_left: number
    uploaded: number
    downloaded: number
  }
  const infos = async () => JSON.parse((await api('torrents/info')).toString('utf8')) as TorrentInfo[]
  const seeding = new Set(['uploading', 'stalledUP', 'queuedUP', 'forcedUP', 'pausedUP'])
  let added = 0
  return {
    kind: 'qbittorrent',
    host,
    name: `qbittorrent-nox ${version.replace(/^v/, '')}`,
    pid: handle.child.pid!,
    downloadDir,
    // It refreshes torrent statistics from libtorrent every 1.5 s (its default); `downloaded` can read 0 when done.
    statsLagMs: 1500,
    async add(torrentUrl) {
      const answer = (
        await api('torrents/add', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ urls: torrentUrl }).toString(),
        })
      )
        .toString('utf8')
        .trim()
      if (answer !== 'Ok.') throw new Error(`${what} refused ${torrentUrl}: ${answer}`)
      added++
      // It fetches the URL in the background: the torrent shows up once that worked.
      await waitFor(
        `${what} to fetch ${torrentUrl}`,
        async () => {
          ensureRunning(what, handle, await logTail())
          return (await infos()).length >= added
        },
        30_000,
        100,
      ).catch(async (err: Error) => {
        throw new Error(`${err.message}${await logTail()}`)
      })
    },
    async progress() {
      ensureRunning(what, handle)
      const torrents = await infos()
      const broken = torrents.find((t) => t.state === 'error' || t.state === 'missingFiles')
      if (broken) throw new Error(`${what}: torrent state ${broken.state}${await logTail()}`)
      return {
        done: torrents.length > 0 && torrents.every((t) => t.amount_left === 0 && seeding.has(t.state)),
        have: sum(torrents, (t) => t.completed),
        size: sum(torrents, (t) => t.size),
        uploaded: sum(torrents, (t) => t.uploaded),
        downloaded: sum(torrents, (t) => t.downloaded),
      }
    },
    async stop() {
      await handle.stop(10_000)
      await bridge.close()
    },
  }
}

/**
 * transmission-daemon, foreground, with a settings.json of ours: RPC on 127.0.0.1:9091 (whitelist
 * 127.0.0.1, no authentication), no DHT, LPD or port forwarding, peer port 51413 (its default)
 * on every interface. It fetches .torrent URLs itself.
 */
async function startTransmission(res: Resources, host: NetHost, dir: string, downloadDir: string): Promise<NsClient> {
  const configDir = join(dir, 'config')
  const rpcPort = portOf(host, PORTS.transmissionRpc)
  const extra = host.ns ? {} : { 'bind-address-ipv4': host.address, 'bind-address-ipv6': '::1' }
  await writeTransmissionSettings(configDir, {
    rpcPort,
    rpcAddress: localAddress(host),
    peerPort: portOf(host, PORTS.transmissionPeer),
    downloadDir,
    extra,
  })
  const handle = startInNs(res, host, 'transmission-daemon', ['-f', '-g', configDir])
  const what = `transmission-daemon in ${host.name}`
  const bridge = await openBridge(res, host, localAddress(host), rpcPort)
  const rpc = transmissionRpc(what, bridge)
  const session = await waitFor(
    `${what}: its RPC on ${bridge.target}`,
    () => {
      ensureRunning(what, handle)
      return rpc('session-get')
    },
    30_000,
    100,
  )

  interface TorrentState {
    id: number
    error: number
    errorString: string
    haveValid: number
    sizeWhenDone: number
    leftUntilDone: number
    uploadedEver: number
    downloadedEver: number
    status: number
  }
  const ids: number[] = []
  return {
    kind: 'transmission',
    host,
    name: `transmission-daemon ${String(session.version ?? '').split(' ')[0]}`,
    pid: handle.child.pid!,
    downloadDir,
    statsLagMs: 0,
    async add(torrentUrl) {
      // The answer waits until it has fetched and parsed the .torrent.
      const added = await rpc('torrent-add', { filename: torrentUrl, paused: false })
      const entry = (added['torrent-added'] ?? added['torrent-duplicate']) as { id: number } | undefined
      if (!entry) throw new Error(`${what} did not add ${torrentUrl}: ${JSON.stringify(added)}`)
      if (!ids.includes(entry.id)) ids.push(entry.id)
    },
    async progress() {
      ensureRunning(what, handle)
      if (!ids.length) return { done: false, have: 0, size: 0, uploaded: 0, downloaded: 0 }
      const fields = [
        'id',
        'error',
        'errorString',
        'haveValid',
        'sizeWhenDone',
        'leftUntilDone',
        'uploadedEver',
        'downloadedEver',
        'status',
      ]
      const torrents = ((await rpc('torrent-get', { ids, fields })).torrents as TorrentState[] | undefined) ?? []
      // error 3 is a local error (disk, data); 1 and 2 are tracker warnings and errors, not fatal here.
      const broken = torrents.find((t) => t.error === 3)
      if (broken) throw new Error(`${what}: torrent ${broken.id}: ${broken.errorString}`)
      return {
        // status 1–2: checking; 6: seeding.
        done:
          torrents.length === ids.length &&
          torrents.every((t) => t.leftUntilDone === 0 && t.sizeWhenDone > 0 && t.status !== 1 && t.status !== 2),
        have: sum(torrents, (t) => t.haveValid),
        size: sum(torrents, (t) => t.sizeWhenDone),
        uploaded: sum(torrents, (t) => t.uploadedEver),
        downloaded: sum(torrents, (t) => t.downloadedEver),
      }
    },
    async stop() {
      await handle.stop(10_000)
      await bridge.close()
    },
  }
}

/** Transmission's JSON-RPC with its CSRF handshake: the first call gets 409 and the session id to send back. */
function transmissionRpc(what: string, bridge: Bridge) {
  let sessionId = ''
  return async (method: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const response = await nsHttp(bridge, {
        method: 'POST',
        path: '/transmission/rpc',
        headers: { 'content-type': 'application/json', 'x-transmission-session-id': sessionId },
        body: JSON.stringify({ method, arguments: args }),
        timeoutMs: 40_000,
      })
      if (response.status === 409) {
        sessionId = String(response.headers['x-transmission-session-id'] ?? '')
        continue
      }
      const text = response.body.toString('utf8')
      if (response.status !== 200) throw new Error(`${what}: RPC ${method}: HTTP ${response.status} ${tail(text, 500)}`)
      const body = JSON.parse(text) as { result: string; arguments?: Record<string, unknown> }
      if (body.result !== 'success') throw new Error(`${what}: RPC ${method} ${JSON.stringify(args).slice(0, 300)}: ${body.result}`)
      return body.arguments ?? {}
    }
    throw new Error(`${what}: RPC ${method}: no session id after 3 tries`)
  }
}

/**
 * aria2c as an RPC server on 127.0.0.1:6800 (its default: --rpc-listen-all is off), no DHT or LPD
 * (it has no UPnP), no config file read. A .torrent URL is fetched, then followed into the
 * BitTorrent download (a second GID, named in the first one's followedBy). After completion it
 * seeds until its default --seed-ratio=1.0 is reached, then the GID becomes 'complete'.
 */
async function startAria2(res: Resources, host: NetHost, dir: string, downloadDir: string): Promise<NsClient> {
  const rpcPort = portOf(host, PORTS.aria2Rpc)
  const args = [
    '--no-conf',
    '--enable-rpc',
    `--rpc-listen-port=${rpcPort}`,
    `--dir=${downloadDir}`,
    '--enable-dht=false',
    '--enable-dht6=false',
    '--bt-enable-lpd=false',
    // On loopback: every socket on its host's address (the RPC then listens on every address, on its own port).
    ...(host.ns ? [] : [`--interface=${host.address}`, `--listen-port=${portOf(host, PORTS.aria2Peer)}`]),
  ]
  const handle = startInNs(res, host, 'aria2c', args, { cwd: dir })
  const what = `aria2c in ${host.name}`
  const bridge = await openBridge(res, host, '127.0.0.1', rpcPort)
  let nextId = 0
  const rpc = async <T>(method: string, params: unknown[] = []): Promise<T> => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: String(++nextId), method, params })
    const response = await nsHttp(bridge, { method: 'POST', path: '/jsonrpc', headers: { 'content-type': 'application/json' }, body })
    const parsed = JSON.parse(response.body.toString('utf8') || '{}') as { result?: T; error?: { code: number; message: string } }
    if (parsed.error || response.status !== 200)
      throw new Error(`${what}: ${method}: HTTP ${response.status} ${parsed.error ? `${parsed.error.code} ${parsed.error.message}` : ''}`)
    return parsed.result as T
  }
  const version = await waitFor(
    `${what}: its RPC on ${bridge.target}`,
    () => {
      ensureRunning(what, handle)
      return rpc<{ version: string }>('aria2.getVersion')
    },
    30_000,
    100,
  )

  interface Aria2Status {
    gid: string
    status: string
    completedLength: string
    totalLength: string
    uploadLength: string
    followedBy?: string[]
    errorMessage?: string
  }
  const keys = ['gid', 'status', 'completedLength', 'totalLength', 'uploadLength', 'followedBy', 'errorMessage']
  /** What a GID became: the BitTorrent downloads it was followed by, or itself. */
  const resolve = async (gid: string): Promise<Aria2Status[]> => {
    const s = await rpc<Aria2Status>('aria2.tellStatus', [gid, keys])
    if (s.status === 'error') throw new Error(`${what}: GID ${gid}: ${s.errorMessage ?? 'error'}`)
    if (!s.followedBy?.length) return [s]
    return (await Promise.all(s.followedBy.map(resolve))).flat()
  }
  const gids: string[] = []
  return {
    kind: 'aria2',
    host,
    name: `aria2c ${version.version}`,
    pid: handle.child.pid!,
    downloadDir,
    statsLagMs: 0,
    async add(torrentUrl) {
      gids.push(await rpc<string>('aria2.addUri', [[torrentUrl]]))
    },
    async progress() {
      ensureRunning(what, handle)
      const downloads = (await Promise.all(gids.map(resolve))).flat()
      // Until the .torrent itself is fetched, the only GID is that small HTTP download: not done.
      const followed = gids.length > 0 && downloads.length >= gids.length && downloads.every((d) => !gids.includes(d.gid))
      const completed = sum(downloads, (d) => Number(d.completedLength))
      return {
        done: followed && downloads.every((d) => Number(d.totalLength) > 0 && d.completedLength === d.totalLength),
        have: completed,
        size: sum(downloads, (d) => Number(d.totalLength)),
        uploaded: sum(downloads, (d) => Number(d.uploadLength)),
        downloaded: completed,
      }
    },
    async stop() {
      await handle.stop(10_000)
      await bridge.close()
    },
  }
}

function sum<T>(items: T[], value: (item: T) => number): number {
  return items.reduce((total, item) => total + value(item), 0)
}

export interface NsHttpServer {
  /** base URL as seen from the Lan, no trailing slash */
  url: string
  pid: number
  stop(): Promise<void>
}

/** nginx serving `root` on host.address:port inside `host` (the origin of a Lan); Range requests (web seeds) as nginx does them. */
export async function startNsNginx(res: Resources, host: NetHost, root: string, defaultPort = 80): Promise<NsHttpServer> {
  const port = portOf(host, defaultPort)
  const url = `http://${host.address}:${port}`
  const bridge = await openBridge(res, host, host.address, port)
  try {
    const server = ['server {', `  listen ${host.address}:${port};`, `  root ${root};`, '}']
    const started = await runNginx(res, server, {
      what: `${url} in ${host.name}`,
      wrap: (cmd, args) => daemonInNs(host, cmd, args),
      ready: async () => (await nsHttp(bridge, { method: 'HEAD', path: '/', timeoutMs: 2000 })).status > 0,
    })
    return { url, ...started }
  } finally {
    await bridge.close()
  }
}
