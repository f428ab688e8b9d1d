// Stage "schedule": runs the pipeline's upstream passes on schedule.cron (never two at once; a
// pass asked for while one runs joins it) and keeps what the status page says about them.
import cron, { type ScheduledTask } from 'node-cron'
import type { Config } from './config.ts'
import type { Events } from './events.ts'
import type { Logger } from './log.ts'
import type { PassObserver, PassOptions, PassReport, Pipeline } from './pipeline.ts'
import type { Stage } from './stage.ts'

export interface PassState {
  running: boolean
  lastStartedAt?: string
  lastFinishedAt?: string
  /** When the last pass that did not fail as a whole ended (files in it may have failed). */
  lastSucceededAt?: string
  lastReport?: { runs: string[]; available: number; published: number; failed: PassReport['failed']; deferred: number }
  lastError?: string
  nextPassAt?: string
}

export interface SchedulerDeps {
  pipeline: Pipeline
  /** false: no timed passes (a pure mirror, or a test that runs its passes itself). */
  enabled: boolean
  events: Events
  log: Logger
  now?: () => Date
}

export class Scheduler implements Stage<PassState> {
  private readonly state: PassState = { running: false }
  private task: ScheduledTask | undefined
  private current: Promise<PassReport | undefined> | undefined
  private readonly stopping = new AbortController()

  constructor(
    private readonly config: Config['schedule'],
    private readonly deps: SchedulerDeps,
  ) {}

  async start(): Promise<void> {
    if (!this.deps.enabled) return
    this.task = cron.schedule(this.config.cron, () => void this.runPass(), { noOverlap: true, name: 'pass' })
    void this.runPass()
  }

  async stop(): Promise<void> {
    await this.task?.destroy()
    this.stopping.abort()
    await this.current
  }

  status(): PassState {
    return { ...this.state, nextPassAt: this.task?.getNextRun()?.toISOString() }
  }

  /** Runs a pass unless one is running (then waits for that one). Never throws. */
  runPass(options: PassOptions = {}, observer?: PassObserver): Promise<PassReport | undefined> {
    this.current ??= this.passOnce(options, observer).finally(() => (this.current = undefined))
    return this.current
  }

  private async passOnce(options: PassOptions, observer?: PassObserver): Promise<PassReport | undefined> {
    const { state } = this
    const now = () => (this.deps.now?.() ?? new Date()).toISOString()
    state.running = true
    state.lastStartedAt = now()
    const started = performance.now()
    const durationSeconds = () => (performance.now() - started) / 1000
    try {
      const report = await this.deps.pipeline.runPass({ signal: this.stopping.signal, ...options }, observer)
      state.lastReport = {
        runs: report.runs,
        available: report.available,
        published: report.published.length,
        failed: report.failed,
        deferred: report.deferred.length,
      }
      state.lastError = undefined
      state.lastSucceededAt = now()
      this.deps.events.emit('pass', { report, durationSeconds: durationSeconds() })
      return report
    } catch (err) {
      state.lastError = (err as Error).message
      this.deps.log.error('pass failed', { error: err })
      this.deps.events.emit('pass', { error: err as Error, durationSeconds: durationSeconds() })
      return undefined
    } finally {
      state.running = false
      state.lastFinishedAt = now()
    }
  }
}
