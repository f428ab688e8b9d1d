// The data directory is the source of truth. A published file is three files side by side:
//   pub/<relPath>           the data, served over HTTP and seeded
//   pub/<relPath>.torrent   its torrent
//   pub/<relPath>.idx       for GRIB2, its inventory in wgrib2's format (inventory.ts)
//   pub/<relPath>.json      its sidecar (ItemRecord): written last, so it is the commit point
// Every write is a temp file plus an atomic rename. Publishing goes through a journal entry
// in tmp/ so a crash at any step is finished or undone at the next start; expiry moves the
// sidecar to expired/ first (a tombstone that also stops the file being fetched again).
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, statfs, unlink } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { renderIdx, type InventoryField } from './inventory.ts'
import type { Logger } from './log.ts'

export interface ItemRecord {
  version: 1
  relPath: string
  fileName: string
  sourceUrl: string
  run: string
  model: string
  grid: string
  package: string
  range: string
  size: number
  /** mtime of the data file when published: unchanged size and mtime mean no re-hash on restart. */
  mtimeMs: number
  md5: string
  /** Base64, as Sarracenia's identity field wants it. */
  sha512: string
  infoHash: string
  pieceLength: number
  magnetURI: string
  publishedAt: string
  expiresAt: string
  /** The upstream's Last-Modified (ISO 8601), posted as v03 mtime; absent when it said none. */
  upstreamMtime?: string
  /** MIME type posted as v03 contentType; absent means GRIB. */
  contentType?: string
  /** A copy: the followed feed or broker it was announced on, and the announcing node's baseUrl and source. Only a remove from there removes it. */
  copiedFrom?: Provenance
  /** What is inside a GRIB2 file, field by field (also written beside it as <relPath>.idx); absent for other formats. */
  inventory?: InventoryField[]
}

/** Who announced a copied file: what a remove must match to apply to it. */
export interface Provenance {
  origin: string
  baseUrl: string
  source?: string
}

/**
 * Beside a partial upstream download (`tmp/<hash>.part`), what another run needs to go on from
 * its bytes: the object they are from and how much of them is certainly on disk. Written by
 * fetch.ts before the first byte, rewritten after each fdatasync; removed with the file.
 */
export interface ResumeRecord {
  version: 1
  url: string
  size: number
  /** The ETag (without quotes) of the object the bytes on disk are from, when the upstream gave one. */
  etag?: string
  /** Its Last-Modified (ISO 8601): the If-Range validator when there is no strong ETag. */
  lastModified?: string
  pieceLength: number
  /**
   * /proc/sys/kernel/random/boot_id when the bytes were written. After a process crash (SIGKILL,
   * OOM) the page cache keeps every byte written; after a machine crash only syncedBytes are sure.
   */
  bootId?: string
  startedAt: string
  /** Bytes from the start of the file flushed with fdatasync before this record was written. */
  syncedBytes: number
}

/** Where the resume record of the partial download at `temp` is. */
export function resumeRecordPath(temp: string): string {
  return `${temp}.resume.json`
}

/** The resume record at `path`, or undefined when there is none or it is not one. */
export async function readResumeRecord(path: string): Promise<ResumeRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(path, 'utf8')) as Partial<ResumeRecord>
    const ok =
      r.version === 1 &&
      typeof r.url === 'string' &&
      Number.isSafeInteger(r.size) &&
      Number.isSafeInteger(r.pieceLength) &&
      Number.isSafeInteger(r.syncedBytes) &&
      (r.etag === undefined || typeof r.etag === 'string') &&
      (r.lastModified === undefined || typeof r.lastModified === 'string') &&
      (r.bootId === undefined || typeof r.bootId === 'string') &&
      typeof r.startedAt === 'string' &&
      !Number.isNaN(Date.parse(r.startedAt))
    return ok ? (r as ResumeRecord) : undefined
  } catch {
    return undefined
  }
}

/**
 * How long a partial download is kept to be resumed, from when it started. A pass looks at the
 * newest source.lookbackRuns runs (default 2: 6 to 12 hours back), and a forecast much older
 * than its run + 12 h is of little use, so a partial older than this is for a file no pass will
 * fetch again, or should not. Two days still cover a daemon down for a day, or a catch-up with a
 * larger lookback. (Upstream keeps files ~15 days: not the limit that matters here.)
 */
export const KEEP_PARTIAL_MS = 2 * 86400_000

/** Rejects anything that could leave the tree: absolute paths, `..`, odd characters. */
export function checkRelPath(relPath: string): string {
  const segments = relPath.split('/')
  const ok =
    relPath.length > 0 && relPath.length <= 1024 && segments.every((s) => s !== '' && s !== '.' && s !== '..' && /^[\w.+-]+$/.test(s))
  if (!ok) throw new Error(`unsafe relative path "${relPath}"`)
  return relPath
}

/** Resolves `relPath` under `root`, refusing any result outside it. */
export function resolveInside(root: string, relPath: string): string {
  const full = resolve(root, checkRelPath(relPath))
  if (!full.startsWith(resolve(root) + sep)) throw new Error(`path "${relPath}" escapes ${root}`)
  return full
}

/**
 * Writes a file atomically: temp file in the same directory, fsync, rename. `durable: false`
 * skips the fsync, for files rebuilt from others when a crash leaves them short.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, { durable = true } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`
  const handle = await open(temp, 'w')
  try {
    await handle.writeFile(data)
    if (durable) await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temp, path)
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

async function fileSize(path: string): Promise<number | undefined> {
  return stat(path).then(
    (s) => s.size,
    () => undefined,
  )
}

async function* walk(dir: string): AsyncGenerator<string> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return
  }
  for (const entry of entries) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) yield* walk(full)
    else yield full
  }
}

const heldLocks = new Set<string>()

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

interface PublishIntent {
  tempData: string
  record: ItemRecord
}

export class DataStore {
  readonly pubDir: string
  readonly tmpDir: string
  readonly expiredDir: string
  private readonly items = new Map<string, ItemRecord>()
  /** relPath → size of its .torrent: the feeds' enclosures are the .torrent files. */
  private readonly torrentSizes = new Map<string, number>()
  /** relPath → sha512 of what was published there and has expired. */
  private readonly tombstones = new Map<string, string>()

  constructor(
    readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.pubDir = join(dataDir, 'pub')
    this.tmpDir = join(dataDir, 'tmp')
    this.expiredDir = join(dataDir, 'expired')
  }

  dataPath(relPath: string): string {
    return resolveInside(this.pubDir, relPath)
  }
  torrentPath(relPath: string): string {
    return this.dataPath(relPath) + '.torrent'
  }
  idxPath(relPath: string): string {
    return this.dataPath(relPath) + '.idx'
  }
  private sidecarPath(relPath: string): string {
    return this.dataPath(relPath) + '.json'
  }
  private tombstonePath(relPath: string): string {
    return resolveInside(this.expiredDir, relPath) + '.json'
  }

  /** A temp path for a download of `relPath`; one per file, so a retry reuses it. */
  tempPath(relPath: string, suffix = '.part'): string {
    return join(this.tmpDir, createHash('sha1').update(checkRelPath(relPath)).digest('hex').slice(0, 16) + suffix)
  }

  list(): ItemRecord[] {
    return [...this.items.values()].sort((a, b) => b.publishedAt.localeCompare(a.publishedAt) || a.relPath.localeCompare(b.relPath))
  }
  get(relPath: string): ItemRecord | undefined {
    return this.items.get(relPath)
  }
  torrentSize(relPath: string): number {
    const size = this.torrentSizes.get(relPath)
    if (size === undefined) throw new Error(`no published item ${relPath}`)
    return size
  }
  /** Published now, or published earlier and expired: either way, not to be fetched again. */
  isDone(relPath: string): boolean {
    return this.items.has(relPath) || this.tombstones.has(relPath)
  }
  /** Content with this SHA-512 is published, or was: a mesh node drops repeats of it. */
  hasIdentity(sha512: string): boolean {
    for (const item of this.items.values()) if (item.sha512 === sha512) return true
    for (const identity of this.tombstones.values()) if (identity === sha512) return true
    return false
  }
  publishedBytes(): number {
    let total = 0
    for (const item of this.items.values()) total += item.size
    return total
  }
  async freeBytes(): Promise<number> {
    const fs = await statfs(this.dataDir)
    return fs.bavail * fs.bsize
  }

  /**
   * One process per data directory: a second one would write the same temp files.
   * A lock left by a dead process is taken over.
   */
  async lock(): Promise<() => Promise<void>> {
    await mkdir(this.dataDir, { recursive: true })
    const lockPath = join(this.dataDir, 'lock')
    for (;;) {
      try {
        const handle = await open(lockPath, 'wx')
        await handle.writeFile(String(process.pid))
        await handle.close()
        heldLocks.add(lockPath)
        return async () => {
          heldLocks.delete(lockPath)
          await rm(lockPath, { force: true })
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        const pid = Number(await readFile(lockPath, 'utf8').catch(() => ''))
        // Our own pid is a stale lock (a container restarts with the same pid) unless we took it.
        const held = pid === process.pid ? heldLocks.has(lockPath) : pid > 0 && isAlive(pid)
        if (held) {
          throw new Error(`data directory ${this.dataDir} is in use by process ${pid} (a running daemon does its own passes)`)
        }
        await rm(lockPath, { force: true })
      }
    }
  }

  /**
   * Opens the tree: finishes interrupted publications, removes what is left in tmp/ but the
   * upstream downloads that can be resumed (a .part with its resume record, younger than
   * KEEP_PARTIAL_MS), removes orphans of interrupted expiries, loads the published items and
   * tombstones.
   */
  async open(now = new Date(), forgetTombstonesAfterMs = 16 * 86400_000): Promise<void> {
    await Promise.all([this.pubDir, this.tmpDir, this.expiredDir].map((d) => mkdir(d, { recursive: true })))
    for (const name of await readdir(this.tmpDir)) {
      const path = join(this.tmpDir, name)
      if (name.endsWith('.intent.json')) await this.finishPublish(JSON.parse(await readFile(path, 'utf8')) as PublishIntent, path)
    }
    const resumable = await this.resumablePartials(now)
    for (const name of await readdir(this.tmpDir)) {
      if (resumable.has(name)) continue
      this.log.info('removing partial download left by an earlier run', { file: name })
      await rm(join(this.tmpDir, name), { recursive: true, force: true })
    }
    if (resumable.size) this.log.info('keeping partial downloads to resume', { files: resumable.size / 2 })
    await this.loadPublished('repair')
    await this.loadTombstones(now, forgetTombstonesAfterMs, 'repair')
  }

  /**
   * Removes the partial upstream downloads that can no longer be resumed: started more than
   * KEEP_PARTIAL_MS before `now` (one an earlier run left and no pass has resumed since), or
   * without a valid record. Only between passes, when none of them is being downloaded.
   */
  async removeStalePartials(now = new Date()): Promise<void> {
    const keep = await this.resumablePartials(now)
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      if (keep.has(name) || !/\.part(\.resume\.json)?$/.test(name)) continue
      this.log.info('removing a partial download too old to resume', { file: name })
      await rm(join(this.tmpDir, name), { force: true })
    }
  }

  /** Names in tmp/ of the .part files that have a valid resume record started within KEEP_PARTIAL_MS, and of their records. */
  private async resumablePartials(now: Date): Promise<Set<string>> {
    const names = new Set(await readdir(this.tmpDir).catch(() => [] as string[]))
    const keep = new Set<string>()
    for (const name of names) {
      const recordName = resumeRecordPath(name)
      if (!name.endsWith('.part') || !names.has(recordName)) continue
      const record = await readResumeRecord(join(this.tmpDir, recordName))
      if (!record) continue
      const age = now.getTime() - Date.parse(record.startedAt)
      if (age > KEEP_PARTIAL_MS) continue
      keep.add(name).add(recordName)
    }
    return keep
  }

  /**
   * Loads what is published and what expired without writing anything, not even the
   * directories: what a dry run, which may look at a tree a daemon holds, needs. Items with
   * missing files are left out, not removed.
   */
  async openReadOnly(now = new Date(), forgetTombstonesAfterMs = 16 * 86400_000): Promise<void> {
    await this.loadPublished('read')
    await this.loadTombstones(now, forgetTombstonesAfterMs, 'read')
  }

  private async loadPublished(mode: 'repair' | 'read'): Promise<void> {
    this.items.clear()
    this.torrentSizes.clear()
    const files: string[] = []
    for await (const path of walk(this.pubDir)) files.push(path)
    const sidecars = new Set(files.filter((f) => f.endsWith('.json')))
    for (const sidecar of sidecars) {
      const record = await this.readRecord(sidecar)
      const dataOk =
        record &&
        (await stat(this.dataPath(record.relPath)).then(
          (s) => s.size === record.size,
          () => false,
        ))
      const torrentSize = record && (await fileSize(this.torrentPath(record.relPath)))
      if (record && dataOk && torrentSize !== undefined) {
        this.items.set(record.relPath, record)
        this.torrentSizes.set(record.relPath, torrentSize)
        if (mode === 'repair' && record.inventory?.length) {
          const idxSize = await fileSize(this.idxPath(record.relPath))
          if (idxSize !== Buffer.byteLength(renderIdx(record.inventory))) await this.writeIdx(record)
        }
      } else if (mode === 'repair') {
        this.log.warn('dropping a published item whose files are incomplete', { sidecar })
        await unlink(sidecar)
      }
    }
    if (mode === 'read') return
    for (const file of files) {
      if (file.endsWith('.json') || file.endsWith('.tmp')) {
        if (file.endsWith('.tmp')) await rm(file, { force: true })
        continue
      }
      const base = file.replace(/\.(torrent|idx)$/, '')
      const relPath = relative(this.pubDir, base).split(sep).join('/')
      if (!this.items.has(relPath)) {
        this.log.info('removing a file that is not published (left by an interrupted expiry)', { file })
        await rm(file, { force: true })
      }
    }
  }

  private async readRecord(path: string): Promise<ItemRecord | undefined> {
    try {
      const record = JSON.parse(await readFile(path, 'utf8')) as ItemRecord
      if (record.version !== 1 || this.sidecarPath(record.relPath) !== path) return undefined
      return record
    } catch {
      return undefined
    }
  }

  private async loadTombstones(now: Date, forgetAfterMs: number, mode: 'repair' | 'read'): Promise<void> {
    this.tombstones.clear()
    for await (const path of walk(this.expiredDir)) {
      const record = await readFile(path, 'utf8')
        .then((text) => JSON.parse(text) as ItemRecord)
        .catch(() => undefined)
      if (!record || now.getTime() - Date.parse(record.expiresAt) > forgetAfterMs) {
        if (mode === 'repair') await rm(path, { force: true })
      } else {
        this.tombstones.set(record.relPath, record.sha512)
      }
    }
  }

  /**
   * Publishes a validated download. Order: .torrent and .idx, journal entry, data rename, sidecar.
   * Nothing is visible until the sidecar exists; after a crash, open() finishes the job.
   */
  async publish(tempData: string, torrent: Uint8Array, record: Omit<ItemRecord, 'mtimeMs'>): Promise<ItemRecord> {
    const torrentPath = this.torrentPath(record.relPath) // checks relPath before anything is written
    const full: ItemRecord = { ...record, mtimeMs: (await stat(tempData)).mtimeMs }
    await Promise.all([writeFileAtomic(torrentPath, torrent), this.writeIdx(full)])
    const intentPath = this.tempPath(record.relPath, '.intent.json')
    await writeFileAtomic(intentPath, JSON.stringify({ tempData, record: full } satisfies PublishIntent))
    return this.finishPublish({ tempData, record: full }, intentPath)
  }

  private async finishPublish(intent: PublishIntent, intentPath: string): Promise<ItemRecord> {
    const { record } = intent
    const dataPath = this.dataPath(record.relPath)
    if (await exists(intent.tempData)) {
      await mkdir(dirname(dataPath), { recursive: true })
      await rename(intent.tempData, dataPath)
    }
    const published = await stat(dataPath).catch(() => undefined)
    const torrentSize = await fileSize(this.torrentPath(record.relPath))
    if (!published || published.size !== record.size || torrentSize === undefined) {
      this.log.warn('abandoning an interrupted publication whose files are missing', { relPath: record.relPath })
      await unlink(intentPath)
      return record
    }
    const final = { ...record, mtimeMs: published.mtimeMs }
    // One line: with a GRIB2 inventory of thousands of fields, indentation would double it.
    await writeFileAtomic(this.sidecarPath(record.relPath), JSON.stringify(final))
    await unlink(intentPath)
    this.items.set(record.relPath, final)
    this.torrentSizes.set(record.relPath, torrentSize)
    this.tombstones.delete(record.relPath)
    return final
  }

  /**
   * The .idx is derived from the sidecar's inventory: written without an fsync of its own (it
   * is off the publish latency's critical path), and rewritten at start when a crash left it
   * short or missing.
   */
  private async writeIdx(record: ItemRecord): Promise<void> {
    if (record.inventory?.length) await writeFileAtomic(this.idxPath(record.relPath), renderIdx(record.inventory), { durable: false })
  }

  /** First half of expiry: the item is no longer published (tombstone written atomically). */
  async unpublish(relPath: string): Promise<ItemRecord | undefined> {
    const record = this.items.get(relPath)
    if (!record) return undefined
    const tombstone = this.tombstonePath(relPath)
    await mkdir(dirname(tombstone), { recursive: true })
    await rename(this.sidecarPath(relPath), tombstone)
    this.items.delete(relPath)
    this.torrentSizes.delete(relPath)
    this.tombstones.set(relPath, record.sha512)
    return record
  }

  /**
   * Second half of expiry, once nothing reads the files any more. Returns the directories it
   * left empty and removed, deepest first (relative, as relPaths are), for subscribers to
   * remove theirs: a run directory goes once its last file has.
   */
  async deleteFiles(relPath: string): Promise<string[]> {
    if (this.items.has(relPath)) throw new Error(`refusing to delete ${relPath}: it is still published`)
    await rm(this.dataPath(relPath), { force: true })
    await rm(this.torrentPath(relPath), { force: true })
    await rm(this.idxPath(relPath), { force: true })
    const removed: string[] = []
    for (let dir = dirname(relPath); dir !== '.'; dir = dirname(dir)) {
      // rmdir fails on a directory that is not empty: a publication under way keeps it.
      const gone = await rmdir(join(this.pubDir, dir)).then(
        () => true,
        () => false,
      )
      if (!gone) break
      removed.push(dir)
    }
    return removed
  }
}
