// `npm run bench [-- --quick]`: measures gribswarm's targets, each against a reference
// measured in the same run, on 127.0.0.1 only (the hosts scenario: on a LAN of network
// namespaces). Progress goes to stderr; the Markdown table to stdout and to results/bench.md
// (full mode; quick mode, which the tests run, writes to results/quick/ so that the committed
// figures stay). Exit status 0 when every scenario ran (targets missed or not), 1 when one crashed.
//
// Layout. The benchmark owns bench/; what it shares with the tests is the test kit's (test/kit/,
// see test/kit/helpers.ts), which the tests own.
//   bench/bench.ts         this entry: options, the scenario list, the table, the machine facts
//   bench/scenarios/       one module per scenario, each (ctx: ScenarioContext) => Promise<ScenarioResult>
//     seeding.ts           seeding throughput to one libtorrent client (vs transmission-daemon, qbittorrent-nox)
//     create.ts            torrent creation from a file on disk (vs mktorrent)
//     publishing.ts        file listable upstream → item in RSS (vs curl, gdalinfo, mktorrent, transmission-daemon in turn)
//     memory.ts            resident memory seeding 40 torrents, idle and under 16 clients (vs transmission-daemon)
//     offload.ts           origin offload, a capped origin and 8/32 clients (vs transmission-daemon, qbittorrent-nox,
//                          nginx), and with 2 mirrors; chart in results/offload.svg
//     hosts.ts             origin offload with stock clients as separate hosts, web seed on and off
//     notify.ts            published → v03 message at a subscriber (vs a bare AMQP publish)
//     pump.ts              an sr3 post → the file seeding on a follower (vs a plain HTTP download)
//     fields.ts            the GRIB2 inventory's cost (vs publish latency), a one-field subset (vs the whole file)
//     tracker.ts           tracker announces/s over HTTP and UDP, 10,000 peers over 40 torrents (vs opentracker)
//     smallbox.ts          the daemon on one core in a 1 GiB memory cgroup: publish time (vs curl), CPU-s per GB,
//                          bytes re-fetched after a crash (vs curl -C -), memory (vs transmission-daemon),
//                          tracker (vs opentracker), each reference in the same box
//   bench/lib/             what only the benchmark uses:
//     util.ts              progress lines, Row/ScenarioContext/ScenarioResult, results directory, formatting
//     small-box.ts         the smallbox scenario's box (taskset and a memory cgroup), CPU and memory of a process tree
//     references.ts        the reference tools (transmission-daemon, qbittorrent-nox, nginx, mktorrent), versions
//     services.ts          the fixture cache, an upstream in its own process, the RabbitMQ broker
//     upstream-server.ts, tracker-server.ts, announce-load.ts   child-process entry points
//     offload-chart.ts     the offload scenario's SVG chart
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Resources } from '../test/kit/resources.ts'
import { benchCreate } from './scenarios/create.ts'
import { benchDashboard } from './scenarios/dashboard.ts'
import { benchFields } from './scenarios/fields.ts'
import { benchHosts } from './scenarios/hosts.ts'
import { benchMemory } from './scenarios/memory.ts'
import { benchMetrics } from './scenarios/metrics.ts'
import { benchNotify } from './scenarios/notify.ts'
import { benchOffload } from './scenarios/offload.ts'
import { benchPublishing } from './scenarios/publishing.ts'
import { benchPump } from './scenarios/pump.ts'
import { benchSeeding } from './scenarios/seeding.ts'
import { benchSmallbox } from './scenarios/smallbox.ts'
import { benchTracker } from './scenarios/tracker.ts'
import { missingTools, referenceVersions } from './lib/references.ts'
import { progress, resultsDir, type Row, type Scenario } from './lib/util.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))

const HELP = `Usage: npm run bench -- [--quick]

Measures gribswarm against its targets (seeding throughput, publishing latency, resident
memory, origin offload with mirrors, notification latency), each with a reference measured
in the same run, on 127.0.0.1 only. The offload (full mode) and notification scenarios need RabbitMQ
(started with scripts/broker.sh when it is not running). The smallbox scenario runs the daemon
and its references on one core in a 1 GiB memory cgroup (as root; skipped where it cannot).
Prints a Markdown table and writes it to results/bench.md. The reference tools and peers come
from Debian: bash scripts/bench-setup.sh installs them (as root).

Options:
  --quick          small sizes (a few minutes), for CI
  --only LIST      run only some scenarios: seeding,create,publishing,memory,offload,hosts,notify,pump,fields,tracker,metrics,dashboard,
                   smallbox (comma-separated)
  --daemon HOW     how the memory and smallbox scenarios run the daemon: build (compiled JavaScript, as
                   npm start; the default) or tsx (src/ through the TypeScript loader)
  -h, --help       this text
`

async function machineFacts(): Promise<string[]> {
  const version = async (pkg: string) =>
    (JSON.parse(await readFile(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), 'utf8')) as { version: string }).version
  const cpu = cpus()
  return [
    `CPU: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), RAM ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}`,
    `Node ${process.version}, webtorrent ${await version('webtorrent')}, bittorrent-tracker ${await version('bittorrent-tracker')}, gdal-async ${await version('gdal-async')}`,
    ...(await referenceVersions()),
  ]
}

function table(rows: Row[]): string {
  const header = ['scenario', 'gribswarm', 'reference', 'ratio', 'target', 'met?']
  const cells = rows.map((r) => [r.scenario, r.gribswarm, r.reference, r.ratio, r.target, r.met])
  const escape = (text: string) => text.replace(/\|/g, '\\|')
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...cells.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ].join('\n')
}

async function main(): Promise<number> {
  let args
  try {
    args = parseArgs({
      options: { quick: { type: 'boolean' }, only: { type: 'string' }, daemon: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }).values
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (args.help) {
    process.stdout.write(HELP)
    return 0
  }
  const quick = args.quick ?? false
  const runner = args.daemon
  if (runner !== undefined && runner !== 'build' && runner !== 'tsx') {
    process.stderr.write(`--daemon must be build or tsx, not ${runner}\n\n${HELP}`)
    return 2
  }
  // Installing system packages is left to the user (or CI's script): a benchmark should not change the machine.
  const missing = await missingTools()
  if (missing.length) {
    process.stderr.write(
      `The benchmark needs ${missing.map((t) => t.binary).join(', ')} (Debian packages ${missing.map((t) => t.pkg).join(' ')}).\n` +
        'Install them with: bash scripts/bench-setup.sh (as root)\n',
    )
    return 2
  }
  const all: Array<[string, string, Scenario]> = [
    ['seeding', 'Seeding throughput', benchSeeding],
    ['create', 'Torrent creation', benchCreate],
    ['publishing', 'Publishing latency', benchPublishing],
    ['memory', 'Resident memory', benchMemory],
    ['offload', 'Origin offload', benchOffload],
    ['hosts', 'Origin offload, stock clients as separate hosts', benchHosts],
    ['notify', 'Notification latency', benchNotify],
    ['pump', 'Following a Sarracenia pump', benchPump],
    ['fields', 'GRIB2 inventory and field subsets', benchFields],
    ['tracker', 'Tracker announces', benchTracker],
    ['metrics', 'Prometheus metrics scrape', benchMetrics],
    ['dashboard', 'Status page history', benchDashboard],
    ['smallbox', 'Small box: one core, 1 GiB', benchSmallbox],
  ]
  const only = args.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const unknown = only?.filter((id) => !all.some(([known]) => known === id))
  if (unknown?.length) {
    process.stderr.write(`unknown scenario ${unknown.join(', ')}\n\n${HELP}`)
    return 2
  }
  const scenarios = all.filter(([id]) => !only || only.includes(id)).map(([, name, run]) => [name, run] as const)
  const mode = quick ? 'quick' : 'full'
  const res = new Resources({ report: progress })

  // Bounded in time: a hung step ends the run (after cleaning up) instead of hanging CI.
  const limitMs = (quick ? 12 : 60) * 60_000
  const watchdog = setTimeout(() => {
    progress(`giving up: the benchmark took more than ${limitMs / 60_000} minutes`)
    void res.cleanup().finally(() => process.exit(1))
  }, limitMs)
  let interrupted = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true
      progress(`${signal}: cleaning up`)
      void res.cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
    })
  }

  const rows: Row[] = []
  const notes: string[] = []
  let crashed = false
  progress(`gribswarm benchmark, ${mode} mode, root ${ROOT}`)
  try {
    for (const [name, run] of scenarios) {
      if (interrupted) break
      // Each scenario gets its own resources, released before the next one starts.
      const scoped = new Resources({ report: progress })
      res.defer(`clean up after ${name}`, () => scoped.cleanup())
      try {
        const result = await run({ res: scoped, quick, daemon: runner })
        rows.push(...result.rows)
        notes.push(...result.notes)
      } catch (err) {
        crashed = true
        const message = (err as Error).stack ?? String(err)
        progress(`${name} FAILED: ${message}`)
        rows.push({ scenario: name, gribswarm: 'error', reference: '-', ratio: '-', target: '-', met: 'error' })
        notes.push(`${name} failed: ${(err as Error).message.split('\n')[0]}`)
      } finally {
        await scoped.cleanup()
      }
    }

    const facts = await machineFacts()
    const markdown = [
      `## gribswarm benchmark, ${mode} mode, ${new Date().toISOString()}`,
      '',
      table(rows),
      '',
      'Ratio = gribswarm ÷ reference. Everything on 127.0.0.1, no DHT.',
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      'Machine:',
      '',
      ...facts.map((f) => `- ${f}`),
      '',
    ].join('\n')
    process.stdout.write(markdown)
    const results = join(resultsDir(quick), 'bench.md')
    await mkdir(resultsDir(quick), { recursive: true })
    await writeFile(results, markdown)
    progress(`written to ${results}`)
  } finally {
    clearTimeout(watchdog)
    await res.cleanup()
  }
  return crashed ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench crashed: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  },
)
