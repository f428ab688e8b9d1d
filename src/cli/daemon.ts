// `npm start`: tracker, seeder, HTTP and the scheduled passes, until SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { CONFIG_HELP, fail, loadOrExit, runDaemon } from './common.ts'

const HELP = `Usage: gribswarm daemon [--config FILE]
       npm start -- [--config FILE]           (from a checkout)

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
await runDaemon(config, log, 'gribswarm daemon', { cron: config.schedule.cron })
