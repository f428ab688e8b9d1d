// gribswarm's tracker (src/tracker.ts) alone, in its own process, built as the daemon builds it:
// the configuration defaults (src/config.ts) with only host and port changed, and the published
// infohashes allowed one by one. Started by the tracker benchmark:
//   node --import tsx bench/lib/tracker-server.ts PORT WHITELIST_FILE
// (the file holds one hex infohash per line, the same file opentracker gets with -w), prints one
// JSON line {"port": ...} once HTTP, UDP and WebSocket listen on 127.0.0.1, and stops on
// SIGTERM/SIGINT.
import { readFile } from 'node:fs/promises'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { Tracker } from '../../src/tracker.ts'

const [port, whitelistFile] = process.argv.slice(2)
if (!(Number(port) > 0) || !whitelistFile) {
  process.stderr.write('usage: tracker-server.ts PORT WHITELIST_FILE\n')
  process.exit(2)
}
const config = loadConfig({ env: {}, overrides: { tracker: { host: '127.0.0.1', port: Number(port) } } })
const log = createLogger(config.log.level)
const tracker = new Tracker(config.tracker, { log: log.child({ stage: 'tracker' }) })
for (const infoHash of (await readFile(whitelistFile, 'utf8')).split('\n').filter(Boolean)) tracker.allow(infoHash)
await tracker.start()
process.stdout.write(`${JSON.stringify({ port: tracker.port })}\n`)

const stop = () => void tracker.stop().finally(() => process.exit(0))
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, stop)
// Orphaned (the parent was killed): do not stay behind.
setInterval(() => {
  if (process.ppid === 1) stop()
}, 1000).unref()
