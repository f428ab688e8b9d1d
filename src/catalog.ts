// The catalog (/api/catalog): runs → files → fields, each file with its links (torrent, magnet,
// HTTP, .idx, and a subset URL for the fields asked for). Built from the published items'
// inventories on each request, like the feeds. Filtered by the subset's keys (param, level,
// step), by run, package and grid, or by a search in words: "10 m wind, +24 h, latest run".
import type { InventoryField } from './inventory.ts'
import type { ItemRecord } from './store.ts'
import {
  availableFields,
  fieldQueryString,
  FieldQueryError,
  matchFields,
  parseFieldQuery,
  queryList,
  selectSubset,
  type AvailableFields,
  type FieldQuery,
} from './subset.ts'
import { dataUrl, idxUrl, sidecarUrl, torrentUrl } from './urls.ts'

export interface CatalogQuery extends FieldQuery {
  /** a run (as in the file names, e.g. 2026-11-23T00:00:00Z), or 'latest': the newest run with a matching field */
  run?: string
  packages?: string[]
  grids?: string[]
  /** words every matching field's parameter name or level text holds ("wind", "temperature") */
  words?: string[]
}

export interface CatalogField {
  param: string
  name?: string
  units?: string
  level: string
  levelText: string
  /** forecast hour (end of the period for a statistic) */
  step: number
  ftime: string
  message: number
  offset: number
  length: number
}

export interface CatalogFile {
  relPath: string
  fileName: string
  package: string
  grid: string
  range: string
  size: number
  sha512: string
  infoHash: string
  publishedAt: string
  expiresAt: string
  links: { http: string; torrent: string; magnet: string; sidecar: string; idx?: string }
  fields: CatalogField[]
  /** with a field filter: the URL of the matching fields' subset, and its size */
  subset?: { url: string; bytes: number }
}

export interface Catalog {
  generatedAt: string
  runs: Array<{ run: string; model: string; files: CatalogFile[] }>
  /** what the published files hold, over all of them: for a search form, or for an error that lists it */
  available: AvailableFields
}

const STOP_WORDS = new Set(['run', 'latest', 'at', 'of', 'the', 'and', 'for', 'in', 'h', 'hour', 'hours', 'step', 'level'])

/**
 * A search in words: "+24 h" (or "24h", "T+24") is a step, "10 m" a height above ground,
 * "850 hPa" (or "850 mb") an isobaric level, "latest" the newest run; the other words must all
 * appear in a field's parameter name, short name or level text.
 */
export function parseSearch(text: string): CatalogQuery {
  const query: CatalogQuery = {}
  let rest = text.toLowerCase()
  const take = (pattern: RegExp, use: (m: RegExpExecArray) => void) => {
    rest = rest.replace(pattern, (...args) => {
      use(args.slice(0, -2) as unknown as RegExpExecArray)
      return ' '
    })
  }
  take(/(?:t?\+\s*)(\d+(?:\.\d+)?)\s*h?\b|\b(\d+(?:\.\d+)?)\s*h\b/g, (m) => {
    const hours = Number(m[1] ?? m[2])
    ;(query.steps ??= []).push({ from: hours, to: hours })
  })
  take(/\b(\d+(?:\.\d+)?)\s*(hpa|mb)\b/g, (m) => (query.levels ??= []).push(`${Number(m[1]) * 100}-ISBL`))
  take(/\b(\d+(?:\.\d+)?)\s*m\b/g, (m) => (query.levels ??= []).push(`${Number(m[1])}-HTGL`))
  if (/\blatest\b/.test(rest)) query.run = 'latest'
  const words = rest.split(/[^\p{L}\p{N}_-]+/u).filter((w) => w && !STOP_WORDS.has(w))
  if (words.length) query.words = words
  return query
}

/** The catalog's query string: the subset's keys, `run`, `package`, `grid` and `q` (a search in words). */
export function parseCatalogQuery(query: Record<string, unknown>): CatalogQuery {
  const { run, package: packages, grid, q, ...fieldKeys } = query
  const result: CatalogQuery = parseFieldQuery(fieldKeys)
  if (typeof q === 'string' && q.trim()) {
    const search = parseSearch(q)
    if (search.steps) result.steps = [...(result.steps ?? []), ...search.steps]
    if (search.levels) result.levels = [...(result.levels ?? []), ...search.levels]
    if (search.words) result.words = search.words
    if (search.run) result.run = search.run
  }
  if (run !== undefined) {
    if (typeof run !== 'string' || !run) throw new FieldQueryError('run must be one run, or "latest"')
    result.run = run
  }
  if (packages !== undefined) result.packages = queryList(packages)
  if (grid !== undefined) result.grids = queryList(grid)
  return result
}

function hasFilter(query: CatalogQuery): boolean {
  return Boolean(query.params || query.levels || query.steps || query.words)
}

function fieldMatches(field: InventoryField, query: CatalogQuery): boolean {
  if (!query.words) return true
  const text = `${field.param.name ?? ''} ${field.param.shortName} ${field.level.text}`.toLowerCase()
  return query.words.every((word) => text.includes(word))
}

function catalogField(f: InventoryField): CatalogField {
  return {
    param: f.param.shortName,
    ...(f.param.name !== undefined ? { name: f.param.name } : {}),
    ...(f.param.units !== undefined ? { units: f.param.units } : {}),
    level: f.level.shortName,
    levelText: f.level.text,
    step: f.step.end,
    ftime: f.ftime,
    message: f.message,
    offset: f.offset,
    length: f.length,
  }
}

/** The subset URL that takes exactly these fields' parameters, levels and steps. */
function subsetOf(item: ItemRecord, fields: InventoryField[], base: string): CatalogFile['subset'] {
  const unique = <T>(values: T[]) => [...new Set(values)]
  const query: FieldQuery = {
    params: unique(fields.map((f) => f.param.shortName)),
    levels: unique(fields.map((f) => f.level.shortName)),
    steps: unique(fields.map((f) => f.step.end)).map((hour) => ({ from: hour, to: hour })),
  }
  const { bytes } = selectSubset(item.inventory!, query, item.fileName)
  return { url: `${dataUrl(base, item.relPath)}?${fieldQueryString(query)}`, bytes }
}

function catalogFile(item: ItemRecord, fields: InventoryField[], filtered: boolean, base: string): CatalogFile {
  return {
    relPath: item.relPath,
    fileName: item.fileName,
    package: item.package,
    grid: item.grid,
    range: item.range,
    size: item.size,
    sha512: item.sha512,
    infoHash: item.infoHash,
    publishedAt: item.publishedAt,
    expiresAt: item.expiresAt,
    links: {
      http: dataUrl(base, item.relPath),
      torrent: torrentUrl(base, item.relPath),
      magnet: item.magnetURI,
      sidecar: sidecarUrl(base, item.relPath),
      ...(item.inventory?.length ? { idx: idxUrl(base, item.relPath) } : {}),
    },
    fields: fields.map(catalogField),
    ...(filtered && fields.length ? { subset: subsetOf(item, fields, base) } : {}),
  }
}

/** The catalog of `items` (newest run first) under `query`; a file none of whose fields match is left out. */
export function buildCatalog(items: readonly ItemRecord[], query: CatalogQuery, publicBaseUrl: string, now = new Date()): Catalog {
  const filtered = hasFilter(query)
  const chosen = items.filter(
    (item) => (!query.packages || query.packages.includes(item.package)) && (!query.grids || query.grids.includes(item.grid)),
  )
  const files = new Map<ItemRecord, InventoryField[]>()
  for (const item of chosen) {
    const inventory = item.inventory ?? []
    const fields = matchFields(inventory, query).filter((f) => fieldMatches(f, query))
    if (!filtered || fields.length) files.set(item, fields)
  }
  let runs = [...new Set([...files.keys()].map((item) => item.run))].sort().reverse()
  if (query.run === 'latest') runs = runs.slice(0, 1)
  else if (query.run !== undefined) runs = runs.filter((run) => run === query.run)
  const byPath = (a: ItemRecord, b: ItemRecord) => a.relPath.localeCompare(b.relPath)
  return {
    generatedAt: now.toISOString(),
    runs: runs.map((run) => {
      const inRun = [...files.keys()].filter((item) => item.run === run).sort(byPath)
      return { run, model: inRun[0]!.model, files: inRun.map((item) => catalogFile(item, files.get(item)!, filtered, publicBaseUrl)) }
    }),
    available: availableFields(chosen.flatMap((item) => item.inventory ?? [])),
  }
}
