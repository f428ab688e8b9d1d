// A virtual LAN of Linux network namespaces, so that stock BitTorrent clients run as separate
// hosts with their own addresses, as on the internet (Transmission refuses to dial peers at
// 127.0.0.0/8, so loopback tests cannot exercise it). Topology: one hub namespace holding a
// bridge without an address; one namespace per host, with `lo` up and `eth0` (a veth whose other
// end is a port of the hub's bridge) at 10.<a>.<b>.<i+1>/24. Every address lives inside the
// namespaces made here; the root namespace gets no interface and no address. Host 0 is meant to
// be the origin; its uplink (BitTorrent and HTTP together) can be capped with tc tbf.
//
// Plus a way in from the root namespace: a bridge process started inside a namespace listens on
// a unix socket (the filesystem is shared by every namespace) and forwards each connection to
// host:port there; nsHttp() sends one HTTP request through it.
import { execFile, execFileSync } from 'node:child_process'
import { request } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor, type Resources } from './bench-util.ts'

/** Every namespace this module makes is named `gsnet<pid>-<lan>-...`; stale ones are found by that. */
const PREFIX = 'gsnet'
const BRIDGE_SCRIPT = fileURLToPath(new URL('./ns-bridge.mjs', import.meta.url))

export interface NetHost {
  /** 0 for the origin, then 1, 2, ... */
  index: number
  /** the network namespace's name, for `ip netns exec` */
  ns: string
  /** IPv4 address of its eth0, without the prefix length */
  address: string
}

export interface Lan {
  /** `gsnet<pid>-<n>[-tag]`, the prefix of its namespaces */
  name: string
  /** e.g. 10.140.3.0/24 */
  subnet: string
  /** the namespace holding the bridge */
  hub: string
  hosts: NetHost[]
  /** `ip netns exec <ns> cmd ...args`, for spawning a command on `host`. */
  command(host: NetHost, cmd: string, args: string[]): { command: string; args: string[] }
  /** Deletes every namespace this Lan made. Kills nothing: stop the processes inside first. Idempotent. */
  destroy(): Promise<void>
}

/** The last `max` characters of a child's output, for error messages. */
function tailOf(text: string | Buffer, max = 1000): string {
  const s = String(text).trim()
  return s.length > max ? `…${s.slice(-max)}` : s
}

/** Runs a command to completion; its failure names the command, the exit code and the end of stderr. */
export function runCommand(command: string, args: string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout)
      const code = (err as NodeJS.ErrnoException & { code?: unknown }).code ?? err.signal
      const timedOut = err.killed ? `, killed after ${timeoutMs} ms` : ''
      reject(new Error(`${command} ${args.join(' ')} failed (exit ${String(code)}${timedOut}): ${tailOf(stderr) || tailOf(stdout) || err.message}`))
    })
  })
}

/** `ip netns exec <ns> cmd ...args`, for spawning `cmd` inside `host`'s namespace. */
export function inNs(host: NetHost, cmd: string, args: string[]): { command: string; args: string[] } {
  return { command: 'ip', args: ['netns', 'exec', host.ns, cmd, ...args] }
}

/**
 * A long-running child inside `host`'s namespace (`ip netns exec` and setpriv exec it: the pid is
 * the command's). It gets SIGTERM if this process dies without stopping it (even by SIGKILL), so
 * no daemon outlives a crashed test inside a namespace nobody can name any more.
 */
export function startInNs(res: Resources, host: NetHost, cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const spawned = daemonInNs(host, cmd, args)
  return res.start(spawned.command, spawned.args, options)
}

/** The command line startInNs spawns, for callers that spawn it themselves. */
export function daemonInNs(host: NetHost, cmd: string, args: string[]): { command: string; args: string[] } {
  return inNs(host, 'setpriv', ['--pdeathsig', 'TERM', '--', cmd, ...args])
}

/** Runs a command inside `host`'s namespace to completion; failures carry the namespace. */
export async function runInNs(host: NetHost, cmd: string, args: string[], timeoutMs = 15_000): Promise<string> {
  const spawned = inNs(host, cmd, args)
  return runCommand(spawned.command, spawned.args, timeoutMs)
}

async function namespaceNames(): Promise<string[]> {
  // Lines look like "name (id: 3)" or just "name".
  return (await runCommand('ip', ['netns', 'list'])).split('\n').map((line) => line.split(' ')[0]!).filter(Boolean)
}

/** Deletes a namespace; one already gone is fine (destroy() is idempotent). */
async function deleteNamespace(ns: string): Promise<void> {
  await runCommand('ip', ['netns', 'delete', ns]).catch((err: Error) => {
    if (!/No such file|Cannot remove namespace file/.test(err.message)) throw err
  })
}

let unavailable: Promise<string | undefined> | undefined
let scratchSeq = 0

/**
 * undefined when this process can build a Lan (root; `ip netns add`, a bridge, a veth pair and a
 * tbf qdisc all work in a scratch namespace, deleted again), else why not, for a test's skip message.
 */
export function netnsUnavailable(): Promise<string | undefined> {
  unavailable ??= (async () => {
    if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
    if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)'
    const scratch = `${PREFIX}${process.pid}-probe${scratchSeq++}`
    try {
      await runCommand('ip', ['netns', 'add', scratch])
    } catch (err) {
      return `cannot create a network namespace: ${(err as Error).message}`
    }
    try {
      await runCommand('ip', ['-n', scratch, 'link', 'add', 'br0', 'type', 'bridge'])
      await runCommand('ip', ['-n', scratch, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'p0'])
      await runCommand('tc', ['-n', scratch, 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', '80mbit', 'burst', '64kb', 'latency', '50ms'])
      return undefined
    } catch (err) {
      return `network namespaces work but building a LAN does not: ${(err as Error).message}`
    } finally {
      await deleteNamespace(scratch).catch(() => undefined)
    }
  })()
  return unavailable
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

let staleRemoved: Promise<void> | undefined

/**
 * Deletes the namespaces of earlier runs whose process is gone (a crash, or a SIGKILL before
 * destroy()). Processes still inside one are left alone (not ours to kill); they are named on stderr.
 */
export function removeStaleNamespaces(): Promise<void> {
  staleRemoved ??= (async () => {
    for (const ns of await namespaceNames()) {
      const pid = Number(new RegExp(`^${PREFIX}(\\d+)-`).exec(ns)?.[1])
      if (!pid || pid === process.pid || processAlive(pid)) continue
      const pids = (await runCommand('ip', ['netns', 'pids', ns]).catch(() => '')).trim().split(/\s+/).filter(Boolean)
      if (pids.length) process.stderr.write(`netns: stale namespace ${ns} still holds processes ${pids.join(', ')}; deleting its name only\n`)
      await deleteNamespace(ns)
    }
  })()
  return staleRemoved
}

// Namespaces of Lans not yet destroyed, deleted synchronously if the process exits first.
const liveNamespaces = new Set<string>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const ns of liveNamespaces) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore', timeout: 5000 })
      } catch {
        // nothing more can be done while exiting; the next run removes it as stale
      }
    }
  })
}

let lanSeq = 0

/** 10.<a>.<b>.0/24: `a` from the pid, `b` from the Lan's number, so Lans of one process never share a subnet. */
function subnetFor(seq: number): string {
  return `10.${128 + (process.pid % 96)}.${seq % 256}`
}

/** tbf needs a bucket of at least one timer tick of traffic; 10 ms of it (at least 64 KiB) keeps TCP at the rate. */
function tbfArgs(mbit: number): string[] {
  const bytesPerSec = (mbit * 1_000_000) / 8
  const burst = Math.max(64 * 1024, Math.round(bytesPerSec / 100))
  return ['rate', `${mbit}mbit`, 'burst', String(burst), 'latency', '50ms']
}

async function setUpHub(hub: string): Promise<void> {
  await runCommand('ip', ['netns', 'add', hub])
  await runCommand('ip', ['-n', hub, 'link', 'set', 'lo', 'up'])
  await runCommand('ip', ['-n', hub, 'link', 'add', 'br0', 'type', 'bridge'])
  await runCommand('ip', ['-n', hub, 'link', 'set', 'br0', 'up'])
}

/** One host: its namespace, eth0 created right there (never in the root namespace), its peer plugged into the hub's bridge. */
async function setUpHost(hub: string, host: NetHost, uplinkMbit: number | undefined): Promise<void> {
  const port = `p${host.index}` // the bridge port's name, inside the hub only
  await runCommand('ip', ['netns', 'add', host.ns])
  await runCommand('ip', ['-n', host.ns, 'link', 'set', 'lo', 'up'])
  await runCommand('ip', ['-n', host.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', hub])
  await runCommand('ip', ['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0'])
  await runCommand('ip', ['-n', host.ns, 'link', 'set', 'eth0', 'up'])
  await runCommand('ip', ['-n', hub, 'link', 'set', port, 'master', 'br0'])
  await runCommand('ip', ['-n', hub, 'link', 'set', port, 'up'])
  if (uplinkMbit) await runCommand('tc', ['-n', host.ns, 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', ...tbfArgs(uplinkMbit)])
}

/**
 * Builds a LAN of `hosts` hosts (host 0 is meant to be the origin); `uplinkMbit[i]` caps host i's
 * egress. On failure, whatever was made is deleted before the error is thrown.
 */
export async function createLan(options: { hosts: number; uplinkMbit?: Record<number, number>; tag?: string }): Promise<Lan> {
  if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > 250) throw new Error(`createLan: hosts must be 1–250, got ${options.hosts}`)
  await removeStaleNamespaces()
  installExitHook()
  const seq = lanSeq++
  const tag = (options.tag ?? '').toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 12)
  const name = `${PREFIX}${process.pid}-${seq}${tag ? `-${tag}` : ''}`
  const net = subnetFor(seq)
  const hub = `${name}-hub`
  const hosts: NetHost[] = Array.from({ length: options.hosts }, (_, index) => ({ index, ns: `${name}-h${index}`, address: `${net}.${index + 1}` }))
  const made: string[] = []
  let destroying: Promise<void> | undefined
  const destroy = () => {
    destroying ??= (async () => {
      const errors: string[] = []
      // Hosts first: their veths go with them, then the hub and its bridge.
      for (const ns of [...made].reverse()) {
        await deleteNamespace(ns).then(() => liveNamespaces.delete(ns), (err: Error) => errors.push(err.message))
      }
      if (errors.length) throw new Error(`destroying LAN ${name}: ${errors.join('; ')}`)
    })()
    return destroying
  }
  try {
    made.push(hub)
    liveNamespaces.add(hub)
    await setUpHub(hub)
    for (const host of hosts) {
      made.push(host.ns)
      liveNamespaces.add(host.ns)
      await setUpHost(hub, host, options.uplinkMbit?.[host.index])
    }
  } catch (err) {
    await destroy().catch(() => undefined)
    throw new Error(`createLan ${name} (${options.hosts} hosts, ${net}.0/24): ${(err as Error).message}`)
  }
  return { name, subnet: `${net}.0/24`, hub, hosts, command: inNs, destroy }
}

/** A unix socket through which the root namespace reaches `target` inside a host's namespace. */
export interface Bridge {
  socketPath: string
  /** host:port as seen inside the namespace; also the Host header nsHttp sends */
  target: string
  ns: string
  close(): Promise<void>
}

/**
 * Starts ns-bridge.mjs inside `host`'s namespace, forwarding connections on a fresh unix socket to
 * targetHost:targetPort there (127.0.0.1 for a server bound to the namespace's loopback).
 */
export async function openBridge(res: Resources, host: NetHost, targetHost: string, targetPort: number): Promise<Bridge> {
  const dir = await res.tempDir('gribswarm-nsbridge-')
  const socketPath = join(dir, 'sock')
  const handle = startInNs(res, host, process.execPath, [BRIDGE_SCRIPT, socketPath, targetHost, String(targetPort)])
  const target = `${targetHost}:${targetPort}`
  await waitFor(`the bridge to ${target} in namespace ${host.ns}`, () => {
    if (handle.child.exitCode !== null || handle.child.signalCode !== null) {
      throw new Error(`ns-bridge exited (${handle.child.exitCode ?? handle.child.signalCode}): ${tailOf(handle.stderr)}`)
    }
    return handle.stdout.includes('listening')
  }, 10_000, 20)
  return { socketPath, target, ns: host.ns, close: () => handle.stop(2000) }
}

export interface NsRequest {
  method?: string
  /** path and query, e.g. /api/v2/torrents/info */
  path: string
  headers?: Record<string, string>
  body?: string | Buffer
  timeoutMs?: number
}

export interface NsResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One HTTP request through a bridge (or any unix socket speaking HTTP), a fresh connection each time. */
export function nsHttp(endpoint: { socketPath: string; target?: string; ns?: string }, req: NsRequest): Promise<NsResponse> {
  const method = req.method ?? 'GET'
  const where = `${method} http://${endpoint.target ?? 'unix'}${req.path}${endpoint.ns ? ` in namespace ${endpoint.ns}` : ''} (via ${endpoint.socketPath})`
  const headers: Record<string, string> = { host: endpoint.target ?? 'localhost', ...req.headers }
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body))
  return new Promise((resolve, reject) => {
    const outgoing = request({ socketPath: endpoint.socketPath, path: req.path, method, headers, agent: false }, (incoming) => {
      const chunks: Buffer[] = []
      incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
      incoming.on('error', (err) => reject(new Error(`${where}: ${err.message}`)))
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body: Buffer.concat(chunks) }))
    })
    outgoing.setTimeout(req.timeoutMs ?? 10_000, () => outgoing.destroy(new Error(`no answer after ${req.timeoutMs ?? 10_000} ms`)))
    outgoing.on('error', (err) => reject(new Error(`${where}: ${err.message}`)))
    outgoing.end(req.body)
  })
}
