// Measuring processes from outside, shared by the tests (the soak) and the benchmark: resident
// memory, threads and descriptors, and CPU time from /proc, and the median and quantiles of
// what was measured.
import { readdir, readFile } from 'node:fs/promises'

/** Resident set size of a process, in bytes (VmRSS), or undefined once it is gone. */
export async function residentBytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined)
  const m = text && new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
  return m ? Number(m[1]) * 1024 : undefined
}

/** Threads and open file descriptors of a process: what native add-ons (WebRTC, GDAL) hold shows up here. */
export async function processCounts(pid: number): Promise<{ threads: number; fds: number }> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const threads = Number(/^Threads:\s+(\d+)/m.exec(text)?.[1] ?? 0)
  const fds = await readdir(`/proc/${pid}/fd`).then(
    (names) => names.length,
    () => 0,
  )
  return { threads, fds }
}

/**
 * CPU seconds (user + system) a process has used so far, with `ended` those of its children that
 * ended and were waited for; undefined once it is gone.
 */
export async function cpuSeconds(pid: number, { ended = false } = {}): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  // Fields after the command name (which may hold spaces) start at ") "; utime, stime, cutime and cstime are the 12th to 15th of those.
  const fields = text?.slice(text.lastIndexOf(') ') + 2).split(' ')
  return fields && fields.slice(11, ended ? 15 : 13).reduce((sum, field) => sum + Number(field), 0) / 100
}

/** The process and its descendants (Linux /proc), the process first. */
export async function processTree(pid: number): Promise<number[]> {
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) {
    const tasks = await readdir(`/proc/${tree[i]}/task`).catch(() => [] as string[])
    for (const task of tasks) {
      const children = await readFile(`/proc/${tree[i]}/task/${task}/children`, 'utf8').catch(() => '')
      for (const child of children.split(/\s+/)) if (child) tree.push(Number(child))
    }
  }
  return tree
}

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Nearest-rank quantile: the value below which a fraction `q` of the values lie. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}
