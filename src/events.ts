// What the daemon does, as typed events: the tests, the demo and the benchmark observe it
// here, never through log text, so that rewording a log line breaks nothing (fastify's hooks,
// webtorrent's events). Listeners must be quick and must not throw: they run inline.
import { EventEmitter } from 'node:events'
import type { PassReport } from './pipeline.ts'
import type { ItemRecord } from './store.ts'

export interface GribswarmEvents {
  /** A download goes on from the `offset` bytes of `size` that an earlier run left on disk (read back and hashed again, not fetched again). */
  resumed: [{ relPath: string; offset: number; size: number }]
  /** A download passed GRIB validation (every message framed; decoded as fetch.validation says), before it is published. */
  validated: [{ relPath: string; size: number; messages: number; bands: number }]
  /** An item is published: its sidecar is on disk and it is in the feeds. `from` is 'upstream' or the node it was copied from. */
  published: [{ item: ItemRecord; from: string }]
  /** The seeder holds the item in full and announces it; `rehashed`: its pieces were checked again (the file changed since it was published). */
  seeding: [{ item: ItemRecord; rehashed: boolean }]
  /** An item left the feeds and its files are deleted. */
  expired: [{ item: ItemRecord; reason: string }]
  /** The broker accepted the notification of a publication, latencySeconds after it (messages an earlier run left in the outbox are not timed). */
  notified: [{ latencySeconds: number }]
  /** An upstream pass ended (a failed pass reports its error), after durationSeconds. */
  pass: [{ report?: PassReport; error?: Error; durationSeconds: number }]
}

export class Events extends EventEmitter<GribswarmEvents> {}
