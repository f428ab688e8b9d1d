// Which fields of a GRIB2 file a request asks for: `param`, `level` and `step`, each a
// comma-separated list (NOMADS' grib filter and Herbie select the same way). A subset is whole
// messages, in file order, so it is a valid GRIB2 stream; a message holding several fields
// goes whole when any of them is asked for. Used by the subset endpoint (http.ts), the catalog
// (catalog.ts) and the consumer command (cli/get.ts), so that all three select alike.
import type { InventoryField } from './inventory.ts'

/** A forecast-hour interval; a single hour is `from === to`. */
export interface StepInterval {
  from: number
  to: number
}

/** What to take; an absent dimension takes everything along it. */
export interface FieldQuery {
  params?: string[]
  levels?: string[]
  steps?: StepInterval[]
}

export class FieldQueryError extends Error {
  override name = 'FieldQueryError'
  constructor(
    message: string,
    /** what the file has, for the 400 answer */
    readonly available?: AvailableFields,
  ) {
    super(message)
  }
}

export interface AvailableFields {
  param: string[]
  level: string[]
  step: number[]
}

const KEYS = ['param', 'level', 'step'] as const
const MAX_NAMES = 200

/** A query value as a list: repeated keys and comma-separated names alike (the catalog's keys too). */
export function queryList(value: unknown): string[] {
  const values = Array.isArray(value) ? value : [value]
  return values
    .flatMap((v) => String(v).split(','))
    .map((v) => v.trim())
    .filter(Boolean)
}

/** `24`, `0-48`: hours, or an inclusive interval of hours. */
export function parseStep(text: string): StepInterval {
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(text.replace(/h$/i, ''))
  if (!m) throw new FieldQueryError(`step "${text}" is not an hour (24) or an interval of hours (0-48)`)
  const from = Number(m[1])
  const to = m[2] === undefined ? from : Number(m[2])
  if (to < from) throw new FieldQueryError(`step "${text}": the interval ends before it starts`)
  return { from, to }
}

/**
 * The query of a subset request (`?param=TMP,UGRD&level=2-HTGL&step=0-48`); repeated keys add
 * up. Throws FieldQueryError naming an unknown key or a malformed step: a misspelt key must
 * not silently select the whole file.
 */
export function parseFieldQuery(query: Record<string, unknown>): FieldQuery {
  const unknown = Object.keys(query).filter((key) => !(KEYS as readonly string[]).includes(key))
  if (unknown.length)
    throw new FieldQueryError(`unknown query parameter ${unknown.map((k) => `"${k}"`).join(', ')}: use ${KEYS.join(', ')}`)
  const result: FieldQuery = {}
  const params = query.param === undefined ? [] : queryList(query.param)
  const levels = query.level === undefined ? [] : queryList(query.level)
  const steps = query.step === undefined ? [] : queryList(query.step)
  if (params.length + levels.length + steps.length > MAX_NAMES) throw new FieldQueryError(`more than ${MAX_NAMES} names in one query`)
  if (params.length) result.params = params
  if (levels.length) result.levels = levels
  if (steps.length) result.steps = steps.map(parseStep)
  return result
}

/** The query back as URL parameters, for a subset link. */
export function fieldQueryString(query: FieldQuery): string {
  const parts: string[] = []
  if (query.params) parts.push(`param=${query.params.map(encodeURIComponent).join(',')}`)
  if (query.levels) parts.push(`level=${query.levels.map(encodeURIComponent).join(',')}`)
  if (query.steps) parts.push(`step=${query.steps.map(stepText).join(',')}`)
  return parts.join('&')
}

/** `24` or `0-48`, as a query writes it. */
export function stepText(step: StepInterval): string {
  return step.from === step.to ? `${step.from}` : `${step.from}-${step.to}`
}

/** What a set of fields answers to: a parameter name, a level name, a step. */
export interface FieldNames {
  param(name: string): boolean
  level(name: string): boolean
  step(step: StepInterval): boolean
}

/** The names asked for that `has` does not answer to, as [key, name]: ['param', 'RH'], ['step', '0-48']. */
export function missingNames(query: FieldQuery, has: FieldNames): Array<readonly [(typeof KEYS)[number], string]> {
  return [
    ...(query.params ?? []).filter((p) => !has.param(p)).map((p) => ['param', p] as const),
    ...(query.levels ?? []).filter((l) => !has.level(l)).map((l) => ['level', l] as const),
    ...(query.steps ?? []).filter((s) => !has.step(s)).map((s) => ['step', stepText(s)] as const),
  ]
}

/** The whole messages holding `fields`, once each, in file order: what a subset is made of. */
export function wholeMessages(fields: ReadonlyArray<{ message: number; offset: number; length: number }>): Subset['messages'] {
  const messages = new Map(fields.map(({ message, offset, length }) => [message, { message, offset, length }]))
  return [...messages.values()].sort((a, b) => a.offset - b.offset)
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()

/** A parameter by its short name (TMP, var0_1_200), case-insensitively. */
export function paramMatches(field: InventoryField, name: string): boolean {
  return same(field.param.shortName, name)
}

/** A level by its short name (2-HTGL) or its text (2 m above ground), case-insensitively. */
export function levelMatches(field: InventoryField, name: string): boolean {
  return same(field.level.shortName, name) || same(field.level.text, name)
}

export function stepMatches(field: InventoryField, step: StepInterval): boolean {
  return field.step.unit === undefined && field.step.end >= step.from && field.step.end <= step.to
}

export function availableFields(inventory: readonly InventoryField[]): AvailableFields {
  const sorted = (values: Iterable<string>) => [...new Set(values)].sort()
  return {
    param: sorted(inventory.map((f) => f.param.shortName)),
    level: sorted(inventory.map((f) => f.level.shortName)),
    step: [...new Set(inventory.map((f) => f.step.end))].sort((a, b) => a - b),
  }
}

/** The fields `query` selects, in file order; no filter selects them all. */
export function matchFields(inventory: readonly InventoryField[], query: FieldQuery): InventoryField[] {
  return inventory.filter(
    (f) =>
      (!query.params || query.params.some((p) => paramMatches(f, p))) &&
      (!query.levels || query.levels.some((l) => levelMatches(f, l))) &&
      (!query.steps || query.steps.some((s) => stepMatches(f, s))),
  )
}

export interface Subset {
  fields: InventoryField[]
  /** the whole messages holding them, in file order: what is sent */
  messages: Array<{ message: number; offset: number; length: number }>
  bytes: number
}

/**
 * The subset of one file: every name asked for must exist in it (else a FieldQueryError that
 * lists what the file has, for a 400), and together they must select at least one field.
 */
export function selectSubset(inventory: readonly InventoryField[], query: FieldQuery, file: string): Subset {
  const available = availableFields(inventory)
  const missing = missingNames(query, {
    param: (p) => inventory.some((f) => paramMatches(f, p)),
    level: (l) => inventory.some((f) => levelMatches(f, l)),
    step: (step) => inventory.some((f) => stepMatches(f, step)),
  }).map(([key, name]) => (key === 'step' ? `step ${name}` : `${key} "${name}"`))
  if (missing.length) throw new FieldQueryError(`${file} has no ${missing.join(', no ')}`, available)
  const fields = matchFields(inventory, query)
  if (fields.length === 0)
    throw new FieldQueryError(`${file}: no field is at once one of the params, levels and steps asked for`, available)
  const messages = wholeMessages(fields)
  return { fields, messages, bytes: messages.reduce((sum, m) => sum + m.length, 0) }
}

/** The 400's text: the problem, then what the file has. */
export function describeAvailable(available: AvailableFields): string {
  return `params: ${available.param.join(', ')}; levels: ${available.level.join(', ')}; steps (hours): ${available.step.join(', ')}`
}
