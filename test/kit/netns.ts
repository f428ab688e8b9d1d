// A virtual LAN of Linux network namespaces, so that stock BitTorrent clients run as separate
// hosts with their own addresses, as on the internet (Transmission refuses to dial peers at
// 127.0.0.0/8, so loopback tests cannot exercise it). Topology: a star routed by one hub
// namespace; one namespace per host, with `lo` up and `eth0` (a veth whose other end is in the
// hub) holding 10.<a>.<b>.<i+1>/32, the rest of the /24 routed through the hub. Routed rather
// than bridged because the kernel's ARP table is one for all namespaces (gc_thresh3, 1024
// entries by default): on a bridge every host learns every other one, and 33 hosts overflowed
// it ("neighbor table overflow" in dmesg: packets dropped). Routed, each host knows only the
// hub, and the hub each host. Every address lives inside the namespaces made here; the root
// namespace gets no interface and no address. Host 0 is meant to be the origin; its uplink
// (BitTorrent and HTTP together) can be capped with tc tbf.
//
// Where namespaces cannot be made (not root), the same Lan falls back to loopback and says why
// (Lan.loopback): hosts at 127.x addresses with ports of their own, no tc.
//
// Plus a way in from the root namespace: a bridge process started inside a namespace listens on
// a unix socket (the filesystem is shared by every namespace) and forwards each connection to
// host:port there; nsHttp() sends one HTTP request through it.
import { execFile, execFileSync } from 'node:child_process'
import { request } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Resources } from './resources.ts'
import { waitFor } from './wait.ts'

/** Every namespace this module makes is named `gsnet<pid>-<lan>-...`; stale ones are found by that. */
const PREFIX = 'gsnet'
const BRIDGE_SCRIPT = fileURLToPath(new URL('./ns-bridge.mjs', import.meta.url))
/** The hub's address on each of its ports: link-local, the hosts' one gateway and one neighbour. */
const GATEWAY = '169.254.0.1'
/** Per namespace: run inside the hub, this turns on forwarding there only. */
const IP_FORWARD = 'echo 1 > /proc/sys/net/ipv4/ip_forward'
/** On loopback, ports move up by this plus the host's index: above the privileged range, away from the defaults. */
const LOOPBACK_PORT_OFFSET = 10_000
/** Asks for the loopback fallback where namespaces would work, so that CI covers it too. */
const FORCE_LOOPBACK = 'GRIBSWARM_TEST_LAN'

export interface NetHost {
  /** 0 for the origin, then 1, 2, ... */
  index: number
  /** the network namespace's name, for `ip netns exec`; none on a loopback Lan */
  ns?: string
  /** where it runs, for messages: its namespace, or `loopback <address>` */
  name: string
  /** IPv4 address of its eth0 (127.x on loopback), without the prefix length */
  address: string
  /** its uplink cap that tc could not apply (loopback): the process on it must enforce it itself */
  unshapedUplinkMbit?: number
}

export interface Lan {
  /** `gsnet<pid>-<n>[-tag]`, the prefix of its namespaces */
  name: string
  /** e.g. 10.140.3.0/24, or 127.140.3.0/24 on loopback */
  subnet: string
  /** the namespace routing between the hosts; none on loopback */
  hub?: string
  hosts: NetHost[]
  /** Why the hosts share the loopback interface instead of having namespaces of their own; undefined when they do. */
  loopback?: string
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
      reject(
        new Error(
          `${command} ${args.join(' ')} failed (exit ${String(code)}${timedOut}): ${tailOf(stderr) || tailOf(stdout) || err.message}`,
        ),
      )
    })
  })
}

/** `ip netns exec <ns> cmd ...args`, for spawning `cmd` inside `host`'s namespace; on loopback, `cmd` itself. */
export function inNs(host: NetHost, cmd: string, args: string[]): { command: string; args: string[] } {
  return host.ns ? { command: 'ip', args: ['netns', 'exec', host.ns, cmd, ...args] } : { command: cmd, args }
}

/** Where a host's private services (RPC, Web UI, a daemon behind nginx) listen: its namespace's loopback, or its own address on a loopback Lan. */
export function localAddress(host: NetHost): string {
  return host.ns ? '127.0.0.1' : host.address
}

/**
 * The port a service of `host` listens on: the tool's own default in a namespace of its own; on
 * loopback, where every host shares one port space and some tools bind every address (IPv6,
 * webtorrent), the default plus an offset per host.
 */
export function portOf(host: NetHost, port: number): number {
  return host.ns ? port : port + LOOPBACK_PORT_OFFSET + host.index
}

/**
 * A long-running child inside `host`'s namespace (`ip netns exec` and setpriv exec it: the pid is
 * the command's). It gets SIGTERM if this process dies without stopping it (even by SIGKILL), so
 * no daemon outlives a crashed test inside a namespace nobody can name any more.
 */
export function startInNs(
  res: Resources,
  host: NetHost,
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
) {
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
  return (await runCommand('ip', ['netns', 'list']))
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter(Boolean)
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
 * undefined when this process can build a Lan (root; `ip netns add`, forwarding, a veth pair and a
 * tbf qdisc all work in a scratch namespace, deleted again), else why not, for a test's skip message.
 */
export function netnsUnavailable(): Promise<string | undefined> {
  unavailable ??= (async () => {
    if (process.env[FORCE_LOOPBACK] === 'loopback') return `${FORCE_LOOPBACK}=loopback asks for the loopback fallback`
    if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
    if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)'
    const scratch = `${PREFIX}${process.pid}-probe${scratchSeq++}`
    try {
      await runCommand('ip', ['netns', 'add', scratch])
    } catch (err) {
      return `cannot create a network namespace: ${(err as Error).message}`
    }
    try {
      await runCommand('ip', ['netns', 'exec', scratch, 'sh', '-c', IP_FORWARD])
      await runCommand('ip', ['-n', scratch, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'p0'])
      await runCommand('tc', [
        '-n',
        scratch,
        'qdisc',
        'add',
        'dev',
        'eth0',
        'root',
        'tbf',
        'rate',
        '80mbit',
        'burst',
        '64kb',
        'latency',
        '50ms',
      ])
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
      if (pids.length)
        process.stderr.write(`netns: stale namespace ${ns} still holds processes ${pids.join(', ')}; deleting its name only\n`)
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
  // Forwarding is per namespace: this touches the hub only.
  await runCommand('ip', ['netns', 'exec', hub, 'sh', '-c', IP_FORWARD])
}

/** One host: its namespace, eth0 created right there (never in the root namespace), its peer a port of the hub routing to it. */
async function setUpHost(hub: string, subnet: string, host: NetHost, uplinkMbit: number | undefined): Promise<void> {
  const port = `p${host.index}` // the hub's end, inside the hub only
  const ns = host.name
  await runCommand('ip', ['netns', 'add', ns])
  await runCommand('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  await runCommand('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', hub])
  await runCommand('ip', ['-n', ns, 'addr', 'add', `${host.address}/32`, 'dev', 'eth0'])
  await runCommand('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
  await runCommand('ip', ['-n', hub, 'addr', 'add', `${GATEWAY}/32`, 'dev', port])
  await runCommand('ip', ['-n', hub, 'link', 'set', port, 'up'])
  await runCommand('ip', ['-n', hub, 'route', 'add', `${host.address}/32`, 'dev', port])
  await runCommand('ip', ['-n', ns, 'route', 'add', `${GATEWAY}/32`, 'dev', 'eth0'])
  await runCommand('ip', ['-n', ns, 'route', 'add', subnet, 'via', GATEWAY, 'dev', 'eth0'])
  if (uplinkMbit) await runCommand('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', ...tbfArgs(uplinkMbit)])
}

/**
 * Builds a LAN of `hosts` hosts (host 0 is meant to be the origin); `uplinkMbit[i]` caps host i's
 * egress. On failure, whatever was made is deleted before the error is thrown.
 */
export async function createLan(options: { hosts: number; uplinkMbit?: Record<number, number>; tag?: string }): Promise<Lan> {
  if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > 250)
    throw new Error(`createLan: hosts must be 1–250, got ${options.hosts}`)
  const seq = lanSeq++
  const tag = (options.tag ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '')
    .slice(0, 12)
  const name = `${PREFIX}${process.pid}-${seq}${tag ? `-${tag}` : ''}`
  const why = await netnsUnavailable()
  if (why) return loopbackLan(name, seq, options, why)
  await removeStaleNamespaces()
  installExitHook()
  const net = subnetFor(seq)
  const hub = `${name}-hub`
  const hosts: NetHost[] = Array.from({ length: options.hosts }, (_, index) => ({
    index,
    ns: `${name}-h${index}`,
    name: `${name}-h${index}`,
    address: `${net}.${index + 1}`,
  }))
  const made: string[] = []
  let destroying: Promise<void> | undefined
  const destroy = () => {
    destroying ??= (async () => {
      const errors: string[] = []
      // Hosts first: their veths go with them, then the hub.
      for (const ns of [...made].reverse()) {
        await deleteNamespace(ns).then(
          () => liveNamespaces.delete(ns),
          (err: Error) => errors.push(err.message),
        )
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
      made.push(host.name)
      liveNamespaces.add(host.name)
      await setUpHost(hub, `${net}.0/24`, host, options.uplinkMbit?.[host.index])
    }
  } catch (err) {
    await destroy().catch(() => undefined)
    throw new Error(`createLan ${name} (${options.hosts} hosts, ${net}.0/24): ${(err as Error).message}`)
  }
  return { name, subnet: `${net}.0/24`, hub, hosts, destroy }
}

/**
 * The fallback where namespaces cannot be made: every host on the loopback interface, with an
 * address of its own in 127.0.0.0/8 that its programs bind, and ports of its own (portOf). No tc:
 * an uplink cap is left to the host's program (unshapedUplinkMbit). Transmission never dials
 * peers in 127.0.0.0/8, so on loopback it gets nothing over BitTorrent from peers it would dial.
 */
function loopbackLan(name: string, seq: number, options: { hosts: number; uplinkMbit?: Record<number, number> }, why: string): Lan {
  const net = `127.${subnetFor(seq).slice('10.'.length)}`
  const hosts: NetHost[] = Array.from({ length: options.hosts }, (_, index) => {
    const address = `${net}.${index + 1}`
    return { index, name: `loopback ${address}`, address, unshapedUplinkMbit: options.uplinkMbit?.[index] }
  })
  return { name, subnet: `${net}.0/24`, hosts, loopback: why, destroy: async () => undefined }
}

/** A unix socket through which the root namespace reaches `target` inside a host's namespace. */
export interface Bridge {
  socketPath: string
  /** host:port as seen inside the namespace; also the Host header nsHttp sends */
  target: string
  /** the host's name, for messages */
  where: string
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
  await waitFor(
    `the bridge to ${target} in ${host.name}`,
    () => {
      if (handle.child.exitCode !== null || handle.child.signalCode !== null) {
        throw new Error(`ns-bridge exited (${handle.child.exitCode ?? handle.child.signalCode}): ${tailOf(handle.stderr)}`)
      }
      return handle.stdout.includes('listening')
    },
    10_000,
    20,
  )
  return { socketPath, target, where: host.name, close: () => handle.stop(2000) }
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
export function nsHttp(endpoint: { socketPath: string; target?: string; where?: string }, req: NsRequest): Promise<NsResponse> {
  const method = req.method ?? 'GET'
  const where = `${method} http://${endpoint.target ?? 'unix'}${req.path}${endpoint.where ? ` in ${endpoint.where}` : ''} (via ${endpoint.socketPath})`
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
