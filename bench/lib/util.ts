// What the benchmark scenarios share: progress lines, a registry of everything to undo at the
// end (servers, child processes, temp directories), child processes with a deadline, free
// loopback ports, polling with a deadline, and small formatting helpers.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
export { freePort, waitFor } from '../../test/kit/wait.ts'

const started = performance.now()

/** A progress line on stderr (stdout is kept for the final table). */
export function progress(message: string): void {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s] ${message}\n`)
}

export interface Row {
  scenario: string
  gribswarm: string
  reference: string
  ratio: string
  target: string
  met: 'yes' | 'no' | 'n/a' | 'error'
}

export interface ScenarioResult {
  rows: Row[]
  notes: string[]
}

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  stdout: string
  stderr: string
  seconds: number
}

/** Keeps the last `max` characters of a stream, so a chatty child cannot fill memory. */
function tail(max: number) {
  let text = ''
  return {
    push(chunk: Buffer) {
      text += chunk.toString('utf8')
      if (text.length > max) text = text.slice(-max)
    },
    get text() {
      return text
    },
  }
}

/** Everything the run started, undone in reverse order by cleanup(), even after a failure. */
export class Resources {
  private readonly undo: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = []
  private readonly children = new Set<ChildProcess>()
  private cleaning: Promise<void> | undefined

  defer(what: string, fn: () => Promise<unknown> | unknown): void {
    this.undo.push({ what, fn })
  }

  /** A fresh directory under os.tmpdir(), removed by cleanup(). */
  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix))
    this.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }))
    return dir
  }

  /** Starts a long-running child; cleanup() stops it if it is still there. */
  start(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const stdout = tail(64 * 1024)
    const stderr = tail(64 * 1024)
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk))
    this.children.add(child)
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => {
        this.children.delete(child)
        resolve({ code, signal })
      })
      child.once('error', () => {
        this.children.delete(child)
        resolve({ code: -1, signal: null })
      })
    })
    return {
      child,
      exited,
      get stdout() {
        return stdout.text
      },
      get stderr() {
        return stderr.text
      },
      /** SIGTERM, then SIGKILL if it has not exited after graceMs. */
      stop: (graceMs = 10_000) => this.stopChild(child, exited, graceMs),
    }
  }

  /** Runs a child to completion or until timeoutMs (then it is killed). */
  async run(command: string, args: string[], timeoutMs: number, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ChildResult> {
    const begin = performance.now()
    const handle = this.start(command, args, options)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      void handle.stop(2000)
    }, timeoutMs)
    const { code, signal } = await handle.exited
    clearTimeout(timer)
    return { code, signal, timedOut, stdout: handle.stdout, stderr: handle.stderr, seconds: (performance.now() - begin) / 1000 }
  }

  private async stopChild(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }

  /** Stops children, then undoes everything else in reverse order; never throws. */
  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      await Promise.all(
        [...this.children].map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
          child.kill('SIGTERM')
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
          await exited
          clearTimeout(timer)
        }),
      )
      for (const { what, fn } of this.undo.reverse()) {
        try {
          await Promise.race([
            Promise.resolve().then(fn),
            // unref'd: a finished cleanup must not keep the process alive for 30 s
            delay(30_000, undefined, { ref: false }).then(() => {
              throw new Error('timed out after 30 s')
            }),
          ])
        } catch (err) {
          progress(`cleanup: ${what} failed: ${(err as Error).message}`)
        }
      }
      this.undo.length = 0
    })()
    return this.cleaning
  }
}

export async function sha1File(path: string): Promise<string> {
  const hash = createHash('sha1')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Resident set size of a process, in bytes (VmRSS), or undefined once it is gone. */
export async function residentBytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined)
  const m = text && new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
  return m ? Number(m[1]) * 1024 : undefined
}

/** Threads and open file descriptors of a process: what native add-ons (WebRTC, GDAL) hold shows up here. */
export async function processCounts(pid: number): Promise<{ threads: number; fds: number }> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const threads = Number(/^Threads:\s+(\d+)/m.exec(text)?.[1] ?? 0)
  const fds = await readdir(`/proc/${pid}/fd`).then((names) => names.length, () => 0)
  return { threads, fds }
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

/** Where a run writes its table and chart: results/ in full mode, results/quick/ in quick mode (the tests run it). */
export function resultsDir(quick: boolean): string {
  return fileURLToPath(new URL(quick ? '../../results/quick/' : '../../results/', import.meta.url))
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

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Nearest-rank quantile: the value below which a fraction `q` of the values lie. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

export const MB = 1_000_000
export const MiB = 1024 * 1024

export const fmtMBs = (bytesPerSecond: number): string => `${(bytesPerSecond / MB).toFixed(1)} MB/s`
export const fmtMB = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`
export const fmtRatio = (ratio: number): string => (Number.isFinite(ratio) ? `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×` : 'n/a')
export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`)
export const fmtSize = (bytes: number): string => (bytes >= 1024 * MiB ? `${(bytes / (1024 * MiB)).toFixed(bytes % (1024 * MiB) ? 2 : 0)} GiB` : `${Math.round(bytes / MiB)} MiB`)

/** CPU seconds (user + system) a process has used so far, or undefined once it is gone. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  // Fields after the command name (which may hold spaces) start at ") "; utime and stime are the 12th and 13th of those.
  const fields = text?.slice(text.lastIndexOf(') ') + 2).split(' ')
  return fields ? (Number(fields[11]) + Number(fields[12])) / 100 : undefined
}
