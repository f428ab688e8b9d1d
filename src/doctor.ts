// `gribswarm doctor`: what stands between this machine and a working node, checked one by one,
// each giving ok, warn or fail, what was checked, and how to fix it. The daemon runs the same
// checks as it starts (cli/common.ts) and logs one line per check. The decisions (is this port
// free, is the budget larger than the disk...) are pure functions of what was measured, so that
// the unit tests can give them any measurement.
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { mkdir, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { connect, createServer, isIP } from 'node:net'
import { join } from 'node:path'
import type { Config } from './config.ts'
import { decoder } from './decoder.ts'

export type CheckStatus = 'ok' | 'warn' | 'fail'

export interface CheckResult {
  /** what was checked, e.g. "port http" */
  check: string
  status: CheckStatus
  /** what was found */
  detail: string
  /** how to fix it, for a warn or a fail */
  fix?: string
}

/** One line: status, check, what was found, and the fix. */
export function formatResult(r: CheckResult): string {
  return `${r.status.toUpperCase().padEnd(4)} ${r.check}: ${r.detail}${r.fix ? ` (fix: ${r.fix})` : ''}`
}

const GB = 1e9
const gb = (bytes: number) =>
  Math.abs(bytes) >= GB ? `${(bytes / GB).toFixed(1)} GB` : Math.abs(bytes) >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${bytes} bytes`

// ---------------------------------------------------------------------------------------------
// Ports

/** The outcome of binding a port: free, or the error code (EADDRINUSE, EACCES, EADDRNOTAVAIL...). */
export type BindOutcome = 'free' | string

/** Binds `host:port` over TCP (and UDP with `udp`) and lets go at once. '' or 0.0.0.0 or :: = every address. */
export async function tryBind(host: string, port: number, protocol: 'tcp' | 'udp'): Promise<BindOutcome> {
  const address = host === '' ? undefined : host
  if (protocol === 'tcp') {
    return new Promise((resolve) => {
      const server = createServer()
      server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
      server.listen({ host: address, port, exclusive: true }, () => server.close(() => resolve('free')))
    })
  }
  const bindUdp = (type: 'udp4' | 'udp6', at: string) =>
    new Promise<BindOutcome>((resolve) => {
      const socket = createSocket(type)
      socket.once('error', (err: NodeJS.ErrnoException) => {
        socket.close()
        resolve(err.code ?? err.message)
      })
      socket.bind({ address: at, port, exclusive: true }, () => socket.close(() => resolve('free')))
    })
  if (address !== undefined) return bindUdp(isIP(address) === 6 ? 'udp6' : 'udp4', address)
  // Every address: IPv6 (dual stack) where the machine has it, else IPv4.
  const outcome = await bindUdp('udp6', '::')
  return outcome === 'EAFNOSUPPORT' || outcome === 'EADDRNOTAVAIL' ? bindUdp('udp4', '0.0.0.0') : outcome
}

const HOW_TO_FIX_BIND: Record<string, string> = {
  EADDRINUSE: 'stop what holds it (ss -ltnup | grep :PORT) or choose another port in the configuration',
  EACCES: 'ports below 1024 need privileges: choose a port ≥ 1024 (a reverse proxy can serve 80/443)',
  EADDRNOTAVAIL: 'HOSTKEY is not an address of this machine: use one of its addresses, or 0.0.0.0 for all',
  EAFNOSUPPORT: 'this machine has no IPv6: use 0.0.0.0',
}

/** The verdict on one port from its bind outcomes: free on every protocol, or a fail naming the error. */
export function portResult(
  what: string,
  configKey: string,
  host: string,
  port: number,
  outcomes: Partial<Record<'tcp' | 'udp', BindOutcome>>,
): CheckResult {
  const check = `port ${what}`
  const where = `${host.includes(':') ? `[${host}]` : host || '*'}:${port}`
  const protocols = Object.keys(outcomes).join('+')
  if (port === 0) return { check, status: 'ok', detail: `${configKey} is 0: the system picks a free port` }
  const bad = Object.entries(outcomes).find(([, outcome]) => outcome !== 'free')
  if (!bad) return { check, status: 'ok', detail: `${where} (${protocols}) is free` }
  const [protocol, code] = bad
  const fix = (HOW_TO_FIX_BIND[code!] ?? `check ${configKey} and the host's address`).replace('PORT', String(port)).replace('HOSTKEY', host)
  const why = code === 'EADDRINUSE' ? 'is in use' : `cannot be bound (${code})`
  return { check, status: 'fail', detail: `${where} (${protocol}) ${why}, set by ${configKey}`, fix }
}

/** Every port the daemon binds, as it binds them: HTTP (TCP), the tracker (TCP and UDP), the seeder (TCP, and UDP for uTP). */
export async function checkPorts(config: Config): Promise<CheckResult[]> {
  const wanted: Array<{ what: string; key: string; host: string; port: number; protocols: Array<'tcp' | 'udp'> }> = [
    { what: 'http', key: 'http.port', host: config.http.host, port: config.http.port, protocols: ['tcp'] },
  ]
  if (config.tracker.enabled)
    wanted.push({ what: 'tracker', key: 'tracker.port', host: config.tracker.host, port: config.tracker.port, protocols: ['tcp', 'udp'] })
  // webtorrent listens on every address.
  wanted.push({ what: 'seed', key: 'seed.port', host: '', port: config.seed.port, protocols: config.seed.utp ? ['tcp', 'udp'] : ['tcp'] })
  const results: CheckResult[] = []
  for (const w of wanted) {
    const outcomes: Partial<Record<'tcp' | 'udp', BindOutcome>> = {}
    if (w.port !== 0) for (const protocol of w.protocols) outcomes[protocol] = await tryBind(w.host, w.port, protocol)
    // The same port twice in the configuration: the second bind of the daemon would fail.
    const earlier = wanted.find((o) => o !== w && o.port === w.port && w.port !== 0 && wanted.indexOf(o) < wanted.indexOf(w))
    if (earlier && w.protocols.some((p) => earlier.protocols.includes(p)))
      results.push({
        check: `port ${w.what}`,
        status: 'fail',
        detail: `${w.key} ${w.port} is also ${earlier.key}`,
        fix: `give ${w.key} a port of its own`,
      })
    else results.push(portResult(w.what, w.key, w.host, w.port, outcomes))
  }
  return results
}

// ---------------------------------------------------------------------------------------------
// Data directory and disk

/** Creates the data directory if missing (as the daemon does), writes a file in it and removes it. */
export async function checkDataDir(dataDir: string): Promise<CheckResult> {
  const check = 'data directory'
  const probe = join(dataDir, `.doctor-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(dataDir, { recursive: true })
    await writeFile(probe, 'gribswarm doctor\n', { flag: 'wx' })
    await rm(probe)
    return { check, status: 'ok', detail: `${dataDir} is writable` }
  } catch (err) {
    await rm(probe, { force: true }).catch(() => {})
    const e = err as NodeJS.ErrnoException
    return {
      check,
      status: 'fail',
      detail: `${dataDir} is not writable: ${e.code ?? e.message}`,
      fix: 'set dataDir to a directory the daemon user can write (the systemd unit: /var/lib/gribswarm), or chown it to that user',
    }
  }
}

/**
 * The disk budget against the space there is: the published files count toward the budget, so
 * what the budget can reach is what they take plus what is free above disk.minFreeBytes.
 */
export function diskResult(disk: Config['disk'], freeBytes: number, publishedBytes: number): CheckResult {
  const check = 'disk budget'
  const reachable = publishedBytes + freeBytes - disk.minFreeBytes
  const measured = `${gb(freeBytes)} free, ${gb(publishedBytes)} published, disk.budgetBytes ${gb(disk.budgetBytes)}, disk.minFreeBytes ${gb(disk.minFreeBytes)}`
  if (reachable <= 0)
    return {
      check,
      status: 'fail',
      detail: `${measured}: nothing can be published, the free space is under disk.minFreeBytes`,
      fix: "free space on the data directory's filesystem, or lower disk.minFreeBytes",
    }
  if (reachable < disk.budgetBytes)
    return {
      check,
      status: 'warn',
      detail: `${measured}: the budget cannot be filled, files will be deferred once ${gb(reachable)} are published`,
      fix: `lower disk.budgetBytes to ${Math.floor(reachable)} or less, or free space`,
    }
  return { check, status: 'ok', detail: measured }
}

/** Bytes of the files under `dir` (0 if it does not exist). */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])
  for (const entry of entries) {
    if (!entry.isFile()) continue
    total += await stat(join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name)).then(
      (s) => s.size,
      () => 0,
    )
  }
  return total
}

export async function checkDisk(config: Config): Promise<CheckResult> {
  try {
    const fs = await statfs(config.dataDir)
    return diskResult(config.disk, fs.bavail * fs.bsize, await bytesUnder(join(config.dataDir, 'pub')))
  } catch (err) {
    return {
      check: 'disk budget',
      status: 'fail',
      detail: `statfs ${config.dataDir}: ${(err as Error).message}`,
      fix: 'see the data directory line',
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GDAL and CCSDS

/**
 * A 246-byte GRIB2 message packed as Météo-France packs its files (CCSDS/AEC, template 5.42):
 * 2 m temperature on a 4 × 3 grid, row by row 553.15 K to 564.15 K as stored (GDAL wrote 280 to
 * 291 as °C: read with GRIB_NORMALIZE_UNITS on, the default, they come back as 280 to 291). Made
 * with GDAL (simple packing, 16 bits) and re-packed by ecCodes:
 * grib_set -r -s centre=lfpw,tablesVersion=15,packingType=grid_ccsds.
 */
const CCSDS_GRIB2 =
  'R1JJQgAAAAIAAAAAAAAA9gAAABUBAFQAAA8AAQfqCxcAAAAAAQAAAAUCAAAASAMAAAAADAAAAAAF////////////////////AAAABAAAAAMAAAAA/////wKrmAAAAAAAMAKupUAABJPgAAGGoAABhqBAAAAAIgQAAAAAAAACAGAAAAABAAAAAGcAAAAAAv8AAAAAAAAAABkFAAAADAAqRApJmoAMAAAQAA4gAIAAAAAGBv8AAAA/B9gAAkgAkkABSf//8AAAAAD/8AAAAAD/8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA3Nzc3'
const CCSDS_VALUES = Array.from({ length: 12 }, (_, i) => 553.15 + i)

/** The decoded values against the known ones, in K as stored (the GDAL process does not normalize units): the same to 0.01. */
export function ccsdsResult(values: number[] | undefined, error?: string): CheckResult {
  const check = 'gdal ccsds'
  const fix =
    'reinstall gdal-async with its prebuilt binary (npm ci; offline: npm_config_gdal_binary_host_mirror), not a build against a system GDAL without libaec'
  if (error) return { check, status: 'fail', detail: `gdal-async cannot decode a CCSDS-packed GRIB2 message: ${error}`, fix }
  const got = values ?? []
  const wrong = got.length !== CCSDS_VALUES.length || got.some((v, i) => !(Math.abs(v - CCSDS_VALUES[i]!) < 0.01))
  if (wrong)
    return {
      check,
      status: 'fail',
      detail: `a CCSDS-packed message decodes to ${got.slice(0, 4).join(', ')}…, expected 553.15, 554.15, 555.15, 556.15…`,
      fix,
    }
  return { check, status: 'ok', detail: 'gdal-async decodes a CCSDS-packed GRIB2 message (template 5.42) to the expected values' }
}

/** Decodes the message in the GDAL process the validator uses: what fails here fails there. */
export async function checkCcsds(): Promise<CheckResult> {
  try {
    const { values } = await decoder.bands({
      path: `/vsimem/gribswarm-doctor-${randomBytes(4).toString('hex')}.grib2`,
      bytes: CCSDS_GRIB2,
      where: "the doctor's CCSDS message",
      packedBits: [],
      pixels: true,
      firstValues: true,
    })
    return ccsdsResult(values)
  } catch (err) {
    return ccsdsResult(undefined, (err as Error).message)
  }
}

// ---------------------------------------------------------------------------------------------
// Brokers

const BROKER_PORTS: Record<string, number> = { 'amqp:': 5672, 'amqps:': 5671, 'mqtt:': 1883, 'mqtts:': 8883 }

/** host:port of a broker URL, the scheme's default port if none is given; no credentials. */
export function brokerAddress(url: string): { host: string; port: number; shown: string } {
  const u = new URL(url)
  const port = u.port ? Number(u.port) : (BROKER_PORTS[u.protocol] ?? 0)
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  return { host, port, shown: `${u.protocol}//${u.hostname}:${port}` }
}

/** A TCP connection to the broker's host and port, within `timeoutMs` (no login: no credentials needed). */
export async function tcpReachable(host: string, port: number, timeoutMs: number): Promise<true | string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (outcome: true | string) => {
      socket.destroy()
      clearTimeout(timer)
      resolve(outcome)
    }
    const timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs)
    socket.once('connect', () => done(true))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}

export async function checkBroker(what: string, url: string, timeoutMs = 3000): Promise<CheckResult> {
  const check = `broker ${what}`
  let address
  try {
    address = brokerAddress(url)
  } catch {
    return { check, status: 'fail', detail: 'not a URL', fix: 'give amqp(s):// or mqtt(s):// URL' }
  }
  const outcome = await tcpReachable(address.host, address.port, timeoutMs)
  if (outcome === true) return { check, status: 'ok', detail: `${address.shown} accepts connections` }
  return {
    check,
    status: 'fail',
    detail: `${address.shown} is not reachable: ${outcome}`,
    fix: 'start the broker or correct the URL (host, port); messages wait on disk meanwhile',
  }
}

// ---------------------------------------------------------------------------------------------
// Public URL

const isLoopback = (host: string) => /^(localhost|127(\.\d+){3}|\[?::1\]?)$/i.test(host)

/**
 * http.publicBaseUrl against where the HTTP server listens. loadConfig fills an empty one with
 * http://localhost:<http.port>, which only this machine can follow. An explicit port that is not
 * http.port means a proxy in between (http.trustProxy or http.accelRedirect say so) or a mistake.
 */
export function publicUrlResult(http: Config['http']): CheckResult {
  const check = 'public url'
  const url = new URL(http.publicBaseUrl)
  const listening = `${http.host || '*'}:${http.port}`
  const behindProxy = http.trustProxy || http.accelRedirect !== ''
  if (isLoopback(url.hostname)) {
    if (isLoopback(http.host))
      return { check, status: 'ok', detail: `${http.publicBaseUrl}, HTTP on ${listening}: a node for this machine only` }
    return {
      check,
      status: 'warn',
      detail: `${http.publicBaseUrl} (http.publicBaseUrl, by default http://localhost:<http.port>) is this machine only, yet HTTP listens on ${listening}: the torrents' web seeds and the feeds' links work only here`,
      fix: 'set http.publicBaseUrl to how others reach this node, e.g. https://grib.example.org',
    }
  }
  const explicitPort = url.port !== ''
  const publicPort = explicitPort ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
  if (http.port === 0 || publicPort === http.port)
    return { check, status: 'ok', detail: `${http.publicBaseUrl} matches HTTP on ${listening}` }
  if (behindProxy)
    return {
      check,
      status: 'ok',
      detail: `${http.publicBaseUrl}, HTTP on ${listening} behind a reverse proxy (http.trustProxy or http.accelRedirect)`,
    }
  if (!explicitPort)
    return {
      check,
      status: 'ok',
      detail: `${http.publicBaseUrl} on port ${publicPort}, HTTP on ${listening}: assumes a reverse proxy forwards ${publicPort} to ${http.port}`,
    }
  return {
    check,
    status: 'warn',
    detail: `${http.publicBaseUrl} says port ${publicPort} but HTTP listens on ${listening}, with no proxy configured (http.trustProxy, http.accelRedirect)`,
    fix: `set http.publicBaseUrl's port to ${http.port}, or http.port to ${publicPort}, unless something forwards ${publicPort} to ${http.port}`,
  }
}

// ---------------------------------------------------------------------------------------------

export interface DoctorOptions {
  /** check that the ports are free (not once the daemon holds them) */
  ports?: boolean
  brokerTimeoutMs?: number
}

/** Every check for `config`, in a fixed order; the slow ones (GDAL, brokers) run concurrently. */
export async function runChecks(config: Config, options: DoctorOptions = {}): Promise<CheckResult[]> {
  const brokers = [
    ...(config.notify.brokerUrl ? [{ what: 'notify.brokerUrl', url: config.notify.brokerUrl }] : []),
    ...config.mirror.brokers.map((b, i) => ({ what: `mirror.brokers[${i}]`, url: b.url })),
  ]
  const slow = Promise.all([checkCcsds(), ...brokers.map((b) => checkBroker(b.what, b.url, options.brokerTimeoutMs))])
  const ports = options.ports === false ? [] : await checkPorts(config)
  const dataDir = await checkDataDir(config.dataDir)
  const disk = dataDir.status === 'fail' ? [] : [await checkDisk(config)]
  const [ccsds, ...brokerResults] = await slow
  return [...ports, dataDir, ...disk, ccsds!, ...brokerResults, publicUrlResult(config.http)]
}

/** 1 if any check failed, else 0: the exit status of `gribswarm doctor`. */
export const exitStatus = (results: CheckResult[]) => (results.some((r) => r.status === 'fail') ? 1 : 0)
