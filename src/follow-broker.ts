// Gathers announcements from a broker, over AMQP or MQTT (broker.ts): the notifications of
// another node, v03 messages or WIS2 Notification Messages (told apart by their shape), bound
// by topic, each offered to the copy queue (mirror.ts) and acknowledged only once dealt with.
// What arrives on a followed exchange is untrusted: nothing in it may stop the follower.
import { keepConnected, redactUrl, type BrokerLink, type IncomingMessage } from './broker.ts'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { Announcement } from './mirror.ts'
import type { Stage } from './stage.ts'
import { fromV03, type V03Message } from './v03.ts'
import { fromWnm, isWnm } from './wis2.ts'

export type BrokerConfig = Config['mirror']['brokers'][number]

/** Larger messages are dropped unread: a notification is a few hundred bytes (a WNM at most 8 KiB). */
export const MAX_MESSAGE_BYTES = 1024 * 1024

export interface BrokerFollowerStatus {
  broker: string
  exchange: string
  /** The queue is bound and consumed now. */
  following: boolean
  /** Messages received, each acknowledged once dealt with. */
  received: number
  /** Dropped as garbage: too large, not JSON, not a JSON object, or one its parser choked on. */
  rejected: number
  /** Well-formed, but announcing no file to copy (a directory, a link, a message without a URL…). */
  ignored: number
  lastError?: string
}

export class BrokerFollower implements Stage<BrokerFollowerStatus> {
  private readonly stopping = new AbortController()
  private running: Promise<void> | undefined
  private readonly state: BrokerFollowerStatus
  /** Provenance: stored in the sidecars of copies and compared with removes' later, so it must not change between runs. */
  readonly origin: string

  constructor(
    private readonly config: BrokerConfig,
    private readonly deps: { retentionSeconds: number; offer: (a: Announcement) => Promise<void>; log: Logger },
  ) {
    const broker = redactUrl(config.url)
    this.origin = `${broker} ${config.exchange}`
    this.state = { broker, exchange: config.exchange, following: false, received: 0, rejected: 0, ignored: 0 }
  }

  /**
   * With a queue name, the subscription is durable: what is announced while we are away waits
   * there (until it has had no reader for a retention period, when the broker drops it), and a
   * message is acknowledged only once its copy is done, so a crash mid-copy means a
   * redelivery, not a loss.
   */
  async start(): Promise<void> {
    const { config } = this
    const options = {
      exchange: config.exchange,
      exchangeLevel: config.profile !== 'wis2',
      ...(config.queue && { durable: { queue: config.queue, retentionSeconds: this.deps.retentionSeconds } }),
    }
    this.running = keepConnected(config.url, options, (link, ready) => this.follow(link, ready), {
      signal: this.stopping.signal,
      onFailure: (err, retryInMs) => {
        this.state.lastError = err.message
        this.deps.log.warn('cannot follow a broker, retrying', {
          broker: this.state.broker,
          exchange: config.exchange,
          retryInMs,
          error: err,
        })
      },
    })
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    await this.running
  }

  status(): BrokerFollowerStatus {
    return { ...this.state }
  }

  private async follow(link: BrokerLink, ready: () => void): Promise<void> {
    const { config } = this
    await link.follow(config.topics, (message) => this.receive(message))
    ready()
    this.state.following = true
    delete this.state.lastError
    this.deps.log.info('following notifications', {
      broker: this.state.broker,
      exchange: config.exchange,
      queue: config.queue || '(temporary)',
      topics: config.topics.join(' '),
    })
    try {
      await link.closed
    } finally {
      this.state.following = false
    }
  }

  /** One message: parsed, offered, and resolved once dealt with, whatever it holds (never rejects). */
  private async receive(message: IncomingMessage): Promise<void> {
    this.state.received++
    const announcement = this.parse(message)
    if (!announcement) return
    await this.deps.offer(announcement).catch((err: Error) => {
      this.deps.log.error('an announcement could not be dealt with', { ...this.where(message), relPath: announcement.relPath, error: err })
    })
  }

  private parse(message: IncomingMessage): Announcement | undefined {
    const reject = (why: string, error?: unknown) => {
      this.state.rejected++
      this.deps.log.warn('dropped a message that is not a notification', { ...this.where(message), why, bytes: message.body.length, error })
      return undefined
    }
    if (message.body.length > MAX_MESSAGE_BYTES) return reject(`larger than ${MAX_MESSAGE_BYTES} bytes`)
    let body: unknown
    try {
      body = JSON.parse(message.body.toString('utf8'))
    } catch {
      return reject('not JSON')
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return reject('not a JSON object')
    let announcement: Announcement | undefined
    try {
      announcement = isWnm(body) ? fromWnm(body, this.origin) : fromV03(body as V03Message, this.origin)
    } catch (err) {
      return reject('unreadable', err)
    }
    if (!announcement) {
      this.state.ignored++
      this.deps.log.debug('ignored a notification that announces no file', this.where(message))
    }
    return announcement
  }

  private where(message: IncomingMessage) {
    return { broker: this.state.broker, exchange: this.config.exchange, topic: message.topic.slice(0, 300) }
  }
}
