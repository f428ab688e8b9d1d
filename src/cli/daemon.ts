// `npm start`: tracker, seeder, HTTP and the scheduled passes, until SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { Daemon } from '../daemon.ts'
import { CONFIG_HELP, fail, loadOrExit } from './common.ts'

const HELP = `Usage: npm start -- [--config FILE]

Runs the gribswarm daemon: a pipeline pass on the schedule.cron expression (never two at
once), the bundled tracker, the seeder, and the HTTP server with the data, .torrent files,
feeds (/rss.xml /atom.xml /feed.json) and the status page (/). Expiry runs on its own timer.

Options:
  -c, --config FILE   configuration file merged over config/default.json
  -h, --help          this text

${CONFIG_HELP}
`

let args
try {
  args = parseArgs({ options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } }).values
} catch (err) {
  fail(`${(err as Error).message}\n\n${HELP}`)
}
if (args.help) {
  process.stdout.write(HELP)
  process.exit(0)
}
const { config, log } = loadOrExit(args.config)
let daemon: Daemon
try {
  daemon = await Daemon.start(config, log)
} catch (err) {
  fail(`could not start: ${(err as Error).message}`)
}
log.info('gribswarm daemon running', { dataDir: config.dataDir, cron: config.schedule.cron, status: `${config.http.publicBaseUrl}/` })

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1) // second signal: do not wait
    stopping = true
    log.info('stopping', { signal })
    daemon.stop().then(
      () => process.exit(0),
      (err: Error) => fail(`stopping: ${err.message}`),
    )
  })
}
