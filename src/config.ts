// One validated, typed configuration object, loaded once at start-up.
// Defaults live in config/default.json only; a user file and GRIBSWARM_* environment
// variables are merged over them, then the whole object is checked by the schema below.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import cron from 'node-cron'
import { z } from 'zod'

const positiveInt = z.number().int().positive()
const port = z.number().int().min(0).max(65535)
const httpUrl = z.url({ protocol: /^https?$/ })
// Node's timers take at most 2^31 - 1 ms and fire after 1 ms instead beyond that (a busy loop).
const timerSeconds = z
  .number()
  .positive()
  .max(2_147_483, { message: 'at most 2147483 seconds (24 days): the longest timer Node.js can set' })
const TEN_YEARS = 10 * 365 * 86400
const timerMs = z
  .number()
  .int()
  .nonnegative()
  .max(2_147_483_647, { message: 'at most 2147483647 ms (24 days): the longest timer Node.js can set' })

function isRegExp(text: string): boolean {
  try {
    new RegExp(text)
    return true
  } catch {
    return false
  }
}

const schema = z.strictObject({
  dataDir: z.string().min(1),
  source: z.strictObject({
    // false on a pure mirror: no passes against the upstream object store.
    enabled: z.boolean(),
    bucketUrl: httpUrl,
    fallbackBucketUrls: z.array(httpUrl),
    keyTemplate: z.string().includes('{run}', { message: 'must contain {run}' }),
    localPathTemplate: z.string().includes('{file}', { message: 'must contain {file}' }),
    model: z.string().regex(/^[\w.-]+$/),
    grid: z.string().regex(/^[\w.-]+$/),
    packages: z.array(z.string().regex(/^[\w.-]+$/)).min(1),
    ranges: z.array(z.string().regex(/^[\w.-]+$/)).min(1),
    runHours: z.array(z.number().int().min(0).max(23)).min(1),
    lookbackRuns: positiveInt.max(60),
    discovery: z.enum(['auto', 'list', 'probe']),
  }),
  fetch: z.strictObject({
    concurrency: positiveInt.max(32),
    connectTimeoutMs: timerMs.min(1),
    idleTimeoutMs: timerMs.min(1),
    transferAttempts: positiveInt,
    validationAttempts: positiveInt,
    // "full": GDAL decodes every message; "vouched": one in decodeEvery where a checksum from the source vouches for the bytes.
    validation: z.enum(['full', 'vouched']),
    decodeEvery: positiveInt,
    backoffMs: timerMs,
    maxBackoffMs: timerMs,
  }),
  torrent: z.strictObject({
    extraTrackers: z.array(z.url({ protocol: /^(https?|udp|wss?)$/ })),
    // Piece size is the power of two giving between minPieces and twice that many pieces.
    minPieces: positiveInt.min(16).max(10000),
    createdBy: z.string(),
  }),
  tracker: z.strictObject({
    enabled: z.boolean(),
    host: z.string(),
    port,
    // Public announce URLs written into torrents; empty = derived from http.publicBaseUrl's host and tracker.port.
    announceUrls: z.array(z.url({ protocol: /^(https?|udp|wss?)$/ })),
    // Behind nginx: take the client's address from X-Forwarded-For.
    trustProxy: z.boolean(),
  }),
  seed: z.strictObject({
    port,
    dht: z.boolean(),
    pex: z.boolean(),
    utp: z.boolean(),
    maxConnsPerTorrent: positiveInt,
    // BEP 16: reveal pieces a few at a time so that each leaves this node about once (see superseed.ts).
    superSeed: z.boolean(),
  }),
  // One budget for everything the node sends: BitTorrent upload and HTTP data (see uplink.ts).
  uplink: z.strictObject({
    bytesPerSec: z.number().int().nonnegative(), // 0 = unlimited
  }),
  // When the torrents' web seed (/webseed/) is served: see webseed.ts.
  webSeed: z.strictObject({
    mode: z.enum(['fallback', 'always']),
    holdSeconds: z.number().nonnegative().max(15, { message: 'at most 15 s: libtorrent gives up on a web seed silent for 20 s' }),
    stallSeconds: timerSeconds,
    retryAfterSeconds: positiveInt.max(3600),
  }),
  http: z.strictObject({
    host: z.string(),
    port,
    // Base of every URL in torrents, feeds and notifications: how others reach this node.
    // '' = http://localhost:<http.port>, which only this machine can use.
    publicBaseUrl: z.union([z.literal(''), httpUrl]),
    trustProxy: z.boolean(),
    // nginx's internal location for the published tree: the daemon answers with X-Accel-Redirect
    // and nginx sends the bytes ('' = the daemon sends them).
    accelRedirect: z.union([
      z.literal(''),
      z.string().regex(/^\/[\w./-]*\/$/, { message: 'an absolute path ending in "/", e.g. "/_published/"' }),
    ]),
    // Field subsets (/data/<file>?param=…): the largest one served, and how many at once.
    subsets: z.strictObject({ maxBytes: positiveInt, maxConcurrent: positiveInt.max(1000) }),
  }),
  retention: z.strictObject({
    publishSeconds: z.number().positive().max(TEN_YEARS),
    checkEverySeconds: timerSeconds,
    forgetExpiredAfterDays: z
      .number()
      .positive()
      .max(TEN_YEARS / 86400),
  }),
  disk: z.strictObject({
    budgetBytes: positiveInt,
    minFreeBytes: z.number().int().nonnegative(),
  }),
  notify: z
    .strictObject({
      // The broker to post notifications to, chosen by scheme as sr3 does: amqp(s)://user:password@host/vhost
      // (an exchange) or mqtt(s)://user:password@host:port (MQTT 5, the exchange as first topic level); empty = off.
      brokerUrl: z.union([z.literal(''), z.url({ protocol: /^(amqps?|mqtts?)$/ })]),
      exchange: z.string().min(1),
      source: z.string(),
      // Messages kept on disk while the broker is away; past that the oldest are dropped.
      maxBacklog: positiveInt,
      // What is posted: Sarracenia v03 messages, or WIS2 Notification Messages on the WIS2 topic hierarchy.
      profile: z.enum(['v03', 'wis2']),
      wis2: z.strictObject({
        // The WIS2 centre identifier (e.g. fr-meteofrance): the topic's fourth level.
        centreId: z.union([
          z.literal(''),
          z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, { message: 'lower case letters, digits, "-" and "_"' }),
        ]),
        // origin: a WIS2 node's own notifications; cache: a Global Cache's.
        channel: z.enum(['origin', 'cache']),
        dataPolicy: z.enum(['core', 'recommended']),
        // The levels after the data policy: the earth-system discipline and below.
        topic: z.string().regex(/^[\w-]+(\/[\w-]+)*$/, { message: 'topic levels separated by "/", e.g. weather/prediction/forecast' }),
        // properties.metadata_id; '' = urn:wmo:md:<centreId>:<model>.
        metadataId: z.string(),
      }),
    })
    .refine((notify) => notify.profile !== 'wis2' || notify.wis2.centreId !== '', {
      path: ['wis2', 'centreId'],
      message: 'required with notify.profile "wis2"',
    }),
  mirror: z.strictObject({
    // Feeds (/feed.json or /rss.xml) of the gribswarm nodes to copy from.
    feeds: z.array(httpUrl),
    // Their notifications, over AMQP or MQTT (by the URL's scheme): topic patterns in AMQP's syntax
    // (v03.*.arpege.01.SP1.#), bound on the exchange or subscribed to below it.
    brokers: z.array(
      z
        .strictObject({
          url: z.url({ protocol: /^(amqps?|mqtts?)$/ }),
          exchange: z.string().min(1),
          topics: z.array(z.string().min(1)).min(1),
          // A durable queue of this name keeps what is announced while we are away; '' = a
          // temporary one. Sarracenia names them q_<user>.<what>; the user needs the right to declare it.
          // Over MQTT it is the client id of a persistent session: unique per broker.
          queue: z
            .string()
            .regex(/^[\w.:-]*$/)
            .max(200)
            .default(''),
          // The topic tree: v03 (sr3's; over MQTT the exchange is the first level) or wis2 (over MQTT,
          // topics start at the channel: origin.a.wis2.#). Bodies of either format are read either way.
          profile: z.enum(['v03', 'wis2']).default('v03'),
        })
        .refine((broker) => !/^mqtts?:/i.test(broker.url) || broker.topics.every((t) => !/(^|[./])#[./]/.test(t)), {
          path: ['topics'],
          message: "over MQTT, '#' may only be the last level of a pattern",
        }),
    ),
    // Client-side filters on relPath, as Sarracenia's accept/reject: regular expressions.
    accept: z.array(z.string().refine(isRegExp, { message: 'not a valid regular expression' })),
    reject: z.array(z.string().refine(isRegExp, { message: 'not a valid regular expression' })),
    // Files a plain Sarracenia pump announces are validated by GDAL as GRIB, unless their relPath
    // matches one of these: then they are published on their announced checksum alone.
    otherFormats: z.array(z.string().refine(isRegExp, { message: 'not a valid regular expression' })),
    pollSeconds: timerSeconds,
    concurrency: positiveInt.max(16),
    downloadTimeoutSeconds: timerSeconds,
    // Peers give nothing for this long: the torrent's HTTP web seeds are added as a fallback.
    webSeedAfterSeconds: timerSeconds,
  }),
  schedule: z.strictObject({
    cron: z.string().refine((expr) => cron.validate(expr), { message: 'not a valid cron expression (e.g. "*/5 * * * *")' }),
  }),
  log: z.strictObject({
    level: z.enum(['debug', 'info', 'warn', 'error']),
    // text: one line of time, level, message and key=value pairs; json: one object per line (journald, Loki).
    format: z.enum(['text', 'json']),
  }),
})

export type Config = z.infer<typeof schema>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../config/default.json', import.meta.url))
const ENV_PREFIX = 'GRIBSWARM_'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function mergeInto(target: JsonObject, patch: JsonObject): JsonObject {
  for (const [key, value] of Object.entries(patch)) {
    const current = target[key]
    target[key] = isObject(current) && isObject(value) ? mergeInto({ ...current }, value) : value
  }
  return target
}

function readJsonFile(path: string): JsonObject {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ConfigError(`config file ${path}: ${(err as Error).message}`)
  }
  if (!isObject(parsed)) throw new ConfigError(`config file ${path}: expected a JSON object at the top`)
  return parsed
}

/**
 * GRIBSWARM_HTTP__PORT=8081 sets http.port; `__` separates levels, names are matched
 * case-insensitively against the defaults' keys. Values are JSON when they parse as JSON,
 * comma-separated lists where the default is a list, plain strings otherwise.
 */
export function envOverrides(env: NodeJS.ProcessEnv, defaults: JsonObject): JsonObject {
  const patch: JsonObject = {}
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || name === `${ENV_PREFIX}CONFIG`) continue
    const parts = name.slice(ENV_PREFIX.length).split('__')
    let defaultsLevel: Json | undefined = defaults
    let patchLevel = patch
    const path: string[] = []
    for (const [index, part] of parts.entries()) {
      const key: string = isObject(defaultsLevel)
        ? (Object.keys(defaultsLevel).find((k) => k.toLowerCase() === part.toLowerCase()) ?? part)
        : part
      path.push(key)
      defaultsLevel = isObject(defaultsLevel) ? defaultsLevel[key] : undefined
      if (index === parts.length - 1) {
        patchLevel[key] = parseEnvValue(raw, Array.isArray(defaultsLevel))
      } else {
        const next = patchLevel[key]
        patchLevel = isObject(next) ? next : (patchLevel[key] = {})
      }
    }
  }
  return patch
}

function parseEnvValue(raw: string, expectList: boolean): Json {
  try {
    return JSON.parse(raw) as Json
  } catch {
    if (expectList)
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    return raw
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const at = issue.path.join('.') || '(top level)'
      if (issue.code === 'unrecognized_keys') {
        const where = issue.path.length ? `${at}: ` : ''
        return `${where}unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
      }
      return `${at}: ${issue.message}`
    })
    .join('; ')
}

export interface LoadOptions {
  /** A user config file merged over the defaults (GRIBSWARM_CONFIG when not given). */
  file?: string
  env?: NodeJS.ProcessEnv
  /** Programmatic overrides, applied last (tests, CLI flags). */
  overrides?: JsonObject
  /** Directory relative paths are resolved against (default: the current directory). */
  cwd?: string
}

export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env
  const defaults = readJsonFile(DEFAULT_CONFIG_FILE)
  const merged = mergeInto({}, defaults)
  const file = options.file ?? env[`${ENV_PREFIX}CONFIG`]
  if (file) mergeInto(merged, readJsonFile(file))
  mergeInto(merged, envOverrides(env, defaults))
  if (options.overrides) mergeInto(merged, options.overrides)
  const result = schema.safeParse(merged)
  if (!result.success) throw new ConfigError(`invalid configuration: ${describeIssues(result.error)}`)
  const config = result.data
  config.dataDir = resolve(options.cwd ?? process.cwd(), config.dataDir)
  config.http.publicBaseUrl = (config.http.publicBaseUrl || `http://localhost:${config.http.port}`).replace(/\/+$/, '')
  return config
}

/**
 * Announce URLs for our torrents: configured ones, or HTTP and UDP on the public host. Not
 * ws:// by default: announcing there makes the seeder open WebRTC offers for every torrent
 * (several MB each), for browser peers that the HTTP web seed already serves.
 */
export function announceUrls(config: Config): string[] {
  if (config.tracker.announceUrls.length > 0) return config.tracker.announceUrls
  if (!config.tracker.enabled) return []
  const host = new URL(config.http.publicBaseUrl).hostname
  const hostPort = `${host.includes(':') ? `[${host}]` : host}:${config.tracker.port}`
  return [`http://${hostPort}/announce`, `udp://${hostPort}`]
}
