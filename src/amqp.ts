// The AMQP 0-9-1 transport (RabbitMQ) behind broker.ts's BrokerLink, mapped as sr3's
// moth/amqp.py maps it: a topic exchange, routing key = the topic levels joined with '.'
// (v03.20261123T00Z.arpege.01.SP1), '#' and '*' inside a level escaped as %23 and %22.
import type amqp from 'amqplib'
import type { ConfirmChannel } from 'amqplib'
import { closeSignal, redactUrl, type BrokerLink, type IncomingMessage, type LinkOptions, type OutgoingMessage } from './broker.ts'

/** Messages handed to the follower and not yet acknowledged, at most. */
const PREFETCH = 100

/** The routing key of a topic: its levels joined with '.', the AMQP wildcards inside a level escaped as sr3 escapes them. */
export function amqpRoutingKey(levels: readonly string[]): string {
  const key = levels.map((level) => level.replaceAll('#', '%23').replaceAll('*', '%22')).join('.')
  if (Buffer.byteLength(key) > 255) throw new Error(`routing key ${key.slice(0, 40)}… is longer than 255 bytes`)
  return key
}

/** A binding pattern: AMQP's own (v03.*.arpege.#), or an MQTT filter (v03/+/arpege/#) translated. */
export function amqpBindingKey(pattern: string): string {
  if (!pattern.includes('/')) return pattern
  return pattern
    .split('/')
    .map((level) => (level === '+' ? '*' : level))
    .join('.')
}

/**
 * Connects. Posts go on a confirm channel, each persistent, with the properties sr3 posts
 * (content_type, content_encoding utf-8, delivery_mode 2). A follow declares the exchange,
 * a queue (durable and named, or exclusive and temporary), binds it and consumes.
 */
export async function openAmqpLink(url: string, { exchange, durable }: LinkOptions): Promise<BrokerLink> {
  // Loaded on the first connection: a node without a broker does not carry amqplib (~7 MB).
  const { default: amqplib } = await import('amqplib')
  const connection = await amqplib.connect(url, { timeout: 10_000 })
  const { closed, fail } = closeSignal()
  connection.on('error', fail)
  connection.on('close', () => fail(new Error(`connection to ${redactUrl(url)} closed`)))
  const watch = <C extends amqp.Channel>(channel: C, what: string): C => {
    channel.on('error', fail)
    channel.on('close', () => fail(new Error(`${what} channel to ${redactUrl(url)} closed`)))
    return channel
  }
  let confirmChannel: Promise<ConfirmChannel> | undefined
  const postChannel = () =>
    (confirmChannel ??= (async () => {
      const channel = watch(await connection.createConfirmChannel(), 'post')
      await channel.assertExchange(exchange, 'topic', { durable: true })
      return channel
    })())

  return {
    closed,

    async post(batch: readonly OutgoingMessage[]): Promise<void> {
      const channel = await Promise.race([postChannel(), closed])
      const keys = batch.map((m) => amqpRoutingKey(m.topic))
      batch.forEach((m, i) =>
        channel.publish(exchange, keys[i]!, Buffer.from(m.body), {
          contentType: m.contentType,
          contentEncoding: 'utf-8',
          persistent: true,
        }),
      )
      await Promise.race([channel.waitForConfirms(), closed])
    },

    async follow(patterns: readonly string[], handle: (message: IncomingMessage) => Promise<void>): Promise<void> {
      const channel = watch(await connection.createChannel(), 'follow')
      await channel.prefetch(PREFETCH)
      await channel.assertExchange(exchange, 'topic', { durable: true })
      // A durable queue outlives us for the retention period (x-expires: that long without a
      // reader), and so does each message in it (x-message-ttl).
      const retentionMs = durable && Math.max(1, Math.round(durable.retentionSeconds * 1000))
      const { queue } = durable
        ? await channel.assertQueue(durable.queue, { durable: true, arguments: { 'x-expires': retentionMs, 'x-message-ttl': retentionMs } })
        : await channel.assertQueue('', { exclusive: true, autoDelete: true })
      for (const pattern of patterns) await channel.bindQueue(queue, exchange, amqpBindingKey(pattern))
      await channel.consume(queue, (message) => {
        // null: the broker cancelled the consumer (the queue was deleted, say). Fail the link, so
        // that the session reconnects and declares the queue again, instead of waiting forever.
        if (!message) return fail(new Error(`the broker cancelled the subscription to queue ${queue}`))
        const incoming = { topic: message.fields.routingKey, body: message.content, contentType: message.properties.contentType }
        handle(incoming).then(() => {
          try {
            channel.ack(message)
          } catch {
            // The channel closed meanwhile: the broker redelivers, and the repeat is dropped.
          }
        }, fail)
      })
    },

    async close(): Promise<void> {
      await connection.close().catch(() => {})
    },
  }
}
