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

/**
 * A FakeUpstream serving `path` under every key at `bytesPerSecond`, in its own process so that
 * pacing the bytes does not share an event loop with the daemon measured. Returns its bucket URL.
 */
export async function startUpstream(res: Resources, path: string, bytesPerSecond: number, keys: string[]): Promise<string> {
  const upstream = res.start(process.execPath, ['--import', 'tsx', UPSTREAM_SCRIPT, path, String(bytesPerSecond), ...keys], { cwd: ROOT })
  return waitFor(
    'the fake upstream to listen',
    () => {
      if (upstream.child.exitCode !== null || upstream.child.signalCode !== null)
        throw new Error(`the fake upstream exited: ${upstream.stderr.slice(-1000)}`)
      const line = upstream.stdout.split('\n').find((l) => l.startsWith('{'))
      return line && (JSON.parse(line) as { bucketUrl: string }).bucketUrl
    },
    60_000,
    50,
  )
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
