// Stage "notify": Sarracenia v03 notifications over AMQP. Messages go to an on-disk outbox
// first (a file each, in order), so the pipeline never waits on the broker and nothing is
// lost while it is away; a sender posts them in order on a confirm channel and deletes each
// file only once the broker has confirmed it (at-least-once), reconnecting through amqp.ts.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChannelModel } from 'amqplib'
import { keepConnected, redactUrl } from './amqp.ts'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { PublishListener, Stage } from './stage.ts'
import { writeFileAtomic, type ItemRecord } from './store.ts'
import { torrentUrl } from './urls.ts'

/** A v03 message body (sr_post(7)); unknown fields are allowed and carry the torrent. */
export interface V03Message {
  pubTime: string
  baseUrl: string
  relPath: string
  identity?: { method: 'sha512' | 'md5' | 'cod' | 'random'; value: string }
  fileOp?: { remove: '' }
  size?: number
  mtime?: string
  contentType?: string
  source?: string
  [extra: string]: unknown
}

/** Sarracenia's time format: 20261123T000000.000 (UTC, no dashes or colons). */
export function v03Time(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/Z$/, '')
}

/** v03 + the directories of relPath; `#` and `*` inside a segment are escaped. */
export function topicFor(relPath: string, prefix = 'v03'): string {
  const dirs = relPath
    .split('/')
    .slice(0, -1)
    .map((s) => s.replaceAll('#', '%23').replaceAll('*', '%22'))
  const topic = [prefix, ...dirs].join('.')
  if (Buffer.byteLength(topic) > 255) throw new Error(`topic for ${relPath} is longer than 255 bytes`)
  return topic
}

export function postMessage(item: ItemRecord, publicBaseUrl: string, source: string): V03Message {
  return {
    pubTime: v03Time(new Date(item.publishedAt)),
    baseUrl: `${publicBaseUrl}/data`,
    relPath: item.relPath,
    identity: { method: 'sha512', value: item.sha512 },
    size: item.size,
    mtime: v03Time(new Date(item.mtimeMs)),
    contentType: 'application/x-grib',
    source,
    // For BitTorrent-aware subscribers; others ignore them, as v03 requires.
    infoHash: item.infoHash,
    magnetURI: item.magnetURI,
    torrentUrl: torrentUrl(publicBaseUrl, item.relPath),
    expires: item.expiresAt,
  }
}

export function removeMessage(item: ItemRecord, publicBaseUrl: string, source: string, now = new Date()): V03Message {
  return {
    pubTime: v03Time(now),
    baseUrl: `${publicBaseUrl}/data`,
    relPath: item.relPath,
    fileOp: { remove: '' },
    source,
    infoHash: item.infoHash,
  }
}

interface OutboxEntry {
  topic: string
  body: V03Message
}

export interface NotifierStatus {
  broker: string
  connected: boolean
  backlog: number
  sent: number
  dropped: number
  lastError?: string
}

export class Notifier implements Stage<NotifierStatus>, PublishListener {
  private readonly dir: string
  private readonly log: Logger
  private readonly publicBaseUrl: string
  private sequence = 0
  private writes: Promise<void> = Promise.resolve()
  private files: string[] = []
  private wake: (() => void) | undefined
  private running: Promise<void> | undefined
  private readonly stopping = new AbortController()
  private readonly state: NotifierStatus

  constructor(
    private readonly config: Config['notify'],
    deps: { dataDir: string; publicBaseUrl: string; log: Logger },
  ) {
    this.dir = join(deps.dataDir, 'outbox')
    this.log = deps.log
    this.publicBaseUrl = deps.publicBaseUrl
    this.state = { broker: redactUrl(config.brokerUrl), connected: false, backlog: 0, sent: 0, dropped: 0 }
  }

  status(): NotifierStatus {
    return { ...this.state, backlog: this.files.length }
  }

  /** Loads what an earlier run left in the outbox and starts sending in the background. */
  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    this.files = (await readdir(this.dir)).filter((f) => f.endsWith('.json')).sort()
    this.sequence = this.files.length ? Number(this.files.at(-1)!.slice(0, 16)) + 1 : 0
    if (this.files.length) this.log.info('notifications waiting from an earlier run', { backlog: this.files.length })
    this.running = keepConnected(this.config.brokerUrl, (connection, closed, ready) => this.send(connection, closed, ready), {
      signal: this.stopping.signal,
      onFailure: (err, retryInMs) => {
        this.state.lastError = err.message
        this.log.warn('broker unavailable, notifications wait on disk', {
          broker: this.state.broker,
          backlog: this.files.length,
          retryInMs,
          error: err,
        })
      },
    })
  }

  published(item: ItemRecord): Promise<void> {
    return this.enqueue(postMessage(item, this.publicBaseUrl, this.config.source))
  }

  expired(item: ItemRecord): Promise<void> {
    return this.enqueue(removeMessage(item, this.publicBaseUrl, this.config.source))
  }

  /**
   * Queues a message on disk; returns once it is safe there, never waits for the broker.
   * Writes are chained so that the sender sees messages in the order they were queued: two
   * files published together must not be announced in the order their writes happened to end.
   */
  enqueue(body: V03Message): Promise<void> {
    let entry: string
    try {
      entry = JSON.stringify({ topic: topicFor(body.relPath), body } satisfies OutboxEntry)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    const name = `${String(this.sequence++).padStart(16, '0')}.json`
    const written = this.writes.then(async () => {
      await writeFileAtomic(join(this.dir, name), entry)
      this.files.push(name)
      while (this.files.length > this.config.maxBacklog) {
        const oldest = this.files.shift()!
        await rm(join(this.dir, oldest), { force: true })
        this.state.dropped++
        this.log.warn('notification backlog full, dropped the oldest message', { maxBacklog: this.config.maxBacklog })
      }
      this.wake?.()
    })
    this.writes = written.catch(() => {})
    return written
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    this.wake?.()
    await this.running
  }

  /** One connection's life: post the outbox in order, then wait for more. */
  private async send(connection: ChannelModel, closed: Promise<never>, ready: () => void): Promise<void> {
    try {
      const channel = await connection.createConfirmChannel()
      channel.on('error', () => {})
      await channel.assertExchange(this.config.exchange, 'topic', { durable: true })
      this.state.connected = true
      this.state.lastError = undefined
      ready()
      this.log.info('connected to broker', { broker: this.state.broker, exchange: this.config.exchange, backlog: this.files.length })
      while (!this.stopping.signal.aborted) {
        const batch = this.files.slice(0, 100)
        if (batch.length === 0) {
          await Promise.race([this.sleep(60_000), closed])
          continue
        }
        for (const name of batch) {
          // A file may have been dropped meanwhile by a full backlog.
          const text = await readFile(join(this.dir, name), 'utf8').catch(() => undefined)
          if (text === undefined) continue
          const entry = JSON.parse(text) as OutboxEntry
          channel.publish(this.config.exchange, entry.topic, Buffer.from(JSON.stringify(entry.body)), {
            contentType: 'application/json',
            persistent: true,
          })
        }
        await Promise.race([channel.waitForConfirms(), closed])
        for (const name of batch) {
          await rm(join(this.dir, name), { force: true })
          const index = this.files.indexOf(name)
          if (index >= 0) this.files.splice(index, 1)
          this.state.sent++
        }
      }
    } finally {
      this.state.connected = false
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }
}
