// The MQTT transport behind broker.ts's BrokerLink, mapped as sr3's moth/mqtt.py maps AMQP
// onto MQTT (it needs MQTT 5, and so do we):
// - topic = exchange, then the topic levels, joined with '/' (xpublic/v03/20261123T00Z/arpege);
//   '#' and '+' are escaped as %23 and %2B. For WIS2 the topic starts at the channel instead
//   (origin/a/wis2/…): sr3 posts its WIS format on a topic of its own, without the exchange.
// - subscription patterns are AMQP's, translated: '.' → '/', a '*' level → '+'.
// - QoS 1 both ways: a post is accepted once the broker's PUBACK is in; a message received is
//   PUBACKed only once its handler resolves, as amqp.ts acknowledges it.
// - posts carry the MQTT 5 content type and payload format indicator (UTF-8), as sr3's do.
// - durability: where sr3 subscribes through a shared subscription ($share/<queue>/…) from a
//   persistent session with client id <queue>_iNN, a durable follow here is a persistent
//   session alone: client id = the queue name, clean start off, session expiry = the retention
//   period, and a plain subscription. The session is what keeps messages while we are away
//   (MQTT 5 §3.1.2.11); a shared group only spreads one queue over several instances, which a
//   follower of gribswarm never runs, and how brokers queue for an offline member of a group
//   varies. A session takes its client id over, so a queue name must be unique per broker.
import { randomBytes } from 'node:crypto'
import type { IClientOptions, IPublishPacket } from 'mqtt'
import { closeSignal, redactUrl, type BrokerLink, type IncomingMessage, type LinkOptions, type OutgoingMessage } from './broker.ts'

/** Messages the broker may send us before our acknowledgements (MQTT 5 Receive Maximum), as AMQP's prefetch. */
const RECEIVE_MAXIMUM = 100
/** MQTT 5's session expiry interval is 32 bits; its maximum means "never". */
const MAX_SESSION_EXPIRY = 0xfffffffe

const escapeLevel = (level: string) => level.replaceAll('#', '%23').replaceAll('+', '%2B')

/** The MQTT topic of a post: the exchange first (unless the topic is absolute, as WIS2's are), '/' between levels, wildcards escaped. */
export function mqttTopic(exchange: string | undefined, levels: readonly string[]): string {
  return (exchange === undefined ? levels : [exchange, ...levels]).map(escapeLevel).join('/')
}

/**
 * The MQTT filter for a subscription pattern: AMQP's syntax (v03.*.arpege.#), or already an
 * MQTT filter (v03/+/arpege/#), after the exchange level when there is one. AMQP's '#' may
 * stand anywhere; MQTT's only last, so a pattern with '#' elsewhere is refused.
 */
export function mqttFilter(exchange: string | undefined, pattern: string): string {
  const levels = pattern.includes('/') ? pattern.split('/') : pattern.split('.')
  const filter = levels.map((level, i) => {
    if (level === '#') {
      if (i !== levels.length - 1) throw new Error(`pattern ${pattern}: MQTT takes '#' as the last level only`)
      return '#'
    }
    if (level === '*' || level === '+') return '+'
    return escapeLevel(level)
  })
  return (exchange === undefined ? filter : [escapeLevel(exchange), ...filter]).join('/')
}

function clientOptions(url: string, durable: LinkOptions['durable']): IClientOptions {
  const parsed = new URL(url)
  const secure = parsed.protocol === 'mqtts:'
  return {
    protocol: secure ? 'mqtts' : 'mqtt',
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port ? Number(parsed.port) : secure ? 8883 : 1883,
    ...(parsed.username && { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password && { password: decodeURIComponent(parsed.password) }),
    protocolVersion: 5,
    clientId: durable ? durable.queue : `gribswarm_${randomBytes(8).toString('hex')}`,
    clean: !durable,
    properties: {
      receiveMaximum: RECEIVE_MAXIMUM,
      ...(durable && { sessionExpiryInterval: Math.min(MAX_SESSION_EXPIRY, Math.max(1, Math.ceil(durable.retentionSeconds))) }),
    },
    // broker.ts's keepConnected reconnects, and subscribes again through the session.
    reconnectPeriod: 0,
    resubscribe: false,
    connectTimeout: 10_000,
    keepalive: 30,
  }
}

/** Tells mqtt.js not to send the PUBACK now: we send it once the handler is done (see `ack`). */
const LATER = new Error('acknowledged once handled')

export async function openMqttLink(url: string, { exchange, exchangeLevel, durable }: LinkOptions): Promise<BrokerLink> {
  const where = redactUrl(url)
  // Loaded on the first connection: a node without a broker does not carry mqtt.js (~20 MB).
  const { default: mqtt } = await import('mqtt')
  const client = mqtt.connect(clientOptions(url, durable))
  const { closed, fail, failed } = closeSignal()
  const topicRoot = exchangeLevel ? exchange : undefined
  let closing: Promise<void> | undefined

  // A persistent session may deliver what waited for us as soon as the broker accepts the
  // connection, before follow() is called: those messages wait here for the handler.
  let handler: ((packet: IPublishPacket) => void) | undefined
  const early: IPublishPacket[] = []
  client.handleMessage = (packet, callback) => {
    if (handler) handler(packet)
    else early.push(packet)
    // QoS 0 has nothing to acknowledge. For QoS 1, mqtt.js would send the PUBACK when this
    // callback is called, and handles no other packet of the connection until then (pings
    // included): an error skips its PUBACK and lets it go on, and `ack` sends ours later.
    callback(packet.qos > 0 ? LATER : undefined)
  }
  const ack = (packet: IPublishPacket) => {
    if (packet.qos === 0 || failed() || !client.connected) return // Unacknowledged: the session redelivers it.
    // mqtt.js has no public call for a PUBACK of our own: this is what its own handler sends.
    ;(client as unknown as { _sendPacket(p: object): void })._sendPacket({ cmd: 'puback', messageId: packet.messageId, reasonCode: 0 })
  }

  try {
    await new Promise<void>((resolve, reject) => {
      const settle = (error?: Error) => {
        client.off('connect', onConnect).off('error', onError).off('close', onClose)
        if (error) reject(error)
        else resolve()
      }
      const onConnect = () => settle()
      const onError = (error: Error) => settle(error)
      const onClose = () => settle(new Error(`connection to ${where} closed`))
      client.on('connect', onConnect).on('error', onError).on('close', onClose)
    })
  } catch (err) {
    client.end(true)
    throw err
  }
  client.on('error', fail)
  client.on('close', () => fail(new Error(`connection to ${where} closed`)))
  client.on('disconnect', (packet) => fail(new Error(`${where} disconnected us (reason code ${packet.reasonCode ?? 0})`)))

  return {
    closed,

    async post(batch: readonly OutgoingMessage[]): Promise<void> {
      const published = batch.map((m) =>
        client.publishAsync(mqttTopic(topicRoot, m.topic), m.body, {
          qos: 1,
          properties: { contentType: m.contentType, payloadFormatIndicator: true },
        }),
      )
      await Promise.race([Promise.all(published), closed])
    },

    async follow(patterns: readonly string[], handle: (message: IncomingMessage) => Promise<void>): Promise<void> {
      const filters = patterns.map((p) => mqttFilter(topicRoot, p))
      handler = (packet) => {
        const incoming = { topic: packet.topic, body: Buffer.from(packet.payload), contentType: packet.properties?.contentType }
        handle(incoming).then(() => ack(packet), fail)
      }
      for (const packet of early.splice(0)) handler(packet)
      const granted = await Promise.race([client.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }]))), closed])
      const refused = granted.filter((g) => g.qos === 128)
      if (refused.length) throw new Error(`${where} refused the subscription to ${refused.map((g) => g.topic).join(' ')}`)
    },

    close(): Promise<void> {
      // Once, and for every caller until the socket is closed: a session opened again right after
      // must not take the client id over from a connection whose last PUBACKs are still on the way.
      return (closing ??= new Promise<void>((resolve) => {
        fail(new Error(`connection to ${where} closed`))
        if (client.disconnected || !client.connected) return void client.end(true, () => resolve())
        // DISCONNECT first (a durable session is kept all the same), unless the broker is too slow to take it.
        const timer = setTimeout(() => {
          client.stream?.destroy()
          resolve()
        }, 2000)
        client.end(false, () => {
          clearTimeout(timer)
          resolve()
        })
      }))
    },
  }
}
