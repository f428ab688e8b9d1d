// Gathers announcements from a broker: Sarracenia v03 notifications of another node, bound by
// topic, each offered to the copy queue (mirror.ts) and acknowledged only once dealt with.
import type { ChannelModel } from 'amqplib'
import { keepConnected, redactUrl } from './amqp.ts'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { Announcement } from './mirror.ts'
import type { V03Message } from './notify.ts'
import type { Stage } from './stage.ts'

/** The announcement a v03 message makes, if it is about a file. Older posters say `integrity`. */
export function fromV03(body: V03Message, origin: string): Announcement | undefined {
  if (typeof body.relPath !== 'string' || typeof body.baseUrl !== 'string') return undefined
  const sidecarUrl = `${body.baseUrl.replace(/\/+$/, '')}/${body.relPath.split('/').map(encodeURIComponent).join('/')}.json`
  const identity = body.identity ?? (body.integrity as V03Message['identity'])
  return {
    relPath: body.relPath,
    sidecarUrl,
    identity: identity?.method === 'sha512' ? identity.value : undefined,
    origin,
    remove: body.fileOp !== undefined && 'remove' in body.fileOp,
  }
}

export type BrokerConfig = Config['mirror']['brokers'][number]

export interface BrokerFollowerStatus {
  broker: string
  exchange: string
  /** The queue is bound and consumed now. */
  following: boolean
  lastError?: string
}

export class BrokerFollower implements Stage<BrokerFollowerStatus> {
  private readonly stopping = new AbortController()
  private running: Promise<void> | undefined
  private readonly state: BrokerFollowerStatus

  constructor(
    private readonly config: BrokerConfig,
    private readonly deps: { retentionSeconds: number; offer: (a: Announcement) => Promise<void>; log: Logger },
  ) {
    this.state = { broker: redactUrl(config.url), exchange: config.exchange, following: false }
  }

  async start(): Promise<void> {
    this.running = keepConnected(this.config.url, (connection, closed, ready) => this.follow(connection, closed, ready), {
      signal: this.stopping.signal,
      onFailure: (err, retryInMs) => {
        this.state.lastError = err.message
        this.deps.log.warn('cannot follow a broker, retrying', {
          broker: this.state.broker,
          exchange: this.config.exchange,
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

  /**
   * With a queue name, the queue is durable: what is announced while we are away waits there
   * (until the queue has had no reader for a retention period, when the broker drops it), and
   * a message is acknowledged only once its copy is done, so a crash mid-copy means a
   * redelivery, not a loss.
   */
  private async follow(connection: ChannelModel, closed: Promise<never>, ready: () => void): Promise<void> {
    const { config } = this
    const { log } = this.deps
    const where = { broker: this.state.broker, exchange: config.exchange }
    const channel = await connection.createChannel()
    await channel.prefetch(100)
    await channel.assertExchange(config.exchange, 'topic', { durable: true })
    const retentionMs = Math.round(this.deps.retentionSeconds * 1000)
    const { queue } = config.queue
      ? await channel.assertQueue(config.queue, { durable: true, arguments: { 'x-expires': retentionMs, 'x-message-ttl': retentionMs } })
      : await channel.assertQueue('', { exclusive: true, autoDelete: true })
    for (const topic of config.topics) await channel.bindQueue(queue, config.exchange, topic)
    await channel.consume(queue, (message) => {
      if (!message) return
      let announcement: Announcement | undefined
      try {
        announcement = fromV03(JSON.parse(message.content.toString()) as V03Message, where.broker)
      } catch (err) {
        log.warn('ignored a notification that is not v03 JSON', { ...where, error: err })
      }
      const ack = () => {
        try {
          channel.ack(message)
        } catch {
          // The channel closed meanwhile: the broker redelivers, and the repeat is dropped.
        }
      }
      if (announcement) void this.deps.offer(announcement).then(ack)
      else ack()
    })
    ready()
    this.state.following = true
    this.state.lastError = undefined
    log.info('following notifications', { ...where, queue, topics: config.topics.join(' ') })
    try {
      await closed
    } finally {
      this.state.following = false
    }
  }
}
