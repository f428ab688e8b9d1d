// The broker, whatever its protocol: one contract (BrokerLink) that the notifier (posting) and
// the broker follower (following) are written against, two transports behind it (amqp.ts,
// mqtt.ts, chosen by the URL's scheme as sr3 chooses them from `broker amqp://…` or
// `broker mqtt://…`), and one reconnect loop around a link's life.
import { setTimeout as sleep } from 'node:timers/promises'
import { openAmqpLink } from './amqp.ts'
import { backoff } from './fetch.ts'
import { openMqttLink } from './mqtt.ts'

const FIRST_RETRY_MS = 500
const MAX_RETRY_MS = 30_000

/** A message to post. The topic is given as levels, unescaped: each transport joins and escapes them its own way. */
export interface OutgoingMessage {
  /** ['v03', '20261123T00Z', 'arpege', '01', 'SP1']: AMQP routing key v03.20261123T00Z.arpege.01.SP1. */
  topic: string[]
  body: string
  contentType: string
}

/** A message received, as it came: nothing in it is trusted. */
export interface IncomingMessage {
  /** As on the wire: an AMQP routing key (v03.a.b) or an MQTT topic (xpublic/v03/a/b). */
  topic: string
  body: Buffer
  contentType?: string
}

/** One connection to a broker, for one exchange. Every method fails once the link has closed. */
export interface BrokerLink {
  /** Rejects when the connection closes or fails, or the broker cancels a subscription. Race waits against it. */
  readonly closed: Promise<never>
  /** Resolves once the broker has accepted every message of the batch (AMQP publisher confirms, MQTT QoS 1 PUBACK). */
  post(batch: readonly OutgoingMessage[]): Promise<void>
  /**
   * Subscribes to `patterns` (AMQP's syntax, v03.*.arpege.#; an MQTT link translates them) and
   * calls `handle` for each message, several at a time. A message is acknowledged once its
   * `handle` resolves (so a crash before that means a redelivery); `handle` must not reject:
   * one that does fails the link. Resolves once the subscription is in place.
   */
  follow(patterns: readonly string[], handle: (message: IncomingMessage) => Promise<void>): Promise<void>
  close(): Promise<void>
}

export interface LinkOptions {
  exchange: string
  /**
   * MQTT only: the exchange is the first topic level (xpublic/v03/…), as sr3 maps it for v03.
   * false for the WIS2 topic hierarchy, whose topics start at the channel (origin/a/wis2/…).
   */
  exchangeLevel: boolean
  /**
   * A follower that must not miss what is posted while it is away: a durable AMQP queue of
   * this name, an MQTT persistent session of this client id. Kept by the broker for
   * `retentionSeconds` without a reader, and so is each message waiting in it.
   */
  durable?: { queue: string; retentionSeconds: number }
}

export type Transport = 'amqp' | 'mqtt'

/** The transport a broker URL names: amqp:// and amqps:// or mqtt:// and mqtts://. */
export function transportOf(url: string): Transport {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase()
  if (scheme === 'amqp' || scheme === 'amqps') return 'amqp'
  if (scheme === 'mqtt' || scheme === 'mqtts') return 'mqtt'
  throw new Error(`${redactUrl(url)}: not an amqp(s):// or mqtt(s):// URL`)
}

export function openLink(url: string, options: LinkOptions): Promise<BrokerLink> {
  return transportOf(url) === 'amqp' ? openAmqpLink(url, options) : openMqttLink(url, options)
}

/**
 * What a session gets: the link, and ready(), to call once it is set up, so that the next
 * failure is retried at the first delay again. The session ends by returning (done) or
 * throwing (reconnect after a backoff).
 */
export type LinkSession = (link: BrokerLink, ready: () => void) => Promise<void>

export interface KeepConnectedOptions {
  /** Aborting closes the link and ends the loop. */
  signal: AbortSignal
  /** A connection or session failed; the next try is in `retryInMs`. */
  onFailure(error: Error, retryInMs: number): void
}

/** Runs `session` on a link to `url` again and again until `signal` aborts, with fetch.ts's backoff between failures. */
export async function keepConnected(
  url: string,
  options: LinkOptions,
  session: LinkSession,
  { signal, onFailure }: KeepConnectedOptions,
): Promise<void> {
  for (let failures = 0; !signal.aborted;) {
    let link: BrokerLink | undefined
    const close = () => void link?.close().catch(() => {})
    signal.addEventListener('abort', close)
    try {
      link = await openLink(url, options)
      if (signal.aborted) break
      await session(link, () => (failures = 0))
      failures = 0
    } catch (err) {
      if (signal.aborted) break
      failures++
      const wait = backoff(failures, FIRST_RETRY_MS, MAX_RETRY_MS)
      onFailure(err as Error, wait)
      await sleep(wait, undefined, { signal }).catch(() => {})
    } finally {
      signal.removeEventListener('abort', close)
      await link?.close().catch(() => {})
    }
  }
}

/** The broker URL with its password hidden, for logs, the status page and provenance. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(invalid URL)'
  }
}

/** A deferred rejection: `closed` for a link, failed once by whichever of its causes comes first. */
export function closeSignal(): { closed: Promise<never>; fail: (error: Error) => void; failed: () => Error | undefined } {
  let reason: Error | undefined
  let reject!: (error: Error) => void
  const closed = new Promise<never>((_, rej) => (reject = rej))
  closed.catch(() => {})
  return {
    closed,
    fail: (error) => {
      if (reason) return
      reason = error
      reject(error)
    },
    failed: () => reason,
  }
}
