// `gribswarm get`: the consumer. Reads a node's catalog (/api/catalog), takes the fields asked
// for as one subset per source file (the node's subset endpoint, or HTTP ranges that the
// catalog locates and the .idx confirms) and whole files over BitTorrent. Every file is
// checked before it takes its final name. A client only: no daemon configuration, just HTTP
// and BitTorrent to the nodes given.
import { rmSync } from 'node:fs'
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import cliProgress from 'cli-progress'
import WebTorrent, { type Torrent } from 'webtorrent'
import type { Catalog, CatalogFile } from '../catalog.ts'
import { downloadTorrent, sha512Of } from '../download.ts'
import { createLogger } from '../log.ts'
// Importing patches.ts also applies its guards on every BitTorrent wire of this process.
import { refuseSelfConnections, removeTorrent } from '../patches.ts'
import { parseRun } from '../source.ts'
import {
  describeAvailable,
  fieldQueryString,
  missingNames,
  parseFieldQuery,
  wholeMessages,
  type AvailableFields,
  type FieldQuery,
} from '../subset.ts'
import { decodeTorrent } from '../torrent.ts'
import { encodeRelPath } from '../urls.ts'
import { validateGrib } from '../validate.ts'
import { COMMON_OPTIONS, fail, helpOrVersion } from './common.ts'

const HELP = `Usage: gribswarm get [--from URL]... [--latest | --run TIME] [--package NAME]... [--grid NAME]
                     [--param LIST] [--level LIST] [--steps LIST] [--via subset|idx]
                     [--whole PACKAGE]... [--seed-minutes N] [--timeout-minutes N] [--out DIR]
       npm run get -- [options]               (from a checkout)

Takes forecast data from gribswarm nodes: the fields asked for, as one file per source file
holding only their GRIB2 messages, and whole files over BitTorrent. Each file is checked
before it gets its name: a subset's length, its messages and their fields, each message
decoded with GDAL; a whole file's pieces and SHA-512.

Options:
      --from URL          a node, origin or mirror (repeatable: the catalog comes from the
                          first that answers, each download falls back to the next ones;
                          default http://localhost:8080)
      --latest            the newest run that has what is asked for (the default)
      --run TIME          this run, e.g. 2026-11-23T00:00:00Z
      --package NAME      subsets of this package's files only, e.g. SP1 (repeatable)
      --grid NAME         files of this grid only, e.g. 01
      --param LIST        parameters, e.g. TMP,UGRD
      --level LIST        levels, e.g. 2-HTGL,10-HTGL
      --steps LIST        forecast hours, or intervals of them, e.g. 0-48 or 6,12
      --via subset|idx    subset: the node's subset endpoint (default); idx: HTTP ranges of
                          the data file, the way Range-based tools read it
      --whole PACKAGE     every file of this package, whole, over BitTorrent (repeatable)
      --seed-minutes N    go on seeding the whole files N minutes once all are here (default 0)
      --timeout-minutes N a whole file not complete by then fails (default 60)
      --out DIR           where files go (default .); a subset is named <file>.subset.grib2
  -h, --help              this text
      --version           the version

Prints one line per file written: its path, its size and how many fields it holds.

Exit status: 0 when everything asked for was fetched and checked, 1 when something is
missing or failed (each named on stderr), 2 for bad options.
`

function usage(message: string): never {
  process.stderr.write(`gribswarm: ${message} (gribswarm get --help lists the options)\n`)
  process.exit(2)
}

let args
try {
  args = parseArgs({
    options: {
      from: { type: 'string', multiple: true },
      latest: { type: 'boolean' },
      run: { type: 'string' },
      package: { type: 'string', multiple: true },
      grid: { type: 'string' },
      param: { type: 'string', multiple: true },
      level: { type: 'string', multiple: true },
      steps: { type: 'string', multiple: true },
      via: { type: 'string' },
      whole: { type: 'string', multiple: true },
      'seed-minutes': { type: 'string' },
      'timeout-minutes': { type: 'string' },
      out: { type: 'string' },
      ...COMMON_OPTIONS,
    },
  }).values
} catch (err) {
  usage((err as Error).message)
}
helpOrVersion(args, HELP)
const nodes = (args.from ?? ['http://localhost:8080']).map((url) => {
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) usage(`--from ${url}: not an http(s) URL`)
  return url.replace(/\/+$/, '')
})
if (args.latest && args.run) usage('--latest and --run: choose one')
let run = 'latest'
let fieldQuery: FieldQuery
try {
  if (args.run) run = parseRun(args.run)
  fieldQuery = parseFieldQuery({ param: args.param, level: args.level, step: args.steps })
} catch (err) {
  usage((err as Error).message)
}
const wantSubsets = Boolean(fieldQuery.params || fieldQuery.levels || fieldQuery.steps)
const wholePackages = args.whole ?? []
if (!wantSubsets && !wholePackages.length) usage('nothing asked for: give --param, --level or --steps for subsets, or --whole PACKAGE')
const via = args.via ?? 'subset'
if (via !== 'subset' && via !== 'idx') usage(`--via ${via}: expected subset or idx`)
const minutes = (name: 'seed-minutes' | 'timeout-minutes', fallback: number, least: number) => {
  const value = Number(args[name] ?? fallback)
  // setTimeout waits at most 2^31 - 1 ms (24.8 days).
  if (!(value >= least && value <= 35_000)) usage(`--${name} ${args[name]}: expected minutes, from ${least} to 35000`)
  return value
}
const seedMinutes = minutes('seed-minutes', 0, 0)
const timeoutMinutes = minutes('timeout-minutes', 60, 1)
const out = args.out ?? '.'
const grid = args.grid

interface Output {
  path: string
  bytes: number
  fields: number
}

/** A network error's reason: fetch wraps it ("fetch failed", cause "connect ECONNREFUSED …"). */
const reason = (err: unknown) => ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message

/** GET `url`, expecting `status`; otherwise an error naming the URL and the reason (a node's JSON `error` text). */
async function get(url: string, headers: Record<string, string> = {}, status = 200): Promise<Response> {
  let response: Response
  try {
    response = await fetch(url, { headers })
  } catch (err) {
    throw new Error(`GET ${url}: ${reason(err)}`)
  }
  if (response.status === status) return response
  const body = (await response.text().catch(() => '')).trim()
  let said = body.slice(0, 500)
  try {
    said = (JSON.parse(body) as { error?: string }).error ?? said
  } catch {
    // not JSON: the text itself
  }
  throw new Error(`GET ${url}: HTTP ${response.status}${said ? `: ${said}` : ''}`)
}

/** The whole body of a small resource (catalog, .idx, .torrent). */
async function getBody(url: string): Promise<Buffer> {
  const response = await get(url)
  try {
    return Buffer.from(await response.arrayBuffer())
  } catch (err) {
    throw new Error(`GET ${url}: cut: ${reason(err)}`)
  }
}

/** Writes a response's body to `file`, which must receive exactly `length` bytes. */
async function save(response: Response, url: string, file: FileHandle, length: number, progress: (bytes: number) => void) {
  let received = 0
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      received += chunk.length
      if (received > length) break
      await file.write(chunk)
      progress(chunk.length)
    }
  } catch (err) {
    throw new Error(`GET ${url}: cut after ${received} bytes: ${reason(err)}`)
  }
  if (received !== length) throw new Error(`GET ${url}: ${received > length ? 'more than' : received} bytes, expected ${length}`)
}

/** `tryNode` on each node in turn until one succeeds; the error names every attempt. */
async function fromNodes<T>(what: string, tryNode: (node: string, attempt: number) => Promise<T>): Promise<T> {
  const failures: string[] = []
  for (const [i, node] of nodes.entries()) {
    try {
      return await tryNode(node, i + 1)
    } catch (err) {
      failures.push(`attempt ${i + 1}/${nodes.length}, ${node}: ${(err as Error).message}`)
      // On a terminal, the progress bar shows the next attempt instead.
      if (!multibar && i + 1 < nodes.length) process.stderr.write(`${what}: ${failures.at(-1)}; trying the next node\n`)
    }
  }
  throw new Error(`${what}: ${failures.join('\n  ')}`)
}

/** A link of the catalog on `node`: the catalog's links carry the base URL of the node that made it. */
function rebase(url: string, file: CatalogFile, node: string): string {
  const base = file.links.http.slice(0, -`/data/${encodeRelPath(file.relPath)}`.length)
  if (!url.startsWith(base)) throw new Error(`${url} is not under ${base}, where the catalog's links are`)
  return node + url.slice(base.length)
}

/** The catalog of what is asked for, from the first node that answers. */
async function readCatalog(run: string, packages: string[] | undefined, fields?: FieldQuery): Promise<{ catalog: Catalog; node: string }> {
  const query = new URLSearchParams({ run })
  if (packages) query.set('package', packages.join(','))
  if (grid) query.set('grid', grid)
  const search = [query.toString(), fields ? fieldQueryString(fields) : ''].filter(Boolean).join('&')
  return fromNodes('the catalog', async (node) => {
    const url = `${node}/api/catalog?${search}`
    const body = await getBody(url)
    let catalog: Catalog | undefined
    try {
      catalog = JSON.parse(body.toString()) as Catalog
    } catch {
      // not JSON: not a catalog, said below
    }
    if (!Array.isArray(catalog?.runs)) throw new Error(`GET ${url}: not a gribswarm catalog`)
    return { catalog, node }
  })
}

/** The names asked for that none of `has` answers to (case-insensitive), as "param RH", "level 2-HTGL", "step 0-48". */
function lacking(query: FieldQuery, has: AvailableFields): string[] {
  const includes = (names: string[], name: string) => names.some((n) => n.toLowerCase() === name.toLowerCase())
  return missingNames(query, {
    param: (p) => includes(has.param, p),
    level: (l) => includes(has.level, l),
    step: (s) => has.step.some((hour) => hour >= s.from && hour <= s.to),
  }).map(([key, name]) => `${key} ${name}`)
}

/** Progress bars on a terminal; elsewhere one line per file on stderr once it is done. */
const multibar = process.stderr.isTTY
  ? new cliProgress.MultiBar(
      {
        format: ' {bar} {percentage}% | {value}/{total} MB | {name} {status}',
        formatValue: (value, _options, type) => (type === 'value' || type === 'total' ? (value / 1e6).toFixed(1) : String(value)),
        hideCursor: true,
        clearOnComplete: false,
        stream: process.stderr,
      },
      cliProgress.Presets.shades_classic,
    )
  : undefined

function transfer(name: string, total: number) {
  const bar = multibar?.create(total, 0, { name, status: '' })
  return {
    attempt: (attempt: number, node: string) => bar?.update(0, { status: attempt > 1 ? `(attempt ${attempt}, ${node})` : '' }),
    add: (bytes: number) => bar?.increment(bytes),
    finish: (detail: string) => (bar ? bar.update({ status: 'checked' }) : process.stderr.write(`${name}: ${detail}\n`)),
  }
}

/** Files being written, removed if the command is interrupted: nothing partial is left under a final name, nor beside it. */
const temporary = new Set<string>()

/** The --via idx way: the fields' messages by HTTP ranges of the data file, once the node's .idx agrees with the catalog on where they lie. */
async function fetchRanges(file: CatalogFile, node: string, temp: string, progress: (bytes: number) => void): Promise<string> {
  if (!file.links.idx) throw new Error(`${file.fileName} has no .idx: it is not GRIB2`)
  const idxUrl = rebase(file.links.idx, file, node)
  const offsets = new Map<number, number>()
  for (const line of (await getBody(idxUrl)).toString().split('\n')) {
    const m = /^(\d+)(?:\.\d+)?:(\d+):/.exec(line)
    if (m) offsets.set(Number(m[1]), Number(m[2]))
  }
  const starts = [...new Set(offsets.values())].sort((a, b) => a - b)
  const messages = wholeMessages(file.fields)
  for (const { message, offset, length } of messages) {
    const start = offsets.get(message)
    const end = starts.find((s) => s > (start ?? Infinity)) ?? file.size
    if (start === undefined) throw new Error(`${idxUrl}: no message ${message}`)
    if (start !== offset || end !== offset + length)
      throw new Error(`${idxUrl}: message ${message} spans bytes ${start}-${end}, the catalog says ${offset}-${offset + length}`)
  }
  const url = rebase(file.links.http, file, node)
  const output = await open(temp, 'w')
  try {
    // Adjacent messages are one range.
    const ranges: Array<{ offset: number; length: number }> = []
    for (const m of messages) {
      const last = ranges.at(-1)
      if (last && last.offset + last.length === m.offset) last.length += m.length
      else ranges.push({ offset: m.offset, length: m.length })
    }
    for (const { offset, length } of ranges) {
      const bytes = `${offset}-${offset + length - 1}`
      const response = await get(url, { range: `bytes=${bytes}` }, 206)
      const contentRange = response.headers.get('content-range')
      if (contentRange !== `bytes ${bytes}/${file.size}`)
        throw new Error(`GET ${url}: Content-Range "${contentRange}", asked for bytes ${bytes} of ${file.size}`)
      await save(response, url, output, length, progress)
    }
  } finally {
    await output.close()
  }
  return url
}

/**
 * A subset as received: a clean sequence of GRIB messages, each framed as it says, ending
 * "7777", its sections read (parseGribMessage) and decoded by GDAL (validateGrib); then the
 * messages expected, in order and no other, holding every field asked for.
 */
async function checkSubset(path: string, file: CatalogFile): Promise<void> {
  const { inventory } = await validateGrib(path)
  const expected = wholeMessages(file.fields)
  const lengths = [...new Map(inventory.map((f) => [f.message, f.length])).values()]
  if (lengths.join() !== expected.map((m) => m.length).join())
    throw new Error(`messages of ${lengths.join(', ')} bytes, expected ${expected.map((m) => m.length).join(', ')}`)
  for (const f of file.fields) {
    const at = expected.findIndex((m) => m.message === f.message) + 1
    const held = inventory.some(
      (g) => g.message === at && g.param.shortName === f.param && g.level.shortName === f.level && g.step.end === f.step,
    )
    if (!held) throw new Error(`message ${at} does not hold ${f.param} at ${f.level}, +${f.step} h`)
  }
}

async function getSubset(file: CatalogFile): Promise<Output> {
  const path = join(out, `${file.fileName.replace(/\.grib2?$/, '')}.subset.grib2`)
  const temp = join(out, `.${basename(path)}.${process.pid}.part`)
  const bytes = wholeMessages(file.fields).reduce((sum, m) => sum + m.length, 0)
  const progress = transfer(basename(path), bytes)
  return fromNodes(file.fileName, async (node, attempt) => {
    progress.attempt(attempt, node)
    temporary.add(temp)
    try {
      let url: string
      if (via === 'idx') url = await fetchRanges(file, node, temp, progress.add)
      else {
        url = rebase(file.subset!.url, file, node)
        const response = await get(url)
        const handle = await open(temp, 'w')
        await save(response, url, handle, file.subset!.bytes, progress.add).finally(() => handle.close())
      }
      await checkSubset(temp, file).catch((err: Error) => {
        throw new Error(`${url}: ${err.message.replace(`${temp}: `, '')}`)
      })
      await rename(temp, path)
      progress.finish(`${bytes} bytes from ${url}`)
      return { path, bytes, fields: file.fields.length }
    } finally {
      await rm(temp, { force: true })
      temporary.delete(temp)
    }
  })
}

/** Peers gave nothing for this long: the torrent's web seeds are added (a mirror's default, mirror.webSeedAfterSeconds). */
const WEB_SEED_AFTER_MS = 15_000
/** Whole files being downloaded, by infohash: where the client's progress events go. */
const downloading = new Map<string, (bytes: number) => void>()

/**
 * A whole file from its swarm, as a mirror copies one (download.ts: peers first, the torrent's
 * web seeds only once they give nothing): the node's .torrent, checked against the catalog,
 * downloaded into a directory of its own beside the output while uploading, its SHA-512
 * compared with the catalog's, then moved to its name and, with --seed-minutes, seeded from there.
 */
async function getWhole(client: WebTorrent, file: CatalogFile): Promise<Output> {
  const torrentFile = await fromNodes(`${file.fileName}.torrent`, async (node) => {
    const url = rebase(file.links.torrent, file, node)
    const body = await getBody(url)
    const torrent = decodeTorrent(body, url)
    if (torrent.infoHash !== file.infoHash || torrent.name !== file.fileName || torrent.length !== file.size)
      throw new Error(`${url}: infohash, name or length differs from the catalog's`)
    return body
  })
  const path = join(out, file.fileName)
  const dir = join(out, `.${file.fileName}.${process.pid}.part`)
  const progress = transfer(file.fileName, file.size)
  downloading.set(file.infoHash, progress.add)
  temporary.add(dir)
  try {
    const options = { timeoutMs: timeoutMinutes * 60_000, webSeedAfterMs: WEB_SEED_AFTER_MS }
    await downloadTorrent(client, torrentFile, dir, options, createLogger('warn'))
    const sha512 = await sha512Of(join(dir, file.fileName))
    await removeTorrent(client, (await client.get(file.infoHash))!)
    if (sha512 !== file.sha512) throw new Error(`${file.fileName}: SHA-512 ${sha512}, the catalog says ${file.sha512}`)
    await rename(join(dir, file.fileName), path)
    if (seedMinutes > 0) {
      // Its pieces were checked as they arrived: seeding resumes from the final name at once.
      refuseSelfConnections(client, client.add(torrentFile, { path: out, skipVerify: true, storeCacheSlots: 0 }))
    }
    progress.finish(`${file.size} bytes over BitTorrent, SHA-512 checked`)
    return { path, bytes: file.size, fields: file.fields.length }
  } finally {
    downloading.delete(file.infoHash)
    await rm(dir, { recursive: true, force: true })
    temporary.delete(dir)
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const path of temporary) rmSync(path, { recursive: true, force: true })
    process.exit(1)
  })
}

// Both catalogs are read before anything is fetched: something missing fails at once.
let subsetFiles: CatalogFile[] = []
let wholeFiles: CatalogFile[] = []
let wholeRun = run
if (wantSubsets) {
  const { catalog, node } = await readCatalog(run, args.package, fieldQuery).catch((err: Error) => fail(err.message))
  subsetFiles = catalog.runs[0]?.files ?? []
  // The catalog lists the fields that match: a name none of them has is missing, from every
  // published file or from this combination.
  const matched = subsetFiles.flatMap((f) => f.fields)
  const unmatched = lacking(fieldQuery, {
    param: matched.map((f) => f.param),
    level: matched.flatMap((f) => [f.level, f.levelText]),
    step: matched.map((f) => f.step),
  })
  if (unmatched.length) {
    const unknown = lacking(fieldQuery, catalog.available)
    const what = unknown.length
      ? `no published file has ${unknown.join(', ')}`
      : subsetFiles.length
        ? `no file of run ${catalog.runs[0]!.run} has ${unmatched.join(', ')} together with the other names asked for`
        : `no published file${run === 'latest' ? '' : ` of run ${run}`} has a field that is at once one of the params, levels and steps asked for`
    fail(`${what}; ${node} has ${describeAvailable(catalog.available)}`)
  }
  wholeRun = catalog.runs[0]!.run // whole files of the run the subsets come from
}
if (wholePackages.length) {
  const { catalog } = await readCatalog(wholeRun, wholePackages).catch((err: Error) => fail(err.message))
  wholeFiles = catalog.runs[0]?.files ?? []
  const absent = wholePackages.filter((p) => !wholeFiles.some((f) => f.package === p))
  if (absent.length) fail(`no published file of package ${absent.join(', ')}${wholeRun === 'latest' ? '' : ` in run ${wholeRun}`}`)
}
// A short-lived client on the torrents' own trackers: no DHT, no LAN discovery, no port mapping,
// no uTP (utp-native keeps its socket open after the client is destroyed). The torrents' web
// seeds are not read from the start (download.ts adds them when peers give nothing): declined
// by the origin while its seeder serves us, webtorrent asked again and again and, measured,
// sometimes stalled 30 s until the origin counted it as stalled.
const client = wholeFiles.length
  ? new WebTorrent({ dht: false, lsd: false, natUpnp: false, natPmp: false, utp: false, webSeeds: false })
  : undefined
client?.on('error', (err: Error) => process.stderr.write(`gribswarm: BitTorrent: ${err.message}\n`))
client?.on('torrent', (torrent: Torrent) => torrent.on('download', (bytes: number) => downloading.get(torrent.infoHash)?.(bytes)))

await mkdir(out, { recursive: true })
const outputs: Output[] = []
const failures: string[] = []
const settle = (output: Promise<Output>) =>
  output.then(
    (o) => void outputs.push(o),
    (err: Error) => void failures.push(err.message),
  )
// Subsets a few at a time (a node bounds how many it serves at once), torrents all together.
await Promise.all([
  ...wholeFiles.map((file) => settle(getWhole(client!, file))),
  ...Array.from({ length: Math.min(4, subsetFiles.length) }, async () => {
    for (let file = subsetFiles.shift(); file; file = subsetFiles.shift()) await settle(getSubset(file))
  }),
])
multibar?.stop()
for (const o of outputs.sort((a, b) => a.path.localeCompare(b.path)))
  process.stdout.write(`${o.path}\t${o.bytes} bytes\t${o.fields} fields\n`)
for (const failure of failures) process.stderr.write(`gribswarm: ${failure}\n`)
if (client) {
  if (seedMinutes > 0 && client.torrents.length) {
    process.stderr.write(`seeding for ${seedMinutes} min\n`)
    await delay(seedMinutes * 60_000)
  }
  await new Promise<void>((resolve) => client.destroy(() => resolve()))
}
process.exit(failures.length ? 1 : 0)
