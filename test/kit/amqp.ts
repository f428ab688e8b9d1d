// The real RabbitMQ the notification tests talk to (started by .ci/run, or by
// scripts/broker.sh start), and a subscriber that survives the broker being restarted.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import amqp from 'amqplib'
import { Events } from '../../src/events.ts'
import type { V03Message } from '../../src/v03.ts'

export const BROKER = process.env.GRIBSWARM_TEST_BROKER ?? 'amqp://guest:guest@127.0.0.1:5672'
const run = promisify(execFile)
/** stop_app / start_app / await_startup: the broker goes away and comes back on the same node. */
export const rabbitmqctl = (args: string[]) => run('rabbitmqctl', args)

export interface Received {
  topic: string
  contentType?: string
  contentEncoding?: string
  body: V03Message
}

/** Posts raw bytes on an exchange, as anyone allowed to post there could. */
export async function amqpPost(exchange: string, messages: Array<{ topic: string; body: string | Buffer }>): Promise<void> {
  const connection = await amqp.connect(BROKER)
  try {
    const channel = await connection.createConfirmChannel()
    await channel.assertExchange(exchange, 'topic', { durable: true })
    for (const { topic, body } of messages) channel.publish(exchange, topic, Buffer.isBuffer(body) ? body : Buffer.from(body))
    await channel.waitForConfirms()
  } finally {
    await connection.close()
  }
}

/** Runs `action` on a channel of its own (deleting a queue, checking one). */
export async function withChannel<T>(action: (channel: amqp.Channel) => Promise<T>): Promise<T> {
  const connection = await amqp.connect(BROKER)
  connection.on('error', () => {})
  try {
    const channel = await connection.createChannel()
    channel.on('error', () => {})
    return await action(channel)
  } finally {
    await connection.close().catch(() => {})
  }
}

/** A durable queue bound to the exchange, so that it outlives a broker restart. */
export async function subscribe(exchange: string, pattern: string) {
  const queue = `test-${randomBytes(4).toString('hex')}`
  const received: Received[] = []
  let connection: amqp.ChannelModel | undefined
  const attach = async () => {
    connection = await amqp.connect(BROKER)
    connection.on('error', () => {})
    const channel = await connection.createChannel()
    await channel.assertExchange(exchange, 'topic', { durable: true })
    await channel.assertQueue(queue, { durable: true })
    await channel.bindQueue(queue, exchange, pattern)
    await channel.consume(queue, (m) => {
      if (!m) return
      received.push({
        topic: m.fields.routingKey,
        contentType: m.properties.contentType,
        contentEncoding: m.properties.contentEncoding,
        body: JSON.parse(m.content.toString()),
      })
      channel.ack(m)
    })
  }
  await attach()
  return {
    received,
    reattach: attach,
    close: async () => {
      await connection?.close().catch(() => {})
      const cleanup = await amqp.connect(BROKER)
      await (await cleanup.createChannel()).deleteQueue(queue)
      await cleanup.close()
    },
  }
}

/**
 * Events for a daemon under test that record the order in which files were published: the
 * publish stage emits 'published' and queues the notification in the same step, so this is
 * the order the messages must arrive in (a pass's report lists files in the order their last
 * steps finished, which can differ when two files finish together).
 */
export function publicationOrder() {
  const relPaths: string[] = []
  const events = new Events()
  events.on('published', ({ item }) => relPaths.push(item.relPath))
  return { events, relPaths }
}
