// webtorrent's piece storage for a single-file torrent: piece i is at byte i × pieceLength of
// the one file. fs-chunk-store, webtorrent's default, maps every piece to its files with an
// array and an object each (~280 bytes a piece: 16 MB of heap for 40 torrents of 80 MB–1 GB,
// measured with a heap snapshot); a single file needs only the multiplication.
import { close, mkdir, open, read, write } from 'node:fs'
import { dirname, join } from 'node:path'

type Callback<T = void> = (err: Error | null, value?: T) => void

/** What webtorrent passes a store's constructor (lib/torrent.js, _onMetadata). */
interface StoreOptions {
  path: string
  files: Array<{ path: string; length: number }>
  length: number
}

/** The abstract-chunk-store interface (put, get, close, destroy) over one file, opened on first use. */
export class SingleFileStore {
  private readonly file: string
  private readonly length: number
  private readonly lastChunkIndex: number
  private readonly lastChunkLength: number
  /** read-only until the first put (a seeded file is never written) */
  private fd: Promise<{ fd: number; writable: boolean }> | undefined
  private closed = false

  constructor(
    readonly chunkLength: number,
    options: StoreOptions,
  ) {
    if (options.files.length !== 1) throw new Error(`SingleFileStore: ${options.files.length} files, expected 1`)
    this.file = join(options.path, options.files[0]!.path)
    this.length = options.length
    this.lastChunkIndex = Math.ceil(this.length / chunkLength) - 1
    this.lastChunkLength = this.length - this.lastChunkIndex * chunkLength
  }

  put(index: number, buf: Uint8Array, cb: Callback = () => {}): void {
    const expected = this.chunkLengthOf(index)
    if (buf.length !== expected)
      return queueMicrotask(() => cb(new Error(`${this.file}: chunk ${index} has ${buf.length} bytes, not ${expected}`)))
    this.withFd(true, (fd) => write(fd, buf, 0, buf.length, index * this.chunkLength, (err) => cb(err)), cb)
  }

  get(index: number, opts: { offset?: number; length?: number } | null | Callback<Uint8Array>, cb?: Callback<Uint8Array>): void {
    if (typeof opts === 'function') return this.get(index, null, opts)
    const done = cb!
    const chunkLength = this.chunkLengthOf(index)
    const from = opts?.offset ?? 0
    const to = opts?.length ? from + opts.length : chunkLength
    if (from < 0 || to > chunkLength || chunkLength < 0)
      return queueMicrotask(() => done(new Error(`${this.file}: chunk ${index} bytes ${from}-${to} out of range`)))
    if (from === to) return queueMicrotask(() => done(null, new Uint8Array(0)))
    const buf = Buffer.allocUnsafe(to - from)
    this.withFd(
      false,
      (fd) =>
        read(fd, buf, 0, buf.length, index * this.chunkLength + from, (err, bytesRead) => {
          if (err) return done(err)
          if (bytesRead < buf.length)
            return done(new Error(`${this.file}: chunk ${index} is cut short (${bytesRead} of ${buf.length} bytes)`))
          done(null, buf)
        }),
      done,
    )
  }

  close(cb: Callback = () => {}): void {
    if (this.closed) return queueMicrotask(() => cb(new Error('Storage is closed')))
    this.closed = true
    const fd = this.fd
    this.fd = undefined
    if (!fd) return queueMicrotask(() => cb(null))
    fd.then(
      (f) => close(f.fd, (err) => cb(err)),
      () => cb(null),
    )
  }

  /** Closes, and deletes nothing: the data directory's files are removed by expiry, or by whoever made the temp directory. */
  destroy(cb: Callback = () => {}): void {
    this.close(() => cb(null))
  }

  private chunkLengthOf(index: number): number {
    return index === this.lastChunkIndex ? this.lastChunkLength : index < this.lastChunkIndex && index >= 0 ? this.chunkLength : -1
  }

  private withFd(writable: boolean, use: (fd: number) => void, fail: Callback<never>): void {
    if (this.closed) return queueMicrotask(() => fail(new Error('Storage is closed')))
    const next = this.fd ? this.fd.then((f) => (f.writable || !writable ? f : this.reopen(f.fd))) : this.openFile(writable)
    this.fd = next
    next.then(
      (f) => use(f.fd),
      (err: Error) => {
        if (this.fd === next) this.fd = undefined // the next use tries again
        fail(err)
      },
    )
  }

  private reopen(fd: number): Promise<{ fd: number; writable: boolean }> {
    return new Promise((resolve) => close(fd, () => resolve(this.openFile(true))))
  }

  private openFile(writable: boolean): Promise<{ fd: number; writable: boolean }> {
    return new Promise((resolve, reject) => {
      const opened = (err: Error | null, fd: number) => (err ? reject(err) : resolve({ fd, writable }))
      if (!writable) return open(this.file, 'r', opened)
      // Created, with its directory, by the first piece a download writes.
      mkdir(dirname(this.file), { recursive: true }, (err) => {
        if (err) return reject(err)
        open(this.file, 'r+', (err, fd) => (err?.code === 'ENOENT' ? open(this.file, 'w+', opened) : opened(err, fd)))
      })
    })
  }
}
