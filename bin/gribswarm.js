#!/usr/bin/env node
// `gribswarm daemon|fetch|mirror|get [options]`: the installed command. It runs the compiled
// command from build/ (`npm run build`, which `npm ci` runs through "prepare") in this very
// process: no TypeScript loader in memory, and signals reach the daemon directly.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const COMMANDS = {
  daemon: 'tracker, seeder, HTTP and the scheduled passes, until SIGINT/SIGTERM (npm start)',
  fetch: 'one pipeline pass now, then exit (npm run fetch)',
  mirror: "a reseeding node following another node's feed (npm run mirror)",
  get: 'fields as subsets over HTTP, whole files over BitTorrent, from the nodes (npm run get)',
}

const HELP = `Usage: gribswarm COMMAND [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, what]) => `  ${name.padEnd(8)} ${what}`)
  .join('\n')}

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
if (command === undefined) fail(`expected a command\n\n${HELP}`)
if (!Object.hasOwn(COMMANDS, command)) fail(`unknown command "${command}"\n\n${HELP}`)

const root = new URL('..', import.meta.url)
const entry = new URL(`build/cli/${command}.js`, root)
if (!existsSync(entry)) fail(`${fileURLToPath(entry)} does not exist: run \`npm run build\` in ${fileURLToPath(root)}`)
// The command parses process.argv itself: it sees its options only, as under `npm start --`.
process.argv.splice(2, 1)
await import(entry.href)
