// The status page, rendered on the server from the status report so that it reads without
// JavaScript; status.js then refreshes it and draws the charts.
import type { StatusReport } from './status.ts'

export function renderStatusPage(template: string, _status: StatusReport): string {
  return template
}
