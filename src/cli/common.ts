// What both commands share: loading the configuration once, and failing with one clear line.
import { ConfigError, loadConfig, type Config } from '../config.ts'
import { createLogger, type Logger } from '../log.ts'

export function loadOrExit(file: string | undefined): { config: Config; log: Logger } {
  try {
    const config = loadConfig({ file })
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
