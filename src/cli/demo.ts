// `gribswarm demo`, `npm run demo`: the offline demo, scripts/demo.ts. It is built from the test
// kit (fake upstream, GRIB fixtures, Debian's aria2 and libtorrent), which stays TypeScript and
// is not in build/, so it runs through tsx. In this process, with tsx's register API, rather
// than as a child `node --import tsx`: one process means Ctrl-C and a kill reach the demo once
// and directly (with --keep it waits for SIGINT, then stops the origin and the mirror it
// started; a parent forwarding signals would deliver a terminal's Ctrl-C twice), and its exit
// status is the command's. Carrying tsx's loader costs memory, which does not matter for a demo.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { COMMON_OPTIONS, fail, helpOrVersion } from './common.ts'

const HELP = `Usage: gribswarm demo [--keep]
       npm run demo [-- --keep]               (from a checkout)

Runs the whole gribswarm flow offline, on loopback: a local object store laid out like
Météo-France's serving CCSDS GRIB2 files, the daemon fetching, validating, seeding and
publishing them, aria2c and libtorrent downloading from its feeds, a field subset, a
mirror copying everything over BitTorrent, and v03 notifications when RabbitMQ runs on
127.0.0.1. Prints a summary and DEMO OK. Needs a checkout (the demo is built from the test
kit, not in the package) with npm ci done, and the Debian packages listed in README.md.

Options:
      --keep          leave the origin and the mirror running at the end (Ctrl-C stops them)
  -h, --help          this text
      --version       the version
`

let args
try {
  args = parseArgs({ options: { keep: { type: 'boolean' }, ...COMMON_OPTIONS } }).values
} catch (err) {
  fail(`${(err as Error).message}\n\n${HELP}`)
}
helpOrVersion(args, HELP)
// src/cli/ and build/cli/ are both two levels below the checkout's root.
const demo = new URL('../../scripts/demo.ts', import.meta.url)
if (!existsSync(demo))
  fail(`${fileURLToPath(demo)} is missing: the demo runs from a checkout (git clone, npm ci, then gribswarm demo or npm run demo)`)
let register: typeof import('tsx/esm/api').register
try {
  ;({ register } = await import('tsx/esm/api'))
} catch (err) {
  fail(`the demo needs tsx (a dependency of gribswarm: npm ci): ${(err as Error).message}`)
}
register()
// scripts/demo.ts reads its options from process.argv, as left by bin/gribswarm.js.
await import(demo.href)
