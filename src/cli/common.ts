// What both commands share: loading the configuration once, and failing with one clear line.
import { ConfigError, loadConfig, type Config, type LoadOptions } from '../config.ts'
import { Daemon } from '../daemon.ts'
import { createLogger, type Logger } from '../log.ts'

export function loadOrExit(file: string | undefined, overrides?: LoadOptions['overrides']): { config: Config; log: Logger } {
  try {
    const config = loadConfig({ file, overrides })
    return { config, log: createLogger(config.log.level) }
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

/** Starts the daemon and runs it until SIGINT/SIGTERM (a second signal does not wait). */
export async function runDaemon(config: Config, log: Logger, what: string, context: Record<string, unknown>): Promise<void> {
  let daemon: Daemon
  try {
    daemon = await Daemon.start(config, log)
  } catch (err) {
    fail(`could not start: ${(err as Error).message}`)
  }
  log.info(`${what} running`, { dataDir: config.dataDir, ...context, status: `${config.http.publicBaseUrl}/` })
  let stopping = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) process.exit(1)
      stopping = true
      log.info('stopping', { signal })
      daemon.stop().then(
        () => process.exit(0),
        (err: Error) => fail(`stopping: ${err.message}`),
      )
    })
  }
}
