// What the commands share: their version, loading the configuration once, failing with one
// clear line, and running the daemon until it is told to stop (loaded only then: `get` has no
// daemon).
import { readFileSync } from 'node:fs'
import { ConfigError, loadConfig, type Config, type LoadOptions } from '../config.ts'
import type { Daemon } from '../daemon.ts'
import { createLogger, type Logger } from '../log.ts'

/** package.json's version: src/cli/ and build/cli/ are both two levels below the package root. */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version

/** `--version` of every command: the same line as `gribswarm --version`. */
export function printVersion(): never {
  process.stdout.write(`gribswarm ${VERSION}\n`)
  process.exit(0)
}

/** The options every command takes: -h/--help and --version. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const

/** Prints `help` or the version and exits, if asked to. */
export function helpOrVersion(args: { help?: boolean; version?: boolean }, help: string): void {
  if (args.help) {
    process.stdout.write(help)
    process.exit(0)
  }
  if (args.version) printVersion()
}

export function loadOrExit(file: string | undefined, overrides?: LoadOptions['overrides']): { config: Config; log: Logger } {
  try {
    const config = loadConfig({ file, overrides })
    return { config, log: createLogger(config.log.level, config.log.format) }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`gribswarm: ${err.message}\n`)
    process.exit(2)
  }
}

export function fail(message: string): never {
  process.stderr.write(`gribswarm: ${message}\n`)
  process.exit(1)
}

export const CONFIG_HELP = `Configuration: config/default.json, then the file given by --config or GRIBSWARM_CONFIG,
then environment variables GRIBSWARM_<SECTION>__<KEY> (e.g. GRIBSWARM_HTTP__PORT=8081,
GRIBSWARM_SOURCE__PACKAGES=SP1,SP2). See README.md for every key.`

/** Node has no parent-death signal: the parent is polled. */
const PARENT_CHECK_MS = 1000

/** Calls `then` once this process's parent has exited (it is then re-parented). */
function whenParentExits(then: () => void): void {
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    then()
  }, PARENT_CHECK_MS)
  timer.unref()
}

/**
 * `gribswarm doctor`'s checks, run as the daemon starts, before it binds its ports (so that the
 * port check means something), each logged as one line: info when ok, warn, error when failed.
 * None stops the start: what would make the daemon unable to run (a port taken, a data
 * directory it cannot write) makes Daemon.start fail with its own error right after, and the
 * rest are conditions it runs through and that may change while it runs (a broker that comes up
 * later, disk freed by expiry, a public URL a proxy fixes); a GDAL unable to decode CCSDS lets
 * nothing through validation, so nothing invalid is published, and the error line says why.
 */
async function logDoctor(config: Config, log: Logger): Promise<void> {
  try {
    const { runChecks } = await import('../doctor.ts')
    for (const r of await runChecks(config, { ports: true, brokerTimeoutMs: 2000 })) {
      const at = r.status === 'ok' ? 'info' : r.status === 'warn' ? 'warn' : 'error'
      log[at](`doctor: ${r.check}: ${r.detail}`, { check: r.check, status: r.status, fix: r.fix })
    }
  } catch (err) {
    log.warn('doctor: the checks could not run', { error: err as Error })
  }
}

/**
 * Starts the daemon and runs it until SIGINT/SIGTERM (a second signal does not wait). Under npm
 * (npm start, npm run mirror, npx gribswarm) it also stops when its parent exits: npm runs the
 * command through `sh -c` and forwards SIGTERM to that shell, which dies without passing it on,
 * so `kill <npm>` left the daemon running under init with its ports and the data directory's
 * lock. Elsewhere (systemd, nohup, setsid) a parent going away is no reason to stop.
 */
export async function runDaemon(config: Config, log: Logger, what: string, context: Record<string, unknown>): Promise<void> {
  await logDoctor(config, log)
  let daemon: Daemon
  try {
    const { Daemon } = await import('../daemon.ts')
    daemon = await Daemon.start(config, log)
  } catch (err) {
    fail(`could not start: ${(err as Error).message}`)
  }
  log.info(`${what} running`, { dataDir: config.dataDir, ...context, status: `${config.http.publicBaseUrl}/` })
  let stopping = false
  const stop = (why: Record<string, unknown>) => {
    if (stopping) process.exit(1)
    stopping = true
    log.info('stopping', why)
    daemon.stop().then(
      () => process.exit(0),
      (err: Error) => fail(`stopping: ${err.message}`),
    )
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop({ signal }))
  if (process.env.npm_lifecycle_event) whenParentExits(() => stop({ reason: 'the parent process (npm or its shell) exited' }))
}
