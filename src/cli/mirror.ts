// `npm run mirror -- <feed URL>`: a volunteer's reseeding node in one command. It follows
// one gribswarm node's feed, copies what it publishes over BitTorrent, and seeds it, with
// defaults fit for a spare machine. Everything else is the daemon's configuration.
import { parseArgs } from 'node:util'
import { COMMON_OPTIONS, CONFIG_HELP, fail, helpOrVersion, loadOrExit, runDaemon } from './common.ts'

const HELP = `Usage: gribswarm mirror FEED_URL [options]
       npm run mirror -- FEED_URL [options]   (from a checkout)

Turns this machine into a mirror of a gribswarm node: follows FEED_URL (the node's
/feed.json or /rss.xml), downloads each new file over BitTorrent (joining the origin's
swarm, its web seed as fallback), checks it (pieces, SHA-512, GDAL), seeds it and serves it
over HTTP with its own feeds, until the origin's expiry time.

Options:
      --public-url URL   how others reach this machine (default http://localhost:PORT)
      --port N           HTTP port (default 8080); the tracker uses 6969, BitTorrent 51413
      --data-dir DIR     where files are kept (default ./var/mirror)
      --budget-gb N      disk budget in GB (default 20)
      --upload-mbps N    upload limit in megabits per second, 0 = none (default 50)
      --accept REGEX     only files whose path matches (repeatable; default: all), e.g. /SP1/
  -c, --config FILE      a configuration file for everything else (brokers, ports...)
  -h, --help             this text
      --version          the version

${CONFIG_HELP}
`

let parsed
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      'public-url': { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'budget-gb': { type: 'string' },
      'upload-mbps': { type: 'string' },
      accept: { type: 'string', multiple: true },
      config: { type: 'string', short: 'c' },
      ...COMMON_OPTIONS,
    },
  })
} catch (err) {
  fail(`${(err as Error).message}\n\n${HELP}`)
}
const { values: args, positionals } = parsed
helpOrVersion(args, HELP)
if (positionals.length !== 1) fail(`expected one feed URL, got ${positionals.length}\n\n${HELP}`)

const number = (name: string, text: string | undefined, fallback: number): number => {
  if (text === undefined) return fallback
  const value = Number(text)
  if (!Number.isFinite(value) || value < 0) fail(`--${name} ${text}: expected a number ≥ 0`)
  return value
}
const port = number('port', args.port, 8080)
const { config, log } = loadOrExit(args.config, {
  dataDir: args['data-dir'] ?? './var/mirror',
  source: { enabled: false },
  mirror: { feeds: [positionals[0]!], ...(args.accept ? { accept: args.accept } : {}) },
  // Without --public-url, the configuration's (by default http://localhost:<port>).
  http: { port, ...(args['public-url'] ? { publicBaseUrl: args['public-url'] } : {}) },
  disk: { budgetBytes: Math.round(number('budget-gb', args['budget-gb'], 20) * 1e9) },
  uplink: { bytesPerSec: Math.round((number('upload-mbps', args['upload-mbps'], 50) * 1e6) / 8) },
})
await runDaemon(config, log, 'mirror', { follows: positionals[0] })
