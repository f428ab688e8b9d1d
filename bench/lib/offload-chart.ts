// The chart of the offload scenario, as a hand-written SVG (no charting dependency): for each N,
// one panel of "clients done" against time since the clients started, one step line per origin
// tool, the ideal time (file / cap) marked. HTTP's figures are extrapolated and usually far past
// the BitTorrent runs: its line stays at zero across the panel and its finishing time is written
// at the right edge instead of stretching the axis.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

/** One origin tool, N clients: what the origin sent and when each client was done. */
export interface OffloadRun {
  tool: string
  clients: number
  /** seconds from the clients' start to each client's last piece, sorted; null: not done by the deadline */
  clientSeconds: Array<number | null>
  done: boolean
  /** bytes the origin sent, by its own counter (HTTP: N × the file, by construction) */
  originBytes: number
  /** the same seen from the clients: everything they downloaded minus what they uploaded to each other */
  clientsView?: number
  /** the origin's highest upload rate over 10 s, from its counter sampled every second (checks the cap) */
  peakRate?: number
  cpu?: { origin: number; clients: number; wallSeconds: number }
  /** HTTP only: the aggregate rate measured over a window, from which the figures are extrapolated */
  window?: { seconds: number; aggregateRate: number }
}

export interface OffloadChartSpec {
  title: string
  date: Date
  fileBytes: number
  capBytesPerSec: number
  panels: Array<{ clients: number; runs: OffloadRun[] }>
}

const WIDTH = 960
const PANEL_HEIGHT = 330
const MARGIN = { left: 70, right: 230, top: 40, bottom: 52 }
const HEADER = 58

function colorOf(tool: string): { stroke: string; dash?: string } {
  if (tool.startsWith('gribswarm + ')) return { stroke: '#7b3fa0' }
  if (tool.startsWith('gribswarm')) return { stroke: '#1f5fbf' }
  if (tool.startsWith('transmission')) return { stroke: '#d0342c' }
  if (tool.startsWith('qbittorrent')) return { stroke: '#2e8b3a' }
  return { stroke: '#6b6b6b', dash: '7 5' }
}

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** A round tick step giving about `count` ticks up to `max`: 1, 2 or 5 times a power of ten. */
function tickStep(max: number, count: number): number {
  const raw = max / count
  const power = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? 10 * power
}

function panel(spec: OffloadChartSpec, clients: number, runs: OffloadRun[], top: number): string {
  const ideal = spec.fileBytes / spec.capBytesPerSec
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom
  const x0 = MARGIN.left
  const y0 = top + MARGIN.top + plotHeight
  // The axis covers the BitTorrent runs (measured to the end), not the extrapolated HTTP time.
  const measured = runs.filter((r) => !r.window).flatMap((r) => r.clientSeconds.filter((s): s is number => s !== null))
  const xMax = Math.max(ideal * 1.5, ...measured) * 1.08
  const xStep = tickStep(xMax, 8)
  const yStep = tickStep(clients, 4)
  const x = (seconds: number) => x0 + (Math.min(seconds, xMax) / xMax) * plotWidth
  const y = (done: number) => y0 - (done / clients) * plotHeight
  const out: string[] = []

  out.push(`<text x="${x0}" y="${top + 24}" class="panel">N = ${clients} libtorrent clients start together</text>`)
  // Grid and axes.
  for (let t = 0; t <= xMax; t += xStep) {
    out.push(`<line x1="${x(t)}" y1="${y0}" x2="${x(t)}" y2="${y(clients)}" class="grid"/>`)
    out.push(`<text x="${x(t)}" y="${y0 + 18}" class="tick" text-anchor="middle">${t}</text>`)
  }
  for (let n = 0; n <= clients; n += yStep) {
    out.push(`<line x1="${x0}" y1="${y(n)}" x2="${x0 + plotWidth}" y2="${y(n)}" class="grid"/>`)
    out.push(`<text x="${x0 - 8}" y="${y(n) + 4}" class="tick" text-anchor="end">${n}</text>`)
  }
  out.push(`<line x1="${x0}" y1="${y0}" x2="${x0 + plotWidth}" y2="${y0}" class="axis"/>`)
  out.push(`<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y(clients)}" class="axis"/>`)
  out.push(`<text x="${x0 + plotWidth / 2}" y="${y0 + 40}" class="label" text-anchor="middle">seconds since the clients started</text>`)
  out.push(
    `<text transform="translate(${x0 - 44} ${y0 - plotHeight / 2}) rotate(-90)" class="label" text-anchor="middle">clients done</text>`,
  )
  // The ideal: the file sent once at the cap.
  // Its label goes left of the line, where clients are hardly ever done (see below).
  out.push(`<line x1="${x(ideal)}" y1="${y0}" x2="${x(ideal)}" y2="${y(clients)}" class="ideal"/>`)
  out.push(`<text x="${x(ideal) - 5}" y="${y(clients) + 14}" class="note" text-anchor="end">file / cap = ${ideal.toFixed(1)} s</text>`)

  // One step line per origin tool.
  for (const run of runs) {
    const { stroke, dash } = colorOf(run.tool)
    const style = `stroke="${stroke}"${dash ? ` stroke-dasharray="${dash}"` : ''}`
    const times = run.clientSeconds.filter((s): s is number => s !== null && s <= xMax)
    let d = `M ${x(0)} ${y(0)}`
    times.forEach((t, i) => (d += ` H ${x(t).toFixed(1)} V ${y(i + 1).toFixed(1)}`))
    d += ` H ${x(xMax)}`
    out.push(`<path d="${d}" fill="none" stroke-width="2.4" ${style}/>`)
    const beyond = run.clientSeconds.filter((s): s is number => s !== null && s > xMax)
    if (beyond.length) {
      // Written at the left, above the flat lines, where clients are hardly ever done: a client needs the
      // whole file to have left the origin once (file / cap, give or take the rate limiter's burst).
      out.push(
        `<text x="${x0 + 8}" y="${y(0) - 22}" class="note" fill="${stroke}">${escape(run.tool)}${run.window ? ', extrapolated' : ''}:</text>`,
        `<text x="${x0 + 8}" y="${y(0) - 8}" class="note" fill="${stroke}">${beyond.length === clients ? `all ${clients}` : beyond.length} done at ${Math.round(Math.min(...beyond))} s →</text>`,
      )
    }
  }

  // Legend, right of the plot: tool, bytes the origin sent, last client.
  runs.forEach((run, i) => {
    const { stroke, dash } = colorOf(run.tool)
    const ly = top + MARGIN.top + 8 + i * 46
    const lx = x0 + plotWidth + 18
    const last = run.done ? Math.max(...run.clientSeconds.map((s) => s ?? 0)) : undefined
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 26}" y2="${ly}" stroke="${stroke}" stroke-width="3"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
    )
    out.push(`<text x="${lx + 34}" y="${ly + 4}" class="legend">${escape(run.tool)}</text>`)
    out.push(
      `<text x="${lx + 34}" y="${ly + 20}" class="legend-sub">origin sent ${(run.originBytes / spec.fileBytes).toFixed(2)}× the file,</text>`,
      `<text x="${lx + 34}" y="${ly + 34}" class="legend-sub">${last === undefined ? 'not all done by the deadline' : `last client ${last.toFixed(1)} s${run.window ? ' (extrap.)' : ''}`}</text>`,
    )
  })
  return out.join('\n')
}

export function offloadChartSvg(spec: OffloadChartSpec): string {
  const height = HEADER + spec.panels.length * PANEL_HEIGHT
  const body = spec.panels.map((p, i) => panel(spec, p.clients, p.runs, HEADER + i * PANEL_HEIGHT)).join('\n')
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 18px; font-weight: bold; fill: #222; }
  .subtitle { font-size: 12px; fill: #555; }
  .panel { font-size: 14px; font-weight: bold; fill: #333; }
  .tick { font-size: 11px; fill: #555; }
  .label { font-size: 12px; fill: #333; }
  .note { font-size: 11px; fill: #444; paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
  .legend { font-size: 12px; fill: #222; }
  .legend-sub { font-size: 10.5px; fill: #555; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
  .axis { stroke: #444; stroke-width: 1.2; }
  .ideal { stroke: #222; stroke-width: 1.2; stroke-dasharray: 3 3; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="${MARGIN.left}" y="26" class="title">${escape(spec.title)}</text>
<text x="${MARGIN.left}" y="45" class="subtitle">${escape(`Clients done over time, one line per origin tool (same file, .torrent, tracker and cap); loopback, measured ${spec.date.toISOString().slice(0, 16).replace('T', ' ')} UTC`)}</text>
${body}
</svg>
`
}

export async function writeOffloadChart(path: string, spec: OffloadChartSpec): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, offloadChartSvg(spec))
}
