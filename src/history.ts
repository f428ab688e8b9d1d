// The dashboard's memory: one sample a minute of what the charts show, the last 24 h, kept in
// memory and in a small file of the data directory so that a restart does not lose it.
import type { Events } from './events.ts'
import type { Stage } from './stage.ts'
import type { StatusReport } from './status.ts'

export interface HistoryDeps {
  /** Where the samples are kept across restarts (inside the data directory). */
  file: string
  events: Events
  status: () => Promise<StatusReport>
}

export class History implements Stage<{ samples: number }> {
  constructor(readonly deps: HistoryDeps) {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  status() {
    return { samples: 0 }
  }
  /** What /api/history answers. */
  report(): unknown {
    return { samples: [] }
  }
}
