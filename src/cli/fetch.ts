// `npm run fetch`: one pipeline pass now, then exit. Progress bars on a terminal, log lines otherwise.
import { parseArgs } from 'node:util'
import cliProgress from 'cli-progress'
import { openPipeline } from '../daemon.ts'
import type { PassObserver } from '../pipeline.ts'
import { parseRun, type Candidate } from '../source.ts'
import { COMMON_OPTIONS, CONFIG_HELP, fail, helpOrVersion, loadOrExit } from './common.ts'

const HELP = `Usage: gribswarm fetch [--run TIME]... [--package NAME]... [--dry-run] [--config FILE]
       npm run fetch -- [options]             (from a checkout)

Runs one pipeline pass now: finds new upstream files, downloads them, validates them with
GDAL, makes their torrents and publishes them in the data directory, then exits. A running
daemon seeds them; if the daemon holds the data directory, this command refuses to run.

Options:
      --run TIME       a run to look at, e.g. 2026-11-23T00:00:00Z (repeatable;
                       default: the newest source.lookbackRuns runs)
      --package NAME   only this package, e.g. SP1 (repeatable; default: source.packages)
      --dry-run        list what would be fetched, fetch nothing
  -c, --config FILE    configuration file merged over config/default.json
  -h, --help           this text
      --version        the version

Exit status: 0 when every file was published or nothing was new, 1 when some failed,
2 for a configuration error.

${CONFIG_HELP}
`

let args
try {
  args = parseArgs({
    options: {
      run: { type: 'string', multiple: true },
      package: { type: 'string', multiple: true },
      'dry-run': { type: 'boolean' },
      config: { type: 'string', short: 'c' },
      ...COMMON_OPTIONS,
    },
  }).values
} catch (err) {
  fail(`${(err as Error).message}\n\n${HELP}`)
}
helpOrVersion(args, HELP)
let runs: string[] | undefined
try {
  runs = args.run?.map(parseRun)
} catch (err) {
  fail((err as Error).message)
}
const unknown = args.package?.filter((p) => !/^[\w.-]+$/.test(p))
if (unknown?.length) fail(`--package ${unknown.join(', ')}: not a package name`)
const { config, log } = loadOrExit(args.config)

/** Progress bars on a terminal; on a pipe or in a log file, the log lines say enough. */
function progressBars(): { observer: PassObserver; stop(): void } {
  if (!process.stderr.isTTY) return { observer: {}, stop() {} }
  const multibar = new cliProgress.MultiBar(
    {
      format: ' {bar} {percentage}% | {value}/{total} MB | {name} {status}',
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  )
  const bars = new Map<string, cliProgress.SingleBar>()
  const mb = (bytes: number) => Math.round(bytes / 1e6)
  const bar = (c: Candidate) =>
    bars.get(c.relPath) ?? bars.set(c.relPath, multibar.create(mb(c.size ?? 0), 0, { name: c.fileName, status: '' })).get(c.relPath)!
  return {
    observer: {
      started: (c, attempt) => bar(c).update(0, { status: attempt > 1 ? `(attempt ${attempt})` : '' }),
      progress: (c, received, total) => bar(c).update(mb(received), { total: mb(total ?? 0) }),
      finished: (c, outcome, detail) => bar(c).update({ status: outcome === 'failed' ? `FAILED: ${detail}` : outcome }),
    },
    stop: () => multibar.stop(),
  }
}

let opened
try {
  opened = await openPipeline(config, log, { dryRun: args['dry-run'] })
} catch (err) {
  fail((err as Error).message)
}
const { pipeline, unlock } = opened
const bars = progressBars()
const abort = new AbortController()
process.once('SIGINT', () => abort.abort())
try {
  const report = await pipeline.runPass({ runs, packages: args.package, dryRun: args['dry-run'], signal: abort.signal }, bars.observer)
  bars.stop()
  if (args['dry-run']) {
    for (const c of report.todo) process.stdout.write(`${c.url}\t${c.size ?? '?'} bytes\t→ ${c.relPath}\n`)
    process.stdout.write(`${report.todo.length} to fetch, ${report.alreadyDone} already done, runs ${report.runs.join(' ')}\n`)
  } else {
    process.stdout.write(
      `published ${report.published.length}, failed ${report.failed.length}, deferred by the disk budget ${report.deferred.length}, already done ${report.alreadyDone}\n`,
    )
    for (const f of report.failed) process.stdout.write(`FAILED ${f.relPath}: ${f.reason}\n`)
  }
  process.exitCode = report.failed.length > 0 ? 1 : 0
} catch (err) {
  bars.stop()
  process.stderr.write(`gribswarm: pass failed: ${(err as Error).message}\n`)
  process.exitCode = 1
} finally {
  await unlock()
}
