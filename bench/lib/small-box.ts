// A cheap VPS on this machine, for the smallbox scenario: a process runs pinned to one core
// (taskset -c 0) inside a memory cgroup of 1 GiB (cgroup v1 memory.limit_in_bytes, or cgroup v2
// memory.max where v1 is absent), put there before it starts its work:
//   sh -c 'echo $$ > <cgroup>/cgroup.procs && exec taskset -c 0 "$@"' <cgroup>/cgroup.procs COMMAND ARGS...
// so the pid Resources.start() gets is COMMAND's own. What runs outside the box (the upstream,
// the peers, the load generators) is kept off that core by pinning the benchmark's own process,
// which they inherit, to the other cores (pinOutside). And how to measure a process with its
// children (the daemon's GDAL process): CPU time and resident memory of the tree, from /proc.
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { cpuSeconds, processTree, residentBytes } from '../../test/kit/measure.ts'
import { Resources, type ChildHandle, type ChildResult, type StartOptions } from '../../test/kit/resources.ts'
import { fmtSize, progress } from './util.ts'

/** The box's core, and its memory. */
export const BOX_CORE = 0
export const BOX_MEMORY = 1024 ** 3

const V1_ROOT = '/sys/fs/cgroup/memory'
const V2_ROOTS = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  )

interface CgroupKind {
  version: 'v1' | 'v2'
  root: string
  /** the limit file, and the files written after it (ignored when absent) */
  limit: string
  alsoSet: Record<string, string>
  /** peak usage (page cache included), when the kernel keeps one */
  peak: string
}

let kindOnce: Promise<CgroupKind | string> | undefined
/** Which memory cgroup this machine lets us make, or why none (found once: it may enable the v2 memory controller). */
function cgroupKind(): Promise<CgroupKind | string> {
  kindOnce ??= findCgroupKind()
  return kindOnce
}

async function findCgroupKind(): Promise<CgroupKind | string> {
  if (await exists(join(V1_ROOT, 'memory.limit_in_bytes')))
    return {
      version: 'v1',
      root: V1_ROOT,
      limit: 'memory.limit_in_bytes',
      // memory + swap: no swapping out of the box either (set after the memory limit, which it may not be below)
      alsoSet: { 'memory.memsw.limit_in_bytes': String(BOX_MEMORY) },
      peak: 'memory.max_usage_in_bytes',
    }
  for (const root of V2_ROOTS) {
    const controllers = await readFile(join(root, 'cgroup.controllers'), 'utf8').catch(() => undefined)
    if (controllers === undefined) continue
    if (!controllers.split(/\s+/).includes('memory')) continue
    const subtree = await readFile(join(root, 'cgroup.subtree_control'), 'utf8').catch(() => '')
    if (!subtree.split(/\s+/).includes('memory')) {
      const enabled = await writeFile(join(root, 'cgroup.subtree_control'), '+memory').then(
        () => true,
        () => false,
      )
      if (!enabled)
        return `cgroup v2 at ${root}: the memory controller is not enabled for its children and could not be (+memory in cgroup.subtree_control)`
    }
    return { version: 'v2', root, limit: 'memory.max', alsoSet: { 'memory.swap.max': '0' }, peak: 'memory.peak' }
  }
  return `no memory cgroup: neither cgroup v1 (${V1_ROOT}/memory.limit_in_bytes) nor cgroup v2 with the memory controller (${V2_ROOTS.join(', ')})`
}

/** Why the box cannot be made on this machine, or undefined when it can. */
export async function smallBoxUnavailable(res: Resources): Promise<string | undefined> {
  if (availableParallelism() < 2) return `one core only: the box takes core ${BOX_CORE} and what runs outside it needs another`
  const taskset = await res.run('taskset', ['-c', String(BOX_CORE), 'true'], 10_000).catch((err: Error) => err)
  if (taskset instanceof Error || taskset.code !== 0)
    return `taskset -c ${BOX_CORE} does not work here (util-linux): ${taskset instanceof Error ? taskset.message : taskset.stderr.trim()}`
  const kind = await cgroupKind()
  if (typeof kind === 'string') return kind
  const probe = join(kind.root, `gribswarm-bench-probe-${process.pid}`)
  const made = await mkdir(probe).then(
    () => rmdir(probe).then(() => undefined),
    (err: Error) => err.message,
  )
  return made && `cannot make a cgroup in ${kind.root} (cgroup ${kind.version}; as root it can): ${made}`
}

let boxes = 0

/** One box: a memory cgroup of its own (made by openSmallBox, removed by close()), and the core. */
export interface SmallBox {
  /** e.g. 'taskset -c 0, cgroup v1 memory.limit_in_bytes = 1 GiB' */
  readonly how: string
  /** the command line that runs `command` in the box */
  wrap(command: string, args: string[]): { command: string; args: string[] }
  /**
   * Resources whose start() and run() put what they start in the box (only the commands `only`
   * accepts, when given), cleaned up with `parent`.
   */
  resources(parent: Resources, only?: (command: string, args: string[]) => boolean): BoxedResources
  /** runs `command` in the box to its end; with the CPU seconds it used (user + system, its children included) */
  runTimed(res: Resources, command: string, args: string[], timeoutMs: number): Promise<ChildResult & { cpuSeconds: number }>
  /** the cgroup's peak memory use so far (page cache included), when the kernel keeps it */
  peakBytes(): Promise<number | undefined>
  /** ends whatever is still in the cgroup (processes we started) and removes it */
  close(): Promise<void>
}

/** Resources that start (some) commands in a box; `boxed` counts them by command. */
export class BoxedResources extends Resources {
  readonly boxed = new Map<string, number>()

  constructor(
    private readonly box: SmallBox,
    private readonly only?: (command: string, args: string[]) => boolean,
  ) {
    super({ report: progress })
  }

  override start(command: string, args: string[], options: StartOptions = {}): ChildHandle {
    if (this.only && !this.only(command, args)) return super.start(command, args, options)
    this.boxed.set(command, (this.boxed.get(command) ?? 0) + 1)
    const run = this.box.wrap(command, args)
    return super.start(run.command, run.args, options)
  }
}

/** Makes a box (a fresh memory cgroup named after `label`), removed when `res` is cleaned up. Throws if the machine has none (see smallBoxUnavailable). */
export async function openSmallBox(res: Resources, label: string): Promise<SmallBox> {
  const kind = await cgroupKind()
  if (typeof kind === 'string') throw new Error(kind)
  const dir = join(kind.root, `gribswarm-bench-${label}-${process.pid}-${++boxes}`)
  await mkdir(dir)
  let closed = false
  const procs = join(dir, 'cgroup.procs')
  const close = async () => {
    if (closed) return
    for (let attempt = 0; ; attempt++) {
      const pids = (await readFile(procs, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number)
      // Only what we put there: the box's processes, outlived by a child (a killed daemon's GDAL process).
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone already
        }
      }
      const removed = await rmdir(dir).then(
        () => true,
        (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? true : attempt >= 50 ? Promise.reject(err) : false),
      )
      if (removed) break
      await delay(100)
    }
    closed = true
  }
  res.defer(`remove the cgroup ${dir}`, close)
  await writeFile(join(dir, kind.limit), String(BOX_MEMORY))
  for (const [file, value] of Object.entries(kind.alsoSet)) await writeFile(join(dir, file), value).catch(() => {})
  const how = `taskset -c ${BOX_CORE}, cgroup ${kind.version} ${kind.limit} = ${fmtSize(BOX_MEMORY)}`
  const wrap = (command: string, args: string[]) => ({
    command: 'sh',
    args: ['-c', `echo $$ > "$0" && exec taskset -c ${BOX_CORE} "$@"`, procs, command, ...args],
  })
  const box: SmallBox = {
    how,
    wrap,
    resources(parent, only) {
      const boxed = new BoxedResources(box, only)
      parent.defer(`stop what ran in ${dir}`, () => boxed.cleanup())
      return boxed
    },
    async runTimed(res, command, args, timeoutMs) {
      // The shell waits for the command, then `times` prints its children's user and system time.
      const script = `"$@"; status=$?; times >&2; exit $status`
      const run = wrap('sh', ['-c', script, 'sh', command, ...args])
      const result = await res.run(run.command, run.args, timeoutMs)
      const times = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(result.stderr.trim())
      if (!times) throw new Error(`${command} in the box: no times in its stderr: ${result.stderr.slice(-500)}`)
      const [, um, us, sm, ss] = times.map(Number) as [number, number, number, number, number]
      return { ...result, stderr: result.stderr.trim().split('\n').slice(0, -2).join('\n'), cpuSeconds: um * 60 + us + sm * 60 + ss }
    },
    async peakBytes() {
      const text = await readFile(join(dir, kind.peak), 'utf8').catch(() => undefined)
      return text === undefined ? undefined : Number(text)
    },
    close,
  }
  return box
}

/**
 * Pins this process (every thread) to the cores other than the box's, so that what it starts
 * outside the box (upstream, peers, load generators) inherits that; put back when `res` is cleaned up.
 */
export async function pinOutside(res: Resources): Promise<string> {
  const before = await res.run('taskset', ['-c', '-p', String(process.pid)], 10_000)
  const list = /: (\S+)\s*$/.exec(before.stdout.trim())?.[1]
  if (before.code !== 0 || !list) throw new Error(`taskset -c -p ${process.pid}: ${before.stdout} ${before.stderr}`)
  const others = Array.from({ length: availableParallelism() }, (_, core) => core).filter((core) => core !== BOX_CORE)
  const pin = async (cores: string) => {
    const run = await res.run('taskset', ['-a', '-c', '-p', cores, String(process.pid)], 10_000)
    if (run.code !== 0) throw new Error(`taskset -a -c -p ${cores} ${process.pid}: ${run.stderr}`)
  }
  await pin(others.join(','))
  res.defer(`pin the benchmark's process back to cores ${list}`, () => pin(list))
  return others.join(',')
}

/** CPU seconds (user + system) used so far by a process and its descendants, those that ended included (once waited for), or undefined once it is gone. */
export async function treeCpuSeconds(pid: number): Promise<number | undefined> {
  let total: number | undefined
  for (const member of await processTree(pid)) {
    const seconds = await cpuSeconds(member, { ended: true })
    if (seconds !== undefined) total = (total ?? 0) + seconds
  }
  return total
}

/** VmRSS of a process and of its descendants (their sum, and how many), or undefined once it is gone. */
export async function treeResidentBytes(pid: number): Promise<{ process: number; children: number; count: number } | undefined> {
  const root = await residentBytes(pid)
  if (root === undefined) return undefined
  const members = (await processTree(pid)).slice(1)
  let children = 0
  for (const member of members) children += (await residentBytes(member)) ?? 0
  return { process: root, children, count: members.length }
}
