// One uplink budget. On a VPS, BitTorrent upload and HTTP (web seed, plain downloads) leave
// through one link: `uplink.bytesPerSec` caps them together. The seeder's wires and the HTTP
// bodies draw from one token bucket (speed-limiter's ThrottleGroup, the one webtorrent's wires
// already use, which HTTP reaches through patches.ts takeTokens); whatever HTTP sends,
// BitTorrent cannot, and the other way round.
import { Transform, type TransformCallback } from 'node:stream'
import { ThrottleGroup } from 'speed-limiter'
import { takeTokens } from './patches.ts'

export class Uplink {
  /** handed to webtorrent as its upload throttle group */
  readonly group: ThrottleGroup
  /** HTTP bodies sent by nginx that the budget still has to pay for (see debit) */
  private debits = 0

  constructor(readonly bytesPerSec: number) {
    this.group = new ThrottleGroup({ rate: bytesPerSec, enabled: bytesPerSec > 0 })
  }

  get limited(): boolean {
    return this.bytesPerSec > 0
  }

  /** Resolves once `bytes` may be sent, taking them from the shared bucket. */
  async take(bytes: number): Promise<void> {
    if (!this.limited) return
    const chunk = this.group.getChunksize()
    for (let left = bytes; left > 0; left -= chunk) await takeTokens(this.group, Math.min(chunk, left))
  }

  /** A pass-through stream whose chunks wait for their share of the budget. */
  throttle(): Transform {
    const uplink = this
    return new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
        uplink.take(chunk.length).then(() => done(null, chunk), done)
      },
    })
  }

  /**
   * Behind nginx (X-Accel-Redirect) the bytes of an HTTP body do not pass through this process.
   * The budget pays for them all the same, at the pace it allows, and the rate nginx is told to
   * send at is the budget's share for one more body: BitTorrent slows down while nginx sends.
   * Returns that rate (bytes/s; 0 = unlimited).
   */
  debit(bytes: number): number {
    if (!this.limited) return 0
    this.debits++
    void this.take(bytes).finally(() => this.debits--)
    return Math.max(1, Math.floor(this.bytesPerSec / this.debits))
  }
}
