// Stage "notify": notifications of what this node publishes, Sarracenia v03 messages (or WIS2
// Notification Messages, notify.profile "wis2"), posted over AMQP or MQTT (broker.ts). Messages
// go to an on-disk outbox first (a file each, in order), so the pipeline never waits on the
// broker and nothing is lost while it is away; a sender posts them in order and deletes each
// file only once the broker has accepted it (at-least-once), reconnecting through broker.ts.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { amqpRoutingKey } from './amqp.ts'
import { keepConnected, redactUrl, type BrokerLink, type OutgoingMessage } from './broker.ts'
import type { Config } from './config.ts'
import type { Events } from './events.ts'
import type { Logger } from './log.ts'
import type { PublishListener, Stage } from './stage.ts'
import { writeFileAtomic, type ItemRecord } from './store.ts'
import { postMessage, removeDirMessage, removeMessage, topicLevels, type V03Message } from './v03.ts'
import { wis2Topic, wnmFor, WNM_CONTENT_TYPE, type WisNotificationMessage } from './wis2.ts'

/** Posted at once, and accepted by the broker together before their files go. */
const BATCH = 100

/**
 * One file of the outbox. `topic` and `body` are all that gribswarm wrote before MQTT (and all
 * it reads, should it be downgraded); `levels` and `contentType` came with MQTT. An entry
 * without them is a v03 message whose levels are those of its routing key.
 */
interface OutboxEntry {
  /** The AMQP routing key, v03.20261123T00Z.arpege.01.SP1. */
  topic: string
  /** The topic's levels, unescaped: what each transport builds its own topic from. */
  levels?: string[]
  contentType?: string
  body: V03Message | WisNotificationMessage
}

/** What a transport posts for an entry, old or new. */
export function outgoing(entry: OutboxEntry): OutgoingMessage {
  if (typeof entry?.topic !== 'string' || typeof entry.body !== 'object' || entry.body === null) throw new Error('not an outbox entry')
  const levels = Array.isArray(entry.levels)
    ? entry.levels.map(String)
    : entry.topic.split('.').map((level) => level.replaceAll('%23', '#').replaceAll('%22', '*'))
  return { topic: levels, body: JSON.stringify(entry.body), contentType: entry.contentType ?? 'application/json' }
}

export interface NotifierStatus {
  broker: string
  connected: boolean
  backlog: number
  sent: number
  /** Dropped from a full outbox, or unreadable there. */
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
  /** When the item of each outbox file queued by published() in this process was published (ms), for the `notified` event. */
  private readonly publishedAt = new Map<string, number>()
  private readonly events: Events | undefined

  constructor(
    private readonly config: Config['notify'],
    deps: {
      dataDir: string
      publicBaseUrl: string
      log: Logger
      /** Told of each publication's message the broker accepted (`notified`). */
      events?: Events
    },
  ) {
    this.dir = join(deps.dataDir, 'outbox')
    this.log = deps.log
    this.publicBaseUrl = deps.publicBaseUrl
    this.events = deps.events
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
    const { brokerUrl, exchange, profile } = this.config
    // v03 over MQTT: xpublic/v03/…, as sr3; WIS2 topics start at their channel.
    const options = { exchange, exchangeLevel: profile === 'v03' }
    this.running = keepConnected(brokerUrl, options, (link, ready) => this.send(link, ready), {
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
    const { config, publicBaseUrl } = this
    const publishedAt = Date.parse(item.publishedAt)
    if (config.profile === 'wis2') {
      const levels = wis2Topic(config.wis2)
      return this.enqueue(levels, WNM_CONTENT_TYPE, wnmFor(item, publicBaseUrl, config.wis2, config.source), publishedAt)
    }
    return this.enqueue(topicLevels(item.relPath), 'application/json', postMessage(item, publicBaseUrl, config.source), publishedAt)
  }

  /**
   * v03: a remove message. WIS2: nothing, since a WNM deletion "SHOULD NOT be used for
   * communicating a rolling data archive" (WNM /rec/core/links C), which expiry is.
   */
  expired(item: ItemRecord): Promise<void> {
    if (this.config.profile === 'wis2') return Promise.resolve()
    return this.enqueue(topicLevels(item.relPath), 'application/json', removeMessage(item, this.publicBaseUrl, this.config.source))
  }

  /** v03: the directory remove sr3 applies as an rmdir (its default fileEvents include it). WIS2 has no directories. */
  emptied(relDir: string): Promise<void> {
    if (this.config.profile === 'wis2') return Promise.resolve()
    return this.enqueue(topicLevels(relDir), 'application/json', removeDirMessage(relDir, this.publicBaseUrl, this.config.source))
  }

  /**
   * Queues a message on disk; returns once it is safe there, never waits for the broker.
   * Writes are chained so that the sender sees messages in the order they were queued: two
   * files published together must not be announced in the order their writes happened to end.
   * `publishedAt` (ms): when the item it announces was published, to time its confirmation.
   */
  enqueue(levels: string[], contentType: string, body: V03Message | WisNotificationMessage, publishedAt?: number): Promise<void> {
    let entry: string
    try {
      entry = JSON.stringify({ topic: amqpRoutingKey(levels), levels, contentType, body } satisfies OutboxEntry)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    const name = `${String(this.sequence++).padStart(16, '0')}.json`
    const written = this.writes.then(async () => {
      await writeFileAtomic(join(this.dir, name), entry)
      this.files.push(name)
      if (this.events && publishedAt !== undefined && Number.isFinite(publishedAt)) this.publishedAt.set(name, publishedAt)
      while (this.files.length > this.config.maxBacklog) {
        const oldest = this.files.shift()!
        this.publishedAt.delete(oldest)
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

  /** One connection's life: post the outbox in order, in batches, then wait for more. */
  private async send(link: BrokerLink, ready: () => void): Promise<void> {
    this.state.connected = true
    delete this.state.lastError
    ready()
    this.log.info('connected to broker', { broker: this.state.broker, exchange: this.config.exchange, backlog: this.files.length })
    try {
      while (!this.stopping.signal.aborted) {
        const batch = this.files.slice(0, BATCH)
        if (batch.length === 0) {
          await Promise.race([this.sleep(60_000), link.closed])
          continue
        }
        const messages: OutgoingMessage[] = []
        const posted: string[] = []
        for (const name of batch) {
          // A file may have been dropped meanwhile by a full backlog.
          const text = await readFile(join(this.dir, name), 'utf8').catch(() => undefined)
          if (text === undefined) continue
          try {
            messages.push(outgoing(JSON.parse(text) as OutboxEntry))
            posted.push(name)
          } catch (err) {
            // Posting it would fail on every connection and hold everything behind it.
            this.state.dropped++
            this.log.error('dropped an unreadable message from the outbox', { file: name, error: err })
          }
        }
        await link.post(messages)
        this.confirmed(posted)
        for (const name of batch) {
          await rm(join(this.dir, name), { force: true })
          const index = this.files.indexOf(name)
          if (index >= 0) this.files.splice(index, 1)
          this.publishedAt.delete(name)
        }
        this.state.sent += messages.length
      }
    } finally {
      this.state.connected = false
    }
  }

  /** The broker accepted these files' messages: each publication's latency is told as `notified`. */
  private confirmed(names: string[]): void {
    const now = Date.now()
    for (const name of names) {
      const publishedAt = this.publishedAt.get(name)
      if (publishedAt !== undefined) this.events?.emit('notified', { latencySeconds: (now - publishedAt) / 1000 })
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
