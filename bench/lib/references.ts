// The reference tools the benchmark measures gribswarm against, from Debian, each started as a
// child of a Resources in its own temp config directory on free loopback ports, with the
// tool's defaults except what a scenario sets for every tool alike (an upload cap, no DHT, LSD,
// UPnP or NAT-PMP so that only loopback peers are ever used):
//   - transmission-daemon 3.00, driven over its JSON-RPC;
//   - qbittorrent-nox 4.5, driven over its Web API v2;
//   - nginx serving one directory, with a per-connection rate limit.
// Plus the list of tools the benchmark needs (checked at start) and their versions.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import bencode from 'bencode'
import { freePort, waitFor, type Resources } from './util.ts'

type ChildHandle = ReturnType<Resources['start']>

/** What the benchmark needs besides Node: binary (or libtorrent's Python module) → Debian package. */
export const BENCH_TOOLS: ReadonlyArray<{ binary: string; pkg: string }> = [
  { binary: 'transmission-daemon', pkg: 'transmission-daemon' },
  { binary: 'qbittorrent-nox', pkg: 'qbittorrent-nox' },
  { binary: 'nginx', pkg: 'nginx' },
  { binary: 'mktorrent', pkg: 'mktorrent' },
  { binary: 'opentracker', pkg: 'opentracker' },
  { binary: 'aria2c', pkg: 'aria2' },
  { binary: 'curl', pkg: 'curl' },
  { binary: 'grib_set', pkg: 'libeccodes-tools' },
  { binary: 'gdalinfo', pkg: 'gdal-bin' },
  { binary: 'rabbitmq-server', pkg: 'rabbitmq-server' },
  { binary: 'python3-libtorrent', pkg: 'python3-libtorrent' },
]

function toolOutput(command: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 15_000 }, (err, stdout, stderr) => resolve({ ok: !err, text: `${stdout}${stderr}`.trim() }))
  })
}

/** The BENCH_TOOLS that are missing (sbin directories included: nginx and rabbitmq-server live there). */
export async function missingTools(): Promise<Array<{ binary: string; pkg: string }>> {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin']
  const present = async (binary: string) => {
    if (binary === 'python3-libtorrent') return (await toolOutput('/usr/bin/python3', ['-c', 'import libtorrent'])).ok
    for (const dir of dirs) if (await access(join(dir, binary)).then(() => true, () => false)) return true
    return false
  }
  const missing = []
  for (const tool of BENCH_TOOLS) if (!(await present(tool.binary))) missing.push(tool)
  return missing
}

/** One line per reference tool: its own version string and the Debian package's version. */
export async function referenceVersions(): Promise<string[]> {
  const debian = async (pkg: string) => {
    const { ok, text } = await toolOutput('dpkg-query', ['-W', '-f=${Version}', pkg])
    return ok && text ? ` (Debian ${text})` : ''
  }
  const first = (text: string) => text.split('\n')[0]?.trim() || 'unknown'
  const transmission = first((await toolOutput('transmission-daemon', ['--version'])).text).replace(/ \(\w+\)$/, '')
  const qbittorrent = first((await toolOutput('qbittorrent-nox', ['--version'])).text).replace(/^qBittorrent v/, 'qbittorrent-nox ')
  const nginx = first((await toolOutput('nginx', ['-v'])).text).replace(/^nginx version: nginx\//, 'nginx ')
  const mktorrent = first((await toolOutput('mktorrent', ['-v'])).text).split(' (')[0]!
  const curl = first((await toolOutput('curl', ['--version'])).text).split(' ').slice(0, 2).join(' ')
  const libtorrent = `libtorrent ${first((await toolOutput('/usr/bin/python3', ['-c', 'import libtorrent; print(libtorrent.__version__)'])).text)} (python3-libtorrent)`
  return [
    transmission + (await debian('transmission-daemon')),
    qbittorrent + (await debian('qbittorrent-nox')),
    nginx + (await debian('nginx')),
    mktorrent + (await debian('mktorrent')),
    curl + (await debian('curl')),
    libtorrent + (await debian('python3-libtorrent')),
    `opentracker${(await debian('opentracker')) || ' (version unknown: not a Debian package here)'}`,
  ]
}

/** The infohash (hex SHA-1 of the bencoded info dictionary) of a .torrent file. */
async function infoHashOf(torrentPath: string): Promise<string> {
  const meta = bencode.decode(await readFile(torrentPath)) as { info: unknown }
  return createHash('sha1').update(bencode.encode(meta.info)).digest('hex')
}

/** A child that must still be running while we wait on it: its exit ends the wait with its stderr. */
function ensureRunning(tool: string, handle: ChildHandle, extraLog = ''): void {
  if (handle.child.exitCode !== null || handle.child.signalCode !== null) {
    throw new Error(`${tool} exited (${handle.child.exitCode ?? handle.child.signalCode}): ${handle.stderr.slice(-2000)}${extraLog}`)
  }
}

/** A BitTorrent client seeding one torrent for a scenario: transmission-daemon or qbittorrent-nox. */
export interface ReferenceSeeder {
  /** e.g. 'transmission-daemon 3.00' */
  readonly name: string
  /** the settings the scenario changed from the tool's defaults, for the notes */
  readonly settings: string
  readonly pid: number
  readonly peerPort: number
  /** Adds a torrent whose data already sits in dataDir, and waits until the tool has verified it and seeds it. */
  seed(torrentPath: string, dataDir: string, timeoutMs?: number): Promise<void>
  /** Payload bytes uploaded for the torrents added so far, by the tool's own counters. */
  uploaded(): Promise<number>
  /** How long that counter may lag behind the bytes sent (it is refreshed on a timer). */
  readonly statsLagMs: number
  stop(): Promise<void>
}

export interface SeederOptions {
  /** Upload cap for the whole client, bytes per second; 0 or absent: none. */
  uploadLimitBytesPerSec?: number
}

/**
 * transmission-daemon's settings.json with what a closed test network needs and nothing else:
 * no DHT, LPD or port forwarding; RPC on 127.0.0.1 without authentication; `extra` on top.
 */
export async function writeTransmissionSettings(dir: string, o: { rpcPort: number; rpcAddress?: string; peerPort: number; downloadDir: string; extra?: Record<string, unknown> }): Promise<void> {
  const settings = {
    'dht-enabled': false,
    'lpd-enabled': false,
    'port-forwarding-enabled': false,
    'peer-port': o.peerPort,
    'rpc-enabled': true,
    'rpc-bind-address': o.rpcAddress ?? '127.0.0.1',
    'rpc-port': o.rpcPort,
    'rpc-authentication-required': false,
    'rpc-whitelist-enabled': true,
    'rpc-whitelist': '127.*.*.*',
    'download-dir': o.downloadDir,
    ...o.extra,
  }
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'settings.json'), JSON.stringify(settings, null, 2))
}

/**
 * transmission-daemon (3.00), foreground, with a settings.json of ours: RPC and peers on
 * 127.0.0.1 only, no DHT, LPD or port forwarding; everything else at its defaults (uTP and PEX
 * on, 14 upload slots per torrent, 50 peers per torrent). Its speed limits are in kB/s of 1000
 * bytes (libtransmission's daemon formats speeds with 1000).
 */
export async function startTransmission(res: Resources, options: SeederOptions = {}): Promise<ReferenceSeeder> {
  const dir = await res.tempDir('gribswarm-bench-transmission-')
  const [rpcPort, peerPort] = [await freePort(), await freePort()]
  const capKB = Math.round((options.uploadLimitBytesPerSec ?? 0) / 1000)
  await writeTransmissionSettings(dir, {
    rpcPort,
    peerPort,
    downloadDir: join(dir, 'downloads'),
    extra: {
      'bind-address-ipv4': '127.0.0.1',
      'bind-address-ipv6': '::1',
      'peer-port-random-on-start': false,
      'incomplete-dir-enabled': false,
      'speed-limit-up': capKB || 100,
      'speed-limit-up-enabled': capKB > 0,
      'message-level': 1,
    },
  })
  const handle = res.start('transmission-daemon', ['-f', '-g', dir])
  const url = `http://127.0.0.1:${rpcPort}/transmission/rpc`
  let sessionId = ''
  // JSON-RPC with the CSRF handshake: the first call gets 409 and the session id to send back.
  const rpc = async (method: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-transmission-session-id': sessionId },
        body: JSON.stringify({ method, arguments: args }),
        signal: AbortSignal.timeout(10_000),
      })
      if (response.status === 409) {
        sessionId = response.headers.get('x-transmission-session-id') ?? ''
        continue
      }
      if (!response.ok) throw new Error(`transmission-daemon RPC ${method} on port ${rpcPort}: HTTP ${response.status}`)
      const body = (await response.json()) as { result: string; arguments?: Record<string, unknown> }
      if (body.result !== 'success') throw new Error(`transmission-daemon RPC ${method} on port ${rpcPort}: ${body.result}`)
      return body.arguments ?? {}
    }
    throw new Error(`transmission-daemon RPC ${method} on port ${rpcPort}: no session id after 3 tries`)
  }
  await waitFor(`transmission-daemon's RPC on 127.0.0.1:${rpcPort} (config ${dir})`, async () => {
    ensureRunning('transmission-daemon', handle)
    return rpc('session-get').then(() => true)
  }, 30_000, 100)

  interface TorrentState { id: number; status: number; percentDone: number; error: number; errorString: string; uploadedEver: number; recheckProgress: number }
  const torrentIds = new Set<number>()
  const states = async (ids: number[]): Promise<TorrentState[]> => {
    const got = await rpc('torrent-get', { ids, fields: ['id', 'status', 'percentDone', 'error', 'errorString', 'uploadedEver', 'recheckProgress'] })
    const torrents = (got.torrents as TorrentState[] | undefined) ?? []
    if (torrents.length !== ids.length) throw new Error(`transmission-daemon on port ${rpcPort} no longer has all of torrents ${ids.join(', ')}`)
    return torrents
  }
  const cap = capKB ? `speed-limit-up ${capKB} kB/s` : 'no upload limit'
  return {
    name: 'transmission-daemon 3.00',
    settings: `${cap}; dht-enabled, lpd-enabled, port-forwarding-enabled false; peers and RPC bound to 127.0.0.1; other settings at their defaults (utp-enabled and pex-enabled true, upload-slots-per-torrent 14, peer-limit-per-torrent 50)`,
    pid: handle.child.pid!,
    peerPort,
    async seed(torrentPath, dataDir, timeoutMs = 120_000) {
      const added = await rpc('torrent-add', { metainfo: (await readFile(torrentPath)).toString('base64'), 'download-dir': dataDir, paused: false })
      const entry = (added['torrent-added'] ?? added['torrent-duplicate']) as { id: number } | undefined
      if (!entry) throw new Error(`transmission-daemon did not add ${torrentPath}: ${JSON.stringify(added)}`)
      torrentIds.add(entry.id)
      // Status 6 = seeding: the existing data has been verified (status 1–2 while checking).
      await waitFor(`transmission-daemon (port ${rpcPort}) to verify ${basename(torrentPath)} in ${dataDir} and seed`, async () => {
        ensureRunning('transmission-daemon', handle)
        const [t] = await states([entry.id])
        if (t!.error) throw new Error(`transmission-daemon: ${t!.errorString}`)
        return t!.status === 6 && t!.percentDone === 1
      }, timeoutMs, 100)
    },
    async uploaded() {
      return torrentIds.size ? (await states([...torrentIds])).reduce((sum, t) => sum + t.uploadedEver, 0) : 0
    },
    statsLagMs: 0,
    stop: () => handle.stop(5000),
  }
}

/**
 * qbittorrent-nox's qBittorrent.conf in `profile` with what a closed test network needs: legal
 * notice accepted (else it asks on the terminal), Web UI on 127.0.0.1:webPort without login
 * from localhost, no DHT, LSD or UPnP/NAT-PMP; `bittorrent` lines added to [BitTorrent].
 */
export async function writeQbittorrentProfile(profile: string, o: { webPort: number; webAddress?: string; savePath: string; bittorrent?: string[] }): Promise<void> {
  const configDir = join(profile, 'qBittorrent', 'config')
  await mkdir(configDir, { recursive: true })
  const conf = [
    '[LegalNotice]',
    'Accepted=true',
    '',
    '[BitTorrent]',
    'Session\\DHTEnabled=false',
    'Session\\LSDEnabled=false',
    `Session\\DefaultSavePath=${o.savePath}`,
    ...(o.bittorrent ?? []),
    '',
    '[Network]',
    'PortForwardingEnabled=false',
    '',
    '[Preferences]',
    'General\\Locale=en',
    `WebUI\\Address=${o.webAddress ?? '127.0.0.1'}`,
    `WebUI\\Port=${o.webPort}`,
    'WebUI\\LocalHostAuth=false',
    'WebUI\\UseUPnP=false',
    '',
  ].join('\n')
  await writeFile(join(configDir, 'qBittorrent.conf'), conf)
}

/**
 * qbittorrent-nox (4.5), with a qBittorrent.conf of ours in its own profile directory: legal
 * notice accepted (else it asks on the terminal), Web UI on 127.0.0.1 without login from
 * localhost, peers on the loopback interface only, no DHT, LSD or UPnP/NAT-PMP; everything
 * else at its defaults (uTP and PEX on, queueing on, one connection per IP).
 */
export async function startQbittorrent(res: Resources, options: SeederOptions = {}): Promise<ReferenceSeeder> {
  const profile = await res.tempDir('gribswarm-bench-qbittorrent-')
  const [webPort, peerPort] = [await freePort(), await freePort()]
  await writeQbittorrentProfile(profile, {
    webPort,
    savePath: join(profile, 'downloads'),
    bittorrent: [`Session\\Port=${peerPort}`, 'Session\\Interface=lo', 'Session\\InterfaceName=lo', 'Session\\InterfaceAddress=127.0.0.1'],
  })
  const handle = res.start('qbittorrent-nox', [`--profile=${profile}`, `--webui-port=${webPort}`])
  const logTail = async () => `\nqbittorrent.log: ${(await readFile(join(profile, 'qBittorrent', 'data', 'logs', 'qbittorrent.log'), 'utf8').catch(() => '')).slice(-2000)}`
  const base = `http://127.0.0.1:${webPort}/api/v2`
  const api = async (path: string, init: RequestInit = {}): Promise<Response> => {
    const response = await fetch(`${base}/${path}`, { ...init, signal: AbortSignal.timeout(10_000) })
    if (!response.ok) throw new Error(`qbittorrent-nox ${path} on port ${webPort}: HTTP ${response.status} ${await response.text()}`)
    return response
  }
  await waitFor(`qbittorrent-nox's Web API on 127.0.0.1:${webPort} (profile ${profile})`, async () => {
    ensureRunning('qbittorrent-nox', handle, await logTail())
    return (await api('app/version')).text()
  }, 30_000, 100)
  const cap = options.uploadLimitBytesPerSec ?? 0
  if (cap > 0) await api('transfer/setUploadLimit', { method: 'POST', body: new URLSearchParams({ limit: String(cap) }) })

  interface TorrentInfo { state: string; progress: number; uploaded: number }
  const infoHashes = new Set<string>()
  const infos = async (hashes: string[]): Promise<TorrentInfo[]> => {
    const torrents = (await (await api(`torrents/info?hashes=${hashes.join('|')}`)).json()) as TorrentInfo[]
    if (torrents.length !== hashes.length) throw new Error(`qbittorrent-nox on port ${webPort} does not have all of torrents ${hashes.join(', ')}`)
    return torrents
  }
  return {
    name: 'qbittorrent-nox 4.5.2',
    settings:
      `${cap ? `global upload limit ${cap} B/s (transfer/setUploadLimit)` : 'no upload limit'}; DHT, LSD, UPnP/NAT-PMP off; peers on interface lo (127.0.0.1); ` +
      'other settings at their defaults (uTP and PeX on, rate limits applied to LAN peers, queueing on)',
    pid: handle.child.pid!,
    peerPort,
    async seed(torrentPath, dataDir, timeoutMs = 120_000) {
      const infoHash = await infoHashOf(torrentPath)
      infoHashes.add(infoHash)
      const form = new FormData()
      form.append('torrents', new Blob([await readFile(torrentPath)]), basename(torrentPath))
      form.append('savepath', dataDir)
      form.append('skip_checking', 'false')
      form.append('paused', 'false')
      form.append('autoTMM', 'false')
      const answer = await (await api('torrents/add', { method: 'POST', body: form })).text()
      if (answer.trim() !== 'Ok.') throw new Error(`qbittorrent-nox refused ${torrentPath}: ${answer}`)
      // checkingUP / checkingResumeData while it verifies; uploading or stalledUP once it seeds.
      await waitFor(`qbittorrent-nox (port ${webPort}) to verify ${basename(torrentPath)} in ${dataDir} and seed`, async () => {
        ensureRunning('qbittorrent-nox', handle, await logTail())
        const [t] = await infos([infoHash]).catch(() => [])
        if (t && (t.state === 'error' || t.state === 'missingFiles')) throw new Error(`qbittorrent-nox: torrent state ${t.state}${await logTail()}`)
        return t !== undefined && t.progress === 1 && (t.state === 'uploading' || t.state === 'stalledUP')
      }, timeoutMs, 100)
    },
    async uploaded() {
      return infoHashes.size ? (await infos([...infoHashes])).reduce((sum, t) => sum + t.uploaded, 0) : 0
    },
    // qBittorrent refreshes torrent statistics from libtorrent every 1.5 s (its default refresh interval).
    statsLagMs: 1500,
    stop: () => handle.stop(10_000),
  }
}

export interface NginxServer {
  /** base URL, no trailing slash */
  url: string
  pid: number
  /** the configuration choices, for the notes */
  settings: string
  stop(): Promise<void>
}

/**
 * nginx serving `root` on a free 127.0.0.1 port, foreground, with everything it writes (pid,
 * logs, temp files) in its own temp prefix. `limit_rate` caps each connection; sendfile stays on
 * (Debian's default): nginx sends at most what the rate allows so far in each call, so the cap
 * holds with sendfile too, and its allowance starts one second ahead (rate × (elapsed + 1 s)).
 */
export async function startNginx(res: Resources, options: { root: string; limitRateBytesPerSec?: number }): Promise<NginxServer> {
  const port = await freePort()
  const rate = options.limitRateBytesPerSec ?? 0
  const server = ['server {', `  listen 127.0.0.1:${port};`, `  root ${options.root};`, `  limit_rate ${rate};`, '}']
  const url = `http://127.0.0.1:${port}`
  const started = await runNginx(res, server, { what: url, ready: async () => (await fetch(`${url}/`, { method: 'HEAD', signal: AbortSignal.timeout(2000) })).status > 0 })
  return { url, ...started, settings: `nginx, one worker, sendfile on, limit_rate ${rate} bytes/s per connection${rate ? '' : ' (none)'}` }
}

export interface NginxOptions {
  /** what it serves, for error messages */
  what: string
  /** true once it answers */
  ready: () => Promise<boolean>
  /** runs nginx through another command, e.g. inside a network namespace */
  wrap?: (command: string, args: string[]) => { command: string; args: string[] }
}

/** nginx in the foreground with `server` blocks, everything it writes in its own temp prefix. */
export async function runNginx(res: Resources, server: string[], options: NginxOptions): Promise<Omit<NginxServer, 'url' | 'settings'>> {
  const prefix = await res.tempDir('gribswarm-nginx-')
  const conf = [
    // A master running as root hands requests to workers as `nobody`, which cannot read our 0700 temp dirs.
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'worker_processes 1;',
    `pid ${join(prefix, 'nginx.pid')};`,
    `error_log ${join(prefix, 'error.log')} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    '  default_type application/octet-stream;',
    '  access_log off;',
    '  sendfile on;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${join(prefix, `${kind}_temp`)};`),
    ...server.map((line) => `  ${line}`),
    '}',
    '',
  ].join('\n')
  const confPath = join(prefix, 'nginx.conf')
  await writeFile(confPath, conf)
  const args = ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', confPath, '-g', 'daemon off;']
  const run = options.wrap?.('nginx', args) ?? { command: 'nginx', args }
  const handle = res.start(run.command, run.args)
  const errorLog = async () => `\nerror.log: ${(await readFile(join(prefix, 'error.log'), 'utf8').catch(() => '')).slice(-2000)}`
  await waitFor(`nginx on ${options.what} (config ${confPath})`, async () => {
    ensureRunning('nginx', handle, await errorLog())
    return options.ready()
  }, 30_000, 100)
  return { pid: handle.child.pid!, stop: () => handle.stop(5000) }
}
