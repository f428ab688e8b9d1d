// Stage "expire": an item stays published for retention.publishSeconds after it was
// published. Expiry first unpublishes it (tombstone: it leaves the feeds and is never
// fetched again), then lets the other stages let go of it (seeder, tracker, notifier), and
// only then deletes its files. expiresAt is in the sidecar, so restarts change nothing.
import type { Config } from './config.ts'
import type { Events } from './events.ts'
import type { Logger } from './log.ts'
import type { PublishListener, Stage } from './stage.ts'
import type { DataStore, ItemRecord } from './store.ts'

export interface ExpirerDeps {
  store: DataStore
  /** Told of each expired item, last first (the reverse of the order they learnt of it). */
  listeners: PublishListener[]
  events: Events
  log: Logger
  now?: () => Date
}

export class Expirer implements Stage<{ expired: number }> {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<ItemRecord[]> | undefined
  private expiredCount = 0

  constructor(
    private readonly config: Config['retention'],
    private readonly deps: ExpirerDeps,
  ) {}

  /**
   * Expires what fell due while the daemon was down, before anything seeds it again. Nothing
   * expires after this until arm(): the daemon arms the sweeps once the published items are
   * seeded again, so that none expires while they are.
   */
  async start(): Promise<void> {
    await this.sweep()
  }

  /** Sweeps every retention.checkEverySeconds from now until stop(). */
  arm(): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      this.sweep().catch((err: Error) => this.deps.log.error('expiry sweep failed', { error: err }))
    }, this.config.checkEverySeconds * 1000)
    this.timer.unref()
  }

  /** Disarms the sweeps and waits for one under way. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.running
  }

  status() {
    return { expired: this.expiredCount }
  }

  /** Expires everything due now; concurrent calls share one sweep. */
  sweep(): Promise<ItemRecord[]> {
    this.running ??= this.sweepOnce().finally(() => (this.running = undefined))
    return this.running
  }

  private async sweepOnce(): Promise<ItemRecord[]> {
    const now = (this.deps.now?.() ?? new Date()).getTime()
    const due = this.deps.store.list().filter((item) => Date.parse(item.expiresAt) <= now)
    for (const item of due) await this.expire(item, 'retention over')
    return due
  }

  /** Expires one item now (a mirror does this when its origin says the file was removed). */
  async remove(relPath: string, reason: string): Promise<void> {
    const item = this.deps.store.get(relPath)
    if (item) await this.expire(item, reason)
  }

  private async expire(item: ItemRecord, reason: string): Promise<void> {
    const { store, log } = this.deps
    if (!(await store.unpublish(item.relPath))) return // expired meanwhile
    for (const listener of [...this.deps.listeners].reverse()) {
      try {
        await listener.expired(item)
      } catch (err) {
        log.error('a stage failed to let go of an expired item', { relPath: item.relPath, stage: listener.constructor.name, error: err })
      }
    }
    for (const relDir of await store.deleteFiles(item.relPath)) {
      for (const listener of this.deps.listeners) {
        await listener
          .emptied?.(relDir)
          .catch((err: Error) =>
            log.error('a stage failed on a directory emptied by expiry', { relDir, stage: listener.constructor.name, error: err }),
          )
      }
    }
    this.expiredCount++
    log.info('expired', { relPath: item.relPath, publishedAt: item.publishedAt, reason })
    this.deps.events.emit('expired', { item, reason })
  }
}
