// The reference tools the benchmark measures gribswarm against, from Debian, each started as a
// child of a Resources in its own temp config directory on free loopback ports, with the
// tool's defaults except what a scenario sets for every tool alike (an upload cap, no DHT, LSD,
// UPnP or NAT-PMP so that only loopback peers are ever used):
//   - transmission-daemon 3.00, driven over its JSON-RPC;
//   - qbittorrent-nox 4.5, driven over its Web API v2;
//   - nginx serving one directory, with a per-connection rate limit.
//   - mktorrent, run once per torrent, timed.
// Their configuration files come from the test kit (test/kit/stock-tools.ts), which starts the
// same tools as hosts of its network-namespace harness. Plus the list of tools the benchmark
// needs (checked at start) and their versions.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { access, readFile, rm } from 'node:fs/promises'
import { cpus } from 'node:os'
import { basename, join } from 'node:path'
import bencode from 'bencode'
import parseTorrent from 'parse-torrent'
import {
  ensureRunning,
  runNginx,
  writeQbittorrentProfile,
  writeTransmissionSettings,
  type NginxServer,
} from '../../test/kit/stock-tools.ts'
import type { Resources } from '../../test/kit/resources.ts'
import { freePort, freePorts, waitFor } from '../../test/kit/wait.ts'

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
    for (const dir of dirs)
      if (
        await access(join(dir, binary)).then(
          () => true,
          () => false,
        )
      )
        return true
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
  const curl = first((await toolOutput('curl', ['--version'])).text)
    .split(' ')
    .slice(0, 2)
    .join(' ')
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
 * transmission-daemon (3.00), foreground, with a settings.json of ours: RPC and peers on
 * 127.0.0.1 only, no DHT, LPD or port forwarding; everything else at its defaults (uTP and PEX
 * on, 14 upload slots per torrent, 50 peers per torrent). Its speed limits are in kB/s of 1000
 * bytes (libtransmission's daemon formats speeds with 1000).
 */
export async function startTransmission(res: Resources, options: SeederOptions = {}): Promise<ReferenceSeeder> {
  const dir = await res.tempDir('gribswarm-bench-transmission-')
  const [rpcPort, peerPort] = (await freePorts(2)) as [number, number]
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
  await waitFor(
    `transmission-daemon's RPC on 127.0.0.1:${rpcPort} (config ${dir})`,
    async () => {
      ensureRunning('transmission-daemon', handle)
      return rpc('session-get').then(() => true)
    },
    30_000,
    100,
  )

  interface TorrentState {
    id: number
    status: number
    percentDone: number
    error: number
    errorString: string
    uploadedEver: number
    recheckProgress: number
  }
  const torrentIds = new Set<number>()
  const states = async (ids: number[]): Promise<TorrentState[]> => {
    const got = await rpc('torrent-get', {
      ids,
      fields: ['id', 'status', 'percentDone', 'error', 'errorString', 'uploadedEver', 'recheckProgress'],
    })
    const torrents = (got.torrents as TorrentState[] | undefined) ?? []
    if (torrents.length !== ids.length)
      throw new Error(`transmission-daemon on port ${rpcPort} no longer has all of torrents ${ids.join(', ')}`)
    return torrents
  }
  const cap = capKB ? `speed-limit-up ${capKB} kB/s` : 'no upload limit'
  return {
    name: 'transmission-daemon 3.00',
    settings: `${cap}; dht-enabled, lpd-enabled, port-forwarding-enabled false; peers and RPC bound to 127.0.0.1; other settings at their defaults (utp-enabled and pex-enabled true, upload-slots-per-torrent 14, peer-limit-per-torrent 50)`,
    pid: handle.child.pid!,
    peerPort,
    async seed(torrentPath, dataDir, timeoutMs = 120_000) {
      const added = await rpc('torrent-add', {
        metainfo: (await readFile(torrentPath)).toString('base64'),
        'download-dir': dataDir,
        paused: false,
      })
      const entry = (added['torrent-added'] ?? added['torrent-duplicate']) as { id: number } | undefined
      if (!entry) throw new Error(`transmission-daemon did not add ${torrentPath}: ${JSON.stringify(added)}`)
      torrentIds.add(entry.id)
      // Status 6 = seeding: the existing data has been verified (status 1–2 while checking).
      await waitFor(
        `transmission-daemon (port ${rpcPort}) to verify ${basename(torrentPath)} in ${dataDir} and seed`,
        async () => {
          ensureRunning('transmission-daemon', handle)
          const [t] = await states([entry.id])
          if (t!.error) throw new Error(`transmission-daemon: ${t!.errorString}`)
          return t!.status === 6 && t!.percentDone === 1
        },
        timeoutMs,
        100,
      )
    },
    async uploaded() {
      return torrentIds.size ? (await states([...torrentIds])).reduce((sum, t) => sum + t.uploadedEver, 0) : 0
    },
    statsLagMs: 0,
    stop: () => handle.stop(5000),
  }
}

/**
 * qbittorrent-nox (4.5), with a qBittorrent.conf of ours in its own profile directory: legal
 * notice accepted (else it asks on the terminal), Web UI on 127.0.0.1 without login from
 * localhost, peers on the loopback interface only, no DHT, LSD or UPnP/NAT-PMP; everything
 * else at its defaults (uTP and PEX on, queueing on, one connection per IP).
 */
export async function startQbittorrent(res: Resources, options: SeederOptions = {}): Promise<ReferenceSeeder> {
  const profile = await res.tempDir('gribswarm-bench-qbittorrent-')
  const [webPort, peerPort] = (await freePorts(2)) as [number, number]
  await writeQbittorrentProfile(profile, {
    webPort,
    savePath: join(profile, 'downloads'),
    bittorrent: [`Session\\Port=${peerPort}`, 'Session\\Interface=lo', 'Session\\InterfaceName=lo', 'Session\\InterfaceAddress=127.0.0.1'],
  })
  const handle = res.start('qbittorrent-nox', [`--profile=${profile}`, `--webui-port=${webPort}`])
  const logTail = async () =>
    `\nqbittorrent.log: ${(await readFile(join(profile, 'qBittorrent', 'data', 'logs', 'qbittorrent.log'), 'utf8').catch(() => '')).slice(-2000)}`
  const base = `http://127.0.0.1:${webPort}/api/v2`
  const api = async (path: string, init: RequestInit = {}): Promise<Response> => {
    const response = await fetch(`${base}/${path}`, { ...init, signal: AbortSignal.timeout(10_000) })
    if (!response.ok) throw new Error(`qbittorrent-nox ${path} on port ${webPort}: HTTP ${response.status} ${await response.text()}`)
    return response
  }
  await waitFor(
    `qbittorrent-nox's Web API on 127.0.0.1:${webPort} (profile ${profile})`,
    async () => {
      ensureRunning('qbittorrent-nox', handle, await logTail())
      return (await api('app/version')).text()
    },
    30_000,
    100,
  )
  const cap = options.uploadLimitBytesPerSec ?? 0
  if (cap > 0) await api('transfer/setUploadLimit', { method: 'POST', body: new URLSearchParams({ limit: String(cap) }) })

  interface TorrentInfo {
    state: string
    progress: number
    uploaded: number
  }
  const infoHashes = new Set<string>()
  const infos = async (hashes: string[]): Promise<TorrentInfo[]> => {
    const torrents = (await (await api(`torrents/info?hashes=${hashes.join('|')}`)).json()) as TorrentInfo[]
    if (torrents.length !== hashes.length)
      throw new Error(`qbittorrent-nox on port ${webPort} does not have all of torrents ${hashes.join(', ')}`)
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
      await waitFor(
        `qbittorrent-nox (port ${webPort}) to verify ${basename(torrentPath)} in ${dataDir} and seed`,
        async () => {
          ensureRunning('qbittorrent-nox', handle, await logTail())
          const [t] = await infos([infoHash]).catch(() => [])
          if (t && (t.state === 'error' || t.state === 'missingFiles'))
            throw new Error(`qbittorrent-nox: torrent state ${t.state}${await logTail()}`)
          return t !== undefined && t.progress === 1 && (t.state === 'uploading' || t.state === 'stalledUP')
        },
        timeoutMs,
        100,
      )
    },
    async uploaded() {
      return infoHashes.size ? (await infos([...infoHashes])).reduce((sum, t) => sum + t.uploaded, 0) : 0
    },
    // qBittorrent refreshes torrent statistics from libtorrent every 1.5 s (its default refresh interval).
    statsLagMs: 1500,
    stop: () => handle.stop(10_000),
  }
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
  const started = await runNginx(res, server, {
    what: url,
    ready: async () => (await fetch(`${url}/`, { method: 'HEAD', signal: AbortSignal.timeout(2000) })).status > 0,
  })
  return { url, ...started, settings: `nginx, one worker, sendfile on, limit_rate ${rate} bytes/s per connection${rate ? '' : ' (none)'}` }
}

export interface MadeTorrent {
  infoHash: string
  /** piece SHA-1s, hex */
  pieces: string[]
  seconds: number
}

/** `mktorrent -t <cores> -l <log2 pieceLength> -a <announce>... -o <out> <file>`, as a child process, timed (one -a a tier, as buildTorrent does). */
export async function runMktorrent(
  res: Resources,
  file: string,
  pieceLength: number,
  announce: string[],
  out: string,
): Promise<MadeTorrent> {
  await rm(out, { force: true }) // mktorrent refuses to overwrite
  const args = [
    '-t',
    String(cpus().length),
    '-l',
    String(Math.log2(pieceLength)),
    ...announce.flatMap((url) => ['-a', url]),
    '-o',
    out,
    file,
  ]
  const run = await res.run('mktorrent', args, 600_000)
  if (run.code !== 0)
    throw new Error(
      `mktorrent ${args.join(' ')} failed (exit ${run.code ?? run.signal}${run.timedOut ? ', timed out' : ''}): ${run.stderr.slice(-1000) || run.stdout.slice(-1000)}`,
    )
  const parsed = await parseTorrent(await readFile(out))
  return { infoHash: parsed.infoHash, pieces: parsed.pieces ?? [], seconds: run.seconds }
}
