// Stage "expire": an item stays published for retention.publishSeconds after it was
// published. Expiry first unpublishes it (tombstone: it leaves the feeds and is never
// fetched again), then lets the other stages let go of it (seeder, tracker), and only
// then deletes its files. expiresAt is in the sidecar, so restarts change nothing.
import type { Logger } from './log.ts'
import type { DataStore, ItemRecord } from './store.ts'

export class Expirer {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<ItemRecord[]> | undefined

  constructor(
    private readonly store: DataStore,
    private readonly onExpired: (item: ItemRecord) => Promise<void>,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Expires everything due now; concurrent calls share one sweep. */
  sweep(): Promise<ItemRecord[]> {
    this.running ??= this.sweepOnce().finally(() => (this.running = undefined))
    return this.running
  }

  private async sweepOnce(): Promise<ItemRecord[]> {
    const now = this.now().getTime()
    const due = this.store.list().filter((item) => Date.parse(item.expiresAt) <= now)
    for (const item of due) await this.expire(item, 'retention over')
    return due
  }

  /** Expires one item now (a mirror does this when its origin says the file was removed). */
  async remove(relPath: string, reason: string): Promise<void> {
    const item = this.store.get(relPath)
    if (item) await this.expire(item, reason)
  }

  private async expire(item: ItemRecord, reason: string): Promise<void> {
    if (!(await this.store.unpublish(item.relPath))) return // expired meanwhile
    await this.onExpired(item).catch((err: Error) =>
      this.log.error('a stage failed to let go of an expired item', { relPath: item.relPath, error: err }),
    )
    await this.store.deleteFiles(item.relPath)
    this.log.info('expired', { relPath: item.relPath, publishedAt: item.publishedAt, reason })
  }

  start(everyMs: number): void {
    this.timer = setInterval(() => {
      this.sweep().catch((err: Error) => this.log.error('expiry sweep failed', { error: err }))
    }, everyMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.running
  }
}
