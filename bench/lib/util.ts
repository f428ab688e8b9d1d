// What the benchmark scenarios share besides the test kit (test/kit/: resources, daemon,
// config, fixtures, peers, wait, measure): progress lines, the scenario signature and its
// table rows, where the results go, and small formatting helpers.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { statfs } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { DaemonRunner } from '../../test/kit/daemon.ts'
import type { Resources } from '../../test/kit/resources.ts'

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

/** What bench.ts gives every scenario. */
export interface ScenarioContext {
  /** the scenario's own resources, released before the next scenario starts */
  res: Resources
  /** small sizes (a few minutes), for CI */
  quick: boolean
  /** how scenarios that let the choice be made run the daemon (--daemon; memory only) */
  daemon?: DaemonRunner
}

/** One scenario of bench/scenarios/: its table rows and its notes. */
export type Scenario = (ctx: ScenarioContext) => Promise<ScenarioResult>

/** SHA-1 of a whole file, hex. */
export async function sha1File(path: string): Promise<string> {
  const hash = createHash('sha1')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Where a run writes its table and chart: results/ in full mode, results/quick/ in quick mode (the tests run it). */
export function resultsDir(quick: boolean): string {
  return fileURLToPath(new URL(quick ? '../../results/quick/' : '../../results/', import.meta.url))
}

/** Bytes an unprivileged process may still write on the filesystem holding `dir`. */
export async function freeDiskBytes(dir: string): Promise<number> {
  const fs = await statfs(dir)
  return fs.bavail * fs.bsize
}

export const MB = 1_000_000
export const MiB = 1024 * 1024

export const fmtMBs = (bytesPerSecond: number): string => `${(bytesPerSecond / MB).toFixed(1)} MB/s`
export const fmtMB = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`
export const fmtRatio = (ratio: number): string =>
  Number.isFinite(ratio) ? `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×` : 'n/a'
export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`)
export const fmtSize = (bytes: number): string =>
  bytes >= 1024 * MiB ? `${(bytes / (1024 * MiB)).toFixed(bytes % (1024 * MiB) ? 2 : 0)} GiB` : `${Math.round(bytes / MiB)} MiB`
