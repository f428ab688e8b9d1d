#!/usr/bin/env -S node --initial-old-space-size=64
// `gribswarm COMMAND [options]`: the installed command. It runs the compiled command from build/
// (`npm run build`, which `npm ci` runs through "prepare") in this very process: no TypeScript
// loader in memory, and signals reach the daemon directly.
//
// The node flags above are the ones every daemon runs with (npm scripts run this file, the
// systemd unit and the benchmark repeat them). --initial-old-space-size=64: where V8 sizes its
// heap from a small machine or cgroup (a 549 MB limit in 1 GiB), it keeps the old generation's
// GC limit ~12 MB above a ~20 MB live heap, and the download's stream of socket buffers then set
// off a full GC every ~150 ms: ~100 of them for a 927 MB file, ~6 of its 14 CPU-s on one core.
// With no full GC below 64 MB there was one, and the file cost 8.4 CPU-s.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Command name → [the module in build/cli/, what it does]. */
const COMMANDS = {
  start: ['start', 'the daemon: tracker, seeder, HTTP and the scheduled passes, until SIGINT/SIGTERM (npm start)'],
  fetch: ['fetch', 'one pipeline pass now, then exit (npm run fetch)'],
  mirror: ['mirror', "a reseeding node following another node's feed (npm run mirror)"],
  get: ['get', 'fields as subsets over HTTP, whole files over BitTorrent, from the nodes (npm run get)'],
  doctor: ['doctor', 'checks ports, data directory, disk, GDAL/CCSDS, brokers and the public URL (npm run doctor)'],
  demo: ['demo', 'the whole flow offline on loopback, from a checkout (npm run demo)'],
  // The command's earlier name, which existing systemd units run.
  daemon: ['start', 'the same as start'],
}

const root = new URL('..', import.meta.url)
const version = () => JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).version

const HELP = `Usage: gribswarm COMMAND [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, [, what]]) => `  ${name.padEnd(8)} ${what}`)
  .join('\n')}

Options:
  -h, --help      this text
      --version   the version

gribswarm COMMAND --help describes the command and its options.
`

function fail(message) {
  process.stderr.write(`gribswarm: ${message}\n`)
  process.exit(1)
}

const command = process.argv[2]
if (command === '-h' || command === '--help' || command === 'help') {
  process.stdout.write(HELP)
  process.exit(0)
}
if (command === '--version' || command === '-v' || command === 'version') {
  process.stdout.write(`gribswarm ${version()}\n`)
  process.exit(0)
}
if (command === undefined) fail(`expected a command\n\n${HELP}`)
if (!Object.hasOwn(COMMANDS, command)) fail(`unknown command "${command}"\n\n${HELP}`)

const entry = new URL(`build/cli/${COMMANDS[command][0]}.js`, root)
if (!existsSync(entry)) fail(`${fileURLToPath(entry)} does not exist: run \`npm run build\` in ${fileURLToPath(root)}`)
// The command parses process.argv itself: it sees its options only, as under `npm start --`.
process.argv.splice(2, 1)
await import(entry.href)
