// The one cleanup registry of the tests, the demo and the benchmark: everything a run started
// (servers, child processes, temp directories), undone in reverse order by cleanup(), even after
// a failure; plus child processes with a deadline. The tests reach it through helpers.ts
// (onCleanup, tempDir: one Resources per test file, cleaned up by an after() hook); the demo and
// the benchmark make their own.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  stdout: string
  stderr: string
  /** stdout and stderr interleaved as they arrived */
  output: string
  seconds: number
}

export interface StartOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** 'capture' (the default): the last 64 KiB of stdout, of stderr and of both interleaved are kept for the caller; 'inherit': they go to this process's */
  output?: 'capture' | 'inherit'
}

export interface ResourcesOptions {
  /** gets one line per cleanup step that failed; default: stderr */
  report?: (message: string) => void
  /** how long one cleanup step may take before it counts as failed and the next one starts; default 30 s, 0: no limit */
  stepTimeoutMs?: number
}

/** A child started by Resources.start(). */
export type ChildHandle = ReturnType<Resources['start']>

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
  /** The steps of cleanup() that failed (each also reported through `report`). */
  readonly failures: string[] = []

  private readonly report: (message: string) => void
  private readonly stepTimeoutMs: number

  constructor(options: ResourcesOptions = {}) {
    this.report = options.report ?? ((message) => process.stderr.write(`${message}\n`))
    this.stepTimeoutMs = options.stepTimeoutMs ?? 30_000
  }

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
  start(command: string, args: string[], options: StartOptions = {}) {
    const begin = performance.now()
    const inherit = options.output === 'inherit'
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', inherit ? 'inherit' : 'pipe', inherit ? 'inherit' : 'pipe'],
    })
    const stdout = tail(64 * 1024)
    const stderr = tail(64 * 1024)
    const output = tail(64 * 1024)
    child.stdout?.on('data', (chunk: Buffer) => (stdout.push(chunk), output.push(chunk)))
    child.stderr?.on('data', (chunk: Buffer) => (stderr.push(chunk), output.push(chunk)))
    // 'exit' can come before the last of the output: 'close' is when the pipes are drained.
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
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
    const stop = (graceMs = 10_000) => this.stopChild(child, exited, graceMs)
    return {
      child,
      exited,
      get stdout() {
        return stdout.text
      },
      get stderr() {
        return stderr.text
      },
      /** stdout and stderr interleaved as they arrived */
      get output() {
        return output.text
      },
      /** SIGTERM, then SIGKILL if it has not exited after graceMs. */
      stop,
      /**
       * Waits until the child exits, stopped (stop(2000)) if it is still there after timeoutMs
       * (no limit without one), and for the rest of its output (at most 1 s more: a grandchild
       * may hold the pipes).
       */
      finished: async (timeoutMs?: number): Promise<ChildResult> => {
        let timedOut = false
        const timer =
          timeoutMs === undefined
            ? undefined
            : setTimeout(() => {
                timedOut = true
                void stop(2000)
              }, timeoutMs)
        const { code, signal } = await exited
        clearTimeout(timer)
        await Promise.race([closed, delay(1000, undefined, { ref: false })])
        return {
          code,
          signal,
          timedOut,
          stdout: stdout.text,
          stderr: stderr.text,
          output: output.text,
          seconds: (performance.now() - begin) / 1000,
        }
      },
    }
  }

  /** Runs a child to completion or until timeoutMs (then it is killed). */
  run(command: string, args: string[], timeoutMs: number, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ChildResult> {
    return this.start(command, args, options).finished(timeoutMs)
  }

  private async stopChild(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }

  /** Stops children, then undoes everything else in reverse order; never throws (see `failures`). */
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
          const step = Promise.resolve().then(fn)
          const limitMs = this.stepTimeoutMs
          await (limitMs > 0
            ? Promise.race([
                step,
                // unref'd: a finished cleanup must not keep the process alive for the limit
                delay(limitMs, undefined, { ref: false }).then(() => {
                  throw new Error(`timed out after ${limitMs / 1000} s`)
                }),
              ])
            : step)
        } catch (err) {
          const failure = `cleanup: ${what} failed: ${(err as Error).message}`
          this.failures.push(failure)
          this.report(failure)
        }
      }
      this.undo.length = 0
    })()
    return this.cleaning
  }
}
