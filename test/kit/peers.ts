// Real BitTorrent clients from Debian, driven as child processes: aria2c and libtorrent
// (python3-libtorrent, the engine of qBittorrent and Deluge, through the lt-*.py scripts beside
// this file). Tests, the demo and the benchmarks use them to prove that standard clients get
// the data.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface ClientResult {
  ok: boolean
  seconds: number
  output: string
}

function run(command: string, args: string[], timeoutMs: number): Promise<ClientResult> {
  const started = performance.now()
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ ok: !err, seconds: (performance.now() - started) / 1000, output: `${stdout}${stderr}${err ? `\n${err.message}` : ''}` })
    })
  })
}

/** aria2c: TCP only, no DHT or LPD, exits once the file is complete (it does not stay to seed). */
export function aria2Download(source: string, dir: string, timeoutMs = 60_000, extra: string[] = []): Promise<ClientResult> {
  return run(
    'aria2c',
    [
      `--dir=${dir}`,
      '--seed-time=0',
      '--enable-dht=false',
      '--enable-dht6=false',
      '--bt-enable-lpd=false',
      '--enable-peer-exchange=false',
      '--file-allocation=none',
      '--allow-overwrite=true',
      '--bt-save-metadata=false',
      '--summary-interval=0',
      '--console-log-level=warn',
      '--download-result=hide',
      `--bt-stop-timeout=${Math.ceil(timeoutMs / 1000)}`,
      '--listen-port=40000-40999',
      ...extra,
      source,
    ],
    timeoutMs + 5000,
  )
}

const script = (name: string) => fileURLToPath(new URL(`./${name}`, import.meta.url))
/** The libtorrent scripts beside this file, each run with Debian's /usr/bin/python3 (usage in each one's docstring). */
export const LT_SCRIPTS = {
  /** one download of a torrent or magnet (libtorrentDownload) */
  download: script('lt-download.py'),
  /** N clients, one per torrent, each given the seeder's address (benchmark: memory) */
  clients: script('lt-clients.py'),
  /** N clients on one torrent, finding each other through its trackers (benchmark: offload) */
  swarm: script('lt-swarm.py'),
  /** N clients following a feed until a deadline (the soak test) */
  soak: script('lt-soak.py'),
  /** a long-running client inside a network namespace, driven over a unix socket (ns-clients.ts) */
  host: script('lt-host.py'),
} as const

/** libtorrent through Debian's python (the pyenv python on PATH does not see Debian's modules). */
export function libtorrentDownload(source: string, dir: string, timeoutMs = 60_000, extra: string[] = []): Promise<ClientResult> {
  return run('/usr/bin/python3', [LT_SCRIPTS.download, source, dir, String(timeoutMs / 1000), ...extra], timeoutMs + 10_000)
}

/** The lt-download.py result line: the last line of its stdout that parses as JSON. */
export interface LtResult {
  done: boolean
  seconds: number
  bytes: number
  /** 'tcp' and/or 'utp': how the peers were connected (newer lt-download.py only) */
  transports?: string[]
  /** seconds from start to the first payload byte, null if none came */
  first_byte_seconds?: number | null
  /** whether a peer connection was RC4-encrypted */
  rc4?: boolean
  error: string | null
}

export function parseLtResult(stdout: string): LtResult | undefined {
  for (const line of stdout.trim().split('\n').reverse()) {
    try {
      return JSON.parse(line) as LtResult
    } catch {
      // not the result line
    }
  }
  return undefined
}
