// The two contracts every stage shares, so that the daemon composes lists, not closures.
import type { ItemRecord } from './store.ts'

/** A long-running stage: started and stopped by the daemon (last started, first stopped), and reporting its state. */
export interface Stage<Status = unknown> {
  start(): Promise<void>
  stop(): Promise<void>
  status(): Status
}

/**
 * What must learn of every published and expired item: the tracker (allow/forget), the
 * seeder (seed/drop) and the notifier (post/remove). Called in list order; a listener that
 * fails is logged and does not stop the others.
 */
export interface PublishListener {
  published(item: ItemRecord, torrent: Uint8Array): Promise<void>
  expired(item: ItemRecord): Promise<void>
  /** A directory of the tree (relative, as a relPath) that an expiry left empty and removed. */
  emptied?(relDir: string): Promise<void>
}
