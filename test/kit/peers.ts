// Real BitTorrent clients from Debian, driven as child processes: aria2c and libtorrent
// (python3-libtorrent, the engine of qBittorrent and Deluge). Tests, the demo and the
// benchmarks use them to prove that standard clients get the data.
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

const LT_SCRIPT = fileURLToPath(new URL('./lt-download.py', import.meta.url))

/** libtorrent through Debian's python (the pyenv python on PATH does not see Debian's modules). */
export function libtorrentDownload(source: string, dir: string, timeoutMs = 60_000, extra: string[] = []): Promise<ClientResult> {
  return run('/usr/bin/python3', [LT_SCRIPT, source, dir, String(timeoutMs / 1000), ...extra], timeoutMs + 10_000)
}
