// GDAL, in a process of its own (decoder-process.ts), started on the first message to open and
// stopped after a minute without one, or when the daemon's process ends (its IPC channel
// closes). The daemon itself never loads GDAL: an idle node does not carry its ~46 MB of
// resident memory, and a crash of GDAL or libaec on a hostile file fails that file's
// validation instead of taking the daemon down.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { GdalBandNames } from './inventory.ts'

export interface DecodeRequest {
  id: number
  /** what GDAL opens: /vsisubfile/… of a file on disk, or the /vsimem/ name for `bytes` */
  path: string
  /** a message in memory, base64 (the doctor's) */
  bytes?: string
  /** names the message in errors: file, message number, byte range */
  where: string
  /** bits per packed value of each field: a band packed with more than 0 that decodes to a constant is corrupt */
  packedBits: number[]
  /** decode every band, not only open the message and name its bands */
  pixels: boolean
  /** reply with band 1's decoded values */
  firstValues?: boolean
}

export type DecodeReply =
  { id: number; names: GdalBandNames[]; values?: number[]; error?: undefined } | { id: number; error: string; invalid: boolean }

/** GDAL found the message invalid: the reason names the file and message. */
export class UndecodableError extends Error {
  override name = 'UndecodableError'
}

/** The process went away while `where` was being decoded. */
export class DecoderExitError extends Error {
  override name = 'DecoderExitError'
}

const ENTRY = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './decoder-process.ts' : './decoder-process.js', import.meta.url))
// Loaders (tsx under the tests, a test's hooks) carry over; debugger and profiler flags do not.
const execArgv = process.execArgv.filter(
  (arg, i, all) => /^--(import|require|loader)(=|$)/.test(arg) || /^--(import|require|loader)$/.test(all[i - 1] ?? ''),
)

// glibc's malloc, as the GDAL process uses it: a decode's buffers (MBs each) are kept in the heap
// and reused instead of mapped and unmapped per message, whose fresh pages, faulted in and zeroed,
// were half of a decode's CPU here. 32 MiB is the largest mmap threshold glibc takes (mallopt(3)).
const MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024), MALLOC_TRIM_THRESHOLD_: String(128 * 1024 * 1024) }

interface Pending {
  resolve: (reply: DecodeReply) => void
  reject: (err: Error) => void
  where: string
}

export class GribDecoder {
  private child: ChildProcess | undefined
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private idleTimer: NodeJS.Timeout | undefined

  constructor(private readonly idleMs = 60_000) {}

  /** Opens a message, names its bands and, with `pixels`, decodes them. */
  async bands(request: Omit<DecodeRequest, 'id'>): Promise<{ names: GdalBandNames[]; values?: number[] }> {
    const reply = await this.ask(request)
    if (reply.error !== undefined) throw reply.invalid ? new UndecodableError(reply.error) : new Error(`${request.where}: ${reply.error}`)
    return reply
  }

  private ask(request: Omit<DecodeRequest, 'id'>): Promise<DecodeReply> {
    const child = this.start()
    clearTimeout(this.idleTimer)
    const id = this.nextId++
    return new Promise<DecodeReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, where: request.where })
      // Held while something waits for an answer, so that a pending decode keeps the process alive.
      child.channel?.ref()
      child.send({ ...request, id } satisfies DecodeRequest)
    })
  }

  private start(): ChildProcess {
    if (this.child) return this.child
    const child = fork(ENTRY, [], { execArgv, env: { ...process.env, ...MALLOC_ENV }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.child = child
    child.on('message', (reply: DecodeReply) => {
      const waiting = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      waiting?.resolve(reply)
      if (this.pending.size === 0) this.idle(child)
    })
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined
      for (const [id, waiting] of this.pending) {
        this.pending.delete(id)
        waiting.reject(
          new DecoderExitError(`${waiting.where}: the GDAL process ended (${signal ?? `exit code ${code}`}) while decoding it`),
        )
      }
    })
    child.unref()
    return child
  }

  private idle(child: ChildProcess): void {
    child.channel?.unref()
    this.idleTimer = setTimeout(() => {
      if (this.child !== child || this.pending.size > 0) return
      this.child = undefined
      child.kill()
    }, this.idleMs)
    this.idleTimer.unref()
  }
}

/** The process's one GDAL process, shared by every validation and the doctor. */
export const decoder = new GribDecoder()
