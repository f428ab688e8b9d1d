// `gribswarm start` (alias `gribswarm daemon`, the name existing systemd units use), `npm start`:
// tracker, seeder, HTTP and the scheduled passes, until SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { COMMON_OPTIONS, CONFIG_HELP, fail, helpOrVersion, loadOrExit, runDaemon } from './common.ts'

const HELP = `Usage: gribswarm start [--config FILE]      (gribswarm daemon: the same)
       npm start -- [--config FILE]           (from a checkout)

Runs the gribswarm daemon: a pipeline pass on the schedule.cron expression (never two at
once), the bundled tracker, the seeder, and the HTTP server with the data, .torrent files,
feeds (/rss.xml /atom.xml /feed.json) and the status page (/). Expiry runs on its own timer.
As it starts it runs the checks of gribswarm doctor and logs one line for each.

Options:
  -c, --config FILE   configuration file merged over config/default.json
  -h, --help          this text
      --version       the version

${CONFIG_HELP}
`

let args
try {
  args = parseArgs({ options: { config: { type: 'string', short: 'c' }, ...COMMON_OPTIONS } }).values
} catch (err) {
  fail(`${(err as Error).message}\n\n${HELP}`)
}
helpOrVersion(args, HELP)
const { config, log } = loadOrExit(args.config)
await runDaemon(config, log, 'gribswarm daemon', { cron: config.schedule.cron })
