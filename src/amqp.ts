// One AMQP connection kept up for as long as a stage runs: connect, run the stage's session on
// it, and when the broker goes away or the session fails, reconnect with fetch.ts's backoff.
// The notifier (posting) and the mirror (following) both use it.
import { setTimeout as sleep } from 'node:timers/promises'
import amqp from 'amqplib'
import { backoff } from './fetch.ts'

const FIRST_RETRY_MS = 500
const MAX_RETRY_MS = 30_000

/**
 * What a session gets: the connection; a promise that rejects when the connection closes or
 * fails (race it against the session's own waits); and ready(), to call once it is set up, so
 * that the next failure is retried at the first delay again. The session ends by returning
 * (done) or throwing (reconnect after a backoff).
 */
export type AmqpSession = (connection: amqp.ChannelModel, closed: Promise<never>, ready: () => void) => Promise<void>

export interface KeepConnectedOptions {
  /** Aborting closes the connection and ends the loop. */
  signal: AbortSignal
  /** A connection or session failed; the next try is in `retryInMs`. */
  onFailure(error: Error, retryInMs: number): void
}

/** Runs `session` on a connection to `url` again and again until `signal` aborts. */
export async function keepConnected(url: string, session: AmqpSession, { signal, onFailure }: KeepConnectedOptions): Promise<void> {
  for (let failures = 0; !signal.aborted;) {
    let connection: amqp.ChannelModel | undefined
    const close = () => void connection?.close().catch(() => {})
    signal.addEventListener('abort', close)
    try {
      connection = await amqp.connect(url, { timeout: 10_000 })
      if (signal.aborted) break
      const opened = connection
      const closed = new Promise<never>((_, reject) => {
        opened.on('error', reject)
        opened.on('close', () => reject(new Error(`connection to ${redactUrl(url)} closed`)))
      })
      closed.catch(() => {})
      await session(opened, closed, () => (failures = 0))
      failures = 0
    } catch (err) {
      if (signal.aborted) break
      failures++
      const wait = backoff(failures, FIRST_RETRY_MS, MAX_RETRY_MS)
      onFailure(err as Error, wait)
      await sleep(wait, undefined, { signal }).catch(() => {})
    } finally {
      signal.removeEventListener('abort', close)
      await connection?.close().catch(() => {})
    }
  }
}

/** The broker URL with its password hidden, for logs and the status page. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(invalid URL)'
  }
}
