// The stock tools' own configuration files, written for a closed test network, and nginx run in
// the foreground with everything it writes in a temp prefix: what the network-namespace harness
// (ns-clients.ts, nginx-front.ts) and the benchmark's reference tools (bench/lib/references.ts)
// both start these tools with.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChildHandle, Resources } from './resources.ts'
import { waitFor } from './wait.ts'

/** A child that must still be running while we wait on it: its exit ends the wait with its stderr. */
export function ensureRunning(tool: string, handle: ChildHandle, extraLog = ''): void {
  if (handle.child.exitCode !== null || handle.child.signalCode !== null) {
    throw new Error(`${tool} exited (${handle.child.exitCode ?? handle.child.signalCode}): ${handle.stderr.slice(-2000)}${extraLog}`)
  }
}

/**
 * transmission-daemon's settings.json with what a closed test network needs and nothing else:
 * no DHT, LPD or port forwarding; RPC on 127.0.0.1 without authentication; `extra` on top.
 */
export async function writeTransmissionSettings(
  dir: string,
  o: { rpcPort: number; rpcAddress?: string; peerPort: number; downloadDir: string; extra?: Record<string, unknown> },
): Promise<void> {
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
 * qbittorrent-nox's qBittorrent.conf in `profile` with what a closed test network needs: legal
 * notice accepted (else it asks on the terminal), Web UI on 127.0.0.1:webPort without login
 * from localhost, no DHT, LSD or UPnP/NAT-PMP; `bittorrent` lines added to [BitTorrent].
 */
export async function writeQbittorrentProfile(
  profile: string,
  o: { webPort: number; webAddress?: string; savePath: string; bittorrent?: string[] },
): Promise<void> {
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

export interface NginxServer {
  /** base URL, no trailing slash */
  url: string
  pid: number
  /** the configuration choices, for the notes */
  settings: string
  stop(): Promise<void>
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
  await waitFor(
    `nginx on ${options.what} (config ${confPath})`,
    async () => {
      ensureRunning('nginx', handle, await errorLog())
      return options.ready()
    },
    30_000,
    100,
  )
  return { pid: handle.child.pid!, stop: () => handle.stop(5000) }
}
