// What several benchmark scenarios start besides gribswarm: the fixture cache, a local upstream
// in its own process, and the RabbitMQ broker on loopback.
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import amqp from 'amqplib'
import type { Resources } from '../../test/kit/resources.ts'
import { waitFor } from '../../test/kit/wait.ts'
import { progress } from './util.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const UPSTREAM_SCRIPT = fileURLToPath(new URL('./upstream-server.ts', import.meta.url))

/** Cached across runs (not removed at the end): making hundreds of MB of CCSDS GRIB2 takes a while. */
export const FIXTURE_CACHE = join(tmpdir(), 'gribswarm-bench')

export const BENCH_BROKER = 'amqp://guest:guest@127.0.0.1:5672'

/** One request the upstream process answered (its control server's GET /requests). */
export interface UpstreamRequest {
  /** when it came, ms since the epoch */
  at: number
  method: string
  url: string
  range?: string
  /** 0 until answered */
  status: number
  /** written to its socket for it so far, headers included */
  bytes: number
  /** the response is over (sent, or its connection gone) */
  done: boolean
  /** when it was over, ms since the epoch */
  endedAt?: number
}

/** An upstream in its own process, as startUpstreamProcess() started it. */
export interface UpstreamProcess {
  bucketUrl: string
  /** the requests so far, in the order they came, from the `from`th on (default: all) */
  requests(from?: number): Promise<UpstreamRequest[]>
  /** makes a hidden key listable and served */
  show(key: string): Promise<void>
}

/**
 * A FakeUpstream serving `path` under every key at `bytesPerSecond`, in its own process so that
 * pacing the bytes does not share an event loop with the daemon measured. Returns its bucket URL.
 */
export async function startUpstream(res: Resources, path: string, bytesPerSecond: number, keys: string[]): Promise<string> {
  return (await startUpstreamProcess(res, path, bytesPerSecond, keys)).bucketUrl
}

/** startUpstream(), with `hidden` keys (not listed, 404, until shown) and the requests it answered. */
export async function startUpstreamProcess(
  res: Resources,
  path: string,
  bytesPerSecond: number,
  keys: string[],
  hidden: string[] = [],
): Promise<UpstreamProcess> {
  const args = [...hidden.flatMap((key) => ['--hidden', key]), path, String(bytesPerSecond), ...keys]
  const upstream = res.start(process.execPath, ['--import', 'tsx', UPSTREAM_SCRIPT, ...args], { cwd: ROOT })
  const { bucketUrl, controlUrl } = await waitFor(
    'the fake upstream to listen',
    () => {
      if (upstream.child.exitCode !== null || upstream.child.signalCode !== null)
        throw new Error(`the fake upstream exited: ${upstream.stderr.slice(-1000)}`)
      const line = upstream.stdout.split('\n').find((l) => l.startsWith('{'))
      return line ? (JSON.parse(line) as { bucketUrl: string; controlUrl: string }) : undefined
    },
    60_000,
    50,
  )
  const call = async (method: string, path: string) => {
    const response = await fetch(`${controlUrl}${path}`, { method, signal: AbortSignal.timeout(10_000) })
    if (!response.ok) throw new Error(`the fake upstream's ${method} ${path}: HTTP ${response.status} ${await response.text()}`)
    return response.json()
  }
  return {
    bucketUrl,
    requests: async (from = 0) => (await call('GET', `/requests?from=${from}`)) as UpstreamRequest[],
    show: async (key) => void (await call('POST', `/show?key=${encodeURIComponent(key)}`)),
  }
}

/** The broker the scenarios need: RabbitMQ on loopback, started with scripts/broker.sh if it is not running. */
export async function ensureBroker(res: Resources): Promise<void> {
  const reachable = () =>
    amqp.connect(BENCH_BROKER, { timeout: 3000 }).then(
      (connection) => connection.close().then(() => true),
      () => false,
    )
  if (await reachable()) return
  progress('starting RabbitMQ on loopback (bash scripts/broker.sh start)')
  const started = await res.run('bash', [join(ROOT, 'scripts/broker.sh'), 'start'], 120_000, { cwd: ROOT })
  if (started.code !== 0 || !(await reachable()))
    throw new Error(`no broker at ${BENCH_BROKER}: scripts/broker.sh start said ${started.stdout} ${started.stderr}`)
}
